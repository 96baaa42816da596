//! The envelope: an event's metadata, and how it travels on Kafka as
//! CloudEvents binary-mode headers.
//!
//! On Kafka a Switchyard event is a record whose key is the entity key, whose
//! value is the object in the Confluent Avro wire format, and whose headers
//! are `ce_specversion`, `ce_id`, `ce_source`, `ce_type` (`<noun>.<verb>`),
//! `ce_time`, `ce_subject` (the key) and `content-type`, plus `traceparent`
//! and other extensions when present.
//!
//! A record with `ce_*` headers and no `content-type` is read as binary mode
//! with a Confluent-framed Avro value, the only value format Switchyard writes.
//! A record whose `content-type` starts with `application/cloudevents` is
//! structured mode, which Switchyard does not read yet: such records are
//! reported as undecodable rather than guessed at.

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

use crate::nvo::{Noun, Verb, event_type, parse_event_type};

/// CloudEvents spec version written and accepted.
pub const SPEC_VERSION: &str = "1.0";

/// Media type of a Confluent-framed Avro value.
pub const AVRO_CONTENT_TYPE: &str = "application/avro";

/// Header naming the plugin (and version) that produced a record.
pub const PLUGIN_HEADER: &str = "switchyard-plugin";

/// Header naming the router plugin (and version) that forwarded a record to
/// a destination. The record's other headers stay as they were, so a
/// `switchyard-plugin` header still names whoever produced the event.
pub const ROUTER_HEADER: &str = "switchyard-router";

/// Header naming the route that forwarded a record.
pub const ROUTE_HEADER: &str = "switchyard-route";

/// Longest event id a publisher may choose, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Headers that the envelope owns; everything else is carried as given.
const ENVELOPE_HEADERS: [&str; 7] = [
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "content-type",
];

/// An event's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique, time-ordered id (UUID v7 unless the publisher chose one).
    pub id: String,
    /// The entity.
    pub noun: Noun,
    /// What happened.
    pub verb: Verb,
    /// The entity's id.
    pub key: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// Who published it.
    pub source: String,
    /// Other headers (extensions such as `traceparent`), in order, repeats
    /// kept; `None` is a header with no value, distinct from an empty one.
    pub extensions: Vec<(String, Option<Vec<u8>>)>,
}

/// Why a record's headers are not a Switchyard envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("record has no `{0}` header")]
    Missing(&'static str),
    /// A header is present but unusable.
    #[error("header `{name}` is invalid: {reason}")]
    Invalid {
        /// The header.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Structured-mode CloudEvents are not read.
    #[error("record is a structured-mode cloudevent (`content-type: {0}`), which is not supported")]
    Structured(String),
}

impl Envelope {
    /// A fresh envelope with a new UUID v7 id and the current time.
    pub fn new(noun: Noun, verb: Verb, key: String, source: String) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            noun,
            verb,
            key,
            time: Utc::now(),
            source,
            extensions: Vec::new(),
        }
    }

    /// `<noun>.<verb>`.
    pub fn event_type(&self) -> String {
        event_type(&self.noun, &self.verb)
    }

    /// The time as RFC 3339 with millisecond precision, as written to `ce_time`.
    pub fn time_rfc3339(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The first extension with this name, if it has a value.
    pub fn extension(&self, name: &str) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The Kafka headers of this envelope.
    pub fn to_headers(&self) -> OwnedHeaders {
        let event_type = self.event_type();
        let time = self.time_rfc3339();
        let mut headers =
            OwnedHeaders::new_with_capacity(ENVELOPE_HEADERS.len() + self.extensions.len());
        for (name, value) in [
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", self.id.as_str()),
            ("ce_source", self.source.as_str()),
            ("ce_type", event_type.as_str()),
            ("ce_time", time.as_str()),
            ("ce_subject", self.key.as_str()),
            ("content-type", AVRO_CONTENT_TYPE),
        ] {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        for (name, value) in &self.extensions {
            headers = headers.insert(Header {
                key: name.as_str(),
                value: value.as_deref(),
            });
        }
        headers
    }

    /// Reads an envelope back from a record's headers. `key` is the record
    /// key, used when `ce_subject` is absent.
    pub fn from_headers(
        headers: Option<&BorrowedHeaders>,
        key: Option<&[u8]>,
    ) -> Result<Envelope, EnvelopeError> {
        let mut id = None;
        let mut source = None;
        let mut event = None;
        let mut time = None;
        let mut subject = None;
        let mut extensions = Vec::new();
        if let Some(headers) = headers {
            for header in headers.iter() {
                let text = |name: &'static str| -> Result<String, EnvelopeError> {
                    let value = header.value.ok_or(EnvelopeError::Missing(name))?;
                    String::from_utf8(value.to_vec()).map_err(|_| EnvelopeError::Invalid {
                        name,
                        reason: "not UTF-8".to_string(),
                    })
                };
                match header.key {
                    "ce_specversion" => {
                        let version = text("ce_specversion")?;
                        if version != SPEC_VERSION {
                            return Err(EnvelopeError::Invalid {
                                name: "ce_specversion",
                                reason: format!("`{version}` is not `{SPEC_VERSION}`"),
                            });
                        }
                    }
                    "ce_id" => id = Some(text("ce_id")?),
                    "ce_source" => source = Some(text("ce_source")?),
                    "ce_type" => event = Some(text("ce_type")?),
                    "ce_time" => time = Some(text("ce_time")?),
                    "ce_subject" => subject = Some(text("ce_subject")?),
                    "content-type" => {
                        let content_type = text("content-type")?;
                        if content_type.starts_with("application/cloudevents") {
                            return Err(EnvelopeError::Structured(content_type));
                        }
                    }
                    other => extensions.push((other.to_string(), header.value.map(<[u8]>::to_vec))),
                }
            }
        }
        let event = event.ok_or(EnvelopeError::Missing("ce_type"))?;
        let (noun, verb) = parse_event_type(&event).map_err(|error| EnvelopeError::Invalid {
            name: "ce_type",
            reason: error.detail,
        })?;
        let time = match time {
            Some(time) => DateTime::parse_from_rfc3339(&time)
                .map_err(|error| EnvelopeError::Invalid {
                    name: "ce_time",
                    reason: error.to_string(),
                })?
                .with_timezone(&Utc),
            None => return Err(EnvelopeError::Missing("ce_time")),
        };
        let key = match subject {
            Some(subject) => subject,
            None => key
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .ok_or(EnvelopeError::Missing("ce_subject"))?,
        };
        Ok(Envelope {
            id: id.ok_or(EnvelopeError::Missing("ce_id"))?,
            noun,
            verb,
            key,
            time,
            source: source.ok_or(EnvelopeError::Missing("ce_source"))?,
            extensions,
        })
    }
}

