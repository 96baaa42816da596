//! The Confluent Schema Registry REST API of the embedded registry.
//!
//! Paths, bodies and error codes follow Confluent's API so its clients (the
//! Java and Python serializers, `kcat`, `curl` scripts) work unchanged.
//! Responses use `application/vnd.schemaregistry.v1+json`; errors are
//! `{"error_code": …, "message": …}` with Confluent's numeric codes.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Mode, Registry, RegistryError, SubjectVersion};
use crate::avro::compat::CompatibilityLevel;

/// Confluent's registry media type.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry's routes. In external mode every request is forwarded to
/// the external registry as it is (with the configured headers), so
/// clients pointed at this host still reach the one registry.
pub fn router(registry: Arc<Registry>) -> Router {
    routes(registry).layer(axum::middleware::from_fn(counted))
}

/// Counts every request for the metrics endpoint, by method and status.
async fn counted(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let response = next.run(request).await;
    crate::metrics::metrics().registry_request(method, response.status().as_u16());
    response
}

fn routes(registry: Arc<Registry>) -> Router {
    if registry.external().is_some() {
        return Router::new().fallback(forward).with_state(registry);
    }
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, &json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(get_by_id))
        .route("/schemas/ids/{id}/schema", get(get_by_id_schema))
        .route("/schemas/ids/{id}/versions", get(get_by_id_versions))
        .route("/schemas/ids/{id}/subjects", get(get_by_id_subjects))
        .route(
            "/schemas/types",
            get(|| async { reply(StatusCode::OK, &json!(["AVRO"])) }),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_versions),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/mode",
            get(get_global_mode).put(put_global_mode),
        )
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .method_not_allowed_fallback(|| async {
            reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error_code": 405, "message": "HTTP 405 Method Not Allowed"}),
            )
        })
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                &json!({"error_code": 404, "message": "HTTP 404 Not Found: this registry path is not supported"}),
            )
        })
        .with_state(registry)
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// An error in Confluent's shape.
struct ConfluentError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl From<RegistryError> for ConfluentError {
    fn from(error: RegistryError) -> Self {
        let status = match &error {
            RegistryError::SubjectNotFound(_)
            | RegistryError::VersionNotFound { .. }
            | RegistryError::SchemaNotFound
            | RegistryError::SubjectSoftDeleted(_)
            | RegistryError::SubjectNotSoftDeleted(_)
            | RegistryError::VersionSoftDeleted { .. }
            | RegistryError::VersionNotSoftDeleted { .. }
            | RegistryError::SubjectConfigNotFound(_)
            | RegistryError::SubjectModeNotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Incompatible { .. } => StatusCode::CONFLICT,
            RegistryError::InvalidSchema(_)
            | RegistryError::InvalidVersion(_)
            | RegistryError::InvalidCompatibility(_)
            | RegistryError::InvalidMode(_)
            | RegistryError::NotPermitted(_)
            | RegistryError::InvalidSubject(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::Store(_) | RegistryError::Timeout(_) | RegistryError::Forward(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            RegistryError::Remote { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        };
        ConfluentError {
            status,
            code: error.confluent_code(),
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ConfluentError {
    fn into_response(self) -> Response {
        reply(
            self.status,
            &json!({"error_code": self.code, "message": self.message}),
        )
    }
}

/// Path parameters, with a bad path (such as invalid UTF-8 in a
/// percent-encoded subject) answered in Confluent's error shape.
struct ConfluentPath<T>(T);

impl<T, S> axum::extract::FromRequestParts<S> for ConfluentPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ConfluentError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ConfluentPath(value)),
            Err(rejection) => Err(ConfluentError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: 42208,
                message: format!("the path is not valid: {}", rejection.body_text()),
            }),
        }
    }
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

fn read_body(body: Result<Json<SchemaBody>, JsonRejection>) -> Result<SchemaBody, ConfluentError> {
    let Json(body) = body.map_err(|rejection| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42201,
        message: format!("request body is not `{{\"schema\": \"…\"}}`: {rejection}"),
    })?;
    if let Some(kind) = &body.schema_type
        && kind != "AVRO"
    {
        return Err(ConfluentError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42201,
            message: format!("schema type `{kind}` is not supported; only `AVRO` is"),
        });
    }
    Ok(body)
}

fn version_json(found: &SubjectVersion) -> Value {
    json!({
        "subject": found.subject,
        "version": found.version,
        "id": found.schema.id,
        "schema": found.schema.text,
    })
}

/// Boolean query flags (`deleted`, `permanent`, `normalize`, `verbose`,
/// `defaultToGlobal`); anything but `true` is false, as in Confluent's
/// registry.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn of(query: Option<&str>) -> Flags {
        Flags(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (name.to_string(), value.to_ascii_lowercase())
                })
                .collect(),
        )
    }

    fn on(&self, name: &str) -> bool {
        self.0.iter().any(|(n, v)| n == name && v == "true")
    }
}

