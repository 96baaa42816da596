//! Every X12 277 sample goes through the REST API and the transformer; the
//! claim statuses that come out are the ones a person reading the files
//! lists (written here by hand), and each is routed to its provider's portal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::{SseReader, post_json, shared_data, shared_host, unique};

/// (file, [(claim id, status category, status code)]) read off the files.
/// A claim status as (claim id, status category, status code).
type Status = (&'static str, &'static str, &'static str);

const EXPECTED: &[(&str, &[Status])] = &[
    (
        "lfh__277__claim-level-status.277",
        &[
            ("ABCXYZ1", "P3", "317"),
            ("ABCXYZ2", "F0", "3"),
            ("ABCXYC3", "F2", "88"),
        ],
    ),
    // The provider-level E0:24:85 is about the provider, not a claim.
    (
        "lfh__277__provider-level-status.277",
        &[("ABCXYZ1", "P3", "317")],
    ),
    // A whole-request error at the information receiver: no claims at all.
    ("lfh__277__information-receiver-level-status.277", &[]),
    (
        "lfh__277__claim-level-status-ncpdp.277",
        &[("ABCXYZ1", "F2", "80")],
    ),
    // 277CA: the receiver-level A1:20 acknowledges the batch, not a claim.
    (
        "imsweb__277ca__x12_277CA_accepted.txt",
        &[("5781", "A2", "20")],
    ),
    (
        "imsweb__277ca__x12_277CA_rejected.txt",
        &[("3920394930203", "A7", "562")],
    ),
];

/// Files that are not valid 277s, and a word their dead-letter reason has.
const INVALID: &[(&str, &str)] = &[("oopf__277ca__FromBogeyone.txt", "truncated")];

#[tokio::test]
async fn every_277_sample_yields_the_statuses_a_reader_would_list() {
    let host = shared_host();
    let run = unique("x12");
    let dir = shared_data().join("x12/277");

    let mut claims = SseReader::connect(
        &host.url("/v1/nouns/claim/events?verb=status-changed"),
        None,
    )
    .await
    .unwrap();
    claims
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .expect("subscribed");
    let mut dead = SseReader::connect(&host.url("/v1/topics/switchyard.dead-letter/events"), None)
        .await
        .unwrap();
    dead.until_event("subscribed", Duration::from_secs(10))
        .await
        .expect("subscribed");

    // Publish every file; remember which edi event each one became.
    let mut file_of_event: BTreeMap<String, &str> = BTreeMap::new();
    let all_files: Vec<&str> = EXPECTED
        .iter()
        .map(|(f, _)| *f)
        .chain(INVALID.iter().map(|(f, _)| *f))
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        on_disk,
        all_files.iter().map(ToString::to_string).collect(),
        "every sample file has expectations"
    );
    for file in &all_files {
        let interchange =
            String::from_utf8_lossy(&std::fs::read(dir.join(file)).unwrap()).into_owned();
        let (status, _, body) = post_json(
            &host.url("/v1/events/edi/x12-received"),
            &json!({"key": format!("{run}-{file}"), "object": {"interchange": interchange, "filename": file}}),
        )
        .await;
        assert_eq!(status, 201, "{file}: {body}");
        file_of_event.insert(body["id"].as_str().unwrap().to_string(), file);
    }

    // Collect the statuses caused by this run's events, until the expected
    // number arrived and a quiet second shows nothing more is coming.
    let expected_total: usize = EXPECTED.iter().map(|(_, s)| s.len()).sum();
    let mut got: BTreeMap<&str, Vec<(String, String, String)>> = BTreeMap::new();
    let mut events: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let wait = if events.len() >= expected_total {
            Duration::from_secs(2)
        } else {
            deadline - tokio::time::Instant::now()
        };
        let Some(frame) = claims.next(wait).await else {
            break;
        };
        if frame.event.as_deref() != Some("claim.status-changed") {
            continue;
        }
        let event = frame.json();
        let Some(file) = event["extensions"]["causationid"]
            .as_str()
            .and_then(|id| file_of_event.get(id))
        else {
            continue;
        };
        assert_eq!(
            event["extensions"]["switchyard-plugin"],
            "x12-277-transformer@0.1.0"
        );
        assert_eq!(event["key"], event["object"]["claim_id"]);
        let object = &event["object"];
        got.entry(file).or_default().push((
            object["claim_id"].as_str().unwrap().to_string(),
            object["status_category_code"].as_str().unwrap().to_string(),
            object["status_code"].as_str().unwrap().to_string(),
        ));
        events.push(event);
    }
    for (file, statuses) in EXPECTED {
        let mut expected: Vec<(String, String, String)> = statuses
            .iter()
            .map(|(c, k, s)| (c.to_string(), k.to_string(), s.to_string()))
            .collect();
        expected.sort();
        let mut actual = got.remove(file).unwrap_or_default();
        actual.sort();
        assert_eq!(actual, expected, "statuses of `{file}`");
    }
    assert!(got.is_empty(), "statuses from unexpected files: {got:?}");

    // The details of one claim, as read in the file.
    let fred = events
        .iter()
        .find(|e| e["object"]["claim_id"] == "ABCXYZ1" && e["object"]["status_code"] == "317")
        .unwrap();
    let object = &fred["object"];
    assert_eq!(object["payer"]["name"], "ABC INSURANCE");
    assert_eq!(object["provider"]["id"], "1666666661");
    assert_eq!(object["patient"]["name"], "SMITH, FRED");
    assert_eq!(object["total_charge"], "8513.88");
    assert_eq!(object["service_date_from"], "2005-08-31");
    assert_eq!(object["service_date_to"], "2005-09-06");
    let denied = events
        .iter()
        .find(|e| e["object"]["claim_id"] == "ABCXYC3")
        .unwrap();
    assert_eq!(
        denied["object"]["service_lines"][0]["procedure_code"],
        "HC:99203"
    );
    assert_eq!(denied["object"]["patient"]["name"], "MANN, JOSEPH");

    // The invalid file went to the dead-letter topic, with the reason.
    for (file, word) in INVALID {
        let key = format!("{run}-{file}");
        let frame = loop {
            let frame = dead
                .next(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("`{file}` was not dead-lettered"));
            if frame.event.as_deref() == Some("edi.x12-received") && frame.json()["key"] == key {
                break frame;
            }
        };
        let event = frame.json();
        let extensions = &event["extensions"];
        assert_eq!(
            extensions["switchyard-dlq-plugin"],
            "x12-277-transformer@0.1.0"
        );
        assert_eq!(extensions["switchyard-dlq-class"], "plugin-error");
        assert_eq!(extensions["switchyard-dlq-topic"], "edi");
        let reason = extensions["switchyard-dlq-reason"].as_str().unwrap();
        assert!(reason.contains(word) && reason.contains(file), "{reason}");
    }

    // Each status of the claim-level file reached its provider's portal
    // stream, unchanged.
    let claim_level: Vec<&Value> = events
        .iter()
        .filter(|e| {
            file_of_event.get(e["extensions"]["causationid"].as_str().unwrap())
                == Some(&"lfh__277__claim-level-status.277")
        })
        .collect();
    for event in claim_level {
        let provider = event["object"]["provider"]["id"].as_str().unwrap();
        let url = host.url(&format!(
            "/v1/topics/portal.provider.{provider}/events?start=earliest"
        ));
        let mut portal = SseReader::connect(&url, None).await.unwrap();
        let routed = loop {
            let frame = portal
                .next(Duration::from_secs(30))
                .await
                .expect("routed event on the portal stream");
            if frame.event.as_deref() == Some("claim.status-changed")
                && frame.json()["id"] == event["id"]
            {
                break frame.json();
            }
        };
        assert_eq!(routed["object"], event["object"]);
        assert_eq!(
            routed["extensions"]["switchyard-router"], "portal-router@0.1.0",
            "{routed}"
        );
        assert_eq!(
            routed["extensions"]["switchyard-plugin"],
            "x12-277-transformer@0.1.0"
        );
        assert_eq!(routed["topic"], format!("portal.provider.{provider}"));
    }
}
