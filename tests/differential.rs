//! A differential test of what the gateway forwards against what it judged: a few thousand
//! generated requests (methods, request-target forms and spellings, versions, header
//! spellings, framings, with and without a valid session) are sent as raw bytes through the
//! gateway to an upstream that records the bytes it receives. The gateway's JSON access log
//! says, per request, what it judged (`path`), what it sent (`upstream_target`) and what it
//! decided; the upstream's `x-request-id` joins the two. It looks for the next hole of the
//! kind issue 18 found (`GET app/secret` routed as `/` and forwarded as sent), not the last:
//!
//! 1. every request that arrived names a logged request whose `upstream_target` and judged
//!    `path` are, byte for byte, the target on the received request line less its query (the
//!    log leaves queries out: they may carry one-time tokens), that target is origin-form, its
//!    query is the one the client sent, and the target the gateway
//!    judged (`request_target`) is the one the client sent: nothing autocorrected an invalid
//!    request line on the way (RFC 9112 §3), but for Pingora's own escaping of bytes httparse
//!    refuses (space, controls, `<>"`, non-ASCII), which a proxy cannot turn off and which
//!    leaves the target it judged and forwarded the same; the canonical path refuses the one
//!    harm it can do (a segment ending in `%20`);
//! 2. nothing arrived for a request the gateway refused or logged as forwarding nothing;
//! 3. nothing that reads as a protected path (under `/app/` or `/admin`, in any case, once
//!    decoded, with dot segments and `;` parameters resolved, whatever its scheme or
//!    authority) arrived without the valid session;
//! 4. no identity header arrived but the ones the gateway sets for that session;
//! 5. every request arrived framed so a strict HTTP/1.1 server reads it exactly as sent.
//!
//! The corpus is the same on every run; `DIFFERENTIAL_SEED=<any text>` draws another one
//! (the summary names the seed, so a finding can be replayed). A failure lists each broken
//! invariant with a few examples, each with the bytes the probe sent.

mod support;

use authflow_gateway::config::{AuthMode, MismatchPolicy};
use authflow_shared::config::{HumanDuration, LogFormat};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::raw_upstream::Received;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many requests: about 10 s on a 2-core machine.
const REQUESTS: usize = 4000;
/// The target of the request line in `request` as Pingora 0.9's `escape_illegal_request_line`
/// rewrites it when httparse refuses the line: everything between the method's space and the
/// last ` HTTP/<digit>` (its regex is greedy, so extra separator spaces belong to the target),
/// with control bytes, space, `<`, `>`, `"` and non-ASCII bytes percent-encoded (upper-case
/// hex), less a fragment.
fn pingora_escaped(request: &[u8]) -> Option<Vec<u8>> {
    let line = request.split(|&b| b == b'\n').next()?;
    let start = line.iter().position(|&b| b == b' ')? + 1;
    let end = (start..line.len().saturating_sub(6))
        .rev()
        .find(|&i| line[i..].starts_with(b" HTTP/") && line[i + 6].is_ascii_digit())?;
    let mut out = Vec::new();
    for &b in line.get(start..end)? {
        if !(0x20..0x7f).contains(&b) || matches!(b, b' ' | b'<' | b'>' | b'"') {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    let end = out.iter().position(|&b| b == b'#').unwrap_or(out.len());
    out.truncate(end);
    Some(out)
}

/// A target without its query.
fn before_query(target: &[u8]) -> &[u8] {
    target.split(|&b| b == b'?').next().unwrap_or_default()
}

/// A target's query, if it has one.
fn query_of(target: &[u8]) -> Option<&[u8]> {
    let at = target.iter().position(|&b| b == b'?')?;
    Some(&target[at + 1..])
}

/// The corpus's seed unless `DIFFERENTIAL_SEED` names another.
const SEED: &str = "authflow differential seed 0018!";
/// Requests in flight at once, each on its own connection.
const CONCURRENCY: usize = 24;
const USER: &str = "u-diff";
const EMAIL: &str = "u-diff@example.com";
/// Stands for the session token in header templates.
const TOKEN: &[u8] = b"{T}";
/// Stands for the target's authority (absolute-form) or `x` in the `Host` template.
const AUTHORITY: &[u8] = b"{A}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_arrives_upstream_is_exactly_what_the_gateway_judged_and_logged() {
    let started = Instant::now();
    let redis = Redis::start().await;
    let up = RawUpstream::start().await;
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.routes = vec![
        route("/app/", "app", AuthMode::Required),
        route("/admin", "app", AuthMode::Required),
        route("/", "app", AuthMode::Public),
    ];
    cfg.threads = 2;
    cfg.log_format = LogFormat::Json;
    cfg.rate_limit.enabled = false;
    // A request with a short body then fails within a second instead of ten.
    cfg.limits.body_read_timeout = HumanDuration::secs(1);
    // A probe with an odd User-Agent spelling must not burn the session for the others.
    cfg.session_check.on_fingerprint_mismatch = MismatchPolicy::Reject;
    let gw = Gateway::start_logging(cfg, "warn,access=info").await;
    let token = create_session(&redis.store().await, USER, Some(EMAIL), "127.0.0.1", UA).await;

    let seed = std::env::var("DIFFERENTIAL_SEED").unwrap_or_else(|_| SEED.to_owned());
    let probes = corpus(&seed, token.expose().as_bytes());
    let outcomes = send_all(gw.port, &probes).await;
    let log = access_log(&gw, &outcomes).await;
    let received = up.received();

    let report = Report::new(&probes, &outcomes, &log, &received);
    report.print_summary(&seed, started.elapsed());
    let findings = check(&probes, &log, &received);
    if !findings.is_empty() {
        panic!("{}", render_findings(&findings, &probes));
    }
}

// ---------------------------------------------------------------------------------------
// The corpus.

/// What shape of request-target a probe has, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    /// `/path?query`.
    Origin,
    /// `scheme://authority/path`, `http`/`https` and others, with or without a path.
    Absolute,
    /// `host:port`.
    Authority,
    /// `*`, `*/app/x`.
    Asterisk,
    /// `app/x`, `%2Fapp/x`, `./app/x`, `\app\x`.
    Relative,
    /// `x:/app/x`, `http:/app/x`.
    SchemeColon,
    /// Nothing between the spaces.
    Empty,
    /// Whitespace before the `/` (`GET  /app/x`).
    Spaced,
    /// Thousands of bytes.
    Long,
    /// Arbitrary bytes.
    Bytes,
}

