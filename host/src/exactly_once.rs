//! Consume, process, produce, exactly once: the loop that the routing
//! engine and aggregators share.
//!
//! One consumer group, one thread, one transactional producer. Records are
//! read in `read_committed` mode and handed to a [`Processor`] in
//! partition order; what it writes, and the consumer offsets, go into one
//! Kafka transaction that commits every `commit_interval` (or after
//! `max_records`). A failure aborts the open transaction, the processor
//! undoes what it kept in memory for it, and the records are read again
//! from where the transaction started, so nothing is written twice and
//! nothing is lost. When partitions move to another instance, the open
//! transaction commits first (as Kafka Streams does), and KIP-447 fencing
//! keeps a stalled instance from committing for partitions it lost.
//!
//! A record that fails every time (a destination Kafka refuses, a record
//! too large for where it goes) must not stop its partitions forever: after
//! a failure the loop takes records one per transaction for a while, and a
//! record whose own transaction failed [`POISON_AFTER`] times is handed to
//! [`Processor::set_aside`] (the dead-letter topic) instead, and the loop
//! moves on. A broker that is down fails the set-aside write too, so an
//! outage never dead-letters anything; records wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::SpanContext;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::watch;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::kafka::{Kafka, MAX_TOPIC_RECORD_BYTES};

/// A topic and partition.
pub type Partition = (String, i32);

/// What runs inside the loop.
pub trait Processor: Send + 'static {
    /// Partitions were given to this instance; restore their state here.
    /// Runs before any of their records is processed.
    fn assigned(&mut self, _partitions: &[Partition]) {}
    /// Partitions were taken away, after the open transaction ended.
    fn revoked(&mut self, _partitions: &[Partition]) {}
    /// Handles one record inside the open transaction. An error aborts the
    /// transaction and the record is read again.
    fn process(
        &mut self,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()>;
    /// The open transaction committed.
    fn committed(&mut self) {}
    /// The open transaction aborted: forget what it changed in memory.
    fn aborted(&mut self) {}
    /// Writes a record that keeps failing somewhere it can be dealt with
    /// (the dead-letter topic), inside the open transaction, instead of
    /// processing it. `reason` is the last failure.
    fn set_aside(
        &mut self,
        message: &BorrowedMessage<'_>,
        _outbox: &mut Outbox<'_>,
        reason: &str,
    ) -> anyhow::Result<()> {
        anyhow::bail!(
            "record {}:{}:{} keeps failing ({reason}) and cannot be set aside",
            message.topic(),
            message.partition(),
            message.offset()
        )
    }
}

/// Failed transactions of one record, alone, before it is set aside.
pub const POISON_AFTER: u32 = 5;

/// After a failure, how many records go one per transaction, so the one
/// that fails can be told apart.
const ISOLATE_RECORDS: usize = 1_000;

/// Where a processor writes, inside the open transaction.
pub struct Outbox<'a> {
    producer: &'a ThreadedProducer<DefaultProducerContext>,
}

impl Outbox<'_> {
    /// Queues a record (a null key or value stays null; a null value is a
    /// tombstone), waiting while the producer's queue is full. `partition`
    /// none: by key.
    pub fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<(), KafkaError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// Copies a record to the dead-letter topic with `extra` headers (which say
/// who failed, how and why) inside the open transaction. A record so large
/// that the copy with its extra headers would not fit goes without its
/// value, marked `switchyard-dlq-value-dropped` with the value's size; the
/// headers name where the original is.
pub fn dead_letter(
    outbox: &mut Outbox<'_>,
    topic: &str,
    message: &BorrowedMessage<'_>,
    extra: &[(&str, &[u8])],
) -> Result<(), KafkaError> {
    let header = |name: &str| {
        extra
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default()
    };
    let span = tracing::debug_span!(
        "dead-letter",
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        error.type = %header(crate::pipeline::dlq::CLASS),
        reason = %header(crate::pipeline::dlq::REASON),
    );
    let _entered = span.enter();
    let headers = crate::trace_context::forwarded_headers(message.headers(), &span, extra);
    let size = message.key().map_or(0, <[u8]>::len)
        + message.payload().map_or(0, <[u8]>::len)
        + message.headers().map_or(0, |h| {
            use rdkafka::message::Headers;
            h.iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum()
        })
        + extra.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    // Room for the record's framing and batch overhead.
    if size + 4096 > MAX_TOPIC_RECORD_BYTES {
        let dropped = message.payload().map_or(0, <[u8]>::len).to_string();
        let headers = headers.insert(rdkafka::message::Header {
            key: "switchyard-dlq-value-dropped",
            value: Some(dropped.as_bytes()),
        });
        return outbox.send(topic, None, message.key(), None, headers);
    }
    outbox.send(topic, None, message.key(), message.payload(), headers)
}

