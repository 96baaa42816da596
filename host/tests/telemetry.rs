//! One claim status followed end to end in Jaeger, and the metrics it
//! caused.
//!
//! A host process exports its spans to the local stack's Jaeger (OTLP on
//! `SWITCHYARD_TEST_OTLP_ENDPOINT`, query API on
//! `SWITCHYARD_TEST_JAEGER_QUERY`; `scripts/test.sh` sets both and starts
//! Jaeger). One event is published with a known `traceparent`; a route
//! with a content filter copies it to a topic, the reference aggregator (a
//! plugin) folds it and its summary goes to an SSE subscriber, and the
//! routed copy is read by a second SSE subscriber. (The portal router
//! plugin routes only the `claim` noun, which other tests share, so the
//! route here filters instead; a router plugin's call is the same
//! instrumented call as the aggregator's.) The test then reads the trace back from Jaeger's
//! HTTP API and checks the span tree: every span in the caller's trace, and
//! each under the span that caused it. Then it reads `/metrics` and checks
//! the counts this one event (and one refused publish) caused.
//!
//! Everything runs under names of the test's own (noun, plugins, route,
//! consumer groups, service name), so other tests' traffic cannot show up.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sse, get_text, kafka, plugin_dir, send, start, wait_working};
use serde_json::{Value, json};

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts Jaeger")
    })
}

/// GET with curl (Jaeger answers in chunks).
fn curl_get(url: &str) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", url])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// POST a JSON body with extra headers; returns the status and body.
fn post(url: &str, headers: &[&str], body: &Value) -> (u16, Value) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-X", "POST", "-H", "content-type: application/json"]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command
        .args([
            "--data-binary",
            &body.to_string(),
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A span as Jaeger's v3 API returns it (OTLP JSON, as the host sent it),
/// reduced to what the test checks.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    name: String,
    parent: Option<String>,
    links: Vec<String>,
    tags: HashMap<String, Value>,
    service: String,
}

fn spans_of(result: &Value) -> Vec<Span> {
    let attributes = |list: &Value| -> HashMap<String, Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                // `{"stringValue": "x"}` and the like: the one value inside.
                let value = a["value"]
                    .as_object()
                    .and_then(|v| v.values().next().cloned())
                    .unwrap_or(Value::Null);
                (a["key"].as_str().unwrap().to_string(), value)
            })
            .collect()
    };
    let mut spans = Vec::new();
    for resource in result["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&resource["resource"]["attributes"])
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Span {
                    id: span["spanId"].as_str().unwrap().to_string(),
                    name: span["name"].as_str().unwrap().to_string(),
                    parent: span["parentSpanId"]
                        .as_str()
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                    links: span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| l["spanId"].as_str().unwrap().to_string())
                        .collect(),
                    tags: attributes(&span["attributes"]),
                    service: service.clone(),
                });
            }
        }
    }
    spans
}

/// The value of one sample of the metrics text, by its exact name and
/// labels as written.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

