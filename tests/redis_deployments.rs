//! Both services on the Redis deployments users run beyond one open server: Sentinel (one
//! primary, one replica, three sentinels, all real processes) and an ACL user with a password
//! from the environment.

mod support;

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const PW: &str = "correct horse battery";

async fn sign_in(gw_url: &str, email: &str) -> reqwest::Response {
    sign_in_through(gw_url, email, PW).await
}

/// The primary is killed under a steady stream of protected requests and sign-ins. During the
/// failover requests may fail closed (503); afterwards everything works again by itself, no
/// session written before is lost, and no request is ever refused as unauthenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failover_loses_no_session_and_refuses_no_one() {
    let mut sentinels = Sentinels::start().await;
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&sentinels.url());
    auth_cfg.signup.require_email_verification = false;
    auth_cfg.throttle.lock_after = 1000;
    auth_cfg.throttle.hard_cap = 1000;
    // A sign-in makes a few Redis calls in a row: each must give up well within the
    // gateway's read timeout (2 s here), so that a failover answers 503, not 504.
    auth_cfg.redis.timeout = authflow_shared::config::HumanDuration::millis(150);
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut cfg = gateway_config(&sentinels.url(), &[app.addr()]);
    cfg.rate_limit.requests = 100_000;
    cfg.redis.timeout = authflow_shared::config::HumanDuration::millis(300);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    let base = gw.url("");

    let mut tokens = Vec::new();
    for i in 0..3 {
        let email = format!("user{i}@example.com");
        let r = client()
            .post(gw.url("/api/v1/simple_auth/signup"))
            .json(&json!({"email": email, "password": PW}))
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), 202);
        tokens.push(session_cookie(&sign_in(&base, &email).await).expect("cookie"));
    }
    sentinels.replicate_now().await;

    // A steady stream of protected requests (and a sign-in now and then), recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stream = {
        let (stop, base, tokens) = (stop.clone(), base.clone(), tokens.clone());
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(Instant, &'static str, u16)> = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let token = &tokens[n % tokens.len()];
                let status = get_with_session(format!("{base}/app/x"), token)
                    .await
                    .status();
                seen.push((Instant::now(), "protected", status.as_u16()));
                if n.is_multiple_of(10) {
                    let status = sign_in(&base, "user0@example.com").await.status();
                    seen.push((Instant::now(), "sign-in", status.as_u16()));
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    sentinels.kill_primary();
    let killed = Instant::now();
    let took = sentinels.wait_for_failover().await;
    eprintln!("sentinels failed over in {took:?}");
    // Recovery by itself: a protected request succeeds again.
    let r = poll(
        || get_with_session(gw.url("/app/x"), &tokens[0]),
        |r| r.status() == 200,
    )
    .await;
    assert_eq!(r.status(), 200, "no recovery after the failover");
    // Each process (and each gateway worker) reconnects on its own: wait for sign-in too.
    let r = poll(
        || sign_in(&base, "user2@example.com"),
        |r| r.status() == 200,
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "sign-in did not recover after the failover"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recovered = Instant::now();
    // At least 2 s and 30 requests of the stream after recovery (a loaded machine is slower).
    let sent_at_recovery = sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..100 {
        if sent.load(Ordering::Relaxed) > sent_at_recovery + 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let seen = stream.await.expect("stream");

    let refused: Vec<_> = seen.iter().filter(|(_, _, s)| *s == 401).collect();
    assert!(refused.is_empty(), "unexpected 401s: {refused:?}");
    let unexpected: Vec<_> = seen
        .iter()
        .filter(|(_, _, s)| ![200, 503].contains(s))
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    let after: Vec<_> = seen.iter().filter(|(t, _, _)| *t > recovered).collect();
    assert!(after.len() > 20, "too few requests after recovery");
    assert!(
        after.iter().all(|(_, _, s)| *s == 200),
        "failures after recovery: {after:?}"
    );
    let during = seen
        .iter()
        .filter(|(t, _, s)| *t > killed && *s == 503)
        .count();
    eprintln!(
        "{during} requests failed closed during the failover; {} after it, all 200",
        after.len()
    );
    // Every session written before the failover is still there, and new ones work.
    for token in &tokens {
        assert_eq!(
            get_with_session(gw.url("/app/x"), token).await.status(),
            200
        );
    }
    let fresh = session_cookie(&sign_in(&base, "user1@example.com").await)
        .expect("a sign-in after the failover");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &fresh).await.status(),
        200
    );
}

/// An ACL user instead of the default one: the user in the URL, the password from the
/// environment (auth service) or the config (gateway); a wrong password fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_from_the_environment() {
    use fred::interfaces::ClientLike;
    let redis = Redis::start().await;
    let admin = redis.client().await;
    let acl = |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let admin = admin.clone();
        async move {
            let _: String = admin.custom(fred::cmd!("ACL"), args).await.expect("ACL");
        }
    };
    acl(vec![
        "SETUSER",
        "authflow",
        "on",
        ">acl-secret",
        "~*",
        "&*",
        "+@all",
    ])
    .await;
    acl(vec!["SETUSER", "default", "off"]).await;
    let url = format!("redis://authflow@127.0.0.1:{}", redis.port);

    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&url);
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[("AUTHFLOW_REDIS_PASSWORD", "acl-secret")]).await;
    let mut cfg = gateway_config(&url, &[app.addr()]);
    cfg.redis.password = Some("acl-secret".to_owned().into());
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    let r = client()
        .post(gw.url("/api/v1/simple_auth/signup"))
        .json(&json!({"email": "acl@example.com", "password": PW}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    let token = session_cookie(&sign_in(&gw.url(""), "acl@example.com").await).expect("cookie");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &token).await.status(),
        200
    );

    let mut wrong = gateway_config(&url, &[app.addr()]);
    wrong.redis.password = Some("not-it".to_owned().into());
    let gw = Gateway::start_unready(wrong).await;
    assert_eq!(
        get_with_session(gw.url("/app/x"), &token).await.status(),
        503
    );
}

