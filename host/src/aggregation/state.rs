//! The keyed state of one aggregator on this instance: one store per input
//! partition it owns, each mirrored by the same partition of a compacted
//! changelog topic, from which it is rebuilt when the partition arrives.
//!
//! A store key is the event key, or `<key>@<window start millis>` when the
//! aggregator uses windows. Each entry keeps the plugin's state (JSON
//! text), the last event time folded into it and, with windows, the
//! window's bounds. Stream time (the largest event time seen on the
//! partition) decides when windows close and idle entries expire, so the
//! outcome depends on the events only, not on when they are processed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::plugin::manifest::{AggregateSettings, WindowKind};

/// One entry as kept in memory and in the changelog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The event key.
    pub key: String,
    /// The plugin's state, JSON text.
    pub state: String,
    /// Largest event time folded into it, Unix milliseconds.
    pub last_event_ms: i64,
    /// Window start, with windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_ms: Option<i64>,
    /// Window end (exclusive for tumbling; last event for sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end_ms: Option<i64>,
}

/// The state of one partition.
#[derive(Debug, Default)]
pub struct PartitionStore {
    /// Entries by store key.
    pub entries: HashMap<String, Entry>,
    /// Largest event time seen, Unix milliseconds.
    pub stream_time_ms: i64,
    /// The loop (of this instance's loops for the aggregator) that owns
    /// the partition now. Loops share one map of stores; a loop that lost
    /// its partitions without hearing of it yet (its member was thrown out
    /// of the group) must neither change nor remove a store that another
    /// loop has since restored.
    pub owner: usize,
}

/// Where an event's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Store key.
    pub store_key: String,
    /// Window bounds, with windows.
    pub window: Option<(i64, i64)>,
    /// A session that grows backwards moves to a new store key; the old one
    /// is deleted.
    pub replaces: Option<String>,
}

/// Builds a store key.
pub fn store_key(key: &str, window_start_ms: Option<i64>) -> String {
    match window_start_ms {
        Some(start) => format!("{key}@{start}"),
        None => key.to_string(),
    }
}

