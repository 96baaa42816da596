//! The routing engine: one consumer group (`routing.group`) over every
//! noun's topic, evaluating every route on every record and forwarding it,
//! exactly once, through Kafka transactions.
//!
//! Each instance runs one engine in an [`exactly_once`](crate::exactly_once)
//! loop: the forwards and dead letters a record causes, and the consumer
//! offsets, commit in one transaction every `routing.commit_interval_ms`
//! (or after `routing.max_transaction_records`). A crash or a lost broker
//! aborts the open transaction and its records are read again, so nothing
//! is forwarded twice and nothing is lost.
//!
//! A forwarded record keeps the key, the value bytes and every header, and
//! gains `switchyard-route` (the route id) and, when a router plugin picked
//! the destination, `switchyard-router` (its `name@version`). Keys keep
//! their partitioning, so per-key order holds at each destination.
//!
//! A route that fails on a record (an undecodable record under a route with
//! a filter or plugin, a plugin failure, a destination the route does not
//! allow) sends the record to the dead-letter topic with headers naming the
//! route, and the other routes carry on.
//!
//! The engine reads the topics of the nouns in the schema catalog (the
//! only ones this host publishes to; a new noun comes with its schemas
//! and a restart), or only those of `routing.nouns` when it is set: an
//! engine that follows every noun also fetches, and skips, the events no
//! route reads, such as an aggregator's output noun. A new
//! group starts from the beginning of each topic (`routing.start`), so a
//! route can be set before its nouns' events arrive; events written before
//! a route existed are not routed by it when the group was already past
//! them.
//!
//! A router plugin that keeps failing under routes is paused through the
//! plugin store, like a pipeline (see [`crate::plugin::auto_pause`]); its
//! routes then dead-letter as `plugin-unavailable` until an admin resumes
//! it. Known limit: a plugin loaded from the plugins folder cannot be
//! paused that way and keeps dead-lettering.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Message};
use serde::Serialize;
use tokio::sync::watch;

use super::decide::{Candidate, Decision, decide};
use super::store::RouteStore;
use crate::config::{RoutingConfig, Start};
use crate::envelope::{Envelope, ROUTE_HEADER, ROUTER_HEADER};
use crate::exactly_once::{Loop, LoopConfig, LoopStatus, Outbox, Processor};
use crate::kafka::{Kafka, TopicCreationError, TopicKind};
use crate::pipeline::dlq;
use crate::plugin::Plugin;
use crate::plugin::auto_pause::Tracked;
use crate::plugin::supervisor::Supervisor;
use crate::registry::Registry;
use crate::subscribe;

/// What the engine needs from the host.
pub struct EngineParts {
    /// Kafka clients and settings.
    pub kafka: Arc<Kafka>,
    /// Registry, to decode objects for filters and plugins.
    pub registry: Arc<Registry>,
    /// Routes.
    pub routes: Arc<RouteStore>,
    /// Running plugins.
    pub supervisor: Arc<Supervisor>,
    /// Pauses a router plugin that keeps failing under routes.
    pub auto_pause: Arc<crate::plugin::auto_pause::AutoPause>,
    /// Settings.
    pub config: RoutingConfig,
    /// Nouns known at start, whose topics exist.
    pub nouns: Vec<String>,
}

/// Counters of one route on this instance.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RouteCounters {
    /// Records the route's source and filter took.
    pub matched: u64,
    /// Records written to destinations (one per destination).
    pub forwarded: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
}

impl RouteCounters {
    fn add(&mut self, other: &RouteCounters) {
        self.matched += other.matched;
        self.forwarded += other.forwarded;
        self.dead_lettered += other.dead_lettered;
    }
}

/// What the engine is doing, for the API and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineStatus {
    /// The consume-process-produce loop.
    #[serde(flatten)]
    pub status: LoopStatus,
    /// Counters per route id, as counted by committed transactions.
    pub routes: BTreeMap<String, RouteCounters>,
}

