//! The `switchyard` binary as an operator runs it: a bad config stops it at
//! start-up naming the key, and SIGTERM stops it cleanly after flushing.
//! The SIGTERM test needs the local stack's Kafka (`scripts/stack.sh up`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    // The test's own environment must not leak overrides into the host.
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHYARD__") {
            command.env_remove(name);
        }
    }
    command
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_bad_config_fails_at_start_up_naming_the_key() {
    let file = temp_file("typo.toml", "[kafka]\nbootstrap = \"127.0.0.1:9092\"\n");
    let output = binary()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bootstrap"), "{stderr}");

    let file = temp_file("wrong-type.toml", "[http]\nmax_body_bytes = \"big\"\n");
    let output = binary()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`http.max_body_bytes`"), "{stderr}");

    let output = binary()
        .args(["serve"])
        .env("SWITCHYARD__KAFKA__PARTITIONS", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`kafka.partitions`"));

    let output = binary()
        .args(["serve", "--config", "/nonexistent/switchyard.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/switchyard.toml"));
}

#[test]
fn sigterm_stops_the_host_cleanly() {
    let kafka =
        std::env::var("SWITCHYARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");
    let config = temp_file(
        "serve.toml",
        &format!(
            "[kafka]\nbootstrap_servers = \"{kafka}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n\
             [registry]\nlisten = \"127.0.0.1:0\"\nschemas_dir = \"{schemas}\"\n[log]\nformat = \"json\"\n"
        ),
    );
    let mut child = binary()
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // Wait for the lifecycle line that names the bound address.
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("host logs that it listens (is the stack up?)");
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if record["message"] == "switchyard listening" {
            break record["http"].as_str().unwrap().to_string();
        }
    };

    // It serves.
    let response = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://{http}/healthz")])
        .output()
        .unwrap();
    assert!(response.status.success());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let logged: Vec<String> = lines_rx.try_iter().collect();
            panic!(
                "host did not stop within 20 s of SIGTERM; it logged:\n{}",
                logged.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "exit status {exit}");
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("\"SIGTERM\"")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
}
