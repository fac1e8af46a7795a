//! The gateway's own answers to gRPC clients. A gRPC client reads only `grpc-status` and
//! `grpc-message` (in headers or trailers), never an HTTP error status or body, so a refusal
//! is sent as HTTP 200 "Trailers-Only": the status in the headers and no body.

use crate::response::LocalResponse;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// gRPC status codes the gateway answers with (grpc/doc/statuscodes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// Whether the client speaks gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, ...).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_type(v.as_bytes()))
}

/// `application/grpc`, alone or followed by `+format`, `-web...` or parameters, in any
/// ASCII case (media types are case-insensitive); not `application/grpcfoo`.
fn is_grpc_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(
            value.get(GRPC.len()),
            None | Some(b'+' | b'-' | b';' | b' ')
        )
}

/// The code for an HTTP status the gateway would answer with, after gRPC's own mapping
/// (grpc/doc/http-grpc-status-mapping.md), except that a rate limit or a too-large request
/// is `RESOURCE_EXHAUSTED`: the client should wait, not fail over.
pub fn code_for(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 | 405 => Code::Unimplemented,
        413 | 429 | 431 => Code::ResourceExhausted,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// `resp` as a gRPC answer: 200, `grpc-status` and a `grpc-message` naming the JSON body's
/// `error` (and `reason`); `retry-after` becomes `grpc-retry-pushback-ms` as well (gRPC's
/// retry design reads it). The other headers (`www-authenticate`, `ratelimit`,
/// `set-cookie`) stay.
pub fn answer(resp: LocalResponse) -> LocalResponse {
    let code = code_for(resp.status);
    let message = message_of(&resp);
    let retry_ms = resp
        .header_value("retry-after")
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000).to_string());
    let mut headers: Vec<(&'static str, Cow<'static, str>)> = resp
        .headers
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "content-type" | "location"))
        .collect();
    headers.push(("content-type", Cow::Borrowed("application/grpc")));
    headers.push(("grpc-status", Cow::Owned((code as u8).to_string())));
    headers.push(("grpc-message", Cow::Owned(percent_encode(&message))));
    if let Some(ms) = retry_ms {
        headers.push(("grpc-retry-pushback-ms", Cow::Owned(ms)));
    }
    LocalResponse {
        status: 200,
        headers,
        body: bytes::Bytes::new(),
    }
}

/// `error` or `error: reason` from a JSON body, else the HTTP status.
fn message_of(resp: &LocalResponse) -> String {
    let body: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    let field = |k: &str| {
        body.as_ref().and_then(|b| b.get(k)).and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| Some(v.to_string()))
        })
    };
    let mut message = field("error").unwrap_or_else(|| format!("HTTP {}", resp.status));
    if let Some(reason) = field("reason") {
        message = format!("{message}: {reason}");
    }
    if let Some(retry) = field("retry_after") {
        message = format!("{message}: retry after {retry}s");
    }
    message
}

/// `grpc-message`'s encoding: printable ASCII except `%` as it is, every other byte as
/// `%XX` (of its UTF-8).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_trailers_only_answers() {
        let a = answer(LocalResponse::error(401, "unauthenticated").field("reason", "expired"));
        assert_eq!(a.status, 200);
        assert!(a.body.is_empty());
        assert_eq!(a.header_value("content-type"), Some("application/grpc"));
        assert_eq!(a.header_value("grpc-status"), Some("16"));
        assert_eq!(
            a.header_value("grpc-message"),
            Some("unauthenticated: expired")
        );
        let a = answer(LocalResponse::error(403, "forbidden"));
        assert_eq!(a.header_value("grpc-status"), Some("7"));
        let a = answer(LocalResponse::error(503, "session_store_unavailable"));
        assert_eq!(a.header_value("grpc-status"), Some("14"));
    }

    #[test]
    fn a_rate_limit_says_when_to_retry() {
        let a = answer(
            LocalResponse::json(
                429,
                serde_json::json!({"error": "rate_limited", "retry_after": 3}),
            )
            .header("retry-after", "3"),
        );
        assert_eq!(a.header_value("grpc-status"), Some("8"));
        assert_eq!(a.header_value("grpc-retry-pushback-ms"), Some("3000"));
        assert_eq!(a.header_value("retry-after"), Some("3"));
        assert_eq!(
            a.header_value("grpc-message"),
            Some("rate_limited: retry after 3s")
        );
    }

    #[test]
    fn grpc_is_known_by_its_media_type_in_any_case() {
        for yes in [
            "application/grpc",
            "Application/GRPC",
            "application/grpc+proto",
            "application/grpc-web+proto",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "application/grpcfoo",
            "application/json",
            "text/grpc",
            "application/grp",
        ] {
            assert!(!is_grpc_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("a b%c\né"), "a b%25c%0A%C3%A9");
    }
}
