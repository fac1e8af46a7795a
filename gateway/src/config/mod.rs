//! The gateway's configuration: a typed tree parsed from TOML and validated once, before
//! anything starts. Every problem names the file, the line and the key.

use authflow_shared::config::{
    is_http_url, is_socket_addr, ConfigFile, EnvVar, HumanDuration, LogFormat, Problems,
    RedisConfig, TracingConfig, Validate,
};
use authflow_shared::contract::SessionContract;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

mod rate_limit;
pub use rate_limit::{KeyPart, LimitMode, RateHeaders, RateLimitConfig, RateRule, Scope};

/// The whole gateway config (`conf/gateway.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Plain-HTTP listen address, e.g. `"0.0.0.0:8000"`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Also speak cleartext HTTP/2 with prior knowledge on `listen` (a TLS-terminating load
    /// balancer in front that talks h2c to the gateway; gRPC without TLS). Each connection
    /// is told apart by its first bytes, so HTTP/1.1 keeps working.
    #[serde(default)]
    pub h2c: bool,
    /// Optional TLS listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Networks whose `X-Forwarded-For` is believed (load balancers in front of the gateway).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace: HumanDuration,
    /// Allow `session.cookie_secure = false` on a listener beyond loopback (a development box
    /// reached over the network). Never in production: the cookie then travels in clear text.
    #[serde(default)]
    pub insecure_dev: bool,
    /// Where Prometheus scrapes `GET /metrics` (keep it private); off when unset.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// `text` or `json` (one object per line, the access log included).
    #[serde(default)]
    pub log_format: LogFormat,
    /// Reload when this file changes (polled every second), besides on `SIGHUP`.
    #[serde(default)]
    pub watch: bool,
    #[serde(default)]
    pub redis: RedisConfig,
    /// The session contract shared with the auth service (same table in `auth.toml`).
    #[serde(default)]
    pub session: SessionContract,
    #[serde(default)]
    pub session_check: SessionCheckConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub forward_auth: ForwardAuthConfig,
    #[serde(default)]
    pub tracing: TracingConfig,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

fn default_listen() -> String {
    "0.0.0.0:8000".into()
}
fn default_threads() -> usize {
    2
}
fn default_grace() -> HumanDuration {
    HumanDuration::secs(5)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: String,
    pub cert: String,
    pub key: String,
    /// Offer HTTP/2 in ALPN (`h2`, then `http/1.1`); off: HTTP/1.1 only.
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

/// `[session_check]`: what the gateway does with sessions, beyond the contract it shares with
/// the auth service (`[session]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionCheckConfig {
    /// How often activity rewrites the session's last-seen time (bounds Redis writes).
    pub touch_interval: HumanDuration,
    /// Where browsers are sent to sign in; `?next=<path>` is appended.
    pub login_url: String,
    /// Where browsers are sent for a second factor a route demands (`mfa`, `mfa_max_age`);
    /// `?next=<path>` is appended. The auth service's page.
    pub mfa_url: String,
    /// What a fingerprint mismatch does: `"revoke"` deletes the session (a stolen cookie is
    /// burned), `"reject"` only refuses the request, `"reauth"` refuses it and puts the
    /// session aside until its holder signs in again from the new device (`reauth_hold`).
    pub on_fingerprint_mismatch: MismatchPolicy,
    /// Store failures in a row after which protected requests fail closed at once, without
    /// asking Redis, until a probe succeeds (0: never).
    pub breaker_threshold: u32,
    /// How long the breaker stays open before it lets one probe through.
    pub breaker_cool_down: HumanDuration,
    /// Sessions kept in this process, kept coherent by Redis client tracking (0: no cache,
    /// every protected request reads Redis). About 1 KiB per entry.
    pub cache_entries: usize,
    /// How long a cookie Redis did not know is answered as unknown without asking again
    /// (0: never remembered). At most 60 s: a token only exists later if it was guessed.
    pub unknown_cookie_cache: HumanDuration,
    /// Lookups of cookies Redis does not know allowed per client address (IPv6: per /64)
    /// per `unknown_cookie_window`, all at once at most; beyond, 429 without asking Redis
    /// (0: no bound).
    pub unknown_cookie_lookups: u64,
    pub unknown_cookie_window: HumanDuration,
    /// With `on_fingerprint_mismatch = "reauth"`: how long a session put aside by a request
    /// from another device waits for its holder to sign in again from that device.
    pub reauth_hold: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MismatchPolicy {
    Revoke,
    Reject,
    /// Refuse like a missing session and put the session aside for `reauth_hold`: signing
    /// in again from the new device re-binds it there (the old device loses it).
    Reauth,
}

impl Default for SessionCheckConfig {
    fn default() -> Self {
        SessionCheckConfig {
            touch_interval: HumanDuration::secs(60),
            login_url: "/auth/signin".into(),
            mfa_url: "/auth/mfa".into(),
            on_fingerprint_mismatch: MismatchPolicy::Revoke,
            reauth_hold: HumanDuration::secs(600),
            breaker_threshold: 5,
            breaker_cool_down: HumanDuration::secs(1),
            cache_entries: 100_000,
            unknown_cookie_cache: HumanDuration::secs(5),
            unknown_cookie_lookups: 100,
            unknown_cookie_window: HumanDuration::secs(10),
        }
    }
}

/// `[forward_auth]`: the session check offered to a proxy in front (nginx `auth_request`,
/// Traefik `forwardAuth`, Envoy `ext_authz`), for deployments that keep their edge proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// Off: the path is routed like any other.
    pub enabled: bool,
    /// The check's path. `<path>/<original path>` also asks about that path (Envoy's
    /// `path_prefix`). Never routed to an upstream.
    pub path: String,
    /// Answer the check only on this extra listener (keep it private), not on `listen`.
    pub listen: Option<String>,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            enabled: true,
            path: "/verify".into(),
            listen: None,
        }
    }
}

