//! Pipelines: each loaded plugin reads the events its manifest names, runs
//! on each one, and its results are written back to Kafka.
//!
//! A router's destinations receive the unchanged record (same key, value and
//! headers) plus a `switchyard-router` header. A transformer's events are
//! validated and encoded like any published event, carrying `causationid`
//! (the input's id), the input's `traceparent`, and `switchyard-plugin`.
//!
//! Delivery is at least once: a record's offset is committed only after
//! every write it caused was acknowledged. A failure of the plugin sends the
//! record to the dead-letter topic with headers naming the plugin, the
//! failure class and the reason, and the partition moves on. A failure of
//! Kafka is retried until it succeeds or the host shuts down; the offset is
//! then not committed and the record is processed again after a restart.
//! Exactly-once through Kafka transactions is not implemented yet; until it
//! is, a crash between a write and its commit can repeat that write.
//!
//! Each pipeline is one consumer group (`switchyard.plugin.<name>`), so
//! several host instances share the partitions, and events of one key are
//! processed in order.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use tokio::sync::watch;
use tracing::Instrument;

use crate::envelope::{PLUGIN_HEADER, ROUTER_HEADER};
use crate::kafka::{Kafka, TopicKind};
use crate::nvo::check_topic;
use crate::plugin::auto_pause::AutoPause;
use crate::plugin::{self, Failure, Output, Plugin};
use crate::publish::{EventInput, PrepareTextError, Publisher};
use crate::registry::Registry;
use crate::subscribe;

/// Dead-letter headers, all prefixed `switchyard-dlq-`.
pub mod dlq {
    /// `name@version` of the plugin that failed.
    pub const PLUGIN: &str = "switchyard-dlq-plugin";
    /// Id of the route that failed, when a route did.
    pub const ROUTE: &str = "switchyard-dlq-route";
    /// Failure class: `plugin-error`, `trap`, `timeout`, `out-of-memory`,
    /// `invalid-output` or `undecodable`.
    pub const CLASS: &str = "switchyard-dlq-class";
    /// Human-readable reason.
    pub const REASON: &str = "switchyard-dlq-reason";
    /// Topic the record came from.
    pub const TOPIC: &str = "switchyard-dlq-topic";
    /// Partition it came from.
    pub const PARTITION: &str = "switchyard-dlq-partition";
    /// Offset it came from.
    pub const OFFSET: &str = "switchyard-dlq-offset";
}

/// What a pipeline needs from the host.
pub struct PipelineContext {
    /// Kafka clients.
    pub kafka: Arc<Kafka>,
    /// Registry, to decode inputs.
    pub registry: Arc<Registry>,
    /// Publisher, for transformer outputs.
    pub publisher: Arc<Publisher>,
    /// The plugin store, to pause a failing plugin on every instance.
    pub store: Arc<crate::plugin::store::PluginStore>,
    /// Pauses a plugin that keeps failing.
    pub auto_pause: Arc<AutoPause>,
    /// What aggregators need; none when aggregation is off here.
    pub aggregation: Option<Arc<crate::aggregation::AggregationParts>>,
    /// Aggregators running on this instance.
    pub aggregators: Arc<crate::aggregation::Aggregators>,
}

