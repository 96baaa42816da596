//! The Kafka side of the host: one idempotent producer shared by every task,
//! topic creation, and the settings every consumer starts from.
//!
//! librdkafka runs its own threads; the async code only awaits delivery
//! futures and never blocks on a poll. Blocking admin and metadata calls go
//! through `spawn_blocking`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode as Rd;

use crate::config::KafkaConfig;
use crate::error::{ApiError, Code, Stored};

/// Largest record (key, value and headers) the host publishes itself, in
/// bytes. Topics the host creates accept twice as much, so a record can be
/// forwarded or dead-lettered with extra headers without ever being too
/// large for its next topic.
pub const MAX_PUBLISHED_RECORD_BYTES: usize = 1024 * 1024;

/// What topics the host creates accept (`max.message.bytes`), and what the
/// producer sends at most.
pub const MAX_TOPIC_RECORD_BYTES: usize = 2 * MAX_PUBLISHED_RECORD_BYTES;

/// The broker refused to create a topic.
#[derive(Debug, thiserror::Error)]
#[error("cannot create topic `{topic}`: {code}")]
pub struct TopicCreationError {
    /// The topic.
    pub topic: String,
    /// Kafka's reason.
    pub code: RDKafkaErrorCode,
}

impl TopicCreationError {
    /// Whether trying again cannot help (a bad name, a refused config, no
    /// permission), as opposed to a broker that is down or busy.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code,
            Rd::InvalidTopic
                | Rd::InvalidPartitions
                | Rd::InvalidReplicationFactor
                | Rd::InvalidConfig
                | Rd::PolicyViolation
                | Rd::TopicAuthorizationFailed
                | Rd::ClusterAuthorizationFailed
        )
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    /// Partition the record was written to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// Kafka clients shared by the whole host.
pub struct Kafka {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist, so the admin API is asked once per topic.
    known_topics: Mutex<HashSet<String>>,
}

/// What a topic is for, which decides its configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// Events of one noun, or a destination stream: deleted by time.
    Events,
    /// A single-partition compacted topic holding state, like `_schemas`.
    CompactedState,
    /// A compacted changelog of keyed state, partitioned like its input.
    Changelog(i32),
}