/// How the session travels.
#[derive(Debug, Clone)]
enum Session {
    None,
    /// A well-formed token no session has.
    Unknown,
    /// The valid token, in this header spelling (`{T}` stands for the token).
    Valid(&'static [u8]),
}

/// How `Content-Length` relates to the body.
#[derive(Debug, Clone)]
enum Declared {
    Exact,
    /// `n, n`.
    List,
    /// `n, n+1`.
    Differing,
    /// Two `Content-Length: n` headers.
    Twice,
    /// Not a number in the usual spelling.
    Odd(&'static str),
    /// More than is sent.
    Over,
    /// Less than is sent (the rest reads as a next request).
    Under,
}

#[derive(Debug, Clone)]
enum Framing {
    None,
    Length(Declared, &'static [u8]),
    Chunked {
        /// The `Transfer-Encoding` value(s) (`\n` separates header lines).
        te: &'static [u8],
        /// The chunk-size line, when not the body's length in hex.
        size: Option<&'static [u8]>,
        with_length: bool,
        body: &'static [u8],
        /// Bytes after the last chunk.
        after: &'static [u8],
    },
}

/// One generated request, before rendering.
#[derive(Debug, Clone)]
struct Shape {
    method: &'static [u8],
    form: Form,
    target: Vec<u8>,
    /// What the usual `Host` names: an absolute-form target's authority, else `x`.
    authority: &'static [u8],
    version: &'static [u8],
    /// Between method and target, and between target and version.
    spaces: (&'static [u8], &'static [u8]),
    /// After the request line, and after each header line.
    line_ends: (&'static [u8], &'static [u8]),
    host: &'static [u8],
    session: Session,
    extras: Vec<&'static [u8]>,
    close: bool,
    framing: Framing,
}

/// One request as sent.
struct Probe {
    id: usize,
    form: Form,
    with_session: bool,
    /// The request-target as generated (what lies between the method's and the version's
    /// separators).
    target: Vec<u8>,
    bytes: Vec<u8>,
}

/// First path segments the gateway should accept: the protected names in other cases and
/// escapes, their neighbours, and names a lenient server might read as them.
const FIRST_SEGMENTS: &[&[u8]] = &[
    b"app",
    b"app",
    b"app",
    b"APP",
    b"App",
    b"aPp",
    b"admin",
    b"admin",
    b"ADMIN",
    b"Admin",
    b"%61pp",
    b"%41PP",
    b"%61%70%70",
    b"%2561pp",
    b"%61dmin",
    b"public",
    b"x",
    b"verify",
    b"health",
    b"apps",
    b"app2",
    b"administrator",
    b"",
    b"~app",
    b"%7eapp",
    b"app.",
    b"app..",
    b"app%2e",
    b"app%20",
    b"%c3%a9",
    b"...",
];

/// First path segments the gateway should refuse: parameters, dot segments, encoded
/// separators, control and raw non-ASCII bytes.
const HOSTILE_FIRST_SEGMENTS: &[&[u8]] = &[
    b"app;x",
    b"admin;jsessionid=1",
    b".",
    b"..",
    b"%2e",
    b"%2e%2e",
    b".%2e",
    b"%2F",
    b"%2fapp",
    b"app%2F",
    b"%5Capp",
    b"app%5c",
    b"app%00",
    b"app\\",
    b"app%09",
    b"\xc3\xa9",
    b"\xff",
    b"app\xff",
];

const SEGMENTS: &[&[u8]] = &[
    b"x",
    b"secret",
    b"secret.txt",
    b"index.html",
    b"app",
    b"admin",
    b"ADMIN",
    b"y",
    b"",
    b"...",
    b"-_.",
    b"~",
    b"%7E",
    b"%41",
    b"%61pp",
    b"%20",
    b"+",
    b"%25",
    b"%252F",
    b"%252e%252e",
    b"%3B",
    b"%3F",
    b"%23",
    b"%c3%a9",
    b"%C0%AF",
    b"%ff",
];

const HOSTILE_SEGMENTS: &[&[u8]] = &[
    b".",
    b"..",
    b"..;",
    b";",
    b";x=1",
    b"x;y",
    b"%2e",
    b"%2E%2E",
    b".%2e",
    b"%2e.",
    b"%2F",
    b"%2f",
    b"a%2Fb",
    b"%5C",
    b"%5c",
    b"\\",
    b"%00",
    b"%01",
    b"%0d%0a",
    b"%zz",
    b"%",
    b"%4",
    b"%u002f",
    b"%09",
    b"\xc3\xa9",
    b"\xe2\x80\x8b",
    b"\xff\xfe",
    b"\t",
];

const SEPARATORS: &[&[u8]] = &[b"/", b"/", b"/", b"/", b"//", b"\\", b"/./", b"/../"];

const QUERIES: &[&[u8]] = &[
    b"?q=1",
    b"?next=/app/x",
    b"?%2F",
    b"?a=1&a=2",
    b"?",
    b"??",
    b"?x=%00",
    b"?../app/x",
    b"#frag",
    b"?q=1#frag",
    b"?/app/x",
    b"?q=\xff",
    b"?q=%20 x",
];

const SCHEMES: &[&[u8]] = &[
    b"http", b"http", b"https", b"HTTP", b"hTTps", b"ftp", b"ws", b"file", b"x", b"httpx",
];

const AUTHORITIES: &[&[u8]] = &[
    b"x",
    b"x",
    b"X",
    b"x:80",
    b"x.",
    b"127.0.0.1",
    b"127.0.0.1:1",
    b"[::1]",
    b"user@x",
    b"",
    b"x:y",
    b"app.example.com",
    b"x%2F",
];

const AUTHORITY_FORMS: &[&[u8]] = &[
    b"127.0.0.1:9000",
    b"x:443",
    b"x:80",
    b"x",
    b"[::1]:80",
    b"app:80",
];

/// What comes before a path that lost its leading `/`.
const RELATIVE_LEADS: &[&[u8]] = &[b"", b"", b"%2F", b"%2f", b"./", b"../", b"\\", b"%5C"];

const SCHEME_COLONS: &[&[u8]] = &[
    b"x:",
    b"app:",
    b"http:",
    b"https:",
    b"javascript:",
    b"c:",
    b"HTTP:/",
];

const LEADING_SPACES: &[&[u8]] = &[b" ", b"\t", b"  "];
const ODD_SPACES: &[&[u8]] = &[b"\t", b"  "];
const LONG_LEADS: &[&[u8]] = &[b"/app/", b"/x/", b"/admin/"];

const METHODS: &[&[u8]] = &[
    b"get",
    b"Get",
    b"HEAD",
    b"OPTIONS",
    b"TRACE",
    b"CONNECT",
    b"PUT",
    b"DELETE",
    b"PATCH",
    b"PRI",
    b"M-SEARCH",
    b"G@T",
    b"GET/",
    b"",
    b"POST\0",
    b"GET\xff",
    b"X",
];

const VERSIONS: &[&[u8]] = &[
    b"",
    b"HTTP/0.9",
    b"HTTP/2.0",
    b"HTTP/1.2",
    b"http/1.1",
    b"HTTP/1.1 ",
    b"HTTP/1",
    b"HTTP/11",
    b"HTTPS/1.1",
    b"HTTP/1.1\0",
    b"HTTP/1.10",
];

const HOSTS: &[&[u8]] = &[
    b"",
    b"host: X",
    b"HOST:x",
    b"Host: x.",
    b"Host: X:80",
    b"Host: 127.0.0.1",
    b"Host: x\nHost: x",
    b"Host: x\nHost: y",
    b"Host: ",
    b"Host: a b",
    b"Host : x",
    b"Host:\tx\t",
    b"Host: x\n y",
    b" Host: x",
    b"Host: x, y",
    b"Host: [::1]",
    b"Host: x:y",
    b"Host: app.example.com:8000",
    b"Host: x\xff",
];

const SESSION_SPELLINGS: &[&[u8]] = &[
    b"Cookie: sid={T}",
    b"cookie: sid={T}",
    b"Cookie: theme=dark; sid={T}",
    b"Cookie: sid={T}\nCookie: theme=dark",
    b"COOKIE:sid={T}",
];

/// Identity and forwarding headers in odd but valid spellings, and other headers that change
/// how a request is read (`\n` separates header lines).
const EXTRAS: &[&[u8]] = &[
    b"X-User-Id: admin",
    b"x-user-id: admin",
    b"X_User_Id: admin",
    b"x_USER_email: root@evil",
    b"X-User-Email: root@evil",
    b"X-User-Role: admin",
    b"X-Session-Id: s",
    b"X-Authflow-User: admin",
    b"X-User-Id:admin",
    b"X-Forwarded-For: 6.6.6.6",
    b"X-Real-IP: 6.6.6.6",
    b"Forwarded: for=6.6.6.6",
    b"X-Request-Id: probe-chosen-id",
    b"X-Request-Id: ",
    b"X-Original-URL: /app/secret",
    b"X-Rewrite-URL: /admin",
    b"X-HTTP-Method-Override: DELETE",
    b"Upgrade: websocket\nConnection: Upgrade",
    b"Expect: 100-continue",
    b"Connection: keep-alive",
    b"Connection: X-User-Id",
    b"Accept: */*",
    b"X-Empty:",
    b"X-Non-Ascii: \xc3\xa9\xff",
    b"User-Agent: curl/8",
];

/// Header lines a strict parser refuses: obs-fold, whitespace before the colon, control
/// bytes, pseudo-headers.
const MALFORMED_HEADERS: &[&[u8]] = &[
    b"X-User-Id : admin",
    b"X-User-Id\t: admin",
    b"X-User-Id: admin\n extra",
    b"X-Ok: 1\n X-User-Id: admin",
    b"X-Nul: a\0b",
    b"X-CR: a\rb",
    b":authority: x",
    b"X-Tab\t: 1",
];

const BODIES: &[&[u8]] = &[
    b"hello",
    b"hello",
    b"",
    b"GET /app/secret HTTP/1.1\r\nHost: x\r\n\r\n",
    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
    b"a=1&next=%2Fapp%2Fx",
];

const TRANSFER_ENCODINGS: &[&[u8]] = &[
    b"chunked",
    b"chunked",
    b"Chunked",
    b"CHUNKED",
    b" chunked",
    b"chunked ",
    b"gzip, chunked",
    b"chunked, gzip",
    b"identity",
    b"xchunked",
    b"chunked\nTransfer-Encoding: chunked",
    b"chunked\nTransfer_Encoding: identity",
];

const CHUNK_SIZES: &[&[u8]] = &[
    b"zz",
    b"5;x=1",
    b"0x5",
    b"ffffffffffffffffffff",
    b" 5",
    b"5 ",
    b"-5",
];

const AFTER_CHUNKS: &[&[u8]] = &[
    b"",
    b"",
    b"GET /app/secret HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET app/secret HTTP/1.1\r\nHost: x\r\n\r\n",
];

const ODD_LENGTHS: &[&str] = &[
    "+5",
    "5 ",
    "0x5",
    "-1",
    "5a",
    " 5",
    "05",
    "18446744073709551616",
];

fn pick(values: &'static [&'static [u8]]) -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(values)
}

/// An origin-form path: `/`, segments joined by one separator, an optional trailing slash
/// and query.
fn path() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![3 => pick(FIRST_SEGMENTS), 1 => pick(HOSTILE_FIRST_SEGMENTS)],
        prop::collection::vec(
            prop_oneof![4 => pick(SEGMENTS), 1 => pick(HOSTILE_SEGMENTS)],
            0..4,
        ),
        pick(SEPARATORS),
        any::<bool>(),
        prop_oneof![4 => Just(&b""[..]), 1 => pick(QUERIES)],
    )
        .prop_map(|(first, rest, sep, trailing, query)| {
            let mut p = b"/".to_vec();
            p.extend_from_slice(first);
            for s in rest {
                p.extend_from_slice(sep);
                p.extend_from_slice(s);
            }
            if trailing {
                p.push(b'/');
            }
            p.extend_from_slice(query);
            p
        })
}

