//! An echo upstream: every request is answered with what it carried.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// An upstream that answers every request with JSON describing what it received:
/// `{"server": name, "method", "path", "headers": {name: [values]}}`. A path containing
/// `/slow/` waits 3 s first.
pub struct Upstream {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
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
                            let resp = hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .expect("response");
                            Ok::<_, std::convert::Infallible>(resp)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { port, task }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
