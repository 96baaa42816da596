//! `switchyard plugin new`: a plugin crate that builds for `wasm32-wasip2`
//! and passes its own tests as soon as it is created.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Kind;

/// Where the SDK is when this binary was built from the repository.
pub fn default_sdk_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk"))
}

/// Creates `<parent>/<name>/` with a plugin of `kind`, depending on the SDK
/// at `sdk`. Refuses to overwrite an existing folder.
pub fn scaffold(parent: &Path, name: &str, kind: Kind, sdk: &Path) -> anyhow::Result<PathBuf> {
    crate::nvo::Noun::parse(name)
        .map_err(|error| anyhow::anyhow!("plugin name: {}", error.detail))?;
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the plugin SDK is not at `{}`; pass `--sdk PATH`",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "`{}` is not the plugin SDK (no Cargo.toml); pass `--sdk PATH`",
            sdk.display()
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "`{}` already exists; choose another name or folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create `{}`", dir.display()))?;
    let crate_name = name.replace('-', "_");
    let sdk_path = sdk.display().to_string().replace('\\', "/");
    write(
        &dir.join("Cargo.toml"),
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
switchyard-plugin-sdk = {{ path = "{sdk_path}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A plugin is its own workspace, even inside another project's folder.
[workspace]
"#
        ),
    )?;
    let (source, event_type, code) = match kind {
        Kind::Router => ("claim.status-changed", "status-changed", router_code()),
        Kind::Transformer => ("claim.status-changed", "status-changed", transformer_code()),
        Kind::Aggregator => ("claim.status-changed", "status-changed", aggregator_code()),
    };
    write(&dir.join("src/lib.rs"), &code.replace("CRATE", &crate_name))?;
    write(
        &dir.join("plugin.toml"),
        &format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\ndescription = \"what {name} does\"\nowner = \"your-team\"\nsource = [\"{source}\"]\n\n[config]\nprefix = \"{name}\"\n",
            kind = kind.as_str()
        ),
    )?;
    write(
        &dir.join("events.json"),
        &format!(
            r#"[
  {{"noun": "claim", "verb": "{event_type}", "key": "C1", "object": {{"claim_id": "C1", "status_code": "3"}}}},
  {{"noun": "claim", "verb": "{event_type}", "key": "C1", "object": {{"claim_id": "C1", "status_code": "317"}}}}
]
"#
        ),
    )?;
    write(
        &dir.join("README.md"),
        &format!(
            "# {name}\n\nA Switchyard {kind} plugin.\n\n```sh\ncargo test                                          # unit tests, natively\ncargo build --release --target wasm32-wasip2        # the component\nswitchyard plugin test target/wasm32-wasip2/release/{crate_name}.wasm --manifest plugin.toml --events events.json\nswitchyard plugin push target/wasm32-wasip2/release/{crate_name}.wasm --manifest plugin.toml --activate\n```\n",
            kind = kind.as_str()
        ),
    )?;
    write(&dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}

fn router_code() -> String {
    r##"//! A router: picks the topics an event goes to.

use switchyard_plugin_sdk::{ConfigEntry, Event, PluginError, Router, config_value, export_router};

pub struct Plugin;

#[derive(serde::Deserialize)]
struct Object {
    status_code: String,
}

impl Router for Plugin {
    fn route(event: Event, config: Vec<ConfigEntry>) -> Result<Vec<String>, PluginError> {
        let prefix = config_value(&config, "prefix").unwrap_or("routed");
        let object: Object = event.object()?;
        Ok(vec![format!("{prefix}.status-{}", object.status_code)])
    }
}

export_router!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::Metadata;

    fn event(object: &str) -> Event {
        Event {
            metadata: Metadata {
                id: "e1".into(),
                noun: "claim".into(),
                verb: "status-changed".into(),
                key: "C1".into(),
                time: "2026-01-01T00:00:00Z".into(),
                source: "/test".into(),
                headers: vec![],
                position: None,
            },
            object: object.into(),
        }
    }

    #[test]
    fn routes_by_status() {
        let config = vec![ConfigEntry { name: "prefix".into(), value: "p".into() }];
        let topics = Plugin::route(event(r#"{"status_code":"3"}"#), config).unwrap();
        assert_eq!(topics, vec!["p.status-3"]);
    }

    #[test]
    fn refuses_other_shapes() {
        assert!(matches!(Plugin::route(event("{}"), vec![]), Err(PluginError::InvalidEvent(_))));
    }
}
"##
    .to_string()
}

fn transformer_code() -> String {
    r##"//! A transformer: turns one event into zero or more new events.

use switchyard_plugin_sdk::{ConfigEntry, Emitted, Event, PluginError, Transformer, export_transformer};

pub struct Plugin;

impl Transformer for Plugin {
    fn transform(event: Event, _config: Vec<ConfigEntry>) -> Result<Vec<Emitted>, PluginError> {
        // Re-emit the object unchanged under the same noun and verb; replace
        // with the events your team needs (their schemas must be registered).
        let object = event.object_value()?;
        Ok(vec![Emitted::new(&event.metadata.noun, &event.metadata.verb, &event.metadata.key, &object)?])
    }
}

export_transformer!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::Metadata;

    #[test]
    fn re_emits_the_object() {
        let event = Event {
            metadata: Metadata {
                id: "e1".into(),
                noun: "claim".into(),
                verb: "status-changed".into(),
                key: "C1".into(),
                time: "2026-01-01T00:00:00Z".into(),
                source: "/test".into(),
                headers: vec![],
                position: None,
            },
            object: r#"{"claim_id":"C1"}"#.into(),
        };
        let out = Plugin::transform(event, vec![]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].object, r#"{"claim_id":"C1"}"#);
    }
}
"##
    .to_string()
}

fn aggregator_code() -> String {
    r##"//! An aggregator: keeps a running state per key.

use switchyard_plugin_sdk::{
    AggregateResult, Aggregator, ConfigEntry, Event, PluginError, export_aggregator, state_or_default,
};

pub struct Plugin;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Count {
    events: u64,
}

impl Aggregator for Plugin {
    fn aggregate(_event: Event, state: Option<String>, _config: Vec<ConfigEntry>) -> Result<AggregateResult, PluginError> {
        let mut count: Count = state_or_default(state)?;
        count.events += 1;
        AggregateResult::keep(&count, vec![])
    }
}

export_aggregator!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plugin_sdk::Metadata;

    #[test]
    fn counts_events_per_key() {
        let event = Event {
            metadata: Metadata {
                id: "e1".into(),
                noun: "claim".into(),
                verb: "status-changed".into(),
                key: "C1".into(),
                time: "2026-01-01T00:00:00Z".into(),
                source: "/test".into(),
                headers: vec![],
                position: None,
            },
            object: "{}".into(),
        };
        let first = Plugin::aggregate(event.clone(), None, vec![]).unwrap();
        let second = Plugin::aggregate(event, first.state, vec![]).unwrap();
        assert_eq!(second.state.as_deref(), Some(r#"{"events":2}"#));
    }
}
"##
    .to_string()
}
