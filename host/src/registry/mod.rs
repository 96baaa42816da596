//! The embedded schema registry.
//!
//! It speaks the Confluent Schema Registry REST API ([`rest`]) and keeps its
//! state in a single-partition compacted topic (`_schemas` by default) using
//! Confluent's own record format, so a Confluent registry could read what
//! this one wrote and the other way round: keys are JSON objects with a
//! `keytype` (`SCHEMA`, `CONFIG`, `MODE`, `DELETE_SUBJECT`, `CLEAR_SUBJECT`,
//! `NOOP`), values are the matching JSON documents, and a null value deletes
//! (a permanently deleted version, a removed configuration). Every instance
//! reads the whole topic at start-up and then follows it, so the topic is
//! the only copy of the state and a restart loses nothing.
//!
//! Writes go through the topic too, and the topic decides: a registration
//! is produced, and the call returns only once this instance has read its
//! own record back and seen it win. Records apply in log order and a
//! `SCHEMA` record that claims an id some other schema already holds, or a
//! version slot another schema already fills, is ignored by every reader
//! alike; the instance that wrote it picks the next free id or version and
//! tries again. So two instances registering at the same moment never give
//! one schema two ids, nor two schemas one id, without any leader. (A
//! Confluent registry reading the same topic would apply such a losing
//! record instead of ignoring it; losers only exist while two writers race.)
//!
//! Identity is [`Schema::identity_form`]: Parsing Canonical Form plus
//! defaults, aliases and logical types, so spelling never makes a new
//! schema but meaning does. Compatibility follows the Avro specification's
//! schema resolution ([`crate::avro::compat`]); the decoder
//! ([`crate::avro::Resolver`]) follows the same rules, so what the registry
//! calls compatible is what the host can read.
//!
//! Known limits: only Avro schemas (no references, JSON Schema or
//! Protobuf); contexts and the `IMPORT` mode's explicit ids are not
//! supported.

pub mod external;
pub mod rest;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Message, OwnedHeaders};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use crate::avro::Schema;
use crate::avro::compat::{self, CompatibilityLevel};
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
    /// [`Schema::identity_form`], which decides identity.
    pub identity: String,
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

/// What a subject (or the whole registry) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Reads and writes.
    Readwrite,
    /// Reads only; registrations and deletes are refused.
    Readonly,
    /// Like `READONLY` for clients; kept for Confluent compatibility.
    ReadonlyOverride,
    /// Confluent's migration mode; accepted and reported, and registrations
    /// are refused as in `READONLY`, since explicit ids are not supported.
    Import,
}

impl Mode {
    /// Confluent's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::ReadonlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
        }
    }

    /// Parses Confluent's name, in any letter case.
    pub fn parse(text: &str) -> Option<Mode> {
        match text.to_ascii_uppercase().as_str() {
            "READWRITE" => Some(Mode::Readwrite),
            "READONLY" => Some(Mode::Readonly),
            "READONLY_OVERRIDE" => Some(Mode::ReadonlyOverride),
            "IMPORT" => Some(Mode::Import),
            _ => None,
        }
    }
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
    /// 40404.
    #[error("subject `{0}` was soft deleted; set `permanent=true` to delete it permanently")]
    SubjectSoftDeleted(String),
    /// 40405.
    #[error(
        "subject `{0}` was not soft deleted first; delete it without `permanent=true`, then permanently"
    )]
    SubjectNotSoftDeleted(String),
    /// 40406.
    #[error(
        "version {version} of subject `{subject}` was soft deleted; set `permanent=true` to delete it permanently"
    )]
    VersionSoftDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// 40407.
    #[error(
        "version {version} of subject `{subject}` was not soft deleted first; delete it without `permanent=true`, then permanently"
    )]
    VersionNotSoftDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// 40408.
    #[error("subject `{0}` has no subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    /// 40409.
    #[error("subject `{0}` has no subject-level mode configured")]
    SubjectModeNotFound(String),
    /// 409.
    #[error(
        "schema being registered is incompatible with an earlier schema for subject `{subject}` ({level}): {}",
        reasons.join("; ")
    )]
    Incompatible {
        /// The subject.
        subject: String,
        /// The level that was checked.
        level: CompatibilityLevel,
        /// Why, naming fields.
        reasons: Vec<String>,
    },
    /// 42201.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202.
    #[error("version `{0}` is not valid: use a number from 1 or `latest`")]
    InvalidVersion(String),
    /// 42203.
    #[error(
        "invalid compatibility level `{0}`; valid values are none, backward, backward_transitive, forward, forward_transitive, full and full_transitive"
    )]
    InvalidCompatibility(String),
    /// 42204.
    #[error(
        "invalid mode `{0}`; valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"
    )]
    InvalidMode(String),
    /// 42205.
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    /// 42208.
    #[error(
        "subject `{0}` is not valid: use 1 to 255 characters without control or invisible characters"
    )]
    InvalidSubject(String),
    /// 50001.
    #[error("error in the backend data store: {0}")]
    Store(String),
    /// 50002.
    #[error("operation timed out: {0}")]
    Timeout(String),
    /// 50003: the external registry could not be reached, or answered
    /// something unreadable.
    #[error("error while forwarding to the external registry: {0}")]
    Forward(String),
    /// An error answer of the external registry, passed on with its own
    /// status and code.
    #[error("{message}")]
    Remote {
        /// HTTP status it answered.
        status: u16,
        /// Its error code.
        code: u32,
        /// Its message.
        message: String,
    },
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
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectConfigNotFound(_) => 40408,
            RegistryError::SubjectModeNotFound(_) => 40409,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibility(_) => 42203,
            RegistryError::InvalidMode(_) => 42204,
            RegistryError::NotPermitted(_) => 42205,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::Store(_) => 50001,
            RegistryError::Timeout(_) => 50002,
            RegistryError::Forward(_) => 50003,
            RegistryError::Remote { code, .. } => *code,
        }
    }
}

