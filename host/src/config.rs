//! Typed configuration: a TOML file, then environment overrides.
//!
//! Every key has a default, so an empty file (or none) gives a host that runs
//! against the local stack on loopback. Unknown keys are errors, and every
//! error names the key, so a typo fails at start-up instead of being ignored.
//!
//! Environment overrides use `SWITCHYARD__<SECTION>__<KEY>`, upper case,
//! double underscores between levels: `SWITCHYARD__KAFKA__BOOTSTRAP_SERVERS`
//! overrides `kafka.bootstrap_servers`. A value is read as a TOML integer,
//! float or boolean when it parses as one, else as a string.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::avro::compat::CompatibilityLevel;

/// Reads a compatibility level by Confluent's name, in any letter case.
fn compatibility_level<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<CompatibilityLevel, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not a compatibility level; use one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
        ))
    })
}

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SWITCHYARD__";

/// The whole host configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// REST API.
    pub http: HttpConfig,
    /// gRPC API.
    pub grpc: GrpcConfig,
    /// Kafka connection and topic defaults.
    pub kafka: KafkaConfig,
    /// Schema registry.
    pub registry: RegistryConfig,
    /// WebAssembly plugins.
    pub plugins: PluginsConfig,
    /// Routes and the routing engine.
    pub routing: RoutingConfig,
    /// Aggregators: their state, changelogs and queries.
    pub aggregation: AggregationConfig,
    /// Log output.
    pub log: LogConfig,
    /// Traces exported over OTLP.
    pub telemetry: TelemetryConfig,
}

/// REST API settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest request body, in bytes; larger bodies get 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most events in one batch; more get 413. Default 500.
    pub max_batch_events: usize,
    /// Interval of SSE comment heartbeats, in milliseconds. Default 15000.
    pub sse_heartbeat_ms: u64,
}

/// gRPC API settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address to listen on. Default `127.0.0.1:50051`.
    pub listen: SocketAddr,
}

/// Kafka settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers. Default `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Client id prefix. Default `switchyard`.
    pub client_id: String,
    /// How long a publish waits for Kafka's acknowledgement before it fails
    /// with 503, in milliseconds. This bounds a publish when the broker is
    /// down. Default 5000.
    pub publish_timeout_ms: u64,
    /// Partitions of topics the host creates. Default 3.
    pub partitions: i32,
    /// Replication factor of topics the host creates. Default 1, right for a
    /// single local broker only; production clusters want 3.
    pub replication_factor: i32,
    /// Retention of noun topics, in milliseconds. Default 7 days.
    pub retention_ms: i64,
    /// Topic that receives events a plugin failed on. Default
    /// `switchyard.dead-letter`.
    pub dead_letter_topic: String,
    /// CloudEvents `source` of events whose publisher gives none. Default
    /// `/switchyard`.
    pub default_source: String,
    /// Compression of every batch the host writes: `lz4` (the default),
    /// `snappy`, `gzip` or `none`. Aggregation state and summaries are
    /// repetitive JSON and Avro; compressed, the broker (and the disk)
    /// handles several times fewer bytes. Consumers decompress whatever
    /// they read, whatever this says.
    pub compression: String,
}

/// The values `kafka.compression` takes (`zstd` is not built into this
/// binary's Kafka client).
pub const COMPRESSIONS: [&str; 4] = ["none", "lz4", "snappy", "gzip"];

/// Schema registry settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Address of the embedded registry's Confluent-compatible REST API.
    /// Default `127.0.0.1:8081`, Confluent's usual port.
    pub listen: SocketAddr,
    /// Compacted topic that holds the registry's state. Default `_schemas`,
    /// the topic Confluent's registry uses.
    pub topic: String,
    /// Folder of `<noun>/<verb>.avsc` files registered at start-up.
    /// Default `schemas`.
    pub schemas_dir: PathBuf,
    /// Compatibility level of subjects and of the registry when none is
    /// set through `/config`: one of Confluent's seven levels. Default
    /// `BACKWARD`, as in Confluent's registry.
    #[serde(deserialize_with = "compatibility_level")]
    pub default_compatibility: CompatibilityLevel,
    /// An external Confluent-compatible registry (`http://host:port`, with
    /// a path prefix if it has one). When set, every registry call goes
    /// there instead of to the embedded registry: schemas by id are cached
    /// (they never change), the latest version of a subject for
    /// `external_cache_ttl_ms`, and the host's registry port forwards
    /// Confluent's API to it. The embedded registry's topic is not read.
    /// Default: none, the embedded registry.
    pub external_url: Option<String>,
    /// Headers sent with every call to the external registry, such as
    /// `Authorization = "Basic …"`. Default none.
    pub external_headers: std::collections::BTreeMap<String, String>,
    /// How long the latest version of a subject is reused before the
    /// external registry is asked again, in milliseconds. Default 5000.
    pub external_cache_ttl_ms: u64,
}