async fn list_subjects(
    State(registry): State<Arc<Registry>>,
    RawQuery(query): RawQuery,
) -> Response {
    let flags = Flags::of(query.as_deref());
    reply(
        StatusCode::OK,
        &json!(registry.subjects(flags.on("deleted"))),
    )
}

async fn list_versions(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let flags = Flags::of(query.as_deref());
    Ok(reply(
        StatusCode::OK,
        &json!(registry.versions(&subject, flags.on("deleted"))?),
    ))
}

async fn register(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let body = read_body(body)?;
    let registered = registry.register(&subject, &body.schema).await?;
    Ok(reply(StatusCode::OK, &json!({"id": registered.schema.id})))
}

async fn lookup(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    RawQuery(query): RawQuery,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let body = read_body(body)?;
    let flags = Flags::of(query.as_deref());
    // Identity is always by normalized form, so `normalize` changes nothing.
    let found = registry.lookup(&subject, &body.schema, flags.on("deleted"))?;
    Ok(reply(StatusCode::OK, &version_json(&found)))
}

async fn get_version(
    State(registry): State<Arc<Registry>>,
    ConfluentPath((subject, version)): ConfluentPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let flags = Flags::of(query.as_deref());
    Ok(reply(
        StatusCode::OK,
        &version_json(&registry.version_of(&subject, &version, flags.on("deleted"))?),
    ))
}

async fn get_version_schema(
    State(registry): State<Arc<Registry>>,
    ConfluentPath((subject, version)): ConfluentPath<(String, String)>,
) -> Result<Response, ConfluentError> {
    let found = registry.version(&subject, &version)?;
    Ok(raw_schema(&found.schema.text))
}

fn raw_schema(text: &str) -> Response {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
    reply(StatusCode::OK, &value)
}

fn parse_id(id: &str) -> Result<u32, ConfluentError> {
    id.parse().map_err(|_| RegistryError::SchemaNotFound.into())
}

async fn get_by_id(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(id): ConfluentPath<String>,
) -> Result<Response, ConfluentError> {
    let found = registry
        .by_id(parse_id(&id)?)
        .ok_or(RegistryError::SchemaNotFound)?;
    Ok(reply(StatusCode::OK, &json!({"schema": found.text})))
}

async fn get_by_id_schema(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(id): ConfluentPath<String>,
) -> Result<Response, ConfluentError> {
    let found = registry
        .by_id(parse_id(&id)?)
        .ok_or(RegistryError::SchemaNotFound)?;
    Ok(raw_schema(&found.text))
}

async fn get_by_id_versions(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(id): ConfluentPath<String>,
) -> Result<Response, ConfluentError> {
    let id = parse_id(&id)?;
    registry.by_id(id).ok_or(RegistryError::SchemaNotFound)?;
    let usages: Vec<Value> = registry
        .usages(id, false)
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(reply(StatusCode::OK, &json!(usages)))
}

async fn get_by_id_subjects(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(id): ConfluentPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let id = parse_id(&id)?;
    registry.by_id(id).ok_or(RegistryError::SchemaNotFound)?;
    let flags = Flags::of(query.as_deref());
    let mut subjects: Vec<String> = registry
        .usages(id, flags.on("deleted"))
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    Ok(reply(StatusCode::OK, &json!(subjects)))
}

async fn delete_subject(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let permanent = Flags::of(query.as_deref()).on("permanent");
    let versions = registry.delete_subject(&subject, permanent).await?;
    Ok(reply(StatusCode::OK, &json!(versions)))
}

async fn delete_version(
    State(registry): State<Arc<Registry>>,
    ConfluentPath((subject, version)): ConfluentPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let permanent = Flags::of(query.as_deref()).on("permanent");
    let version = registry
        .delete_version(&subject, &version, permanent)
        .await?;
    Ok(reply(StatusCode::OK, &json!(version)))
}

fn compatibility_reply(reasons: &[String], verbose: bool) -> Response {
    let mut body = json!({"is_compatible": reasons.is_empty()});
    if verbose {
        body["messages"] = json!(reasons);
    }
    reply(StatusCode::OK, &body)
}

async fn check_version(
    State(registry): State<Arc<Registry>>,
    ConfluentPath((subject, version)): ConfluentPath<(String, String)>,
    RawQuery(query): RawQuery,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let body = read_body(body)?;
    let reasons = registry.check_compatibility(&subject, Some(&version), &body.schema)?;
    Ok(compatibility_reply(
        &reasons,
        Flags::of(query.as_deref()).on("verbose"),
    ))
}

async fn check_versions(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    RawQuery(query): RawQuery,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let body = read_body(body)?;
    let reasons = registry.check_compatibility(&subject, None, &body.schema)?;
    Ok(compatibility_reply(
        &reasons,
        Flags::of(query.as_deref()).on("verbose"),
    ))
}

