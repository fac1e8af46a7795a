//! Roles per route at the edge: an operator grants, revokes, disables with `authflow users`,
//! and every live session follows on its very next request through any gateway, because the
//! command re-writes the session records that every gateway's cache tracks. A signed-in
//! person without the role gets 403 (a page for browsers, JSON for API clients); upstreams
//! get `X-User-Roles`, never a client's copy.

mod support;

use authflow_gateway::config::AuthMode;
use serde_json::{json, Value};
use support::*;

const PW: &str = "correct horse battery";

/// Redis, an echo app, the auth service and two gateways on the same Redis, with the README's
/// example: `/admin/` for `admin`, `/ops/` for `ops`, `/app/` for everyone signed in.
struct Stack {
    _redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gws: Vec<Gateway>,
}

async fn stack() -> Stack {
    stack_on(None).await
}

/// The same with the users in the database at `database_url` (default: an SQLite file).
async fn stack_on(database_url: Option<String>) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&redis.url());
    auth_cfg.signup.require_email_verification = false;
    if let Some(url) = database_url {
        auth_cfg.database.url = url;
    }
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
        let mut admin = route("/admin/", "app", AuthMode::Required);
        admin.roles = vec!["admin".into()];
        let mut ops = route("/ops/", "app", AuthMode::Required);
        ops.roles = vec!["ops".into(), "admin".into()];
        ops.roles_all = vec!["ops".into()];
        cfg.routes.push(admin);
        cfg.routes.push(ops);
        with_auth_service(&mut cfg, auth.port);
        gws.push(Gateway::start(cfg).await);
    }
    Stack {
        _redis: redis,
        _app: app,
        auth,
        gws,
    }
}

impl Stack {
    async fn register(&self, email: &str) {
        self.auth.sign_up(email, PW).await;
    }

    async fn sign_in(&self, email: &str) -> String {
        let r = sign_in_through(&self.gws[0].url(""), email, PW).await;
        assert_eq!(r.status(), 200);
        session_cookie(&r).expect("cookie")
    }

    /// An API client's GET of `path` through gateway `gw`.
    async fn get(&self, gw: usize, path: &str, token: &str) -> reqwest::Response {
        get_with_session(self.gws[gw].url(path), token).await
    }

    async fn status(&self, gw: usize, path: &str, token: &str) -> u16 {
        self.get(gw, path, token).await.status().as_u16()
    }

    /// `authflow users <args> --config auth.toml`: (exit ok, stdout, stderr).
    fn users(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(authflow_bin())
            .arg("users")
            .args(args)
            .arg("--config")
            .arg(self.auth.config_path())
            .env("RUST_LOG", "error")
            .output()
            .expect("run authflow users");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.users(args);
        assert!(ok, "authflow users {args:?}: {err}");
        out
    }
}