/// A request-target, its form, and the host it names (`x` unless absolute-form).
fn target() -> impl Strategy<Value = (Form, Vec<u8>, &'static [u8])> {
    let absolute = (
        pick(SCHEMES),
        pick(AUTHORITIES),
        prop_oneof![6 => path(), 1 => Just(Vec::new()), 1 => Just(b"?q=1".to_vec())],
    )
        .prop_map(|(scheme, authority, path)| {
            let t = [scheme, &b"://"[..], authority, &path].concat();
            (Form::Absolute, t, authority)
        });
    let authority = pick(AUTHORITY_FORMS).prop_map(|a| (Form::Authority, a.to_vec()));
    let asterisk = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"*/app/x".to_vec()),
        path().prop_map(|p| [&b"*"[..], &p].concat()),
    ]
    .prop_map(|t| (Form::Asterisk, t));
    let relative = (pick(RELATIVE_LEADS), path())
        .prop_map(|(lead, p)| (Form::Relative, [lead, &p[1..]].concat()));
    let scheme_colon = (pick(SCHEME_COLONS), path())
        .prop_map(|(scheme, p)| (Form::SchemeColon, [scheme, &p].concat()));
    let spaced =
        (pick(LEADING_SPACES), path()).prop_map(|(ws, p)| (Form::Spaced, [ws, &p].concat()));
    let long =
        (pick(LONG_LEADS), 500..40_000usize, any::<bool>()).prop_map(|(lead, n, segments)| {
            let filler: Vec<u8> = if segments {
                b"a/".repeat(n / 2)
            } else {
                b"a".repeat(n)
            };
            (Form::Long, [lead, &filler].concat())
        });
    let bytes =
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(slash, b)| {
            let lead: &[u8] = if slash { b"/" } else { b"" };
            (Form::Bytes, [lead, &b].concat())
        });
    let named_x = |(form, t): (Form, Vec<u8>)| (form, t, &b"x"[..]);
    prop_oneof![
        14 => path().prop_map(|p| (Form::Origin, p)).prop_map(named_x),
        4 => absolute,
        1 => authority.prop_map(named_x),
        1 => asterisk.prop_map(named_x),
        2 => relative.prop_map(named_x),
        1 => scheme_colon.prop_map(named_x),
        1 => Just((Form::Empty, Vec::new(), &b"x"[..])),
        1 => spaced.prop_map(named_x),
        1 => long.prop_map(named_x),
        1 => bytes.prop_map(named_x),
    ]
}