/// Settings of one loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// What the loop does to a record, naming its spans (`route`,
    /// `aggregate`).
    pub operation: &'static str,
    /// Consumer group.
    pub group: String,
    /// Topics, or one `^regex`.
    pub topics: Vec<String>,
    /// Commit at least this often.
    pub commit_interval: Duration,
    /// Commit after this many records.
    pub max_records: usize,
    /// Kafka's `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// Topics on which a new group starts at the end (pinned once, when
    /// the group has no offsets there) instead of the beginning.
    pub pin_latest: Vec<String>,
}

/// What a loop is doing, for the API and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoopStatus {
    /// Consumer group.
    pub group: String,
    /// Whether the loop runs.
    pub running: bool,
    /// Partitions assigned to this instance, as `topic:partition`.
    pub assigned: Vec<String>,
    /// Transactions committed.
    pub transactions_committed: u64,
    /// Transactions aborted (their records were read again).
    pub transactions_aborted: u64,
    /// Records processed in committed transactions.
    pub records: u64,
    /// Seconds spent committing transactions (sending the offsets and
    /// waiting for the commit), summed; with `transactions_committed`, the
    /// mean commit latency.
    pub commit_seconds: f64,
    /// The longest commit so far, in seconds.
    pub commit_seconds_max: f64,
    /// Records not yet processed per assigned `topic:partition`, from the
    /// Kafka client's statistics (every few seconds).
    pub lag: BTreeMap<String, i64>,
    /// Last Kafka error, while the loop is retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How long the commit in progress has taken, in seconds, once that is
    /// longer than a commit can legitimately take (see [`Loop::status`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled_seconds: Option<f64>,
    /// When the commit in progress began.
    #[serde(skip)]
    pub(crate) committing_since: Option<Instant>,
}

/// A running loop.
pub struct Loop {
    status: Arc<Mutex<LoopStatus>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// A commit running longer than this is stalled.
    stall_after: Duration,
    /// Whether the stall in progress was logged.
    stall_logged: std::sync::atomic::AtomicBool,
}