/// A handle on the running engine.
pub struct RoutingEngine {
    looped: Arc<Loop>,
    totals: Arc<Mutex<BTreeMap<String, RouteCounters>>>,
}

impl RoutingEngine {
    /// Starts the engine; it stops when `shutdown_rx` turns true, after
    /// committing what it has done.
    pub fn start(parts: EngineParts, shutdown_rx: watch::Receiver<bool>) -> Arc<RoutingEngine> {
        let totals = Arc::new(Mutex::new(BTreeMap::new()));
        let config = LoopConfig {
            operation: "route",
            group: parts.config.group.clone(),
            topics: parts.nouns.clone(),
            commit_interval: Duration::from_millis(parts.config.commit_interval_ms),
            max_records: parts.config.max_transaction_records,
            transaction_timeout: Duration::from_millis(parts.config.transaction_timeout_ms),
            pin_latest: if parts.config.start == Start::Latest {
                parts.nouns.clone()
            } else {
                Vec::new()
            },
        };
        let kafka = Arc::clone(&parts.kafka);
        let processor = Arc::new(Mutex::new(RouteProcessor {
            parts,
            handle: tokio::runtime::Handle::current(),
            pending: BTreeMap::new(),
            totals: Arc::clone(&totals),
            windows: HashMap::new(),
        }));
        let looped = Loop::start(kafka, config, processor, shutdown_rx);
        Arc::new(RoutingEngine { looped, totals })
    }

    /// The engine's status now.
    pub fn status(&self) -> EngineStatus {
        EngineStatus {
            status: self.looped.status(),
            routes: self.totals.lock().expect("totals lock").clone(),
        }
    }

    /// Waits for the engine to end (after shutdown was signalled).
    pub fn join(&self) {
        self.looped.join();
    }
}

struct RouteProcessor {
    parts: EngineParts,
    handle: tokio::runtime::Handle,
    /// Counters of the open transaction.
    pending: BTreeMap<String, RouteCounters>,
    totals: Arc<Mutex<BTreeMap<String, RouteCounters>>>,
    /// Recent calls of each router plugin (by name) under any route, with
    /// the version they were of, for pausing one that keeps failing.
    windows: HashMap<String, Option<Tracked>>,
}

impl Processor for RouteProcessor {
    fn process(
        &mut self,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()> {
        self.route_record(message, outbox)
    }

    fn committed(&mut self) {
        let mut totals = self.totals.lock().expect("totals lock");
        for (id, counters) in std::mem::take(&mut self.pending) {
            totals.entry(id).or_default().add(&counters);
        }
    }

    fn aborted(&mut self) {
        self.pending.clear();
        // A destination may have been deleted behind the host's back; ask
        // Kafka again rather than trust the cache of created topics.
        self.parts.kafka.forget_known_topics();
    }

    fn set_aside(
        &mut self,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
        reason: &str,
    ) -> anyhow::Result<()> {
        Self::dead_letter(
            &self.parts.kafka.config().dead_letter_topic,
            &mut self.pending,
            outbox,
            message,
            None,
            "undeliverable",
            reason,
            None,
        )
    }
}

impl RouteProcessor {
    /// Counts one call of a router plugin towards its failure window, and
    /// pauses it through the store when it keeps failing: a router that
    /// times out on every event would otherwise hold up every route.
    /// Events of its routes are then dead-lettered as `plugin-unavailable`
    /// until an admin resumes it. A folder plugin cannot be paused that way.
    fn count_call(
        windows: &mut HashMap<String, Option<Tracked>>,
        parts: &EngineParts,
        handle: &tokio::runtime::Handle,
        call: (&str, &str, bool),
    ) {
        let (name, label, failed) = call;
        let running = || handle.block_on(parts.supervisor.running(name));
        let slot = windows.entry(name.to_string()).or_default();
        let Some(failures) = parts.auto_pause.track(slot, label, running, failed) else {
            return;
        };
        let Some(plugin) = running() else {
            return;
        };
        if !handle.block_on(parts.auto_pause.pause(&plugin, failures)) {
            tracing::error!(
                plugin = label,
                "a folder router plugin keeps failing under routes; it cannot be paused"
            );
        }
    }

