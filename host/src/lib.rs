//! Switchyard: an eventing host for Noun-Verb-Object business events over
//! Kafka, with team logic in WebAssembly plugins.
//!
//! Map of the modules, in the order an event meets them:
//!
//! - [`config`]: typed configuration from a file and the environment.
//! - [`rest`], [`grpc`]: the APIs; both speak the [`error`] vocabulary;
//!   [`admin`] manages plugins.
//! - [`nvo`]: nouns, verbs and keys, and the rules for their names.
//! - [`catalog`]: which Avro schema and subject govern each noun and verb.
//! - [`avro`]: the Avro codec and the Confluent wire format.
//! - [`registry`]: the embedded, Kafka-backed Confluent-compatible registry.
//! - [`envelope`]: event metadata as CloudEvents Kafka headers.
//! - [`publish`]: validate, encode and write an event; [`idempotency`]
//!   makes retries safe.
//! - [`kafka`]: the shared producer, topic creation, consumer settings.
//! - [`subscribe`]: resumable streams for SSE and gRPC subscribers.
//! - [`plugin`]: the wasmtime runtime for team plugins.
//! - [`pipeline`]: consume, run a plugin, produce, dead-letter.
//! - [`exactly_once`]: the transactional consume-process-produce loop that
//!   routing and [`aggregation`] (keyed state, changelogs, queries) share.
//! - [`routing`]: routes from a compacted topic ([`table`]), content
//!   filters, the exactly-once routing engine; [`route_admin`] manages them.
//! - [`trace_context`]: W3C trace headers, and the spans that continue
//!   them across Kafka.
//! - [`metrics`]: Prometheus metrics.
//! - [`shutdown`], [`telemetry`] (logs, span export): process plumbing.

pub mod admin;
pub mod aggregation;
pub mod avro;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod error;
pub mod exactly_once;
pub mod grpc;
pub mod idempotency;
pub mod kafka;
pub mod metrics;
pub mod nvo;
pub mod pipeline;
pub mod plugin;
pub mod publish;
pub mod registry;
pub mod rest;
pub mod route_admin;
pub mod routing;
pub mod shutdown;
pub mod subscribe;
pub mod table;
pub mod telemetry;
pub mod trace_context;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::kafka::{Kafka, TopicKind};
use crate::plugin::store::PluginStore;
use crate::plugin::supervisor::Supervisor;
use crate::plugin::{Plugin, Runtime};
use crate::publish::Publisher;
use crate::registry::Registry;

/// How long shutdown waits for in-flight work and the producer flush.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything the request handlers and pipelines share.
pub struct App {
    /// Configuration in force.
    pub config: Config,
    /// Kafka clients.
    pub kafka: Arc<Kafka>,
    /// Schema registry.
    pub registry: Arc<Registry>,
    /// Nouns, verbs and their schemas.
    pub catalog: Arc<Catalog>,
    /// Publisher.
    pub publisher: Arc<Publisher>,
    /// Plugins loaded from `plugins.dir`.
    pub plugins: Vec<Arc<Plugin>>,
    /// The wasm runtime every plugin runs in.
    pub runtime: Arc<Runtime>,
    /// Uploaded plugins, shared by every instance through Kafka.
    pub store: Arc<PluginStore>,
    /// Keeps pipelines in line with the store.
    pub supervisor: Arc<Supervisor>,
    /// Routes, shared by every instance through Kafka.
    pub routes: Arc<routing::RouteStore>,
    /// The routing engine, once serving started (and if enabled).
    pub routing_engine: std::sync::OnceLock<Arc<routing::engine::RoutingEngine>>,
    /// Aggregators running on this instance.
    pub aggregators: Arc<aggregation::Aggregators>,
    /// Who owns which aggregator partitions, for state queries.
    pub directory: Arc<aggregation::directory::Directory>,
    /// Pauses plugins that keep failing, wherever they run.
    pub auto_pause: Arc<plugin::auto_pause::AutoPause>,
    /// Route previews (explain, dry-run) running now, bounded.
    pub previews: route_admin::Previews,
    /// Turns true when the host starts shutting down; long-lived streams
    /// (SSE, gRPC subscriptions) end on it so shutdown does not wait for
    /// clients to hang up.
    pub shutdown_tx: watch::Sender<bool>,
}

