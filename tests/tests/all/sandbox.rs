//! The sandbox against plugins that misbehave on purpose: each failure comes
//! back classified, the host stays healthy, and trapped instances are never
//! reused.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchyard::config::PluginsConfig;
use switchyard::plugin::{Event, Failure, Manifest, Metadata, Output, Plugin, Runtime};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("SWITCHYARD_TEST_FIXTURE_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture `{}`: {e}", path.display()))
}

fn runtime() -> Runtime {
    Runtime::new(&PluginsConfig {
        dir: None,
        call_timeout_ms: 1_000,
        memory_limit_bytes: 64 * 1024 * 1024,
        ..PluginsConfig::default()
    })
    .unwrap()
}

/// The misbehaving fixture with a mode and extra manifest lines.
fn misbehaving(runtime: &Runtime, mode: &str, extra: &str) -> Plugin {
    let manifest = Manifest::parse(&format!(
        "name = \"misbehaving\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.*\"]\n{extra}\n[config]\nmode = \"{mode}\"\n"
    ))
    .unwrap();
    runtime.load(manifest, &fixture("misbehaving")).unwrap()
}

fn event(object: String) -> Event {
    Event {
        metadata: Metadata {
            id: "e1".into(),
            noun: "claim".into(),
            verb: "status-changed".into(),
            key: "C1".into(),
            time: "2026-01-01T00:00:00Z".into(),
            source: "/tests".into(),
            headers: vec![],
            position: None,
        },
        object,
    }
}

fn small() -> Event {
    event("{\"claim_id\":\"C1\"}".into())
}

fn destinations(result: Result<Output, Failure>) -> Vec<String> {
    match result {
        Ok(Output::Destinations(topics)) => topics,
        other => panic!("expected destinations, got {other:?}"),
    }
}

#[test]
fn a_well_behaved_plugin_reuses_one_instance() {
    let runtime = runtime();
    let plugin = misbehaving(&runtime, "ok", "");
    for _ in 0..50 {
        assert_eq!(destinations(plugin.call(&small())), vec!["fixtures.ok"]);
    }
    assert_eq!(plugin.stats().calls.load(Ordering::Relaxed), 50);
    assert_eq!(plugin.stats().instances_created.load(Ordering::Relaxed), 1);
}

#[test]
fn an_endless_loop_is_interrupted_at_the_deadline() {
    let runtime = runtime();
    let plugin = misbehaving(&runtime, "loop", "[limits]\ncall_timeout_ms = 200");
    let started = Instant::now();
    let failure = plugin.call(&small()).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(failure, Failure::Timeout(200));
    assert_eq!(failure.class(), "timeout");
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_millis(1_000),
        "{elapsed:?}"
    );
}

#[test]
fn memory_growth_stops_at_the_limit() {
    let runtime = runtime();
    let plugin = misbehaving(
        &runtime,
        "grow-memory",
        "[limits]\nmemory_limit_bytes = 16777216",
    );
    let failure = plugin.call(&small()).unwrap_err();
    assert_eq!(failure, Failure::OutOfMemory(16 * 1024 * 1024));
    assert_eq!(failure.class(), "out-of-memory");
}

#[test]
fn a_20_mb_object_does_not_fit_a_16_mib_plugin_but_fits_64() {
    let runtime = runtime();
    let object = format!("{{\"blob\":\"{}\"}}", "x".repeat(20 * 1000 * 1000));
    let tight = misbehaving(
        &runtime,
        "echo-size",
        "[limits]\nmemory_limit_bytes = 16777216",
    );
    assert_eq!(
        tight.call(&event(object.clone())).unwrap_err().class(),
        "out-of-memory"
    );
    let roomy = misbehaving(&runtime, "echo-size", "");
    assert_eq!(
        destinations(roomy.call(&event(object.clone()))),
        vec![format!("size.{}", object.len())]
    );
}

#[test]
fn a_panic_is_a_trap_and_the_instance_is_replaced() {
    let runtime = runtime();
    let plugin = misbehaving(&runtime, "panic", "");
    for _ in 0..3 {
        let failure = plugin.call(&small()).unwrap_err();
        assert_eq!(failure.class(), "trap");
        assert!(failure.to_string().contains("unreachable"), "{failure}");
    }
    // The one from loading, then a fresh one after each trap but the last.
    assert_eq!(plugin.stats().instances_created.load(Ordering::Relaxed), 3);
    assert_eq!(plugin.stats().traps.load(Ordering::Relaxed), 3);
}