/// The `X-User-Roles` values the echo upstream received (absent: empty).
async fn upstream_roles(resp: reqwest::Response) -> Vec<String> {
    let body: Value = json(resp).await;
    body["headers"]["x-user-roles"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_role_403_then_a_grant_opens_the_next_request() {
    let s = stack().await;
    s.register("dana@example.com").await;
    let token = s.sign_in("dana@example.com").await;
    assert_eq!(s.status(0, "/app/x", &token).await, 200);

    // API client: JSON.
    let r = s.get(0, "/admin/x", &token).await;
    assert_eq!(r.status(), 403);
    assert_eq!(json(r).await, json!({"error": "forbidden"}));
    // Browser: a page naming the account, a link to sign in as someone else; cookie kept.
    let r = client()
        .get(s.gws[0].url("/admin/x?y=1"))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let page = r.text().await.expect("page");
    assert!(
        page.contains("You are signed in as dana@example.com, which cannot open this page"),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/auth/signin?next=/admin/x%3Fy%3D1""#),
        "{page}"
    );
    // The link leads to the sign-in page, also for someone signed in (no redirect loop).
    let r = client()
        .get(s.auth.url("/auth/signin?next=/admin/x%3Fy%3D1"))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("sign-in page");
    assert_eq!(r.status(), 200);

    let out = s.ok(&["grant", "dana@example.com", "admin"]);
    assert!(out.contains("granted admin to dana@example.com"), "{out}");
    assert!(out.contains("1 live session(s) updated"), "{out}");
    for gw in 0..2 {
        let r = s.get(gw, "/admin/x", &token).await;
        assert_eq!(r.status(), 200, "gateway {gw}");
        assert_eq!(upstream_roles(r).await, vec!["admin"]);
    }
    // `/ops/` needs `ops` among its roles_all.
    assert_eq!(s.status(0, "/ops/x", &token).await, 403);
    let shown = s.ok(&["show", "dana@example.com", "--json"]);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["roles"], json!(["admin"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_is_refused_on_the_very_next_request_through_two_warm_gateways() {
    let s = stack().await;
    s.register("rui@example.com").await;
    s.ok(&["grant", "rui@example.com", "ops"]);
    s.ok(&["grant", "rui@example.com", "admin"]);
    // Roles granted before the sign-in are read at sign-in.
    let token = s.sign_in("rui@example.com").await;
    for _ in 0..3 {
        for gw in 0..2 {
            assert_eq!(s.status(gw, "/admin/x", &token).await, 200);
            assert_eq!(s.status(gw, "/ops/x", &token).await, 200);
        }
    }
    let r = s.get(1, "/app/x", &token).await;
    assert_eq!(upstream_roles(r).await, vec!["admin,ops"]);

    let out = s.ok(&["revoke", "rui@example.com", "admin"]);
    assert!(out.contains("revoked admin from rui@example.com"), "{out}");
    assert_eq!(s.status(0, "/admin/x", &token).await, 403);
    assert_eq!(s.status(1, "/admin/x", &token).await, 403);
    let r = s.get(1, "/ops/x", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream_roles(r).await, vec!["ops"]);

    let out = s.ok(&["revoke", "rui@example.com", "ops"]);
    assert!(out.contains("roles now: -"), "{out}");
    assert_eq!(s.status(0, "/ops/x", &token).await, 403);
    assert_eq!(s.status(1, "/ops/x", &token).await, 403);
    let r = s.get(0, "/app/x", &token).await;
    assert_eq!(r.status(), 200);
    assert!(upstream_roles(r).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_loses_its_sessions_at_once_and_cannot_sign_in() {
    let s = stack().await;
    s.register("dis@example.com").await;
    let token = s.sign_in("dis@example.com").await;
    for gw in 0..2 {
        assert_eq!(s.status(gw, "/app/x", &token).await, 200);
    }
    let out = s.ok(&["disable", "dis@example.com"]);
    assert!(out.contains("disabled dis@example.com"), "{out}");
    assert!(out.contains("1 session(s) ended"), "{out}");
    for gw in 0..2 {
        assert_eq!(s.status(gw, "/app/x", &token).await, 401, "gateway {gw}");
    }
    let r = sign_in_through(&s.gws[0].url(""), "dis@example.com", PW).await;
    assert_eq!(r.status(), 401);
    let list = s.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("dis@example.com") && l.contains("disabled")),
        "{list}"
    );
    let out = s.ok(&["enable", "dis@example.com"]);
    assert!(out.contains("enabled dis@example.com"), "{out}");
    let r = sign_in_through(&s.gws[0].url(""), "dis@example.com", PW).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_send_roles_and_bad_input_is_refused_where_it_enters() {
    let s = stack().await;
    s.register("eve@example.com").await;
    let token = s.sign_in("eve@example.com").await;
    let r = client()
        .get(s.gws[0].url("/app/x"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .header("X-User-Roles", "admin")
        .header("X_User_Roles", "admin")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: Value = json(r).await;
    let names: Vec<&String> = body["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.replace('_', "-").eq_ignore_ascii_case("x-user-roles")),
        "{names:?}"
    );
    // A client's own header never opens a role route either.
    let r = client()
        .get(s.gws[0].url("/admin/x"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .header("X-User-Roles", "admin")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);

    let (ok, _, err) = s.users(&["grant", "eve@example.com", "bad role"]);
    assert!(!ok && err.contains("bad role"), "{err}");
    let (ok, _, err) = s.users(&["grant", "nobody@example.com", "admin"]);
    assert!(!ok && err.contains("nobody@example.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_roles_reload_with_the_rest_of_the_policy() {
    let s = stack().await;
    s.register("rel@example.com").await;
    s.ok(&["grant", "rel@example.com", "admin"]);
    let token = s.sign_in("rel@example.com").await;
    assert_eq!(s.status(0, "/admin/x", &token).await, 200);

    let gw = &s.gws[0];
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    let mut next: authflow_gateway::config::GatewayConfig = toml::from_str(&text).expect("config");
    for r in &mut next.routes {
        if r.prefix == "/admin/" {
            r.roles = vec!["auditor".into()];
        }
    }
    std::fs::write(&gw.config_path, toml::to_string(&next).expect("toml")).expect("write");
    gw.signal("-HUP");
    let status = poll(|| s.status(0, "/admin/x", &token), |st| *st == 403).await;
    assert_eq!(status, 403, "the reloaded route still admitted admin");
    // The other gateway, not reloaded, keeps its own policy.
    assert_eq!(s.status(1, "/admin/x", &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_roles_and_disabling_work_the_same() {
    let pg = Postgres::start().await;
    let s = stack_on(Some(pg.url())).await;
    s.register("pat@example.com").await;
    let out = s.ok(&["grant", "pat@example.com", "admin"]);
    assert!(out.contains("roles now: admin"), "{out}");
    let token = s.sign_in("pat@example.com").await;
    assert_eq!(s.status(0, "/admin/x", &token).await, 200);
    s.ok(&["revoke", "pat@example.com", "admin"]);
    assert_eq!(s.status(1, "/admin/x", &token).await, 403);
    let out = s.ok(&["disable", "pat@example.com"]);
    assert!(out.contains("1 session(s) ended"), "{out}");
    assert_eq!(s.status(0, "/app/x", &token).await, 401);
    let shown: Value =
        serde_json::from_str(&s.ok(&["show", "pat@example.com", "--json"])).expect("json");
    assert!(shown["disabled_at"].is_i64(), "{shown}");
    assert_eq!(shown["roles"], json!([]));
}

/// Role commands running at the same time: whatever order they commit in, every live session
/// ends with the roles the database holds (black-box review: a grant racing a revoke left
/// the revoked role in live sessions, last writer wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_role_commands_leave_sessions_with_the_databases_roles() {
    let s = stack().await;
    let email = "race@example.com";
    s.register(email).await;
    let token = s.sign_in(email).await;
    let spawn = |args: &[&str]| {
        std::process::Command::new(authflow_bin())
            .arg("users")
            .args(args)
            .arg("--config")
            .arg(s.auth.config_path())
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    for round in 0..6 {
        s.ok(&["grant", email, "admin"]);
        for gw in 0..2 {
            assert_eq!(s.status(gw, "/admin/x", &token).await, 200);
        }
        let extra = format!("x{round}");
        let mut grant = spawn(&["grant", email, &extra]);
        let mut revoke = spawn(&["revoke", email, "admin"]);
        assert!(grant.wait().expect("grant").success());
        assert!(revoke.wait().expect("revoke").success());
        for gw in 0..2 {
            assert_eq!(
                s.status(gw, "/admin/x", &token).await,
                403,
                "round {round}: the revoked role survived on gateway {gw}"
            );
            let roles = upstream_roles(s.get(gw, "/app/x", &token).await).await;
            let want: Vec<String> = (0..=round).map(|i| format!("x{i}")).collect();
            assert_eq!(roles, vec![want.join(",")], "round {round}");
        }
    }
}

/// `/admin` is the `/admin/` section's index on most frameworks: it is judged by that route,
/// not by a public catch-all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_section_without_its_slash_is_judged_by_the_section() {
    let s = stack().await;
    s.register("bare@example.com").await;
    let token = s.sign_in("bare@example.com").await;
    assert_eq!(s.status(0, "/admin", &token).await, 403);
    assert_eq!(s.status(0, "/ADMIN?a=1", &token).await, 403);
    assert_eq!(s.status(0, "/app", &token).await, 200);
    let anonymous = client()
        .get(s.gws[0].url("/admin"))
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);
}
