//! Subscriptions: a live, resumable stream of one topic's events, filtered
//! by verb and key, shared by SSE and gRPC streaming.
//!
//! A stream position is the next offset to read in every partition of the
//! topic, written as `<partition>:<offset>` pairs joined by commas
//! (`0:12,1:7,2:3`). Every delivered event carries the position just after
//! it, so resuming from that position continues exactly after the event: no
//! gap and no duplicate, whatever the filters skipped in between.
//!
//! Each subscription reads with its own consumer by explicit assignment: it
//! joins no consumer group and commits nothing, so subscribers never disturb
//! each other or the processing pipelines. Known limit: that is one
//! librdkafka client per open stream, which suits hundreds of subscribers per
//! host, not tens of thousands; a shared fan-out reader would lift that.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::avro;
use crate::envelope::Envelope;
use crate::error::{ApiError, Code};
use crate::kafka::Kafka;
use crate::registry::Registry;

/// Where a stream is: the next offset to read per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position(pub BTreeMap<i32, i64>);

impl Position {
    /// Parses `0:12,1:7`. The empty string is the empty position.
    pub fn parse(text: &str) -> Result<Position, ApiError> {
        let invalid = || {
            ApiError::new(
                Code::InvalidPosition,
                format!(
                    "position `{}` is not `<partition>:<offset>` pairs joined by commas; use an `id` from the stream",
                    text.escape_debug()
                ),
            )
        };
        let mut map = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(Position(map));
        }
        for pair in text.trim().split(',') {
            let (partition, offset) = pair.split_once(':').ok_or_else(invalid)?;
            let partition: i32 = partition.parse().map_err(|_| invalid())?;
            let offset: i64 = offset.parse().map_err(|_| invalid())?;
            if partition < 0 || offset < 0 || map.insert(partition, offset).is_some() {
                return Err(invalid());
            }
        }
        Ok(Position(map))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (partition, offset) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{partition}:{offset}")?;
        }
        Ok(())
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Only events written after the subscription started.
    Latest,
    /// Everything the topic still holds.
    Earliest,
    /// Exactly after a previously delivered event.
    After(Position),
}

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Topic to read: a noun's topic or a destination stream.
    pub topic: String,
    /// Only these verbs; all when empty.
    pub verbs: Vec<String>,
    /// Only this entity key.
    pub key: Option<String>,
    /// Where to start.
    pub start: Start,
    /// The API that delivers (`sse`, `grpc`), for spans and metrics.
    pub api: &'static str,
}

/// One event as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveredEvent {
    /// Event id.
    pub id: String,
    /// `<noun>.<verb>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Noun.
    pub noun: String,
    /// Verb.
    pub verb: String,
    /// Entity key.
    pub key: String,
    /// Event time, RFC 3339.
    pub time: String,
    /// CloudEvents source.
    pub source: String,
    /// Schema id of the value.
    pub schema_id: u32,
    /// Topic read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The object, decoded from Avro.
    pub object: serde_json::Value,
    /// Extension headers (`traceparent`, `causationid`, `switchyard-plugin`,
    /// …) as text, first value of each name.
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// A record on the topic that is not a readable Switchyard event. It is
/// reported, with its position, and the stream moves on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Undecodable {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why it cannot be read.
    pub reason: String,
}

/// What a stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The stream is live; events written from now on will arrive. Always
    /// first.
    Subscribed {
        /// Where the stream starts.
        position: Position,
    },
    /// The requested position no longer exists (retention deleted it, or the
    /// topic was recreated); the stream restarts from what the topic holds.
    /// Events between the requested position and the new one are lost to
    /// this subscriber, and it is told so instead of silently skipping them.
    Reset {
        /// Where the stream continues.
        position: Position,
        /// Why.
        reason: String,
    },
    /// An event that passed the filters.
    Event {
        /// Position just after this event.
        position: Position,
        /// The event.
        event: Box<DeliveredEvent>,
    },
    /// A record that could not be read.
    Undecodable {
        /// Position just after the record.
        position: Position,
        /// Details.
        record: Undecodable,
    },
}

