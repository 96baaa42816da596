//! One error vocabulary for every transport.
//!
//! Every failure a client can see is an [`ApiError`]: a stable machine
//! [`Code`], a sentence saying what to fix, the field path where one applies,
//! and whether the event may have been stored. REST renders it as RFC 9457
//! problem details, gRPC as a status with `google.rpc` details; both take the
//! code, the status and the text from here, so the two never drift apart.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Stable error codes. The string form (`Code::as_str`) is part of the API:
/// clients match on it, so a code is never renamed or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// No schema is registered for the noun.
    UnknownNoun,
    /// The noun exists but has no schema for this verb.
    UnknownVerb,
    /// A noun, verb, key, topic or header name is not well formed.
    InvalidName,
    /// The request body is not valid JSON, or not the expected shape.
    MalformedRequest,
    /// The object does not satisfy the Avro schema of its noun and verb.
    SchemaViolation,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// A batch has more entries than the configured limit.
    BatchTooLarge,
    /// A `Last-Event-ID` or start position cannot be parsed.
    InvalidPosition,
    /// The requested thing does not exist.
    NotFound,
    /// The path exists but not with this HTTP method.
    MethodNotAllowed,
    /// The request body's media type is not accepted.
    UnsupportedMediaType,
    /// An idempotency key was reused for a different event.
    IdempotencyConflict,
    /// An uploaded plugin was refused (bad manifest, wrong world, an import
    /// that is not granted, fails to instantiate).
    InvalidPlugin,
    /// A route was refused (bad source pattern, filter, destination or
    /// plugin reference).
    InvalidRoute,
    /// A conditional request (`If-Match`) found the resource changed.
    PreconditionFailed,
    /// The request conflicts with the current state (an existing version,
    /// nothing to roll back to).
    Conflict,
    /// Kafka did not acknowledge in time or is unreachable.
    KafkaUnavailable,
    /// The schema registry could not be reached or answered an error.
    RegistryUnavailable,
    /// Aggregation state is not readable right now: its partition is
    /// moving between instances or being restored.
    StateUnavailable,
    /// The instance already runs as many of this costly request (a route
    /// dry-run or explain) as it allows at once.
    Busy,
    /// A bug or an unexpected state on the server; the log has the cause.
    Internal,
}

impl Code {
    /// Every code, for documentation checks.
    pub const ALL: [Code; 21] = [
        Code::UnknownNoun,
        Code::UnknownVerb,
        Code::InvalidName,
        Code::MalformedRequest,
        Code::SchemaViolation,
        Code::PayloadTooLarge,
        Code::BatchTooLarge,
        Code::InvalidPosition,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::UnsupportedMediaType,
        Code::IdempotencyConflict,
        Code::InvalidPlugin,
        Code::InvalidRoute,
        Code::Conflict,
        Code::PreconditionFailed,
        Code::KafkaUnavailable,
        Code::RegistryUnavailable,
        Code::StateUnavailable,
        Code::Busy,
        Code::Internal,
    ];

