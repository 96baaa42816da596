//! `switchyard plugin new` gives a crate that tests and builds out of the
//! box, and whose component runs in the host.

use std::path::PathBuf;
use std::process::Command;

use switchyard::config::PluginsConfig;
use switchyard::plugin::{Kind, harness, scaffold};
use switchyard_tests::unique;

fn cargo(dir: &std::path::Path, args: &[&str]) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || switchyard_tests::repo_root().join("target"),
            PathBuf::from,
        )
        .join("scaffold-build");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed in the scaffold:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_scaffolded_router_tests_builds_and_runs() {
    let parent = std::env::temp_dir().join(unique("scaffold"));
    std::fs::create_dir_all(&parent).unwrap();
    let dir = scaffold::scaffold(
        &parent,
        "team-router",
        Kind::Router,
        &scaffold::default_sdk_path(),
    )
    .unwrap();
    assert!(
        scaffold::scaffold(
            &parent,
            "team-router",
            Kind::Router,
            &scaffold::default_sdk_path()
        )
        .is_err(),
        "never overwrites"
    );
    assert!(
        scaffold::scaffold(
            &parent,
            "Bad_Name",
            Kind::Router,
            &scaffold::default_sdk_path()
        )
        .is_err()
    );

    cargo(&dir, &["test", "--quiet"]);
    cargo(
        &dir,
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
    );

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || switchyard_tests::repo_root().join("target"),
            PathBuf::from,
        )
        .join("scaffold-build/wasm32-wasip2/release/team_router.wasm");
    let plugin = harness::load(
        &PluginsConfig::default(),
        &target,
        Some(&dir.join("plugin.toml")),
    )
    .unwrap();
    let events = harness::read_events(&dir.join("events.json")).unwrap();
    let (results, ok) = harness::run(&plugin, events);
    assert!(ok, "{results:?}");
    assert_eq!(
        results[0]["destinations"],
        serde_json::json!(["team-router.status-3"])
    );
    let _ = std::fs::remove_dir_all(&parent);
}
