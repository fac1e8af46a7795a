//! `authflow up`: the whole stack in one process. The gateway (Pingora, its own thread), the
//! auth service and the demo backend (Tokio), on the embedded development configs, with
//! sessions in memory and users in SQLite unless real servers are named.

use authflow_auth::config::AuthConfig;
use authflow_auth::sso::config::{Preset, ProviderConfig};
use authflow_gateway::config::GatewayConfig;
use authflow_shared::config::ConfigFile;
use authflow_shared::config::{redact_url, ConfigError, ConfigSource, Overrides, ProcessEnv};
use authflow_shared::store::{
    AuthStore, LoginThrottle, MemorySessionStore, RedisSessionStore, SessionStore, SharedLimits,
    StoreError,
};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const DEV_GATEWAY: &str = include_str!("../conf/dev/gateway.toml");
const DEV_AUTH: &str = include_str!("../conf/dev/auth.toml");

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Where the SQLite user database and the email outbox live.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Use this Redis for sessions instead of the in-process store.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Use this database (sqlite: or postgres://) for users.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Address the three services bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub gateway_port: u16,
    #[arg(long, default_value_t = 8001)]
    pub auth_port: u16,
    #[arg(long, default_value_t = 9000)]
    pub demo_port: u16,
    /// Offer "Sign in with <--oidc-name>" through this OpenID provider (its issuer URL); the
    /// client secret comes from AUTHFLOW_IDP_OIDC_CLIENT_SECRET. Register the redirect URI
    /// http://localhost:<gateway-port>/auth/sso/oidc/callback at the provider.
    #[arg(long, requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// The client id registered at the --oidc-issuer provider.
    #[arg(long, requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// The sign-in button's label for the --oidc-issuer provider.
    #[arg(long, default_value = "OpenID")]
    pub oidc_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("embedded config: {0}")]
    Config(#[from] ConfigError),
    #[error("port {0} is already in use ({1})")]
    PortInUse(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] authflow_auth::server::StartError),
    #[error(transparent)]
    Gateway(#[from] authflow_gateway::server::StartError),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// The two configs `up` runs with: the embedded defaults, then the environment, then its
/// flags, validated once like any other config.
pub fn configs(args: &UpArgs) -> Result<(GatewayConfig, AuthConfig), ConfigError> {
    let src = |name: &str, text: &str| ConfigSource {
        file: PathBuf::from(format!("<embedded conf/dev/{name}>")),
        text: text.to_owned(),
    };
    let gw =
        GatewayConfig::from_source(&src("gateway.toml", DEV_GATEWAY), &ProcessEnv, |gw, o| {
            gateway_flags(args, gw, o)
        })?;
    let auth = AuthConfig::from_source(&src("auth.toml", DEV_AUTH), &ProcessEnv, |auth, o| {
        auth_flags(args, auth, o)
    })?;
    Ok((gw, auth))
}

/// `up`'s flags as the command-line layer of the gateway config.
fn gateway_flags(args: &UpArgs, gw: &mut GatewayConfig, o: &mut Overrides) {
    gw.listen = format!("{}:{}", args.host, args.gateway_port);
    o.set("listen", "--host/--gateway-port");
    for u in &mut gw.upstreams {
        match u.name.as_str() {
            "auth" => u.servers = vec![format!("127.0.0.1:{}", args.auth_port)],
            "demo" => u.servers = vec![format!("127.0.0.1:{}", args.demo_port)],
            _ => {}
        }
    }
    if let Some(url) = &args.redis_url {
        gw.redis.url = url.clone();
        o.set("redis.url", "--redis-url");
    }
}

/// `up`'s flags as the command-line layer of the auth config.
fn auth_flags(args: &UpArgs, auth: &mut AuthConfig, o: &mut Overrides) {
    auth.listen = format!("{}:{}", args.host, args.auth_port);
    o.set("listen", "--host/--auth-port");
    let data = args.data_dir.display().to_string();
    auth.database.url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{data}/authflow.db"));
    o.set("database.url", "--database-url/--data-dir");
    auth.mail.outbox_dir = Path::new(&data).join("outbox").display().to_string();
    auth.mail.base_url = format!("http://localhost:{}", args.gateway_port);
    if let Some(url) = &args.redis_url {
        auth.redis.url = url.clone();
        o.set("redis.url", "--redis-url");
    }
    // Second factors on, with a key kept in the data directory (made on the first start),
    // unless AUTHFLOW_MFA_KEY gives one.
    if auth.mfa.key.is_empty() {
        match dev_mfa_key(&args.data_dir) {
            Ok(key) => auth.mfa.key = key.into(),
            Err(e) => tracing::warn!(error = %e, "no second-factor key: second factors stay off"),
        }
    }
    if !auth.mfa.key.is_empty() {
        auth.mfa.required = authflow_auth::mfa::Required::Optional;
        o.set("mfa.required", "authflow up");
        // Passkeys on localhost (browsers allow WebAuthn over plain http there only); the
        // origin is the gateway's, from mail.base_url above.
        if auth.mfa.webauthn.rp_id.is_none() {
            auth.mfa.webauthn.rp_id = Some("localhost".into());
            o.set("mfa.webauthn.rp_id", "authflow up");
        }
    }
    if let (Some(issuer), Some(client_id)) = (&args.oidc_issuer, &args.oidc_client_id) {
        auth.identity
            .providers
            .push(oidc_provider(issuer, client_id, &args.oidc_name));
        o.set("identity.providers", "--oidc-issuer/--oidc-client-id");
    }
}

/// `<data_dir>/mfa.key`: 32 random bytes (base64url), written once, readable by the owner
/// only; what seals the TOTP secrets `up` keeps in its database.
fn dev_mfa_key(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    let path = data_dir.join("mfa.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_owned());
    }
    std::fs::create_dir_all(data_dir)?;
    let key = authflow_shared::token::random_token(32);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(&path)?.write_all(key.as_bytes())?;
    Ok(key)
}

/// The generic OpenID provider `--oidc-issuer` adds, with the id `oidc`.
fn oidc_provider(issuer: &str, client_id: &str, name: &str) -> ProviderConfig {
    ProviderConfig {
        id: "oidc".into(),
        preset: Preset::Generic,
        client_id: client_id.to_owned(),
        client_secret: None,
        secret: Default::default(),
        display_name: Some(name.to_owned()),
        scopes: None,
        issuer: Some(issuer.to_owned()),
        allowed_algs: vec!["RS256".into()],
        tenant: None,
        allowed_tenants: Vec::new(),
        authorize_url: None,
        token_url: None,
        api_url: None,
        allowed_orgs: Vec::new(),
        allowed_domains: Vec::new(),
        trust_email_verified: true,
        create_accounts: true,
        trust_upstream_mfa: false,
        roles_claim: None,
        role_map: Default::default(),
    }
}

/// Pingora's shutdown comes from our own signal handling, so all three services stop together.
struct ShutdownFromChannel(watch::Receiver<bool>);

#[async_trait::async_trait]
impl pingora::server::ShutdownSignalWatch for ShutdownFromChannel {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        pingora::server::ShutdownSignal::GracefulTerminate
    }
}

