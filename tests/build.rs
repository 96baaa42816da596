//! Builds every Rust plugin in `plugins/` (the examples) and `tests/plugins/`
//! (misbehaving fixtures) for `wasm32-wasip2` and lays each set out as a
//! plugin folder (`<name>.wasm` beside `<name>.toml`), whose paths the tests
//! get as `SWITCHYARD_TEST_PLUGIN_DIR` and `SWITCHYARD_TEST_FIXTURE_DIR`. A
//! plugin that stops compiling fails the test build.

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

    let examples = rust_plugins(&root.join("plugins"));
    let fixtures = rust_plugins(&manifest_dir.join("plugins"));
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("plugins").display()
    );
    build(&root, &plugin_target, examples.iter().chain(&fixtures));

    let examples_out = target_root.join("switchyard-test-plugins");
    let fixtures_out = target_root.join("switchyard-test-fixtures");
    lay_out(&plugin_target, &examples, &examples_out);
    lay_out(&plugin_target, &fixtures, &fixtures_out);
    println!(
        "cargo:rustc-env=SWITCHYARD_TEST_PLUGIN_DIR={}",
        examples_out.display()
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_TEST_FIXTURE_DIR={}",
        fixtures_out.display()
    );
}

/// Folders under `dir` that hold a Rust plugin: a `Cargo.toml` and a
/// `plugin.toml`. Plugins in other languages have their own build scripts.
fn rust_plugins(dir: &Path) -> Vec<PathBuf> {
    let mut plugins: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    plugins.retain(|p| p.join("plugin.toml").is_file() && p.join("Cargo.toml").is_file());
    plugins.sort();
    plugins
}

fn build<'a>(root: &Path, plugin_target: &Path, plugins: impl Iterator<Item = &'a PathBuf>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", plugin_target)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for dir in plugins {
        command.args(["-p", &crate_name(dir)]);
    }
    let status = command.status().expect("run cargo for the plugins");
    assert!(
        status.success(),
        "building the plugins for wasm32-wasip2 failed: see the compiler output above (`scripts/setup.sh` installs the target)"
    );
}

/// Copies each plugin as `<name>.wasm` beside `<name>.toml`.
fn lay_out(plugin_target: &Path, plugins: &[PathBuf], out: &Path) {
    std::fs::create_dir_all(out).expect("create plugin folder");
    for dir in plugins {
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
}

fn crate_name(dir: &Path) -> String {
    dir.file_name()
        .expect("plugin folder name")
        .to_string_lossy()
        .into_owned()
}