impl Loop {
    /// Starts the loop on a thread of its own; it stops when `shutdown_rx`
    /// turns true, after committing what it has done.
    pub fn start<P: Processor>(
        kafka: Arc<Kafka>,
        config: LoopConfig,
        processor: Arc<Mutex<P>>,
        shutdown_rx: watch::Receiver<bool>,
    ) -> Arc<Loop> {
        let status = Arc::new(Mutex::new(LoopStatus {
            group: config.group.clone(),
            running: true,
            ..LoopStatus::default()
        }));
        let thread_status = Arc::clone(&status);
        let stall_after = config.transaction_timeout * 2;
        let name = format!("eos-{}", config.group);
        let thread = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || {
                run(&kafka, &config, &processor, &thread_status, &shutdown_rx);
                thread_status.lock().expect("status lock").running = false;
            })
            .expect("the loop thread starts");
        Arc::new(Loop {
            status,
            thread: Mutex::new(Some(thread)),
            stall_after,
            stall_logged: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The loop's status now.
    ///
    /// Also the loop's watchdog. Every transactional call has a timeout
    /// (half the transaction timeout), but librdkafka has been seen to
    /// block in `send_offsets_to_transaction` well past it when the group
    /// coordinator moves. The thread cannot be interrupted from outside;
    /// what can be done is to say so: one call of a commit that has run
    /// past twice the transaction timeout (by then the broker has aborted
    /// the transaction anyway) shows as `stalled_seconds`, is logged once,
    /// and turns `/healthz` unhealthy, so a supervisor restarts the
    /// instance. Retries of calls that time out (a broker that is down)
    /// are not a stall. No record is lost: the Kafka client leaves the
    /// group once the loop has not polled for `max.poll.interval.ms` (5
    /// minutes), its partitions move to the other instances, and this
    /// member's commits are fenced.
    pub fn status(&self) -> LoopStatus {
        let mut status = self.status.lock().expect("status lock").clone();
        let stalled = stalled_for(status.committing_since, Instant::now(), self.stall_after);
        status.stalled_seconds = stalled.map(|took| took.as_secs_f64());
        match stalled {
            Some(took) => {
                if !self
                    .stall_logged
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::error!(
                        group = status.group,
                        seconds = took.as_secs(),
                        "a transaction commit is stalled in the kafka client; restart this instance (its partitions move to the others meanwhile)"
                    );
                }
            }
            None => self
                .stall_logged
                .store(false, std::sync::atomic::Ordering::Relaxed),
        }
        status
    }

    /// Waits for the loop thread to end (after shutdown was signalled).
    pub fn join(&self) {
        let thread = self.thread.lock().expect("thread lock").take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The open transaction and what it holds.
struct Transaction {
    /// The loop's consumer group, for logs.
    group: String,
    /// The loop's operation, naming the commit's span.
    operation: &'static str,
    producer: ThreadedProducer<DefaultProducerContext>,
    open: bool,
    started: Instant,
    records: usize,
    /// Offset to commit per partition (last read + 1).
    next: BTreeMap<Partition, i64>,
    /// First offset read per partition, where to go back to on abort.
    first: BTreeMap<Partition, i64>,
    /// The spans of the records in the transaction (the first
    /// [`MAX_LINKS`]), linked from the commit's span.
    links: Vec<SpanContext>,
}

/// Most record spans a commit's span links to.
const MAX_LINKS: usize = 128;

/// The group generation that the current assignment belongs to, taken
/// when the partitions were assigned. Commits name this generation rather
/// than the consumer's membership at commit time: a member that was thrown
/// out of the group has no generation (-1) and no member id, and Kafka
/// accepts a transactional offset commit without them unchecked, so a
/// zombie committing with its *current* metadata would not be fenced.
type Generation = Arc<Mutex<Option<ConsumerGroupMetadata>>>;

/// The committed offset of each assigned partition, read when it was
/// assigned: no record below it may be processed in this assignment.
///
/// The consumer should start each partition at exactly this offset, but
/// librdkafka (2.12) can start one at `auto.offset.reset` instead: when an
/// offset fetch meets a transaction still open on the partition (an
/// instance that died mid-transaction) while the assignment changes again,
/// it requeues the partition with no offset. Starting from the earliest
/// record would fold everything again into restored state; the loop checks
/// every record against this floor and seeks forward instead.
type Floors = Arc<Mutex<BTreeMap<Partition, i64>>>;

/// Ends the open transaction before partitions are taken away, and tells
/// the processor about assignments.
struct RebalanceHook<P: Processor> {
    transaction: Arc<Mutex<Option<Transaction>>>,
    generation: Generation,
    floors: Floors,
    processor: Arc<Mutex<P>>,
    status: Arc<Mutex<LoopStatus>>,
    timeout: Duration,
    /// The host's stop signal: the consumer's close, when the loop ends,
    /// can still hand it partitions.
    stopping: watch::Receiver<bool>,
}

impl<P: Processor> ClientContext for RebalanceHook<P> {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut status = self.status.lock().expect("status lock");
        let mut lag = BTreeMap::new();
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                let name = format!("{topic}:{partition}");
                if *partition < 0 || !status.assigned.contains(&name) {
                    continue;
                }
                // In `read_committed` mode the end that counts is the last
                // stable offset; `app_offset` is the next record to process.
                let end = if stats.ls_offset >= 0 {
                    stats.ls_offset
                } else {
                    stats.hi_offset
                };
                if end >= 0 && stats.app_offset >= 0 {
                    lag.insert(name, (end - stats.app_offset).max(0));
                } else if stats.consumer_lag >= 0 {
                    lag.insert(name, stats.consumer_lag);
                }
            }
        }
        status.lag = lag;
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl<P: Processor> ConsumerContext for RebalanceHook<P> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut guard = self.transaction.lock().expect("transaction lock");
            let mut processor = self.processor.lock().expect("processor lock");
            let generation = self.generation.lock().expect("generation lock").take();
            if let Some(transaction) = guard.as_mut()
                && transaction.open
            {
                // The records of revoked partitions are either committed now
                // or left to the next owner; never half. Partitions that
                // were lost (this member was thrown out of the group) may
                // already be someone else's: never commit for them.
                let committed = if consumer.assignment_lost() {
                    Err(anyhow::anyhow!(
                        "the assignment was lost (this instance left the group)"
                    ))
                } else {
                    commit_watched(&self.status, transaction, generation.as_ref(), self.timeout)
                };
                match committed {
                    Ok(done) => {
                        processor.committed();
                        count(&self.status, Some(done));
                    }
                    Err(error) => {
                        tracing::warn!(group = %self.status.lock().expect("status lock").group, %error, "transaction aborted at a rebalance; the next owner reads its records again");
                        let usable = abort(transaction, self.timeout);
                        processor.aborted();
                        count(&self.status, None);
                        if !usable {
                            *guard = None;
                        }
                    }
                }
            }
            processor.revoked(&partitions_of(revoked));
            self.floors.lock().expect("floors lock").clear();
            self.status.lock().expect("status lock").assigned.clear();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) if *self.stopping.borrow() => {
                // A group join that completes while the consumer closes:
                // restoring state and announcing ownership now would only
                // hold up the stop (and the host's runtime, which the
                // announcement needs, is going away). Nothing is read from
                // these partitions; the close hands them back at once.
                tracing::debug!(
                    group = self.status.lock().expect("status lock").group,
                    partitions = assigned.count(),
                    "partitions assigned while stopping; left to the next owner"
                );
            }
            Rebalance::Assign(assigned) => {
                *self.generation.lock().expect("generation lock") = consumer.group_metadata();
                // Read in `read_committed` mode, this waits for a dead
                // instance's open transaction to end, as the consumer's own
                // fetch of the start offsets does. The broker aborts it
                // after the transaction timeout plus its clean-up interval
                // (10 s by default); `timeout` is half the transaction
                // timeout, so this waits up to three transaction timeouts.
                let mut floors = BTreeMap::new();
                match consumer.committed_offsets((*assigned).clone(), self.timeout * 6) {
                    Ok(committed) => {
                        for element in committed.elements() {
                            if let Offset::Offset(offset) = element.offset() {
                                floors.insert(
                                    (element.topic().to_string(), element.partition()),
                                    offset,
                                );
                            }
                        }
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "cannot read the committed offsets of assigned partitions; trusting the consumer's start"
                    ),
                }
                *self.floors.lock().expect("floors lock") = floors;
                let partitions = partitions_of(assigned);
                self.processor
                    .lock()
                    .expect("processor lock")
                    .assigned(&partitions);
                let mut status = self.status.lock().expect("status lock");
                status.assigned = partitions
                    .iter()
                    .map(|(topic, partition)| format!("{topic}:{partition}"))
                    .collect();
                tracing::info!(
                    group = status.group,
                    partitions = status.assigned.len(),
                    "partitions assigned"
                );
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// Counts a committed (with its records) or aborted transaction.
fn count(status: &Mutex<LoopStatus>, committed: Option<Committed>) {
    let mut status = status.lock().expect("status lock");
    match committed {
        Some(Committed { records, took }) => {
            status.transactions_committed += 1;
            status.records += records as u64;
            status.commit_seconds += took.as_secs_f64();
            status.commit_seconds_max = status.commit_seconds_max.max(took.as_secs_f64());
            status.last_error = None;
        }
        None => status.transactions_aborted += 1,
    }
}

fn new_producer(
    kafka: &Kafka,
    config: &LoopConfig,
) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.config().bootstrap_servers)
        .set(
            "client.id",
            format!("{}-{}", kafka.config().client_id, config.group),
        )
        // A fresh id per process: KIP-447 fences by consumer group
        // generation, so ids need not survive restarts.
        .set(
            "transactional.id",
            format!("{}-{}", config.group, uuid::Uuid::now_v7()),
        )
        .set(
            "transaction.timeout.ms",
            config.transaction_timeout.as_millis().to_string(),
        )
        .set("enable.idempotence", "true")
        // Fewer, fuller batches: with the broker on the same two cores,
        // its per-request work was as much CPU as the host's own. 20 ms
        // (against 5) cut the broker's CPU by about a fifth and raised the
        // benchmark's aggregation throughput by about 15%; 50 ms made
        // every commit wait out the linger. Before a commit, the wait for
        // deliveries nudges the batches to go early (`wait_delivered`;
        // not always heeded: a commit may still wait up to the linger).
        .set("linger.ms", "20")
        // A transaction begun right after a commit sends its offsets while
        // the broker still completes that commit: the broker answers
        // "concurrent transactions" and librdkafka retries after
        // `retry.backoff.ms`, 100 ms by default. The routing loop, which
        // fills a transaction in a few tens of ms, spent 26 ms per commit
        // sending offsets (most of its commit time); at 10 ms, 8 ms.
        .set("retry.backoff.ms", "10")
        .set("retry.backoff.max.ms", "100")
        .set("partitioner", "murmur2_random")
        .set("message.max.bytes", MAX_TOPIC_RECORD_BYTES.to_string())
        .set("compression.type", &kafka.config().compression)
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("reconnect.backoff.max.ms", "1000")
        .create()?;
    // Connected first, then registered: `init_transactions` on a producer
    // with no broker connection up yet finds "no brokers available for
    // transactions" and librdkafka tries again only after 500 ms. With the
    // loops of an aggregator starting together, one of them regularly began
    // (or joined its group) half a second after the others; a metadata
    // request first brings the connection up, and registering takes about
    // 60 ms. Its failure (no broker) is `init_transactions`'s to report.
    let _ = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(5));
    producer.init_transactions(Duration::from_secs(30))?;
    Ok(producer)
}

