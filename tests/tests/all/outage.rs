//! Kafka stopped: a publish fails with 503 within a bounded time instead of
//! hanging, nothing is half-published, and publishing works again once Kafka
//! is back. The test runs its own broker (same script, other ports and
//! folder), so stopping it disturbs no other test.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_tests::{TestHost, repo_root, test_config};

/// Ports of the test's own broker; override with
/// `SWITCHYARD_TEST_OUTAGE_PORT` when running two test suites at once.
fn ports() -> (u16, u16) {
    let port = std::env::var("SWITCHYARD_TEST_OUTAGE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19092);
    (port, port + 1)
}

fn stack(command: &str, dir: &std::path::Path) {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/stack.sh"))
        .args([command, "kafka"])
        .env("SWITCHYARD_STACK_DIR", dir)
        .env("SWITCHYARD_KAFKA_PORT", ports().0.to_string())
        .env("SWITCHYARD_KAFKA_CONTROLLER_PORT", ports().1.to_string())
        .status()
        .expect("stack script runs");
    assert!(status.success(), "scripts/stack.sh {command} failed");
}

struct Broker(std::path::PathBuf);

impl Drop for Broker {
    fn drop(&mut self) {
        stack("down", &self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn reconsideration(n: u32) -> serde_json::Value {
    json!({"key": format!("outage-{n}"), "object": {
        "claim_id": format!("outage-{n}"), "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_down_gives_503_quickly_and_recovers() {
    let dir = std::env::temp_dir().join(format!("switchyard-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker(dir.clone());
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || stack("up", &dir)
    })
    .await
    .unwrap();

    let mut config = test_config(&format!("127.0.0.1:{}", ports().0));
    config.plugins.dir = None;
    config.kafka.publish_timeout_ms = 3_000;
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = host.url("/v1/events/claim/reconsideration-received");

    let response = client
        .post(&url)
        .json(&reconsideration(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut acknowledged = vec![
        response.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string(),
    ];

    // A route, so that changing it later needs nothing but its write.
    let route =
        json!({"owner": "t", "source": {"nouns": ["claim"]}, "destinations": ["portal.claims"]});
    let response = client
        .put(host.url("/v1/routes/outage-route"))
        .json(&route)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || stack("down", &dir)
    })
    .await
    .unwrap();

    // A single publish and a batch both fail fast and say so.
    let started = Instant::now();
    let response = client
        .post(&url)
        .json(&reconsideration(2))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(elapsed < Duration::from_secs(8), "503 took {elapsed:?}");
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "kafka-unavailable");
    assert!(
        problem["stored"] == "no" || problem["stored"] == "maybe",
        "{problem}"
    );
    let mut maybe_stored = Vec::new();
    if problem["stored"] == "maybe" {
        maybe_stored.push("outage-2".to_string());
    }

    let started = Instant::now();
    let batch = json!({"events": [
        {"noun": "claim", "verb": "reconsideration-received", "key": "outage-3", "object": reconsideration(3)["object"]},
        {"noun": "claim", "verb": "reconsideration-received", "key": "outage-4", "object": reconsideration(4)["object"]},
    ]});
    let response = client
        .post(host.url("/v1/events:batch"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(8));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["failed"], 2, "{body}");
    for result in body["results"].as_array().unwrap() {
        assert_eq!(result["error"]["code"], "kafka-unavailable");
    }

    // A route change fails as plainly, within its own deadline.
    let started = Instant::now();
    let response = client
        .put(host.url("/v1/routes/outage-route"))
        .json(&route)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(elapsed < Duration::from_secs(15), "503 took {elapsed:?}");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "kafka-unavailable", "{problem}");
    assert_eq!(problem["stored"], "no", "{problem}");

    // Kafka back: publishing works again without restarting the host.
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || stack("up", &dir)
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .post(&url)
            .json(&reconsideration(5))
            .send()
            .await
            .unwrap();
        if response.status() == 201 {
            acknowledged.push(
                response.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "publishing did not recover within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Nothing half-published: the topic holds every acknowledged event, and
    // only those (a `stored: maybe` failure may have landed; nothing else).
    let records = read_all(&format!("127.0.0.1:{}", ports().0), "claim").await;
    for id in &acknowledged {
        assert!(
            records.iter().any(|(rid, _)| rid == id),
            "acknowledged event {id} is missing"
        );
    }
    for (id, key) in &records {
        assert!(
            acknowledged.contains(id) || maybe_stored.contains(key),
            "unexpected record {id} ({key})"
        );
    }
    assert!(
        !records
            .iter()
            .any(|(_, key)| key == "outage-3" || key == "outage-4")
            || body["results"][0]["error"]["stored"] == "maybe"
    );

    tokio::task::spawn_blocking(move || host.stop().unwrap())
        .await
        .unwrap();
    drop(broker);
}

async fn read_all(bootstrap: &str, topic: &str) -> Vec<(String, String)> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "outage-check")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut remaining = 0;
        for partition in metadata.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition.id(), Duration::from_secs(10))
                .unwrap();
            remaining += high - low;
            list.add_partition_offset(&topic, partition.id(), rdkafka::Offset::Offset(low))
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while remaining > 0 && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
                remaining -= 1;
                let id = message
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "ce_id")
                            .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                    })
                    .unwrap_or_default();
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                records.push((id, key));
            }
        }
        records
    })
    .await
    .unwrap()
}
