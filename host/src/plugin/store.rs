//! The plugin store: every uploaded version of every plugin, shared by all
//! host instances through Kafka.
//!
//! Two single-partition compacted topics hold it:
//!
//! - `_switchyard_plugins`: metadata. `version:<name>@<version>` records hold
//!   a version's manifest and the sha256 of its component; `plugin:<name>`
//!   records hold which version is active, the activation history (for
//!   rollback) and whether the plugin is paused. A tombstone deletes.
//! - `_switchyard_plugin_artifacts`: the components themselves, content
//!   addressed: `<sha256>:<chunk>` records of at most [`CHUNK_BYTES`] each,
//!   so a 64 MiB component fits Kafka's record limits. The same bytes
//!   uploaded twice are stored once.
//!
//! Every instance reads the metadata topic from the start and follows it;
//! components are fetched from the artifacts topic when a version becomes
//! active and kept in a local folder by hash, and compiled code is cached by
//! the runtime, so activating a version on every instance takes well under
//! the 2 seconds the design allows.
//!
//! Known limits, for now: two admins changing the same plugin at the same
//! moment on two instances both win in topic order (last write wins), and
//! deleting a plugin leaves its component bytes in the artifacts topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::watch;

use super::Manifest;
use crate::kafka::{Kafka, TopicKind};

/// Metadata topic.
pub const PLUGINS_TOPIC: &str = "_switchyard_plugins";

/// Components topic.
pub const ARTIFACTS_TOPIC: &str = "_switchyard_plugin_artifacts";

/// Largest component accepted, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// Size of one component chunk on Kafka, in bytes.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// One uploaded version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Plugin name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// The manifest as uploaded (TOML).
    pub manifest: String,
    /// sha256 of the component, lower-case hex.
    pub sha256: String,
    /// Size of the component, in bytes.
    pub size: usize,
    /// When it was uploaded, RFC 3339.
    pub uploaded_at: String,
}

/// The state of one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginState {
    /// The active version, if any.
    pub active: Option<String>,
    /// Versions activated before the current one, oldest first.
    pub history: Vec<String>,
    /// Why the plugin is paused, if it is.
    pub paused: Option<String>,
    /// Records an admin asked to skip: the pipeline dead-letters them
    /// (class `skipped`) instead of handling them.
    #[serde(default)]
    pub skip: Vec<RecordPosition>,
}

/// Where a record is on Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The reason shown when an admin pauses a plugin without giving one.
pub const DEFAULT_PAUSE_REASON: &str = "paused by an admin";

/// Most skip requests kept per plugin; the oldest are dropped first.
pub const MAX_SKIPS: usize = 100;

/// Everything known about one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginEntry {
    /// Name.
    pub name: String,
    /// Every version, by version string.
    pub versions: BTreeMap<String, VersionRecord>,
    /// Activation state.
    pub state: PluginState,
}

impl PluginEntry {
    /// The active version's record.
    pub fn active_version(&self) -> Option<&VersionRecord> {
        self.state
            .active
            .as_ref()
            .and_then(|v| self.versions.get(v))
    }
}

/// Store failures as the admin API reports them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such plugin.
    #[error("plugin `{0}` does not exist")]
    UnknownPlugin(String),
    /// No such version.
    #[error("plugin `{name}` has no version `{version}`")]
    UnknownVersion {
        /// Plugin.
        name: String,
        /// Version asked for.
        version: String,
    },
    /// The version exists already with other content.
    #[error(
        "plugin `{name}` already has a version `{version}` with different content; versions are immutable, upload a new version"
    )]
    VersionExists {
        /// Plugin.
        name: String,
        /// Version.
        version: String,
    },
    /// Nothing to roll back to.
    #[error("plugin `{0}` has no earlier active version to roll back to")]
    NoRollback(String),
    /// Kafka failed.
    #[error("the plugin store could not write to kafka: {0}")]
    Kafka(String),
}

