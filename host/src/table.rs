//! A global table: a single-partition compacted topic that every host
//! instance reads from the beginning and keeps applying, like a Kafka
//! Streams GlobalKTable. Writes go to Kafka first and return once this
//! instance has applied them, so a caller reads its own write.
//!
//! The records' meaning belongs to the owner of the table, which hands in a
//! function that applies one record (key, value or tombstone) to its state.
//!
//! A checked write ([`GlobalTable::write_checked`]) writes only if a
//! condition holds on the table as every instance's earlier writes left it,
//! as `If-Match` needs. All instances writing a table share one Kafka
//! transactional id: each checked write opens a transaction, reads the
//! table to its end, checks, writes and commits. A writer that starts
//! (`init_transactions`) fences every other, aborting its open transaction
//! and failing its commit; so a commit that succeeds was checked against
//! everything committed before it, and a fenced writer starts again and
//! checks again. Concurrent writers through many instances cost retries,
//! never a lost update.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::error::{ApiError, Code};
use crate::kafka::{Kafka, Landed, TopicKind};

/// How long a start or a write waits for this instance to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

/// How long the reader waits for a record before it looks at its position:
/// transaction markers take offsets but are never delivered, so only the
/// position says that the reader is past them.
const POLL: Duration = Duration::from_millis(50);

/// How long a checked write's transaction may stay open before the broker
/// aborts it. Readers see committed records only, so a writer that dies in
/// the middle of a write holds back every instance's view of the table for
/// at most this long (another writer's start aborts it at once).
const WRITER_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one transactional call of a checked write may take.
const WRITER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a checked write starts again after another instance's
/// writer fenced it.
const CHECKED_ATTEMPTS: u32 = 5;

/// How long a checked write may take in all, retries included, before it
/// gives up (a broker that is down).
const CHECKED_DEADLINE: Duration = Duration::from_secs(10);

/// Applies one record at its offset; `None` is a tombstone. An error is logged with the
/// record's offset and the record skipped.
pub type Apply = Box<dyn FnMut(&str, Option<&[u8]>, i64) -> anyhow::Result<()> + Send>;

/// See the module docs.
pub struct GlobalTable {
    kafka: Arc<Kafka>,
    topic: String,
    /// Position of the reader: every record before it is applied.
    applied_rx: watch::Receiver<i64>,
    /// The transactional producer of checked writes, made on first use
    /// and again after another instance fenced it. Held for the whole of
    /// a checked write, so this instance's checked writes go one at a time.
    writer: tokio::sync::Mutex<Option<Arc<FutureProducer>>>,
}

/// Why one attempt of a checked write did not write.
enum Attempt {
    /// The condition does not hold: the caller's answer.
    Refused(ApiError),
    /// Kafka failed or another writer fenced this one: start again.
    Lost(anyhow::Error),
    /// The commit itself failed or timed out: the record may be written.
    Unsure(anyhow::Error),
}

