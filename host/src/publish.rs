//! Publishing: from a noun, a verb, a key and a JSON object to an
//! acknowledged Kafka record.
//!
//! The steps are the same for every caller (REST, gRPC, plugins): check the
//! names, find the verb's schema, encode the object as Avro (which validates
//! it and names the failing field), frame it in the Confluent wire format,
//! write it with CloudEvents headers to the noun's topic keyed by the entity
//! key, and wait for Kafka's acknowledgement. A call returns success only
//! after the broker acknowledged with `acks=all`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;
use tracing::Instrument;
use tracing::field::Empty;

use crate::avro;
use crate::catalog::Catalog;
use crate::envelope::{Envelope, MAX_ID_BYTES};
use crate::error::{ApiError, Code, Stored};
use crate::idempotency::{Claim, Idempotency};
use crate::kafka::{Kafka, MAX_PUBLISHED_RECORD_BYTES};
use crate::nvo::{Noun, Verb, check_key, is_unsafe_char};

/// Longest CloudEvents `source`, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1_024;

/// An event as a publisher hands it in.
#[derive(Debug, Clone, Default)]
pub struct EventInput {
    /// Noun, e.g. `claim`.
    pub noun: String,
    /// Verb, e.g. `status-changed`.
    pub verb: String,
    /// Entity key.
    pub key: String,
    /// The object, as JSON.
    pub object: serde_json::Value,
    /// Event id chosen by the publisher; a UUID v7 when absent.
    pub id: Option<String>,
    /// CloudEvents source; the configured default when absent.
    pub source: Option<String>,
    /// Event time; now when absent.
    pub time: Option<DateTime<Utc>>,
    /// Extension headers to carry (`traceparent`, `causationid`, …).
    pub extensions: Vec<(String, Option<Vec<u8>>)>,
    /// Makes a retry safe: a repeat within the window returns the first
    /// result. Defaults to the event id when the publisher chose one.
    pub idempotency_key: Option<String>,
}

/// Where a published event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// Event id.
    pub id: String,
    /// Topic written to.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Schema id in the record's wire format.
    pub schema_id: u32,
    /// True when this is the result of an earlier publish with the same
    /// idempotency key; nothing new was written.
    pub duplicate: bool,
}

/// A validated, encoded event, ready to write.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The envelope.
    pub envelope: Envelope,
    /// Destination topic (the noun's).
    pub topic: String,
    /// Confluent-framed Avro value.
    pub value: Vec<u8>,
    /// Schema id used.
    pub schema_id: u32,
    /// Idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Hash of what makes this event this event (type, key, object), to
    /// tell a retry from a different event reusing a key.
    pub fingerprint: u64,
}

/// Publishes events.
pub struct Publisher {
    kafka: Arc<Kafka>,
    catalog: Arc<Catalog>,
    idempotency: Idempotency,
}

/// Why [`Publisher::prepare_text`] refused an object.
#[derive(Debug)]
pub enum PrepareTextError {
    /// The text is not JSON.
    NotJson(serde_json::Error),
    /// The event is not valid (as [`Publisher::prepare`] says).
    Invalid(ApiError),
}

/// The span of checking and encoding one event.
fn validate_span(input: &EventInput) -> tracing::Span {
    tracing::debug_span!(
        "validate",
        noun = %input.noun,
        verb = %input.verb,
        schema.id = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    )
}

/// Marks a validate span with its outcome.
fn record_validated(span: &tracing::Span, prepared: &Result<Prepared, ApiError>) {
    match prepared {
        Ok(prepared) => {
            span.record("schema.id", prepared.schema_id);
        }
        Err(error) => failed(span, error),
    }
}

impl Publisher {
    /// A publisher over these clients and this catalog.
    pub fn new(kafka: Arc<Kafka>, catalog: Arc<Catalog>) -> Publisher {
        Publisher {
            kafka,
            catalog,
            idempotency: Idempotency::default(),
        }
    }

