//! Aggregation through the reference claim appeal aggregator: state per
//! claim kept exactly once, restored from the changelog by the next
//! instance, and readable for a key on any instance.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_tests::{
    SseReader, TestHost, delete_plugin, expect_paused, kafka_bootstrap, plugin_events,
    plugin_shown, post_json, push_plugin, test_config, unique, with_aggregation,
};

/// A plugin folder holding the reference aggregator only, reading from the
/// end of the topics (the shared stack's `claim` topic holds every test's
/// events), under a name of the cluster's own: every test's aggregator
/// sees every claim event, and the name tells whose summaries are whose.
fn aggregator_folder(cluster: &str) -> PathBuf {
    let built = PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR"));
    let dir = std::env::temp_dir().join(unique("aggregator-plugins"));
    std::fs::create_dir_all(&dir).unwrap();
    let name = plugin_name(cluster);
    std::fs::copy(
        built.join("claim-appeal-aggregator.wasm"),
        dir.join(format!("{name}.wasm")),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(built.join("claim-appeal-aggregator.toml"))
        .unwrap()
        .replace(
            "name = \"claim-appeal-aggregator\"",
            &format!("name = \"{name}\""),
        );
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!("{manifest}\nstart = \"latest\"\n"),
    )
    .unwrap();
    dir
}

fn plugin_name(cluster: &str) -> String {
    format!("appeals-{}", &cluster[cluster.len() - 12..])
}

async fn start_host(cluster: &str, plugins: &Path) -> TestHost {
    let mut config = with_aggregation(test_config(&kafka_bootstrap()), cluster);
    config.plugins.dir = Some(plugins.to_path_buf());
    tokio::task::spawn_blocking(move || TestHost::start(config).expect("host starts"))
        .await
        .unwrap()
}

/// Waits until the aggregator on this host owns partitions.
async fn wait_assigned(host: &TestHost, cluster: &str) {
    let group = format!("switchyard.aggregate.{cluster}.{}", plugin_name(cluster));
    wait_group_assigned(host, &group).await;
}

/// Waits until the aggregator of consumer group `group` on this host owns
/// partitions.
async fn wait_group_assigned(host: &TestHost, group: &str) {
    wait_group_assigned_or_paused(host, group, None).await;
}

/// Whether the aggregators' status shows group `group` owning partitions.
fn group_assigned(status: &Value, group: &str) -> bool {
    status["aggregators"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["group"] == group && a["assigned"].as_array().is_some_and(|p| !p.is_empty()))
}

