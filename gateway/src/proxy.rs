//! The `ProxyHttp` implementation. `request_filter` reads top to bottom as the policy:
//! client IP → input limits → canonical path and host → rate limit → health → route → body
//! limit → session → fingerprint → access (the route's roles and second factor:
//! `access.rs`); each step lives in its own module and returns a decision, and one place
//! sends local responses.

use crate::access::{self, Access, Requirements};
use crate::canonical;
use crate::config::{AuthMode, ForwardAuthConfig, GatewayConfig, LimitsConfig};
use crate::decision::Decision;
use crate::forward_auth;
use crate::grpc;
use crate::headers;
use crate::health::{Health, Probe};
use crate::identity_jwt::{IdentitySigner, JWKS_PATH, JWT_HEADER};
use crate::in_flight::InFlight;
use crate::live::{self, LiveConnections, LiveKind};
use crate::message;
use crate::metrics;
use crate::metrics::traffic::RouteMetrics;
pub use crate::policy::Policy;
use crate::policy::SessionPolicy;
use crate::protocol::Protocol;
use crate::rate_limit::{Phase, Quota, RateDecision};
use crate::response::LocalResponse;
use crate::route::{Route, RouteMatch};
use crate::session::{Device, RejectReason, SessionChecker, Verdict};
use crate::session_cache::{Entry, SessionCache};
use crate::stream_resets::StreamResets;
use crate::target::{self, Target};
use crate::upstream::Upstream;
use async_trait::async_trait;
use authflow_shared::client_ip;
use authflow_shared::config::AcceptTraceparent;
use authflow_shared::cookie;
use authflow_shared::fingerprint::FINGERPRINT_HEADER;
use authflow_shared::otel;
use authflow_shared::request::wants_html;
use authflow_shared::roles;
use authflow_shared::store::{SessionFeed, SessionStore, SharedLimits, StoreError};
use authflow_shared::token::log_id;
use authflow_shared::trace::{self, TraceContext};
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr as StdSocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The roles of the session, sorted and comma-separated, for upstreams and forward-auth
/// callers (stripped from clients with every `X-User-*` header).
pub const ROLES_HEADER: &str = "x-user-roles";

/// Per-request state, filled in by `request_filter` and read by the later phases.
pub struct RequestCtx {
    pub request_id: String,
    /// `request_id` as a header value, made once for the upstream request and the response.
    pub request_id_header: Option<http::HeaderValue>,
    pub client_ip: IpAddr,
    /// The connection's own peer (the proxy in front, if any), before `X-Forwarded-For`.
    pub peer_ip: Option<IpAddr>,
    /// The canonical path ([`crate::canonical::path`]): routed, judged and forwarded.
    pub path: String,
    /// The canonical host, when the request named one.
    pub host: Option<String>,
    pub route: Option<Arc<Route>>,
    /// Request body bytes seen so far, against the route's limit.
    pub body_bytes: u64,
    /// The in-flight slot this request holds, given back in `logging`.
    pub in_flight: Option<usize>,
    /// Servers this request was sent to, in order (retries go elsewhere).
    pub tried: Vec<SocketAddr>,
    /// A retry because a pooled connection had gone stale: the same server may serve it.
    pub retry_same: bool,
    pub identity: Option<Identity>,
    /// The client's fingerprint, handed to the auth service on its route only.
    pub fingerprint: Option<String>,
    pub decision: Decision,
    /// This hop's trace context (kept from a trusted caller, else a new trace).
    pub trace: Option<TraceContext>,
    /// The request's span and its upstream call's, when spans are exported (else none).
    pub span: tracing::Span,
    pub upstream_span: tracing::Span,
    /// The rate-limit rule whose 429 answered the request, for the access log.
    pub rule: Option<String>,
    /// With `[rate_limit] headers = "always"`: the tightest quota, for the response.
    pub quota: Option<Quota>,
    /// What the session check found (`ok`, `expired_idle`, ...; `-` when none ran).
    pub session_outcome: &'static str,
    pub started: Instant,
    /// When the current upstream server was chosen, for its response time.
    pub upstream_started: Option<Instant>,
    /// The policy this request started with (see [`Policy`]).
    pub policy: Arc<Policy>,
    /// Whether the request went upstream (with the judged path), for the log.
    pub forwarded: bool,
    /// What the request arrived in (`h1`, `h2`, `ws`, `grpc`), for the log and metrics.
    pub protocol: Protocol,
    /// The upstream socket of a signed-in request over HTTP/1.1 to its server: watched if
    /// the answer turns out long-lived ([`crate::live`]).
    pub upstream_fd: Option<std::os::fd::RawFd>,
    /// This request's long-lived connection, watched until the request ends.
    pub live: Option<live::Registration>,
}

/// Who the upstream is told the client is.
pub struct Identity {
    /// The session (shared with the cache: no copy of the record per request).
    pub session: Arc<Entry>,
    pub session_id: String,
}

/// What a request step decides.
pub enum Step {
    Continue,
    Respond(Decision, LocalResponse),
}

pub struct Gateway {
    /// Swapped whole by a reload.
    policy: Arc<arc_swap::ArcSwap<Policy>>,
    sessions: SessionChecker,
    health: Health,
    limits: LimitsConfig,
    in_flight: InFlight,
    forward_auth: Option<ForwardAuth>,
    accept_traceparent: AcceptTraceparent,
    /// Whether spans are exported (`[tracing] otlp_endpoint`): only then does a request
    /// make spans.
    export_spans: bool,
    /// With `[identity] jwt = true`: signs `X-Authflow-Jwt` and serves the JWKS.
    signer: Option<Arc<IdentitySigner>>,
    /// Long-lived connections closed with their session (when any route is protected).
    live: Option<Arc<LiveConnections>>,
    /// HTTP/2 streams cancelled per connection (rapid reset).
    resets: StreamResets,
}

/// The forward-auth endpoint, when on: its path, and its own listener if it has one.
struct ForwardAuth {
    path: String,
    listener: Option<StdSocketAddr>,
}

impl ForwardAuth {
    fn new(cfg: &ForwardAuthConfig) -> Option<Self> {
        cfg.enabled.then(|| ForwardAuth {
            path: cfg.path.clone(),
            listener: cfg.listen.as_deref().and_then(|l| l.parse().ok()),
        })
    }

