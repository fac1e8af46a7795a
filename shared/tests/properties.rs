//! Property tests of the parsers that read what clients send: thousands of generated inputs
//! each, checking they never panic and that their answers hold together.

use authflow_shared::client_ip;
use authflow_shared::cookie::{self, CookieLookup};
use authflow_shared::session::SessionRecord;
use authflow_shared::token::SessionToken;
use ipnet::IpNet;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Cookie headers built from pieces that matter to the parser: names close to `sid`,
/// separators, quotes, spaces, and arbitrary text.
fn cookie_header() -> impl Strategy<Value = String> {
    let pair = (
        prop_oneof![
            Just("sid".to_owned()),
            Just(" sid".to_owned()),
            Just("sid ".to_owned()),
            Just("SID".to_owned()),
            Just("sidx".to_owned()),
            "[a-z_]{0,6}",
        ],
        prop_oneof![
            Just("=".to_owned()),
            Just("".to_owned()),
            Just("==".to_owned())
        ],
        "[ -~]{0,20}",
    )
        .prop_map(|(k, eq, v)| format!("{k}{eq}{v}"));
    prop::collection::vec(pair, 0..6).prop_map(|p| p.join(";"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn cookie_lookup_agrees_with_the_full_list(headers in prop::collection::vec(cookie_header(), 0..3)) {
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let all = cookie::find_all(refs.iter().copied(), "sid");
        match cookie::find(refs.iter().copied(), "sid") {
            CookieLookup::Missing => prop_assert!(all.is_empty()),
            CookieLookup::One(v) => prop_assert_eq!(all, vec![v]),
            CookieLookup::Many => prop_assert!(all.len() >= 2),
        }
    }

    #[test]
    fn stripping_the_session_cookie_leaves_none_behind(header in cookie_header()) {
        if let Some(rest) = cookie::without(&header, "sid") {
            prop_assert!(cookie::find_all([rest.as_str()], "sid").is_empty(), "{rest}");
        }
    }

    #[test]
    fn arbitrary_cookie_values_never_panic_the_token_parser(value in "\\PC{0,80}") {
        if let Some(t) = SessionToken::parse(&value) {
            // A token that parses is exactly what the cookie carried, and hashes to 64 hex.
            prop_assert_eq!(t.expose(), value.as_str());
            prop_assert_eq!(t.id().len(), 64);
        }
    }

    #[test]
    fn the_client_is_the_peer_or_a_hop_it_named(
        peer_last in 0u8..4,
        hops in prop::collection::vec(
            prop_oneof![
                any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
                Just("10.0.0.9".to_owned()),
                Just("unknown".to_owned()),
                Just("".to_owned()),
                "[ -~]{0,12}",
            ],
            0..6,
        ),
        split in any::<bool>(),
    ) {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer_last));
        let joined = hops.join(", ");
        let values: Vec<&str> = if split { hops.iter().map(String::as_str).collect() } else { vec![joined.as_str()] };
        let client = client_ip::resolve(peer, values.iter().copied(), &trusted);
        let named = client == peer || hops.iter().any(|h| h.contains(&client.to_string()));
        prop_assert!(named, "{client} from {hops:?}");
        // An untrusted peer is never overridden.
        let outside = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        prop_assert_eq!(client_ip::resolve(outside, values.iter().copied(), &trusted), outside);
    }

    #[test]
    fn stored_records_decode_or_fail_cleanly(text in "\\PC{0,200}") {
        let _ = serde_json::from_str::<SessionRecord>(&text);
    }

    #[test]
    fn records_round_trip(
        user in "[a-z0-9-]{1,36}",
        email in prop::option::of("[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}"),
        now in 0u64..4_000_000_000_000,
        life in 1u64..100_000_000,
    ) {
        let r = SessionRecord::new(user, email, "f".repeat(64), now, Duration::from_millis(life));
        let json = serde_json::to_string(&r).expect("encode");
        prop_assert_eq!(serde_json::from_str::<SessionRecord>(&json).expect("decode"), r);
    }
}
