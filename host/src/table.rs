//! A global table: a single-partition compacted topic that every host
//! instance reads from the beginning and keeps applying, like a Kafka
//! Streams GlobalKTable. Writes go to Kafka first and return once this
//! instance has applied them, so a caller reads its own write.
//!
//! The records' meaning belongs to the owner of the table, which hands in a
//! function that applies one record (key, value or tombstone) to its state.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::kafka::{Kafka, Landed, TopicKind};

/// How long a start or a write waits for this instance to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Applies one record at its offset; `None` is a tombstone. An error is logged with the
/// record's offset and the record skipped.
pub type Apply = Box<dyn FnMut(&str, Option<&[u8]>, i64) -> anyhow::Result<()> + Send>;

/// See the module docs.
pub struct GlobalTable {
    kafka: Arc<Kafka>,
    topic: String,
    /// Offset after the last applied record.
    applied_rx: watch::Receiver<i64>,
}

impl GlobalTable {
    /// Creates the topic if needed, applies it to its end, and keeps
    /// applying new records on a thread of its own.
    pub async fn start(kafka: Arc<Kafka>, topic: &str, mut apply: Apply) -> anyhow::Result<Self> {
        kafka.ensure_topic(topic, TopicKind::CompactedState).await?;
        let consumer: BaseConsumer = kafka
            .consumer_config(&format!("switchyard-table-{topic}"))
            .create()?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let high = end_offset(&kafka, topic).await?;
        let (applied_tx, applied_rx) = watch::channel(0_i64);
        let name = topic.to_string();
        std::thread::Builder::new()
            .name(format!("table-{topic}"))
            .spawn(move || {
                loop {
                    if applied_tx.is_closed() {
                        return;
                    }
                    let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let message = match result {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(topic = name, %error, "cannot read the table; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                            continue;
                        }
                    };
                    let applied = match message.key().map(std::str::from_utf8) {
                        Some(Ok(key)) => apply(key, message.payload(), message.offset()),
                        _ => Err(anyhow::anyhow!("record key is missing or not UTF-8")),
                    };
                    if let Err(error) = applied {
                        tracing::warn!(topic = name, offset = message.offset(), %error, "skipped a table record");
                    }
                    applied_tx.send_replace(message.offset() + 1);
                }
            })?;
        let table = GlobalTable {
            kafka,
            topic: topic.to_string(),
            applied_rx,
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
}

/// The end offset of a single-partition topic, retried while its leader is
/// being elected (right after creation).
pub async fn end_offset(kafka: &Kafka, topic: &str) -> anyhow::Result<i64> {
    let probe: BaseConsumer = kafka
        .consumer_config(&format!("switchyard-table-{topic}"))
        .create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut attempt = 0;
        loop {
            match probe.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
                Ok((_, high)) => return Ok(high),
                Err(error) if attempt < 40 => {
                    attempt += 1;
                    tracing::debug!(topic, %error, "waiting for the topic leader");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(error) => return Err(error.into()),
            }
        }
    })
    .await?
}