/// `[identity]`: headers the gateway owns. Clients can never send these upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Extra client headers to remove on every route, besides `X-User-Id`, `X-User-Email`,
    /// `X-Session-*` and `X-Authflow-*`.
    pub strip_headers: Vec<String>,
    /// Also send `X-Authflow-Jwt`, the identity signed (ES256) with `jwt_key_file`, and serve
    /// its public key at `/.well-known/jwks.json` ([`crate::identity_jwt`]).
    pub jwt: bool,
    /// A P-256 private key, PKCS#8 PEM (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`). Read at start (a change needs a restart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_key_file: Option<std::path::PathBuf>,
    /// How long a token is valid (1s..1h; a token is made per request).
    pub jwt_ttl: HumanDuration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            strip_headers: Vec::new(),
            jwt: false,
            jwt_key_file: None,
            jwt_ttl: HumanDuration::secs(60),
        }
    }
}

/// `[limits]`: bounds on what one request may send, so hostile input is refused at the edge
/// with a clear status instead of reaching an upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request line and headers together, in bytes; more gets 431.
    pub max_header_bytes: usize,
    /// Number of request header fields; more gets 431.
    pub max_headers: usize,
    /// Request body bytes for routes that do not set their own `max_body_bytes`; more gets
    /// 413.
    pub max_body_bytes: u64,
    /// Longest wait between two reads of a request body: a client trickling its body (slow
    /// POST) is cut off.
    pub body_read_timeout: HumanDuration,
    /// How long an idle keep-alive connection is kept open for the client's next request.
    pub keepalive_timeout: HumanDuration,
    /// Requests one client address may have in flight at once; more get 429. `0` is no cap.
    pub max_in_flight_per_client: u32,
    /// HTTP/2: streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`;
    /// a client opening more has them refused by the protocol).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: streams a client may cancel (`RST_STREAM`) on one connection before its
    /// answer; past it every further stream of the connection gets 429 without reaching
    /// an upstream (rapid reset, CVE-2023-44487). `0` is no cap.
    pub h2_max_reset_streams: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            body_read_timeout: HumanDuration::secs(10),
            keepalive_timeout: HumanDuration::secs(60),
            max_in_flight_per_client: 256,
            h2_max_concurrent_streams: 100,
            h2_max_reset_streams: 200,
        }
    }
}

/// `[[upstreams]]`: a named pool of servers, balanced round-robin with health checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// `"host:port"` entries.
    pub servers: Vec<String>,
    #[serde(default)]
    pub tls: bool,
    /// What the gateway speaks to the servers: `h1` (HTTP/1.1, WebSockets), `h2` (HTTP/2
    /// over TLS, ALPN `h2`) or `h2c` (cleartext HTTP/2 with prior knowledge). gRPC needs
    /// `h2` or `h2c`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// PEM file of the certificate authorities that sign the servers' certificates (every
    /// certificate in it); without it, the system's roots. TLS upstreams only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// SNI and `Host` for TLS upstreams.
    #[serde(default)]
    pub sni: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Longest wait for the upstream between reads; past it the client gets 504.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// Longest silence from the server in a WebSocket tunnel before it is closed (instead
    /// of `read_timeout`, which would cut idle sockets off).
    #[serde(default = "default_tunnel_timeout")]
    pub tunnel_timeout: HumanDuration,
    #[serde(default = "default_health_interval")]
    pub health_check_interval: HumanDuration,
    /// Check servers with `GET <path>` instead of a TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    /// Check servers with the standard gRPC health service (`grpc.health.v1.Health/Check`)
    /// for this service name (`""`: the server as a whole); it must answer `SERVING`.
    /// Needs `protocol = "h2"` or `"h2c"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grpc: Option<String>,
    /// The status an HTTP health check expects.
    #[serde(default = "default_health_status")]
    pub health_check_status: u16,
    /// Failures on live traffic (refused, reset, timed out, 502-504) within `fail_timeout`
    /// that take a server out for `fail_timeout`; 0 turns passive checks off.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: HumanDuration,
    /// Further servers a request may be tried on when connecting fails (any method) or an
    /// idempotent request fails before its answer started.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How often host names in `servers` are resolved again (a container restarted with a
    /// new address is found within this).
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: HumanDuration,
}

