//! The local test harness: runs a plugin on events from a JSON file, with
//! no Kafka and no host, so a team can try a plugin before uploading it.
//!
//! The events file is a JSON array; each entry has `noun`, `verb`, `key` and
//! `object`, and may have `id`, `source`, `time` and `headers` (an object of
//! text values). The plugin sees them as it would in a pipeline, minus the
//! Kafka position.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Event, Header, Manifest, Metadata, Output, Plugin, Runtime};
use crate::config::PluginsConfig;

/// One input event of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// Noun.
    pub noun: String,
    /// Verb.
    pub verb: String,
    /// Entity key.
    pub key: String,
    /// The object.
    pub object: Value,
    /// Event id; `test-<n>` when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Source; `/switchyard/plugin-test` when absent.
    #[serde(default)]
    pub source: Option<String>,
    /// Event time; the Unix epoch when absent, so runs are repeatable.
    #[serde(default)]
    pub time: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: serde_json::Map<String, Value>,
}

/// Loads a plugin from a `.wasm` file and its manifest (default: the
/// `.toml` beside it).
pub fn load(
    config: &PluginsConfig,
    wasm: &Path,
    manifest: Option<&Path>,
) -> anyhow::Result<Plugin> {
    let manifest_path = manifest.map_or_else(|| wasm.with_extension("toml"), Path::to_path_buf);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read manifest `{}`", manifest_path.display()))?;
    let manifest = Manifest::parse(&text)
        .with_context(|| format!("manifest `{}` is invalid", manifest_path.display()))?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read `{}`", wasm.display()))?;
    let runtime = Runtime::new(config)?;
    let plugin = runtime.load(manifest, &bytes)?;
    // The runtime's epoch ticker must outlive the plugin for deadlines to
    // fire; the harness is a short-lived process, so it lives to the end.
    std::mem::forget(runtime);
    Ok(plugin)
}

/// Reads the events file.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<TestEvent>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read events file `{}`", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "events file `{}` is not a JSON array of `{{\"noun\", \"verb\", \"key\", \"object\"}}` entries",
            path.display()
        )
    })
}

/// Runs the plugin on each event; returns one JSON result per event and
/// whether every call succeeded. Events whose type the manifest does not
/// accept are reported as skipped, as a pipeline would skip them. An
/// aggregator's state is kept per key in memory, in file order.
pub fn run(plugin: &Plugin, events: Vec<TestEvent>) -> (Vec<Value>, bool) {
    let mut all_ok = true;
    let mut states: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut results = Vec::with_capacity(events.len());
    for (index, input) in events.into_iter().enumerate() {
        let event_type = format!("{}.{}", input.noun, input.verb);
        if !plugin.manifest().accepts(&input.noun, &input.verb) {
            results.push(
                json!({"event": index, "type": event_type, "outcome": "skipped",
                "reason": format!("the manifest's `source` does not include `{event_type}`")}),
            );
            continue;
        }
        let headers = input
            .headers
            .iter()
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string)
                    .into_bytes(),
            })
            .collect();
        let event = Event {
            metadata: Metadata {
                id: input.id.unwrap_or_else(|| format!("test-{index}")),
                noun: input.noun,
                verb: input.verb,
                key: input.key,
                time: input
                    .time
                    .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_string()),
                source: input
                    .source
                    .unwrap_or_else(|| "/switchyard/plugin-test".to_string()),
                headers,
                position: None,
            },
            object: input.object.to_string(),
        };
        let key = event.metadata.key.clone();
        let started = std::time::Instant::now();
        let result = plugin.call_with_state(&event, states.get(&key).map(String::as_str));
        let micros = started.elapsed().as_micros() as u64;
        let value = match result {
            Ok(Output::Destinations(topics)) => {
                json!({"event": index, "type": event_type, "outcome": "ok", "micros": micros, "destinations": topics})
            }
            Ok(Output::Events(emitted)) => {
                json!({"event": index, "type": event_type, "outcome": "ok", "micros": micros, "events": emitted_json(emitted)})
            }
            Ok(Output::Aggregate { state, events }) => {
                let shown = state.as_deref().map(|s| {
                    serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.to_string()))
                });
                match state {
                    Some(state) => states.insert(key, state),
                    None => states.remove(&key),
                };
                json!({"event": index, "type": event_type, "outcome": "ok", "micros": micros,
                    "state": shown, "events": emitted_json(events)})
            }
            Err(failure) => {
                all_ok = false;
                json!({"event": index, "type": event_type, "outcome": "failed", "micros": micros,
                    "class": failure.class(), "reason": failure.to_string()})
            }
        };
        results.push(value);
    }
    (results, all_ok)
}

fn emitted_json(emitted: Vec<super::Emitted>) -> Vec<Value> {
    emitted
        .into_iter()
        .map(|e| {
            let object =
                serde_json::from_str::<Value>(&e.object).unwrap_or(Value::String(e.object));
            json!({"noun": e.noun, "verb": e.verb, "key": e.key, "object": object})
        })
        .collect()
}
