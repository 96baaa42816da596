//! The registry enforces compatibility the way Confluent's does, with the
//! Avro specification's resolution rules, and keeps configuration, modes
//! and deletes in its topic: a second instance, or a restart, gives the
//! same answers, and two instances writing at once never share an id.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_tests::{TestHost, kafka_bootstrap, test_config, unique};

/// A host with a registry topic of its own, so global settings changed here
/// touch no other test.
fn own_registry(topic: &str) -> TestHost {
    let mut config = test_config(&kafka_bootstrap());
    config.registry.topic = topic.to_string();
    TestHost::start(config).expect("host starts")
}

struct Registry {
    base: String,
    client: reqwest::Client,
}

impl Registry {
    fn of(host: &TestHost) -> Registry {
        Registry {
            base: format!("http://{}", host.registry),
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("registry answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Calls and checks that the answer is an error with this status and
    /// Confluent code; returns its message.
    async fn expect_error(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
        code: u32,
    ) -> String {
        let (got, answer) = self.call(method, path, body).await;
        assert_eq!(
            (got, &answer["error_code"]),
            (status, &json!(code)),
            "{method} {path}: {answer}"
        );
        answer["message"].as_str().unwrap_or_default().to_string()
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(json!({"schema": schema})),
        )
        .await
    }
}

fn record(name: &str, fields: &Value) -> String {
    json!({"type": "record", "name": name, "namespace": "org.example", "fields": fields})
        .to_string()
}

#[tokio::test]
async fn a_record_inside_a_union_that_gains_a_required_field_is_refused_naming_it() {
    let host = switchyard_tests::shared_host();
    let registry = Registry::of(host);
    let subject = unique("union-gain");
    let inner = |extra: Option<Value>| {
        let mut fields = vec![json!({"name": "code", "type": "string"})];
        fields.extend(extra);
        json!(["null", {"type": "record", "name": "Detail", "fields": fields}])
    };
    let v1 = record(
        "Holder",
        &json!([{"name": "detail", "type": inner(None), "default": null}]),
    );
    let (status, body) = registry.register(&subject, &v1).await;
    assert_eq!(status, 200, "{body}");

    let required = record(
        "Holder",
        &json!([{"name": "detail", "type": inner(Some(json!({"name": "reason", "type": "string"}))), "default": null}]),
    );
    let (status, body) = registry.register(&subject, &required).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], 409);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("reason"), "{message}");

    // The compatibility endpoint says the same, with reasons when verbose.
    let (status, verdict) = registry
        .call(
            "POST",
            &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
            Some(json!({"schema": required})),
        )
        .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["is_compatible"], false);
    assert!(
        verdict["messages"].to_string().contains("reason"),
        "{verdict}"
    );

    let nullable = record(
        "Holder",
        &json!([{"name": "detail", "type": inner(Some(json!({"name": "reason", "type": ["null", "string"], "default": null}))), "default": null}]),
    );
    let (status, verdict) = registry
        .call(
            "POST",
            &format!("/compatibility/subjects/{subject}/versions"),
            Some(json!({"schema": nullable})),
        )
        .await;
    assert_eq!((status, &verdict["is_compatible"]), (200, &json!(true)));
    assert!(verdict.get("messages").is_none(), "{verdict}");
    let (status, body) = registry.register(&subject, &nullable).await;
    assert_eq!(status, 200, "{body}");
    let (_, versions) = registry
        .call("GET", &format!("/subjects/{subject}/versions"), None)
        .await;
    assert_eq!(versions, json!([1, 2]));
}