    /// The stable string form, as sent to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnknownNoun => "unknown-noun",
            Code::UnknownVerb => "unknown-verb",
            Code::InvalidName => "invalid-name",
            Code::MalformedRequest => "malformed-request",
            Code::SchemaViolation => "schema-violation",
            Code::PayloadTooLarge => "payload-too-large",
            Code::BatchTooLarge => "batch-too-large",
            Code::InvalidPosition => "invalid-position",
            Code::NotFound => "not-found",
            Code::MethodNotAllowed => "method-not-allowed",
            Code::UnsupportedMediaType => "unsupported-media-type",
            Code::IdempotencyConflict => "idempotency-conflict",
            Code::InvalidPlugin => "invalid-plugin",
            Code::InvalidRoute => "invalid-route",
            Code::Conflict => "conflict",
            Code::PreconditionFailed => "precondition-failed",
            Code::KafkaUnavailable => "kafka-unavailable",
            Code::RegistryUnavailable => "registry-unavailable",
            Code::StateUnavailable => "state-unavailable",
            Code::Busy => "busy",
            Code::Internal => "internal",
        }
    }

    /// A short human title for the code, used as the problem `title`.
    pub fn title(self) -> &'static str {
        match self {
            Code::UnknownNoun => "unknown noun",
            Code::UnknownVerb => "unknown verb",
            Code::InvalidName => "invalid name",
            Code::MalformedRequest => "malformed request",
            Code::SchemaViolation => "object does not match its schema",
            Code::PayloadTooLarge => "payload too large",
            Code::BatchTooLarge => "batch too large",
            Code::InvalidPosition => "invalid stream position",
            Code::NotFound => "not found",
            Code::MethodNotAllowed => "method not allowed",
            Code::UnsupportedMediaType => "unsupported media type",
            Code::IdempotencyConflict => "idempotency key reused",
            Code::InvalidPlugin => "plugin refused",
            Code::InvalidRoute => "route refused",
            Code::Conflict => "conflict",
            Code::PreconditionFailed => "precondition failed",
            Code::KafkaUnavailable => "kafka unavailable",
            Code::RegistryUnavailable => "schema registry unavailable",
            Code::StateUnavailable => "state unavailable",
            Code::Busy => "busy",
            Code::Internal => "internal error",
        }
    }

    /// The HTTP status of this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::UnknownNoun | Code::UnknownVerb | Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidName | Code::MalformedRequest | Code::InvalidPosition => {
                StatusCode::BAD_REQUEST
            }
            Code::SchemaViolation => StatusCode::UNPROCESSABLE_ENTITY,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::IdempotencyConflict | Code::Conflict => StatusCode::CONFLICT,
            Code::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Code::InvalidPlugin | Code::InvalidRoute => StatusCode::UNPROCESSABLE_ENTITY,
            Code::PayloadTooLarge | Code::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::KafkaUnavailable | Code::RegistryUnavailable | Code::StateUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Code::Busy => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code of this code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Code::UnknownNoun | Code::UnknownVerb | Code::NotFound => tonic::Code::NotFound,
            Code::InvalidName
            | Code::MalformedRequest
            | Code::InvalidPosition
            | Code::SchemaViolation => tonic::Code::InvalidArgument,
            Code::PayloadTooLarge | Code::BatchTooLarge => tonic::Code::OutOfRange,
            Code::KafkaUnavailable | Code::RegistryUnavailable | Code::StateUnavailable => {
                tonic::Code::Unavailable
            }
            Code::Busy => tonic::Code::ResourceExhausted,
            Code::Internal => tonic::Code::Internal,
            Code::MethodNotAllowed => tonic::Code::Unimplemented,
            Code::UnsupportedMediaType => tonic::Code::InvalidArgument,
            Code::IdempotencyConflict => tonic::Code::AlreadyExists,
            Code::Conflict | Code::PreconditionFailed => tonic::Code::FailedPrecondition,
            Code::InvalidPlugin | Code::InvalidRoute => tonic::Code::InvalidArgument,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest `detail` sent to a client, in bytes.
pub const MAX_DETAIL_BYTES: usize = 512;

/// Whether a failed publish may have left the event on Kafka. Clients use it
/// to decide if a retry with the same event id is needed to be sure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stored {
    /// The event was certainly not written.
    No,
    /// The write may or may not have happened (e.g. a timeout after sending);
    /// retry with the same event id.
    Maybe,
}

