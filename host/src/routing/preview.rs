//! Answers about routing that send nothing: `explain` (which routes an
//! event matches, and why) and `dry-run` (what a proposed route would have
//! done with the recent events of its source). Both decide with the same
//! code as the engine, router plugins included; plugins are sandboxed and
//! side-effect free, so calling them here is safe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::decide::{Candidate, Decision, Reasons, decide};
use super::route::{Route, glob_matches};
use super::store::Routes;
use crate::envelope::Envelope;
use crate::error::{ApiError, Code};
use crate::kafka::Kafka;
use crate::plugin::{self, Plugin};
use crate::publish::Prepared;
use crate::registry::Registry;
use crate::subscribe;

/// Most recent events a dry run reads.
pub const MAX_DRY_RUN_EVENTS: usize = 1_000;

/// Longest a dry run reads Kafka.
const READ_BUDGET: Duration = Duration::from_secs(10);

/// One route's answer for one event.
#[derive(Debug, Clone, Serialize)]
pub struct RouteVerdict {
    /// Route id.
    pub route: String,
    /// `forward`, `skip` or `dead-letter`.
    pub decision: &'static str,
    /// Where the event would go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Failure class, for `dead-letter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    /// Why.
    pub reasons: Reasons,
}

fn verdict(route: &Route, decision: Decision, reasons: Reasons) -> RouteVerdict {
    let (name, destinations, class) = match decision {
        Decision::Skip => ("skip", Vec::new(), None),
        Decision::Forward(topics) => ("forward", topics, None),
        Decision::Fail { class, .. } => ("dead-letter", Vec::new(), Some(class)),
    };
    RouteVerdict {
        route: route.id.clone(),
        decision: name,
        destinations,
        class,
        reasons,
    }
}

/// The explanation for one event.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    /// `<noun>.<verb>` of the event.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its key.
    pub key: String,
    /// Every route and what it does with the event, matched ones first.
    pub routes: Vec<RouteVerdict>,
}

/// Explains a prepared (validated and encoded, not sent) event against
/// every route.
pub fn explain_prepared(
    routes: &Routes,
    registry: &Registry,
    prepared: &Prepared,
    plugins: &dyn Fn(&str) -> Option<Arc<Plugin>>,
) -> Explained {
    let envelope = &prepared.envelope;
    let decoded = subscribe::decode_value(registry, &prepared.value).map(|(_, object)| object);
    let plugin_event = || {
        let object = decoded.as_ref().ok()?;
        Some(plugin::Event {
            metadata: plugin::Metadata {
                headers: envelope
                    .to_headers()
                    .iter()
                    .map(|header| plugin::Header {
                        name: header.key.to_string(),
                        value: header.value.unwrap_or_default().to_vec(),
                    })
                    .collect(),
                ..crate::pipeline::metadata_of(envelope)
            },
            object: object.to_string(),
        })
    };
    let candidate = Candidate {
        noun: envelope.noun.as_str(),
        verb: envelope.verb.as_str(),
        object: decoded.as_ref().map_err(String::as_str),
        plugin_event: &plugin_event,
        explain: true,
    };
    explain_candidate(routes, &candidate, envelope, plugins)
}

fn explain_candidate(
    routes: &Routes,
    candidate: &Candidate<'_>,
    envelope: &Envelope,
    plugins: &dyn Fn(&str) -> Option<Arc<Plugin>>,
) -> Explained {
    let mut verdicts: Vec<RouteVerdict> = routes
        .values()
        .map(|stored| {
            let (decision, reasons) = decide(&stored.route, candidate, plugins);
            verdict(&stored.route, decision, reasons)
        })
        .collect();
    verdicts.sort_by_key(|v| v.decision == "skip");
    Explained {
        event_type: envelope.event_type(),
        key: envelope.key.clone(),
        routes: verdicts,
    }
}

/// Explains the record at a position of a noun's topic.
pub fn explain_position(
    kafka: &Kafka,
    registry: &Registry,
    routes: &Routes,
    position: (&str, i32, i64),
    plugins: &dyn Fn(&str) -> Option<Arc<Plugin>>,
) -> Result<Explained, ApiError> {
    let (topic, partition, offset) = position;
    let consumer = reader(kafka)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|e| ApiError::internal(&e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| ApiError::internal(&e))?;
    let started = Instant::now();
    while started.elapsed() < READ_BUDGET {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => {
                return explain_message(registry, routes, &message, plugins);
            }
            Some(Ok(message)) if message.offset() > offset => break,
            Some(Err(error)) => {
                return Err(ApiError::new(
                    Code::KafkaUnavailable,
                    format!("cannot read `{topic}` partition {partition}: {error}"),
                ));
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        Code::NotFound,
        format!(
            "there is no record at offset {offset} of `{topic}` partition {partition} (compacted, expired or not written yet)"
        ),
    ))
}