#[test]
fn a_stack_overflow_is_a_trap() {
    let runtime = runtime();
    let plugin = misbehaving(&runtime, "stack-overflow", "");
    let failure = plugin.call(&small()).unwrap_err();
    assert_eq!(failure.class(), "trap");
    // Rust guests keep their stack in linear memory, so running out of it
    // is an out-of-bounds access; a guest whose frames live on the wasm
    // stack exhausts wasmtime's call stack instead. Both are traps.
    let reason = failure.to_string();
    assert!(
        reason.contains("out of bounds memory access") || reason.contains("call stack exhausted"),
        "{reason}"
    );
}

#[test]
fn enormous_outputs_are_refused() {
    let runtime = runtime();
    let many = misbehaving(&runtime, "many-outputs", "");
    let failure = many.call(&small()).unwrap_err();
    assert_eq!(failure.class(), "invalid-output");
    assert!(failure.to_string().contains("100000 outputs"), "{failure}");
    let huge = misbehaving(&runtime, "huge-output", "");
    let failure = huge.call(&small()).unwrap_err();
    assert_eq!(failure.class(), "invalid-output");
    assert!(failure.to_string().contains("bytes of output"), "{failure}");
}

#[test]
fn a_trap_after_partial_output_yields_nothing() {
    let runtime = runtime();
    let plugin = misbehaving(&runtime, "partial-then-trap", "");
    assert_eq!(plugin.call(&small()).unwrap_err().class(), "trap");
}

#[test]
fn a_slow_plugin_near_its_deadline_still_succeeds() {
    let runtime = runtime();
    let plugin = misbehaving(
        &runtime,
        "slow",
        "grants = [\"clock\"]\n[limits]\ncall_timeout_ms = 1000",
    );
    // spin_ms defaults to 500: half the deadline, with room for a busy box.
    let started = Instant::now();
    assert_eq!(destinations(plugin.call(&small())), vec!["fixtures.slow"]);
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[test]
fn the_clock_is_frozen_unless_granted() {
    let runtime = runtime();
    let frozen = misbehaving(&runtime, "clock", "");
    assert_eq!(destinations(frozen.call(&small())), vec!["time.0"]);
    let granted = misbehaving(&runtime, "clock", "grants = [\"clock\"]");
    let seen: u64 = destinations(granted.call(&small()))[0]
        .trim_start_matches("time.")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(seen) < 60, "plugin saw {seen}, host {now}");
    // Without the grant, waiting on the clock never ends: the deadline ends it.
    let stuck = misbehaving(&runtime, "slow", "[limits]\ncall_timeout_ms = 100");
    assert_eq!(stuck.call(&small()).unwrap_err(), Failure::Timeout(100));
}

#[test]
fn an_ungranted_import_is_refused_at_load_naming_it() {
    let runtime = runtime();
    let manifest = Manifest::parse(
        "name = \"ungranted-import\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.*\"]\n",
    )
    .unwrap();
    let error = runtime
        .load(manifest, &fixture("ungranted-import"))
        .err()
        .expect("refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("imports something the host does not grant"),
        "{text}"
    );
    assert!(text.contains("test:vault/secrets"), "{text}");
}

#[test]
fn a_component_of_the_wrong_world_is_refused() {
    let runtime = runtime();
    let manifest = Manifest::parse(
        "name = \"misbehaving\"\nversion = \"0.1.0\"\nkind = \"transformer\"\nsource = [\"claim.*\"]\n",
    )
    .unwrap();
    let error = runtime
        .load(manifest, &fixture("misbehaving"))
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("does not implement the `transformer` world"),
        "{error:#}"
    );
    let manifest = Manifest::parse(
        "name = \"junk\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.*\"]\n",
    )
    .unwrap();
    let error = runtime
        .load(manifest, b"\0asm not really")
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("not a valid webassembly component"),
        "{error:#}"
    );
}

