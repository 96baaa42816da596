//! Per-event cost of routing a claim status, four ways, in one process:
//!
//! - `wasm-noop`: a router component that returns a fixed topic,
//! - `native-noop`: the same, as a plain Rust function,
//! - `wasm-portal`: the portal router component (`plugins/portal-router`),
//! - `native-portal`: the same crate's code compiled into this binary,
//!
//! and the same four inside a pipeline step: decode the record's Avro value
//! (Confluent framing, registered schema), build the event the plugin sees,
//! route, and copy the headers for the forwarded record. Kafka itself is left
//! out, so the ratios show what the plugin boundary costs, not the broker.
//!
//! usage: plugin-bench VARIANT EVENTS [PLUGIN_DIR FIXTURE_DIR]
//!        plugin-bench all EVENTS [PLUGIN_DIR FIXTURE_DIR]   (wall clock, side by side)

use std::path::{Path, PathBuf};
use std::time::Instant;

use switchyard::avro;
use switchyard::config::PluginsConfig;
use switchyard::plugin::{Event, Manifest, Metadata, Output, Plugin, Runtime};
use switchyard_plugin_sdk::Router as _;

const VARIANTS: [&str; 8] = [
    "wasm-noop",
    "native-noop",
    "wasm-portal",
    "native-portal",
    "pipeline-wasm-noop",
    "pipeline-native-noop",
    "pipeline-wasm-portal",
    "pipeline-native-portal",
];

struct Setup {
    noop: Plugin,
    portal: Plugin,
    schema: avro::Schema,
    record: Vec<u8>,
    object: String,
}

fn setup(plugin_dir: &Path, fixture_dir: &Path) -> anyhow::Result<Setup> {
    let runtime = Runtime::new(&PluginsConfig::default())?;
    let noop_manifest = Manifest::parse(
        "name = \"noop\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.*\"]\n[config]\nmode = \"ok\"\n",
    )?;
    let noop = runtime.load(
        noop_manifest,
        &std::fs::read(fixture_dir.join("misbehaving.wasm"))?,
    )?;
    let portal_manifest = Manifest::parse(&std::fs::read_to_string(
        plugin_dir.join("portal-router.toml"),
    )?)?;
    let portal = runtime.load(
        portal_manifest,
        &std::fs::read(plugin_dir.join("portal-router.wasm"))?,
    )?;
    // The runtime's epoch ticker must outlive the plugins.
    std::mem::forget(runtime);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = avro::Schema::parse_str(&std::fs::read_to_string(
        root.join("schemas/claim/status-changed.avsc"),
    )?)?;
    let object = serde_json::json!({
        "claim_id": "ABCXYZ1", "payer_claim_control_number": "05347006051", "patient_account_number": "SM123456",
        "payer": {"name": "ABC INSURANCE", "id_qualifier": "PI", "id": "12345"},
        "provider": {"name": "HOME HOSPITAL", "id_qualifier": "XX", "id": "1666666661"},
        "patient": {"name": "SMITH, FRED", "id_qualifier": "MI", "id": "123456789A"},
        "status_category_code": "P3", "status_code": "317", "entity_code": null,
        "status_effective_date": "2005-09-13", "total_charge": "8513.88", "payment_amount": null,
        "service_date_from": "2005-08-31", "service_date_to": "2005-09-06", "service_lines": [],
        "interchange_control_number": "000000907", "transaction_set": "005010X212"
    });
    let record = avro::frame(2, &avro::encode_json(&schema, &object)?);
    Ok(Setup {
        noop,
        portal,
        schema,
        record,
        object: object.to_string(),
    })
}

fn event(object: String) -> Event {
    Event {
        metadata: Metadata {
            id: "01a241c3-0167-7315-a0c9-ee3dcf88b058".into(),
            noun: "claim".into(),
            verb: "status-changed".into(),
            key: "ABCXYZ1".into(),
            time: "2026-12-04T15:53:48.647Z".into(),
            source: "/switchyard/plugin/x12-277-transformer".into(),
            headers: vec![],
            position: None,
        },
        object,
    }
}