/// `[[upstreams]] protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    H1,
    H2,
    H2c,
}

fn default_resolve_interval() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_health_status() -> u16 {
    200
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_retries() -> u32 {
    1
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_tunnel_timeout() -> HumanDuration {
    HumanDuration::secs(3600)
}
fn default_health_interval() -> HumanDuration {
    HumanDuration::secs(5)
}

/// `[[routes]]`: which upstream serves a path prefix (and optionally a host), and whether a
/// session is required.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    #[serde(default)]
    pub host: Option<String>,
    pub upstream: String,
    pub auth: AuthMode,
    /// Pass the session cookie and the client's fingerprint upstream. Only for the auth
    /// service's route, which needs them for sign-in and logout.
    #[serde(default)]
    pub auth_service: bool,
    /// Match `prefix` only as spelled. By default a route matches any ASCII case of its
    /// prefix (`/APP/` is `/app/`), since many upstreams do. A case-sensitive protected route
    /// still refuses (404) other spellings of its prefix that would fall to another route.
    #[serde(default)]
    pub case_sensitive: bool,
    /// Largest request body for this route; `[limits] max_body_bytes` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Let `Upgrade: websocket` through (after the route's session check). Off by default: an
    /// upgraded connection is a tunnel the gateway no longer reads.
    #[serde(default)]
    pub websocket: bool,
    /// Forward `TRACE` (answered 405 by default, as nginx does: it echoes the request,
    /// cookies included).
    #[serde(default)]
    pub allow_trace: bool,
    /// Client headers the gateway strips by default (the `X-Forwarded-*` family, `X-Original-*`,
    /// `True-Client-IP`, `Remote-User`, ...) that this route's upstream should get as the
    /// client sent them. Never the identity headers or those the gateway sets itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_headers: Vec<String>,
    /// Roles that admit a signed-in person to this route: any one of them
    /// (`[A-Za-z0-9._:-]{1,64}`). Empty: every signed-in person. Only on `auth = "required"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Roles a signed-in person must all hold (besides one of `roles`, when both are set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles_all: Vec<String>,
    /// A second factor is needed: the session's `amr` holds `otp`, `hwk`, `swk` or `mfa`
    /// (`authflow_shared::session::SECOND_FACTORS`); else browsers go to
    /// `[session_check] mfa_url` and API clients get 401. Only on `auth = "required"`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa: bool,
    /// With `mfa = true` (refused without it, so removing `mfa` cannot leave a freshness
    /// behind that still asks): the second factor must have been used at most this long
    /// ago (`claims.mfa_time`), else it is asked again (a step-up). Whole seconds, >= 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_max_age: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid session is needed; identity headers are sent upstream.
    Required,
    /// No session is checked; identity headers are only stripped.
    Public,
}

impl GatewayConfig {
    /// Things that are fine in the file but not on this machine (yet): the gateway will not
    /// start until they are fixed, but the file itself may be deployed elsewhere.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(tls) = &self.tls {
            for (k, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !Path::new(p).is_file() {
                    out.push(format!("{k}: {p:?} does not exist on this machine"));
                }
            }
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            if let Some(ca) = u.ca_file.as_ref().filter(|p| !p.is_file()) {
                out.push(format!(
                    "upstreams[{i}].ca_file: {:?} does not exist on this machine",
                    ca.display().to_string()
                ));
            }
        }
        if let Some(key) = self
            .identity
            .jwt_key_file
            .as_ref()
            .filter(|_| self.identity.jwt)
        {
            if !key.is_file() {
                out.push(format!(
                    "identity.jwt_key_file: {:?} does not exist on this machine",
                    key.display().to_string()
                ));
            }
        }
        out
    }
}