/// [`wait_group_assigned`], or until the plugin `paused.1` is shown paused
/// by the admin API at `paused.0`.
async fn wait_group_assigned_or_paused(host: &TestHost, group: &str, paused: Option<(&str, &str)>) {
    let started = Instant::now();
    loop {
        let status: Value = reqwest::get(host.url("/v1/admin/aggregators"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if group_assigned(&status, group) {
            return;
        }
        if let Some((server, name)) = paused
            && plugin_shown(server, name).await["status"] == "paused"
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "aggregator got no partition: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish(host: &TestHost, verb: &str, key: &str, time: &str, object: Value) {
    let (status, _, body) = post_json(
        &host.url(&format!("/v1/events/claim/{verb}")),
        &json!({"key": key, "time": time, "object": object}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn status(claim: &str, category: &str, code: &str) -> Value {
    json!({
        "claim_id": claim,
        "payer": {"name": "ACME HEALTH", "id": "12345"},
        "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": "1234567890"},
        "status_category_code": category,
        "status_code": code,
        "interchange_control_number": "000000001",
        "transaction_set": "005010X212"
    })
}

fn reconsideration(claim: &str) -> Value {
    json!({"claim_id": claim, "provider_id": "1234567890", "reason": "timely filing", "received_at": "2026-01-05T12:00:00Z"})
}

/// Reads the state of a key, retrying while the owner is moving.
async fn state(host: &TestHost, cluster: &str, key: &str, want_changes: u64) -> Value {
    let name = plugin_name(cluster);
    let started = Instant::now();
    loop {
        let response = reqwest::get(host.url(&format!("/v1/aggregates/{name}/{key}")))
            .await
            .unwrap();
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The plugin's own state, as it stores it: one history entry per
        // status change.
        let changes = body["states"][0]["state"]["history"]
            .as_array()
            .map(|h| h.len() as u64);
        if code == 200 && changes == Some(want_changes) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no state with {want_changes} status changes for {key}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Per claim: current status, history, time in each status and counts, each
/// input folded once and one summary emitted per input; a second instance
/// restores the state from the changelog and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_appeals_are_aggregated_exactly_once_and_survive_a_restart() {
    let cluster = unique("agg");
    let plugins = aggregator_folder(&cluster);
    let first = start_host(&cluster, &plugins).await;
    wait_assigned(&first, &cluster).await;
    let run = unique("clm");
    let keys: Vec<String> = (0..4).map(|i| format!("{run}-{i}")).collect();
    let mut summaries = SseReader::connect(
        &first.url("/v1/nouns/claim/events?verb=appeal-summary-updated"),
        None,
    )
    .await
    .unwrap();
    for key in &keys {
        publish(
            &first,
            "status-changed",
            key,
            "2026-01-05T10:00:00Z",
            status(key, "A1", "20"),
        )
        .await;
        publish(
            &first,
            "reconsideration-received",
            key,
            "2026-01-05T12:00:00Z",
            reconsideration(key),
        )
        .await;
        publish(
            &first,
            "status-changed",
            key,
            "2026-01-05T13:30:00Z",
            status(key, "P1", "20"),
        )
        .await;
    }
    for key in &keys {
        let body = state(&first, &cluster, key, 2).await;
        let summary = &body["states"][0]["state"];
        assert_eq!(summary["reconsiderations"], 1, "{body}");
        assert_eq!(summary["history"][1]["category"], "P1");
        assert_eq!(
            summary["millis_in_status"],
            json!({"A1:20": 3 * 3600 * 1000 + 30 * 60 * 1000})
        );
    }
    // One summary per input event, none twice.
    let label = format!("{}@", plugin_name(&cluster));
    let is_ours = |event: &Value| {
        event["extensions"]["switchyard-plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with(&label))
    };
    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.values().sum::<usize>() < keys.len() * 3 && Instant::now() < deadline {
        if let Some(frame) = summaries.next(Duration::from_secs(1)).await
            && frame.event.as_deref() == Some("claim.appeal-summary-updated")
        {
            let event = frame.json();
            let key = event["key"].as_str().unwrap().to_string();
            if key.starts_with(&run) && is_ours(&event) {
                *seen.entry(key).or_insert(0) += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    while let Some(frame) = summaries.next(Duration::from_millis(300)).await {
        if frame.event.as_deref() == Some("claim.appeal-summary-updated") {
            let event = frame.json();
            let key = event["key"].as_str().unwrap().to_string();
            if key.starts_with(&run) && is_ours(&event) {
                *seen.entry(key).or_insert(0) += 1;
            }
        }
    }
    for key in &keys {
        assert_eq!(seen.get(key), Some(&3), "summaries per key: {seen:?}");
    }

    // The next instance restores the state and carries on.
    tokio::task::spawn_blocking(move || first.stop().unwrap())
        .await
        .unwrap();
    let second = start_host(&cluster, &plugins).await;
    wait_assigned(&second, &cluster).await;
    for key in &keys {
        let body = state(&second, &cluster, key, 2).await;
        assert_eq!(body["states"][0]["state"]["reconsiderations"], 1);
        publish(
            &second,
            "status-changed",
            key,
            "2026-01-06T09:00:00Z",
            status(key, "F1", "65"),
        )
        .await;
    }
    for key in &keys {
        let body = state(&second, &cluster, key, 3).await;
        let summary = &body["states"][0]["state"];
        assert_eq!(summary["history"][2]["category"], "F1");
        assert_eq!(summary["reconsiderations"], 1);
    }
}

/// With two instances sharing the partitions, a key's state is readable on
/// either: the owner answers, the other forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_readable_for_any_key_on_any_instance() {
    let cluster = unique("agg");
    let plugins = aggregator_folder(&cluster);
    let a = start_host(&cluster, &plugins).await;
    let b = start_host(&cluster, &plugins).await;
    wait_assigned(&a, &cluster).await;
    wait_assigned(&b, &cluster).await;
    let run = unique("clm");
    // Keys that cover every partition, so both instances own some.
    let mut keys: Vec<String> = Vec::new();
    let mut covered = std::collections::HashSet::new();
    for i in 0.. {
        let key = format!("{run}-{i}");
        if covered.insert(switchyard::kafka::partition_for_key(key.as_bytes(), 3)) {
            keys.push(key);
        }
        if covered.len() == 3 {
            break;
        }
    }
    for key in &keys {
        publish(
            &a,
            "status-changed",
            key,
            "2026-01-05T10:00:00Z",
            status(key, "A1", "20"),
        )
        .await;
    }
    let mut instances = std::collections::HashSet::new();
    for key in &keys {
        let from_a = state(&a, &cluster, key, 1).await;
        let from_b = state(&b, &cluster, key, 1).await;
        assert_eq!(from_a["states"], from_b["states"]);
        assert_eq!(
            from_a["instance"], from_b["instance"],
            "one owner answers both"
        );
        instances.insert(from_a["instance"].as_str().unwrap().to_string());
    }
    assert_eq!(
        instances.len(),
        2,
        "keys on every partition are owned by both instances"
    );
    let missing = reqwest::get(a.url(&format!(
        "/v1/aggregates/{}/{run}-none",
        plugin_name(&cluster)
    )))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
}

/// An aggregator that keeps failing is paused through the store like any
/// failing plugin: here the reference aggregator sends its summaries to a
/// noun without a schema, so the host refuses every output (a failure of
/// the call), and after a window of such calls `plugin.paused` says why
/// and the plugin shows paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_that_keeps_failing_is_paused() {
    let cluster = unique("aggfail");
    let tag = cluster[cluster.len() - 10..]
        .to_lowercase()
        .replace('_', "-");
    let name = format!("failing-agg-{tag}");
    let dir = std::env::temp_dir().join(unique("aggfail-plugin"));
    std::fs::create_dir_all(&dir).unwrap();
    let built = PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR"));
    let wasm = dir.join("agg.wasm");
    std::fs::copy(built.join("claim-appeal-aggregator.wasm"), &wasm).unwrap();
    let manifest = dir.join("agg.toml");
    std::fs::write(
        &manifest,
        format!("name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"aggregator\"\nsource = [\"claim.reconsideration-received\"]\nstart = \"latest\"\n[limits]\nfailure_window_calls = 4\nfailure_pause_ratio = 0.5\n[config]\noutput_noun = \"nowhere-{tag}\"\n"),
    )
    .unwrap();
    let mut config = with_aggregation(test_config(&kafka_bootstrap()), &cluster);
    config.plugins.dir = None;
    config.plugins.artifacts_dir = Some(dir.join("artifacts"));
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).expect("host starts"))
        .await
        .unwrap();
    let server = format!("http://{}", host.http);
    let mut paused_events = plugin_events(&host, &name).await;
    let pushed = push_plugin(&server, &wasm, &manifest).await;
    assert_eq!(pushed, std::process::ExitCode::SUCCESS);
    // Other tests publish reconsiderations to the same topic, and their
    // events can fill the failure window before this test publishes its
    // own: the plugin may be paused before it is ever seen assigned.
    wait_group_assigned_or_paused(
        &host,
        &format!("switchyard.aggregate.{cluster}.{name}"),
        Some((&server, &name)),
    )
    .await;

    for n in 0..4 {
        let claim = format!("{cluster}-{n}");
        publish(
            &host,
            "reconsideration-received",
            &claim,
            "2026-01-05T12:00:00Z",
            reconsideration(&claim),
        )
        .await;
    }
    expect_paused(&mut paused_events, &server, &name, "invalid-output").await;
    delete_plugin(&server, &name).await;
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads every state of a key from an aggregator, once; `None` while it
/// holds none.
async fn states_of(host: &TestHost, plugin: &str, key: &str) -> Option<Vec<Value>> {
    let response = reqwest::get(host.url(&format!("/v1/aggregates/{plugin}/{key}")))
        .await
        .unwrap();
    let code = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match code {
        200 => Some(body["states"].as_array().cloned().unwrap_or_default()),
        404 => None,
        // Partitions moving: ask again.
        503 => Some(Vec::new()),
        other => panic!("state query of {plugin}/{key} answered {other}: {body}"),
    }
}

/// Waits until `done` holds for a key's states (`None`: no state).
async fn wait_states(
    host: &TestHost,
    plugin: &str,
    key: &str,
    what: &str,
    done: impl Fn(Option<&Vec<Value>>) -> bool,
) -> Option<Vec<Value>> {
    let started = Instant::now();
    loop {
        let states = states_of(host, plugin, key).await;
        if done(states.as_ref()) {
            return states;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{plugin}/{key}: {what}; last seen {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The event times folded into one state, as the fixture records them.
fn times(state: &Value) -> Vec<String> {
    state["state"]["times"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Windows and time-to-live against the real broker, in event time: an
/// out-of-order event between two sessions joins them through the
/// plugin's `merge`; a tumbling window closes when stream time passes its
/// end and grace, and a late event for it is dropped; a key idle past the
/// time-to-live is deleted. Event times are in 2099, later than any other
/// test's, so only this test's events move these aggregators' stream time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_merge_close_and_expire_in_event_time() {
    let cluster = unique("windows");
    let tag = cluster[cluster.len() - 10..]
        .to_lowercase()
        .replace('_', "-");
    let dir = std::env::temp_dir().join(unique("window-plugins"));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = PathBuf::from(env!("SWITCHYARD_TEST_FIXTURE_DIR")).join("session-counter.wasm");
    let mut config = with_aggregation(test_config(&kafka_bootstrap()), &cluster);
    config.plugins.dir = None;
    config.plugins.artifacts_dir = Some(dir.join("artifacts"));
    let partitions = config.kafka.partitions;
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).expect("host starts"))
        .await
        .unwrap();
    let server = format!("http://{}", host.http);

    // A plain aggregator cannot have session windows: it cannot merge.
    let plain = std::fs::read(
        PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR")).join("claim-appeal-aggregator.wasm"),
    )
    .unwrap();
    let refused = reqwest::Client::new()
        .post(format!("{server}/v1/admin/plugins"))
        .multipart(
            reqwest::multipart::Form::new()
                .text(
                    "manifest",
                    format!("name = \"plain-sessions-{tag}\"\nversion = \"1.0.0\"\nkind = \"aggregator\"\nsource = [\"claim.status-changed\"]\n[aggregate]\nwindow = \"session\"\ngap_ms = 1000\n"),
                )
                .part("component", reqwest::multipart::Part::bytes(plain)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "invalid-plugin", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("session-aggregator"),
        "{problem}"
    );

    // The same fixture under three manifests.
    let deploy = |name: String, aggregate: &str| {
        let manifest = dir.join(format!("{name}.toml"));
        std::fs::write(
            &manifest,
            format!("name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"aggregator\"\nsource = [\"claim.status-changed\"]\nstart = \"latest\"\n[aggregate]\n{aggregate}\n"),
        )
        .unwrap();
        (name, manifest)
    };
    let deployed = [
        deploy(
            format!("sessions-{tag}"),
            "window = \"session\"\ngap_ms = 60000\ngrace_ms = 600000",
        ),
        deploy(
            format!("tumbling-{tag}"),
            "window = \"tumbling\"\nsize_ms = 60000\ngrace_ms = 0",
        ),
        deploy(format!("idle-{tag}"), "idle_ttl_ms = 60000"),
    ];
    for (name, manifest) in &deployed {
        assert_eq!(
            push_plugin(&server, &fixture, manifest).await,
            std::process::ExitCode::SUCCESS
        );
        wait_group_assigned(&host, &format!("switchyard.aggregate.{cluster}.{name}")).await;
    }
    let [(sessions, _), (tumbling, _), (idle, _)] = &deployed;
    let send = |key: String, time: &'static str| {
        let host = &host;
        async move {
            let object = status(&key, "F1", "65");
            publish(host, "status-changed", &key, time, object).await;
        }
    };

    // Sessions: two, 100 s apart with a 60 s gap; then an event 50 s in,
    // within the gap of both, joins them.
    let key = format!("{cluster}-s");
    send(key.clone(), "2099-01-01T00:00:00Z").await;
    send(key.clone(), "2099-01-01T00:01:40Z").await;
    wait_states(&host, sessions, &key, "two sessions", |s| {
        s.is_some_and(|s| s.len() == 2)
    })
    .await;
    send(key.clone(), "2099-01-01T00:00:50Z").await;
    let joined = wait_states(&host, sessions, &key, "one joined session", |s| {
        s.is_some_and(|s| s.len() == 1)
    })
    .await
    .unwrap();
    let start_ms = 4_070_908_800_000_i64; // 2099-01-01T00:00:00Z
    assert_eq!(joined[0]["window_start_ms"], start_ms, "{joined:?}");
    assert_eq!(joined[0]["window_end_ms"], start_ms + 100_000, "{joined:?}");
    assert_eq!(joined[0]["state"]["merges"], 1, "{joined:?}");
    assert_eq!(
        times(&joined[0]),
        [
            "2099-01-01T00:00:00.000Z",
            "2099-01-01T00:01:40.000Z",
            "2099-01-01T00:00:50.000Z"
        ]
    );

    // Tumbling, one hour on: a window closes when stream time passes its
    // end (no grace), and a late event for it changes nothing.
    let key = format!("{cluster}-t");
    send(key.clone(), "2099-01-01T01:00:10Z").await;
    send(key.clone(), "2099-01-01T01:01:10Z").await;
    send(key.clone(), "2099-01-01T01:00:20Z").await;
    // A marker after the late event: once it is folded, so is the late one.
    send(key.clone(), "2099-01-01T01:01:30Z").await;
    let windows = wait_states(&host, tumbling, &key, "the second window only", |s| {
        s.is_some_and(|s| s.len() == 1 && times(&s[0]).len() == 2)
    })
    .await
    .unwrap();
    assert_eq!(windows[0]["window_start_ms"], start_ms + 3_660_000);
    assert_eq!(
        times(&windows[0]),
        ["2099-01-01T01:01:10.000Z", "2099-01-01T01:01:30.000Z"]
    );

    // Idle time-to-live, two hours on: a key whose partition moves 2
    // minutes past its last event loses its state; the key that moved it
    // keeps its own.
    let first = format!("{cluster}-i");
    let partition = switchyard::kafka::partition_for_key(first.as_bytes(), partitions);
    let second = (0..)
        .map(|n| format!("{cluster}-i{n}"))
        .find(|k| switchyard::kafka::partition_for_key(k.as_bytes(), partitions) == partition)
        .unwrap();
    send(first.clone(), "2099-01-01T02:00:00Z").await;
    wait_states(&host, idle, &first, "the first key's state", |s| {
        s.is_some_and(|s| s.len() == 1)
    })
    .await;
    send(second.clone(), "2099-01-01T02:02:00Z").await;
    wait_states(&host, idle, &second, "the second key's state", |s| {
        s.is_some_and(|s| s.len() == 1)
    })
    .await;
    // Idle past the time-to-live: deleted in the transaction of the event
    // that moved stream time, so it is gone by now (a 503 while partitions
    // move is asked again).
    wait_states(&host, idle, &first, "the first key's state deleted", |s| {
        s.is_none_or(|s| !s.is_empty())
    })
    .await
    .map_or(Ok(()), |s| Err(format!("still held: {s:?}")))
    .unwrap();

    for (name, _) in &deployed {
        delete_plugin(&server, name).await;
    }
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
}