fn framing() -> impl Strategy<Value = Framing> {
    let declared = prop_oneof![
        4 => Just(Declared::Exact),
        1 => Just(Declared::List),
        1 => Just(Declared::Differing),
        1 => Just(Declared::Twice),
        1 => prop::sample::select(ODD_LENGTHS).prop_map(Declared::Odd),
        1 => Just(Declared::Over),
        1 => Just(Declared::Under),
    ];
    let length = (declared, pick(BODIES)).prop_map(|(d, b)| Framing::Length(d, b));
    let chunked = (
        pick(TRANSFER_ENCODINGS),
        prop_oneof![5 => Just(None), 1 => pick(CHUNK_SIZES).prop_map(Some)],
        prop::bool::weighted(0.2),
        pick(BODIES),
        pick(AFTER_CHUNKS),
    )
        .prop_map(|(te, size, with_length, body, after)| Framing::Chunked {
            te,
            size,
            with_length,
            body,
            after,
        });
    prop_oneof![6 => Just(Framing::None), 3 => length, 2 => chunked]
}

/// `odd` with probability `p`, else `usual`: most probes are ordinary but for their target and
/// one or two other oddities, so that Pingora's parser lets most of them reach the gateway's
/// judgement and a finding names the oddity that caused it.
fn usually<T: Clone + std::fmt::Debug>(
    usual: impl Strategy<Value = T>,
    p: f64,
    odd: impl Strategy<Value = T>,
) -> impl Strategy<Value = T> {
    (usual, prop::bool::weighted(p), odd).prop_map(|(u, is_odd, o)| if is_odd { o } else { u })
}