#[test]
fn one_claim_status_is_one_trace_from_publish_to_subscribers() {
    let otlp = required("SWITCHYARD_TEST_OTLP_ENDPOINT");
    let jaeger = required("SWITCHYARD_TEST_JAEGER_QUERY");
    let run = format!("tr{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let dir = std::env::temp_dir().join(format!("switchyard-trace-{run}"));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let noun = format!("claims-{run}");
    let service = format!("switchyard-{run}");

    // The reference aggregator, renamed and set to read the test's noun.
    let aggregator = format!("appeals-{run}");
    std::fs::copy(
        plugin_dir().join("claim-appeal-aggregator.wasm"),
        plugins.join(format!("{aggregator}.wasm")),
    )
    .expect("the test plugins are built (run scripts/test.sh)");
    let manifest = std::fs::read_to_string(plugin_dir().join("claim-appeal-aggregator.toml"))
        .unwrap()
        .replace(
            "name = \"claim-appeal-aggregator\"",
            &format!("name = \"{aggregator}\""),
        )
        .replace("\"claim.", &format!("\"{noun}."));
    assert!(manifest.contains(&noun), "{manifest}");
    std::fs::write(
        plugins.join(format!("{aggregator}.toml")),
        format!("{manifest}\nstart = \"latest\"\n[config]\noutput_noun = \"{noun}\"\n"),
    )
    .unwrap();
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(schemas.join(&noun)).unwrap();
    let claim_schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/claim");
    for file in std::fs::read_dir(&claim_schemas).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, schemas.join(&noun).join(file.file_name().unwrap())).unwrap();
    }
    let config = dir.join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [grpc]\nlisten = \"127.0.0.1:0\"\n[registry]\nlisten = \"127.0.0.1:0\"\nschemas_dir = \"{}\"\n\
             [plugins]\ndir = \"{}\"\n[routing]\ntopic = \"_switchyard_routes.{run}\"\ngroup = \"switchyard.routing.{run}\"\nstart = \"latest\"\n\
             [aggregation]\ngroup_prefix = \"switchyard.aggregate.{run}\"\n\
             [telemetry]\notlp_endpoint = \"{otlp}\"\nservice_name = \"{service}\"\n\
             [log]\nformat = \"json\"\nfilter = \"warn,switchyard=info,switchyard::publish=debug\"\n",
            kafka(),
            schemas.display(),
            plugins.display()
        ),
    )
    .unwrap();

    let host = start(&config);
    wait_working(&host, &aggregator);

    let destination = format!("traced.{run}");
    let route_id = format!("traced-{run}");
    let (code, body) = send(
        "PUT",
        &format!("{}/v1/routes/{route_id}", host.http),
        &json!({
            "owner": "tests",
            "source": {"nouns": [noun], "verbs": ["status-changed"]},
            "filter": {"status_category_code": [{"prefix": "F"}], "provider.id": ["1112223334"]},
            "destinations": [destination]
        }),
    );
    assert_eq!(code, 201, "{body}");
    std::thread::sleep(Duration::from_secs(2));

    // Subscribed before the publish: it sees the event and the summary.
    let summaries = Sse::open(&format!("{}/v1/nouns/{noun}/events", host.http));

    let trace_id = format!("{:032x}", uuid::Uuid::now_v7().as_u128());
    let caller_span = "00f067aa0ba902b7";
    let key = format!("{run}-1");
    let object = json!({
        "claim_id": key,
        "payer": {"name": "ACME HEALTH", "id": "12345"},
        "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": "1112223334"},
        "status_category_code": "F1",
        "status_code": "20",
        "interchange_control_number": "000000001",
        "transaction_set": "005010X212"
    });
    let (code, body) = post(
        &format!("{}/v1/events/{noun}/status-changed", host.http),
        &[
            &format!("traceparent: 00-{trace_id}-{caller_span}-01"),
            "baggage: team=claims",
        ],
        &json!({"key": key, "object": object}),
    );
    assert_eq!(code, 201, "{body}");
    let event_id = body["id"].as_str().unwrap().to_string();
    // A refused publish, with a malformed traceparent: the request is
    // answered as usual (the trace header is ignored, W3C rules).
    let (code, body) = post(
        &format!("{}/v1/events/{noun}/status-changed", host.http),
        &["traceparent: 00-not-a-trace-01"],
        &json!({"key": key, "object": {"claim_id": key}}),
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["code"], "schema-violation", "{body}");

    // The status and then its summary reach the noun's subscriber.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some((event, data)) = summaries.next(Duration::from_secs(1)) {
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if data["key"] == key.as_str() {
                seen.push((event, data));
            }
        }
    }
    let names: Vec<&str> = seen.iter().map(|(event, _)| event.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{noun}.status-changed"),
            format!("{noun}.appeal-summary-updated")
        ],
        "{seen:#?}"
    );
    let summary = &seen[1].1;
    let summary_parent = summary["extensions"]["traceparent"].as_str().unwrap();
    assert!(
        summary_parent.starts_with(&format!("00-{trace_id}-")),
        "the summary continues the caller's trace: {summary}"
    );
    assert_eq!(summary["extensions"]["baggage"], "team=claims", "{summary}");

    // The routed copy, read from its topic once the route created it.
    let routed = loop {
        let (code, _) = get_text(&format!("{}/v1/topics?prefix={destination}", host.http));
        assert_eq!(code, 200);
        let (_, topics) = common::get(&format!("{}/v1/topics?prefix={destination}", host.http));
        if topics.to_string().contains(&destination) {
            let reader = Sse::open(&format!(
                "{}/v1/topics/{destination}/events?start=earliest",
                host.http
            ));
            let (_, data) = reader
                .next(Duration::from_secs(30))
                .expect("the routed copy arrives");
            break (serde_json::from_str::<Value>(&data).unwrap(), reader);
        }
        assert!(
            Instant::now() < deadline,
            "the route never wrote {destination}; routing: {}; routes: {}",
            common::get(&format!("{}/v1/routing", host.http)).1,
            common::get(&format!("{}/v1/routes", host.http)).1
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(routed.0["id"], event_id.as_str());
    assert_eq!(
        routed.0["extensions"]["switchyard-route"],
        route_id.as_str()
    );

    // The trace in Jaeger: every span named below, in one trace, with the
    // parents each must have. Spans arrive in batches every few seconds.
    let expect = [
        "publish".to_string(),
        "validate".to_string(),
        format!("send {noun}"),
        format!("route {noun}"),
        format!("route {route_id}"),
        format!("aggregate {noun}"),
        format!("plugin {aggregator}"),
        "aggregate commit".to_string(),
        "route commit".to_string(),
        format!("deliver {noun}"),
        format!("deliver {destination}"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let (code, body) = curl_get(&format!("{jaeger}/api/v3/traces/{trace_id}"));
        let spans = if code == 200 {
            spans_of(&body["result"])
        } else {
            Vec::new()
        };
        let missing: Vec<&String> = expect
            .iter()
            .filter(|name| !spans.iter().any(|s| &s.name == *name))
            .collect();
        if missing.is_empty() {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans missing from trace {trace_id}: {missing:?}; got {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(spans.iter().all(|s| s.service == service), "{spans:#?}");
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &Span {
        let found = named(name);
        assert_eq!(found.len(), 1, "one `{name}` span: {found:#?}");
        found[0]
    };
    let parent_name = |span: &Span| -> String {
        span.parent
            .as_deref()
            .and_then(|id| by_id.get(id))
            .map_or_else(|| format!("{:?}", span.parent), |p| p.name.clone())
    };

    let publish = one("publish");
    assert_eq!(
        publish.parent.as_deref(),
        Some(caller_span),
        "publish continues the caller's span"
    );
    let send_span = one(&format!("send {noun}"));
    assert_eq!(send_span.parent.as_deref(), Some(publish.id.as_str()));
    assert_eq!(send_span.tags["messaging.message.id"], event_id.as_str());
    assert!(
        named("validate")
            .iter()
            .any(|v| v.parent.as_deref() == Some(publish.id.as_str())),
        "validation runs under publish"
    );

    // Routing: the consumer's span under the producer's, each route under
    // it.
    let routing = named(&format!("route {noun}"));
    let routed_input = routing
        .iter()
        .find(|s| s.parent.as_deref() == Some(send_span.id.as_str()))
        .unwrap_or_else(|| panic!("a routing span under `send`: {routing:#?}"));
    let route = one(&format!("route {route_id}"));
    assert_eq!(route.parent.as_deref(), Some(routed_input.id.as_str()));
    assert_eq!(route.tags["matched"], true, "{route:#?}");
    assert_eq!(route.tags["destinations"], destination.as_str());
    let delivered_copy = one(&format!("deliver {destination}"));
    assert_eq!(
        delivered_copy.parent.as_deref(),
        Some(route.id.as_str()),
        "the routed copy names its route's span"
    );

    // Aggregation: the fold under the producer's span, the aggregator's
    // call under the fold, the summary's delivery under the fold.
    let folds = named(&format!("aggregate {noun}"));
    let fold = folds
        .iter()
        .find(|s| s.parent.as_deref() == Some(send_span.id.as_str()))
        .unwrap_or_else(|| panic!("an aggregation span under `send`: {folds:#?}"));
    let call = named(&format!("plugin {aggregator}"))
        .into_iter()
        .find(|s| s.parent.as_deref() == Some(fold.id.as_str()))
        .expect("the aggregator's call under the fold");
    assert_eq!(call.tags["plugin.kind"], "aggregator");
    assert_eq!(call.tags["plugin.name"], aggregator.as_str());
    assert_eq!(call.tags["plugin.version"], "0.1.0");
    let deliveries = named(&format!("deliver {noun}"));
    assert!(
        deliveries
            .iter()
            .any(|d| d.parent.as_deref() == Some(send_span.id.as_str())),
        "the status's delivery under `send`: {deliveries:#?}"
    );
    assert!(
        deliveries
            .iter()
            .any(|d| d.parent.as_deref() == Some(fold.id.as_str())),
        "the summary's delivery under the fold: {deliveries:#?}"
    );

    // Commits: under a record span of their transaction, linking to them.
    for name in ["aggregate commit", "route commit"] {
        let commits = named(name);
        assert!(
            commits.iter().any(|c| {
                let parent = parent_name(c);
                !c.links.is_empty()
                    && (parent.starts_with("aggregate ") || parent.starts_with("route "))
            }),
            "a `{name}` span under a record span, with links: {commits:#?}"
        );
    }

    // The host's log lines in the publish span carry the trace id.
    let log = std::fs::read_to_string(&host.log).unwrap();
    assert!(
        log.lines()
            .any(|line| line.contains("\"published\"") && line.contains(&trace_id)),
        "a `published` log line with trace id {trace_id}"
    );

    // Metrics: the counts this test caused.
    let (code, _) = get_text(&format!("{}/subjects", host.registry));
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (code, metrics) = get_text(&format!("{}/metrics", host.http));
        assert_eq!(code, 200);
        // Consumer lag comes with the Kafka client's statistics, every 5 s.
        if metrics.contains(&format!("consumer=\"aggregator:{aggregator}\"")) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "no consumer lag: {metrics}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let expect_sample = |series: String, value: f64| {
        assert_eq!(
            sample(&metrics, &series),
            Some(value),
            "{series} in\n{metrics}"
        );
    };
    expect_sample(
        format!("switchyard_publish_events_total{{noun=\"{noun}\",code=\"ok\"}}"),
        1.0,
    );
    expect_sample(
        format!("switchyard_publish_events_total{{noun=\"{noun}\",code=\"schema-violation\"}}"),
        1.0,
    );
    expect_sample(
        format!("switchyard_publish_duration_seconds_count{{noun=\"{noun}\"}}"),
        2.0,
    );
    expect_sample(
        format!("switchyard_route_events_total{{route=\"{route_id}\",outcome=\"matched\"}}"),
        1.0,
    );
    expect_sample(
        format!("switchyard_route_events_total{{route=\"{route_id}\",outcome=\"forwarded\"}}"),
        1.0,
    );
    expect_sample(
        format!(
            "switchyard_aggregator_events_total{{aggregator=\"{aggregator}\",outcome=\"folded\"}}"
        ),
        1.0,
    );
    expect_sample(
        format!("switchyard_dead_letters_total{{stage=\"aggregator\",name=\"{aggregator}\"}}"),
        0.0,
    );
    expect_sample(
        format!("switchyard_plugin_calls_total{{plugin=\"{aggregator}\",version=\"0.1.0\"}}"),
        1.0,
    );
    expect_sample(
        format!(
            "switchyard_plugin_errors_total{{plugin=\"{aggregator}\",version=\"0.1.0\",class=\"trap\"}}"
        ),
        0.0,
    );
    expect_sample(
        format!("switchyard_subscribers{{api=\"sse\",topic=\"{noun}\"}}"),
        1.0,
    );
    expect_sample(
        format!("switchyard_subscriber_events_total{{api=\"sse\",topic=\"{noun}\"}}"),
        2.0,
    );
    expect_sample(
        "switchyard_registry_requests_total{method=\"GET\",status=\"200\"}".to_string(),
        1.0,
    );
    assert!(
        metrics.contains(&format!(
            "switchyard_plugin_call_duration_seconds_count{{plugin=\"{aggregator}\",version=\"0.1.0\"}} 1"
        )),
        "{metrics}"
    );
    drop(routed);
    drop(summaries);
    // A subscriber that hung up is no longer counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = get_text(&format!("{}/metrics", host.http));
        if sample(
            &metrics,
            &format!("switchyard_subscribers{{api=\"sse\",topic=\"{noun}\"}}"),
        ) == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber stays counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
}
