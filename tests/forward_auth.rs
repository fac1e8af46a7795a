//! Forward-auth: AuthFlow behind a proxy that stays at the edge. A real nginx runs the
//! shipped example (`conf/examples/nginx-auth-request.conf`) in front of an echo app and
//! the gateway; the Traefik and Envoy shapes are driven directly with the headers those
//! proxies send, and their shipped examples are checked for the header names.

mod support;

use authflow_gateway::config::AuthMode;
use serde_json::json;
use support::*;

const PW: &str = "correct horse battery";

struct Stack {
    _redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gw: Gateway,
    nginx: Nginx,
}

/// Redis, the auth service, the gateway (trusting loopback, where nginx runs) and nginx in
/// front of the echo app.
async fn stack(tune: impl FnOnce(&mut authflow_gateway::GatewayConfig)) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let auth = AuthService::start(auth_config(&redis.url()), &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    tune(&mut cfg);
    let gw = Gateway::start(cfg).await;
    let nginx = Nginx::start_example(&gw.url("").replace("http://", ""), &app.addr()).await;
    Stack {
        _redis: redis,
        _app: app,
        auth,
        gw,
        nginx,
    }
}

impl Stack {
    /// Signs up, verifies and signs in through nginx as the test browser; the session token
    /// and the user id.
    async fn signed_in(&self, email: &str) -> (String, String) {
        let base = self.nginx.url("");
        register_through(&base, &self.auth.outbox(), email, PW).await;
        let r = sign_in_through(&base, email, PW).await;
        assert_eq!(r.status(), 200);
        let token = session_cookie(&r).expect("cookie");
        let id = json(r).await["user_id"].as_str().expect("id").to_owned();
        (token, id)
    }