fn shape() -> impl Strategy<Value = Shape> {
    let method = usually(
        prop_oneof![3 => Just(&b"GET"[..]), 1 => Just(&b"POST"[..])],
        0.15,
        pick(METHODS),
    );
    let version = usually(
        prop_oneof![5 => Just(&b"HTTP/1.1"[..]), 1 => Just(&b"HTTP/1.0"[..])],
        0.06,
        pick(VERSIONS),
    );
    let spaces = usually(
        Just((&b" "[..], &b" "[..])),
        0.04,
        prop_oneof![
            pick(ODD_SPACES).prop_map(|s| (s, &b" "[..])),
            pick(ODD_SPACES).prop_map(|s| (&b" "[..], s)),
        ],
    );
    let line_ends = usually(
        Just((&b"\r\n"[..], &b"\r\n"[..])),
        0.08,
        prop_oneof![
            Just((&b"\n"[..], &b"\n"[..])),
            Just((&b"\r\n"[..], &b"\n"[..])),
            Just((&b"\n"[..], &b"\r\n"[..])),
        ],
    );
    let host = usually(Just(&b"Host: {A}"[..]), 0.12, pick(HOSTS));
    let session = prop_oneof![
        5 => Just(Session::None),
        1 => Just(Session::Unknown),
        4 => pick(SESSION_SPELLINGS).prop_map(Session::Valid),
    ];
    let extras = (
        prop::collection::vec(pick(EXTRAS), 0..3),
        usually(Just(None), 0.08, pick(MALFORMED_HEADERS).prop_map(Some)),
    )
        .prop_map(|(mut extras, malformed)| {
            extras.extend(malformed);
            extras
        });
    (
        (method, target(), version, spaces, line_ends),
        (host, session, extras, any::<bool>(), framing()),
    )
        .prop_map(
            |(
                (method, (form, target, authority), version, spaces, line_ends),
                (host, session, extras, close, framing),
            )| Shape {
                method,
                form,
                target,
                authority,
                version,
                spaces,
                line_ends,
                host,
                session,
                extras,
                close,
                framing,
            },
        )
}

/// The requests, the same for the same `seed`.
fn corpus(seed: &str, token: &[u8]) -> Vec<Probe> {
    let mut key = [0u8; 32];
    for (i, b) in seed.bytes().enumerate() {
        key[i % 32] = key[i % 32].rotate_left(3) ^ b;
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = shape();
    (0..REQUESTS)
        .map(|id| {
            let s = strategy.new_tree(&mut runner).expect("generate").current();
            render(id, &s, token)
        })
        .collect()
}

fn render(id: usize, s: &Shape, token: &[u8]) -> Probe {
    let (line_end, header_end) = s.line_ends;
    let mut out = Vec::new();
    out.extend_from_slice(s.method);
    out.extend_from_slice(s.spaces.0);
    out.extend_from_slice(&s.target);
    if !s.version.is_empty() {
        out.extend_from_slice(s.spaces.1);
        out.extend_from_slice(s.version);
    }
    out.extend_from_slice(line_end);
    let mut header = |h: &[u8]| {
        for (i, line) in h.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(header_end);
            }
            let line = replace(line, TOKEN, token);
            out.extend_from_slice(&replace(&line, AUTHORITY, s.authority));
        }
        out.extend_from_slice(header_end);
    };
    header(format!("X-Probe: {id}").as_bytes());
    if !s.host.is_empty() {
        header(s.host);
    }
    match s.session {
        Session::None => {}
        Session::Unknown => header(b"Cookie: sid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Session::Valid(spelling) => {
            header(spelling);
            header(format!("User-Agent: {UA}").as_bytes());
        }
    }
    for e in &s.extras {
        header(e);
    }
    if s.close {
        header(b"Connection: close");
    }
    let body = match &s.framing {
        Framing::None => Vec::new(),
        Framing::Length(declared, body) => {
            let n = body.len();
            let value = match declared {
                Declared::Exact => n.to_string(),
                Declared::List => format!("{n}, {n}"),
                Declared::Differing => format!("{n}, {}", n + 1),
                Declared::Twice => format!("{n}\nContent-Length: {n}"),
                Declared::Odd(v) => (*v).to_owned(),
                Declared::Over => (n + 5).to_string(),
                Declared::Under => (n / 2).to_string(),
            };
            header(format!("Content-Length: {value}").as_bytes());
            body.to_vec()
        }
        Framing::Chunked {
            te,
            size,
            with_length,
            body,
            after,
        } => {
            header(&[&b"Transfer-Encoding: "[..], *te].concat());
            let mut chunks = Vec::new();
            if !body.is_empty() {
                let size =
                    size.map_or_else(|| format!("{:x}", body.len()).into_bytes(), |s| s.to_vec());
                chunks.extend_from_slice(&size);
                chunks.extend_from_slice(b"\r\n");
                chunks.extend_from_slice(body);
                chunks.extend_from_slice(b"\r\n");
            }
            chunks.extend_from_slice(b"0\r\n\r\n");
            if *with_length {
                header(format!("Content-Length: {}", chunks.len()).as_bytes());
            }
            chunks.extend_from_slice(after);
            chunks
        }
    };
    out.extend_from_slice(header_end);
    out.extend_from_slice(&body);
    Probe {
        id,
        form: s.form,
        with_session: matches!(s.session, Session::Valid(_)),
        target: s.target.clone(),
        bytes: out,
    }
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Sending.

/// What the client saw.
#[derive(Debug, Clone, Default)]
struct Outcome {
    /// The first final status, if an answer came.
    status: Option<u16>,
    /// The gateway's `x-request-id` on that answer.
    request_id: Option<String>,
}