/// The store, as materialized by this instance.
pub struct PluginStore {
    kafka: Arc<Kafka>,
    state: Arc<RwLock<BTreeMap<String, PluginEntry>>>,
    applied_rx: watch::Receiver<i64>,
    /// Bumped after every applied record, for whoever reconciles.
    changes_rx: watch::Receiver<u64>,
    artifacts_dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Record {
    Version(VersionRecord),
    Plugin { name: String, state: PluginState },
}

impl PluginStore {
    /// Creates the topics if needed, reads the metadata to the end and
    /// follows it.
    pub async fn start(
        kafka: Arc<Kafka>,
        artifacts_dir: PathBuf,
    ) -> anyhow::Result<Arc<PluginStore>> {
        kafka
            .ensure_topic(PLUGINS_TOPIC, TopicKind::CompactedState)
            .await?;
        kafka
            .ensure_topic(ARTIFACTS_TOPIC, TopicKind::CompactedState)
            .await?;
        std::fs::create_dir_all(&artifacts_dir).with_context(|| {
            format!(
                "cannot create the plugin artifact folder `{}`",
                artifacts_dir.display()
            )
        })?;

        let state = Arc::new(RwLock::new(BTreeMap::new()));
        let (applied_tx, applied_rx) = watch::channel(0_i64);
        let (changes_tx, changes_rx) = watch::channel(0_u64);
        let (consumer, high) =
            crate::table::open_reader(&kafka, "switchyard-plugin-store", PLUGINS_TOPIC).await?;
        let reader_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("plugin-store-reader".to_string())
            .spawn(move || read_loop(&consumer, &reader_state, &applied_tx, &changes_tx))?;
        let store = Arc::new(PluginStore {
            kafka,
            state,
            applied_rx,
            changes_rx,
            artifacts_dir,
        });
        store.wait_applied(high).await?;
        Ok(store)
    }

    async fn wait_applied(&self, offset: i64) -> anyhow::Result<()> {
        let mut applied = self.applied_rx.clone();
        tokio::time::timeout(
            Duration::from_secs(30),
            applied.wait_for(|next| *next >= offset),
        )
        .await
        .context("plugin store did not catch up in time")?
        .context("plugin store reader stopped")?;
        Ok(())
    }

    /// A receiver that changes whenever the store does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes_rx.clone()
    }

    /// Every plugin.
    pub fn list(&self) -> Vec<PluginEntry> {
        self.state
            .read()
            .expect("plugin store lock")
            .values()
            .cloned()
            .collect()
    }

