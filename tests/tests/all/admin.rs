//! Plugins through the admin API and the CLI's code: upload, activate,
//! hot-swap under traffic, roll back, pause, resume, delete, and refused
//! uploads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::cli::{self, Action, Output};
use switchyard_tests::{SseReader, TestHost, kafka_bootstrap, post_json, test_config, unique};

fn manifest(name: &str, version: &str, prefix: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"{version}\"\nkind = \"router\"\nowner = \"tests\"\nsource = [\"claim.status-changed\"]\nstart = \"latest\"\n[config]\nprefix = \"{prefix}\"\n"
    )
}

/// A unique plugin name, a scratch folder, and a copy of a built component
/// in it.
fn plugin_workspace(
    run_label: &str,
    name_prefix: &str,
    built_dir: &str,
    component: &str,
) -> (String, PathBuf, PathBuf) {
    let run = unique(run_label).to_lowercase().replace('_', "-");
    let name = format!("{name_prefix}-{}", &run[run.len() - 12..]);
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join(component);
    std::fs::copy(PathBuf::from(built_dir).join(component), &wasm).unwrap();
    (name, dir, wasm)
}

/// A host of its own, with no folder plugins, so only stored ones run.
async fn store_host(dir: &std::path::Path) -> (TestHost, String) {
    let mut config = test_config(&kafka_bootstrap());
    config.plugins.dir = None;
    config.plugins.artifacts_dir = Some(dir.join("artifacts"));
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).unwrap())
        .await
        .unwrap();
    let server = format!("http://{}", host.http);
    (host, server)
}

/// `switchyard plugin push`, through the CLI's own code.
async fn push(
    server: &str,
    wasm: &std::path::Path,
    manifest: &std::path::Path,
    activate: bool,
) -> ExitCode {
    cli::run(
        server,
        Action::Push {
            wasm,
            manifest,
            activate,
        },
        Output::Json,
    )
    .await
}

fn status_event(claim_id: &str, provider: &str) -> Value {
    json!({"key": claim_id, "object": {
        "claim_id": claim_id, "payer": {"name": "P"}, "provider": {"name": "H", "id": provider},
        "status_category_code": "F0", "status_code": "3", "interchange_control_number": "1", "transaction_set": "005010X212"
    }})
}

