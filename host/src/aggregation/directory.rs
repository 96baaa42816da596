//! Which instance owns which partitions of each aggregator, so a state
//! query reaching any instance can be forwarded to the owner.
//!
//! Every instance announces, after each rebalance, the partitions it owns
//! per consumer group in a compacted topic (`aggregation.directory_topic`),
//! keyed `<group>|<instance id>`, with the URL of its REST API. Every
//! instance reads the topic like the routes. An announcement can lag a
//! rebalance by the time one write takes; a query that reaches a former
//! owner in that window is answered "moving, retry".

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::kafka::Kafka;
use crate::table::GlobalTable;

/// One instance's announcement for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Consumer group.
    pub group: String,
    /// Instance id.
    pub instance: String,
    /// Base URL of its REST API.
    pub url: String,
    /// Partitions it owns.
    pub partitions: Vec<i32>,
    /// Where the announcement sits in the directory topic: a later one wins
    /// over an older claim (say, of an instance that was killed and could
    /// not withdraw).
    #[serde(skip)]
    pub offset: i64,
}

/// See the module docs.
pub struct Directory {
    table: GlobalTable,
    entries: Arc<RwLock<BTreeMap<String, Announcement>>>,
    instance: String,
    url: OnceLock<String>,
}

impl Directory {
    /// Reads the directory topic and follows it.
    pub async fn start(kafka: Arc<Kafka>, topic: &str) -> anyhow::Result<Directory> {
        let entries = Arc::new(RwLock::new(BTreeMap::new()));
        let applied = Arc::clone(&entries);
        let apply = Box::new(move |key: &str, value: Option<&[u8]>, offset: i64| {
            let mut entries = applied.write().expect("directory lock");
            match value {
                None => {
                    entries.remove(key);
                }
                Some(value) => {
                    let mut announcement: Announcement = serde_json::from_slice(value)?;
                    announcement.offset = offset;
                    entries.insert(key.to_string(), announcement);
                }
            }
            Ok(())
        });
        let table = GlobalTable::start(kafka, topic, apply).await?;
        Ok(Directory {
            table,
            entries,
            instance: uuid::Uuid::now_v7().to_string(),
            url: OnceLock::new(),
        })
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Sets the URL this instance announces (once, when serving starts).
    pub fn set_url(&self, url: String) {
        let _ = self.url.set(url);
    }

    fn key(&self, group: &str) -> String {
        format!("{group}|{}", self.instance)
    }

    /// Announces the partitions this instance owns in a group.
    pub async fn announce(&self, group: &str, partitions: &[i32]) {
        let announcement = Announcement {
            group: group.to_string(),
            instance: self.instance.clone(),
            url: self.url.get().cloned().unwrap_or_default(),
            partitions: partitions.to_vec(),
            offset: 0,
        };
        let value = serde_json::to_vec(&announcement).expect("announcements serialize");
        if let Err(error) = self.table.write(&self.key(group), Some(&value)).await {
            tracing::warn!(group, error = %error.detail, "cannot announce owned partitions; state queries may be answered \"moving\"");
        }
    }

    /// Withdraws this instance from a group.
    pub async fn forget(&self, group: &str) {
        if let Err(error) = self.table.write(&self.key(group), None).await {
            tracing::debug!(group, error = %error.detail, "cannot withdraw from the directory");
        }
    }

    /// The instance that most recently announced owning a partition of a
    /// group, unless that is this one.
    pub fn owner(&self, group: &str, partition: i32) -> Option<Announcement> {
        self.entries
            .read()
            .expect("directory lock")
            .values()
            .filter(|a| a.group == group && a.partitions.contains(&partition))
            .max_by_key(|a| a.offset)
            .filter(|a| a.instance != self.instance)
            .cloned()
    }
}