/// Plugin runtime settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder of `<name>.wasm` components with a `<name>.toml` manifest
    /// beside each, loaded at start-up. No folder means no plugins.
    pub dir: Option<PathBuf>,
    /// Longest a single plugin call may run, in milliseconds. Default 1000.
    pub call_timeout_ms: u64,
    /// Most linear memory one plugin instance may grow to, in bytes.
    /// Default 64 MiB.
    pub memory_limit_bytes: usize,
    /// Keep compiled plugins on disk, so each version is compiled once and a
    /// restart loads it in milliseconds (a JavaScript or Python component
    /// takes 10-20 s of CPU to compile). Default true.
    pub compiled_cache: bool,
    /// Folder of the compiled-plugin cache. Default
    /// `$HOME/.cache/switchyard/compiled-plugins`.
    pub compiled_cache_dir: Option<PathBuf>,
    /// Pause a plugin automatically when at least this share of its last
    /// `failure_window_calls` calls failed (errors, traps, timeouts, memory,
    /// refused output). Default 0.5; above 1.0 never pauses.
    pub failure_pause_ratio: f64,
    /// How many recent calls the failure share is taken over. Default 20.
    pub failure_window_calls: usize,
    /// Folder where this instance keeps the components of uploaded plugins
    /// (the copy of record is on Kafka). Default
    /// `$HOME/.cache/switchyard/plugin-artifacts`.
    pub artifacts_dir: Option<PathBuf>,
    /// Component instances the pooling allocator reserves room for, across
    /// every plugin of this host (each plugin keeps up to four warm
    /// instances). 0 allocates on demand instead. Default 256.
    pub pool_instances: u32,
}

/// Log settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines. Default `text`.
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax. Default `info`. `RUST_LOG` wins if set.
    pub filter: String,
}

/// Trace export settings. Spans follow every event from the publish call
/// through Kafka, routes, plugins and aggregation to subscribers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint that receives spans (Jaeger, an OpenTelemetry
    /// collector). Default `http://127.0.0.1:4317`, the local stack's
    /// Jaeger. Empty turns export off; trace headers are then passed on
    /// unchanged.
    pub otlp_endpoint: String,
    /// `service.name` of this host's spans. Default `switchyard`.
    pub service_name: String,
    /// Share of new traces recorded, from 0 to 1. A trace the caller
    /// started keeps the caller's sampling decision. Default 1.
    pub sample_ratio: f64,
    /// How long one export may take, in milliseconds. Default 10000.
    pub export_timeout_ms: u64,
    /// Spans waiting for export at most; more are dropped (a replay or a
    /// burst outruns the exporter), never waited for. Default 32768.
    pub max_queued_spans: usize,
}

/// Routing settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Run the routing engine on this instance. Default true; an instance
    /// that only serves APIs can turn it off.
    pub enabled: bool,
    /// Compacted topic holding the routes. Default `_switchyard_routes`.
    pub topic: String,
    /// Consumer group of the routing engine; every instance of one
    /// deployment uses the same. Default `switchyard.routing`.
    pub group: String,
    /// Where a new group starts on each noun topic. Default `earliest`.
    pub start: Start,
    /// How often the open transaction commits, in milliseconds; this bounds
    /// how long a routed event waits before readers in `read_committed`
    /// mode see it. Default 100 (as Kafka Streams with exactly-once).
    pub commit_interval_ms: u64,
    /// Most records in one transaction. Default 5000: under load the
    /// commit interval decides, as in Kafka Streams (which has no cap); the
    /// cap bounds what an aborted transaction makes the loop read again.
    /// At 1000, a loop routing 25,000 events/s committed four times as
    /// often as the interval asks.
    pub max_transaction_records: usize,
    /// Kafka's `transaction.timeout.ms` for the engine's producer. Default
    /// 10000 (as Kafka Streams).
    pub transaction_timeout_ms: u64,
    /// Most routes the cluster may hold; every instance keeps them all in
    /// memory and evaluates each enabled one per event. Default 10000.
    pub max_routes: usize,
    /// Nouns whose topics the engine reads. Default empty: every noun of
    /// the schema catalog. A deployment whose routes read a few nouns lists
    /// them, so the engine does not fetch and skip the events of the others
    /// (an aggregator's output noun, say); a route on a noun not listed is
    /// refused, since it would never see an event.
    pub nouns: Vec<String>,
}