/// An error as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable machine code.
    pub code: Code,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// JSON path of the offending field, when one applies (`$.payer.name`).
    pub field: Option<String>,
    /// Whether the event may have been stored, for publish failures.
    pub stored: Option<Stored>,
    /// How long to wait before retrying, for 429 and 503.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with a code and a detail sentence. Details longer than
    /// [`MAX_DETAIL_BYTES`] are cut: they may echo client input, and gRPC
    /// carries them in size-limited trailers.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL_BYTES {
            detail.truncate(detail.floor_char_boundary(MAX_DETAIL_BYTES - 3));
            detail.push('…');
        }
        ApiError {
            code,
            detail,
            field: None,
            stored: None,
            retry_after: None,
        }
    }

    /// Names the field the error is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Says whether the event may have been stored.
    pub fn with_stored(mut self, stored: Stored) -> Self {
        self.stored = Some(stored);
        self
    }

    /// Asks the client to retry after a delay.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// An internal error. The cause goes to the log, never to the client.
    pub fn internal(cause: &dyn fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        ApiError::new(
            Code::Internal,
            "the server failed unexpectedly; the cause is in its log",
        )
    }

    /// The problem-details body of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            r#type: format!("urn:switchyard:problem:{}", self.code.as_str()),
            title: self.code.title(),
            status: self.code.http_status().as_u16(),
            code: self.code,
            detail: self.detail.clone(),
            field: self.field.clone(),
            stored: self.stored,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)?;
        if let Some(field) = &self.field {
            write!(f, " (at `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// RFC 9457 problem details, with Switchyard's extension members `code`,
/// `field` and `stored`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URN naming the problem type: `urn:switchyard:problem:<code>`.
    pub r#type: String,
    /// Short title of the problem type.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Stable machine code.
    pub code: Code,
    /// What went wrong and what to fix.
    pub detail: String,
    /// JSON path of the offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether the event may have been stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(retry_after) = self.retry_after {
            let seconds = retry_after.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};

        let mut details = ErrorDetails::new();
        let mut metadata = std::collections::HashMap::new();
        if let Some(stored) = error.stored {
            let stored = match stored {
                Stored::No => "no",
                Stored::Maybe => "maybe",
            };
            metadata.insert("stored".to_string(), stored.to_string());
        }
        details.set_error_info(error.code.as_str(), "switchyard", metadata);
        if let Some(field) = &error.field {
            details.add_bad_request_violation(field.clone(), error.detail.clone());
        }
        if let Some(retry_after) = error.retry_after {
            details.set_retry_info(Some(retry_after));
        }
        tonic::Status::with_error_details(
            error.code.grpc_code(),
            format!("{}: {}", error.code, error.detail),
            details,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_in_the_openapi_document() {
        let document: serde_json::Value =
            serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let documented = &document["components"]["schemas"]["ErrorCode"]["enum"];
        for code in Code::ALL {
            assert!(
                documented
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == code.as_str()),
                "`{}` is missing from openapi.json",
                code.as_str()
            );
        }
    }

    #[test]
    fn every_code_maps_to_both_transports() {
        let codes = [
            (Code::UnknownNoun, 404, tonic::Code::NotFound),
            (Code::SchemaViolation, 422, tonic::Code::InvalidArgument),
            (Code::MalformedRequest, 400, tonic::Code::InvalidArgument),
            (Code::PayloadTooLarge, 413, tonic::Code::OutOfRange),
            (Code::KafkaUnavailable, 503, tonic::Code::Unavailable),
        ];
        for (code, http, grpc) in codes {
            assert_eq!(code.http_status().as_u16(), http, "{code}");
            assert_eq!(code.grpc_code(), grpc, "{code}");
        }
    }

    #[test]
    fn problem_names_code_field_and_stored() {
        let error = ApiError::new(Code::SchemaViolation, "expected `string`, found number")
            .with_field("$.payer.name")
            .with_stored(Stored::No);
        let body = serde_json::to_value(error.problem()).unwrap();
        assert_eq!(body["code"], "schema-violation");
        assert_eq!(body["status"], 422);
        assert_eq!(body["field"], "$.payer.name");
        assert_eq!(body["stored"], "no");
        assert_eq!(body["type"], "urn:switchyard:problem:schema-violation");
    }

    #[test]
    fn long_details_are_cut() {
        let error = ApiError::new(
            Code::SchemaViolation,
            format!("bad value `{}`", "é".repeat(2_000)),
        );
        assert!(error.detail.len() <= MAX_DETAIL_BYTES);
        assert!(error.detail.ends_with('…'));
    }

    #[test]
    fn grpc_status_carries_code_in_error_info() {
        use tonic_types::StatusExt;
        let status: tonic::Status =
            ApiError::new(Code::UnknownVerb, "no schema for `claim.x`").into();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "unknown-verb");
    }
}
