//! Bad input gets a clear, stable error that says what to fix.

use serde_json::json;
use switchyard::grpc::proto;
use switchyard::grpc::proto::events_client::EventsClient;
use switchyard_tests::{post_json, post_raw, shared_host, unique};

const PROBLEM: &str = "application/problem+json";

#[tokio::test]
async fn unknown_noun_and_verb_are_404_with_stable_codes() {
    let host = shared_host();
    let object = json!({"key": "k", "object": {}});
    let (status, content_type, body) =
        post_json(&host.url("/v1/events/invoice/paid"), &object).await;
    assert_eq!((status, content_type.as_str()), (404, PROBLEM));
    assert_eq!(body["code"], "unknown-noun");
    assert!(
        body["detail"].as_str().unwrap().contains("`claim`"),
        "lists known nouns: {body}"
    );

    let (status, _, body) = post_json(&host.url("/v1/events/claim/teleported"), &object).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "unknown-verb");
    assert_eq!(body["field"], "verb");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("`status-changed`"),
        "lists known verbs: {body}"
    );

    let (status, _, body) = post_json(&host.url("/v1/events/Claim/status-changed"), &object).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid-name");
}

#[tokio::test]
async fn schema_violations_are_422_naming_the_field_path() {
    let host = shared_host();
    let key = unique("CLM");
    let url = host.url("/v1/events/claim/reconsideration-received");
    let valid = json!({"claim_id": key, "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"});

    let mut wrong_type = valid.clone();
    wrong_type["provider_id"] = json!(1666666661);
    let (status, content_type, body) =
        post_json(&url, &json!({"key": key, "object": wrong_type})).await;
    assert_eq!((status, content_type.as_str()), (422, PROBLEM), "{body}");
    assert_eq!(body["code"], "schema-violation");
    assert_eq!(body["field"], "object.provider_id");
    assert_eq!(body["stored"], "no");
    assert_eq!(body["type"], "urn:switchyard:problem:schema-violation");

    let mut bad_decimal = valid.clone();
    bad_decimal["disputed_amount"] = json!("12.345");
    let (status, _, body) = post_json(&url, &json!({"key": key, "object": bad_decimal})).await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "object.disputed_amount");

    let mut unknown = valid.clone();
    unknown["surprise"] = json!(true);
    let (status, _, body) = post_json(&url, &json!({"key": key, "object": unknown})).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"].as_str().unwrap().contains("surprise"),
        "{body}"
    );

    // Nested path, on the claim status schema.
    let status_url = host.url("/v1/events/claim/status-changed");
    let nested = json!({"key": key, "object": {
        "claim_id": key, "payer": {"name": 7}, "provider": {"name": "p"},
        "status_category_code": "F0", "status_code": "3",
        "interchange_control_number": "1", "transaction_set": "005010X212"
    }});
    let (status, _, body) = post_json(&status_url, &nested).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "object.payer.name");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let host = shared_host();
    let url = host.url("/v1/events/claim/reconsideration-received");
    let (status, content_type, body) = post_raw(
        &url,
        b"{\"key\": \"k\", \"object\": {".to_vec(),
        "application/json",
    )
    .await;
    assert_eq!((status, content_type.as_str()), (400, PROBLEM));
    assert_eq!(body["code"], "malformed-request");
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let (status, _, body) = post_raw(&url, b"{\"object\": {}}".to_vec(), "application/json").await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("key"), "{body}");

    let (status, _, body) = post_raw(
        &url,
        b"{\"key\": \"k\", \"object\": {}, \"extra\": 1}".to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("extra"), "{body}");

    let (status, _, body) = post_json(&url, &json!({"key": "bad\r\nkey", "object": {}})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid-name");
    assert_eq!(body["field"], "key");
}

