//! The REST API (axum).
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/events/{noun}/{verb}` | publish one event |
//! | POST | `/v1/events:batch` | publish a batch; per-entry results in order |
//! | GET | `/v1/nouns/{noun}/events` | SSE stream of a noun's events |
//! | GET | `/v1/topics/{topic}/events` | SSE stream of any topic (e.g. a portal stream) |
//! | GET | `/v1/topics` | topic names, optionally by `prefix` |
//! | GET | `/healthz` | liveness |
//! | GET | `/metrics` | Prometheus metrics |
//! | GET | `/openapi.json` | the OpenAPI document |
//!
//! Errors are RFC 9457 problem details (`application/problem+json`) carrying
//! the stable codes of [`crate::error::Code`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ApiError, Code};
use crate::publish::{EventInput, Published};
use crate::subscribe::{self, Delivery, Position, Start, Subscription};

/// Liveness: unhealthy (503) while an exactly-once loop is stalled in the
/// Kafka client (see `exactly_once::Loop::status`), which only a restart
/// ends.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let stalled: Vec<Value> = app
        .loop_statuses()
        .into_iter()
        .filter_map(|(consumer, status)| {
            let seconds = status.stalled_seconds?;
            Some(json!({"consumer": consumer, "group": status.group, "stalled_seconds": seconds}))
        })
        .collect();
    if stalled.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "stalled",
                "detail": "a transaction commit is stuck in the kafka client; restart this instance",
                "stalled": stalled,
            })),
        )
            .into_response()
    }
}

/// Builds the REST router over the host.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.http.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/events/{noun}/{verb}", post(publish_one))
        .route("/v1/events:batch", post(publish_batch))
        .route("/v1/nouns/{noun}/events", get(subscribe_noun))
        .route("/v1/topics/{topic}/events", get(subscribe_topic))
        .route("/v1/topics", get(list_topics))
        .route("/v1/aggregates/{plugin}/{key}", get(aggregate_state))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::MethodNotAllowed,
                "this path does not take that method; see `/openapi.json`",
            )
        })
        .fallback(|| async {
            ApiError::new(
                Code::NotFound,
                "no such endpoint; see `/openapi.json` for the API",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::clone(&app))
        // The admin routes carry their own, larger body limit for components.
        .merge(crate::admin::router(Arc::clone(&app)))
        .merge(crate::route_admin::router(app))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&app).await,
    )
        .into_response()
}

async fn aggregate_state(
    State(app): State<Arc<App>>,
    Path((plugin, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let forwarded = headers.contains_key(crate::aggregation::query::FORWARDED_HEADER);
    Ok(Json(
        crate::aggregation::query::state_of(&app, &plugin, &key, forwarded).await?,
    ))
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

/// Body of a single publish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    key: String,
    object: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

/// One entry of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEntry {
    noun: String,
    verb: String,
    key: String,
    object: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    events: Vec<Value>,
}

/// Reads the body, turning size and syntax failures into problems.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                Code::PayloadTooLarge,
                format!("request body is larger than the limit of {limit} bytes; send less or split the batch"),
            )
        } else {
            ApiError::new(Code::MalformedRequest, format!("cannot read the request body: {rejection}"))
        }
    })?;
    parse_json(&bytes)
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let detail = if inner.is_syntax() || inner.is_eof() {
            format!("request body is not valid JSON: {inner}")
        } else {
            format!("request body does not have the expected shape: {inner}")
        };
        let problem = ApiError::new(Code::MalformedRequest, detail);
        if path.is_empty() || path == "." {
            problem
        } else {
            problem.with_field(path)
        }
    })
}

fn trace_extensions(headers: &HeaderMap) -> Vec<(String, Option<Vec<u8>>)> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::trace_context::carried(text("traceparent"), text("tracestate"), text("baggage"))
}

/// Publishing takes JSON only. Besides telling a client what to send, this
/// keeps a web page in a browser on the same machine from publishing with a
/// form-encoded or `text/plain` request, which browsers send cross-origin
/// without asking first.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!(
                "content type `{}` is not accepted; send `Content-Type: application/json`",
                if content_type.is_empty() {
                    "(none)"
                } else {
                    content_type
                }
            ),
        )
        .with_stored(crate::error::Stored::No))
    }
}

/// Reads path parameters, turning a bad path (such as invalid UTF-8 in a
/// percent-encoded segment) into a problem instead of plain text.
fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::new(
            Code::InvalidName,
            format!("the path is not valid: {}", rejection.body_text()),
        )
    })
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim().to_string()))
            .map_err(|_| {
                ApiError::new(Code::InvalidName, "`Idempotency-Key` must be visible ASCII")
                    .with_field("Idempotency-Key")
            }),
    }
}

fn published_json(published: &Published) -> Value {
    json!({
        "duplicate": published.duplicate,
        "id": published.id,
        "topic": published.topic,
        "partition": published.partition,
        "offset": published.offset,
        "schema_id": published.schema_id,
    })
}

async fn publish_one(
    State(app): State<Arc<App>>,
    route: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (noun, verb) = path(route)?;
    require_json(&headers)?;
    let body: PublishBody = read_json(body, app.config.http.max_body_bytes)?;
    let input = EventInput {
        noun,
        verb,
        key: body.key,
        object: body.object,
        id: body.id,
        source: body.source,
        time: body.time,
        extensions: trace_extensions(&headers),
        idempotency_key: idempotency_key(&headers)?,
    };
    let published = app.publisher.publish(input).await?;
    // A repeat is a success that wrote nothing new: 200, not 201.
    let status = if published.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(published_json(&published))).into_response())
}

async fn publish_batch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let body: BatchBody = read_json(body, app.config.http.max_body_bytes)?;
    let limit = app.config.http.max_batch_events;
    if body.events.len() > limit {
        return Err(ApiError::new(
            Code::BatchTooLarge,
            format!(
                "batch has {} events, more than the limit of {limit}; split it",
                body.events.len()
            ),
        )
        .with_field("events"));
    }
    if body.events.is_empty() {
        return Err(
            ApiError::new(Code::MalformedRequest, "batch has no events").with_field("events")
        );
    }
    let extensions = trace_extensions(&headers);
    // Entries that do not even parse fail alone; the others go ahead.
    let mut parsed: Vec<Result<EventInput, ApiError>> = Vec::with_capacity(body.events.len());
    for (index, entry) in body.events.into_iter().enumerate() {
        let entry = serde_json::from_value::<BatchEntry>(entry).map_err(|error| {
            ApiError::new(
                Code::MalformedRequest,
                format!("entry does not have the expected shape: {error}"),
            )
            .with_field(format!("events[{index}]"))
        });
        parsed.push(entry.map(|entry| EventInput {
            noun: entry.noun,
            verb: entry.verb,
            key: entry.key,
            object: entry.object,
            id: entry.id,
            source: entry.source,
            time: entry.time,
            extensions: extensions.clone(),
            // Each entry is protected by its own event id, when it has one.
            idempotency_key: None,
        }));
    }
    let valid: Vec<EventInput> = parsed
        .iter()
        .filter_map(|e| e.as_ref().ok().cloned())
        .collect();
    let mut outcomes = app.publisher.publish_batch(valid).await.into_iter();
    let mut failed = 0;
    let results: Vec<Value> = parsed
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let outcome = match entry {
                Ok(_) => outcomes.next().expect("one outcome per valid entry"),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(published) => {
                    let mut value = published_json(&published);
                    value["status"] = json!("ok");
                    value
                }
                Err(mut error) => {
                    failed += 1;
                    if let Some(field) = &error.field
                        && !field.starts_with("events[")
                    {
                        error.field = Some(format!("events[{index}].{field}"));
                    }
                    json!({"status": "error", "error": error.problem()})
                }
            }
        })
        .collect();
    Ok(Json(json!({"failed": failed, "results": results})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicsQuery {
    #[serde(default)]
    prefix: Option<String>,
}

async fn list_topics(
    State(app): State<Arc<App>>,
    query: Result<Query<TopicsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            Code::MalformedRequest,
            format!("query is not valid: {}", rejection.body_text()),
        )
    })?;
    let mut topics = app.kafka.topics().await.map_err(|error| {
        tracing::warn!(error = format!("{error:#}"), "cannot list topics");
        ApiError::new(
            Code::KafkaUnavailable,
            "kafka did not answer; retry shortly",
        )
        .with_retry_after(Duration::from_secs(1))
    })?;
    // Internal topics (`__consumer_offsets`, `_schemas`) are not streams.
    topics.retain(|topic| !topic.starts_with('_'));
    if let Some(prefix) = &query.prefix {
        topics.retain(|topic| topic.starts_with(prefix.as_str()));
    }
    topics.sort();
    Ok(Json(json!({"topics": topics})).into_response())
}

/// Query of a subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeQuery {
    /// Comma-separated verbs.
    #[serde(default)]
    verb: Option<String>,
    #[serde(default)]
    key: Option<String>,
    /// `latest` (default) or `earliest`; ignored when `Last-Event-ID` is set.
    #[serde(default)]
    start: Option<String>,
}

async fn subscribe_noun(
    State(app): State<Arc<App>>,
    noun: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<SubscribeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let noun = crate::nvo::Noun::parse(&path(noun)?)?;
    if !app.catalog.has_noun(noun.as_str()) {
        return Err(ApiError::new(
            Code::UnknownNoun,
            format!("no schema is registered for noun `{noun}`"),
        )
        .with_field("noun"));
    }
    subscribe_sse(app, noun.as_str().to_string(), &headers, query).await
}

async fn subscribe_topic(
    State(app): State<Arc<App>>,
    topic: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<SubscribeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let topic = path(topic)?;
    crate::nvo::check_topic(&topic)?;
    if topic.starts_with('_') {
        return Err(ApiError::new(
            Code::InvalidName,
            format!(
                "topic `{topic}` is internal (its name starts with `_`) and cannot be subscribed to"
            ),
        )
        .with_field("topic"));
    }
    subscribe_sse(app, topic, &headers, query).await
}

async fn subscribe_sse(
    app: Arc<App>,
    topic: String,
    headers: &HeaderMap,
    query: Result<Query<SubscribeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            Code::MalformedRequest,
            format!("query is not valid: {}", rejection.body_text()),
        )
    })?;
    // An empty `Last-Event-ID` is what a browser sends before it has seen an
    // id; it means "no position", like a missing header.
    let last_event_id = headers
        .get("last-event-id")
        .filter(|value| !value.is_empty());
    let start = match last_event_id {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::new(
                    Code::InvalidPosition,
                    "`Last-Event-ID` is not text; use an `id` from the stream",
                )
            })?;
            Start::After(Position::parse(text)?)
        }
        None => match query.start.as_deref() {
            None | Some("latest") => Start::Latest,
            Some("earliest") => Start::Earliest,
            Some(other) => {
                return Err(ApiError::new(
                    Code::MalformedRequest,
                    format!(
                        "`start` is `{}`; use `latest` or `earliest`",
                        other.escape_debug()
                    ),
                )
                .with_field("start"));
            }
        },
    };
    let verbs: Vec<String> = query
        .verb
        .map(|verbs| {
            verbs
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for verb in &verbs {
        crate::nvo::Verb::parse(verb)?;
    }
    let subscription = Subscription {
        topic,
        verbs,
        key: query.key,
        start,
        api: "sse",
    };
    let deliveries = subscribe::open(
        Arc::clone(&app.kafka),
        Arc::clone(&app.registry),
        subscription,
        app.shutdown_tx.subscribe(),
    )
    .await?;
    let heartbeat = Duration::from_millis(app.config.http.sse_heartbeat_ms);
    Ok(Sse::new(sse_frames(deliveries))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

/// Turns deliveries into SSE frames. The JSON goes on `data:` (serialized on
/// one line, and axum splits any line break into separate `data:` lines), so
/// no payload can end a frame or forge `event:` or `id:`.
fn sse_frames(
    deliveries: impl Stream<Item = Delivery> + Send + 'static,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    deliveries.map(|delivery| {
        let frame = match delivery {
            Delivery::Subscribed { position } => SseEvent::default()
                .event("subscribed")
                .id(position.to_string())
                .data(json!({"position": position.to_string()}).to_string()),
            Delivery::Reset { position, reason } => SseEvent::default()
                .event("reset")
                .id(position.to_string())
                .data(json!({"position": position.to_string(), "reason": reason}).to_string()),
            Delivery::Event { position, event } => SseEvent::default()
                .event(event.event_type.clone())
                .id(position.to_string())
                .data(serde_json::to_string(&event).unwrap_or_default()),
            Delivery::Undecodable { position, record } => SseEvent::default()
                .event("undecodable")
                .id(position.to_string())
                .data(serde_json::to_string(&record).unwrap_or_default()),
        };
        Ok(frame)
    })
}