#[tokio::test]
async fn a_default_of_the_wrong_type_is_42201_naming_the_field_everywhere() {
    let host = switchyard_tests::shared_host();
    let registry = Registry::of(host);
    let subject = unique("bad-default");
    let good = record("Counted", &json!([{"name": "count", "type": "int"}]));
    assert_eq!(registry.register(&subject, &good).await.0, 200);
    for field_type in [json!("int"), json!(["null", "int"])] {
        let bad = record(
            "Counted",
            &json!([{"name": "count", "type": field_type, "default": "abc"}]),
        );
        for (method, path) in [
            ("POST", format!("/subjects/{subject}/versions")),
            ("POST", format!("/subjects/{subject}")),
            (
                "POST",
                format!("/compatibility/subjects/{subject}/versions/latest"),
            ),
        ] {
            let (status, body) = registry
                .call(method, &path, Some(json!({"schema": bad})))
                .await;
            assert_eq!(status, 422, "{path}: {body}");
            assert_eq!(body["error_code"], 42201, "{path}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("count"), "{path}: {message}");
        }
    }
    // A union's default is for its first branch: `5` for `["null","int"]`
    // is refused too, so the registry and the decoder never disagree on it.
    let bad = record(
        "Counted",
        &json!([{"name": "count", "type": ["null", "int"], "default": 5}]),
    );
    let (status, body) = registry.register(&subject, &bad).await;
    assert_eq!(
        (status, &body["error_code"]),
        (422, &json!(42201)),
        "{body}"
    );
}

#[tokio::test]
async fn spelling_never_makes_a_new_id_or_version() {
    let host = switchyard_tests::shared_host();
    let registry = Registry::of(host);
    let subject = unique("spelling");
    let (status, first) = registry.register(&subject, r#"{"type":"string"}"#).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = registry.register(&subject, r#""string""#).await;
    assert_eq!(again["id"], first["id"]);

    let name = unique("Spelled").replace('-', "_");
    let subject = unique("spelling-record");
    let apart = json!({"type": "record", "name": name, "namespace": "org.example",
        "fields": [{"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "long"}]}},
                   {"name": "other", "type": ["null", "Inner"], "default": null}]})
    .to_string();
    let full = format!(
        r#"{{ "fields" : [ {{ "type" : {{ "fields" : [ {{ "type" : "long", "name" : "a" }} ], "name" : "org.example.Inner", "type" : "record" }}, "name" : "inner" }},
            {{ "default" : null, "name" : "other", "type" : [ "null", "org.example.Inner" ] }} ],
           "type" : "record", "name" : "org.example.{name}" }}"#
    );
    let (status, first) = registry.register(&subject, &apart).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = registry.register(&subject, &full).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(first["id"], second["id"]);
    let (_, versions) = registry
        .call("GET", &format!("/subjects/{subject}/versions"), None)
        .await;
    assert_eq!(versions, json!([1]));
    let (status, found) = registry
        .call(
            "POST",
            &format!("/subjects/{subject}?normalize=true"),
            Some(json!({"schema": full})),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        (found["version"].clone(), found["id"].clone()),
        (json!(1), first["id"].clone())
    );
}