#[tokio::test]
async fn oversized_body_is_413_naming_the_limit() {
    let host = shared_host();
    let url = host.url("/v1/events/edi/x12-received");
    let huge = "A".repeat(2 * 1024 * 1024);
    let (status, content_type, body) =
        post_json(&url, &json!({"key": "k", "object": {"interchange": huge}})).await;
    assert_eq!((status, content_type.as_str()), (413, PROBLEM), "{body}");
    assert_eq!(body["code"], "payload-too-large");
    assert!(
        body["detail"].as_str().unwrap().contains("1048576"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_paths_and_topics_are_404_problems() {
    let host = shared_host();
    let response = reqwest::get(host.url("/v2/nothing")).await.unwrap();
    assert_eq!(response.status(), 404);
    let response = reqwest::get(host.url("/v1/topics/no.such.topic.here/events"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not-found");
}

#[tokio::test]
async fn grpc_errors_carry_the_same_codes() {
    use tonic_types::StatusExt;
    let host = shared_host();
    let mut client = EventsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let status = client
        .publish(proto::PublishRequest {
            event: Some(proto::EventInput {
                time: String::new(),
                noun: "claim".into(),
                verb: "reconsideration-received".into(),
                key: "k".into(),
                object_json: json!({"claim_id": 5}).to_string(),
                id: String::new(),
                source: String::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("schema-violation: "),
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "schema-violation"
    );
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "object.claim_id");

    let status = client
        .publish(proto::PublishRequest {
            event: Some(proto::EventInput {
                time: String::new(),
                noun: "invoice".into(),
                verb: "paid".into(),
                key: "k".into(),
                object_json: "{}".into(),
                id: String::new(),
                source: String::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "unknown-noun"
    );
}

#[tokio::test]
async fn only_json_bodies_are_accepted() {
    let host = shared_host();
    let url = host.url("/v1/events/claim/reconsideration-received");
    let body = br#"{"key": "k", "object": {}}"#.to_vec();
    for content_type in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "",
    ] {
        let (status, _, problem) = post_raw(&url, body.clone(), content_type).await;
        assert_eq!(status, 415, "{content_type}: {problem}");
        assert_eq!(problem["code"], "unsupported-media-type");
        assert_eq!(problem["stored"], "no");
    }
    let (status, _, problem) = post_raw(&url, body, "application/json; charset=utf-8").await;
    assert_eq!(status, 422, "json with parameters is json: {problem}");
}

#[tokio::test]
async fn names_and_sources_refuse_invisible_and_oversized_text() {
    let host = shared_host();
    let url = host.url("/v1/events/claim/reconsideration-received");
    let object = json!({"claim_id": "c", "provider_id": "1", "reason": "r", "received_at": "2026-01-01T00:00:00Z"});
    for key in ["abc\u{202E}fed", "line\u{2028}break"] {
        let (status, _, body) = post_json(&url, &json!({"key": key, "object": object})).await;
        assert_eq!(status, 400, "{key:?}: {body}");
        assert_eq!(body["field"], "key");
    }
    let (status, _, body) = post_json(
        &url,
        &json!({"key": "k", "source": "s".repeat(2_000), "object": object}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "source");
}

#[tokio::test]
async fn internal_topics_cannot_be_streamed() {
    let host = shared_host();
    for topic in ["_schemas", "__consumer_offsets"] {
        let response = reqwest::get(host.url(&format!("/v1/topics/{topic}/events")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{topic}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid-name");
    }
    let response = reqwest::get(host.url("/v1/events/%FF/x")).await.unwrap();
    assert_eq!(response.status(), 405, "GET on a publish path");
    let response = reqwest::Client::new()
        .post(host.url("/v1/events/%FF/x"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], PROBLEM);
}

#[tokio::test]
async fn long_echoed_values_keep_the_grpc_code() {
    use tonic_types::StatusExt;
    let host = shared_host();
    let mut client = EventsClient::connect(format!("http://{}", host.grpc))
        .await
        .unwrap();
    let object = json!({"claim_id": "c", "provider_id": "1", "reason": "r", "received_at": "x".repeat(5_000)});
    let status = client
        .publish(proto::PublishRequest {
            event: Some(proto::EventInput {
                time: String::new(),
                noun: "claim".into(),
                verb: "reconsideration-received".into(),
                key: "k".into(),
                object_json: object.to_string(),
                id: String::new(),
                source: String::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "schema-violation"
    );
    assert!(status.message().len() < 700);

    let empty = client
        .publish_batch(proto::PublishBatchRequest { events: vec![] })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
}