fn sdk_event(object: String) -> switchyard_plugin_sdk::Event {
    switchyard_plugin_sdk::Event {
        metadata: switchyard_plugin_sdk::Metadata {
            id: "01a241c3-0167-7315-a0c9-ee3dcf88b058".into(),
            noun: "claim".into(),
            verb: "status-changed".into(),
            key: "ABCXYZ1".into(),
            time: "2026-12-04T15:53:48.647Z".into(),
            source: "/switchyard/plugin/x12-277-transformer".into(),
            headers: vec![],
            position: None,
        },
        object,
    }
}

fn wasm_route(plugin: &Plugin, object: String) -> Vec<String> {
    match plugin.call(&event(object)) {
        Ok(Output::Destinations(topics)) => topics,
        other => panic!("router failed: {other:?}"),
    }
}

fn native_noop(_object: String) -> Vec<String> {
    vec![std::hint::black_box("fixtures.ok").to_string()]
}

fn native_portal(object: String) -> Vec<String> {
    let config = vec![switchyard_plugin_sdk::ConfigEntry {
        name: "prefix".into(),
        value: "portal.provider".into(),
    }];
    portal_router::PortalRouter::route(sdk_event(object), config).expect("native route")
}

/// One routing step of a pipeline: decode, build the event, route, and
/// prepare the forwarded record's headers.
fn pipeline_step(setup: &Setup, route: &dyn Fn(String) -> Vec<String>) -> usize {
    let (_, body) = avro::unframe(&setup.record).expect("framed");
    let object = avro::decode_exact(&setup.schema, body).expect("decodes");
    let topics = route(object.to_string());
    let headers: Vec<(String, Vec<u8>)> = topics
        .iter()
        .map(|t| ("switchyard-router".to_string(), t.as_bytes().to_vec()))
        .collect();
    std::hint::black_box(headers).len()
}

fn run(setup: &Setup, variant: &str, events: usize) -> usize {
    let mut sink = 0;
    for _ in 0..events {
        sink += match variant {
            "wasm-noop" => wasm_route(&setup.noop, setup.object.clone()).len(),
            "native-noop" => native_noop(setup.object.clone()).len(),
            "wasm-portal" => wasm_route(&setup.portal, setup.object.clone()).len(),
            "native-portal" => native_portal(setup.object.clone()).len(),
            "pipeline-wasm-noop" => pipeline_step(setup, &|o| wasm_route(&setup.noop, o)),
            "pipeline-native-noop" => pipeline_step(setup, &native_noop),
            "pipeline-wasm-portal" => pipeline_step(setup, &|o| wasm_route(&setup.portal, o)),
            "pipeline-native-portal" => pipeline_step(setup, &native_portal),
            other => panic!("unknown variant `{other}`; one of {VARIANTS:?}"),
        };
    }
    sink
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("all", String::as_str);
    let events: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| PathBuf::from("target"), PathBuf::from);
    let plugin_dir = args
        .get(3)
        .map_or_else(|| target.join("switchyard-test-plugins"), PathBuf::from);
    let fixture_dir = args
        .get(4)
        .map_or_else(|| target.join("switchyard-test-fixtures"), PathBuf::from);
    let setup = setup(&plugin_dir, &fixture_dir)?;

    // Same answers both ways, or the comparison means nothing.
    assert_eq!(
        wasm_route(&setup.portal, setup.object.clone()),
        native_portal(setup.object.clone())
    );

    if variant != "all" {
        let sink = run(&setup, variant, events);
        println!("{variant} {events} {sink}");
        return Ok(());
    }
    // Wall clock, interleaved in rounds so drift hits every variant alike.
    let mut nanos = vec![0_u128; VARIANTS.len()];
    for _round in 0..5 {
        for (i, variant) in VARIANTS.iter().enumerate() {
            run(&setup, variant, events / 10); // warm
            let started = Instant::now();
            run(&setup, variant, events);
            nanos[i] += started.elapsed().as_nanos();
        }
    }
    println!("variant,ns_per_event");
    for (variant, total) in VARIANTS.iter().zip(&nanos) {
        println!("{variant},{:.0}", *total as f64 / (5.0 * events as f64));
    }
    Ok(())
}