fn run<P: Processor>(
    kafka: &Kafka,
    config: &LoopConfig,
    processor: &Arc<Mutex<P>>,
    status: &Arc<Mutex<LoopStatus>>,
    shutdown_rx: &watch::Receiver<bool>,
) {
    let timeout = config.transaction_timeout / 2;
    let transaction: Arc<Mutex<Option<Transaction>>> = Arc::new(Mutex::new(None));
    let generation: Generation = Arc::new(Mutex::new(None));
    let floors: Floors = Arc::new(Mutex::new(BTreeMap::new()));
    let mut consumer_config = kafka.consumer_config(&config.group);
    consumer_config
        // New topics matching a pattern are found by this refresh.
        .set("topic.metadata.refresh.interval.ms", "3000")
        .set("max.poll.interval.ms", "300000")
        // A crashed instance's partitions move after 10 s rather than
        // librdkafka's default 45 s.
        .set("session.timeout.ms", "10000")
        // A member learns of a rebalance from its next heartbeat; the
        // others stop processing until it rejoins. At 2 s, a loop of an
        // aggregator that joined a moment after its sibling stopped both
        // for about 2.4 s at start-up; at 500 ms the wait is a fraction.
        .set("heartbeat.interval.ms", "500")
        // Consumer lag for the metrics endpoint.
        .set("statistics.interval.ms", "5000")
        // A loop takes records one at a time and commits every 100 ms or
        // so; 4 MB of prefetched records keeps it busy on a catching-up
        // partition set and bounds the memory of each loop.
        .set("queued.max.messages.kbytes", "4096");
    if !config.pin_latest.is_empty()
        && let Err(error) = crate::pipeline::pin_latest(&consumer_config, &config.pin_latest)
    {
        tracing::warn!(group = config.group, %error, "cannot pin the group's start offsets");
    }
    let hook = RebalanceHook {
        transaction: Arc::clone(&transaction),
        generation: Arc::clone(&generation),
        floors: Arc::clone(&floors),
        processor: Arc::clone(processor),
        status: Arc::clone(status),
        timeout,
        stopping: shutdown_rx.clone(),
    };
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    let consumer: BaseConsumer<RebalanceHook<P>> = match consumer_config
        .create_with_context(hook)
        .and_then(|consumer: BaseConsumer<RebalanceHook<P>>| {
            consumer.subscribe(&topics)?;
            Ok(consumer)
        }) {
        Ok(consumer) => consumer,
        Err(error) => {
            note_error(status, &format!("cannot start the consumer: {error}"));
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    let pause = |backoff: &mut Duration| {
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
    };
    // Records left to take one per transaction, the record of the open
    // single-record transaction, and the record suspected of failing with
    // its count of failed transactions.
    let mut isolate_left = 0_usize;
    let mut last_record: Option<(Partition, i64)> = None;
    let mut suspect: Option<((Partition, i64), u32)> = None;
    let mut last_failure = String::new();
    let failed = |isolate_left: &mut usize,
                  last_record: &mut Option<(Partition, i64)>,
                  suspect: &mut Option<((Partition, i64), u32)>| {
        if *isolate_left > 0
            && let Some(record) = last_record.take()
        {
            match suspect {
                Some((known, count)) if *known == record => *count += 1,
                _ => *suspect = Some((record, 1)),
            }
        }
        *isolate_left = ISOLATE_RECORDS;
        *last_record = None;
    };
    loop {
        let stopping = *shutdown_rx.borrow();
        let mut guard = transaction.lock().expect("transaction lock");
        if guard.is_none() {
            match new_producer(kafka, config) {
                Ok(producer) => {
                    *guard = Some(Transaction {
                        group: config.group.clone(),
                        operation: config.operation,
                        producer,
                        open: false,
                        started: Instant::now(),
                        records: 0,
                        next: BTreeMap::new(),
                        first: BTreeMap::new(),
                        links: Vec::new(),
                    });
                }
                Err(error) => {
                    drop(guard);
                    note_error(
                        status,
                        &format!("cannot start a transactional producer: {error}"),
                    );
                    if stopping {
                        break;
                    }
                    pause(&mut backoff);
                    continue;
                }
            }
        }
        let current = guard.as_mut().expect("producer present");
        let due = current.open
            && (stopping
                || current.records
                    >= if isolate_left > 0 {
                        1
                    } else {
                        config.max_records
                    }
                || current.started.elapsed() >= config.commit_interval);
        if due {
            let committed = if consumer.assignment_lost() {
                Err(anyhow::anyhow!(
                    "the assignment was lost (this instance left the group)"
                ))
            } else {
                let generation = generation.lock().expect("generation lock");
                commit_watched(status, current, generation.as_ref(), timeout)
            };
            match committed {
                Ok(done) => {
                    let records = done.records;
                    processor.lock().expect("processor lock").committed();
                    count(status, Some(done));
                    backoff = Duration::from_millis(200);
                    isolate_left = isolate_left.saturating_sub(records);
                    if suspect.as_ref().map(|(record, _)| record) == last_record.as_ref() {
                        suspect = None;
                    }
                    last_record = None;
                }
                Err(error) => {
                    last_failure = format!("cannot commit a transaction: {error:#}");
                    note_error(status, &last_failure);
                    failed(&mut isolate_left, &mut last_record, &mut suspect);
                    recover(&mut guard, &consumer, processor, timeout, status);
                    drop(guard);
                    if stopping {
                        break;
                    }
                    pause(&mut backoff);
                    continue;
                }
            }
        }
        if stopping {
            break;
        }
        drop(guard);
        // Polled without the lock: a rebalance runs the hook from here.
        let Some(result) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(group = config.group, %error, "consumer error");
                continue;
            }
        };
        let mut guard = transaction.lock().expect("transaction lock");
        let Some(current) = guard.as_mut() else {
            continue;
        };
        let partition = (message.topic().to_string(), message.partition());
        let floor = floors.lock().expect("floors lock").get(&partition).copied();
        if let Some(floor) = floor
            && message.offset() < floor
        {
            tracing::warn!(
                group = config.group,
                topic = partition.0,
                partition = partition.1,
                offset = message.offset(),
                committed = floor,
                "the consumer went below the committed offset; skipping to it"
            );
            drop(guard);
            if let Err(error) =
                consumer.seek(&partition.0, partition.1, Offset::Offset(floor), timeout)
            {
                tracing::warn!(topic = partition.0, partition = partition.1, %error, "cannot seek to the committed offset");
            }
            continue;
        }
        let this = (partition.clone(), message.offset());
        let poisoned = suspect
            .as_ref()
            .is_some_and(|(record, count)| *record == this && *count >= POISON_AFTER);
        let span = crate::trace_context::record_span(config.operation, &config.group, &message);
        let entered = span.enter();
        let outcome = (|| -> anyhow::Result<()> {
            if !current.open {
                current.producer.begin_transaction()?;
                current.open = true;
                current.started = Instant::now();
                current.records = 0;
            }
            let mut outbox = Outbox {
                producer: &current.producer,
            };
            let mut processor = processor.lock().expect("processor lock");
            if poisoned {
                tracing::error!(
                    group = config.group,
                    topic = this.0.0,
                    partition = this.0.1,
                    offset = this.1,
                    reason = last_failure,
                    "a record keeps failing; setting it aside"
                );
                processor.set_aside(&message, &mut outbox, &last_failure)
            } else {
                processor.process(&message, &mut outbox)
            }
        })();
        if isolate_left > 0 {
            last_record = Some(this);
        }
        // Even a failed record is where to come back to.
        current
            .first
            .entry(partition.clone())
            .or_insert(message.offset());
        drop(entered);
        match outcome {
            Ok(()) => {
                current.next.insert(partition, message.offset() + 1);
                current.records += 1;
                let context = crate::trace_context::span_context(&span);
                if context.is_valid() && current.links.len() < MAX_LINKS {
                    current.links.push(context);
                }
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", "aborted");
                last_failure = format!("cannot process a record: {error:#}");
                note_error(status, &last_failure);
                failed(&mut isolate_left, &mut last_record, &mut suspect);
                recover(&mut guard, &consumer, processor, timeout, status);
                drop(guard);
                pause(&mut backoff);
            }
        }
    }
    tracing::info!(group = config.group, "exactly-once loop stopped");
}