    /// Whether `local` (the address the request came in on) is the check's own listener.
    fn is_own_listener(&self, local: Option<StdSocketAddr>) -> bool {
        match (self.listener, local) {
            (Some(own), Some(local)) => {
                own.port() == local.port() && (own.ip().is_unspecified() || own.ip() == local.ip())
            }
            _ => false,
        }
    }
}

impl Gateway {
    pub fn new(
        cfg: &GatewayConfig,
        upstreams: Vec<Upstream>,
        store: Arc<dyn SessionStore>,
        cache: Option<(Arc<SessionCache>, Arc<dyn SessionFeed>)>,
        shared_limits: Option<Arc<dyn SharedLimits>>,
    ) -> Self {
        let mut sessions = SessionChecker::new(store.clone(), &cfg.session_check);
        let cached = cache.as_ref().map(|(c, _)| c.clone());
        if let Some((cache, feed)) = cache {
            sessions = sessions.with_cache(cache, feed);
        }
        let policy = Arc::new(arc_swap::ArcSwap::from_pointee(Policy::new(
            cfg,
            upstreams,
            shared_limits,
            None,
        )));
        let health = Health::new(store.clone(), policy.clone()).with_cache(cached);
        Gateway {
            policy,
            sessions,
            health,
            limits: cfg.limits.clone(),
            in_flight: InFlight::new(cfg.limits.max_in_flight_per_client),
            forward_auth: ForwardAuth::new(&cfg.forward_auth),
            accept_traceparent: cfg.tracing.accept_traceparent,
            export_spans: cfg.tracing.otlp_endpoint.is_some(),
            signer: None,
            live: cfg
                .routes
                .iter()
                .any(|r| r.auth == AuthMode::Required)
                .then(LiveConnections::new),
            resets: StreamResets::new(cfg.limits.h2_max_reset_streams),
        }
    }

    /// The registry of long-lived connections, for the task that watches their sessions.
    pub fn live_connections(&self) -> Option<Arc<LiveConnections>> {
        self.live.clone()
    }

    /// Signs the identity for upstreams with `signer` (`[identity] jwt = true`).
    pub fn with_signer(mut self, signer: Option<Arc<IdentitySigner>>) -> Self {
        self.signer = signer;
        self
    }

    /// The swappable policy, for [`crate::reload`].
    pub fn reload_handle(&self) -> Arc<arc_swap::ArcSwap<Policy>> {
        self.policy.clone()
    }

    /// The health reporter, for the private listener.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// 429 for a stream of an HTTP/2 connection that has cancelled too many streams.
    fn too_many_resets(&self, session: &Session) -> Option<Step> {
        if !session.is_http2() || !client_socket(session).is_some_and(|c| self.resets.over(c)) {
            return None;
        }
        Some(Step::Respond(
            Decision::RateLimited,
            LocalResponse::error(429, "too_many_stream_resets").header("retry-after", "60"),
        ))
    }