    /// Copies the record to the dead-letter topic, naming the route (when
    /// one failed), the class and the reason.
    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        dead_letter_topic: &str,
        pending: &mut BTreeMap<String, RouteCounters>,
        outbox: &mut Outbox<'_>,
        message: &BorrowedMessage<'_>,
        route: Option<&str>,
        class: &str,
        reason: &str,
        plugin: Option<&str>,
    ) -> anyhow::Result<()> {
        tracing::warn!(
            route,
            class,
            reason,
            "route failed on an event; dead-lettered"
        );
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut extra: Vec<(&str, &[u8])> = vec![
            (dlq::CLASS, class.as_bytes()),
            (dlq::REASON, reason.as_bytes()),
            (dlq::TOPIC, message.topic().as_bytes()),
            (dlq::PARTITION, partition.as_bytes()),
            (dlq::OFFSET, offset.as_bytes()),
        ];
        if let Some(route) = route {
            extra.push((dlq::ROUTE, route.as_bytes()));
            pending.entry(route.to_string()).or_default().dead_lettered += 1;
        }
        if let Some(plugin) = plugin {
            extra.push((dlq::PLUGIN, plugin.as_bytes()));
        }
        crate::exactly_once::dead_letter(outbox, dead_letter_topic, message, &extra)?;
        Ok(())
    }

