//! The embedded schema registry.
//!
//! It speaks the Confluent Schema Registry REST API ([`rest`]) and keeps its
//! state in a single-partition compacted topic (`_schemas` by default) using
//! Confluent's own record format: the key is
//! `{"keytype":"SCHEMA","subject":…,"version":…,"magic":1}` and the value is
//! `{"subject":…,"version":…,"id":…,"schema":…,"deleted":…}`. Every instance
//! reads the whole topic at start-up and then follows it, so the topic is the
//! only copy of the state and a restart loses nothing.
//!
//! Writes go through the topic too: a registration is produced, and the call
//! returns only once this instance has read its own record back, so a caller
//! never sees an id that the state does not yet hold.
//!
//! Known limits, for now: ids are allocated as "highest id seen + 1" under a
//! lock inside one process. Two instances registering different schemas at
//! the same moment could pick the same id; run one writer per cluster until
//! the registry gains a cross-instance id lease. Compatibility checking is not
//! implemented yet: every syntactically valid schema is accepted, and
//! `/config` reports the level without enforcing it. Only Avro schemas are
//! supported; CONFIG, MODE and DELETE records are read past, not applied.

pub mod rest;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use crate::avro::Schema;
use crate::kafka::{Kafka, TopicKind};

/// One registered schema, shared by every subject and version that uses it.
#[derive(Debug)]
pub struct RegisteredSchema {
    /// Global id, the one in the Confluent wire format.
    pub id: u32,
    /// The schema text as first registered.
    pub text: String,
    /// The parsed schema.
    pub schema: Schema,
    /// Parsing Canonical Form, which decides identity.
    pub canonical: String,
}

/// One version of a subject.
#[derive(Debug, Clone)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// Version within the subject, from 1.
    pub version: u32,
    /// The schema.
    pub schema: Arc<RegisteredSchema>,
    /// Soft-deleted versions are kept but hidden from most reads.
    pub deleted: bool,
}

/// Registry failures, with the Confluent error code each maps to.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 40401.
    #[error("subject `{0}` not found")]
    SubjectNotFound(String),
    /// 40402.
    #[error("version `{version}` of subject `{subject}` not found")]
    VersionNotFound {
        /// The subject.
        subject: String,
        /// The version asked for.
        version: String,
    },
    /// 40403.
    #[error("schema not found")]
    SchemaNotFound,
    /// 42201.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202.
    #[error("version `{0}` is not valid: use a number from 1 or `latest`")]
    InvalidVersion(String),
    /// 42208.
    #[error(
        "subject `{0}` is not valid: use 1 to 255 characters without control or invisible characters"
    )]
    InvalidSubject(String),
    /// 50001.
    #[error("error in the backend data store: {0}")]
    Store(String),
}

/// Longest subject name accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 255;

/// Checks a subject name before it is stored.
pub fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.trim().is_empty()
        || subject.len() > MAX_SUBJECT_BYTES
        || subject.chars().any(crate::nvo::is_unsafe_char)
    {
        return Err(RegistryError::InvalidSubject(
            subject.escape_debug().to_string(),
        ));
    }
    Ok(())
}

impl RegistryError {
    /// Confluent's numeric error code.
    pub fn confluent_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaNotFound => 40403,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::Store(_) => 50001,
        }
    }
}

/// Key of a record in the schemas topic (Confluent's format).
#[derive(Debug, Serialize, Deserialize)]
struct RecordKey {
    keytype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    magic: u32,
}

/// Value of a SCHEMA record (Confluent's format).
#[derive(Debug, Serialize, Deserialize)]
struct SchemaValue {
    subject: String,
    version: u32,
    id: u32,
    schema: String,
    #[serde(default)]
    deleted: bool,
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    schema_type: Option<String>,
}

#[derive(Default)]
struct State {
    by_id: HashMap<u32, Arc<RegisteredSchema>>,
    by_canonical: HashMap<String, Arc<RegisteredSchema>>,
    subjects: BTreeMap<String, BTreeMap<u32, SubjectVersion>>,
    max_id: u32,
}

/// The embedded registry.
pub struct Registry {
    kafka: Arc<Kafka>,
    topic: String,
    state: Arc<RwLock<State>>,
    /// Next offset of the schemas topic that the reader has applied.
    applied_rx: watch::Receiver<i64>,
    /// One registration at a time within this process (see the module docs).
    write_lock: Mutex<()>,
}

