//! The sandbox harness for Switchyard's integration tests.
//!
//! Tests run against the real local stack that `scripts/stack.sh up` starts
//! (Kafka on loopback). Its address comes from `SWITCHYARD_TEST_KAFKA`,
//! default `127.0.0.1:9092`. There is no skip: if the stack is down, the
//! tests fail and say so.
//!
//! A host runs in-process on its own thread and Tokio runtime, so it
//! outlives any single test's runtime; its sockets bind port 0 and the
//! harness hands back the real addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use switchyard::config::Config;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Folder of the shared sample data.
pub fn shared_data() -> PathBuf {
    repo_root().join("../shared/data")
}

/// Kafka of the local stack.
pub fn kafka_bootstrap() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// A config for a test host: loopback, port 0 everywhere, the repository's
/// schemas and the freshly built plugins.
pub fn test_config(bootstrap: &str) -> Config {
    let mut config = Config::default();
    config.kafka.bootstrap_servers = bootstrap.to_string();
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    config.grpc.listen = "127.0.0.1:0".parse().expect("address");
    config.registry.listen = "127.0.0.1:0".parse().expect("address");
    config.registry.schemas_dir = repo_root().join("schemas");
    config.plugins.dir = Some(PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR")));
    // Routing is off unless a test turns it on with `with_routing`: every
    // host shares the stack's Kafka, and an engine would run every route
    // it can see.
    config.routing.enabled = false;
    // Aggregators likewise, unless `with_aggregation` turns them on.
    config.aggregation.enabled = false;
    config
}

/// Turns aggregation on with consumer groups and changelogs of this test's
/// own (`cluster` names them, so hosts given the same name share them).
pub fn with_aggregation(mut config: Config, cluster: &str) -> Config {
    config.aggregation.enabled = true;
    config.aggregation.group_prefix = format!("switchyard.aggregate.{cluster}");
    config
}

/// Turns routing on with a routes topic and consumer group of this test's
/// own (`cluster` names them, so hosts given the same name form one
/// deployment), starting from the end of the noun topics.
pub fn with_routing(mut config: Config, cluster: &str) -> Config {
    config.routing.enabled = true;
    config.routing.topic = format!("_switchyard_routes.{cluster}");
    config.routing.group = format!("switchyard.routing.{cluster}");
    config.routing.start = switchyard::config::Start::Latest;
    config
}

/// Waits until a host's routing engine has partitions of `topic` assigned
/// (so events published from now on are routed), or panics after `within`.
pub async fn wait_for_routing(host: &TestHost, topic: &str, within: Duration) -> serde_json::Value {
    let started = std::time::Instant::now();
    let prefix = format!("{topic}:");
    loop {
        let status: serde_json::Value = reqwest::get(host.url("/v1/routing"))
            .await
            .expect("routing status answers")
            .json()
            .await
            .expect("routing status is JSON");
        let assigned = status["assigned"].as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p.as_str().is_some_and(|p| p.starts_with(&prefix)))
        });
        if assigned {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "routing engine got no partition of `{topic}` within {within:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running host.
pub struct TestHost {
    /// REST address.
    pub http: SocketAddr,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Registry address.
    pub registry: SocketAddr,
    stop_tx: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl TestHost {
    /// Starts a host with this config on its own thread and runtime.
    pub fn start(config: Config) -> anyhow::Result<TestHost> {
        // `SWITCHYARD_TEST_LOG=debug` (a `RUST_LOG`-style filter) shows the
        // hosts' logs on stderr while debugging a test.
        if let Ok(filter) = std::env::var("SWITCHYARD_TEST_LOG") {
            // Logs only: in-process hosts export no spans (the tracing
            // test runs the host binary, which does).
            switchyard::telemetry::init(
                &switchyard::config::LogConfig {
                    format: switchyard::config::LogFormat::Text,
                    filter,
                },
                &switchyard::config::TelemetryConfig {
                    otlp_endpoint: String::new(),
                    ..Default::default()
                },
            );
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-host".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let bound = match switchyard::bind(config).await {
                        Ok(bound) => bound,
                        Err(error) => {
                            let _ = ready_tx.send(Err(format!("{error:#}")));
                            return Err(error);
                        }
                    };
                    let _ = ready_tx.send(Ok((
                        bound.http_addr(),
                        bound.grpc_addr(),
                        bound.registry_addr(),
                    )));
                    bound
                        .serve(async move {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })?;
        let (http, grpc, registry) = ready_rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| anyhow::anyhow!("test host did not start within 120 s"))?
            .map_err(|error| {
                anyhow::anyhow!(
                    "test host failed to start (is the stack up? `scripts/stack.sh up`): {error}"
                )
            })?;
        Ok(TestHost {
            http,
            grpc,
            registry,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://<rest address>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Stops the host and waits for it, returning its result.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        if let Some(stop_tx) = self.stop_tx.take() {
            let _ = stop_tx.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("test host panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// One host shared by every test of the binary, with the plugins loaded.
pub fn shared_host() -> &'static TestHost {
    static HOST: OnceLock<TestHost> = OnceLock::new();
    HOST.get_or_init(|| {
        TestHost::start(test_config(&kafka_bootstrap())).expect("shared test host starts")
    })
}

/// A unique string for keys and ids, so tests never see each other's events.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// One Server-Sent Events frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// `id:` field.
    pub id: Option<String>,
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

impl Frame {
    /// The data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|error| panic!("frame data is not JSON ({error}): {}", self.data))
    }
}

/// A stream of a topic's events from its beginning, once the topic exists
/// (a routed-to topic appears with its first event); none if it does not
/// appear before `deadline`.
pub async fn topic_from_start(
    host: &TestHost,
    topic: &str,
    deadline: std::time::Instant,
) -> Option<SseReader> {
    loop {
        let stream = SseReader::connect(
            &host.url(&format!("/v1/topics/{topic}/events?start=earliest")),
            None,
        )
        .await
        .expect("the host answers");
        if stream.status == 200 {
            return Some(stream);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A minimal SSE reader over a streaming HTTP response, written from the
/// WHATWG event stream rules: lines end in LF, CRLF or CR; a blank line ends
/// a frame; lines starting with `:` are comments.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    /// HTTP status of the response.
    pub status: reqwest::StatusCode,
    /// Content type of the response.
    pub content_type: String,
}

impl SseReader {
    /// Opens a stream, optionally resuming with `Last-Event-ID`.
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> anyhow::Result<SseReader> {
        let client = reqwest::Client::new();
        let mut request = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok(SseReader {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            status,
            content_type,
        })
    }

    /// The next frame with data, or `None` on timeout or end of stream.
    pub async fn next(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frame = Frame::default();
        let mut has_data = false;
        loop {
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if line.is_empty() {
                    if has_data || frame.event.is_some() {
                        return Some(frame);
                    }
                    frame = Frame::default();
                    continue;
                }
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (
                        field.to_string(),
                        value.strip_prefix(' ').unwrap_or(value).to_string(),
                    ),
                    None => (line.clone(), String::new()),
                };
                match field.as_str() {
                    "id" => frame.id = Some(value),
                    "event" => frame.event = Some(value),
                    "data" => {
                        if has_data {
                            frame.data.push('\n');
                        }
                        frame.data.push_str(&value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// Reads frames until one has this event name.
    pub async fn until_event(&mut self, event: &str, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left).await?;
            if frame.event.as_deref() == Some(event) {
                return Some(frame);
            }
        }
    }
}

/// Posts JSON and returns status, content type and the JSON body.
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, String, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request is sent");
    read_response(response).await
}

/// Posts raw bytes with a content type.
pub async fn post_raw(
    url: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, String, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request is sent");
    read_response(response).await
}

async fn read_response(response: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = response.bytes().await.expect("body is read");
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, content_type, json)
}

/// Pushes a plugin and activates it, through the CLI's own code.
pub async fn push_plugin(
    server: &str,
    wasm: &std::path::Path,
    manifest: &std::path::Path,
) -> std::process::ExitCode {
    switchyard::cli::run(
        server,
        switchyard::cli::Action::Push {
            wasm,
            manifest,
            activate: true,
        },
        switchyard::cli::Output::Json,
    )
    .await
}

/// What the admin API shows of a plugin.
pub async fn plugin_shown(server: &str, name: &str) -> serde_json::Value {
    reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Deletes a plugin of the test's own from the store every host shares.
pub async fn delete_plugin(server: &str, name: &str) {
    let deleted = reqwest::Client::new()
        .delete(format!("{server}/v1/admin/plugins/{name}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{deleted:?}");
}

/// The `plugin` noun's events about one plugin (`plugin.paused`), from
/// now on.
pub async fn plugin_events(host: &TestHost, name: &str) -> SseReader {
    let mut events = SseReader::connect(
        &host.url(&format!("/v1/nouns/plugin/events?key={name}")),
        None,
    )
    .await
    .unwrap();
    events
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    events
}

/// Waits for `plugin.paused` on `events` (from [`plugin_events`]) and checks
/// that it names the plugin and the failure class, and that the admin API
/// shows the plugin paused.
pub async fn expect_paused(events: &mut SseReader, server: &str, name: &str, class: &str) {
    let frame = events
        .until_event("plugin.paused", Duration::from_secs(120))
        .await
        .expect("a `plugin.paused` event");
    let event = frame.json();
    assert_eq!(event["object"]["name"], name);
    assert_eq!(event["object"]["last_failure_class"], class);
    let shown = plugin_shown(server, name).await;
    assert_eq!(shown["status"], "paused", "{shown}");
}
