//! The routes API (REST). The `switchyard route` commands and the gRPC
//! `Routes` service use the same operations.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/routes` | every route; `?owner=` filters, `?limit=` and `?next=` page |
//! | PUT | `/v1/routes/{id}` | create or replace a route; `If-Match: "<revision>"` makes it conditional |
//! | GET | `/v1/routes/{id}` | one route, with its counters on this instance |
//! | DELETE | `/v1/routes/{id}` | remove it |
//! | POST | `/v1/routes:explain` | `{"event": {noun, verb, key, object}}` or `{"position": {topic, partition, offset}}`: which routes match and why |
//! | POST | `/v1/routes:dry-run` | `{"route": {…}, "limit": 100}`: what a proposed route would do with recent events |
//! | GET | `/v1/routing` | the routing engine on this instance: assignment, transactions, errors |
//!
//! Every instance applies a change as soon as it reads the route's record
//! from the routes topic; the answer to a write comes once this instance
//! has applied it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ApiError, Code};
use crate::kafka::TopicKind;
use crate::plugin::{Kind, Manifest, Plugin};
use crate::publish::EventInput;
use crate::rest::read_json;
use crate::routing::preview::{self, DryRun, Explained};
use crate::routing::{Route, StoredRoute};

/// Most routes in one page of a list.
pub const MAX_PAGE: usize = 500;

/// The routes API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/routes", get(list))
        .route("/v1/routes/{id}", get(show).put(put).delete(delete))
        .route("/v1/routes:explain", post(explain_handler))
        .route("/v1/routes:dry-run", post(dry_run_handler))
        .route("/v1/routing", get(engine_status))
        .layer(axum::extract::DefaultBodyLimit::max(
            app.config.http.max_body_bytes,
        ))
        .with_state(app)
}

/// Checks a route against the host (its plugin exists and is a router)
/// and stores it; creates its literal destinations so readers can
/// subscribe before the first event. Returns the stored route and whether
/// it is new.
pub async fn set_route(
    app: &App,
    id: &str,
    mut route: Route,
    if_revision: Option<i64>,
) -> Result<(StoredRoute, bool), ApiError> {
    crate::routing::route::check_id(id)?;
    if route.id.is_empty() {
        route.id = id.to_string();
    } else if route.id != id {
        return Err(ApiError::new(
            Code::InvalidRoute,
            format!(
                "the body names route `{}` but the path names `{id}`; make them agree",
                route.id
            ),
        )
        .with_field("id"));
    }
    route.validate()?;
    check_followed(app, &route)?;
    if let Some(plugin) = &route.plugin {
        check_router_plugin(app, &plugin.name)?;
    }
    let limit = app.config.routing.max_routes;
    if app.routes.get(id).is_err() && app.routes.len() >= limit {
        return Err(ApiError::new(
            Code::InvalidRoute,
            format!(
                "this cluster already has {limit} routes, the configured `routing.max_routes`; delete unused routes or raise the limit"
            ),
        ));
    }
    for (index, topic) in route.destinations.iter().enumerate() {
        if topic.contains('*') {
            continue;
        }
        if let Err(error) = app.kafka.ensure_topic(topic, TopicKind::Events).await {
            // A name Kafka refuses for good (say, one that collides with an
            // existing topic, `.` and `_` being alike to Kafka) is the
            // route's fault; anything else is Kafka's.
            return Err(
                match error.downcast_ref::<crate::kafka::TopicCreationError>() {
                    Some(creation) if creation.is_permanent() => ApiError::new(
                        Code::InvalidRoute,
                        format!(
                            "destination `{topic}` is refused by Kafka: {}",
                            creation.code
                        ),
                    )
                    .with_field(format!("destinations[{index}]")),
                    _ => ApiError::new(
                        Code::KafkaUnavailable,
                        format!("cannot create destination `{topic}`: {error:#}"),
                    )
                    .with_retry_after(std::time::Duration::from_secs(1)),
                },
            );
        }
    }
    let (stored, created) = app.routes.put(route, if_revision).await?;
    tracing::info!(
        route = stored.route.id,
        owner = stored.route.owner,
        revision = stored.revision,
        created,
        "route set"
    );
    Ok((stored, created))
}