    /// Evaluates every route on one record and writes what they decide
    /// into the open transaction.
    fn route_record(
        &mut self,
        message: &BorrowedMessage<'_>,
        outbox: &mut Outbox<'_>,
    ) -> anyhow::Result<()> {
        let parts = &self.parts;
        let routes = parts.routes.snapshot();
        // A record whose headers do not say what it is cannot be matched to
        // any route; while there are routes, it goes to the dead-letter
        // topic once, rather than vanish.
        let envelope = match Envelope::from_headers(message.headers(), message.key()) {
            Ok(envelope) => envelope,
            Err(error) if routes.values().any(|r| r.route.enabled) => {
                return Self::dead_letter(
                    &self.parts.kafka.config().dead_letter_topic,
                    &mut self.pending,
                    outbox,
                    message,
                    None,
                    "undecodable",
                    &format!("the record's CloudEvents headers are not readable: {error}"),
                    None,
                );
            }
            Err(_) => return Ok(()),
        };
        let (noun, verb) = (envelope.noun.as_str(), envelope.verb.as_str());
        let mut reading = routes
            .values()
            .filter(|stored| stored.route.enabled && stored.route.reads(noun, verb))
            .peekable();
        if reading.peek().is_none() {
            return Ok(());
        }
        // Routes that look into the object: with one, a filter's few fields
        // are decoded for it alone; with more, the object is decoded whole,
        // once, for all of them.
        let object_readers = routes
            .values()
            .filter(|stored| {
                let route = &stored.route;
                route.enabled
                    && route.reads(noun, verb)
                    && (route.filter.is_some() || route.plugin.is_some())
            })
            .count();
        let decoded = std::cell::OnceCell::new();
        let decode = || decoded.get_or_init(|| subscribe::decode(&parts.registry, message));
        let plugin_event = || {
            decode()
                .as_ref()
                .ok()
                .map(|delivered| crate::pipeline::plugin_event(message, delivered))
        };
        let handle = &self.handle;
        let plugins =
            |name: &str| -> Option<Arc<Plugin>> { handle.block_on(parts.supervisor.running(name)) };
        for stored in reading {
            let route = &stored.route;
            // One span per route that reads this event, under the record's.
            let span = tracing::debug_span!(
                "route",
                otel.name = %format_args!("route {}", route.id),
                route.id = %route.id,
                route.owner = %route.owner,
                matched = tracing::field::Empty,
                destinations = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            let _entered = span.enter();
            // A route with a filter and no plugin reads a few top-level
            // fields: when it is the only route looking into the object,
            // only those are built (the rest are still checked, so an event
            // fails to decode exactly as it would whole).
            let fields;
            let object = match (&route.filter, &route.plugin) {
                (Some(filter), None) if object_readers == 1 => {
                    let keep = filter.top_level_fields();
                    fields = message
                        .payload()
                        .ok_or_else(|| "record has no value".to_string())
                        .and_then(|value| {
                            subscribe::decode_value_fields(&parts.registry, value, |name| {
                                keep.contains(name)
                            })
                        });
                    fields.as_ref().map_err(String::as_str)
                }
                (None, None) => Err("not decoded"),
                _ => decode().as_ref().map(|d| &d.object).map_err(String::as_str),
            };
            let candidate = Candidate {
                noun,
                verb,
                object,
                plugin_event: &plugin_event,
                explain: false,
            };
            let (decision, reasons) = decide(route, &candidate, &plugins);
            if let (Some(plugin), Some(label)) = (&route.plugin, reasons.plugin.as_deref()) {
                // An event a plugin cannot be given is not the plugin's
                // failure.
                let failed = matches!(
                    &decision,
                    Decision::Fail { class, plugin: Some(_), .. } if *class != "undecodable"
                );
                let counted = !matches!(
                    &decision,
                    Decision::Fail {
                        class: "undecodable",
                        ..
                    }
                );
                if counted {
                    Self::count_call(
                        &mut self.windows,
                        parts,
                        handle,
                        (&plugin.name, label, failed),
                    );
                }
            }
            match decision {
                Decision::Skip => {
                    span.record("matched", false);
                }
                Decision::Forward(mut topics) => {
                    topics.sort();
                    topics.dedup();
                    span.record("matched", true);
                    span.record("destinations", topics.join(",").as_str());
                    let router = reasons.plugin.as_deref();
                    // A destination Kafka refuses for good (a bad name, one
                    // that collides with an existing topic) fails this route
                    // on this event only.
                    let mut refused = None;
                    for topic in &topics {
                        if let Err(error) = crate::nvo::check_topic(topic) {
                            refused = Some(error.detail);
                            break;
                        }
                        if let Err(error) =
                            handle.block_on(parts.kafka.ensure_topic(topic, TopicKind::Events))
                        {
                            match error.downcast_ref::<TopicCreationError>() {
                                Some(creation) if creation.is_permanent() => {
                                    refused = Some(creation.to_string());
                                    break;
                                }
                                _ => return Err(error),
                            }
                        }
                    }
                    if let Some(reason) = refused {
                        Self::dead_letter(
                            &self.parts.kafka.config().dead_letter_topic,
                            &mut self.pending,
                            outbox,
                            message,
                            Some(&route.id),
                            "undeliverable",
                            &reason,
                            router,
                        )?;
                        continue;
                    }
                    for topic in &topics {
                        let mut extra: Vec<(&str, &[u8])> =
                            vec![(ROUTE_HEADER, route.id.as_bytes())];
                        if let Some(label) = router {
                            extra.push((ROUTER_HEADER, label.as_bytes()));
                        }
                        outbox.send(
                            topic,
                            None,
                            message.key(),
                            message.payload(),
                            crate::trace_context::forwarded_headers(
                                message.headers(),
                                &span,
                                &extra,
                            ),
                        )?;
                        tracing::debug!(route = route.id, id = envelope.id, topic, "forwarded");
                    }
                    let counters = self.pending.entry(route.id.clone()).or_default();
                    counters.matched += 1;
                    counters.forwarded += topics.len() as u64;
                }
                Decision::Fail {
                    class,
                    reason,
                    plugin,
                } => {
                    span.record("matched", true);
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", class);
                    Self::dead_letter(
                        &self.parts.kafka.config().dead_letter_topic,
                        &mut self.pending,
                        outbox,
                        message,
                        Some(&route.id),
                        class,
                        &reason,
                        plugin.as_deref(),
                    )?;
                }
            }
        }
        Ok(())
    }
}
