//! The Confluent Schema Registry REST API of the embedded registry.
//!
//! Paths, bodies and error codes follow Confluent's API so its clients (the
//! Java and Python serializers, `kcat`, `curl` scripts) work unchanged.
//! Responses use `application/vnd.schemaregistry.v1+json`; errors are
//! `{"error_code": …, "message": …}` with Confluent's numeric codes.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Registry, RegistryError, SubjectVersion};

/// Confluent's registry media type.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry's routes.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, &json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", axum::routing::post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(get_by_id))
        .route("/schemas/ids/{id}/schema", get(get_by_id_schema))
        .route("/schemas/ids/{id}/versions", get(get_by_id_versions))
        .route(
            "/schemas/types",
            get(|| async { reply(StatusCode::OK, &json!(["AVRO"])) }),
        )
        .route(
            "/config",
            get(|| async { reply(StatusCode::OK, &json!({"compatibilityLevel": "NONE"})) }),
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
            | RegistryError::SchemaNotFound => StatusCode::NOT_FOUND,
            RegistryError::InvalidSchema(_)
            | RegistryError::InvalidVersion(_)
            | RegistryError::InvalidSubject(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

async fn list_subjects(State(registry): State<Arc<Registry>>) -> Response {
    reply(StatusCode::OK, &json!(registry.subjects()))
}

async fn list_versions(
    State(registry): State<Arc<Registry>>,
    ConfluentPath(subject): ConfluentPath<String>,
) -> Result<Response, ConfluentError> {
    Ok(reply(StatusCode::OK, &json!(registry.versions(&subject)?)))
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
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Response, ConfluentError> {
    let body = read_body(body)?;
    let found = registry.lookup(&subject, &body.schema)?;
    Ok(reply(StatusCode::OK, &version_json(&found)))
}

async fn get_version(
    State(registry): State<Arc<Registry>>,
    ConfluentPath((subject, version)): ConfluentPath<(String, String)>,
) -> Result<Response, ConfluentError> {
    Ok(reply(
        StatusCode::OK,
        &version_json(&registry.version(&subject, &version)?),
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
        .usages(id)
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(reply(StatusCode::OK, &json!(usages)))
}
