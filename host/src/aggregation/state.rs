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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::plugin::manifest::{AggregateSettings, WindowKind};

/// One entry as kept in memory and in the changelog.
///
/// In the changelog an entry is a JSON object whose `value` is the plugin's
/// state as it is (not a string holding it, which would have to be escaped
/// on every write); entries written by earlier versions hold the state as
/// text in `state`, and are still read.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The event key.
    pub key: String,
    /// The plugin's state, checked to be JSON when the plugin returned it.
    pub state: Box<RawValue>,
    /// Largest event time folded into it, Unix milliseconds.
    pub last_event_ms: i64,
    /// Window start, with windows.
    pub window_start_ms: Option<i64>,
    /// Window end (exclusive for tumbling; last event for sessions).
    pub window_end_ms: Option<i64>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key == other.key
            && self.state.get() == other.state.get()
            && self.last_event_ms == other.last_event_ms
            && self.window_start_ms == other.window_start_ms
            && self.window_end_ms == other.window_end_ms
    }
}

/// An entry as written to the changelog.
#[derive(Serialize)]
struct StoredOut<'a> {
    key: &'a str,
    value: &'a RawValue,
    last_event_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_start_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_end_ms: Option<i64>,
}

/// An entry as read from the changelog, in either layout.
#[derive(Deserialize)]
struct StoredIn {
    key: String,
    #[serde(default)]
    value: Option<Box<RawValue>>,
    /// The earlier layout: the state as JSON text.
    #[serde(default)]
    state: Option<String>,
    last_event_ms: i64,
    #[serde(default)]
    window_start_ms: Option<i64>,
    #[serde(default)]
    window_end_ms: Option<i64>,
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredOut {
            key: &self.key,
            value: &self.state,
            last_event_ms: self.last_event_ms,
            window_start_ms: self.window_start_ms,
            window_end_ms: self.window_end_ms,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Entry, D::Error> {
        use serde::de::Error;
        let stored = StoredIn::deserialize(deserializer)?;
        let state = match (stored.value, stored.state) {
            (Some(value), _) => value,
            (None, Some(text)) => RawValue::from_string(text)
                .map_err(|e| D::Error::custom(format!("`state` is not JSON text: {e}")))?,
            (None, None) => return Err(D::Error::missing_field("value")),
        };
        Ok(Entry {
            key: stored.key,
            state,
            last_event_ms: stored.last_event_ms,
            window_start_ms: stored.window_start_ms,
            window_end_ms: stored.window_end_ms,
        })
    }
}

/// The state of one partition.
///
/// Entries are indexed so that neither expiry nor finding a key's windows
/// scans the partition: expiry takes entries from the front of an ordered
/// index for as long as they are due, and windows are listed per key.
#[derive(Debug, Default)]
pub struct PartitionStore {
    /// Entries by store key.
    entries: HashMap<String, Entry>,
    /// `(window end, store key)` of every windowed entry: closed windows
    /// are at the front.
    by_window_end: BTreeSet<(i64, String)>,
    /// Store keys of the windowed entries of each event key.
    windows_of: HashMap<String, BTreeSet<String>>,
    /// `(last event time, store key)` of every entry, kept only while an
    /// idle time-to-live is set (built by the first [`Self::expired`] that
    /// sees one): idle entries are at the front.
    by_last_event: Option<BTreeSet<(i64, String)>>,
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
    /// The store keys whose states the event folds into, earliest first:
    /// the slot's own, or, with sessions, every session the event joins
    /// (two when it falls within the gap of both; their states are merged
    /// first). Those other than `store_key` are deleted: a session that
    /// grows backwards or absorbs another moves to a new store key.
    pub joins: Vec<String>,
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
                joins: vec![key.to_string()],
            }),
            WindowKind::Tumbling => {
                let size = settings.size_ms as i64;
                let start = time_ms - time_ms.rem_euclid(size);
                let end = start + size;
                if end + grace <= self.stream_time_ms {
                    return None;
                }
                let store_key = store_key(key, Some(start));
                Some(Slot {
                    joins: vec![store_key.clone()],
                    store_key,
                    window: Some((start, end)),
                })
            }
            WindowKind::Session => {
                let gap = settings.gap_ms as i64;
                // The sessions this event falls within the gap of. Sessions
                // of a key are more than `gap` apart, so that is at most
                // two: an out-of-order event between them joins them.
                let mut near: Vec<(&String, i64, i64)> = self
                    .windows(key)
                    .filter_map(|(k, e)| Some((k, e.window_start_ms?, e.window_end_ms?)))
                    .filter(|(_, start, end)| time_ms >= start - gap && time_ms <= end + gap)
                    .collect();
                near.sort_by_key(|(_, start, _)| *start);
                let Some(&(_, first_start, _)) = near.first() else {
                    if time_ms + gap + grace <= self.stream_time_ms {
                        return None;
                    }
                    let store_key = store_key(key, Some(time_ms));
                    return Some(Slot {
                        joins: Vec::new(),
                        store_key,
                        window: Some((time_ms, time_ms)),
                    });
                };
                let start = first_start.min(time_ms);
                let end = near
                    .iter()
                    .map(|(_, _, end)| *end)
                    .max()
                    .unwrap_or(time_ms)
                    .max(time_ms);
                Some(Slot {
                    store_key: store_key(key, Some(start)),
                    window: Some((start, end)),
                    joins: near.into_iter().map(|(k, _, _)| k.clone()).collect(),
                })
            }
        }
    }

    /// Store keys whose window closed (end + grace passed) or that stayed
    /// idle past the time-to-live, at the current stream time. Costs the
    /// number of expired entries, not the size of the store.
    pub fn expired(&mut self, settings: &AggregateSettings) -> Vec<String> {
        let now = self.stream_time_ms;
        let grace = settings.grace_ms as i64;
        let ttl = settings.idle_ttl_ms as i64;
        let mut expired = Vec::new();
        let window_after = match settings.window {
            WindowKind::None => None,
            WindowKind::Tumbling => Some(grace),
            WindowKind::Session => Some(settings.gap_ms as i64 + grace),
        };
        if let Some(after) = window_after {
            expired.extend(
                self.by_window_end
                    .iter()
                    .take_while(|(end, _)| end + after <= now)
                    .map(|(_, key)| key.clone()),
            );
        }
        if ttl > 0 {
            let index = self.by_last_event.get_or_insert_with(|| {
                self.entries
                    .iter()
                    .map(|(key, entry)| (entry.last_event_ms, key.clone()))
                    .collect()
            });
            for (_, key) in index.iter().take_while(|(last, _)| last + ttl <= now) {
                if !expired.contains(key) {
                    expired.push(key.clone());
                }
            }
        } else {
            // No time-to-live (any more): no index to keep up.
            self.by_last_event = None;
        }
        expired
    }

    /// The entry under a store key.
    pub fn get(&self, store_key: &str) -> Option<&Entry> {
        self.entries.get(store_key)
    }

    /// How many entries the partition holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the partition holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries of an event key: its unwindowed entry, or its windows.
    pub fn entries_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .get(key)
            .filter(|entry| entry.key == key)
            .into_iter()
            .chain(self.windows(key).map(|(_, entry)| entry))
    }

    /// The windowed entries of an event key, with their store keys.
    fn windows<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        self.windows_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|store_key| self.entries.get_key_value(store_key))
    }

    /// Puts an entry under a store key, returning the one it replaces.
    pub fn insert(&mut self, store_key: String, entry: Entry) -> Option<Entry> {
        let before = self.remove(&store_key);
        if let Some(end) = entry.window_end_ms {
            self.by_window_end.insert((end, store_key.clone()));
            self.windows_of
                .entry(entry.key.clone())
                .or_default()
                .insert(store_key.clone());
        }
        if let Some(index) = &mut self.by_last_event {
            index.insert((entry.last_event_ms, store_key.clone()));
        }
        self.entries.insert(store_key, entry);
        before
    }

    /// Removes the entry under a store key, returning it.
    pub fn remove(&mut self, store_key: &str) -> Option<Entry> {
        let (store_key, entry) = self.entries.remove_entry(store_key)?;
        if let Some(end) = entry.window_end_ms {
            self.by_window_end.remove(&(end, store_key.clone()));
            if let Some(windows) = self.windows_of.get_mut(&entry.key) {
                windows.remove(&store_key);
                if windows.is_empty() {
                    self.windows_of.remove(&entry.key);
                }
            }
        }
        if let Some(index) = &mut self.by_last_event {
            index.remove(&(entry.last_event_ms, store_key));
        }
        Some(entry)
    }
}

