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
