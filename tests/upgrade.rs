//! Zero-downtime upgrade: a second `authflow gateway --upgrade` takes the listening socket
//! of the running one (Pingora's upgrade socket), which then drains on `SIGQUIT` and exits,
//! while a client keeps sending requests. Not one may fail.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_a_steady_request_stream_fails_no_request() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("upgrade.sock");
    let args = |pid: &str| {
        vec![
            "--upgrade-sock".to_owned(),
            sock.display().to_string(),
            "--pid-file".to_owned(),
            dir.path().join(pid).display().to_string(),
        ]
    };
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.rate_limit.requests = 1_000_000;
    let mut old = Gateway::start_with_args(cfg, &args("old.pid")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (url, stop, ok, failed) = (
            old.url("/public/x"),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        streams.push(tokio::spawn(async move {
            // A new connection per request, as many clients behind NAT would: every accept
            // during the hand-over is exercised.
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client");
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{other:?}"));
                    }
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::Relaxed);
    // The order of the shipped systemd unit (conf/systemd): SIGQUIT first (the old process
    // offers its sockets on the upgrade socket, retrying for 5 s), then the new process.
    old.signal("-QUIT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _new = old.spawn_upgrade(&args("new.pid"));
    assert!(
        old.exited_within(Duration::from_secs(20)).await,
        "the old gateway did not drain and exit"
    );
    let at_handover = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for s in streams {
        errors.extend(s.await.expect("stream"));
    }
    let after = ok.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {errors:?}"
    );
    assert!(
        before > 0 && at_handover > before,
        "no traffic during the upgrade"
    );
    assert!(
        after > at_handover,
        "the new gateway served nothing after the old one left"
    );
}
