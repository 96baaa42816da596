//! The embedded registry answers Confluent's API, and its state lives in
//! Kafka: a second host on the same cluster sees the same subjects and ids.

use serde_json::{Value, json};
use switchyard_tests::{TestHost, kafka_bootstrap, shared_host, test_config, unique};

async fn get(url: &str) -> (u16, String, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (status, content_type, response.json().await.unwrap())
}

#[tokio::test]
async fn confluent_api_and_state_survive_a_new_instance() {
    let host = shared_host();
    let base = format!("http://{}", host.registry);
    let (status, content_type, subjects) = get(&format!("{base}/subjects")).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/vnd.schemaregistry.v1+json");
    let subject = "claim-switchyard.claim.StatusChanged";
    assert!(
        subjects.as_array().unwrap().contains(&json!(subject)),
        "{subjects}"
    );

    let (_, _, latest) = get(&format!("{base}/subjects/{subject}/versions/latest")).await;
    let id = latest["id"].as_u64().unwrap();
    let (_, _, by_id) = get(&format!("{base}/schemas/ids/{id}")).await;
    assert_eq!(by_id["schema"], latest["schema"]);

    // Register a new subject; a spelling variant is the same schema.
    let name = unique("Probe").replace('-', "_");
    let subject = format!("probe-{name}");
    let schema =
        format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"a","type":"string"}}]}}"#);
    let respelled = format!(
        r#"{{ "fields": [ {{"type": {{"type": "string"}}, "name": "a"}} ], "name": "{name}", "type": "record" }}"#
    );
    let client = reqwest::Client::new();
    let registered: Value = client
        .post(format!("{base}/subjects/{subject}/versions"))
        .json(&json!({"schema": schema}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_id = registered["id"].as_u64().unwrap();
    let again: Value = client
        .post(format!("{base}/subjects/{subject}/versions"))
        .json(&json!({"schema": respelled}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"].as_u64().unwrap(), new_id, "one schema, one id");
    let found: Value = client
        .post(format!("{base}/subjects/{subject}"))
        .json(&json!({"schema": respelled}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["version"], 1);

    // Errors in Confluent's shape.
    let (status, _, missing) = get(&format!("{base}/subjects/no-such-subject/versions")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], 40401);
    let response = client
        .post(format!("{base}/subjects/{subject}/versions"))
        .json(&json!({"schema": "{\"type\": \"nope\"}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let invalid: Value = response.json().await.unwrap();
    assert_eq!(invalid["error_code"], 42201);

    // A new instance rebuilds the same state from the topic.
    let other = tokio::task::spawn_blocking(|| {
        let mut config = test_config(&kafka_bootstrap());
        config.plugins.dir = None;
        TestHost::start(config).unwrap()
    })
    .await
    .unwrap();
    let other_base = format!("http://{}", other.registry);
    let (_, _, versions) = get(&format!("{other_base}/subjects/{subject}/versions")).await;
    assert_eq!(versions, json!([1]));
    let (_, _, by_id) = get(&format!("{other_base}/schemas/ids/{new_id}")).await;
    assert_eq!(by_id["schema"], schema);
    tokio::task::spawn_blocking(move || other.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn registry_errors_keep_confluent_shape() {
    let host = shared_host();
    let base = format!("http://{}", host.registry);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/subjects/a%0Ab/versions"))
        .json(&json!({"schema": "\"string\""}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], 42208);
    for path in ["/no/such/path", "/subjects/x/versions/1/nothing"] {
        let response = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], 404);
    }
    let response = client
        .delete(format!("{base}/subjects"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], 405);
}