impl PartitionStore {
    /// Finds (or makes room for) the state an event at `time_ms` folds
    /// into. None: the event is late, its window already closed.
    pub fn slot(&self, settings: &AggregateSettings, key: &str, time_ms: i64) -> Option<Slot> {
        let grace = settings.grace_ms as i64;
        match settings.window {
            WindowKind::None => Some(Slot {
                store_key: key.to_string(),
                window: None,
                replaces: None,
            }),
            WindowKind::Tumbling => {
                let size = settings.size_ms as i64;
                let start = time_ms - time_ms.rem_euclid(size);
                let end = start + size;
                if end + grace <= self.stream_time_ms {
                    return None;
                }
                Some(Slot {
                    store_key: store_key(key, Some(start)),
                    window: Some((start, end)),
                    replaces: None,
                })
            }
            WindowKind::Session => {
                let gap = settings.gap_ms as i64;
                // The session this event falls into, if any; sessions of a
                // key are never within `gap` of each other, so at most one
                // is near. (An out-of-order event that would bridge two
                // sessions joins the nearer one; sessions are not merged.)
                let near = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.key == key)
                    .filter_map(|(k, e)| Some((k, e.window_start_ms?, e.window_end_ms?)))
                    .filter(|(_, start, end)| time_ms >= start - gap && time_ms <= end + gap)
                    .min_by_key(|(_, start, end)| {
                        if time_ms < *start {
                            start - time_ms
                        } else {
                            (time_ms - end).max(0)
                        }
                    });
                match near {
                    Some((old_key, start, end)) => {
                        let (start, end) = (start.min(time_ms), end.max(time_ms));
                        let new_key = store_key(key, Some(start));
                        Some(Slot {
                            replaces: (new_key != *old_key).then(|| old_key.clone()),
                            store_key: new_key,
                            window: Some((start, end)),
                        })
                    }
                    None => {
                        if time_ms + gap + grace <= self.stream_time_ms {
                            return None;
                        }
                        Some(Slot {
                            store_key: store_key(key, Some(time_ms)),
                            window: Some((time_ms, time_ms)),
                            replaces: None,
                        })
                    }
                }
            }
        }
    }

    /// Store keys whose window closed (end + grace passed) or that stayed
    /// idle past the time-to-live, at the current stream time.
    pub fn expired(&self, settings: &AggregateSettings) -> Vec<String> {
        let now = self.stream_time_ms;
        let grace = settings.grace_ms as i64;
        let ttl = settings.idle_ttl_ms as i64;
        self.entries
            .iter()
            .filter(|(_, entry)| {
                let window_closed = match (settings.window, entry.window_end_ms) {
                    (WindowKind::Tumbling, Some(end)) => end + grace <= now,
                    (WindowKind::Session, Some(end)) => end + settings.gap_ms as i64 + grace <= now,
                    _ => false,
                };
                let idle = ttl > 0 && entry.last_event_ms + ttl <= now;
                window_closed || idle
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// Rebuilds one partition's store from its changelog partition, reading in
/// `read_committed` mode up to the end. Waits for a previous owner's open
/// transaction to end (aborted by fencing or by its timeout), up to
/// `within`.
pub fn restore(
    consumer_config: &rdkafka::ClientConfig,
    changelog: &str,
    partition: i32,
    within: Duration,
) -> anyhow::Result<PartitionStore> {
    let consumer: BaseConsumer = consumer_config.create()?;
    let (low, high) = consumer
        .fetch_watermarks(changelog, partition, Duration::from_secs(10))
        .with_context(|| format!("cannot read the end of `{changelog}` partition {partition}"))?;
    let mut store = PartitionStore::default();
    if high <= low {
        return Ok(store);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(changelog, partition, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let started = Instant::now();
    loop {
        let position = consumer
            .position()?
            .find_partition(changelog, partition)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(0);
        if position >= high {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "`{changelog}` partition {partition} did not reach offset {high} within {within:?} (position {position})"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        match message.payload() {
            None => {
                store.entries.remove(key);
            }
            Some(value) => {
                let entry: Entry = serde_json::from_slice(value).with_context(|| {
                    format!(
                        "`{changelog}` partition {partition} offset {} is not a state entry",
                        message.offset()
                    )
                })?;
                store.stream_time_ms = store.stream_time_ms.max(entry.last_event_ms);
                store.entries.insert(key.to_string(), entry);
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, start: i64, end: i64) -> Entry {
        Entry {
            key: key.to_string(),
            state: "{}".to_string(),
            last_event_ms: end,
            window_start_ms: Some(start),
            window_end_ms: Some(end),
        }
    }

    #[test]
    fn tumbling_windows_and_late_events() {
        let settings = AggregateSettings {
            window: WindowKind::Tumbling,
            size_ms: 1000,
            grace_ms: 500,
            ..AggregateSettings::default()
        };
        let mut store = PartitionStore::default();
        let slot = store.slot(&settings, "c1", 2_500).unwrap();
        assert_eq!(slot.store_key, "c1@2000");
        assert_eq!(slot.window, Some((2000, 3000)));
        store.stream_time_ms = 3_400;
        assert!(store.slot(&settings, "c1", 2_999).is_some(), "within grace");
        store.stream_time_ms = 3_500;
        assert!(store.slot(&settings, "c1", 2_999).is_none(), "late");
        store
            .entries
            .insert("c1@2000".to_string(), entry("c1", 2000, 3000));
        assert_eq!(store.expired(&settings), vec!["c1@2000".to_string()]);
    }

    #[test]
    fn sessions_grow_and_split_on_gaps() {
        let settings = AggregateSettings {
            window: WindowKind::Session,
            gap_ms: 100,
            ..AggregateSettings::default()
        };
        let mut store = PartitionStore::default();
        store
            .entries
            .insert("c1@1000".to_string(), entry("c1", 1000, 1050));
        let later = store.slot(&settings, "c1", 1_120).unwrap();
        assert_eq!(later.store_key, "c1@1000");
        assert_eq!(later.window, Some((1000, 1120)));
        let earlier = store.slot(&settings, "c1", 950).unwrap();
        assert_eq!(earlier.store_key, "c1@950");
        assert_eq!(earlier.replaces.as_deref(), Some("c1@1000"));
        let apart = store.slot(&settings, "c1", 1_300).unwrap();
        assert_eq!(apart.store_key, "c1@1300");
        assert_eq!(
            store.slot(&settings, "c2", 1_000).unwrap().store_key,
            "c2@1000"
        );
    }

    #[test]
    fn idle_entries_expire_by_stream_time() {
        let settings = AggregateSettings {
            idle_ttl_ms: 1000,
            ..AggregateSettings::default()
        };
        let mut store = PartitionStore::default();
        store.entries.insert(
            "c1".to_string(),
            Entry {
                key: "c1".to_string(),
                state: "{}".to_string(),
                last_event_ms: 5_000,
                window_start_ms: None,
                window_end_ms: None,
            },
        );
        store.stream_time_ms = 5_999;
        assert!(store.expired(&settings).is_empty());
        store.stream_time_ms = 6_000;
        assert_eq!(store.expired(&settings), vec!["c1".to_string()]);
    }
}
