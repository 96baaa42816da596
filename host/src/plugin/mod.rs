//! The plugin runtime: WebAssembly components that teams write, run by
//! wasmtime with the component model.
//!
//! Every call is bounded. Time: an epoch ticker thread advances the engine's
//! epoch every [`EPOCH_TICK`], and each call gets a deadline in ticks, so a
//! plugin that loops forever is interrupted without ever calling the host.
//! Memory: a limiter refuses linear-memory growth past the configured bytes
//! and records that it did, so the failure is reported as out-of-memory
//! rather than a generic trap. Output: a call may return at most
//! [`MAX_OUTPUTS`] destinations or events. Capabilities: the WASI context
//! has no preopened directories, no environment, no arguments, closed stdin,
//! discarded stdout/stderr, and no network addresses or name lookups.
//!
//! A call never panics the host: a plugin error, a trap, a timeout or memory
//! exhaustion all come back as a [`Failure`] with a class and a reason, which
//! the pipeline sends to the dead-letter topic.
//!
//! Instances are reused: each plugin keeps a small pool of instantiated
//! stores, and a call borrows one. An instance that trapped (or ran out of
//! time or memory) is dropped, never re-entered, and the next call gets a
//! fresh one from the pre-instantiated component. State a plugin keeps in
//! its own memory between calls is therefore best effort: a plugin must not
//! rely on it (aggregators get their state from the host).
//!
//! Clocks are granted only when the manifest lists `clock` in `grants`;
//! otherwise the plugin sees a clock frozen at the Unix epoch, so its output
//! cannot depend on when it ran. Random numbers are always available (language
//! runtimes seed hash tables with them). Files, environment and network are
//! never granted.
//!
//! Compiled code is cached on disk (`plugins.compiled_cache_dir`), keyed by
//! a hash of the component and the engine's settings, so each version is
//! compiled once and later loads take milliseconds.
//!
//! Instances come from wasmtime's pooling allocator (`plugins.pool_instances`
//! slots, 0 turns it off): memories, tables and instance state are reserved
//! once at start-up and reset between uses, so replacing a trapped instance
//! costs a slot reset rather than fresh mappings. Each memory slot is sized
//! to the host-wide memory limit; a plugin's own, lower limit is enforced by
//! the limiter. When every slot is taken, instantiation fails with a reason
//! that names the pool, and the call is dead-lettered like any other failure.

pub mod auto_pause;
pub mod bindings;
pub mod harness;
pub mod manifest;
pub mod scaffold;
pub mod store;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::PluginsConfig;
pub use bindings::{
    AggregateResult, ConfigEntry, Emitted, Event, Header, Metadata, PluginError, Position,
};
use manifest::WindowKind;
pub use manifest::{Kind, Manifest};

/// How often the epoch advances. Deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most destinations or events one call may return. Defends against a
/// plugin that fans one event out into an unbounded flood.
pub const MAX_OUTPUTS: usize = 1_000;

/// Most bytes of text one call may return (destination names, or emitted
/// objects and keys). Defends the host and Kafka against a plugin that
/// turns one event into megabytes.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// Longest log message a plugin may write, in bytes; longer ones are cut.
pub const MAX_LOG_BYTES: usize = 4_096;

/// Why a call failed. The class is stable and goes into dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The plugin returned an error on purpose.
    #[error("plugin returned an error: {0}")]
    PluginError(String),
    /// The plugin trapped (a panic, a stack overflow, unreachable code).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin ran past its deadline.
    #[error("plugin ran longer than its {0} ms deadline")]
    Timeout(u64),
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin needed more than its {0} bytes of memory")]
    OutOfMemory(usize),
    /// The plugin returned something the host refuses (too many outputs, an
    /// invalid topic, an object that fails its schema).
    #[error("plugin output is invalid: {0}")]
    InvalidOutput(String),
}

