//! The device fingerprint: SHA-256 over configured request attributes.
//!
//! Both services compute it with this one function: the gateway on every protected request
//! (and at sign-in, handing it to the auth service in [`FINGERPRINT_HEADER`], since it is the
//! one place that sees the real client), the auth service only when a sign-in did not come
//! through a trusted gateway. It is compared in constant time with the one stored in the
//! session.
//! It detects a stolen cookie replayed from another browser or network; it is not an identity.

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Name of the internal header in which the gateway hands the client's fingerprint to the
/// auth service. The gateway strips it from every client request.
pub const FINGERPRINT_HEADER: &str = "x-authflow-fingerprint";

/// One attribute that goes into the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// The client IP, reduced to the configured prefix.
    Ip,
    UserAgent,
    AcceptLanguage,
    /// Any other request header, by (lower-case) name.
    Header(String),
}

impl Component {
    fn label(&self) -> &str {
        match self {
            Component::Ip => "ip",
            Component::UserAgent => "user_agent",
            Component::AcceptLanguage => "accept_language",
            Component::Header(name) => name,
        }
    }
}

impl std::str::FromStr for Component {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ip" => Ok(Component::Ip),
            "user_agent" => Ok(Component::UserAgent),
            "accept_language" => Ok(Component::AcceptLanguage),
            other => match other.strip_prefix("header:") {
                Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                    Ok(Component::Header(name.to_ascii_lowercase()))
                }
                _ => Err(format!(
                    "unknown fingerprint component {other:?}: expected \"ip\", \"user_agent\", \
                     \"accept_language\" or \"header:<name>\""
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Component {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Component {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Component::Header(name) => s.serialize_str(&format!("header:{name}")),
            other => s.serialize_str(other.label()),
        }
    }
}

/// Which attributes make up the fingerprint, and how coarsely the IP is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintSpec {
    pub components: Vec<Component>,
    /// IPv4 prefix length kept for the `ip` component (32 = exact address, 24 = the /24).
    pub ipv4_prefix: u8,
    /// IPv6 prefix length kept for the `ip` component (128 = exact, 64 = the /64).
    pub ipv6_prefix: u8,
}

impl Default for FingerprintSpec {
    fn default() -> Self {
        FingerprintSpec {
            // Not Accept-Language: a page on a sibling subdomain can set it in a `fetch`, and
            // so force a mismatch that revokes a victim's session. Neither the address nor
            // the User-Agent can be set by a page.
            components: vec![Component::Ip, Component::UserAgent],
            ipv4_prefix: 32,
            ipv6_prefix: 128,
        }
    }
}

impl FingerprintSpec {
    /// Hex SHA-256 of the configured components of this request. Each component is framed
    /// with its name and separators, so values cannot run into each other.
    pub fn compute(&self, client_ip: IpAddr, headers: &HeaderMap) -> String {
        let mut h = Sha256::new();
        self.feed(client_ip, headers, &mut |bytes| h.update(bytes));
        hex::encode(h.finalize())
    }

    /// Gives `sink` the bytes [`FingerprintSpec::compute`] hashes, in order: equal bytes,
    /// equal fingerprint (the gateway remembers which bytes matched a session).
    pub fn feed(&self, client_ip: IpAddr, headers: &HeaderMap, sink: &mut dyn FnMut(&[u8])) {
        sink(b"authflow-fp-v1");
        for c in &self.components {
            sink(&[0x1e]);
            sink(c.label().as_bytes());
            sink(&[0x1f]);
            match c {
                Component::Ip => {
                    // An address is at most 39 characters: written on the stack.
                    let mut buf = [0u8; 48];
                    let mut cursor = std::io::Cursor::new(&mut buf[..]);
                    let _ = write!(cursor, "{}", self.reduce_ip(client_ip));
                    let n = cursor.position() as usize;
                    sink(&buf[..n]);
                }
                Component::UserAgent => feed_header(sink, headers, "user-agent"),
                Component::AcceptLanguage => feed_header(sink, headers, "accept-language"),
                Component::Header(name) => feed_header(sink, headers, name),
            }
        }
    }