fn bind(host: &str, port: u16) -> Result<StdListener, UpError> {
    let addr = format!("{host}:{port}");
    let l = StdListener::bind(&addr).map_err(|e| UpError::PortInUse(addr.clone(), e))?;
    l.set_nonblocking(true).map_err(UpError::Runtime)?;
    Ok(l)
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: &UpArgs) -> Result<(), UpError> {
    let (gw_cfg, auth_cfg) = configs(args)?;
    std::fs::create_dir_all(&args.data_dir).map_err(UpError::Runtime)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(UpError::Runtime)?;
    let auth_listener = bind(&args.host, args.auth_port)?;
    let demo_listener = bind(&args.host, args.demo_port)?;
    // Pingora binds the gateway port itself; make sure it is free first.
    drop(bind(&args.host, args.gateway_port)?);

    let (stop_tx, stop_rx) = watch::channel(false);
    rt.block_on(async {
        let (store, throttle, shared_limits): Stores = match &args.redis_url {
            Some(_) => {
                let redis = Arc::new(RedisSessionStore::new(&gw_cfg.redis)?);
                if !redis.warm_up().await {
                    tracing::warn!(url = %gw_cfg.redis.redacted_url(), "Redis not reachable yet; protected routes answer 503 until it is");
                }
                (redis.clone(), redis.clone(), Some(redis))
            }
            None => {
                let memory = Arc::new(MemorySessionStore::new());
                (memory.clone(), memory, None)
            }
        };
        let gate = authflow_auth::api::mail_gate(&auth_cfg, throttle.clone() as Arc<dyn LoginThrottle>);
        let pages = authflow_auth::server::pages_from_config(&auth_cfg)?;
        let users = authflow_auth::server::users_from_config(&auth_cfg, gate, pages.clone()).await?;
        let api = Arc::new(
            authflow_auth::api::Api::new(&auth_cfg, users, store.clone(), throttle, pages)
                .map_err(|e| UpError::Auth(authflow_auth::server::StartError::Config(e)))?,
        );

        let mut gateway = authflow_gateway::server::build_with_store(&gw_cfg, store, shared_limits)?;
        gateway.bootstrap();
        let signal = ShutdownFromChannel(stop_rx.clone());
        let gateway_thread = std::thread::spawn(move || {
            gateway.run(pingora::server::RunArgs { shutdown_signal: Box::new(signal) });
        });

        let until_stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let auth_task = tokio::spawn(authflow_auth::server::serve_listener(
            Arc::new(arc_swap::ArcSwap::new(api)),
            tokio::net::TcpListener::from_std(auth_listener).map_err(UpError::Runtime)?,
            until_stop(stop_rx.clone()),
            Duration::from_secs(5),
        ));
        let demo_task = tokio::spawn(crate::demo::serve(
            tokio::net::TcpListener::from_std(demo_listener).map_err(UpError::Runtime)?,
            until_stop(stop_rx.clone()),
        ));
        println!("{}", banner(args, &gw_cfg, &auth_cfg));

        authflow_auth::server::shutdown_signal().await;
        eprintln!("\nshutting down: letting in-flight requests finish...");
        let _ = stop_tx.send(true);
        let _ = auth_task.await;
        let _ = demo_task.await;
        let _ = tokio::task::spawn_blocking(move || gateway_thread.join()).await;
        eprintln!("stopped.");
        Ok(())
    })
}