/// Aggregation settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// Run active aggregators on this instance. Default true.
    pub enabled: bool,
    /// Consumer groups are `<prefix>.<plugin>`, changelogs
    /// `<prefix>.<plugin>.changelog`. Default `switchyard.aggregate`.
    pub group_prefix: String,
    /// Compacted topic where instances announce the partitions they own,
    /// for state queries. Default `_switchyard_instances`.
    pub directory_topic: String,
    /// How often the open transaction commits, in milliseconds. Default 100.
    pub commit_interval_ms: u64,
    /// Most records in one transaction. Default 5000: under load the
    /// commit interval decides, as in Kafka Streams (which has no cap); the
    /// cap bounds what an aborted transaction reads again and the undo log
    /// (the state each record replaced) kept until the commit.
    pub max_transaction_records: usize,
    /// Kafka's `transaction.timeout.ms`; also bounds how long a new owner
    /// waits for a crashed owner's open transaction before restoring.
    /// Default 10000 (as Kafka Streams).
    pub transaction_timeout_ms: u64,
    /// Loops (threads, each a consumer of the group with its own
    /// transactional producer) per aggregator on this instance, like Kafka
    /// Streams' `num.stream.threads`: partitions spread over them, so an
    /// instance uses more than one core. Default 1.
    pub threads: usize,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            enabled: true,
            group_prefix: "switchyard.aggregate".to_string(),
            directory_topic: "_switchyard_instances".to_string(),
            commit_interval_ms: 100,
            max_transaction_records: 5_000,
            transaction_timeout_ms: 10_000,
            threads: 1,
        }
    }
}

/// Where a consumer group with no committed offsets starts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// The beginning of each partition.
    Earliest,
    /// The end of each partition as it was when the group first started.
    Latest,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            enabled: true,
            topic: "_switchyard_routes".to_string(),
            group: "switchyard.routing".to_string(),
            start: Start::Earliest,
            commit_interval_ms: 100,
            max_transaction_records: 5_000,
            transaction_timeout_ms: 10_000,
            max_routes: 10_000,
            nouns: Vec::new(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            max_batch_events: 500,
            sse_heartbeat_ms: 15_000,
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            client_id: "switchyard".to_string(),
            publish_timeout_ms: 5_000,
            partitions: 3,
            replication_factor: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
            dead_letter_topic: "switchyard.dead-letter".to_string(),
            default_source: "/switchyard".to_string(),
            compression: "lz4".to_string(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            topic: "_schemas".to_string(),
            schemas_dir: PathBuf::from("schemas"),
            default_compatibility: CompatibilityLevel::Backward,
            external_url: None,
            external_headers: std::collections::BTreeMap::new(),
            external_cache_ttl_ms: 5_000,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            call_timeout_ms: 1_000,
            memory_limit_bytes: 64 * 1024 * 1024,
            compiled_cache: true,
            failure_pause_ratio: 0.5,
            failure_window_calls: 20,
            compiled_cache_dir: None,
            artifacts_dir: None,
            pool_instances: 256,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".to_string(),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: "http://127.0.0.1:4317".to_string(),
            service_name: "switchyard".to_string(),
            sample_ratio: 1.0,
            export_timeout_ms: 10_000,
            max_queued_spans: 32_768,
        }
    }
}

