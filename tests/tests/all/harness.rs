//! The local plugin harness (what `switchyard plugin test` runs), without
//! Kafka: the X12 transformer's output feeds the claim appeal aggregator, and
//! what the aggregator emits satisfies its registered schema.

use std::path::PathBuf;

use serde_json::{Value, json};
use switchyard::config::PluginsConfig;
use switchyard::plugin::harness::{self, TestEvent};
use switchyard_tests::{repo_root, shared_data};

fn plugin(name: &str) -> switchyard::plugin::Plugin {
    let dir = PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR"));
    harness::load(
        &PluginsConfig::default(),
        &dir.join(format!("{name}.wasm")),
        None,
    )
    .unwrap()
}

fn test_event(value: Value) -> TestEvent {
    serde_json::from_value(value).unwrap()
}

#[test]
fn transformer_output_feeds_the_aggregator() {
    let transformer = plugin("x12-277-transformer");
    let aggregator = plugin("claim-appeal-aggregator");
    let mut statuses = Vec::new();
    for (minute, file) in [
        "lfh__277__claim-level-status.277",
        "lfh__277__provider-level-status.277",
    ]
    .iter()
    .enumerate()
    {
        let interchange =
            std::fs::read_to_string(shared_data().join("x12/277").join(file)).unwrap();
        let (results, ok) = harness::run(
            &transformer,
            vec![test_event(
                json!({"noun": "edi", "verb": "x12-received", "key": file, "object": {"interchange": interchange}}),
            )],
        );
        assert!(ok, "{results:?}");
        for emitted in results[0]["events"].as_array().unwrap() {
            statuses.push(json!({
                "noun": emitted["noun"], "verb": emitted["verb"], "key": emitted["key"], "object": emitted["object"],
                "id": format!("{file}-{}", emitted["key"].as_str().unwrap()),
                "time": format!("2026-12-01T10:0{minute}:00Z"),
            }));
        }
    }
    statuses.push(json!({"noun": "claim", "verb": "reconsideration-received", "key": "ABCXYZ1", "id": "recon-1",
        "time": "2026-12-01T10:05:00Z",
        "object": {"claim_id": "ABCXYZ1", "provider_id": "1666666661", "reason": "r", "received_at": "2026-12-01T10:05:00Z"}}));
    let count = statuses.len();
    let (results, ok) = harness::run(&aggregator, statuses.into_iter().map(test_event).collect());
    assert!(ok, "{results:?}");
    assert_eq!(results.len(), count);

    // ABCXYZ1: P3:317 at 10:00 (claim-level file), P3:317 again at 10:01
    // (provider-level file), then a reconsideration.
    let last = results.last().unwrap();
    let summary = &last["events"][0];
    assert_eq!(summary["verb"], "appeal-summary-updated");
    let object = &summary["object"];
    assert_eq!(object["claim_id"], "ABCXYZ1");
    assert_eq!(object["status_changes"], 2);
    assert_eq!(object["reconsiderations"], 1);
    assert_eq!(
        object["current_status"],
        json!({"category": "P3", "code": "317", "since": "2026-12-01T10:01:00Z"})
    );
    assert_eq!(
        object["time_in_status"],
        json!([{"status": "P3:317", "millis": 60_000}])
    );

    // The summary is a valid `claim.appeal-summary-updated` object.
    let text =
        std::fs::read_to_string(repo_root().join("schemas/claim/appeal-summary-updated.avsc"))
            .unwrap();
    let schema = switchyard::avro::Schema::parse_str(&text).unwrap();
    for result in &results {
        for event in result["events"].as_array().unwrap() {
            switchyard::avro::encode_json(&schema, &event["object"]).unwrap_or_else(|e| {
                panic!("summary does not fit its schema: {e}: {}", event["object"])
            });
        }
    }
}

#[test]
fn the_harness_reports_failures_and_skips() {
    let transformer = plugin("x12-277-transformer");
    let (results, ok) = harness::run(
        &transformer,
        vec![
            test_event(
                json!({"noun": "edi", "verb": "x12-received", "key": "k", "object": {"interchange": "ISA*garbage"}}),
            ),
            test_event(
                json!({"noun": "claim", "verb": "status-changed", "key": "k", "object": {}}),
            ),
        ],
    );
    assert!(!ok);
    assert_eq!(results[0]["outcome"], "failed");
    assert_eq!(results[0]["class"], "plugin-error");
    assert_eq!(results[1]["outcome"], "skipped");
}
