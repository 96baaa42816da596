//! Builds every plugin in `plugins/` for `wasm32-wasip2` and lays them out as
//! a plugin folder (`<name>.wasm` beside `<name>.toml`), whose path the tests
//! get as `SWITCHYARD_TEST_PLUGIN_DIR`. The plugins are the tests' fixtures,
//! so a plugin that stops compiling fails the test build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("plugin-sdk").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    // A target folder of its own: the outer cargo holds the lock on its own
    // target folder while this script runs.
    let target_root =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let plugin_target = target_root.join("plugins-build");
    let out = target_root.join("switchyard-test-plugins");
    std::fs::create_dir_all(&out).expect("create plugin folder");

    let mut plugins = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins")).expect("read plugins/") {
        let dir = entry.expect("plugin entry").path();
        if dir.join("plugin.toml").is_file() {
            plugins.push(dir);
        }
    }
    plugins.sort();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &plugin_target)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for dir in &plugins {
        command.args(["-p", &crate_name(dir)]);
    }
    let status = command.status().expect("run cargo for the plugins");
    assert!(
        status.success(),
        "building the plugins for wasm32-wasip2 failed; is the target installed (`rustup target add wasm32-wasip2`)?"
    );

    for dir in &plugins {
        let manifest = std::fs::read_to_string(dir.join("plugin.toml")).expect("read plugin.toml");
        let name = manifest
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix("name = \"")
                    .and_then(|rest| rest.strip_suffix('"'))
            })
            .expect("plugin.toml has a name");
        let wasm = plugin_target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", crate_name(dir).replace('-', "_")));
        std::fs::copy(&wasm, out.join(format!("{name}.wasm"))).expect("copy plugin wasm");
        std::fs::copy(dir.join("plugin.toml"), out.join(format!("{name}.toml")))
            .expect("copy manifest");
    }
    println!(
        "cargo:rustc-env=SWITCHYARD_TEST_PLUGIN_DIR={}",
        out.display()
    );
}

fn crate_name(dir: &Path) -> String {
    dir.file_name()
        .expect("plugin folder name")
        .to_string_lossy()
        .into_owned()
}