/// Sends every probe on its own connection, `CONCURRENCY` at a time.
async fn send_all(port: u16, probes: &[Probe]) -> Vec<Outcome> {
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(probes.iter().map(|p| p.bytes.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(bytes) = requests.get(i) else {
                        return done;
                    };
                    done.push((i, exchange(port, bytes).await));
                }
            })
        })
        .collect();
    let mut outcomes = vec![Outcome::default(); probes.len()];
    for w in workers {
        for (i, o) in w.await.expect("sender") {
            outcomes[i] = o;
        }
    }
    outcomes
}

/// One request on a fresh connection: everything the gateway answers until it closes or
/// falls quiet (a keep-alive answer, or answers to pipelined requests, then nothing).
async fn exchange(port: u16, bytes: &[u8]) -> Outcome {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Outcome::default();
    };
    // The gateway may answer (431, 400) and close before it has read everything.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut wait = Duration::from_secs(3);
    while Instant::now() < deadline {
        match tokio::time::timeout(wait, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            _ => break,
        }
        wait = Duration::from_millis(150);
    }
    parse_answer(&out)
}

/// The first final (non-1xx) response's status and `x-request-id`.
fn parse_answer(raw: &[u8]) -> Outcome {
    let mut rest = raw;
    while rest.starts_with(b"HTTP/1.") {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(rest.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&rest[..end]);
        let status = head.get(9..12).and_then(|c| c.parse::<u16>().ok());
        if status.is_some_and(|s| s < 200) {
            rest = &rest[end..];
            continue;
        }
        let request_id = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        });
        return Outcome { status, request_id };
    }
    Outcome::default()
}

// ---------------------------------------------------------------------------------------
// The access log.

/// One access log line, with the fields the checks read (`None`: the field is missing).
#[derive(Debug, Clone)]
struct Access {
    request_id: String,
    request_target: Option<String>,
    path: Option<String>,
    upstream_target: Option<String>,
    status: u64,
    decision: String,
    user: String,
}

impl Access {
    fn from_json(v: &Value) -> Option<Access> {
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        Some(Access {
            request_id: text("request_id")?,
            request_target: text("request_target"),
            path: text("path"),
            upstream_target: text("upstream_target"),
            status: v["status"].as_u64().unwrap_or(0),
            decision: text("decision").unwrap_or_default(),
            user: text("user").unwrap_or_else(|| "-".into()),
        })
    }

    /// A refusal by the gateway itself: decided before anything was sent upstream.
    fn refused(&self) -> bool {
        !matches!(
            self.decision.as_str(),
            "forwarded" | "upstream_error" | "too_large"
        )
    }
}