impl App {
    /// The exactly-once loops of this instance, by the name metrics give
    /// them (`routing`, `aggregator:<name>`), with their status.
    pub fn loop_statuses(&self) -> Vec<(String, exactly_once::LoopStatus)> {
        self.routing_engine
            .get()
            .map(|engine| ("routing".to_string(), engine.status().status))
            .into_iter()
            .chain(
                self.aggregators
                    .all()
                    .iter()
                    .map(|a| (format!("aggregator:{}", a.name), a.status())),
            )
            .collect()
    }

    /// The nouns whose topics the routing engine reads: `routing.nouns`,
    /// or every noun of the catalog when that is empty.
    pub fn routed_nouns(&self) -> Vec<String> {
        if self.config.routing.nouns.is_empty() {
            self.catalog.nouns().map(str::to_string).collect()
        } else {
            self.config.routing.nouns.clone()
        }
    }

    /// Connects to Kafka, loads the registry and the schemas, creates the
    /// topics and loads the plugins.
    pub async fn start(config: Config) -> anyhow::Result<Arc<App>> {
        let kafka = Kafka::connect(&config.kafka)?;
        // Plugins compile (or load from the compiled cache) on a blocking
        // thread meanwhile.
        let plugins_config = config.plugins.clone();
        let runtime = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let runtime = Arc::new(Runtime::new(&plugins_config)?);
            let plugins = match &plugins_config.dir {
                Some(dir) => runtime.load_dir(dir)?,
                None => Vec::new(),
            };
            Ok((runtime, plugins))
        });
        // The registry first: when Kafka is down, this is the error to see.
        let registry = match &config.registry.external_url {
            Some(url) => Registry::start_external(
                Arc::clone(&kafka),
                url,
                &config.registry.external_headers,
                Duration::from_millis(config.registry.external_cache_ttl_ms),
                config.registry.default_compatibility,
            )?,
            None => Registry::start(
                Arc::clone(&kafka),
                &config.registry.topic,
                config.registry.default_compatibility,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot start the schema registry on kafka `{}` (is kafka running? `bash scripts/stack.sh up` starts the local one)",
                    config.kafka.bootstrap_servers
                )
            })?,
        };
        // The rest each wait on Kafka round trips (a topic to read to its
        // end, a topic to create): side by side, they take as long as the
        // slowest, not their sum (about a second less on a loaded two-core
        // machine).
        let catalog = async {
            let catalog =
                Arc::new(Catalog::load(&config.registry.schemas_dir, Arc::clone(&registry)).await?);
            for noun in &config.routing.nouns {
                if !catalog.has_noun(noun) {
                    anyhow::bail!(
                        "config key `routing.nouns` names `{noun}`, which has no schema in `{}`; add its schemas or remove it",
                        config.registry.schemas_dir.display()
                    );
                }
            }
            futures::future::try_join_all(
                catalog
                    .nouns()
                    .map(|noun| kafka.ensure_topic(noun, TopicKind::Events)),
            )
            .await?;
            Ok(catalog)
        };
        let dead_letter_topic =
            kafka.ensure_topic(&config.kafka.dead_letter_topic, TopicKind::Events);
        let runtime = async { runtime.await? };
        let artifacts_dir = config.plugins.artifacts_dir.clone().unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
            home.join(".cache/switchyard/plugin-artifacts")
        });
        let store = PluginStore::start(Arc::clone(&kafka), artifacts_dir);
        let directory = aggregation::directory::Directory::start(
            Arc::clone(&kafka),
            &config.aggregation.directory_topic,
        );
        let routes = routing::RouteStore::start(Arc::clone(&kafka), &config.routing.topic);
        let (catalog, (), (runtime, plugins), store, directory, routes) = tokio::try_join!(
            catalog,
            dead_letter_topic,
            runtime,
            store,
            directory,
            routes
        )?;
        let directory = Arc::new(directory);
        let routes = Arc::new(routes);
        for plugin in &plugins {
            for noun in plugin.manifest().source_nouns() {
                if !catalog.has_noun(&noun) {
                    anyhow::bail!(
                        "plugin `{}` reads noun `{noun}`, which has no schema",
                        plugin.label()
                    );
                }
            }
        }
        let publisher = Arc::new(Publisher::new(Arc::clone(&kafka), Arc::clone(&catalog)));
        let aggregators = Arc::new(aggregation::Aggregators::default());
        let auto_pause = Arc::new(plugin::auto_pause::AutoPause::new(
            Arc::clone(&store),
            Arc::clone(&publisher),
            plugin::auto_pause::FailurePolicy {
                ratio: config.plugins.failure_pause_ratio,
                window: config.plugins.failure_window_calls,
            },
        ));
        let aggregation_parts = config.aggregation.enabled.then(|| {
            Arc::new(aggregation::AggregationParts {
                kafka: Arc::clone(&kafka),
                registry: Arc::clone(&registry),
                publisher: Arc::clone(&publisher),
                config: config.aggregation.clone(),
                directory: Arc::clone(&directory),
                auto_pause: Arc::clone(&auto_pause),
            })
        });
        let context = Arc::new(pipeline::PipelineContext {
            kafka: Arc::clone(&kafka),
            registry: Arc::clone(&registry),
            publisher: Arc::clone(&publisher),
            store: Arc::clone(&store),
            auto_pause: Arc::clone(&auto_pause),
            aggregation: aggregation_parts,
            aggregators: Arc::clone(&aggregators),
        });
        let supervisor = Supervisor::new(
            Arc::clone(&runtime),
            Arc::clone(&store),
            context,
            plugins.clone(),
        );
        Ok(Arc::new(App {
            config,
            kafka,
            registry,
            catalog,
            publisher,
            plugins,
            runtime,
            store,
            supervisor,
            routes,
            routing_engine: std::sync::OnceLock::new(),
            aggregators,
            directory,
            auto_pause,
            previews: route_admin::Previews::default(),
            shutdown_tx: watch::channel(false).0,
        }))
    }
}