impl ConfigFile for GatewayConfig {
    fn env_vars() -> Vec<EnvVar<Self>> {
        RedisConfig::env_vars(|c: &mut Self| &mut c.redis)
    }
}

impl Validate for GatewayConfig {
    /// Each section's own checks, then the ones that span sections.
    fn validate(&self, p: &mut Problems) {
        address("listen", &self.listen, p);
        if let Some(tls) = &self.tls {
            p.section("tls", tls);
        }
        if let Some(m) = &self.metrics_listen {
            address("metrics_listen", m, p);
        }
        if self.threads == 0 || self.threads > 256 {
            p.add("threads", "must be between 1 and 256");
        }
        p.section("redis", &self.redis);
        p.section("session", &self.session);
        p.section("session_check", &self.session_check);
        p.section("identity", &self.identity);
        p.section("rate_limit", &self.rate_limit);
        p.section("limits", &self.limits);
        p.section("forward_auth", &self.forward_auth);
        p.section("tracing", &self.tracing);
        p.each("upstreams", &self.upstreams);
        p.each("routes", &self.routes);
        self.cross_section_problems(p);
    }
}

impl GatewayConfig {
    /// What no single section can see: names that must exist or be unique, and settings
    /// bounded by another section's.
    fn cross_section_problems(&self, p: &mut Problems) {
        let mut listeners = vec![self.listen.as_str()];
        listeners.extend(self.tls.as_ref().map(|t| t.listen.as_str()));
        if self.forward_auth.enabled {
            listeners.extend(self.forward_auth.listen.as_deref());
        }
        self.session
            .check_secure_cookie(&listeners, self.insecure_dev, p);
        if self.session_check.touch_interval > self.session.idle_timeout {
            p.add(
                "session_check.touch_interval",
                "must not be longer than session.idle_timeout",
            );
        }
        let mut names = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if !names.insert(u.name.as_str()) {
                p.add(
                    format!("upstreams[{i}].name"),
                    format!("upstream {:?} is defined twice", u.name),
                );
            }
        }
        if self.routes.is_empty() {
            p.add("routes", "at least one [[routes]] entry is needed");
        }
        let mut seen = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            if !names.contains(r.upstream.as_str()) {
                p.add(
                    format!("routes[{i}].upstream"),
                    format!("no [[upstreams]] entry is named {:?}", r.upstream),
                );
            }
            let shadowed = self.forward_auth.enabled
                && self.forward_auth.listen.is_none()
                && endpoint_suffix(&self.forward_auth.path, r.prefix.trim_end_matches('/'))
                    .is_some();
            if shadowed {
                p.add(
                    format!("routes[{i}].prefix"),
                    format!(
                        "{:?} lies under forward_auth.path {:?}, which is never routed",
                        r.prefix, self.forward_auth.path
                    ),
                );
            }
            let host = r.host.as_deref().map(str::to_ascii_lowercase);
            if !seen.insert((r.prefix.clone(), host)) {
                p.add(
                    format!("routes[{i}].prefix"),
                    format!(
                        "another route already has prefix {:?} for this host",
                        r.prefix
                    ),
                );
            }
        }
    }
}

/// `key` must be `address:port`.
fn address(key: &str, value: &str, p: &mut Problems) {
    if !is_socket_addr(value) {
        p.add(key, format!("{value:?} is not an address:port"));
    }
}

impl Validate for TlsConfig {
    fn validate(&self, p: &mut Problems) {
        address("listen", &self.listen, p);
        for (k, v) in [("cert", &self.cert), ("key", &self.key)] {
            if v.is_empty() {
                p.add(k, "must name a PEM file");
            }
        }
    }
}

impl Validate for SessionCheckConfig {
    fn validate(&self, p: &mut Problems) {
        let hold = self.reauth_hold.0;
        if hold < std::time::Duration::from_secs(1) || hold > std::time::Duration::from_secs(86_400)
        {
            p.add("reauth_hold", "must be between 1s and 24h");
        }
        for (key, url) in [("login_url", &self.login_url), ("mfa_url", &self.mfa_url)] {
            if !(url.starts_with('/') || is_http_url(url)) {
                p.add(key, "must be a path starting with / or an http(s) URL");
            }
        }
        if self.unknown_cookie_cache.0 > std::time::Duration::from_secs(60) {
            p.add(
                "unknown_cookie_cache",
                "must be at most 60s (a session created later would look missing that long)",
            );
        }
        if self.unknown_cookie_lookups > 0 && self.unknown_cookie_window.0.is_zero() {
            p.add(
                "unknown_cookie_window",
                "must be more than 0 when unknown_cookie_lookups bounds lookups",
            );
        }
    }
}