    /// Watches a signed-in request's tunnel (101), event stream or answer of unknown length,
    /// so that it ends with the session ([`crate::live`]).
    fn watch_if_long_lived(&self, resp: &ResponseHeader, ctx: &mut RequestCtx) {
        let (Some(live), Some(id)) = (&self.live, &ctx.identity) else {
            return;
        };
        let kind = if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            LiveKind::WebSocket
        } else if resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            LiveKind::EventStream
        } else if !resp.headers.contains_key(http::header::CONTENT_LENGTH)
            && !matches!(resp.status.as_u16(), 204 | 304)
        {
            // A body of unknown length may stream for as long as the server likes, or
            // fall silent: watched from its first byte, not only once a chunk passes.
            LiveKind::Stream
        } else {
            return;
        };
        ctx.live = Some(watch(live, id, ctx.upstream_fd, kind));
    }

    /// Ends a watched answer whose session ended; watches a signed-in answer still
    /// streaming after [`live::LONG_LIVED`].
    fn watch_streaming(&self, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(watched) = &ctx.live {
            if watched.is_closed() {
                return Error::e_explain(
                    ErrorType::Custom("session ended"),
                    "stream of an ended session",
                );
            }
            return Ok(());
        }
        let (Some(live), Some(id)) = (&self.live, &ctx.identity) else {
            return Ok(());
        };
        if ctx.started.elapsed() >= live::LONG_LIVED {
            ctx.live = Some(watch(live, id, ctx.upstream_fd, LiveKind::Stream));
        }
        Ok(())
    }

    /// The request policy, in order. Only `Step::Respond` stops it.
    async fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Step {
        // HTTP/1.1 keeps idle connections forever by default: bound it.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.limits.keepalive_timeout.0.as_secs()));
        }
        if session.is_http2() {
            // A stream whose client stops reading (a zero window) is given up, as a slow
            // HTTP/1.1 reader is by its socket.
            session.set_write_timeout(Some(self.limits.keepalive_timeout.0));
        }
        let req = session.req_header();
        if let Some(resp) = self.header_limits(req) {
            return Step::Respond(Decision::TooLarge, resp);
        }
        match target::judge(req) {
            Ok(Target::Resource(path, host)) => (ctx.path, ctx.host) = (path, host),
            Ok(Target::Server) => return Step::Respond(Decision::ServerOptions, server_options()),
            Err(why) => {
                return bad_request(why.as_str());
            }
        }
        let declared = match message::check_method(&req.method)
            .and_then(|()| message::declared_length(&req.headers))
        {
            Ok(declared) => declared,
            Err(refusal) => return refused(refusal),
        };
        match self.forward_auth_call(session, &ctx.path) {
            ForwardAuthCall::Check(suffix) => {
                return self.verify(session.req_header(), ctx, &suffix).await
            }
            ForwardAuthCall::Elsewhere => {
                return Step::Respond(Decision::NoRoute, LocalResponse::error(404, "not_found"))
            }
            ForwardAuthCall::No => {}
        }
        let span = step_span(ctx, "rate limit");
        let req = session.req_header();
        if let Some(refused) = self.admit(req, &req.method, ctx).instrument(span).await {
            return refused;
        }
        let req = session.req_header();
        if let Some(probe) = Probe::at(&ctx.path) {
            return Step::Respond(Decision::Health, self.public_probe(req, probe).await);
        }
        if let (Some(signer), JWKS_PATH) = (&self.signer, ctx.path.as_str()) {
            return Step::Respond(Decision::Jwks, jwks(req, signer));
        }
        let route = match ctx.policy.router.find(ctx.host.as_deref(), &ctx.path) {
            RouteMatch::Found(r) => r.clone(),
            RouteMatch::CaseConflict | RouteMatch::None => {
                return Step::Respond(Decision::NoRoute, LocalResponse::error(404, "not_found"))
            }
        };
        if declared.is_some_and(|n| n > route.max_body_bytes) {
            return Step::Respond(Decision::TooLarge, body_too_large());
        }
        let upgrade = message::upgrade(&req.headers);
        if let Err(refusal) =
            message::route_admits(&req.method, upgrade, route.allow_trace, route.websocket)
        {
            return refused(refusal);
        }
        if upgrade == message::Upgrade::Other {
            // Served as plain HTTP/1.1: neither the upstream nor Pingora sees an upgrade, so
            // no tunnel (h2c smuggling) can open.
            let req = session.req_header_mut();
            req.remove_header("upgrade");
            req.remove_header("http2-settings");
        }
        let req = session.req_header();
        // A timer per request costs; only a request with a body has a body to wait for.
        if declared.is_some_and(|n| n > 0) || req.headers.contains_key("transfer-encoding") {
            session.set_read_timeout(Some(self.limits.body_read_timeout.0));
        }
        let req = session.req_header();
        if route.auth_service {
            let spec = &ctx.policy.session.fingerprint;
            ctx.fingerprint = Some(spec.compute(ctx.client_ip, &req.headers));
        }
        let auth = route.auth;
        ctx.route = Some(route);
        if auth == AuthMode::Required {
            return self.require_session(req, ctx).await;
        }
        Step::Continue
    }

    /// The per-client limits: the rate-limit rules not keyed by user, then the in-flight cap.
    async fn admit(
        &self,
        req: &RequestHeader,
        method: &http::Method,
        ctx: &mut RequestCtx,
    ) -> Option<Step> {
        let phase = Phase::BeforeSession;
        if let Some(refused) = self.limit(req, method, ctx, None, phase).await {
            return Some(refused);
        }
        match self.in_flight.enter(ctx.client_ip) {
            Ok(slot) => ctx.in_flight = slot,
            Err(_over) => {
                let resp = LocalResponse::error(429, "too_many_requests_in_flight")
                    .header("retry-after", "1");
                return Some(Step::Respond(Decision::RateLimited, resp));
            }
        }
        None
    }

    /// The rate-limit rules keyed by user, once the session check found `user`.
    async fn admit_user(
        &self,
        req: &RequestHeader,
        method: &http::Method,
        ctx: &mut RequestCtx,
        user: &str,
    ) -> Option<Step> {
        if !ctx.policy.limiter.has_user_rules() {
            return None;
        }
        self.limit(req, method, ctx, Some(user), Phase::AfterSession)
            .await
    }

    /// The rules of `phase` for `req`, as `method` (the original request's, for forward-auth).
    async fn limit(
        &self,
        req: &RequestHeader,
        method: &http::Method,
        ctx: &mut RequestCtx,
        user: Option<&str>,
        phase: Phase,
    ) -> Option<Step> {
        let request = crate::rate_limit::Request {
            client: ctx.client_ip,
            method,
            path: &ctx.path,
            host: ctx.host.as_deref(),
            headers: &req.headers,
            user,
        };
        match ctx.policy.limiter.check(&request, phase).await {
            RateDecision::Allow(quota) => {
                // Both phases may report: the response states the tighter one.
                if let Some(q) = quota {
                    if ctx
                        .quota
                        .as_ref()
                        .is_none_or(|old| q.remaining < old.remaining)
                    {
                        ctx.quota = Some(q);
                    }
                }
                None
            }
            RateDecision::Limited(over) => {
                let resp = LocalResponse::too_many_requests(&over);
                ctx.rule = Some(over.policy);
                Some(Step::Respond(Decision::RateLimited, resp))
            }
        }
    }

    /// Whether this request is a forward-auth check (and what path follows the endpoint),
    /// or arrived on the check's own listener for anything else.
    fn forward_auth_call(&self, session: &Session, path: &str) -> ForwardAuthCall {
        let Some(fa) = &self.forward_auth else {
            return ForwardAuthCall::No;
        };
        let suffix = forward_auth::suffix(&fa.path, path);
        if fa.listener.is_some() {
            let local = session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| StdSocketAddr::new(a.ip(), a.port()));
            if !fa.is_own_listener(local) {
                return ForwardAuthCall::No;
            }
            return suffix.map_or(ForwardAuthCall::Elsewhere, |s| {
                ForwardAuthCall::Check(s.to_owned())
            });
        }
        suffix.map_or(ForwardAuthCall::No, |s| {
            ForwardAuthCall::Check(s.to_owned())
        })
    }

    /// A forward-auth check: the same limits and session check a protected route gets, for
    /// the request the caller describes, answered with 200 and the identity headers, or
    /// 401 / 302 / 429 / 503. The original request's description is believed only from a
    /// trusted proxy; anyone else asks about their own check request.
    async fn verify(&self, req: &RequestHeader, ctx: &mut RequestCtx, suffix: &str) -> Step {
        let trusted = session_peer_trusted(ctx, &ctx.policy.trusted_proxies);
        let original = match forward_auth::original(req, suffix, trusted) {
            Ok(original) => original,
            Err(why) => {
                return bad_request(why.as_str());
            }
        };
        // The rules see the original request as a direct one would: its canonical path,
        // host and method.
        let host = original.host.as_deref().map(canonical::host).transpose();
        match (canonical::path(&original.path), host) {
            (Ok(path), Ok(host)) => {
                ctx.path = path;
                ctx.host = host.or(ctx.host.take());
            }
            (Err(why), _) | (_, Err(why)) => {
                return bad_request(why.as_str());
            }
        }
        if let Err(refusal) = message::check_method(&original.method) {
            return refused(refusal);
        }
        let method = &original.method;
        if let Some(refused) = self.admit(req, method, ctx).await {
            return refused;
        }
        // What the original request's route demands, and what the caller's config adds
        // (`?roles=a,b`, `?mfa=1`, `?mfa_max_age=15m` on the check URL).
        let route = match ctx.policy.router.find(ctx.host.as_deref(), &ctx.path) {
            RouteMatch::Found(r) if r.auth == AuthMode::Required => Some(r.clone()),
            _ => None,
        };
        let asked = match forward_auth::demanded(req.uri.query()) {
            Ok(asked) => asked,
            Err(e) => {
                tracing::info!(request_id = %ctx.request_id, error = e.detail(), "forward-auth: bad demand on the check URL");
                return bad_request(e.as_str());
            }
        };
        let needs: Vec<&Requirements> = route
            .as_ref()
            .map(|r| &r.access)
            .into_iter()
            .chain(asked.as_ref())
            .filter(|r| !r.is_open())
            .collect();
        match self.session_verdict(req, ctx, &needs).await {
            Ok(Verdict::Valid { id, session }) => {
                let user = &session.record.user_id;
                if let Some(refused) = self.admit_user(req, method, ctx, user).await {
                    return refused;
                }
                // Every identity header, empty when there is nothing to say: a proxy that
                // copies the answer's headers over the client's (Traefik, Envoy) then leaves
                // no client-sent `X-User-Roles` or `X-User-Email` in place.
                let email = session.record.email.as_deref().unwrap_or_default();
                let roles = roles::header_value(&session.record.claims.roles);
                let resp = LocalResponse::empty(200)
                    .header("x-user-id", session.record.user_id.clone())
                    .header("x-user-email", email.to_owned())
                    .header(ROLES_HEADER, roles);
                ctx.identity = Some(Identity {
                    session,
                    session_id: id,
                });
                Step::Respond(Decision::Verified, resp)
            }
            Ok(Verdict::Forbidden { session, .. }) => {
                let html = forward_auth::from_browser(req, &original);
                let resp = forbidden(&ctx.policy.session, html, &session, &original.uri);
                Step::Respond(Decision::Forbidden, resp)
            }
            Ok(Verdict::SecondFactor { max_age }) => {
                let s = &ctx.policy.session;
                let page = || forward_auth::login_location(&s.mfa_url, &original.uri);
                let api = LocalResponse::second_factor_required(max_age);
                let resp = forward_auth::refusal(req, &original, page, api);
                Step::Respond(Decision::MfaRequired, resp)
            }
            Ok(Verdict::Rejected(reason)) => {
                let s = &ctx.policy.session;
                let page = || forward_auth::login_location(&s.login_url, &original.uri);
                let resp = forward_auth::refusal(req, &original, page, unauthorized(s));
                Step::Respond(Decision::Unauthenticated, clear_cookie(s, resp, reason))
            }
            Ok(Verdict::Throttled(over)) => unknown_cookies_throttled(ctx, over),
            Err(e) => Step::Respond(Decision::StoreUnavailable, store_unavailable(ctx, &e)),
        }
    }

    /// What an upstream's response may not do: set the session cookie (only the auth service
    /// does), or be stored by a shared cache when it answered a protected route (ASVS 14.3.2:
    /// `Cache-Control: private, no-store` unless the upstream chose its own `Cache-Control`).
    fn guard_response(
        &self,
        resp: &mut ResponseHeader,
        route: &Route,
        ctx: &RequestCtx,
    ) -> Result<()> {
        if !route.auth_service {
            let name = &ctx.policy.session.cookie.name;
            let dropped = headers::drop_session_set_cookies(resp, name);
            if dropped > 0 {
                tracing::warn!(request_id = %ctx.request_id, route = %route.prefix, dropped, "upstream tried to set the session cookie: dropped");
            }
        }
        if route.auth == AuthMode::Required && !resp.headers.contains_key("cache-control") {
            resp.insert_header(
                "cache-control",
                http::HeaderValue::from_static("private, no-store"),
            )?;
        }
        Ok(())
    }

    /// 431 when the request line and headers exceed `[limits]`.
    fn header_limits(&self, req: &RequestHeader) -> Option<LocalResponse> {
        let bytes: usize = req.method.as_str().len()
            + req.raw_path().len()
            + req
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        (bytes > self.limits.max_header_bytes || req.headers.len() > self.limits.max_headers)
            .then(|| LocalResponse::error(431, "request_header_fields_too_large"))
    }

    /// A public probe (`/livez`, `/readyz`, `/health`): GET or HEAD, status only (details
    /// are on the private listener).
    async fn public_probe(&self, req: &RequestHeader, probe: Probe) -> LocalResponse {
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return LocalResponse::error(405, "method_not_allowed").header("allow", "GET, HEAD");
        }
        self.health.report(probe, false).await
    }

    /// The session step of a protected route: valid and admitted, rejected (302 / 401),
    /// signed in without the route's roles (403) or its second factor (302 / 401), or the
    /// store is down (503).
    async fn require_session(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Step {
        let route = ctx.route.clone();
        let needs: &[&Requirements] = match &route {
            Some(r) if !r.access.is_open() => &[&r.access],
            _ => &[],
        };
        match self.session_verdict(req, ctx, needs).await {
            Ok(Verdict::Valid { id, session }) => {
                let user = &session.record.user_id;
                if let Some(refused) = self.admit_user(req, &req.method, ctx, user).await {
                    return refused;
                }
                ctx.identity = Some(Identity {
                    session,
                    session_id: id,
                });
                Step::Continue
            }
            Ok(Verdict::Rejected(reason)) => {
                let resp = unauthenticated(&ctx.policy.session, req, reason);
                Step::Respond(Decision::Unauthenticated, resp)
            }
            Ok(Verdict::Forbidden { session, .. }) => {
                let html = is_browser(req);
                let resp = forbidden(&ctx.policy.session, html, &session, next_of(req));
                Step::Respond(Decision::Forbidden, resp)
            }
            Ok(Verdict::SecondFactor { max_age }) => {
                let resp = step_up(&ctx.policy.session, req, max_age);
                Step::Respond(Decision::MfaRequired, resp)
            }
            Ok(Verdict::Throttled(over)) => unknown_cookies_throttled(ctx, over),
            Err(e) => Step::Respond(Decision::StoreUnavailable, store_unavailable(ctx, &e)),
        }
    }

    /// Cookie → session → fingerprint → access (`needs`: what the route demands), for the
    /// client of `ctx`. Its outcome is counted once; a rejection or refusal is logged.
    async fn session_verdict(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
        needs: &[&Requirements],
    ) -> Result<Verdict, StoreError> {
        let cookies = req
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let policy = ctx.policy.clone();
        let session = &policy.session;
        let found = cookie::find(cookies, &session.cookie.name);
        let device = Device {
            spec: &session.fingerprint,
            ip: ctx.client_ip,
            headers: &req.headers,
        };
        let started = Instant::now();
        let span = step_span(ctx, "session check");
        let verdict = self
            .sessions
            .check(&session.rules, found, &device)
            .instrument(span)
            .await;
        metrics::observe_lookup(started.elapsed().as_secs_f64());
        let verdict = match verdict {
            Ok(Verdict::Valid { id, session }) => {
                match access::check(needs, &session.record.claims) {
                    Access::Allow => Ok(Verdict::Valid { id, session }),
                    Access::Forbidden(why) => {
                        tracing::info!(request_id = %ctx.request_id, user = %session.record.user_id, reason = why.as_str(), "access forbidden");
                        Ok(Verdict::Forbidden { session, why })
                    }
                    Access::SecondFactor { max_age, why } => {
                        tracing::info!(request_id = %ctx.request_id, user = %session.record.user_id, reason = why.as_str(), "second factor required");
                        Ok(Verdict::SecondFactor { max_age })
                    }
                }
            }
            other => other,
        };
        ctx.session_outcome = crate::session::outcome(&verdict);
        metrics::session_checked(ctx.session_outcome);
        if let Ok(Verdict::Rejected(reason)) = &verdict {
            tracing::info!(request_id = %ctx.request_id, client = %ctx.client_ip, reason = reason.as_str(), "session rejected");
        }
        verdict
    }

    /// The gateway's hop of the request's trace: a child of the caller's context when the
    /// caller may set one (`[tracing] accept_traceparent`), else a new trace. With span
    /// export on, the hop is the request's span, whose ids the exporter gives.
    fn begin_trace(&self, req: &RequestHeader, ctx: &mut RequestCtx) {
        let incoming = self.incoming_trace(req, ctx);
        if self.export_spans {
            let span = tracing::info_span!(
                "request",
                otel.name = %format_args!("{} gateway", req.method),
                otel.kind = "server",
                http.request.method = %req.method,
                url.path = %req.uri.path(),
                authflow.request_id = %ctx.request_id,
                http.response.status_code = tracing::field::Empty,
                authflow.decision = tracing::field::Empty,
            );
            if let Some(parent) = &incoming {
                otel::continue_trace(&span, parent);
            }
            ctx.trace = otel::context_of(&span);
            ctx.span = span;
        }
        if ctx.trace.is_none() {
            ctx.trace = Some(incoming.map_or_else(TraceContext::start, |cx| cx.child()));
        }
    }

    /// The caller's trace context, if it sent a valid one and may set it.
    fn incoming_trace(&self, req: &RequestHeader, ctx: &RequestCtx) -> Option<TraceContext> {
        let accepted = match self.accept_traceparent {
            AcceptTraceparent::All => true,
            AcceptTraceparent::Trusted => session_peer_trusted(ctx, &ctx.policy.trusted_proxies),
            AcceptTraceparent::None => false,
        };
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        accepted
            .then(|| header(trace::TRACEPARENT))
            .flatten()
            .and_then(|tp| TraceContext::parse(tp, header(trace::TRACESTATE)))
    }

    /// The client's address (through trusted proxies) and the connection's peer.
    fn client_ip(&self, session: &Session, policy: &Policy) -> (IpAddr, Option<IpAddr>) {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| client_ip::canonical(a.ip()));
        let xff = session
            .req_header()
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let client = client_ip::resolve(peer.unwrap_or(unknown), xff, &policy.trusted_proxies);
        (client, peer)
    }
}

