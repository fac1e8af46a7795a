//! Configs for tests, as typed values. A test takes one of these, changes the fields it is
//! about (`cfg.rate_limit.requests = 5`), and hands it to the service, which serializes it
//! to a TOML file and starts the real binary on it.

use authflow_auth::config::{AuthConfig, Provider, SupabaseConfig};
use authflow_gateway::config::{AuthMode, GatewayConfig, RouteConfig, UpstreamConfig};
use authflow_shared::config::HumanDuration;

/// The session contract every test config uses: cookie `sid`, plain HTTP.
fn test_contract() -> authflow_shared::contract::SessionContract {
    authflow_shared::contract::SessionContract {
        cookie_name: "sid".into(),
        cookie_secure: false,
        idle_timeout: HumanDuration::secs(3600),
        absolute_timeout: HumanDuration::secs(12 * 3600),
        ..Default::default()
    }
}

/// A gateway config for tests: upstream `app` on `servers`, a protected route `/app/` and a
/// public route `/public/` to it, the given Redis. The listen port is the harness's.
pub fn gateway_config(redis_url: &str, servers: &[String]) -> GatewayConfig {
    let mut cfg: GatewayConfig = toml::from_str("").expect("defaults");
    cfg.threads = 1;
    cfg.shutdown_grace = HumanDuration::secs(1);
    cfg.redis.url = redis_url.to_owned();
    cfg.redis.timeout = HumanDuration::millis(100);
    cfg.session = test_contract();
    cfg.session_check.login_url = "/auth/signin".into();
    cfg.upstreams = vec![upstream("app", servers)];
    cfg.routes = vec![
        route("/app/", "app", AuthMode::Required),
        route("/public/", "app", AuthMode::Public),
    ];
    cfg
}

/// An upstream with short timeouts and health checks, as tests want.
pub fn upstream(name: &str, servers: &[String]) -> UpstreamConfig {
    UpstreamConfig {
        name: name.into(),
        servers: servers.to_vec(),
        tls: false,
        protocol: Default::default(),
        ca_file: None,
        sni: String::new(),
        connect_timeout: HumanDuration::millis(500),
        // Below the echo upstream's 3 s `/slow/`, above a sign-in on a busy 2-core machine.
        read_timeout: HumanDuration::secs(2),
        tunnel_timeout: HumanDuration::secs(3600),
        health_check_interval: HumanDuration::secs(1),
        health_check_path: None,
        health_check_grpc: None,
        health_check_status: 200,
        max_fails: 3,
        fail_timeout: HumanDuration::secs(10),
        retries: 1,
        resolve_interval: HumanDuration::secs(30),
    }
}

pub fn route(prefix: &str, upstream: &str, auth: AuthMode) -> RouteConfig {
    RouteConfig {
        prefix: prefix.into(),
        host: None,
        upstream: upstream.into(),
        auth,
        auth_service: false,
        case_sensitive: false,
        max_body_bytes: None,
        websocket: false,
        allow_trace: false,
        pass_headers: Vec::new(),
        roles: Vec::new(),
        roles_all: Vec::new(),
        mfa: false,
        mfa_max_age: None,
    }
}

/// Adds the auth service at `auth_port` behind `/api/v1/simple_auth/`, as a deployment does.
pub fn with_auth_service(cfg: &mut GatewayConfig, auth_port: u16) {
    cfg.upstreams
        .push(upstream("auth", &[format!("127.0.0.1:{auth_port}")]));
    let mut r = route("/api/v1/simple_auth/", "auth", AuthMode::Public);
    r.auth_service = true;
    cfg.routes.push(r);
}

/// An auth config for tests: built-in users, the gateway on loopback trusted, plain-HTTP
/// cookies. `database.url` is left empty: the harness then puts a SQLite file in the
/// service's temp dir (set it for PostgreSQL). The outbox is always in that temp dir.
pub fn auth_config(redis_url: &str) -> AuthConfig {
    let mut cfg: AuthConfig = toml::from_str("").expect("defaults");
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    cfg.provider = Provider::Builtin;
    cfg.redis.url = redis_url.to_owned();
    cfg.redis.timeout = HumanDuration::secs(2);
    cfg.session = test_contract();
    cfg.database.url = String::new();
    cfg.mail.from = "AuthFlow <no-reply@example.com>".into();
    cfg.mail.base_url = "http://app.example.com".into();
    // Tests ask for several links a minute; the cooldown has a test of its own.
    cfg.throttle.mail_cooldown = HumanDuration::millis(1);
    cfg
}

/// The same with Supabase Auth (GoTrue at `url`) as the provider; the encryption key is left
/// for the environment, as a secret should be.
pub fn supabase_auth_config(redis_url: &str, url: &str, anon_key: &str) -> AuthConfig {
    let mut cfg = auth_config(redis_url);
    cfg.provider = Provider::Supabase;
    cfg.supabase = Some(SupabaseConfig {
        url: url.into(),
        anon_key: anon_key.to_owned().into(),
        encryption_key: Default::default(),
        timeout: HumanDuration::secs(10),
    });
    cfg
}
