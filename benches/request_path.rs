//! Micro-benchmarks of the gateway's per-request steps and of password hashing.
//!
//! `cargo bench --bench request_path`. These say what each step costs on its own; the
//! end-to-end cost (with sockets, Redis and the upstream) is measured by `benches/e2e.sh`.

use authflow_gateway::access::{self, Requirements, SecondFactor};
use authflow_gateway::config::{AuthMode, RateLimitConfig, RouteConfig};
use authflow_gateway::metrics::traffic::RouteMetrics;
use authflow_gateway::rate_limit::{Phase, RateLimiter, Request};
use authflow_gateway::route::{RouteMatch, Router};
use authflow_shared::cookie;
use authflow_shared::fingerprint::{self, FingerprintSpec};
use authflow_shared::roles;
use authflow_shared::session::{Claims, SessionRecord};
use authflow_shared::token::SessionToken;
use authflow_shared::trace::TraceContext;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

fn headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            .parse()
            .expect("ua"),
    );
    h.insert(
        "accept-language",
        "en-GB,en;q=0.7,de;q=0.3".parse().expect("al"),
    );
    h
}

fn session_steps(c: &mut Criterion) {
    let token = SessionToken::for_user("bench-user");
    let cookie_header = format!(
        "theme=dark; authflow_session={}; _ga=GA1.2.3",
        token.expose()
    );
    let spec = FingerprintSpec::default();
    let h = headers();
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let record = SessionRecord::new(
        "8c6f0e2a-4d1b-4a51-9f0e-2b1f6c3d4e5f",
        Some("ann@example.com".into()),
        spec.compute(ip, &h),
        0,
        Duration::from_secs(3600),
    );
    let json = serde_json::to_string(&record).expect("json");

    c.bench_function("cookie: find session cookie", |b| {
        b.iter(|| cookie::find([black_box(cookie_header.as_str())], "authflow_session"))
    });
    c.bench_function("token: parse + sha256 id", |b| {
        b.iter(|| SessionToken::parse(black_box(token.expose())).map(|t| t.id()))
    });
    c.bench_function("fingerprint: sha256 of ip+ua+lang", |b| {
        b.iter(|| spec.compute(black_box(ip), black_box(&h)))
    });
    c.bench_function("fingerprint: constant-time compare", |b| {
        b.iter(|| {
            fingerprint::matches(
                black_box(&record.fingerprint),
                black_box(&record.fingerprint),
            )
        })
    });
    c.bench_function("session: decode record json", |b| {
        b.iter(|| serde_json::from_str::<SessionRecord>(black_box(&json)).expect("decode"))
    });
    // Roles ride in the record the cache already holds: a change re-writes the record (the
    // cache hears of it), so the request path pays only the check and the header.
    let mut with_roles = record.clone();
    with_roles.claims = Claims::password(
        0,
        roles::normalize(["admin", "ops", "staff"]).expect("roles"),
    );
    let roles_json = serde_json::to_string(&with_roles).expect("json");
    c.bench_function("session: decode record json with claims (3 roles)", |b| {
        b.iter(|| serde_json::from_str::<SessionRecord>(black_box(&roles_json)).expect("decode"))
    });
    let any = Requirements::new(&["auditor".into(), "ops".into()], &[]);
    let all = Requirements::new(&[], &["admin".into(), "staff".into()]);
    c.bench_function(
        "access: route roles (any of 2 + all of 2) vs 3 roles",
        |b| b.iter(|| access::check(black_box(&[&any, &all]), black_box(&with_roles.claims))),
    );
    // A second factor rides in the same record (`amr`, `mfa_time`): a scan of `amr`, and a
    // clock read only for a route with `mfa_max_age`.
    let mut with_otp = with_roles.clone();
    with_otp.claims.amr.push("otp".into());
    with_otp.claims.mfa_time = Some(authflow_shared::now_ms());
    let mfa = Requirements {
        second_factor: Some(SecondFactor { max_age: None }),
        ..Requirements::default()
    };
    let fresh = Requirements {
        second_factor: Some(SecondFactor {
            max_age: Some(Duration::from_secs(900)),
        }),
        ..Requirements::default()
    };
    c.bench_function("access: route mfa vs a session with otp", |b| {
        b.iter(|| access::check(black_box(&[&mfa]), black_box(&with_otp.claims)))
    });
    c.bench_function(
        "access: route mfa_max_age vs a session with otp (clock read)",
        |b| b.iter(|| access::check(black_box(&[&fresh]), black_box(&with_otp.claims))),
    );
    c.bench_function("access: open route (nothing demanded)", |b| {
        b.iter(|| access::check(black_box(&[]), black_box(&with_otp.claims)))
    });
    c.bench_function("access: X-User-Roles header value (3 roles)", |b| {
        b.iter(|| roles::header_value(black_box(&with_roles.claims.roles)))
    });
    let signer = authflow_gateway::identity_jwt::IdentitySigner::generate(Duration::from_secs(60))
        .expect("signer");
    c.bench_function("identity jwt: sign X-Authflow-Jwt (ES256)", |b| {
        b.iter(|| signer.sign(black_box(&with_roles), 1_800_000_000))
    });
}

