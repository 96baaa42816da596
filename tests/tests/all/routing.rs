//! Routes: stored in a compacted topic and applied by every instance, built-in
//! content filters, router plugins, explain and dry-run, refusals over REST,
//! gRPC and the CLI's code, and exactly-once forwarding through the routing
//! engine.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::cli::{self, Output, RouteAction};
use switchyard_tests::{
    SseReader, TestHost, delete_plugin, expect_paused, kafka_bootstrap, plugin_events,
    plugin_shown, post_json, push_plugin, test_config, unique, wait_for_routing, with_routing,
};

async fn start_host(cluster: &str) -> TestHost {
    start_host_with(cluster, true).await
}

/// A host of the cluster; without the engine it still answers the routes
/// API (an API-only instance).
async fn start_host_with(cluster: &str, engine: bool) -> TestHost {
    let mut config = with_routing(test_config(&kafka_bootstrap()), cluster);
    config.routing.enabled = engine;
    tokio::task::spawn_blocking(move || TestHost::start(config).expect("host starts"))
        .await
        .unwrap()
}

fn status_object(claim_id: &str, provider: &str, category: &str) -> Value {
    json!({
        "claim_id": claim_id,
        "payer": {"name": "ACME HEALTH", "id_qualifier": "PI", "id": "12345"},
        "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": provider},
        "status_category_code": category,
        "status_code": "65",
        "total_charge": "120.50",
        "interchange_control_number": "000000001",
        "transaction_set": "005010X212"
    })
}