/// Runs one plugin's pipeline until shutdown.
/// Runs one plugin's pipeline until `stop_rx` turns true. The plugin comes
/// from `plugin_rx` and is read afresh before every record, so a newly
/// activated version takes over between two records: each record is handled
/// entirely by one version, and the consumer group (named after the plugin,
/// not the version) continues from the same offsets, so nothing is skipped
/// or handled twice across the swap.
pub async fn run(
    ctx: Arc<PipelineContext>,
    mut plugin_rx: watch::Receiver<Arc<Plugin>>,
    mut shutdown_rx: watch::Receiver<bool>,
) {
    let mut plugin = plugin_rx.borrow_and_update().clone();
    if plugin.manifest().kind == crate::plugin::Kind::Aggregator {
        match &ctx.aggregation {
            Some(parts) => {
                crate::aggregation::run(
                    Arc::clone(parts),
                    Arc::clone(&ctx.aggregators),
                    plugin_rx,
                    shutdown_rx,
                )
                .await;
            }
            None => tracing::info!(
                plugin = plugin.label(),
                "aggregation is turned off on this instance (`aggregation.enabled`)"
            ),
        }
        return;
    }
    let group = format!("switchyard.plugin.{}", plugin.manifest().name);
    let consumer_config = ctx.kafka.consumer_config(&group);
    if plugin.manifest().start == crate::plugin::manifest::StartFrom::Latest {
        let config = consumer_config.clone();
        let topics = plugin.manifest().source_nouns();
        let label = plugin.label().to_string();
        let pinned = tokio::task::spawn_blocking(move || pin_latest(&config, &topics)).await;
        if let Ok(Err(error)) | Err(error) = pinned.map_err(anyhow::Error::from) {
            tracing::warn!(
                plugin = label,
                error = format!("{error:#}"),
                "cannot pin the starting offsets; partitions without a committed offset start from their beginning"
            );
        }
    }
    let consumer: StreamConsumer = match consumer_config.create() {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(plugin = plugin.label(), %error, "cannot create pipeline consumer; plugin not running");
            return;
        }
    };
    let topics = plugin.manifest().source_nouns();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(error) = consumer.subscribe(&topic_refs) {
        tracing::error!(plugin = plugin.label(), %error, "cannot subscribe pipeline; plugin not running");
        return;
    }
    tracing::info!(plugin = plugin.label(), group, topics = ?topics, "pipeline started");
    let mut window = ctx.auto_pause.window(&plugin);

    loop {
        let message = tokio::select! {
            () = crate::shutdown::stopped(&mut shutdown_rx) => break,
            received = consumer.recv() => match received {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(plugin = plugin.label(), %error, "pipeline read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        if plugin_rx.has_changed().unwrap_or(false) {
            let next = plugin_rx.borrow_and_update().clone();
            tracing::info!(
                from = plugin.label(),
                to = next.label(),
                "plugin version swapped"
            );
            plugin = next;
            // A new version starts with a clean record.
            window = ctx.auto_pause.window(&plugin);
        }
        let calls_before = plugin
            .stats()
            .calls
            .load(std::sync::atomic::Ordering::Relaxed);
        let failures_before = plugin.stats().failures();
        let mut attempt = 0_u32;
        loop {
            // An admin may ask to skip a record that cannot be handled (say,
            // one whose output Kafka keeps refusing): it goes to the
            // dead-letter topic untouched and the partition moves on.
            if ctx.store.is_skipped(
                &plugin.manifest().name,
                message.topic(),
                message.partition(),
                message.offset(),
            ) {
                tracing::warn!(
                    plugin = plugin.label(),
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    "record skipped by an admin"
                );
                if dead_letter(&ctx, &plugin, &message, "skipped", "skipped by an admin")
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            let span = crate::trace_context::record_span(
                plugin.manifest().kind.as_str(),
                &group,
                &message,
            );
            let outcome = match handle(&ctx, &plugin, &message).instrument(span).await {
                // A write that can never succeed (a record too large for its
                // destination, a topic the broker refuses to create) must not
                // hold up the partition: the input goes to the dead-letter
                // topic with the reason instead.
                Err(Failed::Undeliverable(reason)) => {
                    tracing::warn!(
                        plugin = plugin.label(),
                        reason,
                        "plugin output cannot be delivered"
                    );
                    dead_letter(&ctx, &plugin, &message, "undeliverable", &reason).await
                }
                other => other,
            };
            match outcome {
                Ok(()) => break,
                Err(Failed::Undeliverable(reason)) => {
                    // Even the dead-letter topic refuses it. The record stays
                    // on its source topic at this offset; an operator must
                    // look at it, and the partition moves on.
                    tracing::error!(
                        plugin = plugin.label(),
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        "record cannot be dead-lettered; skipped, it is still on its source topic"
                    );
                    break;
                }
                Err(Failed::Retry(error)) => {
                    attempt += 1;
                    tracing::warn!(
                        plugin = plugin.label(),
                        partition = message.partition(),
                        offset = message.offset(),
                        attempt,
                        error = %error,
                        "pipeline write failed; retrying"
                    );
                    let backoff = Duration::from_millis(200 * u64::from(attempt.min(25)));
                    tokio::select! {
                        () = crate::shutdown::stopped(&mut shutdown_rx) => {
                            tracing::info!(plugin = plugin.label(), "pipeline stopped with an unfinished record; it will be processed again");
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        let called = plugin
            .stats()
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
            > calls_before;
        if called && let Some(failed) = window.record(plugin.stats().failures() > failures_before) {
            let _ = consumer.commit_message(&message, CommitMode::Sync);
            if ctx.auto_pause.pause(&plugin, failed).await {
                // The store now says paused; the supervisor stops this
                // pipeline on every instance.
                window = ctx.auto_pause.window(&plugin);
                continue;
            }
            // A folder plugin cannot be paused through the store: stop it
            // on this instance until the host restarts.
            return;
        }
        if let Err(error) = consumer.commit_message(&message, CommitMode::Async) {
            tracing::warn!(plugin = plugin.label(), %error, "offset commit failed; the record may be processed again");
        }
    }
    tracing::info!(plugin = plugin.label(), "pipeline stopped");
}

/// Why processing a record did not finish.
#[derive(Debug)]
enum Failed {
    /// Kafka could not take a write now (down, slow); try the record again.
    Retry(anyhow::Error),
    /// A write can never succeed; dead-letter the input instead.
    Undeliverable(String),
}

impl From<anyhow::Error> for Failed {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast_ref::<crate::kafka::TopicCreationError>() {
            Some(refused) if refused.is_permanent() => Failed::Undeliverable(refused.to_string()),
            _ => Failed::Retry(error),
        }
    }
}

impl From<crate::error::ApiError> for Failed {
    fn from(error: crate::error::ApiError) -> Self {
        use crate::error::Code;
        match error.code {
            Code::PayloadTooLarge | Code::NotFound | Code::InvalidName => {
                Failed::Undeliverable(error.detail)
            }
            _ => Failed::Retry(error.into()),
        }
    }
}

impl From<tokio::task::JoinError> for Failed {
    fn from(error: tokio::task::JoinError) -> Self {
        Failed::Retry(error.into())
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Retry(error) => write!(f, "{error:#}"),
            Failed::Undeliverable(reason) => f.write_str(reason),
        }
    }
}

/// Processes one record. Plugin failures are handled (dead-lettered) and
/// return `Ok`; `Err` says whether Kafka should be tried again.
async fn handle(
    ctx: &PipelineContext,
    plugin: &Arc<Plugin>,
    message: &BorrowedMessage<'_>,
) -> Result<(), Failed> {
    // A record whose headers name a type this plugin does not take is not
    // this plugin's business, readable or not; every other unreadable record
    // is dead-lettered once per plugin that would have received it.
    if let Ok(envelope) = crate::envelope::Envelope::from_headers(message.headers(), message.key())
        && !plugin
            .manifest()
            .accepts(envelope.noun.as_str(), envelope.verb.as_str())
    {
        return Ok(());
    }
    let delivered = match subscribe::decode(&ctx.registry, message) {
        Ok(delivered) => delivered,
        Err(reason) => return dead_letter(ctx, plugin, message, "undecodable", &reason).await,
    };
    let event = plugin_event(message, &delivered);
    let called = Arc::clone(plugin);
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || span.in_scope(|| called.call(&event))).await?;
    let output = match result {
        Ok(output) => output,
        Err(failure) => {
            tracing::warn!(plugin = plugin.label(), class = failure.class(), reason = %failure, id = %delivered.id, "plugin failed on event");
            return dead_letter(ctx, plugin, message, failure.class(), &failure.to_string()).await;
        }
    };
    match output {
        Output::Destinations(topics) => {
            if let Some(bad) = topics.iter().find(|topic| check_topic(topic).is_err()) {
                return refuse(
                    ctx,
                    plugin,
                    message,
                    format!(
                        "destination `{}` is not a valid topic name",
                        bad.escape_debug()
                    ),
                )
                .await;
            }
            for topic in topics {
                ctx.kafka.ensure_topic(&topic, TopicKind::Events).await?;
                let headers = crate::trace_context::forwarded_headers(
                    message.headers(),
                    &tracing::Span::current(),
                    &[(ROUTER_HEADER, plugin.label().as_bytes())],
                );
                ctx.kafka
                    .produce(
                        &topic,
                        message.key().unwrap_or_default(),
                        message.payload().unwrap_or_default(),
                        headers,
                    )
                    .await?;
                tracing::debug!(plugin = plugin.label(), id = %delivered.id, topic, "routed");
            }
        }
        Output::Aggregate { .. } => {
            return refuse(
                ctx,
                plugin,
                message,
                "an aggregator cannot run in a pipeline yet".to_string(),
            )
            .await;
        }
        Output::Events(events) => {
            let mut prepared = Vec::with_capacity(events.len());
            for (index, emitted) in events.into_iter().enumerate() {
                let mut extensions =
                    crate::trace_context::derived(&tracing::Span::current(), |name| {
                        header_value(message, name)
                    });
                extensions.push((
                    "causationid".to_string(),
                    Some(delivered.id.clone().into_bytes()),
                ));
                extensions.push((
                    PLUGIN_HEADER.to_string(),
                    Some(plugin.label().as_bytes().to_vec()),
                ));
                let input = EventInput {
                    noun: emitted.noun,
                    verb: emitted.verb,
                    key: emitted.key,
                    source: Some(format!("/switchyard/plugin/{}", plugin.manifest().name)),
                    extensions,
                    ..EventInput::default()
                };
                let reason = match ctx.publisher.prepare_text(input, &emitted.object) {
                    Ok(ready) => {
                        prepared.push(ready);
                        continue;
                    }
                    Err(PrepareTextError::NotJson(error)) => {
                        format!("event {index} has an object that is not JSON: {error}")
                    }
                    Err(PrepareTextError::Invalid(error)) => format!("event {index}: {error}"),
                };
                return refuse(ctx, plugin, message, reason).await;
            }
            let count = prepared.len();
            for ready in prepared {
                ctx.publisher.send(ready).await?;
            }
            tracing::debug!(plugin = plugin.label(), id = %delivered.id, count, "transformed");
        }
    }
    Ok(())
}

/// Makes `start = "latest"` mean "from when the plugin was first
/// activated": when the group has no committed offset on any partition of
/// the source topics (it is new), every partition gets its current end
/// committed, once. A group that has committed anywhere is left alone: it
/// already started, and its members own its offsets; committing from
/// outside then could move an offset that a member has just committed.
///
/// Leaving it to Kafka's `auto.offset.reset=latest` would be wrong: Kafka
/// applies it whenever a partition has no committed offset, so a plugin that
/// was paused before it handled any record of some partition would, on
/// resume, silently skip everything written to that partition meanwhile.
/// With the offsets pinned, the consumer itself always starts from committed
/// offsets (or the beginning, for a partition added later).
pub(crate) fn pin_latest(config: &rdkafka::ClientConfig, topics: &[String]) -> anyhow::Result<()> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = config.create()?;
    let timeout = Duration::from_secs(10);
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                all.add_partition(topic, partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(all, timeout)?;
    for element in committed.elements() {
        element.error().map_err(|error| {
            anyhow::anyhow!(
                "cannot read the committed offset of `{}` partition {}: {error}",
                element.topic(),
                element.partition()
            )
        })?;
    }
    if committed
        .elements()
        .iter()
        .any(|element| element.offset() != Offset::Invalid)
    {
        return Ok(());
    }
    let mut pin = TopicPartitionList::new();
    for element in committed.elements() {
        if element.offset() == Offset::Invalid {
            let (_, high) =
                consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
            pin.add_partition_offset(element.topic(), element.partition(), Offset::Offset(high))?;
        }
    }
    if pin.count() > 0 {
        // Accepted while the group has no members, i.e. on first activation;
        // if other instances already run it, they own the offsets.
        consumer.commit(&pin, rdkafka::consumer::CommitMode::Sync)?;
    }
    Ok(())
}

/// Dead-letters an input whose (successful) plugin call returned output the
/// host refuses, and counts it as that call's failure.
async fn refuse(
    ctx: &PipelineContext,
    plugin: &Plugin,
    message: &BorrowedMessage<'_>,
    reason: String,
) -> Result<(), Failed> {
    let failure = Failure::InvalidOutput(reason);
    plugin.stats().record_refused_output();
    dead_letter(ctx, plugin, message, failure.class(), &failure.to_string()).await
}

fn header_value(message: &BorrowedMessage<'_>, name: &str) -> Option<Vec<u8>> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value.map(<[u8]>::to_vec))
}

pub(crate) fn plugin_event(
    message: &BorrowedMessage<'_>,
    delivered: &subscribe::DeliveredEvent,
) -> plugin::Event {
    event_of(
        message,
        plugin::Metadata {
            id: delivered.id.clone(),
            noun: delivered.noun.clone(),
            verb: delivered.verb.clone(),
            key: delivered.key.clone(),
            time: delivered.time.clone(),
            source: delivered.source.clone(),
            headers: Vec::new(),
            position: None,
        },
        delivered.object.to_string(),
    )
}

/// The event a plugin is handed for a record whose envelope was read, with
/// its object decoded straight to JSON text: what [`plugin_event`] gives
/// for the record's [`subscribe::decode`], without the JSON tree in between
/// (the aggregators' path, where that tree cost about a tenth of the
/// thread).
pub(crate) fn plugin_event_of(
    registry: &Registry,
    message: &BorrowedMessage<'_>,
    envelope: &crate::envelope::Envelope,
) -> Result<plugin::Event, String> {
    let value = message.payload().ok_or("record has no value")?;
    let (_, object) = subscribe::decode_value_text(registry, value)?;
    Ok(event_of(message, metadata_of(envelope), object))
}

/// An envelope's event metadata, without headers or position.
pub(crate) fn metadata_of(envelope: &crate::envelope::Envelope) -> plugin::Metadata {
    plugin::Metadata {
        id: envelope.id.clone(),
        noun: envelope.noun.to_string(),
        verb: envelope.verb.to_string(),
        key: envelope.key.clone(),
        time: envelope.time_rfc3339(),
        source: envelope.source.clone(),
        headers: Vec::new(),
        position: None,
    }
}

/// Completes an event's metadata with the record's headers and position.
fn event_of(
    message: &BorrowedMessage<'_>,
    mut metadata: plugin::Metadata,
    object: String,
) -> plugin::Event {
    use rdkafka::message::Headers;
    metadata.headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| plugin::Header {
                    name: header.key.to_string(),
                    value: header.value.unwrap_or_default().to_vec(),
                })
                .collect()
        })
        .unwrap_or_default();
    metadata.position = Some(plugin::Position {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
    });
    plugin::Event { metadata, object }
}

/// Writes the original record, unchanged, to the dead-letter topic with
/// headers that say who failed, how and why.
async fn dead_letter(
    ctx: &PipelineContext,
    plugin: &Plugin,
    message: &BorrowedMessage<'_>,
    class: &str,
    reason: &str,
) -> Result<(), Failed> {
    let topic = ctx.kafka.config().dead_letter_topic.clone();
    let span = tracing::debug_span!(
        "dead-letter",
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        error.type = class,
        reason,
    );
    ctx.kafka
        .ensure_topic(&topic, TopicKind::Events)
        .instrument(span.clone())
        .await?;
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let headers = crate::trace_context::forwarded_headers(
        message.headers(),
        &span,
        &[
            (dlq::PLUGIN, plugin.label().as_bytes()),
            (dlq::CLASS, class.as_bytes()),
            (dlq::REASON, reason.as_bytes()),
            (dlq::TOPIC, message.topic().as_bytes()),
            (dlq::PARTITION, partition.as_bytes()),
            (dlq::OFFSET, offset.as_bytes()),
        ],
    );
    ctx.kafka
        .produce(
            &topic,
            message.key().unwrap_or_default(),
            message.payload().unwrap_or_default(),
            headers,
        )
        .instrument(span.clone())
        .await?;
    crate::metrics::metrics().pipeline_dead_letter(&plugin.manifest().name, class);
    span.in_scope(|| {
        tracing::warn!(
            plugin = plugin.label(),
            class,
            reason,
            topic,
            "event dead-lettered"
        );
    });
    Ok(())
}