impl Validate for ForwardAuthConfig {
    fn validate(&self, p: &mut Problems) {
        let canonical = crate::canonical::path(&self.path).is_ok_and(|c| c == self.path);
        if !canonical || self.path == "/" || self.path.ends_with('/') || self.path.contains('?') {
            p.add(
                "path",
                "must be a canonical path like \"/verify\" (not \"/\", no trailing slash)",
            );
        }
        if let Some(l) = &self.listen {
            address("listen", l, p);
        }
    }
}

impl Validate for IdentityConfig {
    fn validate(&self, p: &mut Problems) {
        if self.jwt && self.jwt_key_file.is_none() {
            p.add(
                "jwt_key_file",
                "jwt = true needs a P-256 private key (PKCS#8 PEM)",
            );
        }
        let ttl = self.jwt_ttl.0;
        if ttl < std::time::Duration::from_secs(1) || ttl > std::time::Duration::from_secs(3600) {
            p.add("jwt_ttl", "must be between 1s and 1h");
        }
        for (i, h) in self.strip_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                p.add(
                    format!("strip_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                );
            }
        }
    }
}

impl Validate for LimitsConfig {
    fn validate(&self, p: &mut Problems) {
        if !(1024..=1024 * 1024).contains(&self.max_header_bytes) {
            p.add("max_header_bytes", "must be between 1024 and 1048576");
        }
        if !(8..=256).contains(&self.max_headers) {
            p.add(
                "max_headers",
                "must be between 8 and 256 (Pingora's own cap)",
            );
        }
        if self.body_read_timeout.0.is_zero() {
            p.add("body_read_timeout", "must be greater than 0");
        }
        if self.keepalive_timeout.0 < std::time::Duration::from_secs(1) {
            p.add("keepalive_timeout", "must be at least 1s");
        }
        if !(1..=1000).contains(&self.h2_max_concurrent_streams) {
            p.add("h2_max_concurrent_streams", "must be between 1 and 1000");
        }
    }
}

impl Validate for UpstreamConfig {
    fn validate(&self, p: &mut Problems) {
        if self.servers.is_empty() {
            p.add("servers", "must list at least one host:port");
        }
        for (j, s) in self.servers.iter().enumerate() {
            if !valid_server(s) {
                p.add(format!("servers[{j}]"), format!("{s:?} is not host:port"));
            }
        }
        if self.tls && self.sni.is_empty() {
            p.add("sni", "a TLS upstream needs sni");
        }
        match (self.protocol, self.tls) {
            (UpstreamProtocol::H2, false) => p.add(
                "protocol",
                "\"h2\" is HTTP/2 over TLS: set tls = true, or use \"h2c\"",
            ),
            (UpstreamProtocol::H2c, true) => p.add(
                "protocol",
                "\"h2c\" is cleartext: with tls = true use \"h2\"",
            ),
            _ => {}
        }
        if self.ca_file.is_some() && !self.tls {
            p.add(
                "ca_file",
                "only a TLS upstream (tls = true) checks a certificate",
            );
        }
        if self.health_check_grpc.is_some() {
            if self.protocol == UpstreamProtocol::H1 {
                p.add(
                    "health_check_grpc",
                    "gRPC health checks need protocol = \"h2\" or \"h2c\"",
                );
            }
            if self.health_check_path.is_some() {
                p.add(
                    "health_check_grpc",
                    "set either health_check_path or health_check_grpc, not both",
                );
            }
        }
        if let Some(path) = &self.health_check_path {
            if !path.starts_with('/') {
                p.add("health_check_path", "must start with /");
            }
        }
        if !(100..=599).contains(&self.health_check_status) {
            p.add("health_check_status", "must be an HTTP status (100-599)");
        }
        if self.retries > 10 {
            p.add("retries", "must be at most 10");
        }
        if self.resolve_interval.0 < std::time::Duration::from_secs(1) {
            p.add("resolve_interval", "must be at least 1s");
        }
        if self.health_check_interval.0 < std::time::Duration::from_millis(100) {
            p.add("health_check_interval", "must be at least 100ms");
        }
    }
}

