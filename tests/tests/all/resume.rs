//! SSE resume with `Last-Event-ID` after a dropped connection: no gap, no
//! duplicate; an unusable id gets an explicit reset.

use std::time::Duration;

use serde_json::json;
use switchyard_tests::{SseReader, post_json, shared_host, unique};

async fn publish(host: &switchyard_tests::TestHost, key: &str, n: usize) -> String {
    let (status, _, body) = post_json(
        &host.url("/v1/events/claim/reconsideration-received"),
        &json!({"key": key, "object": {
            "claim_id": format!("{key}-{n}"), "provider_id": "1", "reason": format!("n{n}"),
            "received_at": "2026-01-01T00:00:00Z"
        }}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn resume_after_a_dropped_connection_has_no_gap_and_no_duplicate() {
    let host = shared_host();
    // Two keys so events spread over partitions; the stream filters on verb.
    let keys = [unique("A"), unique("B")];
    let url = host.url("/v1/nouns/claim/events?verb=reconsideration-received");
    let mut first = SseReader::connect(&url, None).await.unwrap();
    first
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();

    let mut published = Vec::new();
    for n in 0..10 {
        published.push(publish(host, &keys[n % 2], n).await);
    }

    // Read our first four events, then drop the connection.
    let mut seen = Vec::new();
    let mut last_id = None;
    while seen.len() < 4 {
        let frame = first
            .until_event("claim.reconsideration-received", Duration::from_secs(15))
            .await
            .expect("event");
        let id = frame.json()["id"].as_str().unwrap().to_string();
        if published.contains(&id) {
            seen.push(id);
            last_id = frame.id.clone();
        }
    }
    drop(first);

    // More events while disconnected.
    for n in 10..16 {
        published.push(publish(host, &keys[n % 2], n).await);
    }

    let mut second = SseReader::connect(&url, last_id.as_deref()).await.unwrap();
    let subscribed = second
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        subscribed.id, last_id,
        "the stream restarts exactly where it was"
    );
    while seen.len() < published.len() {
        let Some(frame) = second.next(Duration::from_secs(15)).await else {
            break;
        };
        assert_ne!(
            frame.event.as_deref(),
            Some("reset"),
            "no reset for a valid id"
        );
        if frame.event.as_deref() != Some("claim.reconsideration-received") {
            continue;
        }
        let id = frame.json()["id"].as_str().unwrap().to_string();
        if published.contains(&id) {
            assert!(!seen.contains(&id), "duplicate after resume: {id}");
            seen.push(id);
        }
    }
    // Nothing more of ours arrives.
    while let Some(frame) = second.next(Duration::from_secs(2)).await {
        if frame.event.as_deref() == Some("claim.reconsideration-received") {
            let id = frame.json()["id"].as_str().unwrap().to_string();
            assert!(
                !published.contains(&id),
                "duplicate after every event was seen: {id}"
            );
        }
    }
    let mut expected = published.clone();
    expected.sort();
    seen.sort();
    assert_eq!(
        seen, expected,
        "every event exactly once across the reconnect"
    );
}

#[tokio::test]
async fn a_position_beyond_the_log_gets_an_explicit_reset() {
    let host = shared_host();
    let url = host.url("/v1/nouns/claim/events");
    let mut stream = SseReader::connect(&url, Some("0:999999999,1:999999999,2:999999999"))
        .await
        .unwrap();
    assert_eq!(stream.status, 200);
    stream
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    let reset = stream
        .next(Duration::from_secs(10))
        .await
        .expect("reset frame");
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert!(
        reset.json()["reason"]
            .as_str()
            .unwrap()
            .contains("partition")
    );
    assert!(reset.id.is_some());
}

#[tokio::test]
async fn a_malformed_last_event_id_is_refused() {
    let host = shared_host();
    let response = reqwest::Client::new()
        .get(host.url("/v1/nouns/claim/events"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "invalid-position");
}

#[tokio::test]
async fn grpc_resume_from_a_position_has_no_gap_and_no_duplicate() {
    use switchyard::grpc::proto;
    use switchyard::grpc::proto::events_client::EventsClient;

    let host = shared_host();
    let key = unique("G");
    let mut client = EventsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let request = |start| proto::SubscribeRequest {
        target: Some(proto::subscribe_request::Target::Noun("claim".into())),
        verbs: vec![],
        key: key.clone(),
        start: Some(start),
    };
    let mut stream = client
        .subscribe(request(proto::subscribe_request::Start::Latest(true)))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();

    let mut published = Vec::new();
    for n in 0..4 {
        published.push(publish(host, &key, n).await);
    }
    let mut seen = Vec::new();
    let mut position = String::new();
    while seen.len() < 2 {
        let delivery = stream.message().await.unwrap().unwrap();
        if let Some(proto::delivery::Kind::Event(event)) = delivery.kind {
            seen.push(event.id);
            position = delivery.position;
        }
    }
    drop(stream);
    for n in 4..6 {
        published.push(publish(host, &key, n).await);
    }

    let mut resumed = client
        .subscribe(request(proto::subscribe_request::Start::After(
            position.clone(),
        )))
        .await
        .unwrap()
        .into_inner();
    let first = resumed.message().await.unwrap().unwrap();
    assert_eq!(first.position, position);
    while seen.len() < published.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(15), resumed.message())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        if let Some(proto::delivery::Kind::Event(event)) = delivery.kind {
            assert!(!seen.contains(&event.id), "duplicate {}", event.id);
            seen.push(event.id);
        }
    }
    // One key, one partition: the order is the publish order.
    assert_eq!(seen, published);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), resumed.message())
            .await
            .is_err(),
        "nothing more arrives"
    );

    let status = client
        .subscribe(request(proto::subscribe_request::Start::After(
            "nonsense".into(),
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .subscribe(request(proto::subscribe_request::Start::After(
            String::new(),
        )))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "an empty position is not `latest`"
    );
}

#[tokio::test]
async fn a_position_missing_partitions_gets_a_reset_naming_them() {
    let host = shared_host();
    let mut stream = SseReader::connect(&host.url("/v1/nouns/claim/events"), Some("0:0"))
        .await
        .unwrap();
    stream
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    let reset = stream
        .next(Duration::from_secs(10))
        .await
        .expect("reset frame");
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert!(
        reset.json()["reason"]
            .as_str()
            .unwrap()
            .contains("does not include partition"),
        "{}",
        reset.data
    );
}

#[tokio::test]
async fn trace_headers_are_carried_only_when_valid() {
    let host = shared_host();
    let key = unique("T");
    let url = host.url(&format!("/v1/nouns/claim/events?key={key}"));
    let mut stream = SseReader::connect(&url, None).await.unwrap();
    stream
        .until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let client = reqwest::Client::new();
    for traceparent in ["garbage!!", valid] {
        let response = client
            .post(host.url("/v1/events/claim/reconsideration-received"))
            .header("traceparent", traceparent)
            .header("baggage", "tenant=acme")
            .json(&json!({"key": key, "object": {"claim_id": key, "provider_id": "1", "reason": traceparent, "received_at": "2026-01-01T00:00:00Z"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "a bad traceparent never fails the request"
        );
    }
    let first = stream
        .until_event("claim.reconsideration-received", Duration::from_secs(15))
        .await
        .unwrap()
        .json();
    assert!(first["extensions"].get("traceparent").is_none(), "{first}");
    assert!(first["extensions"].get("baggage").is_none());
    let second = stream
        .until_event("claim.reconsideration-received", Duration::from_secs(15))
        .await
        .unwrap()
        .json();
    assert_eq!(second["extensions"]["traceparent"], valid);
    assert_eq!(second["extensions"]["baggage"], "tenant=acme");
}