/// The session store, the sign-in throttle and the store for shared rate limits (Redis; none
/// when `up` runs on memory).
type Stores = (
    Arc<dyn SessionStore>,
    Arc<dyn AuthStore>,
    Option<Arc<dyn SharedLimits>>,
);

/// What `up` prints once everything listens. URLs are shown with their passwords redacted.
fn banner(args: &UpArgs, gw: &GatewayConfig, auth: &AuthConfig) -> String {
    use std::fmt::Write;
    let g = args.gateway_port;
    let mut out = String::new();
    let _ = writeln!(out, "AuthFlow is up.\n");
    let _ = writeln!(
        out,
        "  Open   http://localhost:{g}/app/   (you will be sent to sign in first)\n"
    );
    let _ = writeln!(out, "  gateway  http://{}:{g}", args.host);
    let _ = writeln!(
        out,
        "  auth     http://{}:{}   (behind the gateway)",
        args.host, args.auth_port
    );
    let _ = writeln!(
        out,
        "  demo     http://{}:{}   (behind the gateway)\n",
        args.host, args.demo_port
    );
    let _ = writeln!(out, "  Routes:");
    for r in &gw.routes {
        let _ = writeln!(
            out,
            "    {:<24} -> {:<5} auth = {:?}",
            r.prefix, r.upstream, r.auth
        );
    }
    let _ = writeln!(out, "    {:<24} -> the gateway itself\n", "/health");
    let sessions = args
        .redis_url
        .as_deref()
        .map_or("in-process (restart signs everyone out)".to_owned(), |u| {
            format!("Redis at {}", redact_url(u))
        });
    let _ = writeln!(out, "  Sessions: {sessions}");
    let _ = writeln!(out, "  Users:    {}", redact_url(&auth.database.url));
    let _ = writeln!(
        out,
        "  Emails:   {}/  (verification and reset links land here)",
        auth.mail.outbox_dir
    );
    let _ = write!(out, "\nCtrl-C stops everything.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpArgs,
    }

    #[test]
    fn the_banner_never_shows_a_password() {
        let cli = Cli::parse_from([
            "up",
            "--redis-url",
            "redis://:redis-pw@127.0.0.1:6379",
            "--database-url",
            "postgres://app:db-pw@127.0.0.1:5432/auth",
        ]);
        let (gw, auth) = configs(&cli.up).expect("configs");
        let text = banner(&cli.up, &gw, &auth);
        assert!(
            text.contains("Redis at redis://:***@127.0.0.1:6379"),
            "{text}"
        );
        assert!(
            text.contains("postgres://app:***@127.0.0.1:5432/auth"),
            "{text}"
        );
        assert!(
            !text.contains("redis-pw") && !text.contains("db-pw"),
            "{text}"
        );
    }
}