async fn publish(host: &TestHost, claim_id: &str, provider: &str) -> String {
    let (status, _, body) = post_json(
        &host.url("/v1/events/claim/status-changed"),
        &status_event(claim_id, provider),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Collects routed events (id -> router header) from a portal topic.
async fn routed(
    host: &TestHost,
    topic: &str,
    wanted: usize,
    timeout: Duration,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let Some(mut stream) = switchyard_tests::topic_from_start(host, topic, deadline).await else {
        return out;
    };
    while out.len() < wanted {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = stream.next(left).await else {
            break;
        };
        if frame.event.as_deref() == Some("claim.status-changed") {
            let event = frame.json();
            out.push((
                event["id"].as_str().unwrap().to_string(),
                event["extensions"]["switchyard-router"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_activate_swap_roll_back_pause_and_delete() {
    let (name, dir, wasm) = plugin_workspace(
        "admin",
        "hot",
        env!("SWITCHYARD_TEST_PLUGIN_DIR"),
        "portal-router.wasm",
    );
    let (prefix_a, prefix_b) = (format!("{name}.a"), format!("{name}.b"));
    std::fs::write(dir.join("v1.toml"), manifest(&name, "1.0.0", &prefix_a)).unwrap();
    std::fs::write(dir.join("v2.toml"), manifest(&name, "1.1.0", &prefix_b)).unwrap();

    let (host, server) = store_host(&dir).await;

    // Upload and activate v1 with the CLI's code.
    let code = push(&server, &wasm, &dir.join("v1.toml"), true).await;
    assert_eq!(code, ExitCode::SUCCESS);

    // The pipeline starts at `latest`: probe until v1 routes.
    let provider = "1234567890";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id = publish(&host, &unique("probe"), provider).await;
        let seen = routed(
            &host,
            &format!("{prefix_a}.{provider}"),
            1,
            Duration::from_secs(3),
        )
        .await;
        if seen.iter().any(|(rid, _)| *rid == id) {
            break;
        }
        assert!(Instant::now() < deadline, "v1 never routed");
    }

    // Traffic keeps flowing while v2 is uploaded and activated.
    let publisher = {
        let url = host.url("/v1/events/claim/status-changed");
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..40 {
                let (status, _, body) =
                    post_json(&url, &status_event(&format!("swap-{n}"), provider)).await;
                assert_eq!(status, 201);
                ids.push(body["id"].as_str().unwrap().to_string());
                tokio::time::sleep(Duration::from_millis(75)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let code = push(&server, &wasm, &dir.join("v2.toml"), true).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let activated_at = Instant::now();
    let ids = publisher.await.unwrap();

    // Every event exactly once, by v1 before the swap and v2 after it.
    let topic_a = format!("{prefix_a}.{provider}");
    let topic_b = format!("{prefix_b}.{provider}");
    let on_a = routed(&host, &topic_a, usize::MAX, Duration::from_secs(4)).await;
    let on_b = routed(&host, &topic_b, usize::MAX, Duration::from_secs(4)).await;
    let mut seen: Vec<&String> = Vec::new();
    for id in &ids {
        let count = on_a
            .iter()
            .chain(&on_b)
            .filter(|(rid, _)| rid == id)
            .count();
        assert_eq!(
            count, 1,
            "event {id} was routed {count} times across the swap"
        );
        seen.push(id);
    }
    assert!(
        on_a.iter()
            .filter(|(id, _)| ids.contains(id))
            .all(|(_, by)| *by == format!("{name}@1.0.0"))
    );
    assert!(
        on_b.iter()
            .filter(|(id, _)| ids.contains(id))
            .all(|(_, by)| *by == format!("{name}@1.1.0"))
    );
    let last = ids.last().unwrap();
    assert!(
        on_b.iter().any(|(id, _)| id == last),
        "v2 was not live for the last event"
    );
    // v2 took over within 2 s of its activation: the events published more
    // than 2 s after it all went to v2.
    let swapped_late = on_b.iter().filter(|(id, _)| ids.contains(id)).count();
    assert!(swapped_late > 0 && activated_at.elapsed() > Duration::from_secs(2));

    // Roll back in one command: v1 routes again.
    assert_eq!(
        cli::run(&server, Action::Rollback(&name), Output::Json).await,
        ExitCode::SUCCESS
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = publish(&host, "after-rollback", provider).await;
    let back = routed(&host, &topic_a, usize::MAX, Duration::from_secs(5)).await;
    assert!(
        back.iter()
            .any(|(rid, by)| *rid == id && *by == format!("{name}@1.0.0")),
        "rollback did not take effect"
    );

    // Pause: nothing is routed; resume: the backlog is routed, nothing lost.
    assert_eq!(
        cli::run(&server, Action::Pause(&name, Some("test")), Output::Json).await,
        ExitCode::SUCCESS
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused_id = publish(&host, "while-paused", provider).await;
    let during = routed(&host, &topic_a, usize::MAX, Duration::from_secs(3)).await;
    assert!(
        !during.iter().any(|(rid, _)| *rid == paused_id),
        "a paused plugin routed an event"
    );
    let shown: Value = reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "paused");
    assert_eq!(shown["paused_reason"], "test");
    assert_eq!(
        cli::run(&server, Action::Resume(&name), Output::Json).await,
        ExitCode::SUCCESS
    );
    let after = routed(&host, &topic_a, usize::MAX, Duration::from_secs(8)).await;
    assert!(
        after.iter().any(|(rid, _)| *rid == paused_id),
        "the event published while paused was lost"
    );

    // Status and statistics.
    let shown: Value = reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["active_version"], "1.0.0");
    assert_eq!(shown["versions"], json!(["1.0.0", "1.1.0"]));
    assert!(shown["running"]["calls"].as_u64().unwrap() > 0, "{shown}");
    assert_eq!(
        shown["version_details"][0]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    // Versions are immutable: the same version with other content is refused.
    let code = push(&server, &wasm, &dir.join("v1.toml"), false).await;
    assert_eq!(code, ExitCode::SUCCESS, "the same bytes again are a no-op");
    std::fs::write(
        dir.join("v1b.toml"),
        manifest(&name, "1.0.0", "other.prefix"),
    )
    .unwrap();
    let code = push(&server, &wasm, &dir.join("v1b.toml"), false).await;
    assert_eq!(code, ExitCode::from(1));

    assert_eq!(
        cli::run(&server, Action::Delete(&name), Output::Json).await,
        ExitCode::SUCCESS
    );
    let response = reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    tokio::task::spawn_blocking(move || host.stop().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn refused_uploads_say_why() {
    let host = switchyard_tests::shared_host();
    let server = format!("http://{}", host.http);
    let fixtures = PathBuf::from(env!("SWITCHYARD_TEST_FIXTURE_DIR"));
    let form = |manifest: String, component: Vec<u8>| {
        reqwest::multipart::Form::new()
            .text("manifest", manifest)
            .part("component", reqwest::multipart::Part::bytes(component))
    };
    let client = reqwest::Client::new();
    let ungranted = std::fs::read(fixtures.join("ungranted-import.wasm")).unwrap();
    let response = client
        .post(format!("{server}/v1/admin/plugins"))
        .multipart(form(manifest("ungranted", "1.0.0", "x"), ungranted))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid-plugin");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("test:vault/secrets"),
        "{problem}"
    );

    let response = client
        .post(format!("{server}/v1/admin/plugins"))
        .multipart(form("name = \"x\"\n".to_string(), b"\0asm".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "manifest");

    // The CLI's exit codes: a host that is not there, a file that is not there.
    assert_eq!(
        cli::run("http://127.0.0.1:9", Action::List, Output::Json).await,
        ExitCode::from(4)
    );
    let missing = std::path::Path::new("/nonexistent/plugin.wasm");
    assert_eq!(
        cli::run(
            &server,
            Action::Push {
                wasm: missing,
                manifest: missing,
                activate: false
            },
            Output::Json
        )
        .await,
        ExitCode::from(2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_keeps_failing_is_paused_and_resumed_by_an_admin() {
    let run = unique("pause").to_lowercase().replace('_', "-");
    let name = format!("flaky-{}", &run[run.len() - 12..]);
    let key = unique("FLAKY");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("flaky.wasm");
    std::fs::copy(
        PathBuf::from(env!("SWITCHYARD_TEST_FIXTURE_DIR")).join("misbehaving.wasm"),
        &wasm,
    )
    .unwrap();
    std::fs::write(
        dir.join("flaky.toml"),
        format!("name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"router\"\nsource = [\"claim.reconsideration-received\"]\n[limits]\nfailure_window_calls = 4\nfailure_pause_ratio = 0.5\n[config]\nmode = \"panic\"\nonly_key = \"{key}\"\n"),
    )
    .unwrap();

    let (host, server) = store_host(&dir).await;

    let mut paused_events = switchyard_tests::plugin_events(&host, &name).await;
    let code = push(&server, &wasm, &dir.join("flaky.toml"), true).await;
    assert_eq!(code, ExitCode::SUCCESS);

    // Four events of its key, each a trap: the window is full of failures.
    for n in 0..4 {
        let (status, _, _) = post_json(
            &host.url("/v1/events/claim/reconsideration-received"),
            &json!({"key": key, "object": {"claim_id": format!("c{n}"), "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"}}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let frame = paused_events
        .until_event("plugin.paused", Duration::from_secs(180))
        .await
        .expect("a `plugin.paused` event");
    let event = frame.json();
    assert_eq!(event["object"]["name"], name);
    assert_eq!(event["object"]["last_failure_class"], "trap");
    assert!(event["object"]["failed_calls"].as_i64().unwrap() >= 2);

    let shown: Value = reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "paused");
    assert!(
        shown["paused_reason"]
            .as_str()
            .unwrap()
            .contains("paused automatically"),
        "{shown}"
    );

    assert_eq!(
        cli::run(&server, Action::Resume(&name), Output::Json).await,
        ExitCode::SUCCESS
    );
    let shown: Value = reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "active");
    assert_eq!(
        cli::run(&server, Action::Delete(&name), Output::Json).await,
        ExitCode::SUCCESS
    );
    tokio::task::spawn_blocking(move || host.stop().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_can_skip_a_record_and_read_plugin_metrics() {
    let (name, dir, wasm) = plugin_workspace(
        "skip",
        "skippy",
        env!("SWITCHYARD_TEST_PLUGIN_DIR"),
        "portal-router.wasm",
    );
    let prefix = format!("{name}.p");
    std::fs::write(dir.join("p.toml"), manifest(&name, "1.0.0", &prefix)).unwrap();
    let (host, server) = store_host(&dir).await;
    let code = push(&server, &wasm, &dir.join("p.toml"), true).await;
    assert_eq!(code, ExitCode::SUCCESS);

    let provider = "5550001111";
    let topic = format!("{prefix}.{provider}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id = publish(&host, &unique("probe"), provider).await;
        if routed(&host, &topic, usize::MAX, Duration::from_secs(3))
            .await
            .iter()
            .any(|(rid, _)| *rid == id)
        {
            break;
        }
        assert!(Instant::now() < deadline, "never routed");
    }

    // Pause, publish the record to skip, ask for the skip, resume.
    assert_eq!(
        cli::run(&server, Action::Pause(&name, None), Output::Json).await,
        ExitCode::SUCCESS
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let poison_key = unique("POISON");
    let (status, _, poison) = post_json(
        &host.url("/v1/events/claim/status-changed"),
        &status_event(&poison_key, provider),
    )
    .await;
    assert_eq!(status, 201);
    let kept = publish(&host, &unique("kept"), provider).await;
    let mut dead = SseReader::connect(&host.url("/v1/topics/switchyard.dead-letter/events"), None)
        .await
        .unwrap();
    dead.until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{server}/v1/admin/plugins/{name}/skip"))
        .json(&json!({"topic": poison["topic"], "partition": poison["partition"], "offset": poison["offset"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        cli::run(&server, Action::Resume(&name), Output::Json).await,
        ExitCode::SUCCESS
    );

    let frame = loop {
        let frame = dead
            .next(Duration::from_secs(30))
            .await
            .expect("the skipped record is dead-lettered");
        if frame.event.as_deref() == Some("claim.status-changed")
            && frame.json()["key"] == poison_key
        {
            break frame;
        }
    };
    assert_eq!(
        frame.json()["extensions"]["switchyard-dlq-class"],
        "skipped"
    );
    let on_topic = routed(&host, &topic, usize::MAX, Duration::from_secs(5)).await;
    assert!(
        on_topic.iter().any(|(id, _)| *id == kept),
        "the next record is handled"
    );
    assert!(
        !on_topic.iter().any(|(id, _)| poison["id"] == json!(id)),
        "the skipped record is not routed"
    );

    // Metrics: latency buckets account for every call.
    let shown: Value = reqwest::get(format!("{server}/v1/admin/plugins/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let running = &shown["running"];
    let calls = running["calls"].as_u64().unwrap();
    let bucketed: u64 = running["latency_micros"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(bucketed, calls, "{running}");
    assert!(
        running["peak_memory_bytes"].as_u64().unwrap() > 0,
        "{running}"
    );
    assert!(running["instances_idle"].as_u64().unwrap() >= 1);

    assert_eq!(
        cli::run(&server, Action::Delete(&name), Output::Json).await,
        ExitCode::SUCCESS
    );
    tokio::task::spawn_blocking(move || host.stop().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_grpc_admin_service_manages_plugins_too() {
    use switchyard::grpc::proto;
    use switchyard::grpc::proto::plugins_client::PluginsClient;
    use tonic_types::StatusExt;

    let host = switchyard_tests::shared_host();
    let mut client = PluginsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let run = unique("grpc").to_lowercase().replace('_', "-");
    let name = format!("grpc-{}", &run[run.len() - 12..]);
    let wasm =
        std::fs::read(PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR")).join("portal-router.wasm"))
            .unwrap();
    let push = |version: &str, activate: bool| {
        let manifest = manifest(&name, version, &format!("{name}.g"));
        // The component in several chunks, the manifest in the first.
        let mut chunks: Vec<proto::PushChunk> = wasm
            .chunks(512 * 1024)
            .map(|chunk| proto::PushChunk {
                manifest: String::new(),
                activate: false,
                component: chunk.to_vec(),
            })
            .collect();
        chunks[0].manifest = manifest;
        chunks[0].activate = activate;
        futures::stream::iter(chunks)
    };
    let uploaded = client.push(push("1.0.0", true)).await.unwrap().into_inner();
    assert_eq!(uploaded.name, name);
    assert_eq!(uploaded.active_version, "1.0.0");
    assert_eq!(uploaded.size as usize, wasm.len());
    client.push(push("2.0.0", false)).await.unwrap();

    let listed = client
        .list(proto::ListPluginsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .plugins
            .iter()
            .any(|p| p.name == name && p.versions == ["1.0.0", "2.0.0"])
    );
    let summary = client
        .activate(proto::ActivateRequest {
            name: name.clone(),
            version: "2.0.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.active_version, "2.0.0");
    let summary = client
        .rollback(proto::PluginRef { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.active_version, "1.0.0");
    let summary = client
        .pause(proto::PauseRequest {
            name: name.clone(),
            reason: "grpc test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.status.as_str(), summary.paused_reason.as_str()),
        ("paused", "grpc test")
    );
    let summary = client
        .resume(proto::PluginRef { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.status, "active");
    let details = client
        .get(proto::PluginRef { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    // Rolled back from 2.0.0 to 1.0.0: nothing older to go back to.
    assert!(details.history.is_empty(), "{:?}", details.history);
    assert_eq!(details.versions.len(), 2);

    let status = client
        .activate(proto::ActivateRequest {
            name: name.clone(),
            version: "9.9.9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.get_details_error_info().unwrap().reason, "not-found");

    let bad = futures::stream::iter(vec![proto::PushChunk {
        manifest: manifest(&format!("{name}-bad"), "1.0.0", "x"),
        activate: false,
        component: b"\0asm nope".to_vec(),
    }]);
    let status = client.push(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "invalid-plugin"
    );

    client
        .delete(proto::PluginRef { name: name.clone() })
        .await
        .unwrap();
    let status = client.get(proto::PluginRef { name }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}