/// A `{"compatibility": …}` body (Confluent also accepts
/// `compatibilityLevel`).
#[derive(Deserialize)]
struct ConfigBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

fn read_level(
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<CompatibilityLevel, ConfluentError> {
    let Json(body) = body.map_err(|rejection| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42203,
        message: format!("request body is not `{{\"compatibility\": \"…\"}}`: {rejection}"),
    })?;
    let text = body
        .compatibility
        .or(body.compatibility_level)
        .unwrap_or_default();
    text.parse()
        .map_err(|_| RegistryError::InvalidCompatibility(text.escape_debug().to_string()).into())
}

/// `{"<name>": "<LEVEL>"}`: Confluent answers reads with
/// `compatibilityLevel` and writes with `compatibility`.
fn level_answer(name: &str, level: CompatibilityLevel) -> Response {
    reply(StatusCode::OK, &json!({name: level.as_str()}))
}

async fn get_global_config(State(registry): State<Arc<Registry>>) -> Response {
    level_answer("compatibilityLevel", registry.global_level())
}

async fn put_global_config(
    State(registry): State<Arc<Registry>>,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let level = read_level(body)?;
    registry.set_level(None, Some(level)).await?;
    Ok(level_answer("compatibility", level))
}

async fn delete_global_config(
    State(registry): State<Arc<Registry>>,
) -> Result<Response, ConfluentError> {
    let before = registry.set_level(None, None).await?;
    Ok(level_answer("compatibilityLevel", before))
}

async fn get_subject_config(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let level =
        registry.subject_level(&subject, Flags::of(query.as_deref()).on("defaultToGlobal"))?;
    Ok(level_answer("compatibilityLevel", level))
}

async fn put_subject_config(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let level = read_level(body)?;
    registry.set_level(Some(&subject), Some(level)).await?;
    Ok(level_answer("compatibility", level))
}

async fn delete_subject_config(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
) -> Result<Response, ConfluentError> {
    let before = registry.set_level(Some(&subject), None).await?;
    Ok(level_answer("compatibilityLevel", before))
}

/// A `{"mode": …}` body.
#[derive(Deserialize)]
struct ModeBody {
    mode: Option<String>,
}

fn read_mode(body: Result<Json<ModeBody>, JsonRejection>) -> Result<Mode, ConfluentError> {
    let Json(body) = body.map_err(|rejection| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42204,
        message: format!("request body is not `{{\"mode\": \"…\"}}`: {rejection}"),
    })?;
    let text = body.mode.unwrap_or_default();
    Mode::parse(&text)
        .ok_or_else(|| RegistryError::InvalidMode(text.escape_debug().to_string()).into())
}

async fn get_global_mode(
    State(registry): State<Arc<Registry>>,
) -> Result<Response, ConfluentError> {
    let mode = registry.mode(None, false)?;
    Ok(reply(StatusCode::OK, &json!({"mode": mode.as_str()})))
}

async fn put_global_mode(
    State(registry): State<Arc<Registry>>,
    body: Result<Json<ModeBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let mode = read_mode(body)?;
    registry.set_mode(None, Some(mode)).await?;
    Ok(reply(StatusCode::OK, &json!({"mode": mode.as_str()})))
}

async fn get_subject_mode(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConfluentError> {
    let flags = Flags::of(query.as_deref());
    let mode = registry.mode(Some(&subject), flags.on("defaultToGlobal"))?;
    Ok(reply(StatusCode::OK, &json!({"mode": mode.as_str()})))
}

async fn put_subject_mode(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
    body: Result<Json<ModeBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let mode = read_mode(body)?;
    registry.set_mode(Some(&subject), Some(mode)).await?;
    Ok(reply(StatusCode::OK, &json!({"mode": mode.as_str()})))
}

async fn delete_subject_mode(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
) -> Result<Response, ConfluentError> {
    let before = registry.set_mode(Some(&subject), None).await?;
    Ok(reply(StatusCode::OK, &json!({"mode": before.as_str()})))
}

/// Most bytes of a request body forwarded to the external registry.
const MAX_FORWARDED_BODY: usize = 16 * 1024 * 1024;

async fn forward(
    State(registry): State<Arc<Registry>>,
    request: axum::extract::Request,
) -> Result<Response, ConfluentError> {
    let Some(external) = registry.external() else {
        return Err(RegistryError::SchemaNotFound.into());
    };
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str)
        .to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(body, MAX_FORWARDED_BODY)
        .await
        .map_err(|error| ConfluentError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: 42209,
            message: format!(
                "request body cannot be read (at most {MAX_FORWARDED_BODY} bytes): {error}"
            ),
        })?;
    let answer = external
        .forward(parts.method, &path, content_type.as_deref(), body)
        .await?;
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        answer.body,
    )
        .into_response();
    if let Some(content_type) = answer
        .content_type
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}