impl Kafka {
    /// Creates the clients. Nothing is sent to the broker yet.
    pub fn connect(config: &KafkaConfig) -> anyhow::Result<Arc<Kafka>> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", format!("{}-producer", config.client_id))
            // Idempotence gives acks=all, ordered retries and no duplicates
            // from the producer's own retries.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // Java's partitioner, so a key lands where Kafka Streams, Java
            // producers and Confluent's clients would put it, and the owner
            // of a key's partition can be computed.
            .set("partitioner", "murmur2_random")
            // Bounds how long a record may wait for the broker, so a publish
            // against a dead broker fails within the configured time.
            .set("message.timeout.ms", config.publish_timeout_ms.to_string())
            .set("socket.connection.setup.timeout.ms", "3000")
            .set("reconnect.backoff.max.ms", "1000")
            .set("message.max.bytes", MAX_TOPIC_RECORD_BYTES.to_string())
            .set("compression.type", &config.compression)
            .create()
            .context("cannot create the kafka producer")?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", format!("{}-admin", config.client_id))
            // The admin client also answers metadata questions (topics,
            // partitions): a consumer made per question took about 100 ms
            // to close, paid by every state query, subscription and checked
            // route write. Asking about a missing topic must not create it.
            .set("allow.auto.create.topics", "false")
            .create()
            .context("cannot create the kafka admin client")?;
        Ok(Arc::new(Kafka {
            config: config.clone(),
            producer,
            admin,
            known_topics: Mutex::new(HashSet::new()),
        }))
    }

    /// The Kafka settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Base settings for a consumer of this cluster. Auto-commit is off
    /// everywhere: offsets are committed only after the effect is durable.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("client.id", format!("{}-consumer", self.config.client_id))
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            // Only committed transactional records are ever visible.
            .set("isolation.level", "read_committed")
            // A host runs many consumers (pipelines, streams, tables); 16 MB
            // of prefetched records each, rather than librdkafka's 64 MB,
            // keeps a catching-up host's memory in bounds.
            .set("queued.max.messages.kbytes", "16384")
            .set("socket.connection.setup.timeout.ms", "3000");
        config
    }

    /// Makes sure a topic exists, creating it with explicit partitions and
    /// configs when it does not. Safe to call concurrently and repeatedly.
    pub async fn ensure_topic(&self, name: &str, kind: TopicKind) -> anyhow::Result<()> {
        if self
            .known_topics
            .lock()
            .expect("topic set lock")
            .contains(name)
        {
            return Ok(());
        }
        let retention = self.config.retention_ms.to_string();
        let max_record = MAX_TOPIC_RECORD_BYTES.to_string();
        let (partitions, configs): (i32, Vec<(&str, &str)>) = match kind {
            TopicKind::Events => (
                self.config.partitions,
                vec![
                    ("cleanup.policy", "delete"),
                    ("retention.ms", retention.as_str()),
                    ("max.message.bytes", max_record.as_str()),
                ],
            ),
            TopicKind::CompactedState => (
                1,
                vec![
                    ("cleanup.policy", "compact"),
                    ("max.message.bytes", max_record.as_str()),
                ],
            ),
            TopicKind::Changelog(partitions) => (
                partitions,
                vec![
                    ("cleanup.policy", "compact"),
                    ("max.message.bytes", max_record.as_str()),
                ],
            ),
        };
        let mut topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        for (key, value) in &configs {
            topic = topic.set(key, value);
        }
        // The request timeout too: librdkafka's default (a minute) would hold
        // a caller that long when the broker is down.
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics([&topic], &options)
            .await
            .with_context(|| format!("cannot create topic `{name}`"))?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic = name, partitions, "created topic"),
                Err((_, Rd::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(TopicCreationError {
                        topic: name.to_string(),
                        code,
                    }
                    .into());
                }
            }
        }
        self.known_topics
            .lock()
            .expect("topic set lock")
            .insert(name.to_string());
        Ok(())
    }

    /// Forgets which topics are known to exist, so the next use of each asks
    /// Kafka again (after a failure that may mean one was deleted).
    pub fn forget_known_topics(&self) {
        self.known_topics.lock().expect("topic set lock").clear();
    }

    /// Writes one record and waits for the broker's acknowledgement.
    pub async fn produce(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Landed, ApiError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(headers);
        self.send(topic, record).await
    }

    /// Writes a tombstone (a record with no value) and waits for the
    /// acknowledgement; on a compacted topic it deletes the key.
    pub async fn produce_tombstone(&self, topic: &str, key: &[u8]) -> Result<Landed, ApiError> {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key);
        self.send(topic, record).await
    }

    async fn send(
        &self,
        topic: &str,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<Landed, ApiError> {
        // The local queue never waits long: a full queue means the broker is
        // not keeping up and the caller should back off.
        let delivery = self.producer.send(record, Duration::from_millis(500));
        // A safety bound on top of `message.timeout.ms`, which normally
        // fires first.
        let bound = Duration::from_millis(self.config.publish_timeout_ms + 2_000);
        match tokio::time::timeout(bound, delivery).await {
            Ok(Ok(delivery)) => Ok(Landed {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _))) => Err(produce_error(topic, &error)),
            Err(_) => Err(ApiError::new(
                Code::KafkaUnavailable,
                format!("kafka did not acknowledge the write to `{topic}` in time; retry with the same event id"),
            )
            .with_stored(Stored::Maybe)
            .with_retry_after(Duration::from_secs(1))),
        }
    }

    /// Waits until everything produced so far is acknowledged, for shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush did not finish; unacknowledged records may be lost");
        }
    }

    /// Names of every topic in the cluster.
    pub async fn topics(self: &Arc<Self>) -> anyhow::Result<Vec<String>> {
        let kafka = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let metadata = kafka
                .admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(5))?;
            Ok(metadata
                .topics()
                .iter()
                .map(|topic| topic.name().to_string())
                .collect())
        })
        .await?
    }

    /// Partition ids of a topic, or an error if it does not exist.
    pub async fn partitions(self: &Arc<Self>, topic: &str) -> anyhow::Result<Vec<i32>> {
        let kafka = Arc::clone(self);
        let topic = topic.to_string();
        let known = self
            .known_topics
            .lock()
            .expect("topic set lock")
            .contains(&topic);
        tokio::task::spawn_blocking(move || {
            if !known {
                // The admin client keeps an entry for every topic named to
                // it, and librdkafka asks the broker again every second
                // about one it cannot find: a name this host has not made or
                // found (a subscriber's typo) is asked through a consumer
                // made for the question and closed after it.
                let consumer: BaseConsumer =
                    kafka.consumer_config("switchyard-metadata").create()?;
                let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
                return partitions_of(&metadata, &topic);
            }
            // A topic this host has just created may not be in the broker's
            // metadata yet (creation is acknowledged before every broker
            // has it): it is asked about again for up to a second before it
            // is reported missing.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            loop {
                let metadata = kafka
                    .admin
                    .inner()
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))?;
                match partitions_of(&metadata, &topic) {
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    answer => return answer,
                }
            }
        })
        .await?
    }
}