/// Key of a record in the schemas topic (Confluent's format).
#[derive(Debug, Serialize, Deserialize)]
struct RecordKey {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    magic: u32,
}

impl RecordKey {
    fn schema(subject: &str, version: u32) -> RecordKey {
        RecordKey {
            keytype: "SCHEMA".to_string(),
            subject: Some(subject.to_string()),
            version: Some(version),
            magic: 1,
        }
    }

    fn other(keytype: &str, subject: Option<&str>) -> RecordKey {
        RecordKey {
            keytype: keytype.to_string(),
            subject: subject.map(str::to_string),
            version: None,
            magic: 0,
        }
    }
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

/// Value of a CONFIG record.
#[derive(Debug, Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

/// Value of a MODE record.
#[derive(Debug, Serialize, Deserialize)]
struct ModeValue {
    mode: String,
}

/// Value of a DELETE_SUBJECT record: versions up to `version` are deleted.
#[derive(Debug, Serialize, Deserialize)]
struct DeleteSubjectValue {
    subject: String,
    version: u32,
}

/// Value of a CLEAR_SUBJECT record.
#[derive(Debug, Serialize, Deserialize)]
struct ClearSubjectValue {
    subject: String,
}

#[derive(Default)]
struct State {
    by_id: HashMap<u32, Arc<RegisteredSchema>>,
    by_identity: HashMap<String, Arc<RegisteredSchema>>,
    subjects: BTreeMap<String, BTreeMap<u32, SubjectVersion>>,
    max_id: u32,
    global_level: Option<CompatibilityLevel>,
    subject_levels: HashMap<String, CompatibilityLevel>,
    global_mode: Option<Mode>,
    subject_modes: HashMap<String, Mode>,
}

impl State {
    fn live(&self, subject: &str) -> impl Iterator<Item = &SubjectVersion> {
        self.subjects
            .get(subject)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|v| !v.deleted)
    }

    fn mode_of(&self, subject: &str) -> Mode {
        self.subject_modes
            .get(subject)
            .copied()
            .or(self.global_mode)
            .unwrap_or(Mode::Readwrite)
    }
}

/// The embedded registry.
pub struct Registry {
    kafka: Arc<Kafka>,
    topic: String,
    state: Arc<RwLock<State>>,
    /// Level used when neither the registry nor a subject sets one.
    default_level: CompatibilityLevel,
    /// Next offset of the schemas topic that the reader has applied.
    applied_rx: watch::Receiver<i64>,
    /// One write at a time within this process; across processes the topic
    /// decides (see the module docs).
    write_lock: Mutex<()>,
    /// External mode: calls go to another registry instead.
    external: Option<external::External>,
}

/// Registrations tried again after losing a race, before giving up.
const WRITE_ATTEMPTS: u32 = 50;

