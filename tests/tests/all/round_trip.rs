//! Publish over REST and gRPC, consume over SSE and gRPC streaming: the
//! objects that come back equal the objects that went in.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::grpc::proto;
use switchyard::grpc::proto::events_client::EventsClient;
use switchyard_tests::{SseReader, post_json, shared_host, unique};

fn reconsideration(claim_id: &str) -> Value {
    json!({
        "claim_id": claim_id,
        "provider_id": "1666666661",
        "reason": "timely filing limit was met; proof attached \u{2014} see line 2\nsecond line: event: forged",
        "received_at": "2026-11-30T14:05:09.120Z",
        "disputed_amount": "8513.88"
    })
}

#[tokio::test]
async fn rest_and_grpc_publish_come_back_equal_over_sse_and_grpc() {
    let host = shared_host();
    let key = unique("CLM");

    // Both subscriptions are live before anything is published.
    let mut sse = SseReader::connect(
        &host.url(&format!("/v1/nouns/claim/events?key={key}")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(sse.status, 200);
    assert!(
        sse.content_type.starts_with("text/event-stream"),
        "{}",
        sse.content_type
    );
    sse.until_event("subscribed", Duration::from_secs(10))
        .await
        .expect("sse subscribed");

    let mut client = EventsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let mut stream = client
        .subscribe(proto::SubscribeRequest {
            target: Some(proto::subscribe_request::Target::Noun("claim".into())),
            verbs: vec!["reconsideration-received".into()],
            key: key.clone(),
            start: None,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.kind,
        Some(proto::delivery::Kind::Subscribed(_))
    ));

    // One over REST, one over gRPC.
    let rest_object = reconsideration(&key);
    let (status, _, body) = post_json(
        &host.url("/v1/events/claim/reconsideration-received"),
        &json!({"key": key, "object": rest_object, "source": "/tests/rest"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rest_id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["topic"], "claim");

    let mut grpc_object = reconsideration(&key);
    grpc_object["disputed_amount"] = Value::Null;
    grpc_object["reason"] = json!("grpc");
    let published = client
        .publish(proto::PublishRequest {
            event: Some(proto::EventInput {
                time: String::new(),
                noun: "claim".into(),
                verb: "reconsideration-received".into(),
                key: key.clone(),
                object_json: grpc_object.to_string(),
                id: String::new(),
                source: "/tests/grpc".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.topic, "claim");
    assert!(published.schema_id > 0);

    // Same key, same partition: the REST event comes first.
    for (expected_id, expected_object, source) in [
        (rest_id.as_str(), &rest_object, "/tests/rest"),
        (published.id.as_str(), &grpc_object, "/tests/grpc"),
    ] {
        let frame = sse
            .until_event("claim.reconsideration-received", Duration::from_secs(15))
            .await
            .expect("sse event");
        let event = frame.json();
        assert_eq!(event["id"], expected_id);
        assert_eq!(event["key"], key);
        assert_eq!(event["source"], source);
        assert_eq!(&event["object"], expected_object);
        // Byte for byte: the JSON text of the object is the same.
        assert_eq!(event["object"].to_string(), expected_object.to_string());
        assert!(frame.id.is_some());

        let delivery = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("grpc event in time")
            .unwrap()
            .unwrap();
        let Some(proto::delivery::Kind::Event(event)) = delivery.kind else {
            panic!("expected an event, got {delivery:?}");
        };
        assert_eq!(event.id, expected_id);
        assert_eq!(event.r#type, "claim.reconsideration-received");
        let object: Value = serde_json::from_str(&event.object_json).unwrap();
        assert_eq!(&object, expected_object);
        assert_eq!(event.object_json, expected_object.to_string());
        assert!(!delivery.position.is_empty());
    }
}

#[tokio::test]
async fn rest_batch_reports_each_entry_in_order() {
    let host = shared_host();
    let key = unique("CLM");
    let good = |n: u32| {
        json!({"noun": "claim", "verb": "reconsideration-received", "key": key, "object": {
            "claim_id": format!("{key}-{n}"), "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"
        }})
    };
    let body = json!({"events": [
        good(1),
        {"noun": "claim", "verb": "no-such-verb", "key": key, "object": {}},
        good(2),
        {"noun": "claim", "verb": "reconsideration-received", "key": key, "object": {"claim_id": 1}},
        {"noun": "claim"},
    ]});
    let (status, _, body) = post_json(&host.url("/v1/events:batch"), &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["failed"], 3);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["status"], "ok");
    assert_eq!(results[1]["error"]["code"], "unknown-verb");
    assert_eq!(results[2]["status"], "ok");
    assert_eq!(results[3]["error"]["code"], "schema-violation");
    assert_eq!(results[3]["error"]["field"], "events[3].object.claim_id");
    assert_eq!(results[4]["error"]["code"], "malformed-request");
    // Per key order: the second good event lands after the first.
    assert_eq!(results[0]["partition"], results[2]["partition"]);
    assert!(results[2]["offset"].as_i64().unwrap() > results[0]["offset"].as_i64().unwrap());
}

#[tokio::test]
async fn grpc_batch_reports_each_entry_in_order() {
    let host = shared_host();
    let key = unique("CLM");
    let mut client = EventsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let entry = |verb: &str, object: Value| proto::EventInput {
        time: String::new(),
        noun: "claim".into(),
        verb: verb.into(),
        key: key.clone(),
        object_json: object.to_string(),
        id: String::new(),
        source: String::new(),
    };
    let good = json!({"claim_id": key, "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"});
    let response = client
        .publish_batch(proto::PublishBatchRequest {
            events: vec![
                entry("reconsideration-received", good.clone()),
                entry("reconsideration-received", json!({"claim_id": key})),
                proto::EventInput {
                    time: String::new(),
                    object_json: "{not json".into(),
                    ..entry("reconsideration-received", good.clone())
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.failed, 2);
    let outcomes: Vec<_> = response
        .results
        .into_iter()
        .map(|r| r.outcome.unwrap())
        .collect();
    assert!(matches!(outcomes[0], proto::batch_result::Outcome::Ok(_)));
    let proto::batch_result::Outcome::Error(missing) = &outcomes[1] else {
        panic!("expected an error")
    };
    assert_eq!(missing.code, "schema-violation");
    assert_eq!(missing.field, "events[1].object.provider_id");
    assert_eq!(missing.stored, "no");
    let proto::batch_result::Outcome::Error(malformed) = &outcomes[2] else {
        panic!("expected an error")
    };
    assert_eq!(malformed.code, "malformed-request");
}

#[tokio::test]
async fn a_retried_publish_is_answered_once() {
    let host = shared_host();
    let key = unique("CLM");
    let url = host.url("/v1/events/claim/reconsideration-received");
    let object = json!({"claim_id": key, "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"});
    let id = unique("evt");

    // By event id: the repeat returns the first result and says so.
    let (status, _, first) =
        post_json(&url, &json!({"key": key, "id": id, "object": object})).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["duplicate"], false);
    let (status, _, again) =
        post_json(&url, &json!({"key": key, "id": id, "object": object})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["offset"], first["offset"]);
    assert_eq!(again["partition"], first["partition"]);

    // The same id for a different event is a conflict, not a silent reuse.
    let mut other = object.clone();
    other["reason"] = json!("something else");
    let (status, _, conflict) =
        post_json(&url, &json!({"key": key, "id": id, "object": other})).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["code"], "idempotency-conflict");

    // By Idempotency-Key: concurrent repeats write one event.
    let idem = unique("idem");
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(&url)
            .header("idempotency-key", &idem)
            .json(&json!({"key": key, "object": object}))
            .send()
    };
    let (a, b, c) = tokio::join!(send(), send(), send());
    let mut bodies = Vec::new();
    for response in [a, b, c] {
        let response = response.unwrap();
        assert!(response.status() == 200 || response.status() == 201);
        bodies.push(response.json::<Value>().await.unwrap());
    }
    let fresh = bodies.iter().filter(|b| b["duplicate"] == false).count();
    assert_eq!(fresh, 1, "{bodies:?}");
    assert!(
        bodies
            .iter()
            .all(|b| b["offset"] == bodies[0]["offset"] && b["id"] == bodies[0]["id"])
    );
}