impl Failure {
    /// Stable class name, used in dead-letter headers and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Failure::PluginError(_) => "plugin-error",
            Failure::Trap(_) => "trap",
            Failure::Timeout(_) => "timeout",
            Failure::OutOfMemory(_) => "out-of-memory",
            Failure::InvalidOutput(_) => "invalid-output",
        }
    }
}

/// What a successful call returned.
#[derive(Debug, Clone)]
pub enum Output {
    /// A router's destination topics.
    Destinations(Vec<String>),
    /// A transformer's new events.
    Events(Vec<Emitted>),
    /// An aggregator's new state for the key (none: delete it) and events.
    Aggregate {
        /// New state as JSON, or none to delete the key's state.
        state: Option<String>,
        /// Events to publish.
        events: Vec<Emitted>,
    },
}

/// Store data of one call.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    label: Arc<str>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::LogHost for CallState {
    fn emit(&mut self, level: bindings::Level, message: String, fields: Vec<(String, String)>) {
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let fields: String = fields
            .iter()
            .take(32)
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = &*self.label;
        match level {
            bindings::Level::Trace => tracing::trace!(plugin, fields, "{message}"),
            bindings::Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            bindings::Level::Info => tracing::info!(plugin, fields, "{message}"),
            bindings::Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            bindings::Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }
}

impl bindings::router::switchyard::plugin::types::Host for CallState {}

/// The clock a plugin sees when it was not granted one: always the Unix
/// epoch, so output cannot depend on when a call ran.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// Refuses memory growth past a limit and remembers that it did.
struct MemoryLimiter {
    limit_bytes: usize,
    denied: bool,
    /// Largest memory this instance grew to (capped at the limit).
    peak_bytes: usize,
}