fn note_error(status: &Mutex<LoopStatus>, error: &str) {
    let mut status = status.lock().expect("status lock");
    tracing::error!(group = status.group, error, "retrying");
    status.last_error = Some(error.to_string());
}

/// Aborts the open transaction and rewinds to its first records; drops the
/// producer when it cannot abort (it was fenced or broke), so a new one is
/// made.
fn recover<P: Processor>(
    guard: &mut Option<Transaction>,
    consumer: &BaseConsumer<RebalanceHook<P>>,
    processor: &Mutex<P>,
    timeout: Duration,
    status: &Mutex<LoopStatus>,
) {
    let Some(transaction) = guard.as_mut() else {
        return;
    };
    let first = std::mem::take(&mut transaction.first);
    tracing::debug!(group = transaction.group, first = ?first, "transaction aborted; rewinding");
    let usable = abort(transaction, timeout);
    processor.lock().expect("processor lock").aborted();
    count(status, None);
    if let Ok(assigned) = consumer.assignment() {
        for ((topic, partition), offset) in first {
            if assigned.find_partition(&topic, partition).is_some()
                && let Err(error) =
                    consumer.seek(&topic, partition, Offset::Offset(offset), timeout)
            {
                tracing::warn!(topic, partition, %error, "cannot rewind a partition");
            }
        }
    }
    if !usable {
        *guard = None;
    }
}