/// The access log, once every answered request's line is in it (or 10 s passed).
async fn access_log(gw: &Gateway, outcomes: &[Outcome]) -> Vec<Access> {
    let path = gw.log.clone().expect("gateway log");
    let read = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .filter_map(|v| Access::from_json(&v))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = read();
        let logged: std::collections::HashSet<&str> =
            lines.iter().map(|a| a.request_id.as_str()).collect();
        let all = outcomes
            .iter()
            .filter_map(|o| o.request_id.as_deref())
            .all(|id| logged.contains(id));
        if all || Instant::now() > deadline {
            // Lines of pipelined requests nobody read an answer for land a little later.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return read();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The checks.

/// Violations by the invariant they break.
type Findings = BTreeMap<&'static str, Vec<(Option<usize>, String)>>;

fn check(probes: &[Probe], log: &[Access], received: &[Received]) -> Findings {
    let mut f: Findings = BTreeMap::new();
    let mut add = |what: &'static str, probe: Option<usize>, detail: String| {
        f.entry(what).or_default().push((probe, detail));
    };
    let mut by_id: HashMap<&str, Vec<&Access>> = HashMap::new();
    for a in log {
        by_id.entry(a.request_id.as_str()).or_default().push(a);
    }
    for (id, lines) in &by_id {
        if lines.len() > 1 {
            add(
                "0. request ids are unique (else nothing joins)",
                None,
                format!("{} access lines share request_id {id:?}", lines.len()),
            );
        }
    }
    let missing = log
        .iter()
        .filter(|a| a.request_target.is_none() || a.path.is_none() || a.upstream_target.is_none())
        .count();
    if missing > 0 {
        add(
            "0. the access log says what was judged and sent",
            None,
            format!(
                "{missing} of {} access lines lack request_target, path or upstream_target",
                log.len()
            ),
        );
    }

    let mut arrived: HashMap<&str, usize> = HashMap::new();
    for r in received {
        let probe = r
            .header("x-probe")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&i| i < probes.len());
        let line = cut(&r.request_line());
        let ids = r.header_values("x-request-id");
        let access = match ids.as_slice() {
            [id] => {
                let id = String::from_utf8_lossy(id).into_owned();
                // An id on several lines joins nothing (reported above).
                let lines = by_id.get(id.as_str()).map_or(&[][..], Vec::as_slice);
                let found = match lines {
                    [one] => Some(*one),
                    _ => None,
                };
                *arrived
                    .entry(found.map_or("", |a| a.request_id.as_str()))
                    .or_default() += 1;
                if lines.is_empty() {
                    add(
                        "1. what arrived was judged and logged",
                        probe,
                        format!(
                            "{line:?} arrived with x-request-id {id:?}, which no access line has"
                        ),
                    );
                }
                found
            }
            _ => {
                add(
                    "1. what arrived was judged and logged",
                    probe,
                    format!("{line:?} arrived with {} x-request-id headers", ids.len()),
                );
                None
            }
        };
        if !r.target.starts_with(b"/") {
            add(
                "1. what arrived is origin-form",
                probe,
                format!("{line:?} arrived"),
            );
        }
        if let Some(a) = access {
            match &a.upstream_target {
                Some(t) if t.as_bytes() == before_query(&r.target) => {}
                Some(t) => add(
                    "1. what arrived is the logged upstream_target",
                    probe,
                    format!(
                        "{line:?} arrived; the log says upstream_target {:?}",
                        cut(t)
                    ),
                ),
                None => {}
            }
            if let Some(p) = &a.path {
                if before_query(&r.target) != p.as_bytes() {
                    add(
                        "1. what arrived is the judged path (and query)",
                        probe,
                        format!(
                            "{line:?} arrived; the gateway judged path {:?} ({})",
                            cut(p),
                            a.decision
                        ),
                    );
                }
            }
            // What the gateway judged (and logged) is the target the client sent, less a
            // fragment: nothing between the client and the judgement rewrote it.
            let sent = probe.map(|p| {
                probes[p]
                    .target
                    .split(|&b| b == b'#')
                    .next()
                    .unwrap_or_default()
            });
            // The one rewrite allowed: Pingora's own escaping of a request line httparse
            // refused (it cannot be turned off, and leaves no trace); the gateway refuses
            // what that escaping can make dangerous (`segment_edge_space`).
            let escaped = probe.and_then(|p| pingora_escaped(&probes[p].bytes));
            // The query goes upstream as the client sent it.
            if let Some(sent) = sent {
                let arrived = query_of(&r.target);
                let as_sent = arrived == query_of(sent)
                    || escaped.as_deref().is_some_and(|e| arrived == query_of(e));
                if !as_sent {
                    add(
                        "1. the query arrives as the client sent it",
                        probe,
                        format!(
                            "{line:?} arrived; the client sent {:?}",
                            cut(&sent.escape_ascii().to_string())
                        ),
                    );
                }
            }
            // The log shows targets without their query (it may carry tokens).
            if let (Some(sent), Some(logged)) = (sent, a.request_target.as_deref()) {
                let escaped = escaped.map(|t| before_query(&t).escape_ascii().to_string());
                let sent = before_query(sent).escape_ascii().to_string();
                if sent != logged && escaped.as_deref() != Some(logged) {
                    add(
                        "1. what was judged is what the client sent",
                        probe,
                        format!(
                            "{line:?} arrived; the client sent the target {:?}, the gateway \
                             judged {:?} (an autocorrected request line, RFC 9112 §3)",
                            cut(&sent),
                            cut(logged),
                        ),
                    );
                }
            }
            if a.refused() {
                add(
                    "2. nothing arrives for a refused request",
                    probe,
                    format!("{line:?} arrived; the log says {} {}", a.status, a.decision),
                );
            }
            if a.upstream_target.as_deref() == Some("-") {
                add(
                    "2. nothing arrives for a request logged as forwarding nothing",
                    probe,
                    format!("{line:?} arrived; upstream_target \"-\""),
                );
            }
        }
        // Unknown when the request joins no single log line (reported above).
        let signed_in = access.map(|a| a.user == USER);
        if reads_as_protected(&r.target) {
            let carried = probe.is_some_and(|p| probes[p].with_session);
            let identity = r.header_values("x-user-id") == [USER.as_bytes()];
            if signed_in != Some(true) || !identity || (probe.is_some() && !carried) {
                add(
                    "3. nothing protected arrives without the session",
                    probe,
                    format!(
                        "{line:?} arrived (reads as protected); logged request_target {:?}, \
                         path {:?}, user {:?}; x-user-id {:?}",
                        access.and_then(|a| a.request_target.as_deref()).map(cut),
                        access.and_then(|a| a.path.as_deref()).map(cut),
                        access.map_or("?", |a| a.user.as_str()),
                        r.header("x-user-id"),
                    ),
                );
            }
        }
        for problem in identity_problems(r, signed_in) {
            add(
                "4. no identity header but the gateway's own",
                probe,
                format!("{line:?}: {problem}"),
            );
        }
        if let Some(why) = &r.malformed {
            add(
                "5. what arrives is framed unambiguously",
                probe,
                format!("{line:?}: {why}"),
            );
        }
    }
    for a in log {
        let n = arrived.get(a.request_id.as_str()).copied().unwrap_or(0);
        if n > 1 {
            add(
                "1. one request in, at most one out",
                None,
                format!("{n} requests arrived for {:?}", a.request_id),
            );
        }
    }
    f
}