/// A started host whose sockets are bound but not yet serving. Binding
/// first lets callers (tests, the CLI) learn the real addresses when the
/// config asks for port 0.
pub struct Bound {
    /// The shared state.
    pub app: Arc<App>,
    http: TcpListener,
    grpc: TcpListener,
    registry: TcpListener,
}

impl Bound {
    /// Address of the REST API.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.http.local_addr().expect("bound socket has an address")
    }

    /// Address of the gRPC API.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.grpc.local_addr().expect("bound socket has an address")
    }

    /// Address of the schema registry API.
    pub fn registry_addr(&self) -> std::net::SocketAddr {
        self.registry
            .local_addr()
            .expect("bound socket has an address")
    }
}

/// Starts the host (Kafka, registry, schemas, plugins) and binds its sockets.
pub async fn bind(config: Config) -> anyhow::Result<Bound> {
    let app = App::start(config).await?;
    let http = TcpListener::bind(app.config.http.listen)
        .await
        .with_context(|| format!("cannot listen on `http.listen` {}", app.config.http.listen))?;
    let registry = TcpListener::bind(app.config.registry.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on `registry.listen` {}",
                app.config.registry.listen
            )
        })?;
    let grpc = TcpListener::bind(app.config.grpc.listen)
        .await
        .with_context(|| format!("cannot listen on `grpc.listen` {}", app.config.grpc.listen))?;
    Ok(Bound {
        app,
        http,
        grpc,
        registry,
    })
}

/// Runs the host until `shutdown` completes: REST, gRPC, the registry API
/// and every plugin pipeline. On shutdown the servers stop accepting, the
/// pipelines stop after their current record, and the producer is flushed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    bind(config).await?.serve(shutdown).await
}