impl Registry {
    /// Creates the topic if needed, reads it to the end and keeps following
    /// it on a dedicated thread.
    pub async fn start(kafka: Arc<Kafka>, topic: &str) -> anyhow::Result<Arc<Registry>> {
        kafka.ensure_topic(topic, TopicKind::CompactedState).await?;
        let state = Arc::new(RwLock::new(State::default()));
        let (applied_tx, applied_rx) = watch::channel(0_i64);

        let consumer: BaseConsumer = kafka
            .consumer_config("switchyard-registry")
            .create()
            .context("cannot create the registry reader")?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let high = {
            let topic = topic.to_string();
            let probe: BaseConsumer = kafka.consumer_config("switchyard-registry").create()?;
            // A topic created a moment ago may not have a leader yet, so
            // the first fetches can fail; retry for a while.
            tokio::task::spawn_blocking(move || {
                let mut attempt = 0;
                loop {
                    match probe.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
                        Ok(marks) => return Ok(marks),
                        Err(error) if attempt < 40 => {
                            attempt += 1;
                            tracing::debug!(topic, %error, attempt, "waiting for the schemas topic leader");
                            std::thread::sleep(Duration::from_millis(250));
                        }
                        Err(error) => return Err(error),
                    }
                }
            })
            .await??
            .1
        };

        let reader_state = Arc::clone(&state);
        let reader_topic = topic.to_string();
        std::thread::Builder::new()
            .name("registry-reader".to_string())
            .spawn(move || read_loop(&consumer, &reader_topic, &reader_state, &applied_tx))
            .context("cannot start the registry reader thread")?;