/// Rebuilds the stores of `partitions` from their changelog partitions,
/// reading in `read_committed` mode up to the end. Waits for a previous
/// owner's open transaction to end (aborted by fencing or by its timeout),
/// up to `within`. One consumer reads every partition: a consumer per
/// partition cost a connection and a metadata round trip each (about a
/// tenth of a second per partition at start-up). Each partition has its
/// own result: one that cannot be restored does not hold up the others.
pub fn restore(
    consumer_config: &rdkafka::ClientConfig,
    changelog: &str,
    partitions: &[i32],
    within: Duration,
) -> Vec<(i32, anyhow::Result<PartitionStore>)> {
    let consumer: BaseConsumer = match consumer_config.create() {
        Ok(consumer) => consumer,
        Err(error) => {
            return partitions
                .iter()
                .map(|p| (*p, Err(anyhow::anyhow!("cannot make a consumer: {error}"))))
                .collect();
        }
    };
    let mut results: BTreeMap<i32, anyhow::Result<PartitionStore>> = BTreeMap::new();
    // Partitions still being read, with the offset where each ends.
    let mut reading: BTreeMap<i32, i64> = BTreeMap::new();
    let mut stores: BTreeMap<i32, PartitionStore> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in partitions {
        match consumer.fetch_watermarks(changelog, partition, Duration::from_secs(10)) {
            Ok((low, high)) if high <= low => {
                results.insert(partition, Ok(PartitionStore::default()));
            }
            Ok((_, high)) => {
                reading.insert(partition, high);
                stores.insert(partition, PartitionStore::default());
                if let Err(error) =
                    assignment.add_partition_offset(changelog, partition, Offset::Beginning)
                {
                    results.insert(partition, Err(error.into()));
                    reading.remove(&partition);
                }
            }
            Err(error) => {
                results.insert(
                    partition,
                    Err(anyhow::Error::new(error).context(format!(
                        "cannot read the end of `{changelog}` partition {partition}"
                    ))),
                );
            }
        }
    }
    if !reading.is_empty()
        && let Err(error) = consumer.assign(&assignment)
    {
        for partition in std::mem::take(&mut reading).into_keys() {
            results.insert(partition, Err(anyhow::anyhow!("cannot assign: {error}")));
        }
    }
    let started = Instant::now();
    while !reading.is_empty() {
        if let Ok(positions) = consumer.position() {
            reading.retain(|partition, high| {
                let position = positions
                    .find_partition(changelog, *partition)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(0);
                let done = position >= *high;
                if done && let Some(store) = stores.remove(partition) {
                    results.insert(*partition, Ok(store));
                }
                !done
            });
        }
        if reading.is_empty() {
            break;
        }
        if started.elapsed() >= within {
            for (partition, high) in std::mem::take(&mut reading) {
                results.insert(
                    partition,
                    Err(anyhow::anyhow!(
                        "`{changelog}` partition {partition} did not reach offset {high} within {within:?}"
                    )),
                );
            }
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(changelog, %error, "restore read failed; retrying");
                continue;
            }
        };
        let partition = message.partition();
        let Some(store) = stores.get_mut(&partition) else {
            continue;
        };
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        match message.payload() {
            None => {
                store.remove(key);
            }
            Some(value) => match serde_json::from_slice::<Entry>(value) {
                Ok(entry) => {
                    store.stream_time_ms = store.stream_time_ms.max(entry.last_event_ms);
                    store.insert(key.to_string(), entry);
                }
                Err(error) => {
                    // This partition cannot be restored; stop reading it.
                    stores.remove(&partition);
                    reading.remove(&partition);
                    results.insert(
                        partition,
                        Err(anyhow::Error::new(error).context(format!(
                            "`{changelog}` partition {partition} offset {} is not a state entry",
                            message.offset()
                        ))),
                    );
                }
            },
        }
    }
    // Closing a consumer takes about 100 ms (librdkafka winds down its
    // broker threads); the partitions wait for nothing it does, so it
    // closes on a thread of its own.
    let _ = std::thread::Builder::new()
        .name("restore-close".into())
        .spawn(move || drop(consumer));
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, start: i64, end: i64) -> Entry {
        Entry {
            key: key.to_string(),
            state: RawValue::from_string("{}".to_string()).unwrap(),
            last_event_ms: end,
            window_start_ms: Some(start),
            window_end_ms: Some(end),
        }
    }

    #[test]
    fn entries_keep_the_state_as_json_and_read_the_earlier_layout() {
        let entry = Entry {
            key: "c1".to_string(),
            state: RawValue::from_string(r#"{"n":1,"s":"a\"b"}"#.to_string()).unwrap(),
            last_event_ms: 7,
            window_start_ms: None,
            window_end_ms: None,
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            text,
            r#"{"key":"c1","value":{"n":1,"s":"a\"b"},"last_event_ms":7}"#
        );
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), entry);
        let earlier = r#"{"key":"c1","state":"{\"n\":1,\"s\":\"a\\\"b\"}","last_event_ms":7}"#;
        assert_eq!(serde_json::from_str::<Entry>(earlier).unwrap(), entry);
        // A state that is itself a JSON string stays one.
        let string_state = Entry {
            state: RawValue::from_string(r#""text""#.to_string()).unwrap(),
            ..entry
        };
        let text = serde_json::to_string(&string_state).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), string_state);
        assert!(serde_json::from_str::<Entry>(r#"{"key":"c1","last_event_ms":7}"#).is_err());
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
        store.insert("c1@2000".to_string(), entry("c1", 2000, 3000));
        store.insert("c1@3000".to_string(), entry("c1", 3000, 4000));
        assert_eq!(store.expired(&settings), vec!["c1@2000".to_string()]);
        store.remove("c1@2000");
        assert!(
            store.expired(&settings).is_empty(),
            "removed from the index"
        );
        store.stream_time_ms = 4_500;
        assert_eq!(store.expired(&settings), vec!["c1@3000".to_string()]);
    }

    #[test]
    fn sessions_grow_and_split_on_gaps() {
        let settings = AggregateSettings {
            window: WindowKind::Session,
            gap_ms: 100,
            ..AggregateSettings::default()
        };
        let mut store = PartitionStore::default();
        store.insert("c1@1000".to_string(), entry("c1", 1000, 1050));
        store.insert("c2@1500".to_string(), entry("c2", 1500, 1550));
        let later = store.slot(&settings, "c1", 1_120).unwrap();
        assert_eq!(later.store_key, "c1@1000");
        assert_eq!(later.window, Some((1000, 1120)));
        assert_eq!(later.joins, ["c1@1000"]);
        let earlier = store.slot(&settings, "c1", 950).unwrap();
        assert_eq!(earlier.store_key, "c1@950");
        assert_eq!(earlier.joins, ["c1@1000"], "moves: the old key is deleted");
        let apart = store.slot(&settings, "c1", 1_300).unwrap();
        assert_eq!(apart.store_key, "c1@1300");
        assert!(apart.joins.is_empty());
        assert_eq!(
            store.slot(&settings, "c2", 1_000).unwrap().store_key,
            "c2@1000"
        );
    }

    #[test]
    fn an_event_between_two_sessions_joins_them() {
        let settings = AggregateSettings {
            window: WindowKind::Session,
            gap_ms: 100,
            ..AggregateSettings::default()
        };
        let mut store = PartitionStore::default();
        store.insert("c1@1000".to_string(), entry("c1", 1000, 1050));
        store.insert("c1@1200".to_string(), entry("c1", 1200, 1300));
        store.insert("c1@2000".to_string(), entry("c1", 2000, 2000));
        store.stream_time_ms = 2000;
        // 1050 + 100 >= 1120 >= 1200 - 100: within the gap of both.
        let bridge = store.slot(&settings, "c1", 1_120).unwrap();
        assert_eq!(bridge.store_key, "c1@1000");
        assert_eq!(bridge.window, Some((1000, 1300)));
        assert_eq!(bridge.joins, ["c1@1000", "c1@1200"]);
        // Just outside the first session's gap: joins the second only,
        // which grows backwards to a new store key.
        let second = store.slot(&settings, "c1", 1_151).unwrap();
        assert_eq!(second.store_key, "c1@1151");
        assert_eq!(second.window, Some((1151, 1300)));
        assert_eq!(second.joins, ["c1@1200"]);
    }

    #[test]
    fn idle_entries_expire_by_stream_time() {
        let settings = AggregateSettings {
            idle_ttl_ms: 1000,
            ..AggregateSettings::default()
        };
        let idle = |key: &str, last_event_ms| Entry {
            key: key.to_string(),
            state: RawValue::from_string("{}".to_string()).unwrap(),
            last_event_ms,
            window_start_ms: None,
            window_end_ms: None,
        };
        let mut store = PartitionStore::default();
        // Entries from before the index exists are found too.
        store.insert("c1".to_string(), idle("c1", 5_000));
        store.stream_time_ms = 5_999;
        assert!(store.expired(&settings).is_empty());
        store.insert("c2".to_string(), idle("c2", 5_500));
        store.stream_time_ms = 6_000;
        assert_eq!(store.expired(&settings), vec!["c1".to_string()]);
        // A newer event for c1 moves it back in the index.
        store.insert("c1".to_string(), idle("c1", 6_000));
        assert!(store.expired(&settings).is_empty());
        store.stream_time_ms = 7_000;
        assert_eq!(
            store.expired(&settings),
            vec!["c2".to_string(), "c1".to_string()]
        );
        assert_eq!(store.entries_of("c1").count(), 1);
        assert_eq!(store.len(), 2);
    }
}
