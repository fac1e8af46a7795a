//! Memos that spare a warm request its SHA-256 work without weakening a check.
//!
//! - A session token's id is SHA-256 of the token: a pure function, so it is remembered per
//!   token, keyed by a 128-bit SipHash-1-3 tag of the token under a random per-process key.
//!   A different token reaches a remembered id only if its tag collides, which without the
//!   key is a 2^-128 chance per guess and remembered token: no online attack gets near it.
//!   Only tokens that named a session are remembered, so guesses cannot fill the memo.
//! - A device fingerprint is SHA-256 of bytes framed from the request
//!   ([`FingerprintSpec::feed`]): equal bytes give the equal fingerprint. A cached session
//!   keeps the tag of the bytes that last matched it ([`crate::session_cache::Entry`]); a
//!   request whose bytes have that tag matches without hashing, any other is hashed and
//!   compared as before.

use authflow_shared::fingerprint::FingerprintSpec;
use authflow_shared::token::SessionToken;
use ring::rand::{SecureRandom, SystemRandom};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

/// Domain separation of the two kinds of tag.
const TOKEN: u8 = 1;
const DEVICE: u8 = 2;

pub struct Memo {
    /// `None` when the system gave no random key: nothing is remembered then.
    key: Option<(u64, u64)>,
    ids: quick_cache::sync::Cache<u128, Arc<str>>,
}

/// What the fingerprint of a request is made of.
pub struct Device<'a> {
    pub spec: &'a FingerprintSpec,
    pub ip: IpAddr,
    pub headers: &'a http::HeaderMap,
}

impl Device<'_> {
    pub fn fingerprint(&self) -> String {
        self.spec.compute(self.ip, self.headers)
    }
}

impl Memo {
    /// Remembers the ids of up to `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        let mut bytes = [0u8; 16];
        let key = SystemRandom::new().fill(&mut bytes).ok().map(|()| {
            let (a, b) = bytes.split_at(8);
            let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or_default());
            (word(a), word(b))
        });
        Memo {
            key,
            ids: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    fn tag(&self, domain: u8, feed: impl FnOnce(&mut SipHasher13)) -> Option<u128> {
        let (k0, k1) = self.key?;
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write_u8(domain);
        feed(&mut h);
        Some(h.finish128().as_u128())
    }

    fn token_tag(&self, token: &SessionToken) -> Option<u128> {
        self.tag(TOKEN, |h| h.write(token.expose().as_bytes()))
    }

    /// The token's session id: remembered, or computed (SHA-256). A computed one comes with
    /// the tag to remember it under ([`Memo::remember_id`]), once it named a session.
    pub fn session_id(&self, token: &SessionToken) -> (String, Option<u128>) {
        let tag = self.token_tag(token);
        match tag.and_then(|t| self.ids.get(&t)) {
            Some(id) => (id.to_string(), None),
            None => (token.id(), tag),
        }
    }

    /// The id computed under `tag` named a session: worth remembering.
    pub fn remember_id(&self, tag: u128, id: &str) {
        self.ids.insert(tag, Arc::from(id));
    }

    /// The tag of the bytes `device`'s fingerprint is made of (`None`: no key).
    pub fn device_tag(&self, device: &Device<'_>) -> Option<u128> {
        self.tag(DEVICE, |h| {
            device
                .spec
                .feed(device.ip, device.headers, &mut |bytes| h.write(bytes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_only_for_their_own_token() {
        let memo = Memo::new(16);
        let a = SessionToken::for_user("a");
        let b = SessionToken::for_user("b");
        let (id, tag) = memo.session_id(&a);
        assert_eq!(id, a.id());
        memo.remember_id(tag.expect("computed, so to remember"), &id);
        assert_eq!(memo.session_id(&a), (a.id(), None), "remembered");
        assert_eq!(
            memo.session_id(&b).0,
            b.id(),
            "another token is never given a's id"
        );
    }

    #[test]
    fn device_tags_follow_the_fingerprint_inputs() {
        let memo = Memo::new(16);
        let spec = FingerprintSpec::default();
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", http::HeaderValue::from_static("A"));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let tag = |headers: &http::HeaderMap, ip| {
            memo.device_tag(&Device {
                spec: &spec,
                ip,
                headers,
            })
        };
        let first = tag(&headers, ip);
        assert!(first.is_some());
        let mut padded = http::HeaderMap::new();
        padded.insert("user-agent", http::HeaderValue::from_static("  A "));
        assert_eq!(
            tag(&padded, ip),
            first,
            "same bytes as the fingerprint hashes"
        );
        headers.insert("user-agent", http::HeaderValue::from_static("B"));
        assert_ne!(tag(&headers, ip), first);
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        headers.insert("user-agent", http::HeaderValue::from_static("A"));
        assert_ne!(tag(&headers, other), first);
        // Another process (key) gives other tags for the same request.
        let again = Memo::new(16).device_tag(&Device {
            spec: &spec,
            ip,
            headers: &headers,
        });
        assert_ne!(again, first);
    }
}
