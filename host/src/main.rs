//! The `switchyard` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// jemalloc, for Rust and, through its unprefixed `malloc`, for librdkafka
// and the other C code too. The aggregation benchmark (bench/compare.sh,
// run b; five interleaved rounds per pair) put glibc's malloc at about a
// fifth of an aggregator thread's samples (`_int_malloc`,
// `malloc_consolidate`, `unlink_chunk`: chunks of a few KB, the JSON
// states and summaries, freed and merged all the time). Host CPU per run: glibc 6.3-6.5 s,
// mimalloc 5.5-5.6 s, jemalloc for Rust only 5.4-5.5 s, jemalloc for all
// 5.2-5.35 s. Peak RSS: glibc 118-134 MB, mimalloc 170-188 MB, jemalloc
// 132-159 MB.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Switchyard: Noun-Verb-Object events over Kafka, with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the host: REST, gRPC, the schema registry and plugin pipelines.
    Serve {
        /// Config file (TOML). Environment variables `SWITCHYARD__SECTION__KEY`
        /// override its values.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Works with WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Works with routes: where events go, changed without a deployment.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Checks a config file and prints the effective configuration.
    CheckConfig {
        /// Config file (TOML).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Router,
    Transformer,
    Aggregator,
}

/// Where the host's admin API is, and how to print.
#[derive(Debug, clap::Args)]
struct Remote {
    /// Base URL of a running host's REST API.
    #[arg(
        long,
        env = "SWITCHYARD_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: switchyard::cli::Output,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Runs a plugin on events from a JSON file, without Kafka, and prints
    /// one JSON result per event. Exit code 0 when every call succeeded, 3
    /// when some failed, 2 when the plugin or the file cannot be used.
    Test {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// JSON array of events: `{"noun", "verb", "key", "object"}`.
        #[arg(long, short)]
        events: PathBuf,
        /// The manifest; default: the `.toml` beside the component.
        #[arg(long, short)]
        manifest: Option<PathBuf>,
        /// Deadline of one call, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Memory limit of one instance, in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        memory_limit_bytes: usize,
    },
    /// Creates a plugin crate that builds and tests out of the box.
    New {
        /// Plugin name, lower kebab case.
        name: String,
        /// The world it implements.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The plugin SDK; default: the one this binary was built with.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Uploads a component with its manifest; the host validates it first.
    Push {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// The manifest; default: the `.toml` beside the component.
        #[arg(long, short)]
        manifest: Option<PathBuf>,
        /// Activate the version right after the upload.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Lists plugins with their active version and state.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Shows one plugin: versions, state and call statistics.
    Show {
        /// Plugin name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes a version the active one on every instance.
    Activate {
        /// Plugin name.
        name: String,
        /// Version to activate.
        version: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Goes back to the version that was active before.
    Rollback {
        /// Plugin name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stops the plugin's pipeline on every instance.
    Pause {
        /// Plugin name.
        name: String,
        /// Why, shown in its status.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Starts a paused plugin again.
    Resume {
        /// Plugin name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deletes a plugin and every version of it.
    Delete {
        /// Plugin name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// Creates or replaces a route from a JSON or TOML file.
    Set {
        /// The route file (`.toml` is read as TOML, anything else as JSON).
        file: PathBuf,
        /// Route id, when the file has none.
        #[arg(long)]
        id: Option<String>,
        /// Only change the route if it is still at this revision (0: only
        /// create it).
        #[arg(long)]
        if_revision: Option<i64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Lists routes.
    List {
        /// Only this team's routes.
        #[arg(long)]
        owner: Option<String>,
        /// The page after this cursor (a previous listing prints it).
        #[arg(long)]
        next: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Shows one route and its counters on the host answering.
    Show {
        /// Route id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deletes a route.
    Delete {
        /// Route id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Says which routes an event matches, and why.
    Explain {
        /// An event file: `{"noun", "verb", "key", "object"}`.
        #[arg(long, conflicts_with = "position")]
        event: Option<PathBuf>,
        /// A record already on a noun's topic, `topic:partition:offset`.
        #[arg(long)]
        position: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Evaluates a proposed route against recent events, sending nothing.
    DryRun {
        /// The route file.
        file: PathBuf,
        /// How many recent events (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
}

fn route_remote(remote: &Remote, action: switchyard::cli::RouteAction<'_>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(switchyard::cli::run_route(
            &remote.server,
            action,
            remote.output,
        )),
        Err(error) => {
            eprintln!("switchyard: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn remote(remote: &Remote, action: switchyard::cli::Action<'_>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => {
            runtime.block_on(switchyard::cli::run(&remote.server, action, remote.output))
        }
        Err(error) => {
            eprintln!("switchyard: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn plugin_test(
    wasm: &std::path::Path,
    events: &std::path::Path,
    manifest: Option<&std::path::Path>,
    timeout_ms: u64,
    memory_limit_bytes: usize,
) -> ExitCode {
    use switchyard::plugin::harness;
    let config = switchyard::config::PluginsConfig {
        call_timeout_ms: timeout_ms,
        memory_limit_bytes,
        ..switchyard::config::PluginsConfig::default()
    };
    let plugin = match harness::load(&config, wasm, manifest) {
        Ok(plugin) => plugin,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            return ExitCode::from(2);
        }
    };
    let events = match harness::read_events(events) {
        Ok(events) => events,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            return ExitCode::from(2);
        }
    };
    let (results, all_ok) = harness::run(&plugin, events);
    for result in results {
        println!("{result}");
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = match switchyard::config::Config::load(config.as_deref()) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("switchyard: {error:#}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("switchyard: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            // The span exporter's gRPC channel runs on the runtime.
            let entered = runtime.enter();
            let telemetry = switchyard::telemetry::init(&config.log, &config.telemetry);
            let outcome = runtime.block_on(switchyard::run(config, switchyard::shutdown::signal()));
            telemetry.shutdown();
            drop(entered);
            // Everything that must finish has (the host logged `stopped`
            // after flushing the producer); a Kafka client still closing on
            // a blocking thread must not keep the process alive.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "switchyard stopped with an error"
                    );
                    eprintln!("switchyard: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plugin(PluginCommand::Test {
            wasm,
            events,
            manifest,
            timeout_ms,
            memory_limit_bytes,
        }) => plugin_test(
            &wasm,
            &events,
            manifest.as_deref(),
            timeout_ms,
            memory_limit_bytes,
        ),
        Command::Plugin(PluginCommand::Push {
            wasm,
            manifest,
            activate,
            remote: r,
        }) => {
            let manifest = manifest.unwrap_or_else(|| wasm.with_extension("toml"));
            remote(
                &r,
                switchyard::cli::Action::Push {
                    wasm: &wasm,
                    manifest: &manifest,
                    activate,
                },
            )
        }
        Command::Plugin(PluginCommand::New {
            name,
            kind,
            dir,
            sdk,
        }) => {
            use switchyard::plugin::{Kind, scaffold};
            let kind = match kind {
                KindArg::Router => Kind::Router,
                KindArg::Transformer => Kind::Transformer,
                KindArg::Aggregator => Kind::Aggregator,
            };
            let sdk = sdk.unwrap_or_else(scaffold::default_sdk_path);
            match scaffold::scaffold(&dir, &name, kind, &sdk) {
                Ok(created) => {
                    println!(
                        "created {}; next: cd {} && cargo test",
                        created.display(),
                        created.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("switchyard: {error:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Plugin(PluginCommand::List { remote: r }) => {
            remote(&r, switchyard::cli::Action::List)
        }
        Command::Plugin(PluginCommand::Show { name, remote: r }) => {
            remote(&r, switchyard::cli::Action::Show(&name))
        }
        Command::Plugin(PluginCommand::Activate {
            name,
            version,
            remote: r,
        }) => remote(&r, switchyard::cli::Action::Activate(&name, &version)),
        Command::Plugin(PluginCommand::Rollback { name, remote: r }) => {
            remote(&r, switchyard::cli::Action::Rollback(&name))
        }
        Command::Plugin(PluginCommand::Pause {
            name,
            reason,
            remote: r,
        }) => remote(&r, switchyard::cli::Action::Pause(&name, reason.as_deref())),
        Command::Plugin(PluginCommand::Resume { name, remote: r }) => {
            remote(&r, switchyard::cli::Action::Resume(&name))
        }
        Command::Plugin(PluginCommand::Delete { name, remote: r }) => {
            remote(&r, switchyard::cli::Action::Delete(&name))
        }
        Command::Route(command) => {
            use switchyard::cli::RouteAction;
            match &command {
                RouteCommand::Set {
                    file,
                    id,
                    if_revision,
                    remote: r,
                } => route_remote(
                    r,
                    RouteAction::Set {
                        file,
                        id: id.as_deref(),
                        if_revision: *if_revision,
                    },
                ),
                RouteCommand::List {
                    owner,
                    next,
                    remote: r,
                } => route_remote(
                    r,
                    RouteAction::List {
                        owner: owner.as_deref(),
                        next: next.as_deref(),
                    },
                ),
                RouteCommand::Show { id, remote: r } => route_remote(r, RouteAction::Show(id)),
                RouteCommand::Delete { id, remote: r } => route_remote(r, RouteAction::Delete(id)),
                RouteCommand::Explain {
                    event,
                    position,
                    remote: r,
                } => route_remote(
                    r,
                    RouteAction::Explain {
                        event: event.as_deref(),
                        position: position.as_deref(),
                    },
                ),
                RouteCommand::DryRun {
                    file,
                    limit,
                    remote: r,
                } => route_remote(
                    r,
                    RouteAction::DryRun {
                        file,
                        limit: *limit,
                    },
                ),
            }
        }
        Command::CheckConfig { config } => {
            match switchyard::config::Config::load(config.as_deref()) {
                Ok(config) => {
                    println!("{config:#?}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("switchyard: {error:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