/// Opens a subscription. Fails early (before the stream starts) when the
/// topic does not exist or the position is unusable.
pub async fn open(
    kafka: Arc<Kafka>,
    registry: Arc<Registry>,
    subscription: Subscription,
    mut shutdown_rx: tokio::sync::watch::Receiver<bool>,
) -> Result<impl Stream<Item = Delivery> + Send + 'static, ApiError> {
    let partitions = kafka.partitions(&subscription.topic).await.map_err(|error| {
        let text = format!("{error:#}");
        if text.contains("not found") || text.contains("UnknownTopic") {
            ApiError::new(Code::NotFound, format!("topic `{}` does not exist", subscription.topic))
        } else {
            tracing::warn!(topic = %subscription.topic, error = %text, "cannot read topic metadata");
            ApiError::new(Code::KafkaUnavailable, "kafka did not answer; retry shortly")
                .with_retry_after(Duration::from_secs(1))
        }
    })?;
    let consumer: StreamConsumer = kafka
        .consumer_config("switchyard-subscriber")
        .create()
        .map_err(|error| ApiError::internal(&error))?;

    // Watermarks decide where "latest" is and whether a resume point still
    // exists; they are blocking calls, so they leave the async threads.
    let topic = subscription.topic.clone();
    let watermark_config = kafka.consumer_config("switchyard-subscriber");
    let parts = partitions.clone();
    let watermarks =
        tokio::task::spawn_blocking(move || -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
            let probe: rdkafka::consumer::BaseConsumer = watermark_config.create()?;
            let mut marks = BTreeMap::new();
            for partition in parts {
                marks.insert(
                    partition,
                    probe.fetch_watermarks(&topic, partition, Duration::from_secs(5))?,
                );
            }
            Ok(marks)
        })
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| {
            tracing::warn!(%error, "cannot read watermarks");
            ApiError::new(
                Code::KafkaUnavailable,
                "kafka did not answer; retry shortly",
            )
            .with_retry_after(Duration::from_secs(1))
        })?;

    let mut position = Position::default();
    let mut reset_reasons: Vec<String> = Vec::new();
    for (&partition, &(low, high)) in &watermarks {
        let offset = match &subscription.start {
            Start::Latest => high,
            Start::Earliest => low,
            Start::After(after) => match after.0.get(&partition) {
                Some(&offset) if offset < low => {
                    reset_reasons.push(format!(
                        "partition {partition} no longer holds offset {offset} (it starts at {low}); events before {low} were deleted by retention"
                    ));
                    low
                }
                Some(&offset) if offset > high => {
                    reset_reasons.push(format!(
                        "partition {partition} ends at {high}, before the requested offset {offset}; the topic was probably recreated"
                    ));
                    low
                }
                Some(&offset) => offset,
                // A partition added after the position was issued is all
                // new to this subscriber; but a position that simply left
                // it out deserves to be told, so say so.
                None => {
                    reset_reasons.push(format!(
                        "the position does not include partition {partition}; it is read from its start ({low})"
                    ));
                    low
                }
            },
        };
        position.0.insert(partition, offset);
    }
    if let Start::After(after) = &subscription.start
        && let Some(unknown) = after.0.keys().find(|p| !watermarks.contains_key(p))
    {
        reset_reasons.push(format!(
            "topic `{}` has no partition {unknown}",
            subscription.topic
        ));
    }

    let mut assignment = TopicPartitionList::new();
    for (&partition, &offset) in &position.0 {
        assignment
            .add_partition_offset(&subscription.topic, partition, Offset::Offset(offset))
            .map_err(|error| ApiError::internal(&error))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| ApiError::internal(&error))?;

    let stream = async_stream::stream! {
        // Counted as a subscriber while the stream lives.
        let _counted = crate::metrics::SubscriberGuard::new(subscription.api, &subscription.topic);
        let mut position = position;
        yield Delivery::Subscribed { position: position.clone() };
        if !reset_reasons.is_empty() {
            let reason = reset_reasons.join("; ");
            yield Delivery::Reset { position: position.clone(), reason };
        }
        loop {
            let received = tokio::select! {
                // The host is shutting down: end the stream, so the client
                // reconnects (with its last id) to another instance.
                () = crate::shutdown::stopped(&mut shutdown_rx) => break,
                received = consumer.recv() => received,
            };
            let message = match received {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(topic = %subscription.topic, %error, "subscriber read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            position.0.insert(message.partition(), message.offset() + 1);
            match decode(&registry, &message) {
                Ok(event) => {
                    if !subscription.verbs.is_empty() && !subscription.verbs.contains(&event.verb) {
                        continue;
                    }
                    if subscription.key.as_ref().is_some_and(|key| *key != event.key) {
                        continue;
                    }
                    // The delivery's span continues the event's trace; it
                    // ends as the event is handed to the subscriber's API
                    // (ending it at the next poll of the stream would leave
                    // it open while a quiet stream waits). A
                    // record that carries no trace (a replay of old events,
                    // an outside producer's) is delivered without a span:
                    // one-span traces of every replayed record would only
                    // crowd out the traces that matter.
                    let span = match crate::trace_context::record_parent(message.headers()) {
                        Some(parent) => {
                            let span = tracing::debug_span!(
                                "deliver",
                                otel.name = %format_args!("deliver {}", subscription.topic),
                                otel.kind = "consumer",
                                messaging.system = "kafka",
                                messaging.operation.type = "receive",
                                messaging.destination.name = %subscription.topic,
                                messaging.destination.partition.id = message.partition(),
                                messaging.kafka.offset = message.offset(),
                                messaging.message.id = %event.id,
                                subscriber.api = subscription.api,
                                trace_id = tracing::field::Empty,
                            );
                            crate::trace_context::continue_trace(&span, Some(parent));
                            span
                        }
                        None => tracing::Span::none(),
                    };
                    crate::metrics::metrics().delivered(subscription.api, &subscription.topic);
                    drop(span);
                    yield Delivery::Event { position: position.clone(), event: Box::new(event) };
                }
                Err(reason) => {
                    // Filters apply to what can still be read of the record
                    // (its key, its type header), so a subscriber to one
                    // key never hears of another key's bad records.
                    let key = message.key().map(String::from_utf8_lossy);
                    if subscription.key.as_ref().is_some_and(|wanted| key.as_deref() != Some(wanted.as_str())) {
                        continue;
                    }
                    if !subscription.verbs.is_empty()
                        && let Ok(envelope) = Envelope::from_headers(message.headers(), message.key())
                        && !subscription.verbs.contains(&envelope.verb.to_string())
                    {
                        continue;
                    }
                    yield Delivery::Undecodable {
                        position: position.clone(),
                        record: Undecodable { partition: message.partition(), offset: message.offset(), reason },
                    };
                }
            }
        }
    };
    Ok(stream)
}

/// Decodes a Confluent-framed Avro value with `decode`, one of the Avro
/// decoders, into its schema id and what that decoder makes of the body.
fn decode_framed<T>(
    registry: &Registry,
    value: &[u8],
    decode: impl FnOnce(&avro::Schema, &[u8]) -> Result<T, avro::DecodeError>,
) -> Result<(u32, T), String> {
    let (schema_id, body) = avro::unframe(value).map_err(|e| e.to_string())?;
    let schema = registry
        .by_id(schema_id)
        .ok_or_else(|| format!("schema id {schema_id} is not in the registry"))?;
    let decoded = decode(&schema.schema, body)
        .map_err(|e| format!("avro body does not match schema {schema_id}: {e}"))?;
    Ok((schema_id, decoded))
}

/// Decodes a Confluent-framed Avro value into its schema id and JSON.
pub fn decode_value(registry: &Registry, value: &[u8]) -> Result<(u32, serde_json::Value), String> {
    decode_framed(registry, value, avro::decode_exact)
}

/// [`decode_value`]'s object with only the top-level fields `keep` names
/// built, failing as it would (see [`avro::decode_exact_fields`]).
pub fn decode_value_fields(
    registry: &Registry,
    value: &[u8],
    keep: impl Fn(&str) -> bool,
) -> Result<serde_json::Value, String> {
    decode_framed(registry, value, |schema, body| {
        avro::decode_exact_fields(schema, body, keep)
    })
    .map(|(_, object)| object)
}

/// Decodes a Confluent-framed Avro value into its schema id and JSON text
/// (the text of [`decode_value`]'s JSON, without building it: what a
/// plugin is handed).
pub fn decode_value_text(registry: &Registry, value: &[u8]) -> Result<(u32, String), String> {
    decode_framed(registry, value, avro::decode_exact_to_text)
}

/// Decodes a record into the event subscribers see.
pub fn decode(
    registry: &Registry,
    message: &BorrowedMessage<'_>,
) -> Result<DeliveredEvent, String> {
    let envelope =
        Envelope::from_headers(message.headers(), message.key()).map_err(|e| e.to_string())?;
    let value = message.payload().ok_or("record has no value")?;
    let (schema_id, object) = decode_value(registry, value)?;
    let mut extensions = serde_json::Map::new();
    for (name, value) in &envelope.extensions {
        if let Some(value) = value
            && !extensions.contains_key(name)
        {
            extensions.insert(
                name.clone(),
                String::from_utf8_lossy(value).into_owned().into(),
            );
        }
    }
    Ok(DeliveredEvent {
        id: envelope.id.clone(),
        event_type: envelope.event_type(),
        noun: envelope.noun.to_string(),
        verb: envelope.verb.to_string(),
        key: envelope.key.clone(),
        time: envelope.time_rfc3339(),
        source: envelope.source,
        schema_id,
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        object,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let position = Position::parse("0:12,1:7,2:3").unwrap();
        assert_eq!(position.0.len(), 3);
        assert_eq!(position.to_string(), "0:12,1:7,2:3");
        assert_eq!(Position::parse("").unwrap(), Position::default());
    }

    #[test]
    fn bad_positions_are_refused() {
        for text in ["x", "0:", ":1", "0:1,0:2", "-1:3", "0:-4", "0:1;1:2"] {
            let error = Position::parse(text).unwrap_err();
            assert_eq!(error.code, Code::InvalidPosition, "{text}");
        }
    }
}