impl Registry {
    /// Creates the topic if needed, reads it to the end and keeps following
    /// it on a dedicated thread.
    pub async fn start(
        kafka: Arc<Kafka>,
        topic: &str,
        default_level: CompatibilityLevel,
    ) -> anyhow::Result<Arc<Registry>> {
        Self::start_with(kafka, topic, default_level, None).await
    }

    /// Starts in external mode: nothing is read from Kafka, every call goes
    /// to the registry at `url`.
    pub fn start_external(
        kafka: Arc<Kafka>,
        url: &str,
        headers: &BTreeMap<String, String>,
        latest_ttl: Duration,
        default_level: CompatibilityLevel,
    ) -> anyhow::Result<Arc<Registry>> {
        let external = external::External::new(url, headers, latest_ttl)?;
        let (_, applied_rx) = watch::channel(0_i64);
        tracing::info!(url, "schema registry in external mode");
        Ok(Arc::new(Registry {
            kafka,
            topic: String::new(),
            state: Arc::new(RwLock::new(State::default())),
            default_level,
            applied_rx,
            write_lock: Mutex::new(()),
            external: Some(external),
        }))
    }

    /// The external registry, in external mode.
    pub fn external(&self) -> Option<&external::External> {
        self.external.as_ref()
    }

    async fn start_with(
        kafka: Arc<Kafka>,
        topic: &str,
        default_level: CompatibilityLevel,
        external: Option<external::External>,
    ) -> anyhow::Result<Arc<Registry>> {
        kafka.ensure_topic(topic, TopicKind::CompactedState).await?;
        let state = Arc::new(RwLock::new(State::default()));
        let (applied_tx, applied_rx) = watch::channel(0_i64);

        let (consumer, high) = crate::table::open_reader(&kafka, "switchyard-registry", topic)
            .await
            .context("cannot start the registry reader")?;

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
            default_level,
            applied_rx,
            write_lock: Mutex::new(()),
            external,
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

    /// Writes one record to the schemas topic and waits until this instance
    /// has applied it (and everything before it).
    async fn write(&self, key: &RecordKey, value: Option<&[u8]>) -> Result<(), RegistryError> {
        let key = serde_json::to_vec(key).expect("record key serializes");
        let landed = match value {
            Some(value) => {
                self.kafka
                    .produce(&self.topic, &key, value, OwnedHeaders::new())
                    .await
            }
            None => self.kafka.produce_tombstone(&self.topic, &key).await,
        }
        .map_err(|error| RegistryError::Store(error.detail))?;
        self.wait_applied(landed.offset + 1, Duration::from_secs(10))
            .await
            .map_err(|error| RegistryError::Timeout(format!("{error:#}")))
    }

    fn parse(text: &str) -> Result<Schema, RegistryError> {
        Schema::parse_str(text).map_err(|error| RegistryError::InvalidSchema(error.to_string()))
    }

    /// The level that applies to a subject: its own, the registry's, or the
    /// configured default.
    pub fn level_of(&self, subject: &str) -> CompatibilityLevel {
        let state = self.state.read().expect("registry state lock");
        state
            .subject_levels
            .get(subject)
            .copied()
            .or(state.global_level)
            .unwrap_or(self.default_level)
    }

    /// Registers a schema under a subject, or returns the version it already
    /// has there. Refused when the subject is read-only or the schema is
    /// not compatible with the subject's earlier versions at its level.
    pub async fn register(
        &self,
        subject: &str,
        text: &str,
    ) -> Result<SubjectVersion, RegistryError> {
        check_subject(subject)?;
        if let Some(external) = &self.external {
            return external.register(subject, text).await;
        }
        let schema = Self::parse(text)?;
        let identity = schema.identity_form();
        let _guard = self.write_lock.lock().await;
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                // Two instances that keep picking the same next id would
                // keep colliding; a random pause, growing with each loss,
                // lets one of them through.
                let spread = 5 * u64::from(attempt.min(20));
                let jitter = (uuid::Uuid::now_v7().as_u128() as u64) % spread.max(1);
                tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
            }
            let (version, id) = {
                let state = self.state.read().expect("registry state lock");
                if let Some(existing) = state.live(subject).find(|v| v.schema.identity == identity)
                {
                    return Ok(existing.clone());
                }
                let mode = state.mode_of(subject);
                if mode != Mode::Readwrite {
                    return Err(RegistryError::NotPermitted(format!(
                        "subject `{subject}` is in {} mode",
                        mode.as_str()
                    )));
                }
                let level = state
                    .subject_levels
                    .get(subject)
                    .copied()
                    .or(state.global_level)
                    .unwrap_or(self.default_level);
                let existing: Vec<Schema> = state
                    .live(subject)
                    .map(|v| v.schema.schema.clone())
                    .collect();
                let reasons = compat::check(level, &schema, &existing);
                if !reasons.is_empty() {
                    return Err(RegistryError::Incompatible {
                        subject: subject.to_string(),
                        level,
                        reasons,
                    });
                }
                let version = state
                    .subjects
                    .get(subject)
                    .and_then(|versions| versions.keys().next_back().copied())
                    .unwrap_or(0)
                    + 1;
                let id = state
                    .by_identity
                    .get(&identity)
                    .map_or(state.max_id + 1, |found| found.id);
                (version, id)
            };
            let value = SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema: text.to_string(),
                deleted: false,
                schema_type: None,
            };
            let value = serde_json::to_vec(&value).expect("record value serializes");
            self.write(&RecordKey::schema(subject, version), Some(&value))
                .await?;
            let won = {
                let state = self.state.read().expect("registry state lock");
                state
                    .subjects
                    .get(subject)
                    .and_then(|versions| versions.get(&version))
                    .filter(|v| v.schema.id == id && v.schema.identity == identity)
                    .cloned()
            };
            if let Some(registered) = won {
                tracing::info!(subject, version, id, "registered schema");
                return Ok(registered);
            }
            tracing::debug!(
                subject,
                version,
                id,
                "another instance took the id or version first; trying again"
            );
        }
        Err(RegistryError::Store(format!(
            "could not register under `{subject}` after {WRITE_ATTEMPTS} attempts: other instances keep writing"
        )))
    }

    /// Finds the version of a subject that holds this schema; with
    /// `deleted`, soft-deleted versions count too.
    pub fn lookup(
        &self,
        subject: &str,
        text: &str,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let identity = Self::parse(text)?.identity_form();
        let state = self.state.read().expect("registry state lock");
        let versions = state
            .subjects
            .get(subject)
            .filter(|versions| deleted || versions.values().any(|v| !v.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        versions
            .values()
            .find(|v| (deleted || !v.deleted) && v.schema.identity == identity)
            .cloned()
            .ok_or(RegistryError::SchemaNotFound)
    }

    /// A schema by its global id.
    pub fn by_id(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        if let Some(external) = &self.external {
            return external.by_id(id);
        }
        self.state
            .read()
            .expect("registry state lock")
            .by_id
            .get(&id)
            .cloned()
    }

    /// Subjects with at least one live version (or any version, with
    /// `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        let state = self.state.read().expect("registry state lock");
        state
            .subjects
            .iter()
            .filter(|(_, versions)| {
                !versions.is_empty() && (deleted || versions.values().any(|v| !v.deleted))
            })
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    /// Version numbers of a subject: live ones, or all with `deleted`.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let state = self.state.read().expect("registry state lock");
        let versions: Vec<u32> = state
            .subjects
            .get(subject)
            .map(|versions| {
                versions
                    .values()
                    .filter(|v| deleted || !v.deleted)
                    .map(|v| v.version)
                    .collect()
            })
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    /// One version of a subject: a number, or `latest` (also `-1`); with
    /// `deleted`, a soft-deleted version too.
    pub fn version(&self, subject: &str, version: &str) -> Result<SubjectVersion, RegistryError> {
        if let Some(external) = &self.external {
            return external.version(subject, version);
        }
        self.version_of(subject, version, false)
    }

    /// [`Registry::version`], optionally including soft-deleted versions.
    pub fn version_of(
        &self,
        subject: &str,
        version: &str,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.state.read().expect("registry state lock");
        let versions = state
            .subjects
            .get(subject)
            .filter(|versions| deleted || versions.values().any(|v| !v.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let found = if version == "latest" || version == "-1" {
            versions.values().rev().find(|v| deleted || !v.deleted)
        } else {
            let number = parse_version(version)?;
            versions.get(&number).filter(|v| deleted || !v.deleted)
        };
        found
            .cloned()
            .ok_or_else(|| RegistryError::VersionNotFound {
                subject: subject.to_string(),
                version: version.to_string(),
            })
    }

    /// Subjects and versions that use a schema id.
    pub fn usages(&self, id: u32, deleted: bool) -> Vec<(String, u32)> {
        let state = self.state.read().expect("registry state lock");
        state
            .subjects
            .values()
            .flat_map(|versions| versions.values())
            .filter(|v| (deleted || !v.deleted) && v.schema.id == id)
            .map(|v| (v.subject.clone(), v.version))
            .collect()
    }

    /// Whether `text` could be registered under `subject` now: against one
    /// version (`Some`), or against the versions its level names (`None`).
    /// Returns the reasons it could not (empty when compatible).
    pub fn check_compatibility(
        &self,
        subject: &str,
        version: Option<&str>,
        text: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let schema = Self::parse(text)?;
        let level = self.level_of(subject);
        let existing: Vec<Schema> = match version {
            Some(version) => vec![self.version(subject, version)?.schema.schema.clone()],
            None => {
                let state = self.state.read().expect("registry state lock");
                state
                    .live(subject)
                    .map(|v| v.schema.schema.clone())
                    .collect()
            }
        };
        Ok(compat::check(level, &schema, &existing))
    }

    fn ensure_writable(&self, subject: Option<&str>) -> Result<(), RegistryError> {
        let state = self.state.read().expect("registry state lock");
        let mode = match subject {
            Some(subject) => state.mode_of(subject),
            None => state.global_mode.unwrap_or(Mode::Readwrite),
        };
        if mode == Mode::Readwrite {
            Ok(())
        } else {
            Err(RegistryError::NotPermitted(format!(
                "the registry{} is in {} mode",
                subject
                    .map(|s| format!("'s subject `{s}`"))
                    .unwrap_or_default(),
                mode.as_str()
            )))
        }
    }

    /// Deletes a subject: softly (its versions are hidden, its settings
    /// kept), or permanently once soft-deleted (versions and its
    /// subject-level settings are gone). Returns the versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        self.ensure_writable(Some(subject))?;
        let _guard = self.write_lock.lock().await;
        let (all, live, has_level, has_mode) = {
            let state = self.state.read().expect("registry state lock");
            let versions = state
                .subjects
                .get(subject)
                .filter(|versions| !versions.is_empty())
                .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
            (
                versions.keys().copied().collect::<Vec<u32>>(),
                versions
                    .values()
                    .filter(|v| !v.deleted)
                    .map(|v| v.version)
                    .collect::<Vec<u32>>(),
                state.subject_levels.contains_key(subject),
                state.subject_modes.contains_key(subject),
            )
        };
        if !permanent {
            let Some(&latest) = live.last() else {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
            };
            let value = DeleteSubjectValue {
                subject: subject.to_string(),
                version: latest,
            };
            let value = serde_json::to_vec(&value).expect("record value serializes");
            self.write(
                &RecordKey::other("DELETE_SUBJECT", Some(subject)),
                Some(&value),
            )
            .await?;
            tracing::info!(subject, versions = ?live, "subject soft-deleted");
            return Ok(live);
        }
        if !live.is_empty() {
            return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
        }
        for version in &all {
            self.write(&RecordKey::schema(subject, *version), None)
                .await?;
        }
        if has_level {
            self.write(&RecordKey::other("CONFIG", Some(subject)), None)
                .await?;
        }
        if has_mode {
            self.write(&RecordKey::other("MODE", Some(subject)), None)
                .await?;
        }
        let value = serde_json::to_vec(&ClearSubjectValue {
            subject: subject.to_string(),
        })
        .expect("record value serializes");
        self.write(
            &RecordKey::other("CLEAR_SUBJECT", Some(subject)),
            Some(&value),
        )
        .await?;
        tracing::info!(subject, versions = ?all, "subject permanently deleted");
        Ok(all)
    }

    /// Deletes one version: softly, or permanently once soft-deleted.
    pub async fn delete_version(
        &self,
        subject: &str,
        version: &str,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        self.ensure_writable(Some(subject))?;
        let _guard = self.write_lock.lock().await;
        let found = self.version_of(subject, version, true)?;
        let number = found.version;
        if !permanent {
            if found.deleted {
                return Err(RegistryError::VersionSoftDeleted {
                    subject: subject.to_string(),
                    version: number,
                });
            }
            let value = SchemaValue {
                subject: subject.to_string(),
                version: number,
                id: found.schema.id,
                schema: found.schema.text.clone(),
                deleted: true,
                schema_type: None,
            };
            let value = serde_json::to_vec(&value).expect("record value serializes");
            self.write(&RecordKey::schema(subject, number), Some(&value))
                .await?;
        } else {
            if !found.deleted {
                return Err(RegistryError::VersionNotSoftDeleted {
                    subject: subject.to_string(),
                    version: number,
                });
            }
            self.write(&RecordKey::schema(subject, number), None)
                .await?;
        }
        tracing::info!(subject, version = number, permanent, "version deleted");
        Ok(number)
    }

    /// The registry-wide level (the configured default when none is set).
    pub fn global_level(&self) -> CompatibilityLevel {
        self.state
            .read()
            .expect("registry state lock")
            .global_level
            .unwrap_or(self.default_level)
    }

    /// A subject's own level; with `default_to_global`, the level that
    /// applies to it.
    pub fn subject_level(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        if default_to_global {
            return Ok(self.level_of(subject));
        }
        self.state
            .read()
            .expect("registry state lock")
            .subject_levels
            .get(subject)
            .copied()
            .ok_or_else(|| RegistryError::SubjectConfigNotFound(subject.to_string()))
    }

    /// Sets the level of a subject, or of the registry (`None`); `None` as
    /// the level removes the setting. Returns the level before.
    pub async fn set_level(
        &self,
        subject: Option<&str>,
        level: Option<CompatibilityLevel>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        if let Some(subject) = subject {
            check_subject(subject)?;
        }
        let _guard = self.write_lock.lock().await;
        let before = match subject {
            Some(subject) => {
                let own = self
                    .state
                    .read()
                    .expect("registry state lock")
                    .subject_levels
                    .get(subject)
                    .copied();
                if level.is_none() && own.is_none() {
                    return Err(RegistryError::SubjectConfigNotFound(subject.to_string()));
                }
                own.unwrap_or_else(|| self.level_of(subject))
            }
            None => self.global_level(),
        };
        let key = RecordKey::other("CONFIG", subject);
        match level {
            Some(level) => {
                let value = serde_json::to_vec(&ConfigValue {
                    compatibility_level: level.as_str().to_string(),
                })
                .expect("record value serializes");
                self.write(&key, Some(&value)).await?;
            }
            None => self.write(&key, None).await?,
        }
        tracing::info!(subject, level = ?level.map(CompatibilityLevel::as_str), "compatibility level set");
        Ok(before)
    }

    /// The registry's mode, or a subject's own (with `default_to_global`,
    /// the mode that applies to it).
    pub fn mode(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        let state = self.state.read().expect("registry state lock");
        match subject {
            None => Ok(state.global_mode.unwrap_or(Mode::Readwrite)),
            Some(subject) if default_to_global => Ok(state.mode_of(subject)),
            Some(subject) => state
                .subject_modes
                .get(subject)
                .copied()
                .ok_or_else(|| RegistryError::SubjectModeNotFound(subject.to_string())),
        }
    }

    /// Sets (or, with `None`, removes) the mode of a subject or of the
    /// registry. Returns the mode before.
    pub async fn set_mode(
        &self,
        subject: Option<&str>,
        mode: Option<Mode>,
    ) -> Result<Mode, RegistryError> {
        if let Some(subject) = subject {
            check_subject(subject)?;
        }
        let _guard = self.write_lock.lock().await;
        let before = self.mode(subject, true)?;
        if let (Some(subject), None) = (subject, mode)
            && self.mode(Some(subject), false).is_err()
        {
            return Err(RegistryError::SubjectModeNotFound(subject.to_string()));
        }
        let key = RecordKey::other("MODE", subject);
        match mode {
            Some(mode) => {
                let value = serde_json::to_vec(&ModeValue {
                    mode: mode.as_str().to_string(),
                })
                .expect("record value serializes");
                self.write(&key, Some(&value)).await?;
            }
            None => self.write(&key, None).await?,
        }
        tracing::info!(subject, mode = ?mode.map(Mode::as_str), "mode set");
        Ok(before)
    }
}

/// A version number from 1.
fn parse_version(version: &str) -> Result<u32, RegistryError> {
    version
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| RegistryError::InvalidVersion(version.to_string()))
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
            // A record this version cannot read, or one that lost a race
            // for an id or version, is skipped by every reader alike.
            tracing::warn!(topic, offset = message.offset(), %error, "skipped schemas record");
        }
        applied_tx.send_replace(message.offset() + 1);
    }
}

