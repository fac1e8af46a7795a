//! The standard gRPC health check (`grpc.health.v1.Health/Check`) as an active check: a
//! gRPC server is up when it answers `SERVING` for the configured service name. Its two
//! messages are one string and one enum field, so they are written and read here by hand
//! instead of pulling in a protobuf code generator.

use super::set_protocol;
use crate::config::UpstreamConfig;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

const CHECK_PATH: &[u8] = b"/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;
/// Far more than a health answer needs: a server sending more is not one.
const MAX_ANSWER_BYTES: usize = 4096;

pub struct GrpcHealthCheck {
    service: String,
    peer: HttpPeer,
    host: String,
    connector: Connector,
}

impl GrpcHealthCheck {
    pub fn new(cfg: &UpstreamConfig, service: &str) -> Self {
        // The address is replaced per server checked.
        let mut peer = HttpPeer::new("0.0.0.0:1", cfg.tls, cfg.sni.clone());
        peer.options.connection_timeout = Some(cfg.connect_timeout.0);
        peer.options.total_connection_timeout = Some(cfg.connect_timeout.0);
        peer.options.read_timeout = Some(cfg.connect_timeout.0.max(cfg.read_timeout.0));
        set_protocol(&mut peer, cfg.protocol);
        peer.options.ca = super::ca_for_checks(cfg);
        let host = if cfg.sni.is_empty() {
            "localhost".to_owned()
        } else {
            cfg.sni.clone()
        };
        GrpcHealthCheck {
            service: service.to_owned(),
            peer,
            host,
            connector: Connector::new(None),
        }
    }

    async fn ask(&self, target: &Backend) -> Result<()> {
        let mut peer = self.peer.clone();
        peer._address = target.addr.clone();
        let (session, _) = self.connector.get_http_session(&peer).await?;
        let HttpSession::H2(mut stream) = session else {
            return Error::e_explain(unhealthy(), "the server does not speak HTTP/2");
        };
        let mut req = RequestHeader::build("POST", CHECK_PATH, None)?;
        req.insert_header("host", self.host.as_str())?;
        req.insert_header("content-type", "application/grpc")?;
        req.insert_header("te", "trailers")?;
        stream.write_request_header(Box::new(req), false)?;
        stream
            .write_request_body(request_message(&self.service), true)
            .await?;
        stream.read_response_header().await?;
        let head = stream
            .response_header()
            .ok_or_else(|| Error::explain(unhealthy(), "no answer"))?;
        if head.status != 200 {
            return Error::e_explain(unhealthy(), format!("HTTP {}", head.status));
        }
        // A Trailers-Only answer carries its status in the headers.
        let mut status = head.headers.get("grpc-status").cloned();
        let mut body = Vec::new();
        while let Some(chunk) = stream.read_response_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Error::e_explain(unhealthy(), "answer too long");
            }
        }
        if status.is_none() {
            status = stream
                .read_trailers()
                .await?
                .and_then(|t| t.get("grpc-status").cloned());
        }
        match status.as_ref().map(|v| v.as_bytes()) {
            Some(b"0") => {}
            Some(other) => {
                return Error::e_explain(
                    unhealthy(),
                    format!("grpc-status {}", String::from_utf8_lossy(other)),
                )
            }
            None => return Error::e_explain(unhealthy(), "no grpc-status"),
        }
        match serving_status(&body) {
            Some(SERVING) => Ok(()),
            Some(s) => Error::e_explain(unhealthy(), format!("serving status {s}, not SERVING")),
            None => Error::e_explain(unhealthy(), "malformed HealthCheckResponse"),
        }
    }
}

fn unhealthy() -> ErrorType {
    ErrorType::Custom("gRPC health check")
}

#[async_trait]
impl HealthCheck for GrpcHealthCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        self.ask(target).await
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// A length-prefixed `HealthCheckRequest { service = 1: string }`.
fn request_message(service: &str) -> Bytes {
    let mut proto = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        proto.push(0x0a); // field 1, length-delimited
        put_varint(&mut proto, service.len() as u64);
        proto.extend_from_slice(service.as_bytes());
    }
    let mut out = Vec::with_capacity(5 + proto.len());
    out.push(0); // not compressed
    out.extend_from_slice(&(proto.len() as u32).to_be_bytes());
    out.extend_from_slice(&proto);
    Bytes::from(out)
}

/// `HealthCheckResponse.status` (field 1, varint) of one length-prefixed message; a message
/// without the field has the default, `UNKNOWN` (0). `None` when the bytes are not one
/// uncompressed message.
fn serving_status(framed: &[u8]) -> Option<u64> {
    let (&compressed, rest) = framed.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let mut proto = rest.get(4..)?;
    if compressed != 0 || proto.len() != len {
        return None;
    }
    let mut status = 0;
    while let Some((&key, rest)) = proto.split_first() {
        proto = rest;
        match key {
            0x08 => status = take_varint(&mut proto)?,
            // Unknown fields of the other wire types are skipped, as protobuf readers do.
            k if k & 7 == 0 => {
                take_varint(&mut proto)?;
            }
            k if k & 7 == 2 => {
                let n = take_varint(&mut proto)? as usize;
                proto = proto.get(n..)?;
            }
            _ => return None,
        }
    }
    Some(status)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_service() {
        assert_eq!(&request_message("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request_message("app")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'p']
        );
    }

    #[test]
    fn only_a_well_formed_answer_has_a_status() {
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(SERVING));
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 0]),
            Some(0),
            "default: UNKNOWN"
        );
        // An unknown string field before the status is skipped.
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Some(SERVING)
        );
        assert_eq!(
            serving_status(&[1, 0, 0, 0, 2, 0x08, 1]),
            None,
            "compressed"
        );
        assert_eq!(serving_status(&[0, 0, 0, 0, 3, 0x08, 1]), None, "short");
        assert_eq!(serving_status(&[0, 0, 0]), None);
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 2, 0x08, 0x80]),
            None,
            "cut varint"
        );
    }
}