fn policy_steps(c: &mut Criterion) {
    let cfg: RateLimitConfig = toml::from_str(
        r#"
requests = 1000000000
per = "1s"
[[rules]]
name = "signin"
prefix = "/api/v1/simple_auth/signin"
requests = 10
per = "1m"
"#,
    )
    .expect("rate limit config");
    let limiter = RateLimiter::new(&cfg, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let headers = http::HeaderMap::new();
    let mut n: u32 = 0;
    c.bench_function("rate limit: check (GCRA, 2 rules, 64k clients)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let req = Request {
                client: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n & 0xffff))),
                method: &http::Method::GET,
                path: black_box("/app/x"),
                host: None,
                headers: &headers,
                user: None,
            };
            rt.block_on(limiter.check(&req, Phase::BeforeSession))
        })
    });
    let route = |prefix: &str, upstream: &str, auth| RouteConfig {
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
    };
    let routes = vec![
        route("/", "demo", AuthMode::Public),
        route("/app/", "demo", AuthMode::Required),
        route("/api/v1/simple_auth/", "auth", AuthMode::Public),
        route("/auth/", "auth", AuthMode::Public),
    ];
    let names = ["demo", "auth"];
    let router = Router::new(&routes, 1 << 20, |n| names.iter().position(|x| *x == n));
    c.bench_function("route: longest prefix of 4", |b| {
        b.iter(|| {
            matches!(
                router.find(Some("localhost"), black_box("/app/dashboard")),
                RouteMatch::Found(_)
            )
        })
    });
    c.bench_function("trace: continue traceparent, header value, trace id", |b| {
        b.iter(|| {
            let incoming = TraceContext::parse(
                black_box("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                None,
            );
            let hop = incoming.map_or_else(TraceContext::start, |cx| cx.child());
            (hop.traceparent(), hop.trace_id_hex())
        })
    });
    let traffic = RouteMetrics::new("/app/".into());
    c.bench_function("metrics: route traffic (counter + histogram)", |b| {
        b.iter(|| traffic.observe(&http::Method::GET, black_box(200), black_box(0.0012)))
    });
    c.bench_function("canonical path and host", |b| {
        b.iter(|| {
            (
                authflow_gateway::canonical::path(black_box("/app//dash%62oard/x")),
                authflow_gateway::canonical::host(black_box("Localhost:8000")),
            )
        })
    });
}

fn password_hashing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pool = authflow_auth::password::PasswordHasherPool::new(19_456, 2, 1).expect("pool");
    let phc = rt
        .block_on(pool.hash("correct horse battery"))
        .expect("hash");
    let mut g = c.benchmark_group("argon2id m=19456 t=2 p=1");
    g.sample_size(20);
    g.bench_function("verify (one sign-in)", |b| {
        b.iter(|| rt.block_on(pool.verify("correct horse battery", Some(&phc))))
    });
    g.finish();
}

criterion_group!(benches, session_steps, policy_steps, password_hashing);
criterion_main!(benches);