fn apply(state: &RwLock<State>, key: Option<&[u8]>, value: Option<&[u8]>) -> anyhow::Result<()> {
    let key: RecordKey = serde_json::from_slice(key.context("record has no key")?)?;
    let mut state = state.write().expect("registry state lock");
    match key.keytype.as_str() {
        "SCHEMA" => apply_schema(&mut state, key, value),
        "CONFIG" => {
            let level = value
                .map(|value| -> anyhow::Result<CompatibilityLevel> {
                    let value: ConfigValue = serde_json::from_slice(value)?;
                    value.compatibility_level.parse().map_err(|_| {
                        anyhow::anyhow!("unknown level `{}`", value.compatibility_level)
                    })
                })
                .transpose()?;
            match (key.subject, level) {
                (Some(subject), Some(level)) => {
                    state.subject_levels.insert(subject, level);
                }
                (Some(subject), None) => {
                    state.subject_levels.remove(&subject);
                }
                (None, level) => state.global_level = level,
            }
            Ok(())
        }
        "MODE" => {
            let mode = value
                .map(|value| -> anyhow::Result<Mode> {
                    let value: ModeValue = serde_json::from_slice(value)?;
                    Mode::parse(&value.mode)
                        .ok_or_else(|| anyhow::anyhow!("unknown mode `{}`", value.mode))
                })
                .transpose()?;
            match (key.subject, mode) {
                (Some(subject), Some(mode)) => {
                    state.subject_modes.insert(subject, mode);
                }
                (Some(subject), None) => {
                    state.subject_modes.remove(&subject);
                }
                (None, mode) => state.global_mode = mode,
            }
            Ok(())
        }
        "DELETE_SUBJECT" => {
            let Some(value) = value else {
                return Ok(());
            };
            let value: DeleteSubjectValue = serde_json::from_slice(value)?;
            if let Some(versions) = state.subjects.get_mut(&value.subject) {
                for version in versions.values_mut() {
                    if version.version <= value.version {
                        version.deleted = true;
                    }
                }
            }
            Ok(())
        }
        "CLEAR_SUBJECT" => {
            let Some(value) = value else {
                return Ok(());
            };
            let value: ClearSubjectValue = serde_json::from_slice(value)?;
            if let Some(versions) = state.subjects.get_mut(&value.subject) {
                versions.retain(|_, version| !version.deleted);
                if versions.is_empty() {
                    state.subjects.remove(&value.subject);
                }
            }
            Ok(())
        }
        // NOOP records only mark a position; unknown kinds come from newer
        // registries and carry nothing this one uses.
        _ => Ok(()),
    }
}

