//! `authflow`: one binary, one subcommand per job.

use authflow_auth::AuthConfig;
use authflow_gateway::GatewayConfig;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    /// Run the auth service.
    Auth {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a gateway or auth config file and exit (non-zero on any problem), like `nginx -t`.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    init_tracing();
    match Cli::parse().command {
        Command::Check { config } => check(&config),
        Command::Gateway { config } => match GatewayConfig::load(&config) {
            Ok(cfg) => report(authflow_gateway::server::run(&cfg)),
            Err(e) => fail(&e),
        },
        Command::Auth { config } => match AuthConfig::load(&config) {
            Ok(cfg) => match tokio::runtime::Runtime::new() {
                Ok(rt) => report(rt.block_on(authflow_auth::server::run(&cfg))),
                Err(e) => fail(&e),
            },
            Err(e) => fail(&e),
        },
    }
}

/// Validates either kind of config; which kind is told from its keys.
fn check(path: &Path) -> ExitCode {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if authflow_auth::config::looks_like_auth_config(&text) {
        match AuthConfig::load(path) {
            Ok(cfg) => {
                println!(
                    "{}: ok (auth config: provider {:?})",
                    path.display(),
                    cfg.provider
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        }
    } else {
        match GatewayConfig::load(path) {
            Ok(cfg) => {
                println!(
                    "{}: ok (gateway config: {} routes, {} upstreams)",
                    path.display(),
                    cfg.routes.len(),
                    cfg.upstreams.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        }
    }
}

fn report<E: std::fmt::Display>(r: Result<(), E>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
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
