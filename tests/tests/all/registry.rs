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

/// A reverse proxy in front of a registry that refuses requests without
/// the right `Authorization` header, as a secured registry would; returns
/// its address.
async fn guarded_registry(target: String, token: &'static str) -> std::net::SocketAddr {
    use axum::extract::Request;
    use axum::response::IntoResponse;

    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let client = client.clone();
        let target = target.clone();
        async move {
            let authorized = request
                .headers()
                .get("authorization")
                .is_some_and(|v| v == format!("Bearer {token}").as_str());
            if !authorized {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    json!({"error_code": 401, "message": "Unauthorized"}).to_string(),
                )
                    .into_response();
            }
            let method = request.method().clone();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let body = axum::body::to_bytes(request.into_body(), 1 << 24)
                .await
                .unwrap();
            let answer = client
                .request(method, format!("{target}{path}"))
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = answer.status();
            (status, answer.bytes().await.unwrap()).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn a_host_in_external_mode_uses_another_registry_with_credentials() {
    let embedded = shared_host();
    let target = format!("http://{}", embedded.registry);
    let guard = guarded_registry(target.clone(), "s3cret").await;

    // Without the credentials the host cannot start: the registry refuses.
    let mut config = test_config(&kafka_bootstrap());
    config.registry.external_url = Some(format!("http://{guard}"));
    config.plugins.dir = None;
    let refused = tokio::task::spawn_blocking({
        let config = config.clone();
        move || TestHost::start(config).err().map(|e| format!("{e:#}"))
    })
    .await
    .unwrap()
    .expect("a host without credentials does not start");
    assert!(refused.contains("Unauthorized"), "{refused}");

    config
        .registry
        .external_headers
        .insert("Authorization".into(), "Bearer s3cret".into());
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).unwrap())
        .await
        .unwrap();

    // Publishing uses the external registry's ids.
    let subject = "claim-switchyard.claim.ReconsiderationReceived";
    let (_, _, latest) = get(&format!("{target}/subjects/{subject}/versions/latest")).await;
    let key = unique("EXT");
    let (status, _, body) = switchyard_tests::post_json(
        &host.url("/v1/events/claim/reconsideration-received"),
        &json!({"key": key, "object": {"claim_id": key, "provider_id": "1", "reason": "external", "received_at": "2026-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["schema_id"], latest["id"]);

    // Reading decodes through the external registry too.
    let mut sse = switchyard_tests::SseReader::connect(
        &host.url(&format!("/v1/nouns/claim/events?key={key}&start=earliest")),
        None,
    )
    .await
    .unwrap();
    let frame = sse
        .until_event(
            "claim.reconsideration-received",
            std::time::Duration::from_secs(20),
        )
        .await
        .expect("the event decodes");
    assert_eq!(frame.json()["object"]["reason"], "external");

    // The host's registry port forwards Confluent's API: a registration
    // through it lands in the external registry, and its errors come back
    // as they were.
    let base = format!("http://{}", host.registry);
    let probe = unique("external-probe");
    let schema = r#"{"type":"record","name":"Ext","fields":[{"name":"a","type":"string"}]}"#;
    let (status, _, registered) = switchyard_tests::post_json(
        &format!("{base}/subjects/{probe}/versions"),
        &json!({"schema": schema}),
    )
    .await;
    assert_eq!(status, 200, "{registered}");
    let (status, _, there) = get(&format!("{target}/subjects/{probe}/versions/1")).await;
    assert_eq!(status, 200);
    assert_eq!(there["id"], registered["id"]);
    let (status, _, missing) = get(&format!("{base}/subjects/{probe}/versions/7")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], 40402);
}