impl Config {
    /// Loads the file (if any), applies the process environment, and checks
    /// the result.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file `{}`", path.display()))?,
            None => String::new(),
        };
        let origin = path.map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
        Config::from_parts(&text, &origin, std::env::vars())
    }

    /// Builds a config from TOML text and `(name, value)` environment pairs.
    pub fn from_parts(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table: toml::Table = text
            .parse()
            .with_context(|| format!("config `{origin}` is not valid TOML"))?;
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            if keys.iter().any(String::is_empty) {
                bail!(
                    "environment variable `{name}` has an empty key; use `SWITCHYARD__SECTION__KEY`"
                );
            }
            set_path(&mut table, &keys, parse_env_value(&value))
                .with_context(|| format!("environment variable `{name}`"))?;
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|error| {
                let key = error.path().to_string();
                anyhow::anyhow!("config key `{key}`: {}", error.into_inner())
            })
            .with_context(|| format!("invalid config from `{origin}`"))?;
        config.check()?;
        Ok(config)
    }

    /// Checks values that types alone cannot.
    fn check(&self) -> anyhow::Result<()> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            bail!("config key `kafka.bootstrap_servers` is empty; give `host:port`");
        }
        if self.kafka.partitions < 1 {
            bail!("config key `kafka.partitions` must be at least 1");
        }
        if !COMPRESSIONS.contains(&self.kafka.compression.as_str()) {
            bail!(
                "config key `kafka.compression` is `{}`; use one of {}",
                self.kafka.compression,
                COMPRESSIONS.join(", ")
            );
        }
        if self.kafka.replication_factor < 1 {
            bail!("config key `kafka.replication_factor` must be at least 1");
        }
        if self.kafka.publish_timeout_ms < 100 {
            bail!("config key `kafka.publish_timeout_ms` must be at least 100");
        }
        if self.http.max_body_bytes < 1024 {
            bail!("config key `http.max_body_bytes` must be at least 1024");
        }
        if self.http.max_batch_events < 1 {
            bail!("config key `http.max_batch_events` must be at least 1");
        }
        if self.plugins.call_timeout_ms < 1 {
            bail!("config key `plugins.call_timeout_ms` must be at least 1");
        }
        if !(1..=64).contains(&self.aggregation.threads) {
            bail!("config key `aggregation.threads` must be from 1 to 64");
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            bail!("config key `telemetry.sample_ratio` must be from 0 to 1");
        }
        if self.telemetry.max_queued_spans < 1_024 {
            bail!("config key `telemetry.max_queued_spans` must be at least 1024");
        }
        if self.telemetry.service_name.trim().is_empty() {
            bail!("config key `telemetry.service_name` is empty");
        }
        let endpoint = &self.telemetry.otlp_endpoint;
        if !endpoint.is_empty() && !endpoint.starts_with("http://") {
            // Built without TLS, like the registry client: a collector on
            // loopback forwards to a remote one over TLS.
            bail!(
                "config key `telemetry.otlp_endpoint` must be an `http://host:port` URL (got `{endpoint}`), or empty to export nothing; for TLS, run a collector on loopback"
            );
        }
        if self.plugins.memory_limit_bytes < 1024 * 1024 {
            bail!("config key `plugins.memory_limit_bytes` must be at least 1 MiB");
        }
        crate::nvo::check_topic(&self.kafka.dead_letter_topic).map_err(|error| {
            anyhow::anyhow!("config key `kafka.dead_letter_topic`: {}", error.detail)
        })?;
        crate::nvo::check_topic(&self.registry.topic)
            .map_err(|error| anyhow::anyhow!("config key `registry.topic`: {}", error.detail))?;
        for noun in &self.routing.nouns {
            crate::nvo::Noun::parse(noun)
                .map_err(|error| anyhow::anyhow!("config key `routing.nouns`: {}", error.detail))?;
        }
        if let Some(url) = &self.registry.external_url
            && !url.starts_with("http://")
        {
            // The HTTP client is built without TLS; a TLS-terminating proxy
            // on loopback can front an https registry.
            bail!(
                "config key `registry.external_url` must start with `http://` (got `{url}`); for https, run a TLS-terminating proxy on loopback and point this at it"
            );
        }
        for name in self.registry.external_headers.keys() {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                bail!(
                    "config key `registry.external_headers`: `{name}` is not a valid header name"
                );
            }
        }
        Ok(())
    }
}

fn parse_env_value(value: &str) -> toml::Value {
    if let Ok(int) = value.parse::<i64>() {
        return toml::Value::Integer(int);
    }
    if let Ok(float) = value.parse::<f64>()
        && value.contains('.')
        && !value.contains(':')
    {
        return toml::Value::Float(float);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = keys.split_last().expect("split yields at least one key");
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => bail!("`{key}` is not a section"),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_config_gives_loopback_defaults() {
        let config = Config::from_parts("", "test", env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
    }

    #[test]
    fn file_then_environment() {
        let text = "[kafka]\nbootstrap_servers = \"127.0.0.1:1111\"\npartitions = 6\n";
        let config = Config::from_parts(
            text,
            "test",
            env(&[("SWITCHYARD__KAFKA__PARTITIONS", "12"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:1111");
        assert_eq!(config.kafka.partitions, 12);
    }

    #[test]
    fn unknown_key_is_named() {
        let error =
            Config::from_parts("[kafka]\nbootstrap = \"x\"\n", "test", env(&[])).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("bootstrap"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let error = Config::from_parts("[http]\nlisten = 5\n", "test", env(&[])).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("`http.listen`"), "{text}");
        let error = Config::from_parts(
            "",
            "test",
            env(&[("SWITCHYARD__HTTP__MAX_BODY_BYTES", "lots")]),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("`http.max_body_bytes`"));
    }

    #[test]
    fn checks_values() {
        let error = Config::from_parts("[kafka]\npartitions = 0\n", "test", env(&[])).unwrap_err();
        assert!(format!("{error:#}").contains("`kafka.partitions`"));
        let error =
            Config::from_parts("[kafka]\ncompression = \"zstd\"\n", "test", env(&[])).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("`kafka.compression`") && text.contains("lz4"),
            "{text}"
        );
        for compression in COMPRESSIONS {
            let config = Config::from_parts(
                &format!("[kafka]\ncompression = \"{compression}\"\n"),
                "test",
                env(&[]),
            )
            .unwrap();
            assert_eq!(config.kafka.compression, compression);
        }
    }
}