    /// One plugin.
    pub fn get(&self, name: &str) -> Result<PluginEntry, StoreError> {
        self.state
            .read()
            .expect("plugin store lock")
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownPlugin(name.to_string()))
    }

    async fn write(
        &self,
        topic: &str,
        key: &str,
        value: Option<Vec<u8>>,
        headers: OwnedHeaders,
    ) -> Result<i64, StoreError> {
        let landed = match value {
            Some(value) => {
                self.kafka
                    .produce(topic, key.as_bytes(), &value, headers)
                    .await
            }
            None => self.kafka.produce_tombstone(topic, key.as_bytes()).await,
        }
        .map_err(|error| StoreError::Kafka(error.detail))?;
        Ok(landed.offset)
    }

    async fn write_record(&self, key: &str, record: Option<&Record>) -> Result<(), StoreError> {
        let value = record.map(|r| serde_json::to_vec(r).expect("records serialize"));
        let offset = self
            .write(PLUGINS_TOPIC, key, value, OwnedHeaders::new())
            .await?;
        self.wait_applied(offset + 1)
            .await
            .map_err(|e| StoreError::Kafka(format!("{e:#}")))
    }

    /// Stores a validated component and its version record. Uploading the
    /// same version with the same bytes again is a no-op.
    pub async fn put_version(
        &self,
        manifest: &Manifest,
        manifest_text: &str,
        component: &[u8],
    ) -> Result<VersionRecord, StoreError> {
        let sha256 = hex(&sha2::Sha256::digest(component));
        if let Ok(entry) = self.get(&manifest.name)
            && let Some(existing) = entry.versions.get(&manifest.version)
        {
            if existing.sha256 == sha256 && existing.manifest == manifest_text {
                return Ok(existing.clone());
            }
            return Err(StoreError::VersionExists {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            });
        }
        let chunks = component.chunks(CHUNK_BYTES).count().max(1);
        for (index, chunk) in component.chunks(CHUNK_BYTES).enumerate() {
            let chunks_text = chunks.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "chunks",
                value: Some(chunks_text.as_str()),
            });
            self.write(
                ARTIFACTS_TOPIC,
                &format!("{sha256}:{index}"),
                Some(chunk.to_vec()),
                headers,
            )
            .await?;
        }
        let _ = std::fs::write(self.artifacts_dir.join(format!("{sha256}.wasm")), component);
        let record = VersionRecord {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            manifest: manifest_text.to_string(),
            sha256,
            size: component.len(),
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        self.write_record(
            &format!("version:{}@{}", record.name, record.version),
            Some(&Record::Version(record.clone())),
        )
        .await?;
        Ok(record)
    }

    async fn put_state(&self, name: &str, state: PluginState) -> Result<PluginEntry, StoreError> {
        self.write_record(
            &format!("plugin:{name}"),
            Some(&Record::Plugin {
                name: name.to_string(),
                state,
            }),
        )
        .await?;
        self.get(name)
    }

    /// Makes a version the active one.
    pub async fn activate(&self, name: &str, version: &str) -> Result<PluginEntry, StoreError> {
        let entry = self.get(name)?;
        if !entry.versions.contains_key(version) {
            return Err(StoreError::UnknownVersion {
                name: name.to_string(),
                version: version.to_string(),
            });
        }
        let mut state = entry.state.clone();
        if state.active.as_deref() == Some(version) {
            return Ok(entry);
        }
        if let Some(previous) = state.active.take() {
            state.history.push(previous);
        }
        state.active = Some(version.to_string());
        self.put_state(name, state).await
    }

    /// Goes back to the version active before the current one.
    pub async fn rollback(&self, name: &str) -> Result<PluginEntry, StoreError> {
        let entry = self.get(name)?;
        let mut state = entry.state.clone();
        let previous = state
            .history
            .pop()
            .ok_or_else(|| StoreError::NoRollback(name.to_string()))?;
        state.active = Some(previous);
        self.put_state(name, state).await
    }

    /// Pauses (with a reason) or resumes a plugin.
    pub async fn set_paused(
        &self,
        name: &str,
        reason: Option<String>,
    ) -> Result<PluginEntry, StoreError> {
        let entry = self.get(name)?;
        let mut state = entry.state.clone();
        state.paused = reason;
        self.put_state(name, state).await
    }

    /// Asks every instance to skip one record for this plugin.
    pub async fn skip(
        &self,
        name: &str,
        position: RecordPosition,
    ) -> Result<PluginEntry, StoreError> {
        let entry = self.get(name)?;
        let mut state = entry.state.clone();
        if !state.skip.contains(&position) {
            state.skip.push(position);
        }
        while state.skip.len() > MAX_SKIPS {
            state.skip.remove(0);
        }
        self.put_state(name, state).await
    }

    /// Whether an admin asked to skip this record for this plugin.
    pub fn is_skipped(&self, name: &str, topic: &str, partition: i32, offset: i64) -> bool {
        self.state
            .read()
            .expect("plugin store lock")
            .get(name)
            .is_some_and(|entry| {
                entry
                    .state
                    .skip
                    .iter()
                    .any(|p| p.offset == offset && p.partition == partition && p.topic == topic)
            })
    }

    /// Deletes a plugin and all its versions.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let entry = self.get(name)?;
        for version in entry.versions.keys() {
            self.write_record(&format!("version:{name}@{version}"), None)
                .await?;
        }
        self.write_record(&format!("plugin:{name}"), None).await
    }

    /// The component bytes of a version: from the local folder when this
    /// instance has them, else from the artifacts topic. Checked against the
    /// recorded sha256 either way.
    pub async fn component(&self, record: &VersionRecord) -> anyhow::Result<Vec<u8>> {
        let local = self.artifacts_dir.join(format!("{}.wasm", record.sha256));
        if let Ok(bytes) = std::fs::read(&local)
            && hex(&sha2::Sha256::digest(&bytes)) == record.sha256
        {
            return Ok(bytes);
        }
        let bytes = fetch_artifact(&self.kafka, &record.sha256).await?;
        anyhow::ensure!(
            hex(&sha2::Sha256::digest(&bytes)) == record.sha256,
            "component of `{}@{}` on kafka does not match its sha256",
            record.name,
            record.version
        );
        let _ = std::fs::write(&local, &bytes);
        Ok(bytes)
    }
}