/// Registers a request's answer under its session. The upstream connection answering it is
/// open while the answer is forwarded: `upstream_fd` is still its socket.
fn watch(
    live: &Arc<LiveConnections>,
    id: &Identity,
    upstream_fd: Option<std::os::fd::RawFd>,
    kind: LiveKind,
) -> live::Registration {
    let entry = &id.session;
    live.register(
        &id.session_id,
        &entry.record,
        entry.last_seen(),
        upstream_fd,
        kind,
    )
}

/// The client's address and port (its connection), when it came over TCP.
fn client_socket(session: &Session) -> Option<StdSocketAddr> {
    session.client_addr().and_then(|a| a.as_inet()).copied()
}

/// A browser's page load: a GET that accepts HTML (it gets pages and redirects, not JSON).
fn is_browser(req: &RequestHeader) -> bool {
    let accept = req.headers.get_all("accept");
    let accept = accept.iter().filter_map(|v| v.to_str().ok());
    wants_html(req.method == http::Method::GET, accept)
}

/// Where a browser comes back to after signing in: the request's path and query.
fn next_of(req: &RequestHeader) -> &str {
    req.uri.path_and_query().map_or("/", |p| p.as_str())
}

/// Browsers (a GET that accepts HTML) go to the login page with `next`; everything else
/// gets a 401. A cookie that named a dead session is cleared.
fn unauthenticated(s: &SessionPolicy, req: &RequestHeader, reason: RejectReason) -> LocalResponse {
    let resp = if is_browser(req) {
        let login = forward_auth::login_location(&s.login_url, next_of(req));
        LocalResponse::redirect(login)
    } else {
        unauthorized(s)
    };
    clear_cookie(s, resp, reason)
}

