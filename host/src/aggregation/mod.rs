//! Stateful aggregation: an aggregator plugin gets the current state of an
//! event's key and returns the new state and zero or more events.
//!
//! Each active aggregator runs in an [`exactly_once`](crate::exactly_once)
//! loop of its own, consumer group `<aggregation.group_prefix>.<name>`. Its
//! state lives in memory per input partition ([`state`]) and in a
//! compacted changelog topic, `<group>.changelog`, partitioned like the
//! input; a partition's state is rebuilt from the changelog when the
//! partition arrives (on start, after a crash, when instances come or go).
//! The changelog records, the output events and the consumer offsets
//! commit in one Kafka transaction, so state and outputs reflect every
//! event exactly once; an aborted transaction's state changes are undone
//! in memory too.
//!
//! Windows (tumbling, session) and idle time-to-live follow the plugin's
//! `[aggregate]` manifest section and event time; expired state is deleted
//! with a changelog tombstone. Late events, for a window already closed,
//! are dropped and counted. The plugin sees a window's bounds as the
//! configuration values `window.start` and `window.end` (Unix
//! milliseconds).
//!
//! State is readable through the API for a key on any instance
//! ([`query`]); the owner of the key's partition answers, others forward.
//!
//! All source topics of an aggregator must have the same partition count
//! (they are co-partitioned, as Kafka Streams requires for joins), since
//! state is kept per partition number.
//!
//! An out-of-order event within the gap of two sessions of its key joins
//! them: the plugin (built for the `session-aggregator` world, which an
//! aggregator with session windows must be) merges their states, and the
//! event is folded into the merged state.

pub mod directory;
pub mod query;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use self::state::{Entry, PartitionStore};
use crate::config::AggregationConfig;
use crate::envelope::{Envelope, PLUGIN_HEADER};
use crate::exactly_once::{Loop, LoopConfig, LoopStatus, Outbox, Partition, Processor};
use crate::kafka::{Kafka, TopicKind};
use crate::pipeline::dlq;
use crate::plugin::auto_pause::Tracked;
use crate::plugin::{ConfigEntry, Output, Plugin};
use crate::publish::{EventInput, PrepareTextError, Publisher};
use crate::registry::Registry;

/// What aggregators need from the host.
pub struct AggregationParts {
    /// Kafka clients.
    pub kafka: Arc<Kafka>,
    /// Registry, to decode inputs.
    pub registry: Arc<Registry>,
    /// Publisher, to validate and encode output events.
    pub publisher: Arc<Publisher>,
    /// Settings.
    pub config: AggregationConfig,
    /// Where this instance says it can be reached, for state queries.
    pub directory: Arc<directory::Directory>,
    /// Pauses an aggregator that keeps failing.
    pub auto_pause: Arc<crate::plugin::auto_pause::AutoPause>,
}

/// Counters of one aggregator on this instance.
#[derive(Debug, Default, Serialize)]
pub struct AggregatorCounters {
    /// Events folded.
    pub folded: AtomicU64,
    /// Events emitted.
    pub emitted: AtomicU64,
    /// Events dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Events dropped because their window had closed.
    pub late_dropped: AtomicU64,
    /// State entries deleted (closed windows, idle keys).
    pub expired: AtomicU64,
}

/// A running aggregator, as the API sees it.
pub struct Aggregator {
    /// Plugin name.
    pub name: String,
    /// Consumer group.
    pub group: String,
    /// Changelog topic.
    pub changelog: String,
    /// Input topics.
    pub topics: Vec<String>,
    /// Partitions of each input topic.
    pub partitions: i32,
    /// State per owned partition.
    pub stores: Arc<Mutex<HashMap<i32, PartitionStore>>>,
    /// Counters.
    pub counters: Arc<AggregatorCounters>,
    /// One loop per thread (`aggregation.threads`), all in the group.
    loops: Vec<Arc<Loop>>,
}