async fn publish_status(host: &TestHost, claim_id: &str, provider: &str, category: &str) -> String {
    let (status, _, body) = post_json(
        &host.url("/v1/events/claim/status-changed"),
        &json!({"key": claim_id, "object": status_object(claim_id, provider, category)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn put_route(host: &TestHost, id: &str, route: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(host.url(&format!("/v1/routes/{id}")))
        .json(route)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads a topic from its start until `expected` events arrived, then keeps
/// listening for `settle` to catch any duplicate. Returns every event.
/// A destination chosen by a plugin exists only once something was routed
/// to it, so the reader waits for the topic.
async fn read_topic(host: &TestHost, topic: &str, expected: usize, settle: Duration) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = host.url(&format!("/v1/topics/{topic}/events?start=earliest"));
    let mut reader = loop {
        let reader = SseReader::connect(&url, None).await.unwrap();
        if reader.status == 200 || Instant::now() > deadline {
            assert_eq!(reader.status, 200, "cannot read `{topic}`");
            break reader;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut events = Vec::new();
    let is_event = |frame: &switchyard_tests::Frame| {
        frame
            .event
            .as_deref()
            .is_some_and(|name| name.contains('.'))
    };
    while events.len() < expected && Instant::now() < deadline {
        if let Some(frame) = reader.next(Duration::from_secs(1)).await
            && is_event(&frame)
        {
            events.push(frame.json());
        }
    }
    let quiet_until = Instant::now() + settle;
    while Instant::now() < quiet_until {
        if let Some(frame) = reader.next(Duration::from_millis(200)).await
            && is_event(&frame)
        {
            events.push(frame.json());
        }
    }
    events
}

fn keys(events: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = events
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

/// A route set on one instance is live on another within two seconds; its
/// filter decides which events reach the destination, each exactly once and
/// marked with the route; changing, disabling and deleting it take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_apply_on_every_instance_and_filter_by_content() {
    let cluster = unique("routes");
    let a = start_host(&cluster).await;
    let b = start_host(&cluster).await;
    wait_for_routing(&a, "claim", Duration::from_secs(60)).await;
    wait_for_routing(&b, "claim", Duration::from_secs(60)).await;
    let run = unique("clm");
    let id = format!("finalized-{}", &run[run.len() - 10..]);
    let destination = format!("portal.finalized.{}", &run[run.len() - 10..]);
    let route = json!({
        "owner": "provider-portal",
        "description": "finalized statuses for the portal",
        "source": {"nouns": ["claim"], "verbs": ["status-*"]},
        "filter": {
            "claim_id": [{"prefix": run}],
            "status_category_code": [{"prefix": "F"}]
        },
        "destinations": [destination]
    });
    let (status, body) = put_route(&a, &id, &route).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], id);
    let revision = body["revision"].as_i64().unwrap();

    // The other instance sees it within two seconds.
    let started = Instant::now();
    loop {
        let response = reqwest::get(b.url(&format!("/v1/routes/{id}")))
            .await
            .unwrap();
        if response.status() == 200 {
            let seen: Value = response.json().await.unwrap();
            assert_eq!(seen["revision"].as_i64(), Some(revision));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "route not visible on the second instance within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Published through either instance; only finalized statuses pass.
    let mut expected = Vec::new();
    for (index, category) in ["F1", "P3", "F2", "A2", "F0"].iter().enumerate() {
        let key = format!("{run}-{index}");
        let host = if index % 2 == 0 { &a } else { &b };
        publish_status(host, &key, "1234567890", category).await;
        if category.starts_with('F') {
            expected.push(key);
        }
    }
    // One that the filter's claim prefix turns away.
    publish_status(&a, &unique("other"), "1234567890", "F1").await;
    let events = read_topic(&a, &destination, expected.len(), Duration::from_secs(2)).await;
    assert_eq!(
        keys(&events),
        expected,
        "each matching event once: {events:#?}"
    );
    for event in &events {
        assert_eq!(event["type"], "claim.status-changed");
        assert_eq!(event["extensions"]["switchyard-route"], id.as_str());
        assert_eq!(event["object"]["provider"]["id"], "1234567890");
    }

    // Change the filter: now pending statuses instead.
    let mut changed = route.clone();
    changed["filter"]["status_category_code"] = json!([{"prefix": "P"}]);
    let (status, body) = put_route(&b, &id, &changed).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revision"].as_i64().unwrap() > revision);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = format!("{run}-pending");
    publish_status(&a, &pending, "1234567890", "P1").await;
    publish_status(&a, &format!("{run}-final-again"), "1234567890", "F1").await;
    let events = read_topic(&a, &destination, expected.len() + 1, Duration::from_secs(2)).await;
    let mut now_expected = expected.clone();
    now_expected.push(pending);
    now_expected.sort();
    assert_eq!(keys(&events), now_expected);

    // Counters on the instances add up to what was forwarded.
    let mut forwarded = 0;
    for host in [&a, &b] {
        let shown: Value = reqwest::get(host.url(&format!("/v1/routes/{id}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        forwarded += shown["counters"]["forwarded"].as_u64().unwrap();
    }
    assert_eq!(forwarded, now_expected.len() as u64);

    // Disabled: nothing more; deleted: gone everywhere.
    changed["enabled"] = json!(false);
    assert_eq!(put_route(&a, &id, &changed).await.0, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish_status(&a, &format!("{run}-while-disabled"), "1234567890", "P1").await;
    let response = reqwest::Client::new()
        .delete(a.url(&format!("/v1/routes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let events = read_topic(&a, &destination, now_expected.len(), Duration::from_secs(3)).await;
    assert_eq!(keys(&events), now_expected);
    let started = Instant::now();
    while reqwest::get(b.url(&format!("/v1/routes/{id}")))
        .await
        .unwrap()
        .status()
        != 404
    {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A route with a router plugin: the plugin picks among the route's
/// allowed destinations with the route's own configuration; a choice the
/// route does not allow sends the event to the dead-letter topic, naming
/// the route, without holding up other routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_plugin_picks_among_allowed_destinations() {
    let cluster = unique("routes");
    let host = start_host(&cluster).await;
    wait_for_routing(&host, "claim", Duration::from_secs(60)).await;
    let run = unique("clm");
    let tag = &run[run.len() - 10..];
    let prefix = format!("portal.{tag}");
    let good = json!({
        "owner": "provider-portal",
        "source": {"nouns": ["claim"], "verbs": ["status-changed"]},
        "filter": {"claim_id": [{"prefix": run}]},
        "plugin": {"name": "portal-router", "config": {"prefix": prefix}},
        "destinations": [format!("{prefix}.*")]
    });
    let (status, body) = put_route(&host, &format!("by-provider-{tag}"), &good).await;
    assert_eq!(status, 201, "{body}");
    // Same plugin, but it may only send to a topic it never picks.
    let mut narrow = good.clone();
    narrow["destinations"] = json!([format!("elsewhere.{tag}.*")]);
    let (status, body) = put_route(&host, &format!("narrow-{tag}"), &narrow).await;
    assert_eq!(status, 201, "{body}");

    let dead_letters =
        SseReader::connect(&host.url("/v1/topics/switchyard.dead-letter/events"), None)
            .await
            .unwrap();
    let key = format!("{run}-1");
    let id = publish_status(&host, &key, "1112223334", "F1").await;
    let events = read_topic(
        &host,
        &format!("{prefix}.1112223334"),
        1,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(
        events[0]["extensions"]["switchyard-route"],
        format!("by-provider-{tag}")
    );
    assert!(
        events[0]["extensions"]["switchyard-router"]
            .as_str()
            .unwrap()
            .starts_with("portal-router@")
    );

    let mut dead_letters = dead_letters;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        if let Some(frame) = dead_letters.next(Duration::from_secs(1)).await
            && frame
                .event
                .as_deref()
                .is_some_and(|name| name.contains('.'))
        {
            let event = frame.json();
            if event["id"] == id.as_str() {
                found = Some(event);
            }
        }
    }
    let event = found.expect("the narrow route dead-lettered the event");
    let extensions = &event["extensions"];
    assert_eq!(extensions["switchyard-dlq-route"], format!("narrow-{tag}"));
    assert_eq!(extensions["switchyard-dlq-class"], "invalid-output");
    assert!(
        extensions["switchyard-dlq-reason"]
            .as_str()
            .unwrap()
            .contains("do not allow"),
        "{extensions}"
    );
}

/// `explain` says which routes an event matches and why, for an event given
/// inline and for a record on the topic; `dry-run` evaluates a proposed
/// route against recent events without sending anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_dry_run_answer_without_sending() {
    let cluster = unique("routes");
    let host = start_host_with(&cluster, false).await;
    let run = unique("clm");
    let tag = &run[run.len() - 10..];
    let route = json!({
        "owner": "audit",
        "source": {"nouns": ["claim"]},
        "filter": {"claim_id": [{"prefix": run}], "status_category_code": ["F1", "F2"]},
        "destinations": [format!("audit.{tag}")]
    });
    assert_eq!(
        put_route(&host, &format!("audit-{tag}"), &route).await.0,
        201
    );

    let (status, _, body) = post_json(
        &host.url("/v1/routes:explain"),
        &json!({"event": {"noun": "claim", "verb": "status-changed", "key": format!("{run}-x"),
                "object": status_object(&format!("{run}-x"), "1", "P3")}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let verdict = body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["route"] == format!("audit-{tag}"))
        .unwrap()
        .clone();
    assert_eq!(verdict["decision"], "skip", "{verdict}");
    let checks = verdict["reasons"]["filter"]["checks"].as_array().unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["matched"] == false).collect();
    assert_eq!(failed.len(), 1, "{checks:#?}");
    assert_eq!(failed[0]["path"], "status_category_code");

    // Recent events: three of this run, two of which match.
    let mut ids = HashMap::new();
    for (index, category) in ["F1", "P3", "F2"].iter().enumerate() {
        let key = format!("{run}-{index}");
        ids.insert(
            key.clone(),
            publish_status(&host, &key, "1", category).await,
        );
    }
    let (status, _, body) = post_json(
        &host.url("/v1/routes:dry-run"),
        &json!({"route": route, "limit": 1000}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ours: Vec<&Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["key"].as_str().unwrap().starts_with(&run))
        .collect();
    assert_eq!(ours.len(), 3, "{body}");
    let forwarded: Vec<&str> = ours
        .iter()
        .filter(|e| e["verdict"]["decision"] == "forward")
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(forwarded.len(), 2);
    assert!(
        body["destinations"][format!("audit.{tag}")]
            .as_u64()
            .unwrap()
            >= 2
    );

    // Explain the record at its position on the topic.
    let position = ours
        .iter()
        .find(|e| e["key"] == format!("{run}-0"))
        .unwrap()["position"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = position.rsplitn(3, ':').collect();
    let (status, _, body) = post_json(
        &host.url("/v1/routes:explain"),
        &json!({"position": {"topic": parts[2], "partition": parts[1].parse::<i32>().unwrap(),
                "offset": parts[0].parse::<i64>().unwrap()}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let verdict = body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["route"] == format!("audit-{tag}"))
        .unwrap();
    assert_eq!(verdict["decision"], "forward", "{body}");
    assert_eq!(verdict["destinations"], json!([format!("audit.{tag}")]));

    // Nothing was sent: explain and dry-run never write, and this
    // API-only instance runs no engine.
    let events = read_topic(&host, &format!("audit.{tag}"), 0, Duration::from_secs(1)).await;
    assert!(events.is_empty(), "{events:#?}");
}

/// Refusals name the field and say what to fix, the same over REST and
/// gRPC; `If-Match` guards against lost updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_routes_are_refused_with_the_field_to_fix() {
    let cluster = unique("routes");
    let host = start_host(&cluster).await;
    let base = json!({
        "owner": "t",
        "source": {"nouns": ["claim"]},
        "destinations": ["portal.claims"]
    });
    let with = |key: &str, value: Value| {
        let mut route = base.clone();
        route[key] = value;
        route
    };
    let cases = [
        (
            with("filter", json!({"status_category_code": [{"prefx": "F"}]})),
            "filter",
            "prefx",
        ),
        (
            with("destinations", json!(["claim"])),
            "destinations[0]",
            "dot",
        ),
        (
            with("destinations", json!(["portal.*"])),
            "destinations[0]",
            "wildcard",
        ),
        (
            with("plugin", json!({"name": "no-such-plugin"})),
            "plugin.name",
            "no plugin",
        ),
        (
            with("plugin", json!({"name": "x12-277-transformer"})),
            "plugin.name",
            "not a router",
        ),
        (with("source", json!({"nouns": []})), "source.nouns", "1 to"),
    ];
    for (route, field, words) in cases {
        let (status, body) = put_route(&host, "refused-route", &route).await;
        assert_eq!(status, 422, "{route} -> {body}");
        assert_eq!(body["code"], "invalid-route", "{body}");
        assert!(
            body["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{route} -> {body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains(words),
            "{route} -> {body}"
        );
    }
    let (status, body) = put_route(&host, "Bad Id", &base).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "id");

    // Conditional writes.
    let id = format!("guarded-{}", &unique("r")[2..14]);
    let response = reqwest::Client::new()
        .put(host.url(&format!("/v1/routes/{id}")))
        .header("If-Match", "\"0\"")
        .json(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let stale = reqwest::Client::new()
        .put(host.url(&format!("/v1/routes/{id}")))
        .header("If-Match", "\"0\"")
        .json(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let fresh = reqwest::Client::new()
        .put(host.url(&format!("/v1/routes/{id}")))
        .header("If-Match", etag)
        .json(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);

    // gRPC refuses the same filter with the same code and words.
    let mut client = switchyard::grpc::proto::routes_client::RoutesClient::connect(format!(
        "http://{}",
        host.grpc
    ))
    .await
    .unwrap();
    let status = client
        .set(switchyard::grpc::proto::SetRouteRequest {
            route: Some(switchyard::grpc::proto::Route {
                id: "refused-route".to_string(),
                owner: "t".to_string(),
                source: Some(switchyard::grpc::proto::RouteSource {
                    nouns: vec!["claim".to_string()],
                    verbs: Vec::new(),
                }),
                filter_json: r#"{"status_category_code": [{"prefx": "F"}]}"#.to_string(),
                destinations: vec!["portal.claims".to_string()],
                ..Default::default()
            }),
            if_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("prefx"), "{status:?}");
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.error_info().unwrap().reason, "invalid-route");

    // And gets a good one, visible over REST.
    let stored = client
        .set(switchyard::grpc::proto::SetRouteRequest {
            route: Some(switchyard::grpc::proto::Route {
                id: format!("{id}-grpc"),
                owner: "t".to_string(),
                source: Some(switchyard::grpc::proto::RouteSource {
                    nouns: vec!["claim".to_string()],
                    verbs: vec!["status-changed".to_string()],
                }),
                filter_json: r#"{"status_category_code": [{"prefix": "F"}]}"#.to_string(),
                destinations: vec!["portal.claims".to_string()],
                ..Default::default()
            }),
            if_revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.created);
    assert_eq!(stored.route.unwrap().enabled, Some(true));
    let shown: Value = reqwest::get(host.url(&format!("/v1/routes/{id}-grpc")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["filter"],
        json!({"status_category_code": [{"prefix": "F"}]})
    );
}

/// The CLI's route commands against a running host, with their exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_lists_explains_and_deletes_routes() {
    let cluster = unique("routes");
    let host = start_host(&cluster).await;
    let server = format!("http://{}", host.http);
    let dir = std::env::temp_dir().join(unique("route-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let tag = &unique("r")[2..14];
    let id = format!("cli-{tag}");
    let file = dir.join("route.toml");
    std::fs::write(
        &file,
        format!(
            "id = \"{id}\"\nowner = \"claims-team\"\ndestinations = [\"audit.{tag}\"]\n[source]\nnouns = [\"claim\"]\nverbs = [\"status-changed\"]\n[filter]\nstatus_category_code = [{{ prefix = \"F\" }}]\n"
        ),
    )
    .unwrap();
    let set = cli::run_route(
        &server,
        RouteAction::Set {
            file: &file,
            id: None,
            if_revision: None,
        },
        Output::Json,
    )
    .await;
    assert_eq!(set, ExitCode::SUCCESS);
    assert_eq!(
        cli::run_route(
            &server,
            RouteAction::List {
                owner: Some("claims-team"),
                next: None
            },
            Output::Text
        )
        .await,
        ExitCode::SUCCESS
    );
    // A cursor the API cannot read: the host refuses it.
    assert_eq!(
        cli::run_route(
            &server,
            RouteAction::List {
                owner: None,
                next: Some("not a cursor")
            },
            Output::Text
        )
        .await,
        ExitCode::from(1)
    );
    assert_eq!(
        cli::run_route(&server, RouteAction::Show(&id), Output::Json).await,
        ExitCode::SUCCESS
    );
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        json!({"noun": "claim", "verb": "status-changed", "key": "k",
               "object": status_object("k", "1", "F1")})
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        cli::run_route(
            &server,
            RouteAction::Explain {
                event: Some(&event),
                position: None
            },
            Output::Text
        )
        .await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli::run_route(
            &server,
            RouteAction::DryRun {
                file: &file,
                limit: 10
            },
            Output::Text
        )
        .await,
        ExitCode::SUCCESS
    );
    // Refused by the host: 1; unreadable file: 2; no host: 4.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"id": "x", "owner": "t", "source": {"nouns": ["claim"]}, "destinations": ["claim"]}"#,
    )
    .unwrap();
    let refused = cli::run_route(
        &server,
        RouteAction::Set {
            file: &bad,
            id: None,
            if_revision: None,
        },
        Output::Text,
    )
    .await;
    assert_eq!(refused, ExitCode::from(1));
    let missing = cli::run_route(
        &server,
        RouteAction::Set {
            file: &dir.join("missing.json"),
            id: None,
            if_revision: None,
        },
        Output::Text,
    )
    .await;
    assert_eq!(missing, ExitCode::from(2));
    assert_eq!(
        cli::run_route(&server, RouteAction::Delete(&id), Output::Text).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli::run_route(&server, RouteAction::Show(&id), Output::Text).await,
        ExitCode::from(1)
    );
    assert_eq!(
        cli::run_route(
            "http://127.0.0.1:9",
            RouteAction::List {
                owner: None,
                next: None
            },
            Output::Text
        )
        .await,
        ExitCode::from(4)
    );
}

/// A destination that refuses an event for good (here, an existing topic
/// whose `max.message.bytes` is smaller than the event) must not stop the
/// engine: after a few failed transactions the event is set aside in the
/// dead-letter topic, and events behind it, on every route, keep flowing.
/// A router plugin that picks a topic name Kafka cannot take fails only
/// that route, on that event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_refuses_an_event_does_not_stop_routing() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let cluster = unique("routes");
    let host = start_host(&cluster).await;
    wait_for_routing(&host, "claim", Duration::from_secs(60)).await;
    let run = unique("clm");
    let tag = &run[run.len() - 10..];
    let small = format!("small.{tag}");
    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .unwrap();
    admin
        .create_topics(
            [
                &NewTopic::new(&small, 1, TopicReplication::Fixed(1))
                    .set("max.message.bytes", "100"),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let only_ours = json!({"claim_id": [{"prefix": run}]});
    let (status, body) = put_route(
        &host,
        &format!("small-{tag}"),
        &json!({"owner": "t", "source": {"nouns": ["claim"]}, "filter": {"claim_id": [format!("{run}-big")]}, "destinations": [small]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let canary = format!("canary.{tag}");
    assert_eq!(
        put_route(
            &host,
            &format!("canary-{tag}"),
            &json!({"owner": "t", "source": {"nouns": ["claim"]}, "filter": only_ours, "destinations": [canary]}),
        )
        .await
        .0,
        201
    );
    let bad_name = json!({
        "owner": "t", "source": {"nouns": ["claim"], "verbs": ["status-changed"]}, "filter": only_ours,
        "plugin": {"name": "portal-router", "config": {"prefix": "portal.x y"}},
        "destinations": ["portal.*"]
    });
    assert_eq!(
        put_route(&host, &format!("bad-name-{tag}"), &bad_name)
            .await
            .0,
        201
    );

    let mut dead = SseReader::connect(&host.url("/v1/topics/switchyard.dead-letter/events"), None)
        .await
        .unwrap();
    // Larger than 100 bytes with its headers: refused by `small.*` for good.
    let big = publish_status(&host, &format!("{run}-big"), "1234567890", "F1").await;
    let after = publish_status(&host, &format!("{run}-after"), "1234567890", "F1").await;

    let mut classes = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while classes.len() < 2 && Instant::now() < deadline {
        if let Some(frame) = dead.next(Duration::from_secs(1)).await
            && frame.event.as_deref().is_some_and(|e| e.contains('.'))
        {
            let event = frame.json();
            if event["key"].as_str().is_some_and(|k| k.starts_with(&run)) {
                let extensions = &event["extensions"];
                classes.insert(
                    (
                        event["id"].as_str().unwrap().to_string(),
                        extensions["switchyard-dlq-route"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    ),
                    extensions["switchyard-dlq-class"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    // The plugin's unusable choice fails its own route only.
    assert_eq!(
        classes
            .get(&(after.clone(), format!("bad-name-{tag}")))
            .map(String::as_str),
        Some("invalid-output"),
        "{classes:?}"
    );
    // The event no transaction could carry was set aside, whole: the
    // set-aside copy stands in for every route's handling of it.
    assert_eq!(
        classes
            .get(&(big.clone(), String::new()))
            .map(String::as_str),
        Some("undeliverable"),
        "{classes:?}"
    );
    // And the one behind it went everywhere it could.
    let events = read_topic(&host, &canary, 1, Duration::from_secs(1)).await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&after.as_str()), "{events:#?}");
    let events = read_topic(&host, &small, 0, Duration::from_secs(1)).await;
    assert!(events.iter().all(|e| e["id"] != big.as_str()));
}

/// A router plugin that keeps failing under a route is paused through the
/// store like any failing plugin (it would otherwise hold up every route
/// with its failures): `plugin.paused` says why, the plugin shows paused,
/// and the route's next events are dead-lettered as `plugin-unavailable`
/// until an admin resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_plugin_that_keeps_failing_under_a_route_is_paused() {
    let cluster = unique("routes");
    let run = unique("flk").to_lowercase().replace('_', "-");
    let tag = &run[run.len() - 10..];
    let name = format!("flaky-router-{tag}");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("flaky.wasm");
    std::fs::copy(
        std::path::PathBuf::from(env!("SWITCHYARD_TEST_FIXTURE_DIR")).join("misbehaving.wasm"),
        &wasm,
    )
    .unwrap();
    // Its own pipeline (every router has a source) never sees a key it
    // misbehaves on; only the route's configuration makes it trap.
    let manifest = dir.join("flaky.toml");
    std::fs::write(
        &manifest,
        format!("name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"router\"\nsource = [\"claim.reconsideration-received\"]\n[limits]\nfailure_window_calls = 4\nfailure_pause_ratio = 0.5\n[config]\nmode = \"ok\"\nonly_key = \"none-{tag}\"\n"),
    )
    .unwrap();
    let mut config = with_routing(test_config(&kafka_bootstrap()), &cluster);
    config.plugins.artifacts_dir = Some(dir.join("artifacts"));
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).expect("host starts"))
        .await
        .unwrap();
    let server = format!("http://{}", host.http);
    wait_for_routing(&host, "claim", Duration::from_secs(60)).await;
    let mut paused_events = plugin_events(&host, &name).await;
    let pushed = push_plugin(&server, &wasm, &manifest).await;
    assert_eq!(pushed, ExitCode::SUCCESS);
    let key = format!("{run}-1");
    let route = json!({
        "owner": "tests",
        "source": {"nouns": ["claim"], "verbs": ["reconsideration-received"]},
        "filter": {"claim_id": [{"prefix": run}]},
        "plugin": {"name": name, "config": {"mode": "panic", "only_key": key}},
        "destinations": [format!("flaky.{tag}.*")]
    });
    let (status, body) = put_route(&host, &format!("flaky-{tag}"), &route).await;
    assert_eq!(status, 201, "{body}");
    // The route's plugin must be running here before events arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while plugin_shown(&server, &name).await["status"] != "active" {
        assert!(Instant::now() < deadline, "the plugin never became active");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let dead_letters =
        SseReader::connect(&host.url("/v1/topics/switchyard.dead-letter/events"), None)
            .await
            .unwrap();
    let publish = |n: u32| {
        let host = &host;
        let key = key.clone();
        async move {
            let (status, _, body) = post_json(
                &host.url("/v1/events/claim/reconsideration-received"),
                &json!({"key": key, "object": {"claim_id": key, "provider_id": "1", "reason": format!("r{n}"), "received_at": "2026-01-01T00:00:00Z"}}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    for n in 0..4 {
        publish(n).await;
    }
    expect_paused(&mut paused_events, &server, &name, "trap").await;

    // Paused: the route's next event is dead-lettered without a call.
    let id = publish(4).await;
    let mut dead_letters = dead_letters;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut class = None;
    while class.is_none() && Instant::now() < deadline {
        if let Some(frame) = dead_letters.next(Duration::from_secs(1)).await
            && frame.event.as_deref().is_some_and(|e| e.contains('.'))
        {
            let event = frame.json();
            if event["id"] == id.as_str() {
                class = event["extensions"]["switchyard-dlq-class"]
                    .as_str()
                    .map(str::to_string);
            }
        }
    }
    assert_eq!(class.as_deref(), Some("plugin-unavailable"));
    delete_plugin(&server, &name).await;
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `routing.nouns` narrows what the engine reads: only those topics are
/// assigned to it, a route on another noun is refused with the field to
/// fix, and a noun without schemas stops the host at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reads_only_the_configured_nouns() {
    let cluster = unique("nouns");
    let mut config = with_routing(test_config(&kafka_bootstrap()), &cluster);
    config.routing.nouns = vec!["claim".to_string()];
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).expect("host starts"))
        .await
        .unwrap();

    let (status, body) = put_route(
        &host,
        "edi-copy",
        &json!({"owner": "t", "source": {"nouns": ["edi"]}, "destinations": ["edi.copy"]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid-route", "{body}");
    assert_eq!(body["field"], "source.nouns", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`routing.nouns`"),
        "{body}"
    );
    let (status, body) = put_route(
        &host,
        "every-noun",
        &json!({"owner": "t", "source": {"nouns": ["*"]}, "destinations": ["all.copy"]}),
    )
    .await;
    assert_eq!(status, 201, "a wildcard reads claim too: {body}");

    let routing = wait_for_routing(&host, "claim", Duration::from_secs(30)).await;
    let assigned: Vec<&str> = routing["assigned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        assigned.iter().all(|p| p.starts_with("claim:")),
        "only `claim` is read: {assigned:?}"
    );

    let mut config = with_routing(test_config(&kafka_bootstrap()), &cluster);
    config.routing.nouns = vec!["no-such-noun".to_string()];
    let error = tokio::task::spawn_blocking(move || TestHost::start(config).err())
        .await
        .unwrap()
        .expect("a noun without schemas stops the host");
    assert!(
        format!("{error:#}").contains("`routing.nouns` names `no-such-noun`"),
        "{error:#}"
    );
}

/// Sends one conditional PUT; returns the status and the `ETag`, if any.
async fn put_if_match(host: &TestHost, id: &str, route: &Value, etag: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .put(host.url(&format!("/v1/routes/{id}")))
        .header("If-Match", etag)
        .json(route)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, etag)
}

/// Two admins change one route at the same moment through two instances,
/// both with the `If-Match` they read: one wins, the other is told to read
/// again, and every instance ends with the winner's route. Deletes race the
/// same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_writes_through_two_instances_never_both_win() {
    let cluster = unique("cas");
    let (a, b) = tokio::join!(
        start_host_with(&cluster, false),
        start_host_with(&cluster, false)
    );
    let id = "contested";
    let route = |owner: &str| {
        json!({
            "owner": owner,
            "source": {"nouns": ["claim"]},
            "destinations": ["portal.claims"]
        })
    };
    let (status, created) = put_route(&a, id, &route("first")).await;
    assert_eq!(status, 201, "{created}");
    let mut etag = format!("\"{}\"", created["revision"]);
    for round in 0..8 {
        let (owner_a, owner_b) = (format!("a{round}"), format!("b{round}"));
        let (route_a, route_b) = (route(&owner_a), route(&owner_b));
        let ((status_a, etag_a), (status_b, etag_b)) = tokio::join!(
            put_if_match(&a, id, &route_a, &etag),
            put_if_match(&b, id, &route_b, &etag)
        );
        let (winner, new_etag) = match (status_a, status_b) {
            (200, 412) => (owner_a, etag_a),
            (412, 200) => (owner_b, etag_b),
            other => panic!(
                "round {round}: both writes were checked against {etag}, and answered {other:?}"
            ),
        };
        // Each instance shows the winner once it applied the write; the
        // loser's instance may need a moment.
        for host in [&a, &b] {
            let started = Instant::now();
            loop {
                let response = reqwest::get(host.url(&format!("/v1/routes/{id}")))
                    .await
                    .unwrap();
                let shown_etag = response.headers()["etag"].to_str().unwrap().to_string();
                let shown: Value = response.json().await.unwrap();
                if shown_etag == new_etag {
                    assert_eq!(shown["owner"], winner.as_str(), "{shown}");
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "round {round}: an instance still shows {shown_etag}, not {new_etag}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        etag = new_etag;
    }
    // Two requests through one instance race the same way.
    for round in 0..4 {
        let (first, second) = (route(&format!("x{round}")), route(&format!("y{round}")));
        let ((status_x, etag_x), (status_y, etag_y)) = tokio::join!(
            put_if_match(&a, id, &first, &etag),
            put_if_match(&a, id, &second, &etag)
        );
        etag = match (status_x, status_y) {
            (200, 412) => etag_x,
            (412, 200) => etag_y,
            other => panic!(
                "one instance, round {round}: both writes were checked against {etag}, and answered {other:?}"
            ),
        };
    }
    let delete = |host: &TestHost| {
        reqwest::Client::new()
            .delete(host.url(&format!("/v1/routes/{id}")))
            .send()
    };
    let (deleted_a, deleted_b) = tokio::join!(delete(&a), delete(&b));
    let mut statuses = [
        deleted_a.unwrap().status().as_u16(),
        deleted_b.unwrap().status().as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 404]);
}
