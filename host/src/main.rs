//! The `switchyard` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Checks a config file and prints the effective configuration.
    CheckConfig {
        /// Config file (TOML).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
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
            switchyard::telemetry::init(&config.log);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("switchyard: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(switchyard::run(config, switchyard::shutdown::signal())) {
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
