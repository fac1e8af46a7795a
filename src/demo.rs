//! The demo backend: a protected app that shows who is signed in by echoing the identity
//! headers the gateway sent it. HTML for browsers, JSON for everyone else.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

type Response = hyper::Response<Full<Bytes>>;

fn escape(s: &str) -> String {
    authflow_auth::pages::escape(s)
}

/// Answers one request.
fn respond(req: &hyper::Request<hyper::body::Incoming>) -> Response {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let user_id = h("x-user-id");
    let email = h("x-user-email");
    let identity: Vec<(String, String)> = [
        "x-user-id",
        "x-user-email",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
    ]
    .iter()
    .map(|n| (n.to_string(), h(n)))
    .collect();
    let wants_html = authflow_shared::request::wants_html(
        req.method() == hyper::Method::GET,
        [h("accept").as_str()],
    );
    let path = req.uri().path().to_owned();
    if !wants_html {
        let body = serde_json::json!({
            "path": path,
            "user_id": if user_id.is_empty() { None } else { Some(&user_id) },
            "email": if email.is_empty() { None } else { Some(&email) },
            "headers": identity.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        });
        return reply("application/json", body.to_string());
    }
    let main = if user_id.is_empty() {
        "<h1>AuthFlow demo</h1>\n<p>This page is public. The app lives at <a href=\"/app/\">/app/</a>: \
         the gateway sends you to sign in first.</p>"
            .to_owned()
    } else {
        let rows: String = identity
            .iter()
            .map(|(k, v)| {
                format!(
                    "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                    escape(k),
                    escape(v)
                )
            })
            .collect();
        format!(
            "<h1>Hello, {email}</h1>\n<p id=\"who\">Signed in as <strong>{email}</strong> (user id <code>{id}</code>).</p>\n\
             <p>The gateway checked your session and device, then sent these headers to this app:</p>\n\
             <table>{rows}</table>\n<p><a href=\"/auth/sessions\">Your devices</a></p>\n<form method=\"post\" action=\"/api/v1/simple_auth/logout\">\
             <button type=\"submit\">Sign out</button></form>",
            email = escape(&email),
            id = escape(&user_id)
        )
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>AuthFlow demo</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}\
         th{{text-align:left;padding-right:1rem}}td{{font-family:monospace}}button{{margin-top:1.5rem;padding:.6rem 1.2rem}}</style>\n\
         </head>\n<body>\n<main>\n{main}\n</main>\n</body>\n</html>\n"
    );
    reply("text/html; charset=utf-8", page)
}

fn reply(content_type: &'static str, body: String) -> Response {
    authflow_auth::http::uncached(200, Some(content_type), Bytes::from(body))
}

/// Serves the demo app until `shutdown` completes; in-flight requests finish.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    service_fn(|req| async move { Ok::<_, std::convert::Infallible>(respond(&req)) }),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
