//! The Redis key schema. Every key either service reads or writes is built here, so the two
//! can never disagree on a format.
//!
//! Schema version 2 ([`SCHEMA_VERSION`]): keys carry Redis Cluster hash tags, so that what
//! one script changes together lives in one slot. A user's keys and the keys of each of
//! their sessions share the tag `{t}` = [`slot_tag`] of the user id; a session id is
//! `{t}:<hex SHA-256 of the token>` (see [`crate::token`]), so a Redis dump holds no usable
//! cookie. The throttle's keys of one account share `{account}`. Version 1 had no tags;
//! its sessions are not found under version 2 (their holders sign in again).

use std::time::Duration;

/// The key schema's version (see the module documentation).
pub const SCHEMA_VERSION: u32 = 2;

/// The hash tag of `user_id`'s keys: the first four hex digits of its SHA-256.
pub fn slot_tag(user_id: &str) -> String {
    let mut tag = crate::digest::hash_hex(user_id.as_bytes());
    tag.truncate(4);
    tag
}

/// `session:{t}:<hash>`: the [`crate::session::SessionRecord`] as JSON (`id` carries the tag).
pub fn session(id: &str) -> String {
    format!("session:{id}")
}

/// `seen:{t}:<hash>`: Unix ms of the session's last activity, with the idle timeout as TTL.
/// Apart from the record so that activity never rewrites `session:{id}`: gateways cache
/// records and Redis tells them when one changes (client tracking); a touch of the record
/// itself would empty every gateway's cache entry on every touch.
pub fn seen(id: &str) -> String {
    format!("seen:{id}")
}

/// A key of the user's, in the user's slot: `<kind>:{t}:<user_id>`.
fn user_key(kind: &str, user_id: &str) -> String {
    format!("{kind}:{{{}}}:{user_id}", slot_tag(user_id))
}

/// `user_sessions:{t}:<user_id>`: a set of the user's session ids (for revoke-all and listing).
pub fn user_sessions(user_id: &str) -> String {
    user_key("user_sessions", user_id)
}

/// `device:{t}:<user_id>`: a set of device fingerprints the user has signed in from.
pub fn device(user_id: &str) -> String {
    user_key("device", user_id)
}

/// `user_id:{t}:<hash>`: the user id of a session, for a quick lookup without decoding the
/// record.
pub fn user_id(session_id: &str) -> String {
    format!("user_id:{session_id}")
}

/// `short_lived:<key>`: a record used once within minutes ([`crate::store::ShortLived`]);
/// `key` is already a hash or random, and names its kind (`sso:...`, `link:...`).
pub fn short_lived(key: &str) -> String {
    format!("short_lived:{key}")
}

/// `user_profile:{t}:<user_id>`: a cached copy of the user's public profile (JSON).
pub fn user_profile(user_id: &str) -> String {
    user_key("user_profile", user_id)
}

/// `revoked_before:{user_id}`: Unix ms of the user's last revoke-all (password reset). A
/// sign-in that began checking credentials before it may not create a session, so a sign-in
/// racing a reset cannot outlive it.
pub fn revoked_before(user_id: &str) -> String {
    user_key("revoked_before", user_id)
}

/// `rate:{<rule>:<key>}`: a shared rate limit's theoretical arrival time (µs) for one client
/// key (a hash of what the rule counts by); each key its own slot, so a Cluster spreads them.
pub fn rate_limit(rule: &str, key: &str) -> String {
    format!("rate:{{{rule}:{key}}}")
}

/// `login_attempts:{account}`: a sorted set of the account's recent unsuccessful sign-in
/// attempts, scored by Unix ms (a sliding window). `account` is the SHA-256 of the
/// normalized email, so the key exists alike for unknown addresses.
pub fn login_attempts(account: &str) -> String {
    format!("login_attempts:{{{account}}}")
}

/// `login_lock:{account}`: present while sign-in to the account is locked; its TTL is the
/// time left.
pub fn login_lock(account: &str) -> String {
    format!("login_lock:{{{account}}}")
}

/// `login_total:{account}`: unsuccessful attempts since the last success or reset; past the
/// hard cap only a password reset unlocks the account.
pub fn login_total(account: &str) -> String {
    format!("login_total:{{{account}}}")
}

/// `mail_cooldown:{address}`: present while no further account mail (reset link, "someone
/// tried to register") may go to the address (its SHA-256), so no address can be mail-bombed.
pub fn mail_cooldown(address: &str) -> String {
    format!("mail_cooldown:{address}")
}

/// Default idle timeout of a session (`seen:{id}` TTL, refreshed by activity).
pub const SESSION_IDLE_TTL: Duration = Duration::from_secs(3600);
/// Default absolute lifetime of a session; activity never extends it.
pub const SESSION_ABSOLUTE_TTL: Duration = Duration::from_secs(12 * 3600);
/// TTL of `device:{user_id}`.
pub const DEVICE_TTL: Duration = Duration::from_secs(86_400);
/// TTL of `user_id:{id}`, capped by the session's own remaining lifetime.
pub const USER_ID_TTL: Duration = Duration::from_secs(7200);
/// TTL of `user_profile:{user_id}`.
pub const USER_PROFILE_TTL: Duration = Duration::from_secs(1800);
/// TTL of `revoked_before:{user_id}`: longer than any sign-in takes.
pub const REVOKED_MARK_TTL: Duration = Duration::from_secs(3600);
/// TTL of `login_total:{account}`: the hard cap counts attempts over this long.
pub const LOGIN_TOTAL_TTL: Duration = Duration::from_secs(30 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_the_design() {
        let t = slot_tag("u1");
        assert_eq!(t.len(), 4);
        let id = format!("{{{t}}}:ab");
        assert_eq!(session(&id), format!("session:{{{t}}}:ab"));
        assert_eq!(seen(&id), format!("seen:{{{t}}}:ab"));
        assert_eq!(user_sessions("u1"), format!("user_sessions:{{{t}}}:u1"));
        assert_eq!(device("u1"), format!("device:{{{t}}}:u1"));
        assert_eq!(user_id(&id), format!("user_id:{{{t}}}:ab"));
        assert_eq!(user_profile("u1"), format!("user_profile:{{{t}}}:u1"));
        assert_eq!(revoked_before("u1"), format!("revoked_before:{{{t}}}:u1"));
        assert_eq!(login_attempts("acc"), "login_attempts:{acc}");
    }

    /// What one script touches shares one hash tag, so Redis Cluster keeps it in one slot.
    #[test]
    fn a_sessions_keys_and_its_users_keys_share_a_hash_tag() {
        let token = crate::token::SessionToken::for_user("someone");
        let id = token.id();
        let tag = |key: String| {
            let open = key.find('{').expect("tag");
            let close = key.find('}').expect("tag");
            key[open + 1..close].to_owned()
        };
        let expected = slot_tag("someone");
        for key in [
            session(&id),
            seen(&id),
            user_id(&id),
            user_sessions("someone"),
            device("someone"),
            user_profile("someone"),
            revoked_before("someone"),
        ] {
            assert_eq!(tag(key.clone()), expected, "{key}");
        }
    }
}