impl GlobalTable {
    /// Creates the topic if needed, applies it to its end, and keeps
    /// applying new records on a thread of its own.
    pub async fn start(kafka: Arc<Kafka>, topic: &str, mut apply: Apply) -> anyhow::Result<Self> {
        kafka.ensure_topic(topic, TopicKind::CompactedState).await?;
        let (consumer, high) =
            open_reader(&kafka, &format!("switchyard-table-{topic}"), topic).await?;
        let (applied_tx, applied_rx) = watch::channel(0_i64);
        let name = topic.to_string();
        std::thread::Builder::new()
            .name(format!("table-{topic}"))
            .spawn(move || {
                loop {
                    if applied_tx.is_closed() {
                        return;
                    }
                    match consumer.poll(POLL) {
                        None => {}
                        Some(Err(error)) => {
                            tracing::warn!(topic = name, %error, "cannot read the table; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                            continue;
                        }
                        Some(Ok(message)) => {
                            let applied = match message.key().map(std::str::from_utf8) {
                                Some(Ok(key)) => apply(key, message.payload(), message.offset()),
                                _ => Err(anyhow::anyhow!("record key is missing or not UTF-8")),
                            };
                            if let Err(error) = applied {
                                tracing::warn!(topic = name, offset = message.offset(), %error, "skipped a table record");
                            }
                            advance(&applied_tx, message.offset() + 1);
                        }
                    }
                    if let Some(position) = position_of(&consumer, &name) {
                        advance(&applied_tx, position);
                    }
                }
            })?;
        let table = GlobalTable {
            kafka,
            topic: topic.to_string(),
            applied_rx,
            writer: tokio::sync::Mutex::new(None),
        };
        table.wait_applied(high).await?;
        Ok(table)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    async fn wait_applied(&self, offset: i64) -> anyhow::Result<()> {
        let mut applied = self.applied_rx.clone();
        tokio::time::timeout(CATCH_UP, applied.wait_for(|next| *next >= offset))
            .await
            .with_context(|| format!("table `{}` did not catch up in time", self.topic))?
            .with_context(|| format!("table `{}` reader stopped", self.topic))?;
        Ok(())
    }

    /// Writes a record (or a tombstone) and waits until this instance has
    /// applied it. Returns the record's offset.
    pub async fn write(&self, key: &str, value: Option<&[u8]>) -> Result<i64, ApiError> {
        let landed: Landed = match value {
            Some(value) => {
                self.kafka
                    .produce(&self.topic, key.as_bytes(), value, OwnedHeaders::new())
                    .await?
            }
            None => {
                self.kafka
                    .produce_tombstone(&self.topic, key.as_bytes())
                    .await?
            }
        };
        self.wait_applied(landed.offset + 1)
            .await
            .map_err(|error| ApiError::internal(&format!("{error:#}")))?;
        Ok(landed.offset)
    }

    /// Writes a record (or a tombstone) if `check` holds on the table as
    /// every earlier write, through any instance, left it (see the module
    /// docs), and waits until this instance has applied it. Returns the
    /// record's offset, or `check`'s refusal.
    pub async fn write_checked(
        &self,
        key: &str,
        value: Option<&[u8]>,
        check: impl Fn() -> Result<(), ApiError>,
    ) -> Result<i64, ApiError> {
        let deadline = tokio::time::Instant::now() + CHECKED_DEADLINE;
        let mut writer = self.writer.lock().await;
        let mut attempt = 0;
        // Whether an earlier attempt may have committed after all (its
        // commit timed out): then a refusal may be that write's own doing.
        let mut unsure = false;
        let offset = loop {
            attempt += 1;
            let committing = AtomicBool::new(false);
            let attempted = tokio::time::timeout_at(
                deadline,
                self.attempt_checked(&mut writer, key, value, &check, &committing),
            )
            .await
            .unwrap_or_else(|_| {
                let error = anyhow::anyhow!("no answer within {CHECKED_DEADLINE:?}");
                Err(if committing.load(Ordering::Relaxed) {
                    Attempt::Unsure(error)
                } else {
                    Attempt::Lost(error)
                })
            });
            let error = match attempted {
                Ok(offset) => break offset,
                Err(Attempt::Refused(refusal)) if unsure => {
                    return Err(refusal.with_stored(crate::error::Stored::Maybe));
                }
                Err(Attempt::Refused(refusal)) => return Err(refusal),
                Err(Attempt::Lost(error)) => error,
                Err(Attempt::Unsure(error)) => {
                    unsure = true;
                    error
                }
            };
            // A fenced or failed producer cannot be used again. Its drop
            // flushes and destroys a Kafka client: not on an async worker.
            if let Some(lost) = writer.take() {
                tokio::task::spawn_blocking(move || drop(lost));
            }
            tracing::warn!(
                topic = self.topic,
                key,
                attempt,
                error = format!("{error:#}"),
                "checked table write did not commit; starting again"
            );
            let out_of_time = tokio::time::Instant::now() >= deadline;
            if !out_of_time && attempt < CHECKED_ATTEMPTS {
                // Most often another instance's writer fenced this one: its
                // write may already decide the answer. Catching up and
                // checking without a transaction refuses without fencing
                // anyone; a short random pause keeps two writers from
                // fencing each other in turn.
                if let Ok(end) = end_offset_within(&self.kafka, &self.topic, 2).await
                    && tokio::time::timeout_at(deadline, self.wait_applied(end))
                        .await
                        .is_ok_and(|applied| applied.is_ok())
                    && let Err(refusal) = check()
                {
                    return Err(if unsure {
                        refusal.with_stored(crate::error::Stored::Maybe)
                    } else {
                        refusal
                    });
                }
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.subsec_nanos() % 200);
                tokio::time::sleep(Duration::from_millis(20 + u64::from(jitter))).await;
                continue;
            }
            let (stored, outcome) = if unsure {
                (
                    crate::error::Stored::Maybe,
                    "it may have been applied: read it back before retrying",
                )
            } else {
                (crate::error::Stored::No, "nothing was changed: retry")
            };
            return Err(ApiError::new(
                Code::KafkaUnavailable,
                format!(
                    "the write to `{}` did not commit after {attempt} attempts ({error:#}); {outcome}",
                    self.topic
                ),
            )
            .with_stored(stored)
            .with_retry_after(Duration::from_secs(1)));
        };
        // Applied before the next write of this instance begins.
        self.wait_applied(offset + 1)
            .await
            .map_err(|error| ApiError::internal(&format!("{error:#}")))?;
        drop(writer);
        Ok(offset)
    }

    /// One transaction of a checked write: begin, read to the end, check,
    /// write, commit.
    async fn attempt_checked(
        &self,
        writer: &mut Option<Arc<FutureProducer>>,
        key: &str,
        value: Option<&[u8]>,
        check: &impl Fn() -> Result<(), ApiError>,
        committing: &AtomicBool,
    ) -> Result<i64, Attempt> {
        let producer = match writer {
            Some(producer) => Arc::clone(producer),
            None => {
                let producer = self.new_writer().await.map_err(Attempt::Lost)?;
                *writer = Some(Arc::clone(&producer));
                producer
            }
        };
        blocking(&producer, Producer::begin_transaction)
            .await
            .map_err(Attempt::Lost)?;
        // Everything committed before this transaction began, this
        // instance's own earlier writes and other instances' alike.
        let end = end_offset_within(&self.kafka, &self.topic, 2)
            .await
            .map_err(Attempt::Lost)?;
        self.wait_applied(end).await.map_err(Attempt::Lost)?;
        if let Err(refusal) = check() {
            // Nothing was written; an abort that fails leaves a producer
            // the next write replaces.
            if blocking(&producer, |p| p.abort_transaction(WRITER_CALL_TIMEOUT))
                .await
                .is_err()
            {
                *writer = None;
            }
            return Err(Attempt::Refused(refusal));
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).key(key.as_bytes());
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = producer
            .send(record, WRITER_CALL_TIMEOUT)
            .await
            .map_err(|(error, _)| Attempt::Lost(error.into()))?;
        committing.store(true, Ordering::Relaxed);
        blocking(&producer, |p| p.commit_transaction(WRITER_CALL_TIMEOUT))
            .await
            .map_err(Attempt::Unsure)?;
        Ok(delivery.offset)
    }

    /// A transactional producer under the table's shared id, started: from
    /// here on every other instance's writer is fenced.
    async fn new_writer(&self) -> anyhow::Result<Arc<FutureProducer>> {
        let config = self.kafka.config();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", format!("{}-table-writer", config.client_id))
            .set(
                "transactional.id",
                format!("switchyard-table-{}", self.topic),
            )
            .set(
                "transaction.timeout.ms",
                WRITER_TRANSACTION_TIMEOUT.as_millis().to_string(),
            )
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("compression.type", &config.compression)
            .set("socket.connection.setup.timeout.ms", "3000")
            .set("reconnect.backoff.max.ms", "1000")
            .create()
            .context("cannot create the table writer")?;
        let producer = Arc::new(producer);
        blocking(&producer, |p| p.init_transactions(WRITER_CALL_TIMEOUT)).await?;
        Ok(producer)
    }
}

/// Runs one blocking transactional call of a table writer.
async fn blocking(
    producer: &Arc<FutureProducer>,
    call: impl FnOnce(&FutureProducer) -> Result<(), KafkaError> + Send + 'static,
) -> anyhow::Result<()> {
    let producer = Arc::clone(producer);
    Ok(tokio::task::spawn_blocking(move || call(&producer)).await??)
}

/// Moves the reader's position forward (never back).
fn advance(applied_tx: &watch::Sender<i64>, position: i64) {
    applied_tx.send_if_modified(|applied| {
        let moved = position > *applied;
        if moved {
            *applied = position;
        }
        moved
    });
}

/// The position of a table reader on its partition.
fn position_of(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    consumer
        .position()
        .ok()?
        .find_partition(topic, 0)?
        .offset()
        .to_raw()
}

/// A consumer of a single-partition topic, assigned from its beginning,
/// and the topic's end offset when it was made: what a reader needs to
/// load a table.
///
/// The end is asked through the reader itself, before it is assigned: the
/// answer brings the partition's leader with it, so the reader fetches at
/// once. Assigned first, a fresh consumer found no leader yet and waited
/// out librdkafka's offset-query backoff (about half a second, at every
/// start of every table); and a separate probe consumer took another tenth
/// of a second to close.
pub async fn open_reader(
    kafka: &Kafka,
    group: &str,
    topic: &str,
) -> anyhow::Result<(BaseConsumer, i64)> {
    let consumer: BaseConsumer = kafka.consumer_config(group).create()?;
    let name = topic.to_string();
    let (consumer, high) = tokio::task::spawn_blocking(move || {
        let high = watermark_retrying(&consumer, &name, 40)?;
        Ok::<_, rdkafka::error::KafkaError>((consumer, high))
    })
    .await??;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    Ok((consumer, high))
}

/// The end offset of partition 0 of `topic`, asked at most `attempts`
/// times (5 s each), a quarter second apart: right after a topic is
/// created its leader may still be being elected. Blocking.
fn watermark_retrying(
    consumer: &BaseConsumer,
    topic: &str,
    attempts: u32,
) -> Result<i64, rdkafka::error::KafkaError> {
    let mut attempt = 0;
    loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok((_, high)) => return Ok(high),
            Err(error) if attempt + 1 < attempts => {
                attempt += 1;
                tracing::debug!(topic, %error, attempt, "waiting for the topic leader");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => return Err(error),
        }
    }
}

/// The end offset of a single-partition topic, retried while its leader is
/// being elected (right after creation).
pub async fn end_offset(kafka: &Kafka, topic: &str) -> anyhow::Result<i64> {
    end_offset_within(kafka, topic, 40).await
}

/// [`end_offset`], asking at most `attempts` times (5 s each).
async fn end_offset_within(kafka: &Kafka, topic: &str, attempts: u32) -> anyhow::Result<i64> {
    let probe: BaseConsumer = kafka
        .consumer_config(&format!("switchyard-table-{topic}"))
        .create()?;
    let topic = topic.to_string();
    Ok(tokio::task::spawn_blocking(move || watermark_retrying(&probe, &topic, attempts)).await??)
}