        let registry = Arc::new(Registry {
            kafka,
            topic: topic.to_string(),
            state,
            applied_rx,
            write_lock: Mutex::new(()),
        });
        registry.wait_applied(high, Duration::from_secs(60)).await?;
        tracing::info!(topic, records = high, "schema registry state loaded");
        Ok(registry)
    }

    async fn wait_applied(&self, offset: i64, timeout: Duration) -> anyhow::Result<()> {
        let mut applied = self.applied_rx.clone();
        tokio::time::timeout(timeout, applied.wait_for(|next| *next >= offset))
            .await
            .with_context(|| {
                format!(
                    "registry did not read `{}` up to offset {offset} in time",
                    self.topic
                )
            })?
            .context("registry reader stopped")?;
        Ok(())
    }

    /// Registers a schema under a subject, or returns the id it already has
    /// there. Identity is by Parsing Canonical Form, so spelling differences
    /// never create a new version.
    pub async fn register(
        &self,
        subject: &str,
        text: &str,
    ) -> Result<SubjectVersion, RegistryError> {
        check_subject(subject)?;
        let schema = Schema::parse_str(text)
            .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
        let canonical = schema.canonical_form();
        let _guard = self.write_lock.lock().await;

        let (version, id) = {
            let state = self.state.read().expect("registry state lock");
            if let Some(existing) = state.subjects.get(subject).and_then(|versions| {
                versions
                    .values()
                    .find(|v| !v.deleted && v.schema.canonical == canonical)
            }) {
                return Ok(existing.clone());
            }
            let version = state
                .subjects
                .get(subject)
                .and_then(|versions| versions.keys().next_back().copied())
                .unwrap_or(0)
                + 1;
            let id = state
                .by_canonical
                .get(&canonical)
                .map_or(state.max_id + 1, |found| found.id);
            (version, id)
        };

        let key = RecordKey {
            keytype: "SCHEMA".to_string(),
            subject: Some(subject.to_string()),
            version: Some(version),
            magic: 1,
        };
        let value = SchemaValue {
            subject: subject.to_string(),
            version,
            id,
            schema: text.to_string(),
            deleted: false,
            schema_type: None,
        };
        let key = serde_json::to_vec(&key).expect("record key serializes");
        let value = serde_json::to_vec(&value).expect("record value serializes");
        let landed = self
            .kafka
            .produce(&self.topic, &key, &value, OwnedHeaders::new())
            .await
            .map_err(|error| RegistryError::Store(error.detail))?;
        self.wait_applied(landed.offset + 1, Duration::from_secs(10))
            .await
            .map_err(|error| RegistryError::Store(format!("{error:#}")))?;
        tracing::info!(subject, version, id, "registered schema");
        self.version(subject, &version.to_string())
    }

    /// Finds the version of a subject that holds this schema.
    pub fn lookup(&self, subject: &str, text: &str) -> Result<SubjectVersion, RegistryError> {
        let schema = Schema::parse_str(text)
            .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
        let canonical = schema.canonical_form();
        let state = self.state.read().expect("registry state lock");
        let versions = state
            .subjects
            .get(subject)
            .filter(|versions| versions.values().any(|v| !v.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        versions
            .values()
            .find(|v| !v.deleted && v.schema.canonical == canonical)
            .cloned()
            .ok_or(RegistryError::SchemaNotFound)
    }

    /// A schema by its global id.
    pub fn by_id(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.state
            .read()
            .expect("registry state lock")
            .by_id
            .get(&id)
            .cloned()
    }

    /// Subjects with at least one live version.
    pub fn subjects(&self) -> Vec<String> {
        let state = self.state.read().expect("registry state lock");
        state
            .subjects
            .iter()
            .filter(|(_, versions)| versions.values().any(|v| !v.deleted))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    /// Live version numbers of a subject.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let state = self.state.read().expect("registry state lock");
        let versions: Vec<u32> = state
            .subjects
            .get(subject)
            .map(|versions| {
                versions
                    .values()
                    .filter(|v| !v.deleted)
                    .map(|v| v.version)
                    .collect()
            })
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    /// One version of a subject: a number, or `latest` (also `-1`).
    pub fn version(&self, subject: &str, version: &str) -> Result<SubjectVersion, RegistryError> {
        let state = self.state.read().expect("registry state lock");
        let versions = state
            .subjects
            .get(subject)
            .filter(|versions| versions.values().any(|v| !v.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let found = if version == "latest" || version == "-1" {
            versions.values().rev().find(|v| !v.deleted)
        } else {
            let number: u32 = version
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| RegistryError::InvalidVersion(version.to_string()))?;
            versions.get(&number).filter(|v| !v.deleted)
        };
        found
            .cloned()
            .ok_or_else(|| RegistryError::VersionNotFound {
                subject: subject.to_string(),
                version: version.to_string(),
            })
    }

    /// Subjects and versions that use a schema id.
    pub fn usages(&self, id: u32) -> Vec<(String, u32)> {
        let state = self.state.read().expect("registry state lock");
        state
            .subjects
            .values()
            .flat_map(|versions| versions.values())
            .filter(|v| !v.deleted && v.schema.id == id)
            .map(|v| (v.subject.clone(), v.version))
            .collect()
    }
}

/// Follows the schemas topic forever, applying each record.
fn read_loop(
    consumer: &BaseConsumer,
    topic: &str,
    state: &RwLock<State>,
    applied_tx: &watch::Sender<i64>,
) {
    loop {
        if applied_tx.is_closed() {
            return;
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(topic, %error, "registry reader could not read; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if let Err(error) = apply(state, message.key(), message.payload()) {
            // A record this version cannot read is skipped, not fatal: the
            // topic may be shared with a newer registry.
            tracing::warn!(topic, offset = message.offset(), %error, "skipped schemas record");
        }
        applied_tx.send_replace(message.offset() + 1);
    }
}

fn apply(state: &RwLock<State>, key: Option<&[u8]>, value: Option<&[u8]>) -> anyhow::Result<()> {
    let key: RecordKey = serde_json::from_slice(key.context("record has no key")?)?;
    if key.keytype != "SCHEMA" {
        return Ok(());
    }
    let mut state = state.write().expect("registry state lock");
    let Some(value) = value else {
        // A tombstone removes the version for good (permanent delete).
        if let (Some(subject), Some(version)) = (key.subject, key.version)
            && let Some(versions) = state.subjects.get_mut(&subject)
        {
            versions.remove(&version);
        }
        return Ok(());
    };
    let value: SchemaValue = serde_json::from_slice(value)?;
    if value.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        anyhow::bail!("schema type `{:?}` is not supported", value.schema_type);
    }
    let schema = match state.by_id.get(&value.id) {
        Some(existing) => Arc::clone(existing),
        None => {
            let parsed = Schema::parse_str(&value.schema)?;
            let canonical = parsed.canonical_form();
            let registered = Arc::new(RegisteredSchema {
                id: value.id,
                text: value.schema.clone(),
                schema: parsed,
                canonical: canonical.clone(),
            });
            state.by_id.insert(value.id, Arc::clone(&registered));
            state
                .by_canonical
                .entry(canonical)
                .or_insert_with(|| Arc::clone(&registered));
            registered
        }
    };
    state.max_id = state.max_id.max(value.id);
    state
        .subjects
        .entry(value.subject.clone())
        .or_default()
        .insert(
            value.version,
            SubjectVersion {
                subject: value.subject,
                version: value.version,
                schema,
                deleted: value.deleted,
            },
        );
    Ok(())
}
