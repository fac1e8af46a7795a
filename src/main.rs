//! `authflow`: one binary, one subcommand per job.

mod check;
mod demo;
mod sessions;
mod up;
mod users;

use authflow_auth::AuthConfig;
use authflow_gateway::GatewayConfig;
use authflow_shared::config::{ConfigFile, LogFormat, TracingConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// See the `mimalloc` entry in Cargo.toml: measured in benches/e2e.sh.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Zero-downtime upgrade: take the listening sockets from the running gateway (over
        /// `--upgrade-sock`), then send that one SIGQUIT so it drains and exits.
        #[arg(long, short)]
        upgrade: bool,
        /// Run in the background (writes `--pid-file`).
        #[arg(long, short)]
        daemon: bool,
        #[arg(long, default_value = "/tmp/authflow-gateway.pid")]
        pid_file: String,
        /// Where an upgrading gateway receives the sockets; the same for old and new.
        #[arg(long, default_value = "/tmp/authflow-gateway-upgrade.sock")]
        upgrade_sock: String,
    },
    /// Run the auth service.
    Auth {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a gateway or auth config file and exit (non-zero on any problem), like
    /// `nginx -t`. Given a gateway and an auth file, also report every setting on which they
    /// disagree (`authflow check gateway.toml auth.toml`).
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also print the effective configuration: defaults filled in, environment applied,
        /// secrets redacted (like `nginx -T`).
        #[arg(long)]
        print: bool,
        /// Config files (one, or a gateway and an auth config to compare).
        files: Vec<PathBuf>,
    },
    /// Run the whole stack in one process on embedded development defaults: gateway on
    /// :8000, auth service on :8001, demo backend on :9000. No Redis or database server needed.
    Up(up::UpArgs),
    /// Run only the demo backend (it shows the identity headers the gateway sends).
    Demo {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
    },
    /// List or end a user's sessions (operators), against the Redis and user store of an
    /// auth config.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Built-in accounts (operators): list, show, grant or revoke a role, disable or enable;
    /// live sessions follow each change on their next request.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Reload a running gateway's config (routes, rate-limit rules, trusted proxies, identity
    /// headers) without dropping a request: sends it SIGHUP. Its log says what was reloaded,
    /// or why the file was refused (the running config then stays).
    Reload {
        /// The gateway's process id...
        #[arg(long)]
        pid: Option<u32>,
        /// ...or its pid file (written with --daemon).
        #[arg(long, default_value = "/tmp/authflow-gateway.pid")]
        pid_file: PathBuf,
    },
    /// The auth service's pages and mails.
    #[command(subcommand)]
    Pages(PagesCommand),
    /// Exit 0 if `GET <url>` answers 200 within 3 s (for container health checks).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8000/livez")]
        url: String,
    },
}