    /// Checks and encodes an event without writing it.
    pub fn prepare(&self, input: EventInput) -> Result<Prepared, ApiError> {
        let span = validate_span(&input);
        let _entered = span.enter();
        let prepared = self.prepare_unspanned(input);
        record_validated(&span, &prepared);
        prepared
    }

    /// [`Self::prepare`] for an object given as JSON text (`input.object`
    /// is not read): what a plugin's output is. The text is encoded
    /// straight to Avro when [`avro::encode_json_text`] can vouch for the
    /// result; otherwise it is parsed and prepared as [`Self::prepare`]
    /// does, which words any error. Either way the outcome is the same.
    pub fn prepare_text(
        &self,
        mut input: EventInput,
        object: &str,
    ) -> Result<Prepared, PrepareTextError> {
        let span = validate_span(&input);
        let _entered = span.enter();
        let resolved = self.resolve(&input).ok();
        let body = resolved
            .as_ref()
            .and_then(|(_, _, schema)| avro::encode_json_text(&schema.schema, object));
        let prepared = match (resolved, body) {
            (Some((noun, verb, schema)), Some(body)) => self
                .assemble(input, noun, verb, &schema, &body)
                .map_err(PrepareTextError::Invalid),
            _ => {
                input.object = serde_json::from_str(object).map_err(PrepareTextError::NotJson)?;
                self.prepare_unspanned(input)
                    .map_err(PrepareTextError::Invalid)
            }
        };
        match &prepared {
            Ok(prepared) => {
                span.record("schema.id", prepared.schema_id);
            }
            Err(PrepareTextError::Invalid(error)) => failed(&span, error),
            Err(PrepareTextError::NotJson(_)) => {}
        }
        prepared
    }

    /// The event's noun, verb and schema, checked along with its key.
    fn resolve(
        &self,
        input: &EventInput,
    ) -> Result<(Noun, Verb, Arc<crate::registry::RegisteredSchema>), ApiError> {
        let stored_no = |error: ApiError| error.with_stored(Stored::No);
        let noun = Noun::parse(&input.noun).map_err(stored_no)?;
        let verb = Verb::parse(&input.verb).map_err(stored_no)?;
        check_key(&input.key).map_err(stored_no)?;
        let schema = self.catalog.schema_for(&noun, &verb).map_err(stored_no)?;
        Ok((noun, verb, schema))
    }

    fn prepare_unspanned(&self, input: EventInput) -> Result<Prepared, ApiError> {
        let (noun, verb, schema) = self.resolve(&input)?;
        let body = avro::encode_json(&schema.schema, &input.object).map_err(|error| {
            ApiError::new(
                Code::SchemaViolation,
                format!(
                    "object does not match the schema of `{noun}.{verb}`: {}",
                    error.message()
                ),
            )
            .with_field(object_path(error.path()))
            .with_stored(Stored::No)
        })?;
        self.assemble(input, noun, verb, &schema, &body)
    }