/// 403 for a signed-in person the route does not admit: a page for browsers (with a link to
/// sign in as someone else, coming back to `next`), `{"error":"forbidden"}` for the rest.
/// The cookie stays: the session is valid elsewhere.
fn forbidden(s: &SessionPolicy, html: bool, session: &Entry, next: &str) -> LocalResponse {
    let sign_in = forward_auth::login_location(&s.login_url, next);
    LocalResponse::forbidden(html, session.record.email.as_deref(), &sign_in)
}

/// A step-up: browsers go to the second-factor page, coming back to the request's path and
/// query; anyone else gets 401 `mfa_required` with the RFC 9470 challenge. The cookie stays.
fn step_up(s: &SessionPolicy, req: &RequestHeader, max_age: Option<Duration>) -> LocalResponse {
    if is_browser(req) {
        LocalResponse::redirect(forward_auth::login_location(&s.mfa_url, next_of(req)))
    } else {
        LocalResponse::second_factor_required(max_age)
    }
}

/// The public key of `X-Authflow-Jwt` (GET or HEAD), cacheable for five minutes.
fn jwks(req: &RequestHeader, signer: &IdentitySigner) -> LocalResponse {
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return LocalResponse::error(405, "method_not_allowed").header("allow", "GET, HEAD");
    }
    LocalResponse {
        status: 200,
        headers: vec![
            ("content-type", "application/jwk-set+json".into()),
            ("cache-control", "public, max-age=300".into()),
        ],
        body: bytes::Bytes::from(signer.jwks().to_owned()),
    }
}