#[derive(Subcommand)]
enum PagesCommand {
    /// Write the embedded templates and message catalogues into DIR (which must not hold
    /// them yet): a starting point for `[pages] templates_dir`. Keep only the files you
    /// change; the others then follow the binary's.
    Export { dir: PathBuf },
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // The services log in the format their config asks for; every other command in text.
    if !matches!(command, Command::Gateway { .. } | Command::Auth { .. }) {
        // Without an exporter to build, this cannot fail.
        let _ = init_tracing(LogFormat::Text, None);
    }
    match command {
        Command::Check {
            config,
            files,
            print,
        } => check(config.into_iter().chain(files).collect(), print),
        Command::Gateway {
            config,
            upgrade,
            daemon,
            pid_file,
            upgrade_sock,
        } => match GatewayConfig::from_path(&config) {
            Ok(cfg) => {
                let _exporter =
                    match init_tracing(cfg.log_format, Some((&cfg.tracing, "authflow-gateway"))) {
                        Ok(e) => e,
                        Err(e) => return fail(&e),
                    };
                let process = authflow_gateway::server::Process {
                    upgrade,
                    daemon,
                    pid_file,
                    upgrade_sock,
                    config_path: Some(config.clone()),
                };
                report(authflow_gateway::server::run(&cfg, &process))
            }
            Err(e) => fail(&e),
        },
        Command::Up(args) => report(up::run(&args)),
        Command::Demo { listen } => report(run_demo(&listen)),
        Command::Health { url } => health(&url),
        Command::Pages(PagesCommand::Export { dir }) => {
            match authflow_auth::pages::templates::export(&dir) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Reload { pid, pid_file } => reload(pid, &pid_file),
        Command::Sessions(cmd) => match sessions::run(&cmd) {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Users(cmd) => match users::run(&cmd) {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Auth { config } => match AuthConfig::from_path(&config) {
            Ok(cfg) => {
                let _exporter =
                    match init_tracing(cfg.log_format, Some((&cfg.tracing, "authflow-auth"))) {
                        Ok(e) => e,
                        Err(e) => return fail(&e),
                    };
                match tokio::runtime::Runtime::new() {
                    Ok(rt) => report(rt.block_on(authflow_auth::server::run(&cfg, Some(&config)))),
                    Err(e) => fail(&e),
                }
            }
            Err(e) => fail(&e),
        },
    }
}

/// Sends SIGHUP to the gateway named by `pid` or `pid_file`.
fn reload(pid: Option<u32>, pid_file: &std::path::Path) -> ExitCode {
    let pid = match pid {
        Some(p) => p,
        None => match std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            Some(p) => p,
            None => {
                eprintln!("{}: no process id in it (give --pid)", pid_file.display());
                return ExitCode::FAILURE;
            }
        },
    };
    match std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
    {
        Ok(s) if s.success() => {
            println!("reload signalled to process {pid}; its log says how it went");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("could not signal process {pid}");
            ExitCode::FAILURE
        }
    }
}

/// Validates the files (see [`check::run`]); prints what it found.
fn check(files: Vec<PathBuf>, print: bool) -> ExitCode {
    let result = if print {
        check::print(&files)
    } else {
        check::run(&files)
    };
    match result {
        Ok(lines) => {
            for line in lines {
                if line.starts_with("warning: ") {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn run_demo(listen: &str) -> std::io::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        tracing::info!(listen, "demo backend starting");
        demo::serve(listener, authflow_auth::server::shutdown_signal()).await;
        Ok(())
    })
}

/// A dependency-free HTTP/1.0 GET for health probes (no curl in the runtime image).
fn health(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return fail(&"only http:// URLs are supported");
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let timeout = std::time::Duration::from_secs(3);
    let probe = || -> std::io::Result<bool> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => fail(&format!("{url}: not healthy")),
        Err(e) => fail(&format!("{url}: {e}")),
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

/// Targets that print whole requests and responses (their `Cookie`, `Set-Cookie` and
/// `Authorization` headers) at debug level: held at `info` whatever `RUST_LOG` says, so that
/// turning logging up for a diagnosis never writes a session token to disk.
const HEADER_DUMPING_TARGETS: [&str; 5] = [
    "pingora_core::protocols",
    "pingora_proxy",
    "hyper",
    "h2",
    "reqwest",
];

/// Installs the log output (`format`) and, when the service's `[tracing]` names a
/// collector, the OTLP span exporter, which the caller keeps until exit (it flushes on drop).
fn init_tracing(
    format: LogFormat,
    export: Option<(&TracingConfig, &str)>,
) -> Result<Option<authflow_shared::otel::Exporter>, authflow_shared::otel::ExportError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    use tracing_subscriber::Registry;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    // `RUST_LOG` filters the log output only: exported spans are the services' own, whatever
    // the log level.
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![logs.with_filter(log_filter()).boxed()];
    let mut exporter = None;
    if let Some((cfg, service)) = export {
        if let Some((layer, e)) = authflow_shared::otel::layer::<Registry>(cfg, service)? {
            let own = tracing_subscriber::filter::Targets::new()
                .with_target("authflow_gateway", tracing::Level::INFO)
                .with_target("authflow_auth", tracing::Level::INFO);
            layers.push(layer.with_filter(own).boxed());
            exporter = Some(e);
        }
    }
    tracing_subscriber::registry().with(layers).init();
    Ok(exporter)
}

/// `RUST_LOG` (default `info`), with the header-dumping targets capped.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A cap, never a floor: with `RUST_LOG=error` (or `off`) these targets stay quiet too.
    let verbose = filter
        .max_level_hint()
        .is_some_and(|l| l > tracing::level_filters::LevelFilter::INFO);
    for target in HEADER_DUMPING_TARGETS.iter().filter(|_| verbose) {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}
