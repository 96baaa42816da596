//! Prometheus metrics, served as text (exposition format 0.0.4) at
//! `GET /metrics` on the REST port.
//!
//! Counts that happen on a request path (publishes, subscribers, registry
//! calls) are kept here as they happen. Everything the host already counts
//! elsewhere (routes, aggregators, plugins, consumer lag) is read at scrape
//! time from where it lives, so there is one source for each number.
//!
//! Label values are bounded: nouns are those with a schema (others are
//! counted as `(unknown)`), topics exist, routes and plugins are the
//! deployment's own. Counters are per process and start at zero.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::App;

/// Upper bounds of the publish latency buckets, in seconds.
const PUBLISH_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; PUBLISH_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(PUBLISH_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The counts kept as they happen.
#[derive(Default)]
pub struct Metrics {
    published: Mutex<BTreeMap<(String, &'static str), u64>>,
    publish_seconds: Mutex<BTreeMap<String, Histogram>>,
    subscribers: Mutex<BTreeMap<(&'static str, String), i64>>,
    delivered: Mutex<BTreeMap<(&'static str, String), u64>>,
    registry_requests: Mutex<BTreeMap<(String, u16), u64>>,
    pipeline_dead_letters: Mutex<BTreeMap<(String, String), u64>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// One publish attempt of an event of `noun` ended with `code` (`ok`
    /// or an error code) after `elapsed`.
    pub fn published(&self, noun: &str, code: &'static str, elapsed: Duration) {
        *self
            .published
            .lock()
            .expect("metrics lock")
            .entry((noun.to_string(), code))
            .or_default() += 1;
        self.publish_seconds
            .lock()
            .expect("metrics lock")
            .entry(noun.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A subscriber joined (`+1`) or left (`-1`) a topic through `api`.
    pub fn subscriber(&self, api: &'static str, topic: &str, change: i64) {
        *self
            .subscribers
            .lock()
            .expect("metrics lock")
            .entry((api, topic.to_string()))
            .or_default() += change;
    }

    /// An event went out to a subscriber.
    pub fn delivered(&self, api: &'static str, topic: &str) {
        *self
            .delivered
            .lock()
            .expect("metrics lock")
            .entry((api, topic.to_string()))
            .or_default() += 1;
    }

    /// The registry answered a request.
    pub fn registry_request(&self, method: &str, status: u16) {
        *self
            .registry_requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_string(), status))
            .or_default() += 1;
    }

    /// A transformer pipeline sent an event to the dead-letter topic.
    pub fn pipeline_dead_letter(&self, plugin: &str, class: &str) {
        *self
            .pipeline_dead_letters
            .lock()
            .expect("metrics lock")
            .entry((plugin.to_string(), class.to_string()))
            .or_default() += 1;
    }
}

/// Keeps a subscriber counted while it lives.
pub struct SubscriberGuard {
    api: &'static str,
    topic: String,
}

impl SubscriberGuard {
    /// Counts a subscriber until the guard drops.
    pub fn new(api: &'static str, topic: &str) -> SubscriberGuard {
        metrics().subscriber(api, topic, 1);
        SubscriberGuard {
            api,
            topic: topic.to_string(),
        }
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        metrics().subscriber(self.api, &self.topic, -1);
    }
}

/// Prometheus text exposition, one family at a time.
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A histogram from cumulative-or-not bucket counts: `counts[i]` are
    /// the observations at most `bounds[i]` (cumulative), `count` all of
    /// them.
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) {
        let bucket = format!("{name}_bucket");
        for (bound, value) in bounds.iter().zip(cumulative) {
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, value);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, count);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count);
    }
}