impl Aggregator {
    /// The loops' status, summed: partitions of every loop, transactions
    /// and records added up, running while any loop runs.
    pub fn status(&self) -> LoopStatus {
        let mut total = LoopStatus {
            group: self.group.clone(),
            ..LoopStatus::default()
        };
        for status in self.loops.iter().map(|l| l.status()) {
            total.running |= status.running;
            total.assigned.extend(status.assigned);
            total.transactions_committed += status.transactions_committed;
            total.transactions_aborted += status.transactions_aborted;
            total.commit_seconds += status.commit_seconds;
            total.commit_seconds_max = total.commit_seconds_max.max(status.commit_seconds_max);
            total.records += status.records;
            total.lag.extend(status.lag);
            total.last_error = total.last_error.or(status.last_error);
            total.stalled_seconds = match (total.stalled_seconds, status.stalled_seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        total.assigned.sort();
        total
    }

    /// Waits for the loops to end (after shutdown was signalled).
    pub fn join(&self) {
        for looped in &self.loops {
            looped.join();
        }
    }
}

/// The aggregators running on this instance, by plugin name.
#[derive(Default)]
pub struct Aggregators {
    running: Mutex<HashMap<String, Arc<Aggregator>>>,
}

impl Aggregators {
    /// The aggregator running under a plugin name.
    pub fn get(&self, name: &str) -> Option<Arc<Aggregator>> {
        self.running
            .lock()
            .expect("aggregators lock")
            .get(name)
            .cloned()
    }

    /// Every running aggregator, by name.
    pub fn all(&self) -> Vec<Arc<Aggregator>> {
        let mut all: Vec<Arc<Aggregator>> = self
            .running
            .lock()
            .expect("aggregators lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn insert(&self, aggregator: Arc<Aggregator>) {
        self.running
            .lock()
            .expect("aggregators lock")
            .insert(aggregator.name.clone(), aggregator);
    }

    fn remove(&self, name: &str) {
        self.running.lock().expect("aggregators lock").remove(name);
    }
}

/// The consumer group of an aggregator.
pub fn group_of(config: &AggregationConfig, plugin: &str) -> String {
    format!("{}.{plugin}", config.group_prefix)
}

/// Runs an aggregator until `shutdown_rx` turns true; `plugin_rx` swaps
/// versions between records.
pub async fn run(
    parts: Arc<AggregationParts>,
    registry: Arc<Aggregators>,
    plugin_rx: watch::Receiver<Arc<Plugin>>,
    shutdown_rx: watch::Receiver<bool>,
) {
    let plugin = plugin_rx.borrow().clone();
    let name = plugin.manifest().name.clone();
    let group = group_of(&parts.config, &name);
    let changelog = format!("{group}.changelog");
    let topics = plugin.manifest().source_nouns();
    let mut counts = Vec::new();
    for topic in &topics {
        match parts.kafka.partitions(topic).await {
            Ok(partitions) => counts.push(partitions.len() as i32),
            Err(error) => {
                tracing::error!(
                    plugin = plugin.label(),
                    topic,
                    error = format!("{error:#}"),
                    "cannot read the source topic; aggregator not running"
                );
                return;
            }
        }
    }
    counts.dedup();
    let [partitions] = counts[..] else {
        tracing::error!(plugin = plugin.label(), topics = ?topics, "source topics have different partition counts; an aggregator needs co-partitioned topics; not running");
        return;
    };
    if let Err(error) = parts
        .kafka
        .ensure_topic(&changelog, TopicKind::Changelog(partitions))
        .await
    {
        tracing::error!(
            plugin = plugin.label(),
            error = format!("{error:#}"),
            "cannot create the changelog; aggregator not running"
        );
        return;
    }
    let stores = Arc::new(Mutex::new(HashMap::new()));
    let counters = Arc::new(AggregatorCounters::default());
    let starts_latest = plugin.manifest().start == crate::plugin::manifest::StartFrom::Latest;
    if starts_latest {
        // Pinned once, before any loop joins the group, so no loop reads a
        // partition from its beginning before the pin lands.
        let consumer_config = parts.kafka.consumer_config(&group);
        let pinned = topics.clone();
        let result = tokio::task::spawn_blocking(move || {
            crate::pipeline::pin_latest(&consumer_config, &pinned)
        })
        .await;
        if let Ok(Err(error)) | Err(error) = result.map_err(anyhow::Error::from) {
            tracing::warn!(
                group,
                error = format!("{error:#}"),
                "cannot pin the group's start offsets"
            );
        }
    }
    let threads = parts.config.threads.max(1);
    let mut loops = Vec::with_capacity(threads);
    for loop_id in 0..threads {
        // Each loop has its own undo log and open-transaction counts; the
        // state itself is shared, since partitions move between loops.
        let processor = Arc::new(Mutex::new(AggregateProcessor {
            loop_id,
            parts: Arc::clone(&parts),
            plugin_rx: plugin_rx.clone(),
            changelog: changelog.clone(),
            group: group.clone(),
            stores: Arc::clone(&stores),
            undo: Vec::new(),
            undo_stream_time: BTreeMap::new(),
            counters: Arc::clone(&counters),
            handle: tokio::runtime::Handle::current(),
            pending: PendingCounts::default(),
            call: None,
            window: None,
            stopping: shutdown_rx.clone(),
        }));
        let config = LoopConfig {
            operation: "aggregate",
            group: group.clone(),
            topics: topics.clone(),
            commit_interval: Duration::from_millis(parts.config.commit_interval_ms),
            max_records: parts.config.max_transaction_records,
            transaction_timeout: Duration::from_millis(parts.config.transaction_timeout_ms),
            pin_latest: Vec::new(),
        };
        loops.push(Loop::start(
            Arc::clone(&parts.kafka),
            config,
            processor,
            shutdown_rx.clone(),
        ));
    }
    tracing::info!(
        plugin = plugin.label(),
        group,
        changelog,
        threads,
        "aggregator started"
    );
    let aggregator = Arc::new(Aggregator {
        name: name.clone(),
        group,
        changelog,
        topics,
        partitions,
        stores,
        counters,
        loops,
    });
    registry.insert(Arc::clone(&aggregator));
    let joined = Arc::clone(&aggregator);
    let _ = tokio::task::spawn_blocking(move || joined.join()).await;
    registry.remove(&name);
    parts.directory.forget(&aggregator.group).await;
}

/// Counters of the open transaction.
#[derive(Default)]
struct PendingCounts {
    folded: u64,
    emitted: u64,
    dead_lettered: u64,
    late_dropped: u64,
    expired: u64,
}

struct AggregateProcessor {
    /// Which of the aggregator's loops on this instance this is.
    loop_id: usize,
    parts: Arc<AggregationParts>,
    plugin_rx: watch::Receiver<Arc<Plugin>>,
    changelog: String,
    group: String,
    stores: Arc<Mutex<HashMap<i32, PartitionStore>>>,
    /// Entries as they were before the open transaction changed them, in
    /// order of change.
    undo: Vec<(i32, String, Option<Entry>)>,
    /// Stream times as they were before the open transaction.
    undo_stream_time: BTreeMap<i32, i64>,
    counters: Arc<AggregatorCounters>,
    handle: tokio::runtime::Handle,
    pending: PendingCounts,
    /// Whether the aggregator was called on the record in hand, and failed.
    call: Option<bool>,
    /// The recent calls of the running version, for pausing it.
    window: Option<Tracked>,
    /// The aggregator's stop signal. The consumer's close hands the
    /// partitions back through `revoked`, possibly while the host's runtime
    /// is going away: announcing then would panic inside the Kafka
    /// client's rebalance callback and leave the close waiting forever.
    /// The directory forgets the group once the loops have ended.
    stopping: watch::Receiver<bool>,
}

impl Processor for AggregateProcessor {
    fn assigned(&mut self, partitions: &[Partition]) {
        let wanted: Vec<i32> = {
            let mut numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
            numbers.sort_unstable();
            numbers.dedup();
            numbers
        };
        let consumer_config = self
            .parts
            .kafka
            .consumer_config(&format!("{}-restore", self.group));
        let within = Duration::from_millis(self.parts.config.transaction_timeout_ms * 3);
        // Always from the changelog: a store already in the map may be
        // another loop's, stale since that loop lost the partition. A
        // partition that cannot be restored is not processed with empty
        // state: the store stays missing, and `process` fails its records,
        // so they are read again after the next rebalance.
        for (partition, restored) in
            state::restore(&consumer_config, &self.changelog, &wanted, within)
        {
            match restored {
                Ok(mut store) => {
                    store.owner = self.loop_id;
                    tracing::info!(
                        group = self.group,
                        partition,
                        entries = store.len(),
                        "state restored"
                    );
                    self.stores
                        .lock()
                        .expect("stores lock")
                        .insert(partition, store);
                }
                Err(error) => {
                    self.stores.lock().expect("stores lock").remove(&partition);
                    tracing::error!(
                        group = self.group,
                        partition,
                        error = format!("{error:#}"),
                        "cannot restore state"
                    );
                }
            }
        }
        let owned: Vec<i32> = self
            .stores
            .lock()
            .expect("stores lock")
            .keys()
            .copied()
            .collect();
        self.handle
            .block_on(self.parts.directory.announce(&self.group, &owned));
    }

    fn revoked(&mut self, partitions: &[Partition]) {
        let mut stores = self.stores.lock().expect("stores lock");
        for (_, partition) in partitions {
            if stores
                .get(partition)
                .is_some_and(|s| s.owner == self.loop_id)
            {
                stores.remove(partition);
            }
        }
        let owned: Vec<i32> = stores.keys().copied().collect();
        drop(stores);
        if *self.stopping.borrow() {
            return;
        }
        self.handle
            .block_on(self.parts.directory.announce(&self.group, &owned));
    }

    fn process(
        &mut self,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()> {
        let plugin = self.plugin_rx.borrow().clone();
        self.call = None;
        let processed = self.fold(&plugin, message, outbox);
        if let Some(failed) = self.call.take() {
            self.count_call(&plugin, failed);
        }
        processed
    }
    fn committed(&mut self) {
        self.undo.clear();
        self.undo_stream_time.clear();
        let pending = std::mem::take(&mut self.pending);
        let c = &self.counters;
        c.folded.fetch_add(pending.folded, Ordering::Relaxed);
        c.emitted.fetch_add(pending.emitted, Ordering::Relaxed);
        c.dead_lettered
            .fetch_add(pending.dead_lettered, Ordering::Relaxed);
        c.late_dropped
            .fetch_add(pending.late_dropped, Ordering::Relaxed);
        c.expired.fetch_add(pending.expired, Ordering::Relaxed);
    }

    fn set_aside(
        &mut self,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
        reason: &str,
    ) -> anyhow::Result<()> {
        let plugin = self.plugin_rx.borrow().clone();
        self.dead_letter(&plugin, message, outbox, "undeliverable", reason)
    }

    fn aborted(&mut self) {
        let mut stores = self.stores.lock().expect("stores lock");
        let loop_id = self.loop_id;
        for (partition, key, before) in self.undo.drain(..).rev() {
            // A store another loop restored since is already right.
            if let Some(store) = stores.get_mut(&partition).filter(|s| s.owner == loop_id) {
                match before {
                    Some(entry) => store.insert(key, entry),
                    None => store.remove(&key),
                };
            }
        }
        for (partition, time) in std::mem::take(&mut self.undo_stream_time) {
            if let Some(store) = stores.get_mut(&partition).filter(|s| s.owner == loop_id) {
                store.stream_time_ms = time;
            }
        }
        self.pending = PendingCounts::default();
    }
}

impl AggregateProcessor {
    /// Counts one call of the aggregator towards its failure window, and
    /// pauses it through the store when it keeps failing. A folder plugin
    /// cannot be paused that way; it goes on, and keeps dead-lettering.
    fn count_call(&mut self, plugin: &Arc<Plugin>, failed: bool) {
        let auto_pause = &self.parts.auto_pause;
        let tracked = auto_pause.track(
            &mut self.window,
            plugin.label(),
            || Some(Arc::clone(plugin)),
            failed,
        );
        if let Some(failures) = tracked
            && !self.handle.block_on(auto_pause.pause(plugin, failures))
        {
            tracing::error!(
                plugin = plugin.label(),
                "a folder aggregator keeps failing; it cannot be paused and goes on dead-lettering"
            );
        }
    }

    /// Folds one record (the body of [`Processor::process`]).
    fn fold(
        &mut self,
        plugin: &Arc<Plugin>,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()> {
        let plugin = Arc::clone(plugin);
        let Ok(envelope) = Envelope::from_headers(message.headers(), message.key()) else {
            return self.dead_letter(
                &plugin,
                message,
                outbox,
                "undecodable",
                "the record has no readable CloudEvents headers",
            );
        };
        if !plugin
            .manifest()
            .accepts(envelope.noun.as_str(), envelope.verb.as_str())
        {
            return Ok(());
        }
        let event = match crate::pipeline::plugin_event_of(&self.parts.registry, message, &envelope)
        {
            Ok(event) => event,
            Err(reason) => {
                return self.dead_letter(&plugin, message, outbox, "undecodable", &reason);
            }
        };
        let partition = message.partition();
        let time_ms = envelope.time.timestamp_millis();
        let settings = plugin.manifest().aggregate.clone();
        let (slot, current, last_event_ms) = {
            let stores = self.stores.lock().expect("stores lock");
            let store = stores
                .get(&partition)
                .filter(|s| s.owner == self.loop_id)
                .ok_or_else(|| {
                    anyhow::anyhow!("the state of partition {partition} is not restored")
                })?;
            let Some(slot) = store.slot(&settings, &envelope.key, time_ms) else {
                self.pending.late_dropped += 1;
                tracing::debug!(
                    plugin = plugin.label(),
                    key = envelope.key,
                    "late event dropped; its window closed"
                );
                return Ok(());
            };
            let current: Vec<Box<RawValue>> = slot
                .joins
                .iter()
                .filter_map(|joined| store.get(joined).map(|e| e.state.clone()))
                .collect();
            // The latest event folded into any state the event joins: an
            // out-of-order event must not make the result look idle.
            let last_event_ms = slot
                .joins
                .iter()
                .filter_map(|joined| store.get(joined).map(|e| e.last_event_ms))
                .fold(time_ms, i64::max);
            (slot, current, last_event_ms)
        };
        let mut window_config = Vec::new();
        if let Some((start, end)) = slot.window {
            window_config.push(ConfigEntry {
                name: "window.start".to_string(),
                value: start.to_string(),
            });
            window_config.push(ConfigEntry {
                name: "window.end".to_string(),
                value: end.to_string(),
            });
        }
        // The call failed unless it gets through every check below.
        self.call = Some(true);
        // Sessions the event joins are merged first, earliest first.
        let merged: Option<String>;
        let state = if let [earliest, later @ ..] = &current[..]
            && !later.is_empty()
        {
            let mut state = Some(earliest.get().to_string());
            for next in later {
                state = match state {
                    None => Some(next.get().to_string()),
                    Some(earlier) => {
                        match plugin.merge_sessions(
                            &envelope.key,
                            &earlier,
                            next.get(),
                            &window_config,
                        ) {
                            Ok(state) => state,
                            Err(failure) => {
                                tracing::warn!(plugin = plugin.label(), class = failure.class(), reason = %failure, "aggregator failed to merge sessions");
                                return self.dead_letter(
                                    &plugin,
                                    message,
                                    outbox,
                                    failure.class(),
                                    &format!("merging sessions: {failure}"),
                                );
                            }
                        }
                    }
                };
            }
            merged = state;
            merged.as_deref()
        } else {
            current.first().map(|state| state.get())
        };
        let (new_state, emitted) = match plugin.call_configured(&event, state, &window_config) {
            Ok(Output::Aggregate { state, events }) => (state, events),
            Ok(_) => {
                return self.dead_letter(
                    &plugin,
                    message,
                    outbox,
                    "invalid-output",
                    "the plugin is not an aggregator",
                );
            }
            Err(failure) => {
                tracing::warn!(plugin = plugin.label(), class = failure.class(), reason = %failure, "aggregator failed on an event");
                return self.dead_letter(
                    &plugin,
                    message,
                    outbox,
                    failure.class(),
                    &failure.to_string(),
                );
            }
        };
        // Checked once here; the store and the changelog keep it as it is.
        let Ok(new_state) = new_state.map(RawValue::from_string).transpose() else {
            plugin.stats().record_refused_output();
            return self.dead_letter(
                &plugin,
                message,
                outbox,
                "invalid-output",
                "the new state is not JSON",
            );
        };
        // Every output must be valid before anything is written.
        let mut prepared = Vec::with_capacity(emitted.len());
        for (index, out) in emitted.into_iter().enumerate() {
            let mut extensions = crate::trace_context::derived(&tracing::Span::current(), |name| {
                // The first header of that name with a value, as text.
                envelope
                    .extensions
                    .iter()
                    .find_map(|(n, v)| v.as_deref().filter(|_| n == name))
                    .map(|v| String::from_utf8_lossy(v).into_owned().into_bytes())
            });
            extensions.push((
                "causationid".to_string(),
                Some(envelope.id.clone().into_bytes()),
            ));
            extensions.push((
                PLUGIN_HEADER.to_string(),
                Some(plugin.label().as_bytes().to_vec()),
            ));
            let input = EventInput {
                noun: out.noun,
                verb: out.verb,
                key: out.key,
                source: Some(format!("/switchyard/plugin/{}", plugin.manifest().name)),
                time: Some(envelope.time),
                extensions,
                ..EventInput::default()
            };
            // Straight from the plugin's text to Avro (no JSON tree).
            let reason = match self.parts.publisher.prepare_text(input, &out.object) {
                Ok(ready) => {
                    prepared.push(ready);
                    continue;
                }
                Err(PrepareTextError::NotJson(error)) => {
                    format!("event {index} has an object that is not JSON: {error}")
                }
                Err(PrepareTextError::Invalid(error)) => {
                    format!("event {index}: {}", error.detail)
                }
            };
            plugin.stats().record_refused_output();
            return self.dead_letter(&plugin, message, outbox, "invalid-output", &reason);
        }
        // Whatever fails from here is Kafka's, not the plugin's.
        self.call = Some(false);
        for ready in &prepared {
            self.handle.block_on(
                self.parts
                    .kafka
                    .ensure_topic(&ready.topic, TopicKind::Events),
            )?;
            outbox.send(
                &ready.topic,
                None,
                Some(ready.envelope.key.as_bytes()),
                Some(&ready.value),
                ready.envelope.to_headers(),
            )?;
        }
        // Then the state, in memory (undoable) and in the changelog.
        for joined in &slot.joins {
            if *joined != slot.store_key {
                self.write_entry(partition, joined, None, outbox)?;
            }
        }
        let entry = new_state.map(|state| Entry {
            key: envelope.key.clone(),
            state,
            last_event_ms,
            window_start_ms: slot.window.map(|(start, _)| start),
            window_end_ms: slot.window.map(|(_, end)| end),
        });
        self.write_entry(partition, &slot.store_key, entry, outbox)?;
        self.pending.folded += 1;
        self.pending.emitted += prepared.len() as u64;
        self.advance(partition, time_ms, &settings, outbox)?;
        Ok(())
    }

    /// Changes one entry in memory (remembering the old one) and writes it
    /// (or its tombstone) to the changelog.
    fn write_entry(
        &mut self,
        partition: i32,
        store_key: &str,
        entry: Option<Entry>,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()> {
        let value = entry.as_ref().map(serde_json::to_vec).transpose()?;
        outbox.send(
            &self.changelog,
            Some(partition),
            Some(store_key.as_bytes()),
            value.as_deref(),
            OwnedHeaders::new(),
        )?;
        let mut stores = self.stores.lock().expect("stores lock");
        let store = stores
            .get_mut(&partition)
            .filter(|s| s.owner == self.loop_id)
            .ok_or_else(|| anyhow::anyhow!("partition {partition} is not owned by this loop"))?;
        let before = match entry {
            Some(entry) => store.insert(store_key.to_string(), entry),
            None => store.remove(store_key),
        };
        self.undo.push((partition, store_key.to_string(), before));
        Ok(())
    }

    /// Moves stream time forward and deletes what expired.
    fn advance(
        &mut self,
        partition: i32,
        time_ms: i64,
        settings: &crate::plugin::manifest::AggregateSettings,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()> {
        let expired = {
            let mut stores = self.stores.lock().expect("stores lock");
            let Some(store) = stores
                .get_mut(&partition)
                .filter(|s| s.owner == self.loop_id)
            else {
                anyhow::bail!("partition {partition} is not owned by this loop");
            };
            if time_ms <= store.stream_time_ms {
                return Ok(());
            }
            self.undo_stream_time
                .entry(partition)
                .or_insert(store.stream_time_ms);
            store.stream_time_ms = time_ms;
            store.expired(settings)
        };
        for key in expired {
            self.write_entry(partition, &key, None, outbox)?;
            self.pending.expired += 1;
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        plugin: &Plugin,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
        class: &str,
        reason: &str,
    ) -> anyhow::Result<()> {
        self.pending.dead_lettered += 1;
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let topic = self.parts.kafka.config().dead_letter_topic.clone();
        crate::exactly_once::dead_letter(
            outbox,
            &topic,
            message,
            &[
                (dlq::PLUGIN, plugin.label().as_bytes()),
                (dlq::CLASS, class.as_bytes()),
                (dlq::REASON, reason.as_bytes()),
                (dlq::TOPIC, message.topic().as_bytes()),
                (dlq::PARTITION, partition.as_bytes()),
                (dlq::OFFSET, offset.as_bytes()),
            ],
        )?;
        tracing::warn!(
            plugin = plugin.label(),
            class,
            reason,
            "event dead-lettered"
        );
        Ok(())
    }
}