fn check_router_plugin(app: &App, name: &str) -> Result<(), ApiError> {
    let refuse =
        |why: String| ApiError::new(Code::InvalidRoute, why).with_field("plugin.name".to_string());
    if let Some(plugin) = app.plugins.iter().find(|p| p.manifest().name == name) {
        return if plugin.manifest().kind == Kind::Router {
            Ok(())
        } else {
            Err(refuse(format!("plugin `{name}` is not a router")))
        };
    }
    let entry = app.store.get(name).map_err(|_| {
        refuse(format!(
            "there is no plugin `{name}`; upload the router first (`switchyard plugin push`)"
        ))
    })?;
    let manifest = entry
        .active_version()
        .and_then(|v| Manifest::parse(&v.manifest).ok())
        .ok_or_else(|| {
            refuse(format!(
                "plugin `{name}` has no active version; activate one first"
            ))
        })?;
    if manifest.kind == Kind::Router {
        Ok(())
    } else {
        Err(refuse(format!(
            "plugin `{name}` is a {}, not a router",
            manifest.kind.as_str()
        )))
    }
}

/// The plugin lookup routing uses, for answers given from a request.
fn running_plugins(app: &Arc<App>) -> impl Fn(&str) -> Option<Arc<Plugin>> + use<> {
    let app = Arc::clone(app);
    let handle = tokio::runtime::Handle::current();
    move |name: &str| handle.block_on(app.supervisor.running(name))
}

/// An explain request: an event given inline, or the position of a record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The event, as it would be published.
    #[serde(default)]
    pub event: Option<ExplainEvent>,
    /// A record already on a noun's topic.
    #[serde(default)]
    pub position: Option<ExplainPosition>,
}

/// An event to explain, as it would be published.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainEvent {
    /// Noun.
    pub noun: String,
    /// Verb.
    pub verb: String,
    /// Key.
    pub key: String,
    /// Object.
    pub object: Value,
    /// Source, when it matters to a plugin.
    #[serde(default)]
    pub source: Option<String>,
}

/// Where a record is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Previews read Kafka (a dry-run reads the recent events of every source
/// partition), so an instance runs at most [`PREVIEWS_AT_ONCE`] of each
/// kind at a time and answers `busy` (429) beyond that.
pub const PREVIEWS_AT_ONCE: usize = 2;

/// The previews an instance is running.
pub struct Previews {
    explains: tokio::sync::Semaphore,
    dry_runs: tokio::sync::Semaphore,
}

impl Default for Previews {
    fn default() -> Self {
        Previews {
            explains: tokio::sync::Semaphore::new(PREVIEWS_AT_ONCE),
            dry_runs: tokio::sync::Semaphore::new(PREVIEWS_AT_ONCE),
        }
    }
}

fn preview_permit<'a>(
    semaphore: &'a tokio::sync::Semaphore,
    what: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, ApiError> {
    semaphore.try_acquire().map_err(|_| {
        ApiError::new(
            Code::Busy,
            format!(
                "this instance is already running {PREVIEWS_AT_ONCE} route {what}s; retry in a moment"
            ),
        )
        .with_retry_after(std::time::Duration::from_secs(1))
    })
}