/// Aborts; returns whether the producer can go on.
fn abort(transaction: &mut Transaction, timeout: Duration) -> bool {
    transaction.first.clear();
    transaction.next.clear();
    transaction.links.clear();
    if !transaction.open {
        return true;
    }
    transaction.open = false;
    match transaction.producer.abort_transaction(timeout) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "cannot abort a transaction; starting a new producer");
            false
        }
    }
}

/// Runs a transactional call again while Kafka says its failure is
/// retriable (a timeout, a coordinator moving), up to a few times.
fn retrying(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempts = 0;
    loop {
        match call() {
            Err(KafkaError::Transaction(error)) if error.is_retriable() && attempts < 12 => {
                attempts += 1;
                tracing::warn!(%error, attempts, "transactional call failed; retrying");
            }
            other => return other,
        }
    }
}

/// Waits until the broker acknowledged every record of the transaction (the
/// producer's own polling thread serves the acknowledgements), or until
/// `timeout`.
///
/// rust-rdkafka's `commit_transaction` flushes first, and its flush, when
/// anything is still in flight, polls for a fixed 100 ms before it looks
/// again: every commit of a busy loop took 100 ms more than the broker
/// needed (`bench/COMPARISON.md`: commits were most of the routing engine's
/// wall time). Waiting here in short steps makes that flush find nothing
/// left to do.
fn wait_delivered(producer: &ThreadedProducer<DefaultProducerContext>, timeout: Duration) {
    let started = Instant::now();
    while producer.in_flight_count() > 0 && started.elapsed() < timeout {
        // A flush that returns at once still wakes the broker threads
        // with linger.ms waived while it runs.
        let _ = producer.flush(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A committed transaction: its records, and how long the commit took.
#[derive(Debug, Clone, Copy)]
struct Committed {
    records: usize,
    took: Duration,
}

/// Commits the open transaction with its offsets, in the name of the group
/// generation the partitions were assigned in; returns its record count
/// and how long the commit took.
/// How long a commit that began at `since` has been stalled: `None` unless
/// it is still running at `now` and has run longer than `after`.
fn stalled_for(since: Option<Instant>, now: Instant, after: Duration) -> Option<Duration> {
    let took = now.saturating_duration_since(since?);
    (took > after).then_some(took)
}

/// Commits, with the start of the commit in the loop's status for the
/// watchdog ([`Loop::status`]).
fn commit_watched(
    status: &Mutex<LoopStatus>,
    transaction: &mut Transaction,
    generation: Option<&ConsumerGroupMetadata>,
    timeout: Duration,
) -> anyhow::Result<Committed> {
    // Each call into the Kafka client starts the clock again: retries of
    // a call that keeps timing out are slow, not stuck.
    let mark = || status.lock().expect("status lock").committing_since = Some(Instant::now());
    let committed = commit(transaction, generation, timeout, &mark);
    status.lock().expect("status lock").committing_since = None;
    committed
}

fn commit(
    transaction: &mut Transaction,
    generation: Option<&ConsumerGroupMetadata>,
    timeout: Duration,
    mark: &dyn Fn(),
) -> anyhow::Result<Committed> {
    // One span for the commit, linked to every record span it commits; a
    // transaction of one trace's records also becomes part of that trace.
    let span = tracing::debug_span!(
        "commit",
        otel.name = %format_args!("{} commit", transaction.operation),
        messaging.consumer.group.name = transaction.group,
        records = transaction.records,
        otel.status_code = Empty,
        trace_id = Empty,
    );
    let links = std::mem::take(&mut transaction.links);
    let one_trace = links
        .first()
        .filter(|first| links.iter().all(|l| l.trace_id() == first.trace_id()));
    let parent = one_trace.map(|first| {
        use opentelemetry::trace::TraceContextExt;
        opentelemetry::Context::new().with_remote_span_context(first.clone())
    });
    crate::trace_context::continue_trace(&span, parent);
    for link in links {
        span.add_link(link);
    }
    let _entered = span.enter();
    let started = Instant::now();
    let committed = commit_unspanned(transaction, generation, timeout, mark);
    if committed.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    committed.map(|records| Committed {
        records,
        took: started.elapsed(),
    })
}

fn commit_unspanned(
    transaction: &mut Transaction,
    generation: Option<&ConsumerGroupMetadata>,
    timeout: Duration,
    mark: &dyn Fn(),
) -> anyhow::Result<usize> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), next) in &transaction.next {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    let started = Instant::now();
    if offsets.count() > 0 {
        let metadata = generation
            .ok_or_else(|| anyhow::anyhow!("no partitions are assigned to this instance now"))?;
        retrying(|| {
            mark();
            transaction
                .producer
                .send_offsets_to_transaction(&offsets, metadata, timeout)
        })?;
    }
    // A commit that timed out goes on in the background and may still
    // succeed: aborting it then and reading the records again would write
    // them twice, so a retriable failure is retried, never abandoned.
    let offsets_sent = started.elapsed();
    mark();
    wait_delivered(&transaction.producer, timeout);
    retrying(|| {
        mark();
        transaction.producer.commit_transaction(timeout)
    })?;
    tracing::debug!(
        group = transaction.group,
        first = ?transaction.first,
        next = ?transaction.next,
        records = transaction.records,
        offsets_ms = offsets_sent.as_millis() as u64,
        commit_ms = (started.elapsed() - offsets_sent).as_millis() as u64,
        "transaction committed"
    );
    transaction.open = false;
    transaction.first.clear();
    transaction.next.clear();
    transaction.links.clear();
    Ok(std::mem::replace(&mut transaction.records, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_stalled_only_while_running_past_the_limit() {
        let began = Instant::now();
        let after = Duration::from_secs(60);
        assert_eq!(stalled_for(None, began + after * 2, after), None);
        assert_eq!(stalled_for(Some(began), began + after, after), None);
        assert_eq!(
            stalled_for(Some(began), began + after + Duration::from_secs(1), after),
            Some(after + Duration::from_secs(1))
        );
        // A clock read before the commit began is not a stall.
        assert_eq!(
            stalled_for(Some(began + after * 3), began + after * 2, after),
            None
        );
    }
}
