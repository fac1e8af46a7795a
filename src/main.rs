//! `authflow`: one binary, one subcommand per job.

use authflow_gateway::GatewayConfig;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "authflow",
    version,
    about = "AuthFlow: an authenticating edge gateway and its auth service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Gateway {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit (non-zero on any problem), like `nginx -t`.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match GatewayConfig::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok (gateway config: {} routes, {} upstreams)",
                    config.display(),
                    cfg.routes.len(),
                    cfg.upstreams.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Gateway { config } => {
            let cfg = match GatewayConfig::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            match authflow_gateway::server::run(&cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

/// Prints each line of the error as its own `error:` line (one per config problem).
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    for line in e.to_string().lines() {
        eprintln!("error: {line}");
    }
    ExitCode::FAILURE
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