/// Header names as an upstream framework reads them: case-folded, `_` as `-`, no
/// surrounding whitespace (obs-fold continuation lines included).
fn folded(name: &[u8]) -> String {
    let name = name.trim_ascii();
    let name = name.split(|&b| b == b':').next().unwrap_or_default();
    String::from_utf8_lossy(name)
        .trim()
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// What is wrong with the identity and client-address headers of `r`: exactly the session's
/// `X-User-Id` and `X-User-Email` when signed in, none when not (either, when unknown),
/// nothing else in the identity namespaces, and the client address the gateway saw.
fn identity_problems(r: &Received, signed_in: Option<bool>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &r.headers {
        let n = folded(name);
        if ["x-user-", "x-session-", "x-authflow-"]
            .iter()
            .any(|p| n.starts_with(p))
            || ["x-forwarded-for", "x-real-ip", "forwarded"].contains(&n.as_str())
        {
            seen.entry(n)
                .or_default()
                .push(String::from_utf8_lossy(value).into_owned());
        }
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    expected.insert("x-forwarded-for".into(), vec!["127.0.0.1".into()]);
    expected.insert("x-real-ip".into(), vec!["127.0.0.1".into()]);
    let carries_identity = seen.contains_key("x-user-id") || seen.contains_key("x-user-email");
    if signed_in.unwrap_or(carries_identity) {
        expected.insert("x-user-id".into(), vec![USER.into()]);
        expected.insert("x-user-email".into(), vec![EMAIL.into()]);
    }
    for (name, values) in &seen {
        if expected.get(name) != Some(values) {
            problems.push(format!("{name}: {values:?}"));
        }
    }
    for (name, values) in &expected {
        if !seen.contains_key(name) {
            problems.push(format!("{name} missing (wanted {values:?})"));
        }
    }
    problems
}

/// Whether any reasonable reading of `target` names a path under `/app/` or `/admin`: the
/// target as it is, after a scheme and authority, after a leading `scheme:`, `*` or
/// whitespace; each percent-decoded once, `\` as `/`, dot segments and `;` parameters
/// resolved, runs of `/` merged, any case. Not double decoding, and not the trimming of
/// trailing dots and spaces from names that Windows file systems do.
fn reads_as_protected(target: &[u8]) -> bool {
    let text = String::from_utf8_lossy(target);
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let mut readings = vec![text.to_owned()];
    if let Some((_, rest)) = text.split_once("://") {
        readings.push(
            rest.find('/')
                .map_or(String::new(), |i| rest[i..].to_owned()),
        );
    }
    if let Some((scheme, rest)) = text.split_once(':') {
        if !scheme.contains('/') {
            readings.push(rest.to_owned());
        }
    }
    readings.push(text.trim_start_matches(['*', ' ', '\t']).to_owned());
    readings
        .iter()
        .map(|r| normalize(r))
        .any(|p| p.starts_with("/app/") || p == "/admin" || p.starts_with("/admin/"))
}

fn normalize(path: &str) -> String {
    let decoded = percent_decode(path.as_bytes());
    // Whitespace before the path (a target sent as `%20/app/x`) is dropped; after it and
    // inside a segment it is kept (`/app%20/x` is another segment than `app`, except to
    // servers that trim names, as Windows and Spring's `trimTokens` do).
    let text = String::from_utf8_lossy(&decoded)
        .trim_start()
        .replace('\\', "/")
        .to_ascii_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for raw in text.split('/') {
        let seg = raw.split(';').next().unwrap_or_default();
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    out
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// What a reader sees.

/// Counts for the summary.
struct Report {
    sent: usize,
    with_session: usize,
    by_status: BTreeMap<String, usize>,
    by_decision: BTreeMap<String, usize>,
    /// Per target form: sent, answered by the gateway with a request id, forwarded, arrived.
    by_form: BTreeMap<Form, [usize; 4]>,
    received: usize,
    protected_arrivals: usize,
    /// Requests whose body stopped short at the upstream (the gateway gave up on them).
    truncated: usize,
    log_lines: usize,
}

impl Report {
    fn new(probes: &[Probe], outcomes: &[Outcome], log: &[Access], received: &[Received]) -> Self {
        let by_id: HashMap<&str, &Access> =
            log.iter().map(|a| (a.request_id.as_str(), a)).collect();
        let mut by_status = BTreeMap::new();
        let mut by_decision = BTreeMap::new();
        let mut by_form: BTreeMap<Form, [usize; 4]> = BTreeMap::new();
        for (p, o) in probes.iter().zip(outcomes) {
            let status = o.status.map_or("no answer".into(), |s| s.to_string());
            *by_status.entry(status).or_default() += 1;
            let counts = by_form.entry(p.form).or_default();
            counts[0] += 1;
            let access = o.request_id.as_deref().and_then(|id| by_id.get(id));
            if let Some(a) = access {
                counts[1] += 1;
                if a.decision == "forwarded" {
                    counts[2] += 1;
                }
            }
        }
        for a in log {
            *by_decision.entry(a.decision.clone()).or_default() += 1;
        }
        for r in received {
            let probe = r
                .header("x-probe")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .and_then(|i| probes.get(i));
            if let Some(p) = probe {
                by_form.entry(p.form).or_default()[3] += 1;
            }
        }
        Report {
            sent: probes.len(),
            with_session: probes.iter().filter(|p| p.with_session).count(),
            by_status,
            by_decision,
            by_form,
            received: received.len(),
            protected_arrivals: received
                .iter()
                .filter(|r| reads_as_protected(&r.target))
                .count(),
            log_lines: log.len(),
            truncated: received.iter().filter(|r| r.truncated.is_some()).count(),
        }
    }

    fn print_summary(&self, seed: &str, took: Duration) {
        eprintln!(
            "differential: {} requests sent ({} with the valid session) in {:.1} s, seed {seed:?}",
            self.sent,
            self.with_session,
            took.as_secs_f64()
        );
        eprintln!("  answered, by status: {:?}", self.by_status);
        eprintln!(
            "  access log: {} lines, by decision: {:?}",
            self.log_lines, self.by_decision
        );
        eprintln!(
            "  upstream received {} requests, {} of them under a protected prefix, {} cut short",
            self.received, self.protected_arrivals, self.truncated
        );
        eprintln!("  by target form: sent / judged by the gateway / forwarded / arrived");
        for (form, [sent, judged, forwarded, arrived]) in &self.by_form {
            eprintln!("    {form:<12?} {sent:>5} {judged:>5} {forwarded:>5} {arrived:>5}");
        }
    }
}

/// `text`, cut to a length a reader can take in.
fn cut(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}... ({} bytes)", &text[..i], text.len()),
        None => text.to_owned(),
    }
}

fn render_findings(findings: &Findings, probes: &[Probe]) -> String {
    let mut out = String::from("the gateway forwarded something other than what it judged:\n");
    for (what, list) in findings {
        out.push_str(&format!("\n{what}: {} violation(s)\n", list.len()));
        for (probe, detail) in list.iter().take(6) {
            out.push_str(&format!("  - {detail}\n"));
            if let Some(p) = probe.and_then(|i| probes.get(i)) {
                let sent = cut(&p.bytes.escape_ascii().to_string());
                out.push_str(&format!("    probe {} ({:?}) sent: {sent}\n", p.id, p.form));
            }
        }
    }
    out
}
