//! The Avro records on Kafka decode with an independent Confluent-format
//! reader: Confluent's Python client and its AvroDeserializer, using the
//! schema it fetches by id from the embedded registry.

use std::process::Command;

use serde_json::{Value, json};
use switchyard_tests::{kafka_bootstrap, post_json, repo_root, shared_host, unique};

/// The Python with `confluent-kafka` and `fastavro`, installed by
/// `scripts/setup.sh`.
fn python() -> String {
    std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        let cache = std::env::var("SWITCHYARD_CACHE")
            .unwrap_or_else(|_| format!("{home}/.cache/switchyard"));
        format!("{cache}/venv/bin/python")
    })
}

#[tokio::test]
async fn confluent_python_client_decodes_what_switchyard_wrote() {
    let host = shared_host();
    let key = unique("CLM");
    let objects = [
        json!({"claim_id": key, "provider_id": "1666666661", "reason": "resubmitted with records",
               "received_at": "2026-11-30T14:05:09.120Z", "disputed_amount": "-0.05"}),
        json!({"claim_id": key, "provider_id": "1666666661", "reason": "ünïcode ✓",
               "received_at": "1999-12-31T23:59:59.999Z", "disputed_amount": null}),
    ];
    let mut ids = Vec::new();
    for object in &objects {
        let (status, _, body) = post_json(
            &host.url("/v1/events/claim/reconsideration-received"),
            &json!({"key": key, "object": object, "source": "/tests/wire"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }

    let registry = format!("http://{}", host.registry);
    let script = repo_root().join("tests/python/confluent_read.py");
    let ids_for_python = ids.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(kafka_bootstrap())
            .arg(registry)
            .arg("claim")
            .args(&ids_for_python)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs; scripts/setup.sh installs it");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );

    let records: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{stdout}");
    for record in records {
        let id = record["headers"]["ce_id"].as_str().unwrap();
        let index = ids.iter().position(|i| i == id).unwrap();
        assert_eq!(record["magic"], 0);
        assert_eq!(record["key"], key);
        assert_eq!(record["object"], objects[index], "decoded by fastavro");
        let headers = &record["headers"];
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_type"], "claim.reconsideration-received");
        assert_eq!(headers["ce_source"], "/tests/wire");
        assert_eq!(headers["ce_subject"], key);
        assert_eq!(headers["content-type"], "application/avro");
        assert!(headers["ce_time"].as_str().unwrap().ends_with('Z'));
    }
}

/// Runs `tests/python/confluent_client.py` with arguments; its stdout lines
/// as JSON.
async fn confluent_client(args: Vec<String>) -> Vec<Value> {
    let script = repo_root().join("tests/python/confluent_client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python()).arg(script).args(&args).output()
    })
    .await
    .unwrap()
    .expect("python runs; scripts/setup.sh installs it");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn confluent_python_registry_client_works_against_the_embedded_registry() {
    let host = shared_host();
    let subject = unique("python-probe");
    let report = confluent_client(vec![
        "registry".into(),
        format!("http://{}", host.registry),
        subject.clone(),
    ])
    .await
    .remove(0);
    let v1 = report["v1_id"].clone();
    assert!(v1.as_u64().is_some(), "{report}");
    assert_eq!(report["v1_again_id"], v1);
    assert_eq!(report["fetched_equal"], true);
    assert_eq!(report["fetched_type"], "AVRO");
    assert_eq!(report["latest"], json!({"version": 1, "id": v1}));
    assert_eq!(report["lookup"], json!({"version": 1, "id": v1}));
    assert_eq!(report["subject_listed"], true);
    assert_eq!(report["v2_compatible"], true, "{report}");
    assert_eq!(report["bad_compatible"], false, "{report}");
    assert_eq!(report["bad_register"]["status"], 409, "{report}");
    assert_eq!(report["bad_register"]["code"], 409, "{report}");
    assert!(
        report["bad_register"]["message"]
            .as_str()
            .unwrap()
            .contains('c'),
        "{report}"
    );
    assert_ne!(report["v2_id"], v1);
    assert_eq!(report["versions"], json!([1, 2]));
    assert_eq!(report["set_level"]["compatibility"], "FULL", "{report}");
    assert_eq!(report["level"], "FULL", "{report}");
    assert_eq!(report["global_level"], "BACKWARD", "{report}");
    assert_eq!(report["deleted_version"], 1);
    assert_eq!(report["versions_after"], json!([2]));
    assert_eq!(report["soft_deleted"], json!([2]));
    assert_eq!(report["hard_deleted"], json!([1, 2]));
    assert_eq!(report["after_delete"]["code"], 40401, "{report}");
    assert_eq!(report["v1_still_by_id"], true);
}

/// Every field set in `set` (recursively, in records and arrays) is equal
/// in `read`; fields `set` leaves out may hold anything (their defaults).
fn assert_set_fields_equal(set: &Value, read: &Value, path: &str) {
    match (set, read) {
        (Value::Object(set), Value::Object(read)) => {
            for (field, value) in set {
                let got = read.get(field).unwrap_or(&Value::Null);
                assert_set_fields_equal(value, got, &format!("{path}.{field}"));
            }
        }
        (Value::Array(set), Value::Array(read)) => {
            assert_eq!(set.len(), read.len(), "{path}");
            for (index, (a, b)) in set.iter().zip(read).enumerate() {
                assert_set_fields_equal(a, b, &format!("{path}[{index}]"));
            }
        }
        _ => assert_eq!(set, read, "{path}"),
    }
}

#[tokio::test]
async fn a_confluent_python_producers_records_reach_sse_and_grpc_subscribers() {
    use std::time::Duration;

    use switchyard::grpc::proto;
    use switchyard::grpc::proto::events_client::EventsClient;
    use switchyard_tests::SseReader;

    let host = shared_host();
    let key = unique("PY");
    let mut sse = SseReader::connect(
        &host.url(&format!("/v1/nouns/claim/events?key={key}")),
        None,
    )
    .await
    .unwrap();
    sse.until_event("subscribed", Duration::from_secs(10))
        .await
        .expect("sse subscribed");
    let mut client = EventsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let mut stream = client
        .subscribe(proto::SubscribeRequest {
            target: Some(proto::subscribe_request::Target::Noun("claim".into())),
            verbs: vec!["status-changed".into()],
            key: key.clone(),
            start: None,
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();

    let produced = confluent_client(vec![
        "produce".into(),
        kafka_bootstrap(),
        format!("http://{}", host.registry),
        key.clone(),
    ])
    .await;
    assert_eq!(produced.len(), 2);
    for expected in &produced {
        let frame = sse
            .until_event("claim.status-changed", Duration::from_secs(15))
            .await
            .expect("sse event");
        let event = frame.json();
        assert_eq!(event["id"], expected["id"]);
        assert_eq!(event["source"], "/tests/python");
        assert_eq!(event["schema_id"], expected["schema_id"]);
        // Every field the Python producer set reads back equal; the rest
        // are the schema's defaults.
        assert_set_fields_equal(&expected["object"], &event["object"], "$");
        assert_eq!(event["object"]["patient"], Value::Null);

        let delivery = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("grpc event in time")
            .unwrap()
            .unwrap();
        let Some(proto::delivery::Kind::Event(grpc)) = delivery.kind else {
            panic!("expected an event, got {delivery:?}");
        };
        assert_eq!(grpc.id, expected["id"].as_str().unwrap());
        let object: Value = serde_json::from_str(&grpc.object_json).unwrap();
        assert_eq!(object, event["object"]);
    }
}
