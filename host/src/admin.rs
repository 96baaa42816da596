//! The admin API for plugins (REST): upload, list, show, activate, roll
//! back, pause, resume and delete. The `switchyard plugin` commands use it.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/admin/plugins` | upload a version: multipart `manifest` (TOML) and `component` (wasm); `?activate=true` activates it |
//! | GET | `/v1/admin/plugins` | every plugin with its active version and state |
//! | GET | `/v1/admin/plugins/{name}` | one plugin: versions, state, call statistics on this instance |
//! | POST | `/v1/admin/plugins/{name}/activate` | `{"version": "…"}` |
//! | POST | `/v1/admin/plugins/{name}/rollback` | back to the version active before |
//! | POST | `/v1/admin/plugins/{name}/pause` | `{"reason": "…"}`, optional |
//! | POST | `/v1/admin/plugins/{name}/resume` | |
//! | POST | `/v1/admin/plugins/{name}/skip` | `{"topic", "partition", "offset"}`: dead-letter that record instead of handling it |
//! | DELETE | `/v1/admin/plugins/{name}` | the plugin and all its versions |
//!
//! Uploads are checked before anything is stored: the manifest parses, the
//! component is at most 64 MiB, it is a component of the declared world, it
//! imports nothing the host does not grant, and it instantiates within its
//! limits. A refused upload gets 422 `invalid-plugin` with the reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ApiError, Code};
use crate::plugin::Manifest;
use crate::plugin::store::{MAX_COMPONENT_BYTES, PluginEntry, StoreError};

/// The admin routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/admin/plugins", get(list).post(upload))
        .route("/v1/admin/plugins/{name}", get(show).delete(delete))
        .route("/v1/admin/plugins/{name}/activate", post(activate))
        .route("/v1/admin/plugins/{name}/rollback", post(rollback))
        .route("/v1/admin/plugins/{name}/pause", post(pause))
        .route("/v1/admin/plugins/{name}/resume", post(resume))
        .route("/v1/admin/plugins/{name}/skip", post(skip))
        .route("/v1/admin/aggregators", get(aggregators))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES + 1024 * 1024))
        .with_state(app)
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = match &error {
            StoreError::UnknownPlugin(_) | StoreError::UnknownVersion { .. } => Code::NotFound,
            StoreError::VersionExists { .. } | StoreError::NoRollback(_) => Code::Conflict,
            StoreError::Kafka(_) => Code::KafkaUnavailable,
        };
        let api = ApiError::new(code, error.to_string());
        if code == Code::KafkaUnavailable {
            api.with_retry_after(std::time::Duration::from_secs(1))
        } else {
            api
        }
    }
}

/// The summary of a plugin, as both transports show it.
pub(crate) fn summary(entry: &PluginEntry) -> Value {
    let active = entry.active_version();
    json!({
        "name": entry.name,
        "active_version": entry.state.active,
        "status": if entry.state.paused.is_some() { "paused" } else if active.is_some() { "active" } else { "inactive" },
        "paused_reason": entry.state.paused,
        "kind": active.and_then(|v| Manifest::parse(&v.manifest).ok()).map(|m| m.kind.as_str()),
        "versions": entry.versions.keys().collect::<Vec<_>>(),
    })
}

/// The aggregators running on this instance: group, changelog, owned
/// partitions, transactions and counters.
async fn aggregators(State(app): State<Arc<App>>) -> Json<Value> {
    let running: Vec<Value> = app
        .aggregators
        .all()
        .iter()
        .map(|aggregator| {
            json!({
                "plugin": aggregator.name,
                "group": aggregator.group,
                "changelog": aggregator.changelog,
                "topics": aggregator.topics,
                "loop": aggregator.status(),
                "assigned": aggregator.status().assigned,
                "counters": &*aggregator.counters,
            })
        })
        .collect();
    Json(json!({"aggregators": running}))
}

async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let plugins: Vec<Value> = app.store.list().iter().map(summary).collect();
    Json(json!({"plugins": plugins}))
}