impl Bound {
    /// Serves until `shutdown` completes; see [`run`].
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Bound {
            app,
            http: http_listener,
            grpc: grpc_listener,
            registry: registry_listener,
        } = self;
        app.directory
            .set_url(format!("http://{}", http_listener.local_addr()?));
        let shutdown_tx = app.shutdown_tx.clone();
        let shutdown_rx = shutdown_tx.subscribe();
        tracing::info!(
            http = %http_listener.local_addr()?,
            grpc = %grpc_listener.local_addr()?,
            registry = %registry_listener.local_addr()?,
            plugins = app.plugins.len(),
            "switchyard listening"
        );

        let mut tasks = tokio::task::JoinSet::new();
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let rest = rest::router(Arc::clone(&app));
        tasks.spawn({
            let stop = wait(shutdown_rx.clone());
            async move {
                axum::serve(http_listener, rest)
                    .with_graceful_shutdown(stop)
                    .await
                    .context("rest server failed")
            }
        });
        let registry_api = registry::rest::router(Arc::clone(&app.registry));
        tasks.spawn({
            let stop = wait(shutdown_rx.clone());
            async move {
                axum::serve(registry_listener, registry_api)
                    .with_graceful_shutdown(stop)
                    .await
                    .context("registry server failed")
            }
        });
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
            // So `grpcurl` can call the health service and decode the
            // `google.rpc` error details too.
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("cannot build grpc reflection")?;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<grpc::proto::events_server::EventsServer<grpc::EventsService>>()
            .await;
        health_reporter
            .set_serving::<grpc::proto::plugins_server::PluginsServer<grpc::PluginsService>>()
            .await;
        health_reporter
            .set_serving::<grpc::proto::routes_server::RoutesServer<grpc::RoutesService>>()
            .await;
        let events = grpc::events_service(Arc::clone(&app));
        let plugins = grpc::plugins_service(Arc::clone(&app));
        let routes = grpc::routes_service(Arc::clone(&app));
        tasks.spawn({
            let stop = wait(shutdown_rx.clone());
            async move {
                tonic::transport::Server::builder()
                    .add_service(health_service)
                    .add_service(reflection)
                    .add_service(events)
                    .add_service(plugins)
                    .add_service(routes)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                        stop,
                    )
                    .await
                    .context("grpc server failed")
            }
        });
        // Pipelines live in a set of their own: one that stops (say, an
        // aggregator that cannot run yet) must not stop the servers.
        let mut pipelines = tokio::task::JoinSet::new();
        pipelines.spawn(Arc::clone(&app.supervisor).run(shutdown_rx.clone()));
        if app.config.routing.enabled {
            let engine = routing::engine::RoutingEngine::start(
                routing::engine::EngineParts {
                    kafka: Arc::clone(&app.kafka),
                    registry: Arc::clone(&app.registry),
                    routes: Arc::clone(&app.routes),
                    supervisor: Arc::clone(&app.supervisor),
                    auto_pause: Arc::clone(&app.auto_pause),
                    config: app.config.routing.clone(),
                    nouns: app.routed_nouns(),
                },
                shutdown_rx.clone(),
            );
            let _ = app.routing_engine.set(Arc::clone(&engine));
            pipelines.spawn(async move {
                let _ = tokio::task::spawn_blocking(move || engine.join()).await;
            });
        }

        // Stop on the signal, or as soon as any server fails.
        let failed = tokio::select! {
            () = shutdown => None,
            Some(joined) = tasks.join_next() => Some(joined),
        };
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
            while pipelines.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "some tasks did not stop within the grace period"
            );
            tasks.abort_all();
            pipelines.abort_all();
        }
        let kafka = Arc::clone(&app.kafka);
        tokio::task::spawn_blocking(move || kafka.flush(SHUTDOWN_GRACE)).await?;
        tracing::info!("stopped");
        match failed {
            Some(Ok(Err(error))) => Err(error),
            Some(Err(join_error)) => Err(anyhow::anyhow!("a server task panicked: {join_error}")),
            _ => Ok(()),
        }
    }
}
