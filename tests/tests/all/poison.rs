//! Records that a pipeline cannot decode (not framed for the registry, an
//! unknown schema id, a truncated body) go to the dead-letter topic with a
//! reason that says which, and the partition keeps moving: the event behind
//! them on the same key is routed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use switchyard_tests::{SseReader, kafka_bootstrap, post_json, shared_host, unique};

const DEAD_LETTER: &str = "switchyard.dead-letter";

fn status_object(key: &str, provider: &str) -> serde_json::Value {
    json!({
        "claim_id": key,
        "payer": {"name": "ACME HEALTH", "id": "12345"},
        "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": provider},
        "status_category_code": "F1",
        "status_code": "20",
        "interchange_control_number": "000000001",
        "transaction_set": "005010X212"
    })
}

/// Waits for an event of `key` on a portal topic.
async fn wait_routed(host: &switchyard_tests::TestHost, topic: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut stream = switchyard_tests::topic_from_start(host, topic, deadline)
        .await
        .unwrap_or_else(|| panic!("`{topic}` never appeared"));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = stream
            .next(left)
            .await
            .unwrap_or_else(|| panic!("nothing routed to `{topic}` for `{key}`"));
        if frame.event.as_deref() == Some("claim.status-changed") && frame.json()["key"] == key {
            return;
        }
    }
}

#[tokio::test]
async fn undecodable_records_are_dead_lettered_with_their_reason_and_the_partition_moves_on() {
    let host = shared_host();
    let bootstrap = kafka_bootstrap();

    // The router is running: a first event of this test is routed.
    let key = unique("POISON");
    let provider = unique("P").replace('-', "");
    let (status, _, body) = post_json(
        &host.url("/v1/events/claim/status-changed"),
        &json!({"key": key, "object": status_object(&key, &provider)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let schema_id = body["schema_id"].as_u64().unwrap() as u32;
    let portal = format!("portal.provider.{provider}");
    wait_routed(host, &portal, &key).await;

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let metadata = probe
        .fetch_metadata(Some(DEAD_LETTER), Duration::from_secs(10))
        .unwrap();
    let mut from = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        let (_, high) = probe
            .fetch_watermarks(DEAD_LETTER, partition.id(), Duration::from_secs(10))
            .unwrap();
        from.add_partition_offset(DEAD_LETTER, partition.id(), Offset::Offset(high))
            .unwrap();
    }

    // Three bad records on the event's key, straight into the noun topic.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut truncated = vec![0_u8];
    truncated.extend_from_slice(&schema_id.to_be_bytes());
    truncated.push(0x02);
    let mut unknown = vec![0_u8];
    unknown.extend_from_slice(&0x7fff_fff0_u32.to_be_bytes());
    unknown.extend_from_slice(b"\x02a");
    let bad: [(&str, Vec<u8>); 3] = [
        ("raw-json", br#"{"claim_id":"not avro"}"#.to_vec()),
        ("unknown-id", unknown),
        ("truncated", truncated),
    ];
    for (label, payload) in &bad {
        let id = format!("{key}-{label}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: "ce_source",
                value: Some("/tests/poison"),
            })
            .insert(Header {
                key: "ce_type",
                value: Some("claim.status-changed"),
            })
            .insert(Header {
                key: "ce_time",
                value: Some("2026-01-01T00:00:00.000Z"),
            })
            .insert(Header {
                key: "ce_subject",
                value: Some(key.as_str()),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/avro"),
            });
        producer
            .send(
                FutureRecord::to("claim")
                    .key(key.as_str())
                    .payload(payload.as_slice())
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }

    // The next event on the same key still goes through.
    let (status, _, body) = post_json(
        &host.url("/v1/events/claim/status-changed"),
        &json!({"key": key, "object": status_object(&key, &provider)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let after = body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut stream = SseReader::connect(
        &host.url(&format!("/v1/topics/{portal}/events?start=earliest")),
        None,
    )
    .await
    .unwrap();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = stream
            .next(left)
            .await
            .expect("the event behind the bad ones is routed");
        if frame.event.as_deref() == Some("claim.status-changed") && frame.json()["id"] == after {
            break;
        }
    }

    // Each bad record is in the dead-letter topic with its own reason.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", unique("poison-check"))
        // The pipelines dead-letter outside transactions; other tests'
        // exactly-once loops write to this topic in transactions, and one
        // left open by a stopped host would hide everything after it from
        // a `read_committed` reader for a while.
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    consumer.assign(&from).unwrap();
    let mut reasons: HashMap<String, (String, String)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reasons.len() < bad.len() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let Some(headers) = message.headers() else {
            continue;
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(id) = header("ce_id").filter(|id| id.starts_with(&key)) {
            reasons.insert(
                id,
                (
                    header("switchyard-dlq-class").unwrap_or_default(),
                    header("switchyard-dlq-reason").unwrap_or_default(),
                ),
            );
        }
    }
    for (label, expected) in [
        ("raw-json", "not a schema-registry framed message"),
        ("unknown-id", "is not in the registry"),
        ("truncated", "exceeds the remaining input"),
    ] {
        let (class, reason) = reasons
            .get(&format!("{key}-{label}"))
            .unwrap_or_else(|| panic!("`{label}` was not dead-lettered: {reasons:?}"));
        assert_eq!(class, "undecodable", "{label}");
        assert!(reason.contains(expected), "{label}: {reason}");
    }
}
