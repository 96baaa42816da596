//! Reading an aggregator's state for a key, on any instance, like Kafka
//! Streams' interactive queries: the key's partition is computed as the
//! producer computes it (murmur2), the instance that owns that partition
//! answers from memory, and any other instance forwards the request to it
//! once.
//!
//! `GET /v1/aggregates/{plugin}/{key}` answers
//! `{"plugin", "key", "partition", "instance", "states": [...]}`, one state
//! per window (one in all for an aggregator without windows), each with
//! its window bounds and the last event time folded into it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::group_of;
use crate::App;
use crate::error::{ApiError, Code};
use crate::kafka::partition_for_key;
use crate::plugin::Manifest;

/// Header a forwarded query carries, so it is never forwarded again.
pub const FORWARDED_HEADER: &str = "switchyard-forwarded";

/// The source topics of an aggregator that does not run here, from its
/// manifest.
fn source_topics(app: &App, plugin: &str) -> Result<Vec<String>, ApiError> {
    let manifest = app
        .plugins
        .iter()
        .find(|p| p.manifest().name == plugin)
        .map(|p| p.manifest().clone())
        .or_else(|| {
            let entry = app.store.get(plugin).ok()?;
            Manifest::parse(&entry.active_version()?.manifest).ok()
        })
        .filter(|m| m.kind == crate::plugin::Kind::Aggregator)
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!("there is no active aggregator `{plugin}`"),
            )
        })?;
    Ok(manifest.source_nouns())
}

/// Answers a state query, forwarding it to the owner when needed.
pub async fn state_of(
    app: &Arc<App>,
    plugin: &str,
    key: &str,
    forwarded: bool,
) -> Result<Value, ApiError> {
    crate::nvo::check_key(key)?;
    let partitions = match app.aggregators.get(plugin) {
        Some(running) => running.partitions,
        None => {
            let topics = source_topics(app, plugin)?;
            let topic = topics.first().ok_or_else(|| {
                ApiError::new(
                    Code::NotFound,
                    format!("aggregator `{plugin}` reads no topic"),
                )
            })?;
            let found = app.kafka.partitions(topic).await.map_err(|error| {
                ApiError::new(
                    Code::KafkaUnavailable,
                    format!("cannot read the partitions of `{topic}`: {error:#}"),
                )
                .with_retry_after(Duration::from_secs(1))
            })?;
            found.len() as i32
        }
    };
    let partition = partition_for_key(key.as_bytes(), partitions);
    if let Some(running) = app.aggregators.get(plugin) {
        let stores = running.stores.lock().expect("stores lock");
        if let Some(store) = stores.get(&partition) {
            let mut states: Vec<&super::state::Entry> = store.entries_of(key).collect();
            if states.is_empty() {
                return Err(ApiError::new(
                    Code::NotFound,
                    format!("aggregator `{plugin}` holds no state for key `{key}`"),
                ));
            }
            states.sort_by_key(|e| e.window_start_ms);
            let states: Vec<Value> = states
                .into_iter()
                .map(|e| {
                    json!({
                        "state": serde_json::from_str::<Value>(e.state.get()).unwrap_or(Value::Null),
                        "last_event_ms": e.last_event_ms,
                        "window_start_ms": e.window_start_ms,
                        "window_end_ms": e.window_end_ms,
                    })
                })
                .collect();
            return Ok(json!({
                "plugin": plugin,
                "key": key,
                "partition": partition,
                "instance": app.directory.instance(),
                "states": states,
            }));
        }
    }
    let moving = || {
        ApiError::new(
            Code::StateUnavailable,
            format!(
                "partition {partition} of aggregator `{plugin}` has no owner right now (instances are rebalancing or restoring); retry shortly"
            ),
        )
        .with_retry_after(Duration::from_secs(1))
    };
    if forwarded {
        return Err(moving());
    }
    let group = group_of(&app.config.aggregation, plugin);
    let owner = app.directory.owner(&group, partition).ok_or_else(moving)?;
    let mut url = reqwest::Url::parse(&owner.url).map_err(|_| moving())?;
    url.path_segments_mut()
        .map_err(|()| moving())?
        .extend(["v1", "aggregates", plugin, key]);
    let response = reqwest::Client::new()
        .get(url)
        .header(FORWARDED_HEADER, app.directory.instance())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|error| {
            tracing::warn!(owner = owner.url, %error, "cannot forward a state query");
            moving()
        })?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|_| moving())?;
    if status.is_success() {
        Ok(body)
    } else {
        let code = match body["code"].as_str() {
            Some("not-found") => Code::NotFound,
            _ => Code::StateUnavailable,
        };
        let mut error = ApiError::new(code, body["detail"].as_str().unwrap_or("the owner refused"));
        if code == Code::StateUnavailable {
            error = error.with_retry_after(Duration::from_secs(1));
        }
        Err(error)
    }
}