/// The metrics of this process and of `app`, as Prometheus text.
pub async fn render(app: &Arc<App>) -> String {
    let mut out = Exposition {
        text: String::with_capacity(8 * 1024),
    };
    let m = metrics();

    out.family(
        "switchyard_publish_events_total",
        "counter",
        "Events a publisher handed in, by noun and outcome (`ok` or the error code).",
    );
    for ((noun, code), value) in m.published.lock().expect("metrics lock").iter() {
        out.sample(
            "switchyard_publish_events_total",
            &[("noun", noun), ("code", code)],
            value,
        );
    }
    out.family(
        "switchyard_publish_duration_seconds",
        "histogram",
        "Time from a publish call to Kafka's acknowledgement (or the error), by noun.",
    );
    for (noun, histogram) in m.publish_seconds.lock().expect("metrics lock").iter() {
        out.histogram(
            "switchyard_publish_duration_seconds",
            &[("noun", noun)],
            &PUBLISH_BUCKETS,
            &histogram.buckets,
            histogram.count,
            histogram.sum,
        );
    }
    out.family(
        "switchyard_subscribers",
        "gauge",
        "Open subscriptions, by API (`sse`, `grpc`) and topic.",
    );
    for ((api, topic), value) in m.subscribers.lock().expect("metrics lock").iter() {
        out.sample(
            "switchyard_subscribers",
            &[("api", api), ("topic", topic)],
            value,
        );
    }
    out.family(
        "switchyard_subscriber_events_total",
        "counter",
        "Events delivered to subscribers, by API and topic.",
    );
    for ((api, topic), value) in m.delivered.lock().expect("metrics lock").iter() {
        out.sample(
            "switchyard_subscriber_events_total",
            &[("api", api), ("topic", topic)],
            value,
        );
    }
    out.family(
        "switchyard_registry_requests_total",
        "counter",
        "Requests to the schema registry API, by method and status.",
    );
    for ((method, status), value) in m.registry_requests.lock().expect("metrics lock").iter() {
        out.sample(
            "switchyard_registry_requests_total",
            &[("method", method), ("status", &status.to_string())],
            value,
        );
    }

    routing_and_aggregation(&mut out, app);
    plugins(&mut out, app).await;
    out.text
}