fn apply_schema(state: &mut State, key: RecordKey, value: Option<&[u8]>) -> anyhow::Result<()> {
    let Some(value) = value else {
        // A tombstone removes the version for good (permanent delete).
        if let (Some(subject), Some(version)) = (key.subject, key.version)
            && let Some(versions) = state.subjects.get_mut(&subject)
        {
            versions.remove(&version);
            if versions.is_empty() {
                state.subjects.remove(&subject);
            }
        }
        return Ok(());
    };
    let value: SchemaValue = serde_json::from_slice(value)?;
    if value.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        anyhow::bail!("schema type `{:?}` is not supported", value.schema_type);
    }
    // A record that lost a race changes nothing: check both claims first.
    if let Some(existing) = state
        .subjects
        .get(&value.subject)
        .and_then(|versions| versions.get(&value.version))
    {
        anyhow::ensure!(
            existing.schema.id == value.id,
            "version {} of `{}` already holds schema {}; a registration that lost a race",
            value.version,
            value.subject,
            existing.schema.id
        );
    }
    let schema = match state.by_id.get(&value.id) {
        Some(existing) => {
            if existing.text != value.schema {
                let identity = Schema::parse_str(&value.schema)?.identity_form();
                anyhow::ensure!(
                    existing.identity == identity,
                    "id {} already belongs to another schema; a registration that lost a race",
                    value.id
                );
            }
            Arc::clone(existing)
        }
        None => {
            let parsed = Schema::parse_str(&value.schema)?;
            let identity = parsed.identity_form();
            let registered = Arc::new(RegisteredSchema {
                id: value.id,
                text: value.schema.clone(),
                schema: parsed,
                identity: identity.clone(),
            });
            state.by_id.insert(value.id, Arc::clone(&registered));
            state
                .by_identity
                .entry(identity)
                .or_insert_with(|| Arc::clone(&registered));
            registered
        }
    };
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
    state.max_id = state.max_id.max(value.id);
    Ok(())
}