async fn show(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entry = app.store.get(&name)?;
    let mut body = summary(&entry);
    body["history"] = json!(entry.state.history);
    body["version_details"] = json!(
        entry
            .versions
            .values()
            .map(|v| {
                let manifest = Manifest::parse(&v.manifest).ok();
                json!({
                    "version": v.version,
                    "sha256": v.sha256,
                    "size": v.size,
                    "uploaded_at": v.uploaded_at,
                    "kind": manifest.as_ref().map(|m| m.kind.as_str()),
                    "owner": manifest.as_ref().map(|m| m.owner.clone()),
                    "description": manifest.as_ref().map(|m| m.description.clone()),
                    "source": manifest.as_ref().map(|m| m.source.clone()),
                })
            })
            .collect::<Vec<_>>()
    );
    if let Some(plugin) = app.supervisor.running(&name).await {
        body["running"] = running_stats(&plugin);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    #[serde(default)]
    activate: bool,
}

async fn upload(
    State(app): State<Arc<App>>,
    Query(query): Query<UploadQuery>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let invalid = |detail: String| ApiError::new(Code::InvalidPlugin, detail);
    let mut manifest_text = None;
    let mut component = None;
    while let Some(field) = multipart.next_field().await.map_err(|error| {
        ApiError::new(
            Code::MalformedRequest,
            format!("the upload is not valid multipart: {error}"),
        )
    })? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|error| {
            ApiError::new(
                Code::PayloadTooLarge,
                format!("cannot read part `{name}` (components may be at most {MAX_COMPONENT_BYTES} bytes): {error}"),
            )
        })?;
        match name.as_str() {
            "manifest" => {
                manifest_text = Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| invalid("the manifest is not UTF-8".into()))?,
                );
            }
            "component" => component = Some(bytes),
            other => {
                return Err(ApiError::new(
                    Code::MalformedRequest,
                    format!("unknown part `{other}`; send `manifest` and `component`"),
                )
                .with_field(other.to_string()));
            }
        }
    }
    let manifest_text = manifest_text.ok_or_else(|| {
        ApiError::new(Code::MalformedRequest, "the `manifest` part is missing")
            .with_field("manifest")
    })?;
    let component = component.ok_or_else(|| {
        ApiError::new(Code::MalformedRequest, "the `component` part is missing")
            .with_field("component")
    })?;
    let uploaded = upload_component(&app, &manifest_text, &component, query.activate).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(&uploaded).unwrap_or_default()),
    )
        .into_response())
}

/// What an upload stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    /// Plugin name.
    pub name: String,
    /// Version stored.
    pub version: String,
    /// sha256 of the component.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// The world it implements.
    pub kind: &'static str,
    /// The active version after the upload.
    pub active_version: Option<String>,
}

/// Checks and stores an uploaded version (REST and gRPC alike): the
/// manifest parses and reads known nouns, the component is at most 64 MiB,
/// is a component of the declared world, imports nothing ungranted and
/// instantiates.
pub async fn upload_component(
    app: &App,
    manifest_text: &str,
    component: &[u8],
    activate: bool,
) -> Result<Uploaded, ApiError> {
    let invalid = |detail: String| ApiError::new(Code::InvalidPlugin, detail);
    if component.len() > MAX_COMPONENT_BYTES {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "the component is {} bytes, more than the {MAX_COMPONENT_BYTES} allowed",
                component.len()
            ),
        ));
    }
    let manifest = Manifest::parse(manifest_text).map_err(|error| {
        invalid(format!("the manifest is not valid: {error:#}")).with_field("manifest")
    })?;
    for noun in manifest.source_nouns() {
        if !app.catalog.has_noun(&noun) {
            return Err(
                invalid(format!("`source` reads noun `{noun}`, which has no schema"))
                    .with_field("manifest.source"),
            );
        }
    }

    // Validate by loading: it compiles (and caches) the component, checks
    // its world and imports, and instantiates it.
    let runtime = Arc::clone(&app.runtime);
    let checked = manifest.clone();
    let bytes = component.to_vec();
    tokio::task::spawn_blocking(move || runtime.load(checked, &bytes))
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| invalid(format!("{error:#}")).with_field("component"))?;

    let record = app
        .store
        .put_version(&manifest, manifest_text, component)
        .await?;
    tracing::info!(plugin = %record.name, version = %record.version, sha256 = %record.sha256, size = record.size, "plugin version uploaded");
    let entry = if activate {
        app.store.activate(&record.name, &record.version).await?
    } else {
        app.store.get(&record.name)?
    };
    Ok(Uploaded {
        name: record.name,
        version: record.version,
        sha256: record.sha256,
        size: record.size,
        kind: manifest.kind.as_str(),
        active_version: entry.state.active,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    version: String,
}

async fn activate(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<ActivateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(
            Code::MalformedRequest,
            format!("send `{{\"version\": \"…\"}}`: {}", rejection.body_text()),
        )
    })?;
    let entry = app.store.activate(&name, &body.version).await?;
    tracing::info!(plugin = %name, version = %body.version, "plugin version activated");
    Ok(Json(summary(&entry)))
}

