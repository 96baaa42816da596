//! A plugin's manifest: the `<name>.toml` beside each `<name>.wasm`.
//!
//! ```toml
//! name = "portal-router"
//! version = "0.1.0"
//! kind = "router"                      # router | transformer | aggregator
//! description = "claim statuses to each provider's portal topic"
//! owner = "claims-portal"
//! source = ["claim.status-changed"]    # `noun.verb` patterns, verb may be `*`
//!
//! grants = []                          # `clock` to see the real time
//!
//! [config]                             # passed to every call
//! prefix = "portal.provider"
//!
//! [limits]                             # optional, never above the host's
//! call_timeout_ms = 200
//! memory_limit_bytes = 16777216
//! ```

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use crate::nvo::{Noun, Verb};

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Picks destination topics.
    Router,
    /// Turns one event into zero or more.
    Transformer,
    /// Folds events into a state per key.
    Aggregator,
}

impl Kind {
    /// The WIT world name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Router => "router",
            Kind::Transformer => "transformer",
            Kind::Aggregator => "aggregator",
        }
    }
}

/// The manifest.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name, lower kebab case; unique per host.
    pub name: String,
    /// Semantic version of this build.
    pub version: String,
    /// The world it implements.
    pub kind: Kind,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Team that owns it.
    #[serde(default)]
    pub owner: String,
    /// Events it receives, as `noun.verb` patterns; the verb may be `*`.
    pub source: Vec<String>,
    /// Configuration handed to every call.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Capabilities beyond the defaults.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Tighter limits than the host's defaults (never looser).
    #[serde(default)]
    pub limits: Limits,
    /// Where a new plugin starts reading when its consumer group has no
    /// committed offsets yet: `earliest` (default, every event the topics
    /// still hold, as Kafka Streams does) or `latest` (only events written
    /// after it was first activated; pausing and resuming loses nothing).
    #[serde(default)]
    pub start: StartFrom,
    /// How an aggregator keeps its state: windows and time-to-live.
    #[serde(default)]
    pub aggregate: AggregateSettings,
}

/// An aggregator's state settings (`[aggregate]` in the manifest). Times
/// are event times (`ce_time`), so replaying the same events gives the same
/// states and the same expiries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSettings {
    /// `none` (default: one state per key), `tumbling` (one per key and
    /// fixed window of `size_ms`) or `session` (one per key and run of
    /// events no more than `gap_ms` apart).
    #[serde(default)]
    pub window: WindowKind,
    /// Tumbling window length, in milliseconds.
    #[serde(default)]
    pub size_ms: u64,
    /// Session inactivity gap, in milliseconds.
    #[serde(default)]
    pub gap_ms: u64,
    /// How long after a window ends late events are still folded into it;
    /// after that its state is deleted and later events for it are
    /// dropped (and counted).
    #[serde(default)]
    pub grace_ms: u64,
    /// Delete the state of a key (or window) that saw no event for this
    /// long; 0 keeps it until a window closes or forever.
    #[serde(default)]
    pub idle_ttl_ms: u64,
}

/// See [`AggregateSettings::window`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// One state per key.
    #[default]
    None,
    /// Fixed, adjacent windows.
    Tumbling,
    /// Windows that grow while events keep coming.
    Session,
}

/// See [`Manifest::start`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Everything the topics hold.
    #[default]
    Earliest,
    /// Only events written after the group first joins.
    Latest,
}

/// A capability a plugin may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// The real wall and monotonic clocks; without it the clock is frozen at
    /// the Unix epoch.
    Clock,
}

/// Per-plugin limits; each is capped by the host's configured maximum.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Deadline of one call, in milliseconds.
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// Memory of one instance, in bytes.
    #[serde(default)]
    pub memory_limit_bytes: Option<usize>,
    /// Calls the failure share is taken over (the host's
    /// `plugins.failure_window_calls` when absent). Set per plugin so every
    /// instance applies the same policy.
    #[serde(default)]
    pub failure_window_calls: Option<usize>,
    /// Share of failed calls that pauses the plugin (the host's
    /// `plugins.failure_pause_ratio` when absent).
    #[serde(default)]
    pub failure_pause_ratio: Option<f64>,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let manifest: Manifest = toml::from_str(text)?;
        Noun::parse(&manifest.name).map_err(|error| anyhow::anyhow!("`name`: {}", error.detail))?;
        if !is_semver(&manifest.version) {
            bail!(
                "`version` `{}` is not a semantic version such as `1.2.3`",
                manifest.version
            );
        }
        if manifest.source.is_empty() {
            bail!("`source` is empty; list the `noun.verb` events the plugin receives");
        }
        for pattern in &manifest.source {
            let Some((noun, verb)) = pattern.split_once('.') else {
                bail!("`source` entry `{pattern}` is not `noun.verb`");
            };
            // The noun decides which topic is read, so it must be concrete.
            Noun::parse(noun)
                .map_err(|error| anyhow::anyhow!("`source` entry `{pattern}`: {}", error.detail))?;
            if verb != "*" {
                Verb::parse(verb).map_err(|error| {
                    anyhow::anyhow!("`source` entry `{pattern}`: {}", error.detail)
                })?;
            }
        }
        let aggregate = &manifest.aggregate;
        if aggregate != &AggregateSettings::default() && manifest.kind != Kind::Aggregator {
            bail!("`[aggregate]` is for aggregators only");
        }
        match aggregate.window {
            WindowKind::Tumbling if aggregate.size_ms == 0 => {
                bail!("`aggregate.size_ms` must be set for a tumbling window")
            }
            WindowKind::Session if aggregate.gap_ms == 0 => {
                bail!("`aggregate.gap_ms` must be set for a session window")
            }
            _ => {}
        }
        Ok(manifest)
    }

    /// The nouns (topics) the plugin reads.
    pub fn source_nouns(&self) -> Vec<String> {
        let mut nouns: Vec<String> = self
            .source
            .iter()
            .filter_map(|pattern| pattern.split_once('.').map(|(noun, _)| noun.to_string()))
            .collect();
        nouns.sort();
        nouns.dedup();
        nouns
    }

    /// Whether an event of this noun and verb goes to the plugin.
    pub fn accepts(&self, noun: &str, verb: &str) -> bool {
        self.source
            .iter()
            .any(|pattern| crate::nvo::pattern_matches(pattern, noun, verb))
    }
}

fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_router_manifest() {
        let manifest = Manifest::parse(
            "name = \"portal-router\"\nversion = \"0.1.0\"\nkind = \"router\"\nsource = [\"claim.status-changed\"]\n[config]\nprefix = \"p\"\n",
        )
        .unwrap();
        assert_eq!(manifest.kind, Kind::Router);
        assert!(manifest.accepts("claim", "status-changed"));
        assert!(!manifest.accepts("claim", "other"));
        assert_eq!(manifest.source_nouns(), vec!["claim"]);
    }

    #[test]
    fn refuses_bad_manifests_with_the_key() {
        let base = "name = \"x\"\nkind = \"router\"\nsource = [\"claim.*\"]\n";
        let error = Manifest::parse(&format!("{base}version = \"1\"\n")).unwrap_err();
        assert!(error.to_string().contains("`version`"));
        let error = Manifest::parse(
            "name = \"x\"\nversion = \"1.0.0\"\nkind = \"router\"\nsource = [\"*.x\"]\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("`source`"));
        assert!(Manifest::parse(&format!("{base}version = \"1.0.0\"\nextra = 1\n")).is_err());
    }
}