fn routing_and_aggregation(out: &mut Exposition, app: &Arc<App>) {
    let engine = app.routing_engine.get().map(|engine| engine.status());
    let aggregators = app.aggregators.all();

    out.family(
        "switchyard_route_events_total",
        "counter",
        "Route outcomes on this instance in committed transactions: `matched` events, `forwarded` copies, `dead_lettered` events.",
    );
    if let Some(engine) = &engine {
        for (route, counters) in &engine.routes {
            for (outcome, value) in [
                ("matched", counters.matched),
                ("forwarded", counters.forwarded),
                ("dead_lettered", counters.dead_lettered),
            ] {
                out.sample(
                    "switchyard_route_events_total",
                    &[("route", route), ("outcome", outcome)],
                    value,
                );
            }
        }
    }

    out.family(
        "switchyard_consumer_lag",
        "gauge",
        "Records not yet processed, per consumer group and partition owned by this instance (from the Kafka client's statistics, every 5 s).",
    );
    let statuses: Vec<(String, crate::exactly_once::LoopStatus)> = engine
        .iter()
        .map(|e| ("routing".to_string(), e.status.clone()))
        .chain(
            aggregators
                .iter()
                .map(|a| (format!("aggregator:{}", a.name), a.status())),
        )
        .collect();
    for (consumer, status) in &statuses {
        for (partition, lag) in &status.lag {
            out.sample(
                "switchyard_consumer_lag",
                &[
                    ("consumer", consumer),
                    ("group", &status.group),
                    ("partition", partition),
                ],
                lag,
            );
        }
    }

    out.family(
        "switchyard_transactions_total",
        "counter",
        "Kafka transactions of each exactly-once loop on this instance, by outcome (`committed`, `aborted`: their records are read again).",
    );
    for (consumer, status) in &statuses {
        for (outcome, value) in [
            ("committed", status.transactions_committed),
            ("aborted", status.transactions_aborted),
        ] {
            out.sample(
                "switchyard_transactions_total",
                &[("consumer", consumer), ("outcome", outcome)],
                value,
            );
        }
    }
    out.family(
        "switchyard_transaction_commit_seconds_total",
        "counter",
        "Seconds each exactly-once loop spent committing (offsets and commit), summed; divided by the committed transactions, the mean commit latency.",
    );
    for (consumer, status) in &statuses {
        out.sample(
            "switchyard_transaction_commit_seconds_total",
            &[("consumer", consumer)],
            status.commit_seconds,
        );
    }
    out.family(
        "switchyard_transaction_commit_seconds_max",
        "gauge",
        "The longest commit of each exactly-once loop since it started, in seconds.",
    );
    for (consumer, status) in &statuses {
        out.sample(
            "switchyard_transaction_commit_seconds_max",
            &[("consumer", consumer)],
            status.commit_seconds_max,
        );
    }

    out.family(
        "switchyard_transaction_stalled_seconds",
        "gauge",
        "How long the commit in progress of each exactly-once loop has taken, once past twice the transaction timeout; 0 otherwise. Nonzero turns `/healthz` unhealthy.",
    );
    for (consumer, status) in &statuses {
        out.sample(
            "switchyard_transaction_stalled_seconds",
            &[("consumer", consumer)],
            status.stalled_seconds.unwrap_or(0.0),
        );
    }

    out.family(
        "switchyard_route_lag",
        "gauge",
        "Records of a route's source topics not yet processed by this instance.",
    );
    if let Some(engine) = &engine {
        for stored in app.routes.snapshot().values() {
            let lag: i64 = engine
                .status
                .lag
                .iter()
                .filter(|(partition, _)| {
                    partition
                        .rsplit_once(':')
                        .is_some_and(|(topic, _)| stored.route.reads_noun(topic))
                })
                .map(|(_, lag)| *lag)
                .sum();
            out.sample("switchyard_route_lag", &[("route", &stored.route.id)], lag);
        }
    }

    out.family(
        "switchyard_aggregator_lag",
        "gauge",
        "Records of an aggregator's input topics not yet folded by this instance.",
    );
    for (consumer, status) in &statuses {
        if let Some(name) = consumer.strip_prefix("aggregator:") {
            let lag: i64 = status.lag.values().sum();
            out.sample("switchyard_aggregator_lag", &[("aggregator", name)], lag);
        }
    }

    out.family(
        "switchyard_aggregator_events_total",
        "counter",
        "Aggregator outcomes on this instance: `folded`, `emitted`, `dead_lettered`, `late_dropped` events and `expired` state entries.",
    );
    for aggregator in &aggregators {
        let counters = &aggregator.counters;
        for (outcome, value) in [
            ("folded", &counters.folded),
            ("emitted", &counters.emitted),
            ("dead_lettered", &counters.dead_lettered),
            ("late_dropped", &counters.late_dropped),
            ("expired", &counters.expired),
        ] {
            out.sample(
                "switchyard_aggregator_events_total",
                &[("aggregator", &aggregator.name), ("outcome", outcome)],
                value.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }

    out.family(
        "switchyard_dead_letters_total",
        "counter",
        "Events sent to the dead-letter topic, by the stage that failed (`route`, `aggregator`, `transformer`) and its name.",
    );
    if let Some(engine) = &engine {
        for (route, counters) in &engine.routes {
            out.sample(
                "switchyard_dead_letters_total",
                &[("stage", "route"), ("name", route)],
                counters.dead_lettered,
            );
        }
    }
    for aggregator in &aggregators {
        out.sample(
            "switchyard_dead_letters_total",
            &[("stage", "aggregator"), ("name", &aggregator.name)],
            aggregator
                .counters
                .dead_lettered
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    let mut by_plugin: BTreeMap<&str, u64> = BTreeMap::new();
    let pipeline = metrics()
        .pipeline_dead_letters
        .lock()
        .expect("metrics lock");
    for ((plugin, _), value) in pipeline.iter() {
        *by_plugin.entry(plugin).or_default() += value;
    }
    for (plugin, value) in by_plugin {
        out.sample(
            "switchyard_dead_letters_total",
            &[("stage", "transformer"), ("name", plugin)],
            value,
        );
    }
}

async fn plugins(out: &mut Exposition, app: &Arc<App>) {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::plugin::Plugin;
    let plugins = app.supervisor.plugins().await;
    let labels: Vec<(String, String)> = plugins
        .iter()
        .map(|p| (p.manifest().name.clone(), p.manifest().version.clone()))
        .collect();

    // One value per plugin version.
    type Value = fn(&Plugin) -> u64;
    let simple: [(&str, &str, &str, Value); 4] = [
        (
            "switchyard_plugin_calls_total",
            "counter",
            "Calls of a plugin version on this instance.",
            |p| p.stats().calls.load(Relaxed),
        ),
        (
            "switchyard_plugin_instances",
            "gauge",
            "Warm instances of a plugin version, ready for calls.",
            |p| p.idle_instances() as u64,
        ),
        (
            "switchyard_plugin_instances_created_total",
            "counter",
            "Instances created of a plugin version (one more after every trap).",
            |p| p.stats().instances_created.load(Relaxed),
        ),
        (
            "switchyard_plugin_peak_memory_bytes",
            "gauge",
            "Largest linear memory an instance of a plugin version grew to.",
            |p| p.stats().peak_memory_bytes.load(Relaxed),
        ),
    ];
    for (family, kind, help, value) in simple {
        out.family(family, kind, help);
        for (plugin, (name, version)) in plugins.iter().zip(&labels) {
            out.sample(
                family,
                &[("plugin", name), ("version", version)],
                value(plugin),
            );
        }
    }

    out.family(
        "switchyard_plugin_errors_total",
        "counter",
        "Failed calls of a plugin version, by failure class.",
    );
    for (plugin, (name, version)) in plugins.iter().zip(&labels) {
        let stats = plugin.stats();
        for (class, counter) in [
            ("plugin-error", &stats.plugin_errors),
            ("trap", &stats.traps),
            ("timeout", &stats.timeouts),
            ("out-of-memory", &stats.out_of_memory),
            ("invalid-output", &stats.invalid_outputs),
        ] {
            out.sample(
                "switchyard_plugin_errors_total",
                &[("plugin", name), ("version", version), ("class", class)],
                counter.load(Relaxed),
            );
        }
    }

    out.family(
        "switchyard_plugin_call_duration_seconds",
        "histogram",
        "Duration of plugin calls.",
    );
    let bounds: Vec<f64> = crate::plugin::LATENCY_BUCKETS_MICROS[..5]
        .iter()
        .map(|micros| *micros as f64 / 1e6)
        .collect();
    for (plugin, (name, version)) in plugins.iter().zip(&labels) {
        let stats = plugin.stats();
        // The plugin counts calls per bucket below each bound; Prometheus
        // wants each bucket to include the ones below it.
        let mut cumulative = Vec::with_capacity(bounds.len());
        let mut total = 0;
        for bucket in &stats.latency_buckets[..bounds.len()] {
            total += bucket.load(Relaxed);
            cumulative.push(total);
        }
        out.histogram(
            "switchyard_plugin_call_duration_seconds",
            &[("plugin", name), ("version", version)],
            &bounds,
            &cumulative,
            stats.calls.load(Relaxed),
            stats.busy_micros.load(Relaxed) as f64 / 1e6,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut out = Exposition {
            text: String::new(),
        };
        out.sample("m", &[("a", "x\"y\\z\nw")], 1);
        assert_eq!(out.text, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }

    #[test]
    fn histograms_are_cumulative_with_inf() {
        let mut histogram = Histogram::default();
        histogram.observe(0.002);
        histogram.observe(0.02);
        histogram.observe(30.0);
        assert_eq!(histogram.buckets[0], 0);
        assert_eq!(histogram.buckets[1], 1);
        assert_eq!(histogram.buckets[4], 2);
        assert_eq!(histogram.buckets[11], 2);
        let mut out = Exposition {
            text: String::new(),
        };
        out.histogram(
            "h",
            &[("n", "c")],
            &PUBLISH_BUCKETS,
            &histogram.buckets,
            histogram.count,
            histogram.sum,
        );
        assert!(out.text.contains("h_bucket{n=\"c\",le=\"0.0025\"} 1\n"));
        assert!(out.text.contains("h_bucket{n=\"c\",le=\"+Inf\"} 3\n"));
        assert!(out.text.contains("h_count{n=\"c\"} 3\n"));
    }
}