fn explain_message(
    registry: &Registry,
    routes: &Routes,
    message: &BorrowedMessage<'_>,
    plugins: &dyn Fn(&str) -> Option<Arc<Plugin>>,
) -> Result<Explained, ApiError> {
    let envelope = Envelope::from_headers(message.headers(), message.key()).map_err(|error| {
        ApiError::new(
            Code::MalformedRequest,
            format!("the record is not an event routes can read: {error}"),
        )
    })?;
    let decoded = subscribe::decode(registry, message);
    let plugin_event = || {
        decoded
            .as_ref()
            .ok()
            .map(|delivered| crate::pipeline::plugin_event(message, delivered))
    };
    let candidate = Candidate {
        noun: envelope.noun.as_str(),
        verb: envelope.verb.as_str(),
        object: decoded.as_ref().map(|d| &d.object).map_err(String::as_str),
        plugin_event: &plugin_event,
        explain: true,
    };
    Ok(explain_candidate(routes, &candidate, &envelope, plugins))
}

/// What a dry run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRun {
    /// Topics read.
    pub topics: Vec<String>,
    /// Events read.
    pub read: usize,
    /// Events the route would have forwarded.
    pub forwarded: usize,
    /// Events the route would have skipped.
    pub skipped: usize,
    /// Events the route would have dead-lettered.
    pub dead_lettered: usize,
    /// Events per destination.
    pub destinations: BTreeMap<String, usize>,
    /// Each event read, newest last.
    pub events: Vec<DryRunEvent>,
}

/// One event of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunEvent {
    /// Event id.
    pub id: String,
    /// `<noun>.<verb>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Key.
    pub key: String,
    /// `topic:partition:offset`.
    pub position: String,
    /// What the route would do.
    pub verdict: RouteVerdict,
}

/// Runs a proposed route over up to `limit` of the most recent events of
/// the noun topics its source names.
pub fn dry_run(
    kafka: &Kafka,
    registry: &Registry,
    route: &Route,
    nouns: &[String],
    limit: usize,
    plugins: &dyn Fn(&str) -> Option<Arc<Plugin>>,
) -> Result<DryRun, ApiError> {
    let limit = limit.clamp(1, MAX_DRY_RUN_EVENTS);
    let consumer = reader(kafka)?;
    let topics: Vec<String> = nouns
        .iter()
        .filter(|noun| route.source.nouns.iter().any(|p| glob_matches(p, noun)))
        .cloned()
        .collect();
    // Take the last `limit` records of every partition, then keep the
    // newest `limit` overall by event time.
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for topic in &topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| kafka_down(&e))?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition.id(), Duration::from_secs(5))
                    .map_err(|e| kafka_down(&e))?;
                if high > low {
                    let start = (high - limit as i64).max(low);
                    assignment
                        .add_partition_offset(topic, partition.id(), Offset::Offset(start))
                        .map_err(|e| ApiError::internal(&e))?;
                    ends.insert((topic.clone(), partition.id()), high);
                }
            }
        }
    }
    let mut found: Vec<(String, DryRunEvent)> = Vec::new();
    if assignment.count() > 0 {
        consumer.assign(&assignment).map_err(|e| kafka_down(&e))?;
        let started = Instant::now();
        let proposed = routes_of(route);
        let mut open = ends.clone();
        while !open.is_empty() && started.elapsed() < READ_BUDGET {
            let Some(result) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = result.map_err(|e| kafka_down(&e))?;
            let at = (message.topic().to_string(), message.partition());
            if open
                .get(&at)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                open.remove(&at);
            }
            let Ok(explained) = explain_message(registry, &proposed, &message, plugins) else {
                continue;
            };
            let Some(verdict) = explained.routes.into_iter().next() else {
                continue;
            };
            let time = header_text(&message, "ce_time").unwrap_or_default();
            found.push((
                time,
                DryRunEvent {
                    id: header_text(&message, "ce_id").unwrap_or_default(),
                    event_type: explained.event_type,
                    key: explained.key,
                    position: format!("{}:{}:{}", at.0, at.1, message.offset()),
                    verdict,
                },
            ));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = found.len().saturating_sub(limit);
    let mut result = DryRun {
        topics,
        ..DryRun::default()
    };
    for (_, event) in found.into_iter().skip(skip) {
        result.read += 1;
        match event.verdict.decision {
            "forward" => {
                result.forwarded += 1;
                for topic in &event.verdict.destinations {
                    *result.destinations.entry(topic.clone()).or_default() += 1;
                }
            }
            "dead-letter" => result.dead_lettered += 1,
            _ => result.skipped += 1,
        }
        result.events.push(event);
    }
    Ok(result)
}

fn routes_of(route: &Route) -> Routes {
    let stored = super::route::StoredRoute {
        route: route.clone(),
        revision: 0,
        updated_at: String::new(),
    };
    Routes::from([(route.id.clone(), Arc::new(stored))])
}

fn header_text(message: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

fn reader(kafka: &Kafka) -> Result<BaseConsumer, ApiError> {
    kafka
        .consumer_config("switchyard-route-preview")
        .create()
        .map_err(|e| kafka_down(&e))
}

fn kafka_down(error: &rdkafka::error::KafkaError) -> ApiError {
    ApiError::new(
        Code::KafkaUnavailable,
        format!("cannot read recent events from kafka: {error}"),
    )
    .with_retry_after(Duration::from_secs(1))
}