/// Answers an explain request.
pub async fn explain(app: &Arc<App>, request: ExplainRequest) -> Result<Explained, ApiError> {
    let _permit = preview_permit(&app.previews.explains, "explain")?;
    let routes = app.routes.snapshot();
    match (request.event, request.position) {
        (Some(event), None) => {
            // Encoded and decoded as if published, so filters see exactly
            // what the engine would see (decimals as strings, defaults
            // filled in).
            let prepared = app.publisher.prepare(EventInput {
                noun: event.noun,
                verb: event.verb,
                key: event.key,
                object: event.object,
                source: event.source,
                ..EventInput::default()
            })?;
            let app = Arc::clone(app);
            let plugins = running_plugins(&app);
            tokio::task::spawn_blocking(move || {
                preview::explain_prepared(&routes, &app.registry, &prepared, &plugins)
            })
            .await
            .map_err(|e| ApiError::internal(&e))
        }
        (None, Some(position)) => {
            crate::nvo::check_topic(&position.topic)?;
            if position.offset < 0 || position.partition < 0 {
                return Err(ApiError::new(
                    Code::MalformedRequest,
                    "`position.partition` and `position.offset` must be 0 or more",
                )
                .with_field("position"));
            }
            let app = Arc::clone(app);
            let plugins = running_plugins(&app);
            tokio::task::spawn_blocking(move || {
                preview::explain_position(
                    &app.kafka,
                    &app.registry,
                    &routes,
                    (&position.topic, position.partition, position.offset),
                    &plugins,
                )
            })
            .await
            .map_err(|e| ApiError::internal(&e))?
        }
        _ => Err(ApiError::new(
            Code::MalformedRequest,
            "give either `event` (noun, verb, key, object) or `position` (topic, partition, offset)",
        )),
    }
}

/// A dry-run request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The proposed route; it need not be stored.
    pub route: Value,
    /// How many recent events to evaluate. Default 100, at most 1000.
    #[serde(default = "default_dry_run_limit")]
    pub limit: usize,
}

fn default_dry_run_limit() -> usize {
    100
}

/// Reads a route from JSON; a wrong shape (an unknown operator in the
/// filter, a missing field) is refused as `invalid-route` with its path.
pub fn parse_route(value: Value) -> Result<Route, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let problem = ApiError::new(
            Code::InvalidRoute,
            format!("the route is not well formed: {}", error.into_inner()),
        );
        if path.is_empty() || path == "." {
            problem
        } else {
            problem.with_field(path)
        }
    })
}

/// Refuses a route that reads none of the nouns the routing engine follows
/// (`routing.nouns`, when set): it would never see an event.
fn check_followed(app: &App, route: &Route) -> Result<(), ApiError> {
    if app.config.routing.nouns.is_empty() {
        return Ok(());
    }
    let followed = app.routed_nouns();
    if followed.iter().any(|noun| route.reads_noun(noun)) {
        return Ok(());
    }
    Err(ApiError::new(
        Code::InvalidRoute,
        format!(
            "the routing engine reads only the nouns {} (config key `routing.nouns`), and this route reads none of them; change `source.nouns` or add its noun to `routing.nouns`",
            followed
                .iter()
                .map(|noun| format!("`{noun}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .with_field("source.nouns"))
}

/// Answers a dry-run request.
pub async fn dry_run(app: &Arc<App>, request: DryRunRequest) -> Result<DryRun, ApiError> {
    let _permit = preview_permit(&app.previews.dry_runs, "dry-run")?;
    let mut route = parse_route(request.route)?;
    if route.id.is_empty() {
        route.id = "dry-run".to_string();
    }
    route.validate()?;
    if let Some(plugin) = &route.plugin {
        check_router_plugin(app, &plugin.name)?;
    }
    let mut nouns: Vec<String> = app.catalog.nouns().map(str::to_string).collect();
    if let Ok(topics) = app.kafka.topics().await {
        nouns.extend(topics.into_iter().filter(|t| {
            t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }));
    }
    nouns.sort();
    nouns.dedup();
    let app = Arc::clone(app);
    let plugins = running_plugins(&app);
    tokio::task::spawn_blocking(move || {
        preview::dry_run(
            &app.kafka,
            &app.registry,
            &route,
            &nouns,
            request.limit,
            &plugins,
        )
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}

/// A route as the API shows it, with this instance's counters.
pub fn route_body(app: &App, stored: &StoredRoute) -> Value {
    let mut body = serde_json::to_value(stored).unwrap_or_default();
    let counters = app
        .routing_engine
        .get()
        .and_then(|engine| engine.status().routes.get(&stored.route.id).cloned())
        .unwrap_or_default();
    body["counters"] = json!(counters);
    body
}

fn etag(stored: &StoredRoute) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", stored.revision)).expect("digits are a header value")
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    next: Option<String>,
}

async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            Code::MalformedRequest,
            format!("bad query: {}", rejection.body_text()),
        )
    })?;
    let page = list_page(
        &app,
        query.owner.as_deref(),
        query.limit,
        query.next.as_deref(),
    )?;
    let routes: Vec<Value> = page
        .routes
        .iter()
        .map(|stored| route_body(&app, stored))
        .collect();
    Ok(Json(json!({"routes": routes, "next": page.next})))
}

/// One page of routes.
pub struct Page {
    /// Routes in id order.
    pub routes: Vec<Arc<StoredRoute>>,
    /// Cursor of the next page; none on the last.
    pub next: Option<String>,
}

/// Lists routes in id order, optionally of one owner, a page at a time.
pub fn list_page(
    app: &App,
    owner: Option<&str>,
    limit: Option<usize>,
    next: Option<&str>,
) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let after = match next {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    let snapshot = app.routes.snapshot();
    let mut matching = snapshot
        .values()
        .filter(|s| after.as_ref().is_none_or(|after| s.route.id > *after))
        .filter(|s| owner.is_none_or(|o| s.route.owner == o));
    let routes: Vec<Arc<StoredRoute>> = matching.by_ref().take(limit).cloned().collect();
    let next = if matching.next().is_some() {
        routes.last().map(|last| encode_cursor(&last.route.id))
    } else {
        None
    };
    Ok(Page { routes, next })
}

fn encode_cursor(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("after:").map(str::to_string))
        .ok_or_else(|| {
            ApiError::new(
                Code::MalformedRequest,
                "`next` is not a cursor this API gave out; start again without it",
            )
            .with_field("next")
        })
}

async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let stored = app.routes.get(&id)?;
    let mut response = Json(route_body(&app, &stored)).into_response();
    response.headers_mut().insert(header::ETAG, etag(&stored));
    Ok(response)
}