/// Reads the artifacts topic to its end and assembles one component.
async fn fetch_artifact(kafka: &Kafka, sha256: &str) -> anyhow::Result<Vec<u8>> {
    let high = crate::table::end_offset(kafka, ARTIFACTS_TOPIC).await?;
    let consumer: BaseConsumer = kafka.consumer_config("switchyard-plugin-store").create()?;
    let sha256 = sha256.to_string();
    tokio::task::spawn_blocking(move || {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(ARTIFACTS_TOPIC, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let prefix = format!("{sha256}:");
        let mut chunks: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut total = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut next = 0;
        while next < high {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "reading `{ARTIFACTS_TOPIC}` took too long"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            next = message.offset() + 1;
            let Some(index) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            match message.payload() {
                Some(bytes) => {
                    chunks.insert(index, bytes.to_vec());
                }
                None => {
                    chunks.remove(&index);
                }
            }
            if let Some(header) = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "chunks"))
                && let Some(count) = header
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<usize>().ok())
            {
                total = Some(count);
            }
        }
        let total =
            total.with_context(|| format!("component `{sha256}` is not in `{ARTIFACTS_TOPIC}`"))?;
        anyhow::ensure!(
            (0..total).all(|i| chunks.contains_key(&i)),
            "component `{sha256}` is incomplete in `{ARTIFACTS_TOPIC}`"
        );
        Ok(chunks.into_values().take(total).flatten().collect())
    })
    .await?
}

fn read_loop(
    consumer: &BaseConsumer,
    state: &RwLock<BTreeMap<String, PluginEntry>>,
    applied_tx: &watch::Sender<i64>,
    changes_tx: &watch::Sender<u64>,
) {
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
                tracing::warn!(%error, "plugin store reader could not read; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if let Err(error) = apply(state, message.key(), message.payload()) {
            tracing::warn!(offset = message.offset(), %error, "skipped plugin store record");
        }
        applied_tx.send_replace(message.offset() + 1);
        changes_tx.send_modify(|generation| *generation += 1);
    }
}

fn apply(
    state: &RwLock<BTreeMap<String, PluginEntry>>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> anyhow::Result<()> {
    let key = std::str::from_utf8(key.context("record has no key")?)?;
    let mut state = state.write().expect("plugin store lock");
    match value {
        None => {
            if let Some(name) = key.strip_prefix("plugin:") {
                state.remove(name);
            } else if let Some((name, version)) = key
                .strip_prefix("version:")
                .and_then(|nv| nv.split_once('@'))
                && let Some(entry) = state.get_mut(name)
            {
                entry.versions.remove(version);
            }
        }
        Some(value) => match serde_json::from_slice::<Record>(value)? {
            Record::Version(record) => {
                let entry = state
                    .entry(record.name.clone())
                    .or_insert_with(|| PluginEntry {
                        name: record.name.clone(),
                        ..PluginEntry::default()
                    });
                entry.versions.insert(record.version.clone(), record);
            }
            Record::Plugin {
                name,
                state: plugin_state,
            } => {
                let entry = state.entry(name.clone()).or_insert_with(|| PluginEntry {
                    name,
                    ..PluginEntry::default()
                });
                entry.state = plugin_state;
            }
        },
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