#[tokio::test]
async fn soft_delete_keeps_the_subject_level_and_permanent_delete_removes_it() {
    let host = switchyard_tests::shared_host();
    let registry = Registry::of(host);
    let subject = unique("soft");
    let v1 = record("Kept", &json!([{"name": "a", "type": "string"}]));
    assert_eq!(registry.register(&subject, &v1).await.0, 200);
    let (status, body) = registry
        .call(
            "PUT",
            &format!("/config/{subject}"),
            Some(json!({"compatibility": "FULL"})),
        )
        .await;
    assert_eq!(
        (status, &body["compatibility"]),
        (200, &json!("FULL")),
        "{body}"
    );

    // Permanent first is refused; soft, then soft again, are told apart.
    registry
        .expect_error(
            "DELETE",
            &format!("/subjects/{subject}?permanent=true"),
            None,
            404,
            40405,
        )
        .await;
    let (status, body) = registry
        .call("DELETE", &format!("/subjects/{subject}"), None)
        .await;
    assert_eq!((status, &body), (200, &json!([1])));
    registry
        .expect_error("DELETE", &format!("/subjects/{subject}"), None, 404, 40404)
        .await;
    let (status, _) = registry
        .call("GET", &format!("/subjects/{subject}/versions"), None)
        .await;
    assert_eq!(status, 404);
    let (_, deleted) = registry
        .call(
            "GET",
            &format!("/subjects/{subject}/versions?deleted=true"),
            None,
        )
        .await;
    assert_eq!(deleted, json!([1]));

    // The level survived the soft delete and is enforced once the subject
    // is registered again: under FULL, a field without a default is refused.
    let (_, level) = registry
        .call("GET", &format!("/config/{subject}"), None)
        .await;
    assert_eq!(level["compatibilityLevel"], "FULL");
    assert_eq!(registry.register(&subject, &v1).await.0, 200);
    let v2 = record(
        "Kept",
        &json!([{"name": "a", "type": "string"}, {"name": "b", "type": "int"}]),
    );
    let (status, body) = registry.register(&subject, &v2).await;
    assert_eq!(
        status, 409,
        "FULL refuses a field without a default: {body}"
    );

    // Permanent delete (after a soft one) removes versions and the level.
    assert_eq!(
        registry
            .call("DELETE", &format!("/subjects/{subject}"), None)
            .await
            .0,
        200
    );
    let (status, body) = registry
        .call(
            "DELETE",
            &format!("/subjects/{subject}?permanent=true"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    registry
        .expect_error("GET", &format!("/config/{subject}"), None, 404, 40408)
        .await;
    let (status, _) = registry
        .call(
            "GET",
            &format!("/subjects/{subject}/versions?deleted=true"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn versions_delete_softly_then_permanently_with_confluent_codes() {
    let host = switchyard_tests::shared_host();
    let registry = Registry::of(host);
    let subject = unique("versions");
    let v1 = record("Versioned", &json!([{"name": "a", "type": "string"}]));
    let v2 = record(
        "Versioned",
        &json!([{"name": "a", "type": "string"}, {"name": "b", "type": "int", "default": 0}]),
    );
    assert_eq!(registry.register(&subject, &v1).await.0, 200);
    assert_eq!(registry.register(&subject, &v2).await.0, 200);
    let path = format!("/subjects/{subject}/versions/1");
    registry
        .expect_error(
            "DELETE",
            &format!("{path}?permanent=true"),
            None,
            404,
            40407,
        )
        .await;
    assert_eq!(registry.call("DELETE", &path, None).await, (200, json!(1)));
    let (status, body) = registry.call("DELETE", &path, None).await;
    assert_eq!(
        (status, &body["error_code"]),
        (404, &json!(40406)),
        "{body}"
    );
    let (status, body) = registry.call("GET", &path, None).await;
    assert_eq!(
        (status, &body["error_code"]),
        (404, &json!(40402)),
        "{body}"
    );
    let (status, body) = registry
        .call("GET", &format!("{path}?deleted=true"), None)
        .await;
    assert_eq!((status, &body["version"]), (200, &json!(1)), "{body}");
    assert_eq!(
        registry
            .call("DELETE", &format!("{path}?permanent=true"), None)
            .await,
        (200, json!(1))
    );
    let (status, _) = registry
        .call("GET", &format!("{path}?deleted=true"), None)
        .await;
    assert_eq!(status, 404);
    let (_, latest) = registry
        .call("GET", &format!("/subjects/{subject}/versions/latest"), None)
        .await;
    assert_eq!(latest["version"], 2);
}

#[tokio::test]
async fn config_and_mode_follow_confluent_and_survive_a_new_instance() {
    let topic = unique("_schemas-config");
    let host = own_registry(&topic);
    let registry = Registry::of(&host);
    let (status, body) = registry.call("GET", "/config", None).await;
    assert_eq!(
        (status, &body["compatibilityLevel"]),
        (200, &json!("BACKWARD"))
    );
    registry
        .expect_error(
            "PUT",
            "/config",
            Some(json!({"compatibility": "sideways"})),
            422,
            42203,
        )
        .await;
    let (status, body) = registry
        .call(
            "PUT",
            "/config",
            Some(json!({"compatibility": "FORWARD_TRANSITIVE"})),
        )
        .await;
    assert_eq!(
        (status, &body["compatibility"]),
        (200, &json!("FORWARD_TRANSITIVE"))
    );

    let subject = "config-probe";
    registry
        .expect_error("GET", &format!("/config/{subject}"), None, 404, 40408)
        .await;
    let (_, body) = registry
        .call(
            "GET",
            &format!("/config/{subject}?defaultToGlobal=true"),
            None,
        )
        .await;
    assert_eq!(body["compatibilityLevel"], "FORWARD_TRANSITIVE");
    registry
        .call(
            "PUT",
            &format!("/config/{subject}"),
            Some(json!({"compatibility": "NONE"})),
        )
        .await;

    // READONLY refuses registrations with 42205; the subject's own mode
    // overrides the registry's.
    let (status, body) = registry
        .call("PUT", "/mode", Some(json!({"mode": "READONLY"})))
        .await;
    assert_eq!((status, &body["mode"]), (200, &json!("READONLY")), "{body}");
    let schema = record("Moded", &json!([{"name": "a", "type": "string"}]));
    let (status, body) = registry.register(subject, &schema).await;
    assert_eq!(
        (status, &body["error_code"]),
        (422, &json!(42205)),
        "{body}"
    );
    let (status, body) = registry
        .call(
            "PUT",
            &format!("/mode/{subject}"),
            Some(json!({"mode": "READWRITE"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(registry.register(subject, &schema).await.0, 200);
    registry
        .expect_error(
            "PUT",
            "/mode",
            Some(json!({"mode": "SOMETIMES"})),
            422,
            42204,
        )
        .await;

    // A second instance on the same topic, and this one after a restart,
    // answer the same.
    let second = own_registry(&topic);
    let other = Registry::of(&second);
    for (path, expected) in [
        (
            "/config",
            json!({"compatibilityLevel": "FORWARD_TRANSITIVE"}),
        ),
        (
            "/config/config-probe",
            json!({"compatibilityLevel": "NONE"}),
        ),
        ("/mode", json!({"mode": "READONLY"})),
        ("/mode/config-probe", json!({"mode": "READWRITE"})),
        ("/subjects/config-probe/versions", json!([1])),
    ] {
        assert_eq!(
            other.call("GET", path, None).await,
            (200, expected),
            "{path}"
        );
    }
    // Deleting settings falls back to the defaults.
    registry
        .call("PUT", "/mode", Some(json!({"mode": "READWRITE"})))
        .await;
    let (status, body) = registry.call("DELETE", "/config", None).await;
    assert_eq!(
        (status, &body["compatibilityLevel"]),
        (200, &json!("FORWARD_TRANSITIVE"))
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (_, body) = other.call("GET", "/config", None).await;
        if body["compatibilityLevel"] == "BACKWARD" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other instance still says {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_registering_at_once_never_share_or_split_an_id() {
    let topic = unique("_schemas-race");
    let first = own_registry(&topic);
    let second = own_registry(&topic);
    let registries = [Registry::of(&first), Registry::of(&second)];
    let schema = |n: usize| {
        record(
            &format!("Raced{n}"),
            &json!([{"name": "a", "type": "string"}]),
        )
    };

    // Each instance registers 20 schemas of its own and 20 shared ones at
    // the same time; the shared ones under both instances' subjects.
    let mut calls = Vec::new();
    for (index, registry) in registries.iter().enumerate() {
        for n in 0..20 {
            let own = schema(100 * (index + 1) + n);
            let shared = schema(n);
            calls.push(async move {
                let (status, body) = registry.register(&format!("race-{index}-{n}"), &own).await;
                assert_eq!(status, 200, "{body}");
                let (status, shared_body) = registry
                    .register(&format!("race-shared-{index}-{n}"), &shared)
                    .await;
                assert_eq!(status, 200, "{shared_body}");
                vec![
                    (own, body["id"].as_u64().unwrap()),
                    (shared, shared_body["id"].as_u64().unwrap()),
                ]
            });
        }
    }
    let results: Vec<(String, u64)> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut id_of: HashMap<String, u64> = HashMap::new();
    for (schema, id) in &results {
        let known = *id_of.entry(schema.clone()).or_insert(*id);
        assert_eq!(known, *id, "one schema got two ids: {schema}");
    }
    let ids: HashSet<u64> = id_of.values().copied().collect();
    assert_eq!(ids.len(), id_of.len(), "two schemas share an id");

    // Both instances answer every id with the same schema.
    for (schema, id) in &id_of {
        for registry in &registries {
            let (status, body) = registry
                .call("GET", &format!("/schemas/ids/{id}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            let stored: Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
            let wanted: Value = serde_json::from_str(schema).unwrap();
            assert_eq!(stored, wanted);
        }
    }
}

#[tokio::test]
async fn events_published_before_and_after_a_compatible_change_both_read_right() {
    // A noun of this test's own, so the subject it evolves is its own.
    let noun = unique("evolving").replace('-', "");
    let dir = std::env::temp_dir().join(unique("evolving-schemas"));
    std::fs::create_dir_all(dir.join(&noun)).unwrap();
    let name = format!("Changed{}", &noun[9..17]);
    let v1 = json!({"type": "record", "name": name, "namespace": "org.example.evolving", "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "int"}
    ]});
    std::fs::write(dir.join(&noun).join("changed.avsc"), v1.to_string()).unwrap();
    let mut config = test_config(&kafka_bootstrap());
    config.registry.schemas_dir = dir.clone();
    // The test plugins read `claim`, which this host does not know.
    config.plugins.dir = None;
    let host = TestHost::start(config).expect("host starts");
    let registry = Registry::of(&host);
    let subject = format!("{noun}-org.example.evolving.{name}");
    let key = unique("EVO");

    let mut sse = switchyard_tests::SseReader::connect(
        &host.url(&format!("/v1/nouns/{noun}/events?key={key}")),
        None,
    )
    .await
    .unwrap();
    sse.until_event("subscribed", Duration::from_secs(10))
        .await
        .expect("subscribed");
    let publish = |object: Value| {
        let url = host.url(&format!("/v1/events/{noun}/changed"));
        let key = key.clone();
        async move { switchyard_tests::post_json(&url, &json!({"key": key, "object": object})).await }
    };
    let (status, _, first) = publish(json!({"id": "a", "amount": 1})).await;
    assert_eq!(status, 201, "{first}");

    // v2 widens `amount` to long and adds an optional `note`: BACKWARD.
    let v2 = json!({"type": "record", "name": name, "namespace": "org.example.evolving", "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": null}
    ]});
    let (status, body) = registry.register(&subject, &v2.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let v2_id = body["id"].clone();
    let (status, _, second) =
        publish(json!({"id": "b", "amount": 5_000_000_000_i64, "note": "widened"})).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["schema_id"], v2_id, "new publishes use v2: {second}");
    assert_ne!(first["schema_id"], v2_id);

    for expected in [
        json!({"id": "a", "amount": 1}),
        json!({"id": "b", "amount": 5_000_000_000_i64, "note": "widened"}),
    ] {
        let frame = sse
            .until_event(&format!("{noun}.changed"), Duration::from_secs(15))
            .await
            .expect("event");
        assert_eq!(frame.json()["object"], expected);
    }

    // Narrowing `amount` back to int cannot read what v2 wrote: 409, and
    // the reason names the field.
    let v3 = json!({"type": "record", "name": name, "namespace": "org.example.evolving", "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": null}
    ]});
    let (status, body) = registry.register(&subject, &v3.to_string()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("amount"),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