/// Reads `If-Match: "<revision>"` (quotes optional; `*` means any).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Some(crate::routing::store::ANY_REVISION));
    }
    text.trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            ApiError::new(
                Code::MalformedRequest,
                "`If-Match` must be a revision as given in `ETag`, such as \"42\"",
            )
            .with_field("If-Match")
        })
}

async fn put(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let route = parse_route(read_json(body, app.config.http.max_body_bytes)?)?;
    let (stored, created) = set_route(&app, &id, route, expected).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(route_body(&app, &stored))).into_response();
    response.headers_mut().insert(header::ETAG, etag(&stored));
    Ok(response)
}

async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.routes.delete(&id).await?;
    tracing::info!(route = id, "route deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn explain_handler(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Explained>, ApiError> {
    let request: ExplainRequest = read_json(body, app.config.http.max_body_bytes)?;
    Ok(Json(explain(&app, request).await?))
}

async fn dry_run_handler(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DryRun>, ApiError> {
    let request: DryRunRequest = read_json(body, app.config.http.max_body_bytes)?;
    Ok(Json(dry_run(&app, request).await?))
}

async fn engine_status(State(app): State<Arc<App>>) -> Json<Value> {
    match app.routing_engine.get() {
        Some(engine) => Json(json!(engine.status())),
        None => Json(
            json!({"running": false, "reason": "routing is turned off on this instance (`routing.enabled`)"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_beyond_the_limit_are_busy_and_free_again_after() {
        let previews = Previews::default();
        let held: Vec<_> = (0..PREVIEWS_AT_ONCE)
            .map(|_| preview_permit(&previews.dry_runs, "dry-run").unwrap())
            .collect();
        let refused = preview_permit(&previews.dry_runs, "dry-run").unwrap_err();
        assert_eq!(refused.code, Code::Busy);
        assert_eq!(refused.code.http_status(), StatusCode::TOO_MANY_REQUESTS);
        // Explains are counted apart.
        assert!(preview_permit(&previews.explains, "explain").is_ok());
        drop(held);
        assert!(preview_permit(&previews.dry_runs, "dry-run").is_ok());
    }
}