/// Copies headers, adding one more at the end (used when forwarding a record
/// so the original headers keep their exact order, repeats and empty values).
pub fn headers_plus(headers: Option<&BorrowedHeaders>, extra: &[(&str, &[u8])]) -> OwnedHeaders {
    headers_replacing(headers, &[], extra)
}

/// Copies headers except those named in `replaced`, then adds `replaced`
/// and `extra` at the end: a forwarded record gets its writer's trace
/// headers this way, everything else as it was.
pub fn headers_replacing(
    headers: Option<&BorrowedHeaders>,
    replaced: &[(&str, &[u8])],
    extra: &[(&str, &[u8])],
) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new();
    if let Some(headers) = headers {
        for header in headers.iter() {
            if replaced.iter().any(|(key, _)| *key == header.key) {
                continue;
            }
            owned = owned.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    for (key, value) in replaced.iter().chain(extra) {
        owned = owned.insert(Header {
            key,
            value: Some(*value),
        });
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_extensions() {
        let mut envelope = Envelope::new(
            Noun::parse("claim").unwrap(),
            Verb::parse("status-changed").unwrap(),
            "ABCXYZ1".to_string(),
            "/test".to_string(),
        );
        envelope.extensions = vec![
            (
                "traceparent".to_string(),
                Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec()),
            ),
            ("x-empty".to_string(), Some(Vec::new())),
            ("x-none".to_string(), None),
            ("x-twice".to_string(), Some(b"1".to_vec())),
            ("x-twice".to_string(), Some(b"2".to_vec())),
        ];
        // Kafka stores time at millisecond precision in the header.
        envelope.time = DateTime::parse_from_rfc3339(&envelope.time_rfc3339())
            .unwrap()
            .with_timezone(&Utc);
        let owned = envelope.to_headers();
        let borrowed = owned.as_borrowed();
        let back = Envelope::from_headers(Some(borrowed), Some(b"ABCXYZ1")).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.event_type(), "claim.status-changed");
    }

    #[test]
    fn structured_mode_is_refused_with_the_reason() {
        let owned = OwnedHeaders::new()
            .insert(Header {
                key: "ce_type",
                value: Some("claim.x"),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/cloudevents+json"),
            });
        let error = Envelope::from_headers(Some(owned.as_borrowed()), None).unwrap_err();
        assert!(matches!(error, EnvelopeError::Structured(_)));
    }

    #[test]
    fn missing_type_is_named() {
        let owned = OwnedHeaders::new().insert(Header {
            key: "ce_id",
            value: Some("1"),
        });
        let error = Envelope::from_headers(Some(owned.as_borrowed()), None).unwrap_err();
        assert_eq!(error.to_string(), "record has no `ce_type` header");
    }
}
