//! Who the client is. The socket peer, unless the peer is a trusted proxy; then the right-most
//! `X-Forwarded-For` hop that is not itself trusted. Everything left of that hop is
//! client-controlled and ignored.

use ipnet::IpNet;
use std::net::IpAddr;

/// Resolves the client IP from the socket `peer` and every `X-Forwarded-For` value received
/// (in order). A malformed hop stops the walk: the last well-formed hop right of it is used.
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// True when `ip` lies in one of the trusted proxy networks.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// `ip` with the part that locates a household hidden, for showing a person where their
/// sessions signed in: `203.0.113.x`, `2001:db8:1:2::x` (the /64 kept).
pub fn hint(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::x", s[0], s[1], s[2], s[3])
        }
    }
}

/// Who an address stands for when clients are counted: an IPv4 address as it is, an IPv6
/// one reduced to its `/ipv6_prefix` (one host usually controls a whole /64).
pub fn network(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V6(_) => IpNet::new(ip, ipv6_prefix)
            .map(|n| n.network())
            .unwrap_or(ip),
        v4 => v4,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A hop is an address, optionally with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| canonical(s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().expect("cidr")).collect()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn hints_hide_the_host_part() {
        assert_eq!(hint(ip("203.0.113.77")), "203.0.113.x");
        assert_eq!(hint(ip("::ffff:10.1.2.3")), "10.1.2.x");
        assert_eq!(hint(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::x");
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_xff_says() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("203.0.113.9"), ["1.1.1.1"], &t),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted_hop() {
        let t = nets(&["10.0.0.0/8"]);
        let got = resolve(ip("10.0.0.2"), ["6.6.6.6, 198.51.100.7, 10.0.0.9"], &t);
        assert_eq!(got, ip("198.51.100.7"));
        let got = resolve(ip("10.0.0.2"), ["6.6.6.6", "198.51.100.7"], &t);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn malformed_hop_stops_the_walk() {
        let t = nets(&["10.0.0.0/8"]);
        let got = resolve(ip("10.0.0.2"), ["198.51.100.7, garbage, 10.0.0.9"], &t);
        assert_eq!(got, ip("10.0.0.9"));
        assert_eq!(resolve(ip("10.0.0.2"), ["garbage"], &t), ip("10.0.0.2"));
    }

    #[test]
    fn hops_with_ports_and_mapped_addresses() {
        let t = nets(&["127.0.0.0/8"]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), ["[2001:db8::1]:443"], &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(ip("127.0.0.1"), ["192.0.2.1:1234"], &t),
            ip("192.0.2.1")
        );
    }
}