    fn reduce_ip(&self, ip: IpAddr) -> IpAddr {
        let prefix = match ip {
            IpAddr::V4(_) => self.ipv4_prefix,
            IpAddr::V6(_) => self.ipv6_prefix,
        };
        IpNet::new(ip, prefix).map(|n| n.network()).unwrap_or(ip)
    }
}

impl crate::config::Validate for FingerprintSpec {
    fn validate(&self, p: &mut crate::config::Problems) {
        if self.ipv4_prefix > 32 {
            p.add("ipv4_prefix", "must be between 0 and 32");
        }
        if self.ipv6_prefix > 128 {
            p.add("ipv6_prefix", "must be between 0 and 128");
        }
        if self.components.is_empty() {
            p.add("components", "must name at least one component");
        }
    }
}

/// All values of one header, trimmed and joined, so duplicates and whitespace do not matter.
fn feed_header(sink: &mut dyn FnMut(&[u8]), headers: &HeaderMap, name: &str) {
    for (i, v) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            sink(b",");
        }
        sink(trim_ascii(v.as_bytes()));
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Constant-time equality of two fingerprints (or any two secrets).
pub fn matches(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn same_inputs_same_fingerprint_regardless_of_header_case_and_order() {
        let spec = FingerprintSpec::default();
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let a = headers(&[("User-Agent", "Firefox"), ("Accept-Language", "en")]);
        let b = headers(&[("accept-language", " en "), ("user-agent", "Firefox")]);
        assert_eq!(spec.compute(ip, &a), spec.compute(ip, &b));
        assert_eq!(spec.compute(ip, &a).len(), 64);
    }

    #[test]
    fn user_agent_and_ip_change_the_fingerprint() {
        let spec = FingerprintSpec::default();
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let a = headers(&[("user-agent", "Firefox")]);
        let b = headers(&[("user-agent", "Chrome")]);
        assert_ne!(spec.compute(ip, &a), spec.compute(ip, &b));
        let other: IpAddr = "10.1.2.4".parse().expect("ip");
        assert_ne!(spec.compute(ip, &a), spec.compute(other, &a));
    }

    #[test]
    fn ip_prefix_reduction_tolerates_moves_within_the_prefix() {
        let spec = FingerprintSpec {
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            ..Default::default()
        };
        let h = headers(&[]);
        let a = spec.compute("10.1.2.3".parse().expect("ip"), &h);
        assert_eq!(a, spec.compute("10.1.2.200".parse().expect("ip"), &h));
        assert_ne!(a, spec.compute("10.1.3.3".parse().expect("ip"), &h));
        let v6 = spec.compute("2001:db8::1".parse().expect("ip"), &h);
        assert_eq!(
            v6,
            spec.compute("2001:db8::ffff:1".parse().expect("ip"), &h)
        );
    }

    #[test]
    fn values_cannot_run_into_each_other() {
        let spec = FingerprintSpec {
            components: vec![Component::UserAgent, Component::AcceptLanguage],
            ..Default::default()
        };
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let a = headers(&[("user-agent", "ab"), ("accept-language", "c")]);
        let b = headers(&[("user-agent", "a"), ("accept-language", "bc")]);
        assert_ne!(spec.compute(ip, &a), spec.compute(ip, &b));
    }

    #[test]
    fn components_parse_and_reject_unknown() {
        assert_eq!(
            "header:X-Device".parse::<Component>(),
            Ok(Component::Header("x-device".into()))
        );
        assert!("colour".parse::<Component>().is_err());
        assert!("header:bad header".parse::<Component>().is_err());
    }

    #[test]
    fn constant_time_match() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abd"));
        assert!(!matches("abc", "ab"));
    }
}