    /// The rest of preparing an event whose object is encoded (`body`):
    /// framing, envelope, ids and size checks.
    fn assemble(
        &self,
        input: EventInput,
        noun: Noun,
        verb: Verb,
        schema: &crate::registry::RegisteredSchema,
        body: &[u8],
    ) -> Result<Prepared, ApiError> {
        let stored_no = |error: ApiError| error.with_stored(Stored::No);
        let value = avro::frame(schema.id, body);

        let source = input
            .source
            .unwrap_or_else(|| self.kafka.config().default_source.clone());
        if source.is_empty()
            || source.len() > MAX_SOURCE_BYTES
            || source.chars().any(is_unsafe_char)
        {
            return Err(stored_no(
                ApiError::new(
                    Code::InvalidName,
                    format!(
                        "source must be a URI reference of 1 to {MAX_SOURCE_BYTES} bytes without control or invisible characters"
                    ),
                )
                .with_field("source"),
            ));
        }
        let mut envelope = Envelope::new(noun, verb, input.key, source);
        // A publisher-chosen event id is a natural idempotency key.
        let id_chosen = input.id.is_some();
        if let Some(id) = input.id {
            if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(is_unsafe_char) {
                return Err(stored_no(
                    ApiError::new(
                        Code::InvalidName,
                        format!("event id must be 1 to {MAX_ID_BYTES} bytes without control characters; omit it to get a UUID v7"),
                    )
                    .with_field("id"),
                ));
            }
            envelope.id = id;
        }
        let idempotency_key = input
            .idempotency_key
            .or_else(|| Some(envelope.id.clone()).filter(|_| id_chosen));
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > MAX_ID_BYTES || key.chars().any(is_unsafe_char))
        {
            return Err(stored_no(
                ApiError::new(
                    Code::InvalidName,
                    format!("idempotency key must be 1 to {MAX_ID_BYTES} bytes without control characters"),
                )
                .with_field("idempotency_key"),
            ));
        }
        if let Some(time) = input.time {
            envelope.time = time;
        }
        envelope.extensions = input.extensions;
        let size = value.len()
            + envelope.key.len()
            + envelope.id.len()
            + envelope.source.len()
            + envelope
                .extensions
                .iter()
                .map(|(name, value)| name.len() + value.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
            + 256;
        if size > MAX_PUBLISHED_RECORD_BYTES {
            return Err(stored_no(
                ApiError::new(
                    Code::PayloadTooLarge,
                    format!(
                        "the encoded event is about {size} bytes, more than the {MAX_PUBLISHED_RECORD_BYTES} bytes a record may have; send a smaller object or put large content elsewhere and send a reference"
                    ),
                )
                .with_field("object"),
            ));
        }
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            envelope.event_type().hash(&mut hasher);
            envelope.key.hash(&mut hasher);
            value.hash(&mut hasher);
            hasher.finish()
        };
        Ok(Prepared {
            topic: envelope.noun.as_str().to_string(),
            envelope,
            value,
            schema_id: schema.id,
            idempotency_key,
            fingerprint,
        })
    }

    /// Writes a prepared event and waits for the acknowledgement. The
    /// record's `traceparent` names this write's span.
    pub async fn send(&self, mut prepared: Prepared) -> Result<Published, ApiError> {
        let span = tracing::debug_span!(
            "produce",
            otel.name = %format_args!("send {}", prepared.topic),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %prepared.topic,
            messaging.message.id = %prepared.envelope.id,
            messaging.kafka.message.key = %prepared.envelope.key,
            messaging.destination.partition.id = Empty,
            messaging.kafka.offset = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        crate::trace_context::set_span_headers(&mut prepared.envelope.extensions, &span);
        let landed = self
            .kafka
            .produce(
                &prepared.topic,
                prepared.envelope.key.as_bytes(),
                &prepared.value,
                prepared.envelope.to_headers(),
            )
            .instrument(span.clone())
            .await
            .inspect_err(|error| failed(&span, error))?;
        span.record("messaging.destination.partition.id", landed.partition);
        span.record("messaging.kafka.offset", landed.offset);
        tracing::debug!(
            id = %prepared.envelope.id,
            event_type = %prepared.envelope.event_type(),
            topic = %prepared.topic,
            partition = landed.partition,
            offset = landed.offset,
            "published"
        );
        Ok(Published {
            id: prepared.envelope.id,
            topic: prepared.topic,
            partition: landed.partition,
            offset: landed.offset,
            schema_id: prepared.schema_id,
            duplicate: false,
        })
    }

    /// Checks, encodes and writes one event, in a `publish` span that
    /// continues the caller's trace.
    pub async fn publish(&self, input: EventInput) -> Result<Published, ApiError> {
        let span = publish_span(&input.extensions, 1);
        async {
            let started = Instant::now();
            let noun = input.noun.clone();
            let result = match self.prepare(input) {
                Ok(prepared) => self.send_once(prepared).await,
                Err(error) => Err(error),
            };
            self.count(&noun, &result, started);
            if let Err(error) = &result {
                failed(&tracing::Span::current(), error);
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Counts one publish for the metrics.
    fn count(&self, noun: &str, result: &Result<Published, ApiError>, started: Instant) {
        // Only nouns with a schema become label values, so a caller
        // cannot grow the metrics with made-up nouns.
        let noun = if self.catalog.has_noun(noun) {
            noun
        } else {
            "(unknown)"
        };
        let code = match result {
            Ok(_) => "ok",
            Err(error) => error.code.as_str(),
        };
        crate::metrics::metrics().published(noun, code, started.elapsed());
    }

    /// Sends unless the idempotency key was seen: then the first result.
    async fn send_once(&self, prepared: Prepared) -> Result<Published, ApiError> {
        let Some(key) = prepared.idempotency_key.clone() else {
            return self.send(prepared).await;
        };
        // Keys are per noun, like the events they protect.
        let key = format!("{}/{key}", prepared.topic);
        let fingerprint = prepared.fingerprint;
        match self.idempotency.claim(&key, fingerprint).await? {
            Claim::Duplicate(mut first) => {
                first.duplicate = true;
                tracing::debug!(key, id = %first.id, "duplicate publish answered from memory");
                Ok(first)
            }
            Claim::Proceed(done_tx) => {
                let result = self.send(prepared).await;
                self.idempotency
                    .finish(&key, fingerprint, &done_tx, &result);
                result
            }
        }
    }

    /// Publishes a batch. Every entry is checked first; valid entries are
    /// written concurrently (the producer keeps per-partition order); the
    /// results come back in request order, one per entry.
    pub async fn publish_batch(&self, inputs: Vec<EventInput>) -> Vec<Result<Published, ApiError>> {
        let span = publish_span(
            inputs.first().map_or(&[][..], |input| &input.extensions),
            inputs.len(),
        );
        async {
            let started = Instant::now();
            let prepared: Vec<(String, Result<Prepared, ApiError>)> = inputs
                .into_iter()
                .map(|input| (input.noun.clone(), self.prepare(input)))
                .collect();
            join_all(prepared.into_iter().map(|(noun, entry)| {
                async move {
                    let result = match entry {
                        Ok(prepared) => self.send_once(prepared).await,
                        Err(error) => Err(error),
                    };
                    self.count(&noun, &result, started);
                    result
                }
                .in_current_span()
            }))
            .await
        }
        .instrument(span)
        .await
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}

/// The server span of a publish call, continuing the trace of the caller's
/// `traceparent` (already validated into `extensions`) or starting one.
fn publish_span(extensions: &[(String, Option<Vec<u8>>)], events: usize) -> tracing::Span {
    let span = tracing::debug_span!(
        "publish",
        otel.kind = "server",
        events,
        otel.status_code = Empty,
        error.type = Empty,
        trace_id = Empty,
    );
    let header = |name: &str| {
        extensions
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, value)| value.as_deref())
            .and_then(|value| std::str::from_utf8(value).ok())
    };
    crate::trace_context::continue_trace(
        &span,
        crate::trace_context::remote_parent(header("traceparent"), header("tracestate")),
    );
    span
}

/// Marks a span as failed with the error's stable code.
fn failed(span: &tracing::Span, error: &ApiError) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error.code.as_str());
}

/// The Avro encoder reports paths from the object's root (`$.payer.name`);
/// clients see them from the request's root, where the object is `object`.
fn object_path(path: &str) -> String {
    match path.strip_prefix('$') {
        Some(rest) => format!("object{rest}"),
        None => format!("object.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::object_path;

    #[test]
    fn paths_start_at_the_object() {
        assert_eq!(object_path("$"), "object");
        assert_eq!(object_path("$.payer.name"), "object.payer.name");
        assert_eq!(object_path("$.lines[2].charge"), "object.lines[2].charge");
    }
}