/// Upper bounds of the call latency histogram buckets, in microseconds; the
/// last bucket counts everything slower.
pub const LATENCY_BUCKETS_MICROS: [u64; 6] = [100, 1_000, 10_000, 100_000, 1_000_000, u64::MAX];

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.peak_bytes = self.peak_bytes.max(desired.min(self.limit_bytes));
        if desired > self.limit_bytes {
            self.denied = true;
            // Trapping instead of returning -1 from `memory.grow`: most
            // guests abort on allocation failure anyway, and a trap gives a
            // clear reason.
            wasmtime::bail!("memory limit of {} bytes reached", self.limit_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The compiled, linked exports of one plugin.
enum Pre {
    Router(bindings::router::RouterPre<CallState>),
    Transformer(bindings::transformer::TransformerPre<CallState>),
    Aggregator(bindings::aggregator::AggregatorPre<CallState>),
    SessionAggregator(bindings::session_aggregator::SessionAggregatorPre<CallState>),
}

/// Most idle instances a plugin keeps for reuse. One per concurrent caller
/// is enough; pipelines call one at a time per partition stream.
pub const MAX_IDLE_INSTANCES: usize = 4;

/// An instantiated plugin with its store, ready for a call.
struct Instance {
    store: Store<CallState>,
    exports: Exports,
}

enum Exports {
    Router(bindings::router::Router),
    Transformer(bindings::transformer::Transformer),
    Aggregator(bindings::aggregator::Aggregator),
    SessionAggregator(bindings::session_aggregator::SessionAggregator),
}

/// Counters of one plugin, for the admin API and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that returned a plugin error.
    pub plugin_errors: AtomicU64,
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls that ran past their deadline.
    pub timeouts: AtomicU64,
    /// Calls that exhausted their memory.
    pub out_of_memory: AtomicU64,
    /// Calls whose output the host refused.
    pub invalid_outputs: AtomicU64,
    /// Instances created (the first, plus one after every trap).
    pub instances_created: AtomicU64,
    /// Sum of call durations, in microseconds.
    pub busy_micros: AtomicU64,
    /// Calls per latency bucket (see [`LATENCY_BUCKETS_MICROS`]).
    pub latency_buckets: [AtomicU64; 6],
    /// Largest linear memory any instance of this plugin grew to, in bytes.
    pub peak_memory_bytes: AtomicU64,
}

impl Stats {
    /// Failed calls of every class.
    pub fn failures(&self) -> u64 {
        [
            &self.plugin_errors,
            &self.traps,
            &self.timeouts,
            &self.out_of_memory,
            &self.invalid_outputs,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// Counts output the host refused after a successful call (an invalid
    /// destination, an event that fails its schema) as that call's failure.
    pub fn record_refused_output(&self) {
        self.invalid_outputs.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, failure: Option<&Failure>, micros: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.busy_micros.fetch_add(micros, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| micros < *bound)
            .unwrap_or(5);
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);

        let counter = match failure {
            None => return,
            Some(Failure::PluginError(_)) => &self.plugin_errors,
            Some(Failure::Trap(_)) => &self.traps,
            Some(Failure::Timeout(_)) => &self.timeouts,
            Some(Failure::OutOfMemory(_)) => &self.out_of_memory,
            Some(Failure::InvalidOutput(_)) => &self.invalid_outputs,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A loaded plugin, ready to call from any thread.
pub struct Plugin {
    manifest: Manifest,
    label: Arc<str>,
    pre: Pre,
    engine: Engine,
    timeout: Duration,
    memory_limit_bytes: usize,
    /// The manifest's configuration, built once rather than per call.
    config: Vec<ConfigEntry>,
    idle: Mutex<Vec<Instance>>,
    stats: Stats,
}

/// Core instances, memories and tables one component may hold in the pool.
/// Rust components need one or two of each; components made by
/// componentize-py and componentize-js link a language runtime, libc and an
/// adapter as separate core modules, so the bounds leave room for those.
const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const POOL_MEMORIES_PER_COMPONENT: u32 = 4;
const POOL_TABLES_PER_COMPONENT: u32 = 8;
/// Table slots per table: interpreters built for wasm keep large function
/// tables (CPython's is about 10,000 entries).
const POOL_TABLE_ELEMENTS: usize = 100_000;
/// Instance state (the `vmctx`) of one core instance or component. A
/// Python component's runtime module imports and exports thousands of
/// functions, which is what makes this bigger than wasmtime's default.
const POOL_INSTANCE_STATE_BYTES: usize = 4 << 20;

fn pooling_config(config: &PluginsConfig) -> wasmtime::PoolingAllocationConfig {
    let instances = config.pool_instances;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .max_core_instances_per_component(POOL_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(POOL_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(POOL_TABLES_PER_COMPONENT)
        .max_memories_per_module(1)
        .max_tables_per_module(2)
        .table_elements(POOL_TABLE_ELEMENTS)
        .max_core_instance_size(POOL_INSTANCE_STATE_BYTES)
        .max_component_instance_size(POOL_INSTANCE_STATE_BYTES)
        .max_memory_size(config.memory_limit_bytes)
        // Slots keep no warm pages for a plugin that stopped; memory that a
        // big call touched goes back to the system when its instance ends.
        .linear_memory_keep_resident(0)
        .table_keep_resident(0);
    pool
}

/// The engine and the linker that every plugin shares.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    config: PluginsConfig,
    stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Creates the engine, starts the epoch ticker and links the host
    /// imports (deny-by-default WASI and `switchyard:plugin/log`).
    pub fn new(config: &PluginsConfig) -> anyhow::Result<Runtime> {
        let mut engine_config = wasmtime::Config::new();
        engine_config.wasm_component_model(true);
        engine_config.epoch_interruption(true);
        if config.pool_instances > 0 {
            engine_config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
                pooling_config(config),
            ));
        }
        if config.compiled_cache {
            let dir = config.compiled_cache_dir.clone().unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
                home.join(".cache/switchyard/compiled-plugins")
            });
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(&dir);
            let cache = wasmtime::Cache::new(cache_config)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "cannot use `{}` as the compiled-plugin cache",
                        dir.display()
                    )
                })?;
            engine_config.cache(Some(cache));
        }
        let engine = Engine::new(&engine_config)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasm engine")?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("plugin-epoch".to_string())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("cannot start the epoch ticker")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link wasi")?;
        bindings::router::switchyard::plugin::log::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("cannot link `switchyard:plugin/log`")?;
        bindings::router::switchyard::plugin::types::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("cannot link `switchyard:plugin/types`")?;
        Ok(Runtime {
            engine,
            linker,
            config: config.clone(),
            stop,
        })
    }

    /// Compiles and links a component for its declared world. Fails with a
    /// reason when the bytes are not a component, when it imports something
    /// the host does not grant, or when it does not export the world's
    /// functions.
    pub fn load(&self, manifest: Manifest, wasm: &[u8]) -> anyhow::Result<Plugin> {
        let label: Arc<str> = format!("{}@{}", manifest.name, manifest.version).into();
        let component = Component::new(&self.engine, wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin `{label}` is not a valid webassembly component"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("plugin `{label}` imports something the host does not grant")
            })?;
        let pre = match manifest.kind {
            Kind::Router => Pre::Router(
                bindings::router::RouterPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("plugin `{label}` does not implement the `router` world")
                    })?,
            ),
            Kind::Transformer => Pre::Transformer(
                bindings::transformer::TransformerPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("plugin `{label}` does not implement the `transformer` world")
                    })?,
            ),
            // Sessions that an out-of-order event joins need the plugin to
            // merge their states, as Kafka Streams needs a merger.
            Kind::Aggregator if manifest.aggregate.window == WindowKind::Session => {
                Pre::SessionAggregator(
                    bindings::session_aggregator::SessionAggregatorPre::new(instance_pre)
                        .map_err(anyhow::Error::from)
                        .with_context(|| {
                            format!("plugin `{label}` uses session windows but does not implement the `session-aggregator` world (it must export `merge` as well as `aggregate`)")
                        })?,
                )
            }
            Kind::Aggregator => Pre::Aggregator(
                bindings::aggregator::AggregatorPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("plugin `{label}` does not implement the `aggregator` world")
                    })?,
            ),
        };
        let timeout_ms = manifest
            .limits
            .call_timeout_ms
            .unwrap_or(self.config.call_timeout_ms)
            .min(self.config.call_timeout_ms);
        let memory_limit_bytes = manifest
            .limits
            .memory_limit_bytes
            .unwrap_or(self.config.memory_limit_bytes)
            .min(self.config.memory_limit_bytes);
        let config = Plugin::config_entries(&manifest);
        let plugin = Plugin {
            manifest,
            label,
            pre,
            engine: self.engine.clone(),
            timeout: Duration::from_millis(timeout_ms),
            memory_limit_bytes,
            config,
            idle: Mutex::new(Vec::new()),
            stats: Stats::default(),
        };
        // Instantiating once proves the start-up code runs within limits;
        // the instance is kept for the first call.
        let instance = plugin.instantiate().map_err(|error| {
            anyhow::anyhow!(
                "plugin `{}` cannot be instantiated: {error:#}",
                plugin.label
            )
        })?;
        plugin
            .idle
            .lock()
            .expect("idle instances lock")
            .push(instance);
        Ok(plugin)
    }

    /// Loads every `<name>.wasm` with a `<name>.toml` manifest in a folder.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<Arc<Plugin>>> {
        let mut wasm_files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read plugin folder `{}`", dir.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
            .collect();
        wasm_files.sort();
        let mut plugins: Vec<Arc<Plugin>> = Vec::new();
        for wasm_file in wasm_files {
            let manifest_file = wasm_file.with_extension("toml");
            let text = std::fs::read_to_string(&manifest_file).with_context(|| {
                format!(
                    "plugin `{}` has no manifest `{}`",
                    wasm_file.display(),
                    manifest_file.display()
                )
            })?;
            let manifest = Manifest::parse(&text)
                .with_context(|| format!("manifest `{}` is invalid", manifest_file.display()))?;
            if plugins.iter().any(|p| p.manifest.name == manifest.name) {
                anyhow::bail!(
                    "two plugins in `{}` are named `{}`",
                    dir.display(),
                    manifest.name
                );
            }
            let wasm = std::fs::read(&wasm_file)
                .with_context(|| format!("cannot read `{}`", wasm_file.display()))?;
            let started = Instant::now();
            let plugin = self.load(manifest, &wasm)?;
            tracing::info!(
                plugin = %plugin.label,
                kind = plugin.manifest.kind.as_str(),
                compile_ms = started.elapsed().as_millis() as u64,
                "plugin loaded"
            );
            plugins.push(Arc::new(plugin));
        }
        Ok(plugins)
    }
}