impl Validate for RouteConfig {
    fn validate(&self, p: &mut Problems) {
        match crate::canonical::path(&self.prefix) {
            Ok(c) if c == self.prefix => {}
            Ok(c) => p.add(
                "prefix",
                format!("write it in canonical form, {c:?}: requests are matched in that form"),
            ),
            Err(e) => p.add("prefix", format!("not a valid path prefix ({e})")),
        }
        if let Some(h) = &self.host {
            if crate::canonical::host(h).is_err() {
                p.add("host", format!("{h:?} is not a host name"));
            }
        }
        if self.auth_service && self.auth == AuthMode::Required {
            p.add("auth_service", "the auth service's route must be public");
        }
        if self.auth == AuthMode::Public && !(self.roles.is_empty() && self.roles_all.is_empty()) {
            let key = if self.roles.is_empty() {
                "roles_all"
            } else {
                "roles"
            };
            p.add(
                key,
                "a public route checks no session, so no roles: set auth = \"required\"",
            );
        }
        if self.auth == AuthMode::Public && self.mfa {
            p.add(
                "mfa",
                "a public route checks no session, so no second factor: set auth = \"required\"",
            );
        }
        if let Some(max_age) = self.mfa_max_age {
            if !self.mfa {
                p.add("mfa_max_age", "needs mfa = true on the same route");
            } else if let Err(why) = crate::access::SecondFactor::check_max_age(max_age.0) {
                p.add("mfa_max_age", why);
            }
        }
        for (key, list) in [("roles", &self.roles), ("roles_all", &self.roles_all)] {
            for (i, r) in list.iter().enumerate() {
                if let Err(e) = authflow_shared::roles::validate(r) {
                    p.add(format!("{key}[{i}]"), e.to_string());
                }
            }
        }
        for (i, h) in self.pass_headers.iter().enumerate() {
            let key = format!("pass_headers[{i}]");
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                p.add(key, format!("{h:?} is not a header name"));
            } else if !crate::headers::may_pass(&h.to_ascii_lowercase()) {
                p.add(
                    key,
                    format!("{h:?} is set by the gateway itself or carries identity: it is never passed"),
                );
            }
        }
    }
}