/// Both services on a real three-primary Redis Cluster: every endpoint works (sign-up,
/// sign-in, protected requests, logout, a reset that revokes every session of the account),
/// and sessions spread over all primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_works_on_redis_cluster_and_sessions_spread_over_all_primaries() {
    let cluster = Cluster::start().await;
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&cluster.url());
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut cfg = gateway_config(&cluster.url(), &[app.addr()]);
    cfg.rate_limit.requests = 100_000;
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    let base = gw.url("");
    let api = |e: &str| gw.url(&format!("/api/v1/simple_auth/{e}"));

    let mut tokens = Vec::new();
    for i in 0..24 {
        let email = format!("c{i}@example.com");
        let r = client()
            .post(api("signup"))
            .json(&json!({"email": email, "password": PW}))
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), 202);
        let r = sign_in(&base, &email).await;
        assert_eq!(r.status(), 200, "{email}");
        tokens.push(session_cookie(&r).expect("cookie"));
    }
    for t in &tokens {
        assert_eq!(get_with_session(gw.url("/app/x"), t).await.status(), 200);
    }
    let per_node = cluster.keys_per_node("session:*");
    assert!(
        per_node.iter().all(|n| *n > 0),
        "sessions on every primary: {per_node:?}"
    );

    // Logout ends the session.
    let r = client()
        .post(api("logout"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", tokens[0]))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    assert_eq!(
        get_with_session(gw.url("/app/x"), &tokens[0])
            .await
            .status(),
        401
    );

    // A reset revokes every session of the account, in one script on its slot.
    let second = session_cookie(&sign_in(&base, "c1@example.com").await).expect("cookie");
    let r = client()
        .post(api("forgot-password"))
        .json(&json!({"email": "c1@example.com"}))
        .send()
        .await
        .expect("forgot");
    assert_eq!(r.status(), 202);
    let link = link_token(&wait_for_mail(&auth.outbox(), "c1@example.com", "reset-password").await);
    let r = client()
        .post(api("reset-password/update"))
        .json(&json!({"token": link, "new_password": "a new password on the cluster"}))
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), 200);
    for t in [&tokens[1], &second] {
        assert_eq!(get_with_session(gw.url("/app/x"), t).await.status(), 401);
    }
    assert_eq!(
        get_with_session(gw.url("/app/x"), &tokens[2])
            .await
            .status(),
        200
    );
    // The throttle's script runs on the cluster too.
    for _ in 0..6 {
        let r = client()
            .post(api("signin"))
            .json(&json!({"email": "c3@example.com", "password": "wrong password!"}))
            .send()
            .await
            .expect("signin");
        assert!([401, 429].contains(&r.status().as_u16()));
    }
    assert_eq!(sign_in(&base, "c3@example.com").await.status(), 429);
}

/// `rediss://` with the CA of a private PKI: both services talk TLS to a real TLS-only
/// `redis-server`; without the CA file the server's certificate is refused (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_redis_with_a_ca_file_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    private_pki(d, "redis");
    let port = free_port();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--tls-cert-file",
            "redis.pem",
            "--tls-key-file",
            "redis.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
        ])
        .arg("--dir")
        .arg(d)
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    assert!(wait_for_port(port, Duration::from_secs(10)).await);
    let url = format!("rediss://localhost:{port}");
    let ca = d.join("ca.pem").display().to_string();

    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&url);
    auth_cfg.redis.ca_file = Some(ca.clone());
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut cfg = gateway_config(&url, &[app.addr()]);
    cfg.redis.ca_file = Some(ca);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    let r = client()
        .post(gw.url("/api/v1/simple_auth/signup"))
        .json(&json!({"email": "tls@example.com", "password": PW}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    let token = session_cookie(&sign_in(&gw.url(""), "tls@example.com").await).expect("cookie");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &token).await.status(),
        200
    );

    // The system's roots do not know this CA: the certificate is refused, and that fails closed.
    let untrusting = Gateway::start_unready(gateway_config(&url, &[app.addr()])).await;
    assert_eq!(
        get_with_session(untrusting.url("/app/x"), &token)
            .await
            .status(),
        503
    );
    let _ = server.kill();
    let _ = server.wait();
}
