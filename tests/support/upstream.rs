//! An echo upstream: every request is answered with what it carried.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// An upstream that answers every request with JSON describing what it received:
/// `{"server": name, "method", "path", "headers": {name: [values]}}`. A path containing
/// `/slow/` waits 3 s first; `/set-cookie/` sets `sid`, `__Host-SID` and `theme` cookies;
/// `/cached/` answers with its own `Cache-Control`; `/events/` is a server-sent event stream
/// that sends `data: tick` every 200 ms until the client goes, `/stream/` the same as a
/// chunked `text/plain` download; `/silent/` sends one chunk, then nothing for 10 s.
pub struct Upstream {
    pub port: u16,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
    /// Set to `true` to drop every open connection at once, as a crashed server would.
    stop: watch::Sender<bool>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::serve(name, listener)
    }

    /// Starts it on `port` (e.g. one a gateway was configured with before it existed).
    pub async fn start_on(name: &'static str, port: u16) -> Upstream {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        Self::serve(name, listener)
    }

    fn serve(name: &'static str, listener: tokio::net::TcpListener) -> Upstream {
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let served = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let mut stopped = stopped.clone();
                let counts = served.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let counts = counts.clone();
                        async move {
                            let _in = counts.enter();
                            echo(name, req).await
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        Upstream {
            port,
            counts,
            task,
            stop,
        }
    }

    /// Requests it has received.
    pub fn hits(&self) -> usize {
        self.counts.hits.load(Ordering::SeqCst)
    }

    /// The most requests it has had in hand at once.
    pub fn max_concurrent(&self) -> usize {
        self.counts.max.load(Ordering::SeqCst)
    }

    /// Stops accepting and drops every open connection, as a crash would.
    pub fn kill(&self) {
        self.task.abort();
        let _ = self.stop.send(true);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

#[derive(Default)]
struct Counts {
    hits: AtomicUsize,
    now: AtomicUsize,
    max: AtomicUsize,
}

/// A request in hand, counted until dropped.
struct InHand(Arc<Counts>);

impl Counts {
    fn enter(self: &Arc<Self>) -> InHand {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        InHand(self.clone())
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// `data: tick` every 200 ms, for as long as the client reads, as `content_type`.
fn event_stream(content_type: &'static str) -> hyper::Response<Body> {
    let ticks = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(
                b"data: tick\n\n",
            ))),
            (),
        ))
    });
    hyper::Response::builder()
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(BodyExt::boxed(StreamBody::new(ticks)))
        .expect("response")
}

/// One chunk at once, then silence for 10 s, then another (a stream that falls quiet).
fn silent_stream() -> hyper::Response<Body> {
    let chunks = futures_util::stream::unfold(0u8, |n| async move {
        if n > 1 {
            return None;
        }
        if n == 1 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let frame = hyper::body::Frame::data(Bytes::from(format!("chunk {n}\n")));
        Some((Ok::<_, Infallible>(frame), n + 1))
    });
    hyper::Response::builder()
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .expect("response")
}

async fn echo(
    name: &'static str,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    if req.uri().path().contains("/events/") {
        return Ok(event_stream("text/event-stream"));
    }
    if req.uri().path().contains("/stream/") {
        return Ok(event_stream("text/plain"));
    }
    if req.uri().path().contains("/silent/") {
        return Ok(silent_stream());
    }
    if req.uri().path().contains("/slow/") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers
            .entry(k.as_str())
            .or_insert_with(|| serde_json::json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(String::from_utf8_lossy(v.as_bytes()).into());
        }
    }
    let body = serde_json::json!({
        "server": name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "headers": headers,
    });
    let path = req.uri().path();
    let mut resp = hyper::Response::builder().header("content-type", "application/json");
    if path.contains("/set-cookie/") {
        for cookie in [
            "sid=planted; Path=/",
            "__Host-SID=planted; Secure; Path=/",
            "theme=dark",
        ] {
            resp = resp.header("set-cookie", cookie);
        }
    }
    if path.contains("/cached/") {
        resp = resp.header("cache-control", "public, max-age=60");
    }
    let resp = resp
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response");
    Ok(resp)
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}
