//! Helpers shared by the tests that run the host binary as real processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The stack's Kafka.
pub fn kafka() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// Where the tests crate builds the test plugins.
pub fn plugin_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("switchyard-test-plugins")
}

/// One host process, killed on drop.
pub struct Host {
    /// The process.
    pub child: Child,
    /// Base URL of its REST API.
    pub http: String,
    /// Base URL of its registry API.
    pub registry: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a host; its log goes to `host-<n>.log` beside the config, so a
/// failed run can be read afterwards, and its errors to the test's output.
pub fn start(config: &Path) -> Host {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_path = config.with_file_name(format!("host-{n}.log"));
    let mut log = std::io::BufWriter::new(std::fs::File::create(&log_path).unwrap());
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHYARD__") {
            command.env_remove(name);
        }
    }
    // Owned by a `Host` at once, so every path kills and waits for it.
    let mut host = Host {
        child: command
            .args(["serve", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        http: String::new(),
        registry: String::new(),
        log: log_path.clone(),
    };
    let stderr = host.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::Write;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\"level\":\"ERROR\"") || line.contains("\"level\":\"WARN\"") {
                eprintln!("host {n}: {line}");
            }
            let _ = writeln!(log, "{line}");
            let _ = log.flush();
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("host logs that it listens (is the stack up?)");
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if record["message"] == "switchyard listening" {
            host.http = format!("http://{}", record["http"].as_str().unwrap());
            host.registry = format!("http://{}", record["registry"].as_str().unwrap());
            // Keep draining so the host never blocks on a full pipe.
            std::thread::spawn(move || for _ in rx {});
            return host;
        }
    }
}

/// A plain HTTP/1.1 GET over a fresh connection: thousands of state
/// queries are cheap this way.
pub fn get(url: &str) -> (u16, Value) {
    let (code, body) = get_text(url);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A plain HTTP/1.1 GET of a text body.
pub fn get_text(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

pub fn send(method: &str, url: &str, body: &Value) -> (u16, Value) {
    let output = Command::new("curl")
        .args([
            "-sS",
            "-X",
            method,
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(body.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Sends a signal to a host process.
pub fn signal(host: &Host, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &host.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Waits until a host's routing engine and aggregator both own partitions.
pub fn wait_working(host: &Host, aggregator: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, routing) = get(&format!("{}/v1/routing", host.http));
        let (_, aggregators) = get(&format!("{}/v1/admin/aggregators", host.http));
        let routed = routing["assigned"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let aggregating = aggregators["aggregators"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["plugin"] == aggregator && a["assigned"].as_array().is_some_and(|p| !p.is_empty())
            });
        if routed && aggregating {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "host got no partitions: {routing} {aggregators}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Server-Sent Events stream read by `curl -N`, one `(event, data)`
/// pair per frame, until the process is dropped.
pub struct Sse {
    child: Child,
    frames: std::sync::mpsc::Receiver<(String, String)>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sse {
    /// Opens a stream; the first frame (`subscribed`) has arrived when this
    /// returns, so events written from then on are seen.
    pub fn open(url: &str) -> Sse {
        let mut child = Command::new("curl")
            .args(["-sN", "--max-time", "300", url])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, frames) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut event, mut data) = (String::new(), String::new());
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_string();
                } else if let Some(more) = line.strip_prefix("data:") {
                    data.push_str(more.trim());
                } else if line.is_empty()
                    && !(event.is_empty() && data.is_empty())
                    && tx
                        .send((std::mem::take(&mut event), std::mem::take(&mut data)))
                        .is_err()
                {
                    return;
                }
            }
        });
        let sse = Sse { child, frames };
        let (event, data) = sse
            .next(Duration::from_secs(30))
            .expect("the stream opens with a frame");
        assert_eq!(event, "subscribed", "{data}");
        sse
    }

    /// The next frame, if one comes within `wait`.
    pub fn next(&self, wait: Duration) -> Option<(String, String)> {
        self.frames.recv_timeout(wait).ok()
    }
}
