//! The plugin contract from JavaScript (componentize-js) and Python
//! (componentize-py): each example is built by its own `build.sh` and must
//! route exactly like the Rust portal router, errors included.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use switchyard::config::PluginsConfig;
use switchyard::plugin::harness::{self, TestEvent};
use switchyard_tests::repo_root;

fn build(plugin: &str, out: &Path) {
    let script = repo_root().join("plugins").join(plugin).join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(out)
        .output()
        .expect("build.sh runs");
    assert!(
        output.status.success(),
        "{plugin}/build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn events() -> Vec<TestEvent> {
    let status = |id: serde_json::Value| {
        json!({"noun": "claim", "verb": "status-changed", "key": "C1",
               "object": {"claim_id": "C1", "provider": {"name": "H", "id": id}}})
    };
    [
        status(json!("1666666661")),
        status(json!("../x")),
        status(json!(null)),
        status(json!("Abc-123")),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect()
}

fn outcomes(plugin: &switchyard::plugin::Plugin) -> Vec<serde_json::Value> {
    let (results, ok) = harness::run(plugin, events());
    assert!(!ok, "two of the events must fail");
    results
        .into_iter()
        .map(|r| json!({"outcome": r["outcome"], "destinations": r["destinations"], "class": r["class"], "reason": r["reason"]}))
        .collect()
}

#[test]
fn javascript_and_python_plugins_route_like_the_rust_one() {
    let out = std::env::temp_dir().join(format!("switchyard-languages-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    build("js-portal-router", &out);
    build("py-portal-router", &out);

    let config = PluginsConfig::default();
    let rust = harness::load(
        &config,
        &Path::new(env!("SWITCHYARD_TEST_PLUGIN_DIR")).join("portal-router.wasm"),
        None,
    )
    .unwrap();
    let expected = outcomes(&rust);
    assert_eq!(
        expected[0]["destinations"],
        json!(["portal.provider.1666666661"])
    );
    assert_eq!(expected[1]["class"], "plugin-error");
    assert_eq!(
        expected[3]["destinations"],
        json!(["portal.provider.Abc-123"])
    );

    for name in ["js-portal-router", "py-portal-router"] {
        let plugin = harness::load(&config, &out.join(format!("{name}.wasm")), None).unwrap();
        assert_eq!(plugin.manifest().name, name);
        assert_eq!(
            outcomes(&plugin),
            expected,
            "{name} routes like the Rust plugin"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