/// `host:port` with a non-empty host and a valid port.
fn valid_server(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(['/', ' ']) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// Whether `path` (canonical) is the forward-auth endpoint `endpoint`, and what follows it:
/// `Some("")` for the endpoint itself, `Some("/app/x")` for Envoy's `path_prefix` form. Here,
/// with the config that names the endpoint, so that the config check and the gateway agree
/// on what lies under it.
pub fn endpoint_suffix<'a>(endpoint: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(endpoint)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authflow_shared::config::ConfigProblem;
    use authflow_shared::config::{ConfigError, ConfigSource};

    const GOOD: &str = r#"
listen = "127.0.0.1:8000"
trusted_proxies = ["10.0.0.0/8"]

[redis]
url = "redis://127.0.0.1:6379"
timeout = "50ms"

[session]
cookie_name = "sid"
idle_timeout = "30m"
absolute_timeout = "12h"

[session_check]
login_url = "/auth/signin"

[rate_limit]
requests = 10
per = "1s"

[[rate_limit.rules]]
name = "signin"
prefix = "/api/v1/simple_auth/signin"
requests = 5
per = "1m"

[[upstreams]]
name = "app"
servers = ["127.0.0.1:9000"]

[[routes]]
prefix = "/app/"
upstream = "app"
auth = "required"
"#;

    fn check(text: &str) -> Result<GatewayConfig, ConfigError> {
        let src = ConfigSource {
            file: "gw.toml".into(),
            text: text.into(),
        };
        let no_env: &[(&str, &str)] = &[];
        GatewayConfig::from_source(&src, &no_env, |_, _| {})
    }

    /// 1-based line of the first line containing `needle`.
    fn line_of(text: &str, needle: &str) -> Option<usize> {
        text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
    }

    fn first_problem(text: &str) -> ConfigProblem {
        match check(text) {
            Ok(_) => panic!("config was accepted"),
            Err(e) => e.0[0].clone(),
        }
    }

    #[test]
    fn good_config_is_accepted() {
        let cfg = check(GOOD).expect("valid");
        assert_eq!(cfg.rate_limit.rules[0].per, HumanDuration::secs(60));
        assert_eq!(cfg.session.idle_timeout, HumanDuration::secs(1800));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = GOOD.replace("timeout = \"50ms\"", "timeout = \"50ms\"\ntimeuot = 1");
        let p = first_problem(&text);
        assert_eq!(p.line, line_of(&text, "timeuot"));
        assert!(p.reason.contains("unknown field `timeuot`"), "{}", p.reason);
        assert_eq!(p.key, "redis.timeuot");
    }

    #[test]
    fn bad_duration_is_named() {
        let text = GOOD.replace("idle_timeout = \"30m\"", "idle_timeout = \"30 minutes\"");
        let p = first_problem(&text);
        assert_eq!(p.key, "session.idle_timeout");
        assert_eq!(p.line, line_of(&text, "30 minutes"));
        assert!(p.reason.contains("invalid duration"), "{}", p.reason);
    }

    #[test]
    fn bad_cidr_is_named() {
        let text = GOOD.replace("10.0.0.0/8", "10.0.0.0/33");
        let p = first_problem(&text);
        assert_eq!(p.key, "trusted_proxies[0]");
        assert_eq!(p.line, line_of(&text, "/33"));
    }

    #[test]
    fn route_naming_missing_upstream_is_named() {
        let text = GOOD.replace("upstream = \"app\"", "upstream = \"ghost\"");
        let p = first_problem(&text);
        let line = line_of(&text, "ghost").expect("line");
        assert_eq!(p.key, "routes[0].upstream");
        assert_eq!(p.line, Some(line));
        assert!(p.reason.contains("ghost"));
        assert!(
            p.to_string()
                .starts_with(&format!("gw.toml:{line}: routes[0].upstream:")),
            "{p}"
        );
    }

    #[test]
    fn route_roles_need_a_protected_route_and_good_names() {
        let with = |auth: &str, roles: &str| {
            GOOD.replace(
                "auth = \"required\"\n",
                &format!("auth = \"{auth}\"\n{roles}\n"),
            )
        };
        let cfg = check(&with(
            "required",
            "roles = [\"admin\", \"ops\"]\nroles_all = [\"staff\"]",
        ))
        .expect("valid");
        assert_eq!(cfg.routes[0].roles, vec!["admin", "ops"]);
        assert_eq!(cfg.routes[0].roles_all, vec!["staff"]);
        let p = first_problem(&with("public", "roles = [\"admin\"]"));
        assert_eq!(p.key, "routes[0].roles");
        assert!(p.reason.contains("public"), "{p}");
        let p = first_problem(&with("required", "roles_all = [\"ok\", \"not ok\"]"));
        assert_eq!(p.key, "routes[0].roles_all[1]");
        assert!(p.reason.contains("not ok"), "{p}");
    }

    #[test]
    fn a_second_factor_needs_a_protected_route_and_whole_seconds() {
        let with = |auth: &str, keys: &str| {
            GOOD.replace(
                "auth = \"required\"\n",
                &format!("auth = \"{auth}\"\n{keys}\n"),
            )
        };
        let cfg = check(&with("required", "mfa = true\nmfa_max_age = \"15m\"")).expect("valid");
        assert!(cfg.routes[0].mfa);
        assert_eq!(cfg.routes[0].mfa_max_age, Some(HumanDuration::secs(900)));
        let text = with("public", "mfa = true");
        let p = first_problem(&text);
        assert_eq!(p.key, "routes[0].mfa");
        assert_eq!(p.line, line_of(&text, "mfa = true"));
        assert!(p.reason.contains("public"), "{p}");
        let text = with("required", "mfa_max_age = \"15m\"");
        let p = first_problem(&text);
        assert_eq!(p.key, "routes[0].mfa_max_age");
        assert_eq!(p.line, line_of(&text, "mfa_max_age"));
        assert!(p.reason.contains("mfa = true"), "{p}");
        for bad in ["0s", "1500ms"] {
            let p = first_problem(&with(
                "required",
                &format!("mfa = true\nmfa_max_age = \"{bad}\""),
            ));
            assert_eq!(p.key, "routes[0].mfa_max_age", "{bad}");
        }
        let p = first_problem(&GOOD.replace(
            "login_url = \"/auth/signin\"",
            "login_url = \"/auth/signin\"\nmfa_url = \"auth/mfa\"",
        ));
        assert_eq!(p.key, "session_check.mfa_url");
    }

    #[test]
    fn a_signed_identity_needs_a_key_and_a_sane_lifetime() {
        let text = format!("{GOOD}\n[identity]\njwt = true\njwt_ttl = \"2h\"\n");
        let e = check(&text).expect_err("invalid");
        let keys: Vec<_> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["identity.jwt_key_file", "identity.jwt_ttl"]);
    }

    #[test]
    fn several_semantic_problems_are_all_reported() {
        let text = GOOD
            .replace("requests = 10", "requests = 0")
            .replace("servers = [\"127.0.0.1:9000\"]", "servers = [\"nohost\"]")
            .replace(
                "login_url = \"/auth/signin\"",
                "login_url = \"javascript:x\"",
            );
        let e = check(&text).expect_err("invalid");
        let keys: Vec<_> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "session_check.login_url",
                "rate_limit.requests",
                "upstreams[0].servers[0]"
            ]
        );
    }

    #[test]
    fn forward_auth_path_must_be_canonical_and_never_shadow_a_route() {
        let p = first_problem(&format!("{GOOD}\n[forward_auth]\npath = \"/verify/\"\n"));
        assert_eq!(p.key, "forward_auth.path");
        let p = first_problem(&format!("{GOOD}\n[forward_auth]\npath = \"/a//b\"\n"));
        assert_eq!(p.key, "forward_auth.path");
        let shadowed = GOOD.replace("prefix = \"/app/\"", "prefix = \"/verify/app/\"");
        let p = first_problem(&shadowed);
        assert_eq!(p.key, "routes[0].prefix");
        assert!(p.reason.contains("forward_auth.path"), "{}", p.reason);
        // On its own listener the check shadows nothing; off, nothing either.
        check(&format!(
            "{shadowed}\n[forward_auth]\nlisten = \"127.0.0.1:8010\"\n"
        ))
        .expect("own listener");
        check(&format!("{shadowed}\n[forward_auth]\nenabled = false\n")).expect("off");
    }

    #[test]
    fn bad_rate_limit_rules_and_auth_mode_are_refused() {
        for (from, to, key) in [
            ("per = \"1s\"", "per = \"0s\"", "rate_limit.per"),
            (
                "requests = 5",
                "requests = 0",
                "rate_limit.rules[0].requests",
            ),
            (
                "requests = 5",
                "requests = 5\nburst = 0",
                "rate_limit.rules[0].burst",
            ),
            (
                "requests = 5",
                "requests = 5\nkey = [\"cookie\"]",
                "rate_limit.rules[0].key[0]",
            ),
            (
                "requests = 5",
                "requests = 5\nscope = \"planet\"",
                "rate_limit.rules[0].scope",
            ),
            (
                "requests = 5",
                "requests = 5\nmethods = [\"post\"]",
                "rate_limit.rules[0].methods[0]",
            ),
            (
                "name = \"signin\"",
                "name = \"default\"",
                "rate_limit.rules[0].name",
            ),
            (
                "per = \"1s\"",
                "per = \"1s\"\nestimator_slots = 5",
                "rate_limit.estimator_slots",
            ),
        ] {
            let text = GOOD.replace(from, to);
            let p = first_problem(&text);
            assert_eq!(p.key, key, "{to}: {}", p.reason);
            assert!(p.line.is_some(), "{key} has no line");
        }
        let p = first_problem(&GOOD.replace("auth = \"required\"", "auth = \"maybe\""));
        assert_eq!(p.key, "routes[0].auth");
        assert!(p.reason.contains("unknown variant"), "{}", p.reason);
    }

    #[test]
    fn touch_interval_is_bounded_by_the_contract() {
        let p = first_problem(&GOOD.replace(
            "login_url = \"/auth/signin\"",
            "login_url = \"/auth/signin\"\ntouch_interval = \"2h\"",
        ));
        assert_eq!(p.key, "session_check.touch_interval");
    }

    #[test]
    fn environment_overrides_the_file_and_is_named_in_problems() {
        let src = ConfigSource {
            file: "gw.toml".into(),
            text: GOOD.into(),
        };
        let env: &[(&str, &str)] = &[
            ("AUTHFLOW_REDIS_URL", "redis://10.1.1.1:6380"),
            ("AUTHFLOW_REDIS_PASSWORD", "pw"),
        ];
        let cfg = GatewayConfig::from_source(&src, &env, |_, _| {}).expect("valid");
        assert_eq!(cfg.redis.url, "redis://10.1.1.1:6380");
        assert_eq!(cfg.redis.password.as_ref().map(|p| p.expose()), Some("pw"));
        let env: &[(&str, &str)] = &[("AUTHFLOW_REDIS_URL", "http://x")];
        let e = GatewayConfig::from_source(&src, &env, |_, _| {}).expect_err("bad url");
        assert!(
            e.to_string()
                .contains("redis.url: must start with one of redis://"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("(set by environment variable AUTHFLOW_REDIS_URL)"),
            "{e}"
        );
    }

    #[test]
    fn host_cookie_must_be_secure() {
        let p = first_problem(&GOOD.replace(
            "cookie_name = \"sid\"",
            "cookie_name = \"__Host-s\"\ncookie_secure = false",
        ));
        assert_eq!(p.key, "session.cookie_secure");
    }

    #[test]
    fn duplicate_upstreams_and_routes_are_refused() {
        let text = format!("{GOOD}\n[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n\n[[routes]]\nprefix = \"/app/\"\nupstream = \"app\"\nauth = \"public\"\n");
        let e = check(&text).expect_err("invalid");
        let keys: Vec<_> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["upstreams[1].name", "routes[1].prefix"]);
    }
}