/// 401 naming the cookie that would have been accepted.
fn unauthorized(s: &SessionPolicy) -> LocalResponse {
    LocalResponse::error(401, "unauthenticated").header(
        "www-authenticate",
        format!(
            "Cookie realm=\"authflow\", cookie-name=\"{}\"",
            s.cookie.name
        ),
    )
}

/// `resp`, clearing the browser's cookie unless it sent none.
fn clear_cookie(s: &SessionPolicy, resp: LocalResponse, reason: RejectReason) -> LocalResponse {
    if reason.clears_cookie() {
        resp.header("set-cookie", s.cookie.clear())
    } else {
        resp
    }
}

/// What a request is to the forward-auth endpoint.
enum ForwardAuthCall {
    /// A check, with the path after the endpoint (Envoy's `path_prefix` form).
    Check(String),
    /// Something else on the check's own listener: 404.
    Elsewhere,
    /// Not forward-auth: routed as usual.
    No,
}

/// Whether the request's immediate peer is a trusted proxy (its forwarded headers count).
fn session_peer_trusted(ctx: &RequestCtx, trusted: &[IpNet]) -> bool {
    ctx.peer_ip
        .is_some_and(|ip| client_ip::is_trusted(ip, trusted))
}

/// A child span of the request's for one step, when spans are exported.
fn step_span(ctx: &RequestCtx, name: &'static str) -> tracing::Span {
    if ctx.span.is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(parent: &ctx.span, "step", otel.name = name)
}

/// The upstream of the request's route, in the policy it started with.
fn upstream_of(ctx: &RequestCtx) -> Option<&Upstream> {
    ctx.route
        .as_ref()
        .and_then(|r| ctx.policy.upstreams.get(r.upstream))
}

/// Too many unknown cookies from this address: 429, the cookie kept (it may be a real session
/// this gateway has not cached; clearing it would let a flood sign people out).
fn unknown_cookies_throttled(ctx: &mut RequestCtx, over: crate::rate_limit::Exceeded) -> Step {
    let resp = LocalResponse::too_many_requests(&over);
    ctx.rule = Some(over.policy);
    Step::Respond(Decision::RateLimited, resp)
}

/// 503 when the session store cannot answer: fail closed.
fn store_unavailable(ctx: &RequestCtx, e: &StoreError) -> LocalResponse {
    tracing::warn!(request_id = %ctx.request_id, error = %e, "session store unavailable: failing closed");
    LocalResponse::error(503, "session_store_unavailable").header("retry-after", "1")
}

/// What the gateway names in `Allow` (on `OPTIONS *` and a refused `TRACE`).
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// 400 `{"error": "bad_request", "reason": ...}`.
fn bad_request(reason: &str) -> Step {
    let resp = LocalResponse::error(400, "bad_request").field("reason", reason);
    Step::Respond(Decision::BadRequest, resp)
}

/// A request message refused by [`message`]: 400 or 405 with the reason.
fn refused(refusal: message::Refusal) -> Step {
    let (status, code) = refusal.answer();
    let mut resp = LocalResponse::error(status, code);
    let decision = if status == 405 {
        resp = resp.header("allow", ALLOWED_METHODS);
        Decision::MethodNotAllowed
    } else {
        Decision::BadRequest
    };
    Step::Respond(decision, resp)
}

/// `OPTIONS *`: what the gateway itself allows; never forwarded (no route judges `*`).
fn server_options() -> LocalResponse {
    LocalResponse::empty(204).header("allow", ALLOWED_METHODS)
}

fn body_too_large() -> LocalResponse {
    LocalResponse::error(413, "payload_too_large")
}

/// Status for a proxying failure: 504 when the upstream was too slow, 502 when it refused or
/// broke, the status itself for `HTTPStatus`, 400 for a bad client request.
fn failure_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