async fn rollback(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entry = app.store.rollback(&name).await?;
    tracing::info!(plugin = %name, version = ?entry.state.active, "plugin rolled back");
    Ok(Json(summary(&entry)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn pause(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Option<Json<PauseBody>>,
) -> Result<Json<Value>, ApiError> {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| crate::plugin::store::DEFAULT_PAUSE_REASON.to_string());
    let entry = app.store.set_paused(&name, Some(reason)).await?;
    tracing::info!(plugin = %name, "plugin paused");
    Ok(Json(summary(&entry)))
}

async fn resume(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entry = app.store.set_paused(&name, None).await?;
    tracing::info!(plugin = %name, "plugin resumed");
    Ok(Json(summary(&entry)))
}

async fn skip(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<
        Json<crate::plugin::store::RecordPosition>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    let Json(position) = body.map_err(|rejection| {
        ApiError::new(
            Code::MalformedRequest,
            format!(
                "send `{{\"topic\", \"partition\", \"offset\"}}`: {}",
                rejection.body_text()
            ),
        )
    })?;
    tracing::info!(plugin = %name, topic = %position.topic, partition = position.partition, offset = position.offset, "record will be skipped");
    let entry = app.store.skip(&name, position).await?;
    let mut body = summary(&entry);
    body["skip"] = json!(entry.state.skip);
    Ok(Json(body))
}

async fn delete(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store.delete(&name).await?;
    tracing::info!(plugin = %name, "plugin deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Call statistics of a running plugin on this instance.
pub(crate) fn running_stats(plugin: &crate::plugin::Plugin) -> Value {
    let stats = plugin.stats();
    json!({
        "version": plugin.manifest().version,
        "calls": stats.calls.load(Ordering::Relaxed),
        "errors": {
            "plugin-error": stats.plugin_errors.load(Ordering::Relaxed),
            "trap": stats.traps.load(Ordering::Relaxed),
            "timeout": stats.timeouts.load(Ordering::Relaxed),
            "out-of-memory": stats.out_of_memory.load(Ordering::Relaxed),
            "invalid-output": stats.invalid_outputs.load(Ordering::Relaxed),
        },
        "instances_created": stats.instances_created.load(Ordering::Relaxed),
        "instances_idle": plugin.idle_instances(),
        "peak_memory_bytes": stats.peak_memory_bytes.load(Ordering::Relaxed),
        "latency_micros": crate::plugin::LATENCY_BUCKETS_MICROS
            .iter()
            .zip(&stats.latency_buckets)
            .map(|(bound, count)| json!({
                "below": if *bound == u64::MAX { None } else { Some(*bound) },
                "calls": count.load(Ordering::Relaxed),
            }))
            .collect::<Vec<_>>(),
        "busy_micros": stats.busy_micros.load(Ordering::Relaxed),
        "call_timeout_ms": plugin.timeout().as_millis() as u64,
        "memory_limit_bytes": plugin.memory_limit_bytes(),
    })
}