/// The partition ids of `topic` in a metadata answer, or why there are none.
fn partitions_of(metadata: &rdkafka::metadata::Metadata, topic: &str) -> anyhow::Result<Vec<i32>> {
    let Some(found) = metadata.topics().first() else {
        anyhow::bail!("topic `{topic}` not found");
    };
    if let Some(error) = found.error() {
        anyhow::bail!("topic `{topic}`: {:?}", RDKafkaErrorCode::from(error));
    }
    if found.partitions().is_empty() {
        anyhow::bail!("topic `{topic}` not found");
    }
    Ok(found
        .partitions()
        .iter()
        .map(rdkafka::metadata::MetadataPartition::id)
        .collect())
}

/// Turns a delivery failure into the client-facing error, deciding whether
/// the record may have been written.
fn produce_error(topic: &str, error: &KafkaError) -> ApiError {
    let code = error.rdkafka_error_code();
    // A record that never left the local queue was certainly not written; a
    // timeout after sending may or may not have been.
    let stored = match code {
        Some(
            Rd::QueueFull
            | Rd::UnknownTopic
            | Rd::UnknownTopicOrPartition
            | Rd::MessageSizeTooLarge
            | Rd::InvalidMessageSize,
        ) => Stored::No,
        _ => Stored::Maybe,
    };
    tracing::warn!(topic, %error, "kafka write failed");
    match code {
        Some(Rd::MessageSizeTooLarge) => ApiError::new(
            Code::PayloadTooLarge,
            format!("the record is larger than topic `{topic}` accepts; send a smaller object"),
        )
        .with_stored(Stored::No),
        Some(Rd::UnknownTopic | Rd::UnknownTopicOrPartition) => ApiError::new(
            Code::NotFound,
            format!("topic `{topic}` does not exist"),
        )
        .with_stored(Stored::No),
        _ => ApiError::new(
            Code::KafkaUnavailable,
            format!("kafka did not acknowledge the write to `{topic}` ({error}); retry with the same event id"),
        )
        .with_stored(stored)
        .with_retry_after(Duration::from_secs(1)),
    }
}

/// The partition Kafka's Java clients (and this host's producer, which uses
/// `murmur2_random`) give a non-empty key: murmur2 of the key bytes, made
/// positive, modulo the partition count.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as i32) % partitions.max(1)
}

/// Kafka's murmur2 (the 32-bit variant with its seed), as in
/// `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        if rest.len() == 3 {
            h ^= u32::from(rest[2]) << 16;
        }
        if rest.len() >= 2 {
            h ^= u32::from(rest[1]) << 8;
        }
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod partitioner_tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_java_values() {
        // Values from Kafka's own test of `Utils.murmur2`, as signed ints.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