fn error_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        413 => "payload_too_large",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "internal_error",
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            request_id: String::new(),
            request_id_header: None,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_ip: None,
            path: String::new(),
            host: None,
            route: None,
            body_bytes: 0,
            in_flight: None,
            tried: Vec::new(),
            retry_same: false,
            identity: None,
            fingerprint: None,
            decision: Decision::Forwarded,
            trace: None,
            span: tracing::Span::none(),
            upstream_span: tracing::Span::none(),
            rule: None,
            quota: None,
            session_outcome: "-",
            started: Instant::now(),
            upstream_started: None,
            policy: self.policy.load_full(),
            forwarded: false,
            protocol: Protocol::H1,
            upstream_fd: None,
            live: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        (ctx.client_ip, ctx.peer_ip) = self.client_ip(session, &ctx.policy);
        // A caller's request id is kept only from a trusted proxy, as its trace context is:
        // anyone else could plant ids that collide with real ones in every log downstream.
        let trusted = session_peer_trusted(ctx, &ctx.policy.trusted_proxies);
        let incoming = session.req_header().headers.get("x-request-id");
        ctx.request_id = headers::request_id(incoming.filter(|_| trusted).map(|v| v.as_bytes()));
        self.begin_trace(session.req_header(), ctx);
        ctx.protocol = Protocol::of(session);
        let step = match self.too_many_resets(session) {
            Some(refused) => refused,
            None => self.decide(session, ctx).await,
        };
        match step {
            Step::Continue => Ok(false),
            Step::Respond(decision, resp) => {
                ctx.decision = decision;
                let resp = if ctx.protocol == Protocol::Grpc {
                    grpc::answer(resp)
                } else {
                    resp
                };
                resp.send(session, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    /// Remembers the upstream socket of a signed-in request to an HTTP/1.1 server, in case
    /// its answer turns out long-lived (an HTTP/2 connection to a server is shared by many
    /// requests: it is never shut down for one).
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        peer: &HttpPeer,
        fd: std::os::fd::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let h1 = peer
            .get_peer_options()
            .is_none_or(|o| o.alpn.get_max_http_version() == 1);
        ctx.upstream_fd = (ctx.identity.is_some() && self.live.is_some() && h1).then_some(fd);
        Ok(())
    }

    /// Ends the answer of a session that ended ([`crate::live`]).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        // A whole answer in one chunk is over already: no clock read for it.
        if ctx.identity.is_some() && (ctx.live.is_some() || !end_of_stream) {
            self.watch_streaming(ctx)?;
        }
        Ok(None)
    }

    /// Counts a chunked (or under-declared) body against the route's limit: past it the
    /// upstream request is abandoned and the client gets 413.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(chunk) = body else { return Ok(()) };
        ctx.body_bytes += chunk.len() as u64;
        let limit = ctx.route.as_ref().map_or(u64::MAX, |r| r.max_body_bytes);
        if ctx.body_bytes > limit {
            ctx.decision = Decision::TooLarge;
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body over the route's limit",
            ));
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(404), "no route"))?;
        let upstream = ctx
            .policy
            .upstreams
            .get(route.upstream)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "unknown upstream"))?;
        let avoid: &[SocketAddr] = if std::mem::take(&mut ctx.retry_same) {
            &[]
        } else {
            &ctx.tried
        };
        let peer = upstream.pick(avoid).ok_or_else(|| {
            Error::explain(
                ErrorType::HTTPStatus(502),
                format!("every server of upstream {} failed", upstream.name),
            )
        })?;
        let mut peer = peer;
        if ctx.protocol == Protocol::WebSocket {
            peer.options.read_timeout = Some(upstream.tunnel_timeout());
        }
        ctx.tried.push(peer.address().clone());
        ctx.upstream_started = Some(Instant::now());
        if !ctx.span.is_none() {
            ctx.upstream_span = tracing::info_span!(
                parent: &ctx.span,
                "upstream",
                otel.name = %format_args!("upstream {}", upstream.name),
                otel.kind = "client",
                server.address = %peer.address(),
                http.response.status_code = tracing::field::Empty,
            );
        }
        Ok(peer)
    }

    /// A server that refused or did not answer the connection: counted against it, and the
    /// request (which never reached it, whatever its method) goes to another server.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(upstream) = upstream_of(ctx) {
            upstream.report_failure(peer.address());
            if upstream.can_retry(&ctx.tried) {
                e.set_retry(true);
            }
        }
        e
    }

    /// A failure after connecting (reset, timeout, malformed answer): counted against the
    /// server; an idempotent request whose answer has not started is tried elsewhere.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        if !replayable {
            e.set_retry(false);
            return e;
        }
        // Pingora's own rule: a stale pooled connection is retried on a fresh one. Beyond it,
        // the request moves on to another server if one is left; only a fresh connection's
        // failure counts against its server.
        e.retry.decide_reuse(client_reused);
        let mut retry_same = false;
        if let Some(upstream) = upstream_of(ctx) {
            // A client that went away says nothing about the server (counted, it would let
            // anyone take healthy servers out by cancelling requests).
            if !client_reused && e.esource() != &ErrorSource::Downstream {
                upstream.report_failure(peer.address());
            }
            if upstream.can_retry(&ctx.tried) {
                e.set_retry(true);
            } else if client_reused {
                retry_same = true;
            }
        }
        ctx.retry_same |= retry_same;
        e
    }

    /// 502-504 from a server count against it, like a failed connection.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(upstream), Some(at)) = (upstream_of(ctx), ctx.upstream_started) {
            upstream.observe_response(at.elapsed().as_secs_f64());
        }
        ctx.upstream_span
            .record("http.response.status_code", resp.status.as_u16());
        ctx.upstream_span = tracing::Span::none();
        if (502..=504).contains(&resp.status.as_u16()) {
            if let (Some(upstream), Some(addr)) = (upstream_of(ctx), ctx.tried.last()) {
                upstream.report_failure(addr);
            }
        }
        // A tunnel opens only for the websocket upgrade its route allowed (every other
        // Upgrade was refused or removed before the request left).
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
            && message::upgrade(&session.req_header().headers) != message::Upgrade::WebSocket
        {
            return Error::e_explain(ErrorType::HTTPStatus(502), "101 without an allowed upgrade");
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // One walk over the client's headers: the owned ones and (except for the auth
        // service) the session and flow cookies go; then the gateway's own are added, from
        // values made once (per cached session, per request), never re-parsed per header.
        let keep = ctx.route.as_ref().map_or(&[][..], |r| &r.pass_headers[..]);
        let is_auth_service = ctx.route.as_ref().is_some_and(|r| r.auth_service);
        let session_cookie = (!is_auth_service).then_some(ctx.policy.session.cookie.name.as_str());
        headers::strip_for_upstream(req, &ctx.policy.strip_headers, keep, session_cookie)?;
        if message::length_is_list(&req.headers) {
            // Checked to be one value repeated: the upstream gets it once (RFC 9110 §8.6).
            if let Ok(Some(n)) = message::declared_length(&req.headers) {
                req.insert_header("content-length", n.to_string())?;
            }
        }
        // Always the target that was judged, never the client's bytes: Pingora keeps the
        // bytes of an absolute-form (or unclassifiable) target for the wire whatever the URI
        // says. An origin-form target already canonical is left as it is (no allocation).
        if !target::is_already(req.raw_path(), &ctx.path, req.uri.query()) {
            let target = match req.uri.query() {
                Some(q) => format!("{}?{q}", ctx.path),
                None => ctx.path.clone(),
            };
            let uri = target
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "canonical path", e))?;
            req.set_uri(uri);
        }
        ctx.forwarded = true;
        if let (true, Some(fp)) = (is_auth_service, ctx.fingerprint.as_deref()) {
            req.insert_header(FINGERPRINT_HEADER, fp)?;
        }
        if let Some(id) = &ctx.identity {
            let record = &id.session.record;
            let made = id.session.identity();
            match &made.user_id {
                Some(v) => req.insert_header("x-user-id", v.clone())?,
                None => req.insert_header("x-user-id", record.user_id.as_str())?,
            }
            if let Some(email) = &record.email {
                match &made.email {
                    Some(v) => req.insert_header("x-user-email", v.clone())?,
                    None => req.insert_header("x-user-email", email.as_str())?,
                }
            }
            let roles = &record.claims.roles;
            if !roles.is_empty() {
                match &made.roles {
                    Some(v) => req.insert_header(ROLES_HEADER, v.clone())?,
                    None => req.insert_header(ROLES_HEADER, roles::header_value(roles))?,
                }
            }
            if let Some(signer) = &self.signer {
                match signer.sign(record, authflow_shared::now_ms() / 1000) {
                    Some(jwt) => req.insert_header(JWT_HEADER, jwt)?,
                    None => {
                        tracing::error!(request_id = %ctx.request_id, "identity JWT could not be signed: sent without it");
                    }
                }
            }
        }
        let request_id = http::HeaderValue::from_str(&ctx.request_id)
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "request id", e))?;
        req.insert_header("x-request-id", request_id.clone())?;
        ctx.request_id_header = Some(request_id);
        // The upstream's parent: the upstream call's span when spans are exported (only then
        // is there a span to ask).
        let exported = (!ctx.upstream_span.is_none())
            .then(|| otel::context_of(&ctx.upstream_span))
            .flatten();
        if let Some(trace) = exported.as_ref().or(ctx.trace.as_ref()) {
            req.insert_header(trace::TRACEPARENT, trace.traceparent())?;
            match &trace.state {
                Some(state) => req.insert_header(trace::TRACESTATE, state.as_str())?,
                None => {
                    req.remove_header(trace::TRACESTATE);
                }
            }
        }
        let client_ip = http::HeaderValue::try_from(ctx.client_ip.to_string())
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "client ip", e))?;
        req.insert_header("x-forwarded-for", client_ip.clone())?;
        req.insert_header("x-real-ip", client_ip)?;
        if let Some(host) = &ctx.host {
            req.insert_header("x-forwarded-host", host.as_str())?;
        }
        // Per connection: the plain listener stays "http" even when a TLS one exists.
        let proto = if crate::response::is_tls(session) {
            "https"
        } else {
            "http"
        };
        req.insert_header("x-forwarded-proto", http::HeaderValue::from_static(proto))?;
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match &ctx.request_id_header {
            Some(v) => resp.insert_header("x-request-id", v.clone())?,
            None => resp.insert_header("x-request-id", ctx.request_id.as_str())?,
        }
        if let Some(route) = &ctx.route {
            self.guard_response(resp, route, ctx)?;
        }
        if let Some(q) = &ctx.quota {
            let (policy, state) = crate::response::rate_limit_headers(
                &q.policy,
                q.requests,
                q.window_secs,
                q.remaining,
                q.reset_secs,
            );
            resp.insert_header("ratelimit-policy", policy)?;
            resp.insert_header("ratelimit", state)?;
        }
        self.watch_if_long_lived(resp, ctx);
        if crate::response::is_tls(session)
            && !resp.headers.contains_key("strict-transport-security")
        {
            resp.insert_header(
                "strict-transport-security",
                http::HeaderValue::from_static("max-age=31536000"),
            )?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let status = failure_status(e);
        if status > 0 && session.response_written().is_none() {
            if ctx.decision != Decision::TooLarge {
                ctx.decision = Decision::UpstreamError;
            }
            let mut resp = LocalResponse::error(status, error_code(status));
            if ctx.protocol == Protocol::Grpc {
                resp = grpc::answer(resp);
            }
            session.set_keepalive(None);
            if let Err(err) = resp.send(session, &ctx.request_id).await {
                tracing::debug!(error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(slot) = ctx.in_flight.take() {
            self.in_flight.leave(slot);
        }
        ctx.live = None;
        if session.is_http2() && e.is_some_and(|e| e.esource() == &ErrorSource::Downstream) {
            if let Some(client) = client_socket(session) {
                self.resets.cancelled(client);
            }
        }
        metrics::count(ctx.decision);
        crate::protocol::count(ctx.protocol);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let route_metrics = ctx
            .route
            .as_ref()
            .map_or(RouteMetrics::unrouted(), |r| &*r.metrics);
        route_metrics.observe(&session.req_header().method, status, elapsed.as_secs_f64());
        ctx.span.record("http.response.status_code", status);
        ctx.span.record("authflow.decision", ctx.decision.as_str());
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            trace_id = %ctx.trace.as_ref().map(TraceContext::trace_id_hex).unwrap_or_default(),
            client = %ctx.client_ip,
            method = %session.req_header().method,
            protocol = ctx.protocol.as_str(),
            request_target = %target::without_query(session.req_header().raw_path()).escape_ascii(),
            path = if ctx.path.is_empty() { "-" } else { ctx.path.as_str() },
            upstream_target = if ctx.forwarded { ctx.path.as_str() } else { "-" },
            status,
            decision = ctx.decision.as_str(),
            route = ctx.route.as_ref().map_or("-", |r| r.prefix.as_str()),
            rule = ctx.rule.as_deref().unwrap_or("-"),
            session_check = ctx.session_outcome,
            upstream = upstream_of(ctx).map_or("-", |u| u.name.as_str()),
            user = ctx.identity.as_ref().map_or("-", |i| i.session.record.user_id.as_str()),
            session = ctx.identity.as_ref().map_or("-", |i| log_id(&i.session_id)),
            elapsed_ms = elapsed.as_millis() as u64,
            error = e.map(|e| e.to_string()).unwrap_or_default(),
        );
    }
}