impl Plugin {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `name@version`, as written into headers and logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Counters of this plugin.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Instances idle and ready for a call right now.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().expect("idle instances lock").len()
    }

    /// Deadline of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Memory limit of one instance, in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_bytes
    }

    fn new_store(&self) -> Store<CallState> {
        let mut builder = WasiCtx::builder();
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.manifest.grants.contains(&manifest::Grant::Clock) {
            builder.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        let mut store = Store::new(
            &self.engine,
            CallState {
                wasi: builder.build(),
                table: ResourceTable::new(),
                limiter: MemoryLimiter {
                    limit_bytes: self.memory_limit_bytes,
                    denied: false,
                    peak_bytes: 0,
                },
                label: Arc::clone(&self.label),
            },
        );
        store.limiter(|state| &mut state.limiter);
        self.arm_deadline(&mut store);
        store.epoch_deadline_trap();
        store
    }

    fn arm_deadline(&self, store: &mut Store<CallState>) {
        let ticks = self
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64;
        // One extra tick: the ticker may advance right after arming.
        store.set_epoch_deadline(ticks + 1);
    }

    fn instantiate(&self) -> Result<Instance, Failure> {
        let mut store = self.new_store();
        let exports = match &self.pre {
            Pre::Router(pre) => pre.instantiate(&mut store).map(Exports::Router),
            Pre::Transformer(pre) => pre.instantiate(&mut store).map(Exports::Transformer),
            Pre::Aggregator(pre) => pre.instantiate(&mut store).map(Exports::Aggregator),
            Pre::SessionAggregator(pre) => {
                pre.instantiate(&mut store).map(Exports::SessionAggregator)
            }
        };
        self.stats.instances_created.fetch_add(1, Ordering::Relaxed);
        match exports {
            Ok(exports) => Ok(Instance { store, exports }),
            Err(error) => Err(self.classify(&store, &error)),
        }
    }

    fn config_entries(manifest: &Manifest) -> Vec<ConfigEntry> {
        manifest
            .config
            .iter()
            .map(|(name, value)| ConfigEntry {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// Calls a router or transformer on one event. Blocking: run it on a
    /// blocking thread.
    pub fn call(&self, event: &Event) -> Result<Output, Failure> {
        self.call_with_state(event, None)
    }

    /// Calls the plugin on one event; an aggregator also gets the key's
    /// current state. Blocking: run it on a blocking thread.
    pub fn call_with_state(&self, event: &Event, state: Option<&str>) -> Result<Output, Failure> {
        self.call_configured(event, state, &[])
    }

    /// Calls the plugin with configuration values added to the manifest's
    /// (a value named in both is the caller's): a route gives its router
    /// plugin the route's own configuration this way. Blocking.
    pub fn call_configured(
        &self,
        event: &Event,
        state: Option<&str>,
        extra_config: &[ConfigEntry],
    ) -> Result<Output, Failure> {
        let span = tracing::debug_span!(
            "plugin",
            otel.name = %format_args!("plugin {}", self.manifest.name),
            plugin.name = %self.manifest.name,
            plugin.version = %self.manifest.version,
            plugin.kind = self.manifest.kind.as_str(),
            event.id = %event.metadata.id,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let _entered = span.enter();
        let started = Instant::now();
        let result = if extra_config.is_empty() {
            self.call_inner(event, state, &self.config)
        } else {
            self.call_inner(event, state, &self.config_with(extra_config))
        };
        self.finish(&span, started, result)
    }

    /// The manifest's configuration with `extra` added (a value named in
    /// both is `extra`'s).
    fn config_with(&self, extra: &[ConfigEntry]) -> Vec<ConfigEntry> {
        let mut config: Vec<ConfigEntry> = self
            .config
            .iter()
            .filter(|entry| !extra.iter().any(|e| e.name == entry.name))
            .cloned()
            .collect();
        config.extend_from_slice(extra);
        config
    }

    /// Counts a finished call and marks its span when it failed.
    fn finish<T>(
        &self,
        span: &tracing::Span,
        started: Instant,
        result: Result<T, Failure>,
    ) -> Result<T, Failure> {
        let micros = started.elapsed().as_micros() as u64;
        self.stats.record(result.as_ref().err(), micros);
        if let Err(failure) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", failure.class());
        }
        result
    }

    /// Merges the states of two sessions of `key` that an event joined
    /// (earlier session first), through a `session-aggregator`'s `merge`.
    /// `extra_config` is added as in [`Self::call_configured`]: the
    /// aggregator gives the merged session's `window.start` and
    /// `window.end`. Blocking.
    pub fn merge_sessions(
        &self,
        key: &str,
        earlier: &str,
        later: &str,
        extra_config: &[ConfigEntry],
    ) -> Result<Option<String>, Failure> {
        let span = tracing::debug_span!(
            "plugin",
            otel.name = %format_args!("plugin {} merge", self.manifest.name),
            plugin.name = %self.manifest.name,
            plugin.version = %self.manifest.version,
            plugin.kind = self.manifest.kind.as_str(),
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let _entered = span.enter();
        let started = Instant::now();
        let result = self.merge_inner(key, earlier, later, &self.config_with(extra_config));
        self.finish(&span, started, result)
    }

    fn merge_inner(
        &self,
        key: &str,
        earlier: &str,
        later: &str,
        config: &[ConfigEntry],
    ) -> Result<Option<String>, Failure> {
        let mut instance = self.checkout()?;
        let result = match &instance.exports {
            Exports::SessionAggregator(aggregator) => {
                aggregator.call_merge(&mut instance.store, key, earlier, later, config)
            }
            _ => {
                self.checkin(instance);
                return Err(Failure::InvalidOutput(format!(
                    "plugin `{}` cannot merge sessions: it does not implement the `session-aggregator` world",
                    self.label
                )));
            }
        };
        let inner = match result {
            Ok(inner) => inner,
            // A trapped instance is dropped here, never called again.
            Err(error) => return Err(self.classify(&instance.store, &error)),
        };
        self.checkin(instance);
        let merged = inner.map_err(plugin_failure)?;
        if merged
            .as_ref()
            .is_some_and(|state| state.len() > MAX_OUTPUT_BYTES)
        {
            return Err(Failure::InvalidOutput(format!(
                "a merged state larger than the {MAX_OUTPUT_BYTES} bytes allowed"
            )));
        }
        Ok(merged)
    }

    /// An idle instance, or a new one, armed for one call.
    fn checkout(&self) -> Result<Instance, Failure> {
        let idle = self.idle.lock().expect("idle instances lock").pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        instance.store.data_mut().limiter.denied = false;
        self.arm_deadline(&mut instance.store);
        Ok(instance)
    }

    /// Keeps an instance that finished a call for the next one.
    fn checkin(&self, instance: Instance) {
        self.stats.peak_memory_bytes.fetch_max(
            instance.store.data().limiter.peak_bytes as u64,
            Ordering::Relaxed,
        );
        let mut idle = self.idle.lock().expect("idle instances lock");
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(instance);
        }
    }

    fn call_inner(
        &self,
        event: &Event,
        state: Option<&str>,
        config: &[ConfigEntry],
    ) -> Result<Output, Failure> {
        let mut instance = self.checkout()?;
        let result = match &instance.exports {
            Exports::Router(router) => router
                .call_route(&mut instance.store, event, config)
                .map(|inner| inner.map(Output::Destinations)),
            Exports::Transformer(transformer) => transformer
                .call_transform(&mut instance.store, event, config)
                .map(|inner| inner.map(Output::Events)),
            Exports::Aggregator(aggregator) => aggregator
                .call_aggregate(&mut instance.store, event, state, config)
                .map(|inner| {
                    inner.map(|result| Output::Aggregate {
                        state: result.state,
                        events: result.emit,
                    })
                }),
            Exports::SessionAggregator(aggregator) => aggregator
                .call_aggregate(&mut instance.store, event, state, config)
                .map(|inner| {
                    inner.map(|result| Output::Aggregate {
                        state: result.state,
                        events: result.emit,
                    })
                }),
        };
        let inner = match result {
            Ok(inner) => inner,
            // A trapped instance is dropped here, never called again.
            Err(error) => return Err(self.classify(&instance.store, &error)),
        };
        self.checkin(instance);
        let output = inner.map_err(plugin_failure)?;
        let (count, bytes) = match &output {
            Output::Destinations(topics) => {
                (topics.len(), topics.iter().map(String::len).sum::<usize>())
            }
            Output::Aggregate { state, events } => (
                events.len(),
                state.as_ref().map_or(0, String::len)
                    + events
                        .iter()
                        .map(|e| e.noun.len() + e.verb.len() + e.key.len() + e.object.len())
                        .sum::<usize>(),
            ),
            Output::Events(events) => (
                events.len(),
                events
                    .iter()
                    .map(|e| e.noun.len() + e.verb.len() + e.key.len() + e.object.len())
                    .sum(),
            ),
        };
        if count > MAX_OUTPUTS {
            return Err(Failure::InvalidOutput(format!(
                "{count} outputs for one event, more than the {MAX_OUTPUTS} allowed"
            )));
        }
        if bytes > MAX_OUTPUT_BYTES {
            return Err(Failure::InvalidOutput(format!(
                "{bytes} bytes of output for one event, more than the {MAX_OUTPUT_BYTES} allowed"
            )));
        }
        Ok(output)
    }

    fn classify(&self, store: &Store<CallState>, error: &wasmtime::Error) -> Failure {
        self.stats
            .peak_memory_bytes
            .fetch_max(store.data().limiter.peak_bytes as u64, Ordering::Relaxed);
        if store.data().limiter.denied {
            return Failure::OutOfMemory(self.memory_limit_bytes);
        }
        if let Some(trap) = error.downcast_ref::<Trap>()
            && *trap == Trap::Interrupt
        {
            return Failure::Timeout(self.timeout.as_millis() as u64);
        }
        // The trap code is the reason; the wasm backtrace goes to the log,
        // where an operator can read it, not into dead-letter headers.
        tracing::debug!(plugin = %self.label, error = format!("{error:?}"), "plugin trap details");
        let mut reason = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        reason.truncate(reason.floor_char_boundary(1_000));
        Failure::Trap(reason)
    }
}

/// A plugin's own error, as the reason it failed.
fn plugin_failure(error: PluginError) -> Failure {
    Failure::PluginError(match error {
        PluginError::InvalidEvent(reason) => format!("invalid event: {reason}"),
        PluginError::InvalidConfig(reason) => format!("invalid config: {reason}"),
        PluginError::Failed(reason) => reason,
    })
}