    /// A GET of `path` through nginx with the given headers.
    async fn through_nginx(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = client().get(self.nginx.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("request")
    }

    /// A forward-auth call straight to the gateway, from loopback (a trusted proxy).
    async fn verify(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = client().get(self.gw.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("request")
    }
}

fn cookie(token: &str) -> String {
    format!("sid={token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_signed_in_browser_reaches_the_app_with_its_identity_only() {
    let s = stack(|_| {}).await;
    let (token, user_id) = s.signed_in("nina@example.com").await;
    let c = cookie(&token);
    let r = s
        .through_nginx(
            "/app/x?y=1",
            &[
                ("cookie", &c),
                ("user-agent", UA),
                ("x-user-id", "admin"),
                ("x-user-email", "root@evil.example"),
                ("x_user_id", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let echo = json(r).await;
    assert_eq!(echo["path"], "/app/x");
    assert_eq!(echo["headers"]["x-user-id"], json!([user_id]));
    assert_eq!(echo["headers"]["x-user-email"], json!(["nina@example.com"]));
    assert!(
        echo["headers"].get("x_user_id").is_none(),
        "an underscore spelling reached the app: {echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_no_session_is_a_401_for_api_clients_and_a_redirect_for_browsers() {
    let s = stack(|_| {}).await;
    let api = s
        .through_nginx("/app/x", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status(), 401);
    assert_eq!(json(api).await["error"], "unauthenticated");
    let browser = s
        .through_nginx("/app/x?y=1", &[("accept", "text/html"), ("user-agent", UA)])
        .await;
    assert_eq!(browser.status(), 302);
    // nginx makes the location absolute (its `absolute_redirect`).
    let location = browser.headers()["location"].to_str().expect("ascii");
    assert!(
        location.ends_with("/auth/signin?next=/app/x%3Fy%3D1"),
        "{location}"
    );
    // A spoofed identity without a session gets nowhere either.
    let r = s
        .through_nginx("/app/x", &[("x-user-id", "admin"), ("accept", "*/*")])
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_another_device_is_refused_and_logout_holds_at_once() {
    let s = stack(|_| {}).await;
    let (token, _) = s.signed_in("omar@example.com").await;
    let c = cookie(&token);
    assert_eq!(
        s.through_nginx("/app/x", &[("cookie", &c), ("user-agent", UA)])
            .await
            .status(),
        200
    );
    let r = s
        .through_nginx("/app/x", &[("cookie", &c), ("user-agent", "Other/2.0")])
        .await;
    assert_eq!(r.status(), 401, "another browser's User-Agent was let in");

    let (token, _) = s.signed_in("pia@example.com").await;
    let c = cookie(&token);
    assert_eq!(
        s.through_nginx("/app/x", &[("cookie", &c), ("user-agent", UA)])
            .await
            .status(),
        200
    );
    let r = client()
        .post(s.nginx.url("/api/v1/simple_auth/logout"))
        .header("cookie", &c)
        .header("user-agent", UA)
        .json(&json!({}))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.through_nginx("/app/x", &[("cookie", &c), ("user-agent", UA)])
            .await
            .status(),
        401,
        "a logged-out session was let in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_and_envoy_shapes_get_identity_headers_or_a_redirect() {
    let s = stack(|_| {}).await;
    let (token, user_id) = s.signed_in("quin@example.com").await;
    let c = cookie(&token);
    // Traefik: the original request in X-Forwarded-*, the client behind it in XFF.
    fn traefik(c: Option<&str>) -> Vec<(&str, &str)> {
        let mut h = vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/app/page?z=9"),
            ("x-forwarded-for", "127.0.0.1"),
            ("user-agent", UA),
            ("accept", "text/html"),
        ];
        if let Some(c) = c {
            h.push(("cookie", c));
        }
        h
    }
    let ok = s.verify("/verify?redirect=1", &traefik(Some(&c))).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-user-id"], user_id.as_str());
    assert_eq!(ok.headers()["x-user-email"], "quin@example.com");
    let to_signin = s.verify("/verify?redirect=1", &traefik(None)).await;
    assert_eq!(to_signin.status(), 302);
    assert_eq!(
        to_signin.headers()["location"],
        "/auth/signin?next=/app/page%3Fz%3D9"
    );
    // Envoy (ext_authz, HTTP mode): path_prefix + the original path, original method.
    let envoy = client()
        .delete(s.gw.url("/verify/app/item/7"))
        .header("cookie", &c)
        .header("user-agent", UA)
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .expect("request");
    assert_eq!(envoy.status(), 200);
    assert_eq!(envoy.headers()["x-user-id"], user_id.as_str());
    // Present though empty: Envoy and Traefik copy it over a client's own X-User-Roles.
    assert_eq!(envoy.headers()["x-user-roles"], "");
    let denied = client()
        .delete(s.gw.url("/verify/app/item/7"))
        .header("user-agent", UA)
        .send()
        .await
        .expect("request");
    assert_eq!(denied.status(), 401);
    // A browser's GET through Envoy, with the header the shipped example adds: a redirect
    // that Envoy relays.
    let to_signin = client()
        .get(s.gw.url("/verify/app/page?z=9"))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .header("x-authflow-redirect", "1")
        .send()
        .await
        .expect("request");
    assert_eq!(to_signin.status(), 302);
    assert_eq!(
        to_signin.headers()["location"],
        "/auth/signin?next=/app/page%3Fz%3D9"
    );
    // The check is never routed: nothing reached the app for any of it.
    let echo = s.verify("/verify/public/x", &[]).await;
    assert_eq!(echo.status(), 401, "a /verify path was routed upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_caller_cannot_choose_the_client_address() {
    let s = stack(|_| {}).await;
    let (token, _) = s.signed_in("rex@example.com").await;
    // From 127.0.0.2, not a trusted proxy: its X-Forwarded-For is ignored, so the device
    // fingerprint is computed for 127.0.0.2 and does not match the signing-in 127.0.0.1.
    let r = client_from(Some("127.0.0.2"))
        .get(s.gw.url("/verify"))
        .header("cookie", cookie(&token))
        .header("user-agent", UA)
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_to_the_real_client_behind_the_proxy() {
    let s = stack(|cfg| {
        cfg.rate_limit.requests = 5;
        cfg.rate_limit.per = authflow_shared::config::HumanDuration::secs(60);
    })
    .await;
    let from = |ip: &'static str| {
        [
            ("x-forwarded-for", ip),
            ("x-forwarded-uri", "/app/x"),
            ("accept", "application/json"),
        ]
    };
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            s.verify("/verify", &from("198.51.100.7"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429],
        "{statuses:?}"
    );
    let limited = s.verify("/verify", &from("198.51.100.7")).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        s.verify("/verify", &from("198.51.100.8")).await.status(),
        401,
        "another client behind the same proxy was limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_its_own_listener_the_check_is_not_on_the_main_one() {
    let private = free_port();
    let s = stack(|cfg| cfg.forward_auth.listen = Some(format!("127.0.0.1:{private}"))).await;
    let own = client()
        .get(format!("http://127.0.0.1:{private}/verify"))
        .send()
        .await
        .expect("request");
    assert_eq!(own.status(), 401);
    let other = client()
        .get(format!("http://127.0.0.1:{private}/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 404, "the check's listener routed a request");
    let main = s.verify("/verify", &[]).await;
    assert_eq!(
        main.status(),
        404,
        "the check answered on the main listener"
    );
}

/// The shipped Traefik and Envoy examples hand the identity headers on and send what the
/// check reads.
#[test]
fn the_traefik_and_envoy_examples_name_the_right_headers_and_path() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let load = |name: &str| {
        let text = std::fs::read_to_string(root.join("conf/examples").join(name)).expect(name);
        let mut docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("YAML");
        docs.remove(0)
    };
    let traefik = load("traefik-forward-auth.yml");
    let fa = &traefik["http"]["middlewares"]["authflow"]["forwardAuth"];
    let address = fa["address"].as_str().expect("address");
    assert!(
        address.ends_with("/verify?redirect=1"),
        "Traefik cannot redirect by itself: {address}"
    );
    let names: Vec<&str> = fa["authResponseHeaders"]
        .as_vec()
        .expect("authResponseHeaders")
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    assert_eq!(names, ["X-User-Id", "X-User-Email", "X-User-Roles"]);

    let envoy = load("envoy-ext-authz.yaml");
    let hcm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let authz = &hcm["http_filters"][0]["typed_config"]["http_service"];
    assert_eq!(authz["path_prefix"].as_str(), Some("/verify"));
    let exact = |y: &yaml_rust2::Yaml| -> Vec<String> {
        y["patterns"]
            .as_vec()
            .expect("patterns")
            .iter()
            .filter_map(|p| p["exact"].as_str().map(str::to_owned))
            .collect()
    };
    let sent = exact(&authz["authorization_request"]["allowed_headers"]);
    for needed in ["cookie", "user-agent", "x-forwarded-for"] {
        assert!(
            sent.iter().any(|h| h == needed),
            "{needed} not sent: {sent:?}"
        );
    }
    let upstream = exact(&authz["authorization_response"]["allowed_upstream_headers"]);
    assert_eq!(upstream, ["x-user-id", "x-user-email", "x-user-roles"]);
    let to_client = exact(&authz["authorization_response"]["allowed_client_headers"]);
    assert!(to_client.iter().any(|h| h == "location"), "{to_client:?}");
    let added = &authz["authorization_request"]["headers_to_add"][0];
    assert_eq!(added["key"].as_str(), Some("x-authflow-redirect"));
    assert_eq!(added["value"].as_str(), Some("1"));
    assert_eq!(
        hcm["http_filters"][0]["typed_config"]["failure_mode_allow"].as_bool(),
        Some(false),
        "an unreachable check must deny"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_match_the_original_method_and_host_as_on_a_direct_request() {
    use authflow_gateway::config::RateRule;
    let rule = |name: &str, methods: Vec<String>, host: Option<String>| -> RateRule {
        let mut r = toml::from_str::<RateRule>(&format!(
            "name = \"{name}\"\nprefix = \"/app\"\nrequests = 2\nper = \"1m\""
        ))
        .expect("rule");
        r.methods = methods;
        r.host = host;
        r
    };
    let s = stack(|cfg| {
        cfg.rate_limit.rules = vec![
            rule("posts", vec!["POST".into()], None),
            rule("api-host", Vec::new(), Some("api.example.com".into())),
        ];
    })
    .await;
    let ask = |method: &'static str, host: &'static str, ip: &'static str| {
        let s = &s;
        async move {
            s.verify(
                "/verify",
                &[
                    ("x-forwarded-for", ip),
                    ("x-forwarded-uri", "/app/x"),
                    ("x-forwarded-method", method),
                    ("x-forwarded-host", host),
                    ("accept", "application/json"),
                ],
            )
            .await
            .status()
            .as_u16()
        }
    };
    let mut posts = Vec::new();
    for _ in 0..3 {
        posts.push(ask("POST", "www.example.com", "198.51.100.1").await);
    }
    assert_eq!(posts, [401, 401, 429], "POST rule through /verify");
    for _ in 0..3 {
        assert_eq!(ask("GET", "www.example.com", "198.51.100.2").await, 401);
    }
    let mut api = Vec::new();
    for _ in 0..3 {
        api.push(ask("GET", "API.example.com", "198.51.100.3").await);
    }
    assert_eq!(api, [401, 401, 429], "host rule through /verify");
    assert_eq!(ask("post", "www.example.com", "198.51.100.4").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_client_cannot_describe_another_request_than_its_own() {
    use authflow_gateway::config::RateRule;
    let s = stack(|cfg| {
        let mut r = toml::from_str::<RateRule>(
            "name = \"posts\"\nprefix = \"/app/\"\nmethods = [\"POST\"]\nrequests = 1\nper = \"1m\"",
        )
        .expect("rule");
        r.burst = Some(1);
        cfg.rate_limit.rules = vec![r];
    })
    .await;
    let (token, _) = s.signed_in("post@example.com").await;
    let post = |forged: Option<(&'static str, &'static str)>| {
        let mut r = client()
            .post(s.nginx.url("/app/x"))
            .header("cookie", cookie(&token))
            .header("user-agent", UA)
            .body("a=b");
        if let Some((k, v)) = forged {
            r = r.header(k, v);
        }
        r.send()
    };
    assert_eq!(post(None).await.expect("post").status(), 200);
    for forged in [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/elsewhere"),
    ] {
        let status = post(Some(forged)).await.expect("post").status();
        assert_ne!(
            status, 200,
            "{forged:?} let a second POST through the POST rule"
        );
    }
    // Straight to the check: two spellings that disagree are refused.
    let r = s
        .verify(
            "/verify",
            &[
                ("x-original-uri", "/app/x"),
                ("x-forwarded-uri", "/elsewhere"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
}

/// `authflow users <args>` against the stack's auth config; its output.
fn users(s: &Stack, args: &[&str]) -> String {
    let out = std::process::Command::new(authflow_bin())
        .arg("users")
        .args(args)
        .arg("--config")
        .arg(s.auth.config_path())
        .env("RUST_LOG", "error")
        .output()
        .expect("run authflow users");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_roles_from_the_check_url_and_from_the_gateways_routes() {
    let s = stack(|cfg| {
        let mut reports = route("/app/reports/", "app", AuthMode::Required);
        reports.roles = vec!["reports".into()];
        cfg.routes.push(reports);
    })
    .await;
    let (token, _) = s.signed_in("rhea@example.com").await;
    let c = cookie(&token);
    let get = |path: &'static str| {
        let c = c.clone();
        let s = &s;
        async move {
            s.through_nginx(
                path,
                &[("cookie", &c), ("user-agent", UA), ("accept", "*/*")],
            )
            .await
        }
    };
    // No role: /app/ is open to everyone signed in; /admin/ (`?roles=admin` in nginx's
    // config) and /app/reports/ (`roles` on the gateway's route) are 403 through nginx.
    let r = get("/app/x").await;
    assert_eq!(r.status(), 200);
    assert!(json(r).await["headers"].get("x-user-roles").is_none());
    assert_eq!(get("/admin/x").await.status(), 403);
    assert_eq!(get("/app/reports/q").await.status(), 403);

    users(&s, &["grant", "rhea@example.com", "admin"]);
    let r = get("/admin/x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["headers"]["x-user-roles"], json!(["admin"]));
    assert_eq!(get("/app/reports/q").await.status(), 403);

    users(&s, &["grant", "rhea@example.com", "reports"]);
    let r = get("/app/reports/q").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await["headers"]["x-user-roles"],
        json!(["admin,reports"])
    );

    // Straight to /verify: the roles come back as a header; a bad `?roles=` is a 400.
    let original = [
        ("cookie", c.as_str()),
        ("user-agent", UA),
        ("x-original-uri", "/app/reports/q"),
    ];
    let r = s.verify("/verify?roles=admin,ops", &original).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user-roles"], "admin,reports");
    assert_eq!(s.verify("/verify?roles=ops", &original).await.status(), 403);
    assert_eq!(
        s.verify("/verify?roles=no%20way", &original).await.status(),
        400
    );

    users(&s, &["revoke", "rhea@example.com", "admin"]);
    assert_eq!(get("/admin/x").await.status(), 403);
}