/// While a plugin spins to its deadline on every event, the health check and
/// another plugin's route keep answering quickly, and the bad plugin's events
/// go to the dead-letter topic with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_looping_plugin_does_not_slow_the_host_or_other_routes() {
    use serde_json::json;
    use switchyard_tests::{SseReader, TestHost, kafka_bootstrap, post_json, test_config, unique};

    let run = unique("sandbox");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let examples = PathBuf::from(env!("SWITCHYARD_TEST_PLUGIN_DIR"));
    let fixtures = PathBuf::from(env!("SWITCHYARD_TEST_FIXTURE_DIR"));
    let loop_key = unique("LOOP");
    let provider: String = format!("{}", 9_000_000_000_u64 + u64::from(std::process::id()));
    // Names of their own, so no other host in the test binary shares their
    // consumer groups.
    let router_name = format!("portal-router-{}", run.to_lowercase().replace('_', "-"));
    let loop_name = format!("loop-router-{}", run.to_lowercase().replace('_', "-"));
    std::fs::copy(
        examples.join("portal-router.wasm"),
        dir.join(format!("{router_name}.wasm")),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{router_name}.toml")),
        format!("name = \"{router_name}\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.status-changed\"]\nstart = \"latest\"\n[config]\nprefix = \"sandbox.portal\"\n"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("misbehaving.wasm"),
        dir.join(format!("{loop_name}.wasm")),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{loop_name}.toml")),
        format!("name = \"{loop_name}\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.reconsideration-received\"]\nstart = \"latest\"\n[config]\nmode = \"loop\"\nonly_key = \"{loop_key}\"\n"),
    )
    .unwrap();

    let mut config = test_config(&kafka_bootstrap());
    config.plugins.dir = Some(dir.clone());
    let host = tokio::task::spawn_blocking(move || TestHost::start(config).unwrap())
        .await
        .unwrap();
    let mut dead = SseReader::connect(&host.url("/v1/topics/switchyard.dead-letter/events"), None)
        .await
        .unwrap();
    dead.until_event("subscribed", Duration::from_secs(10))
        .await
        .unwrap();

    // The pipelines start at the end of `claim` once they have joined their
    // consumer groups: a probe published before that is never read. Probe
    // until the loop plugin has really started on one (it dead-letters it).
    let probe = json!({"key": loop_key, "object": {"claim_id": "probe", "provider_id": "1", "reason": "probe", "received_at": "2026-01-01T00:00:00Z"}});
    let probing = Instant::now();
    let frame = 'probed: loop {
        assert!(
            probing.elapsed() < Duration::from_secs(60),
            "no probe was dead-lettered"
        );
        let (status, _, _) = post_json(
            &host.url("/v1/events/claim/reconsideration-received"),
            &probe,
        )
        .await;
        assert_eq!(status, 201);
        // Up to 4 s per probe, however busy the shared dead-letter topic.
        let probed = Instant::now();
        while let Some(left) = Duration::from_secs(4).checked_sub(probed.elapsed())
            && let Some(frame) = dead.next(left).await
        {
            if frame.event.as_deref() == Some("claim.reconsideration-received")
                && frame.json()["key"] == loop_key
            {
                break 'probed frame;
            }
        }
    };
    let extensions = frame.json()["extensions"].clone();
    assert_eq!(extensions["switchyard-dlq-class"], "timeout");
    assert_eq!(
        extensions["switchyard-dlq-plugin"],
        format!("{loop_name}@0.1.0")
    );

    // Three more looping events keep the bad plugin busy for about 3 s.
    for n in 0..3 {
        let mut event = probe.clone();
        event["object"]["claim_id"] = json!(format!("loop-{n}"));
        let (status, _, _) = post_json(
            &host.url("/v1/events/claim/reconsideration-received"),
            &event,
        )
        .await;
        assert_eq!(status, 201);
    }
    let claim_id = unique("C");
    let status_event = json!({"key": claim_id, "object": {
        "claim_id": claim_id, "payer": {"name": "P"}, "provider": {"name": "H", "id": provider},
        "status_category_code": "F0", "status_code": "3", "interchange_control_number": "1", "transaction_set": "005010X212"
    }});
    let published_at = Instant::now();
    let (status, _, body) =
        post_json(&host.url("/v1/events/claim/status-changed"), &status_event).await;
    assert_eq!(status, 201, "{body}");
    let routed_id = body["id"].as_str().unwrap().to_string();

    // Health answers quickly throughout.
    let mut slowest = Duration::ZERO;
    let client = reqwest::Client::new();
    while published_at.elapsed() < Duration::from_millis(2_500) {
        let started = Instant::now();
        let response = client.get(host.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_millis(300),
        "slowest health check took {slowest:?}"
    );

    // The well-behaved route delivered while the loop plugin was spinning.
    let mut portal = SseReader::connect(
        &host.url(&format!(
            "/v1/topics/sandbox.portal.{provider}/events?start=earliest"
        )),
        None,
    )
    .await
    .unwrap();
    let routed = loop {
        let frame = portal
            .next(Duration::from_secs(10))
            .await
            .expect("routed event");
        if frame.event.as_deref() == Some("claim.status-changed") && frame.json()["id"] == routed_id
        {
            break frame.json();
        }
    };
    assert_eq!(
        routed["extensions"]["switchyard-router"],
        format!("{router_name}@0.1.0")
    );

    // All three looping events were dead-lettered as timeouts (as were any
    // probes still in line behind the first).
    let mut timeouts = 0;
    while timeouts < 3 {
        let frame = dead
            .next(Duration::from_secs(15))
            .await
            .expect("dead-lettered loop event");
        if frame.event.as_deref() == Some("claim.reconsideration-received")
            && frame.json()["key"] == loop_key
            && frame.json()["object"]["claim_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("loop-"))
        {
            assert_eq!(
                frame.json()["extensions"]["switchyard-dlq-class"],
                "timeout"
            );
            timeouts += 1;
        }
    }
    tokio::task::spawn_blocking(move || host.stop().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
