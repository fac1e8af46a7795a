//! The Redis key schema. Every key either service reads or writes is built here, so the two
//! can never disagree on a format.
//!
//! `{id}` is the session id: the hex SHA-256 of the session token (see [`crate::token`]), so a
//! Redis dump holds no usable cookie.

use std::time::Duration;

/// `session:{id}`: the [`crate::session::SessionRecord`] as JSON.
pub fn session(id: &str) -> String {
    format!("session:{id}")
}

/// `user_sessions:{user_id}`: a set of the user's session ids (for revoke-all and listing).
pub fn user_sessions(user_id: &str) -> String {
    format!("user_sessions:{user_id}")
}

/// `device:{user_id}`: a set of device fingerprints the user has signed in from.
pub fn device(user_id: &str) -> String {
    format!("device:{user_id}")
}

/// `user_id:{id}`: the user id of session `{id}`, for a quick lookup without decoding the record.
pub fn user_id(session_id: &str) -> String {
    format!("user_id:{session_id}")
}

/// `user_profile:{user_id}`: a cached copy of the user's public profile (JSON).
pub fn user_profile(user_id: &str) -> String {
    format!("user_profile:{user_id}")
}

/// `revoked_before:{user_id}`: Unix ms of the user's last revoke-all (password reset). A
/// sign-in that began checking credentials before it may not create a session, so a sign-in
/// racing a reset cannot outlive it.
pub fn revoked_before(user_id: &str) -> String {
    format!("revoked_before:{user_id}")
}

/// `login_attempts:{account}`: a sorted set of the account's recent unsuccessful sign-in
/// attempts, scored by Unix ms (a sliding window). `account` is the SHA-256 of the
/// normalized email, so the key exists alike for unknown addresses.
pub fn login_attempts(account: &str) -> String {
    format!("login_attempts:{account}")
}

/// `login_lock:{account}`: present while sign-in to the account is locked; its TTL is the
/// time left.
pub fn login_lock(account: &str) -> String {
    format!("login_lock:{account}")
}

/// `login_total:{account}`: unsuccessful attempts since the last success or reset; past the
/// hard cap only a password reset unlocks the account.
pub fn login_total(account: &str) -> String {
    format!("login_total:{account}")
}

/// `mail_cooldown:{address}`: present while no further account mail (reset link, "someone
/// tried to register") may go to the address (its SHA-256), so no address can be mail-bombed.
pub fn mail_cooldown(address: &str) -> String {
    format!("mail_cooldown:{address}")
}

/// Default idle timeout of a session (`session:{id}` TTL, refreshed by activity).
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
        assert_eq!(session("ab"), "session:ab");
        assert_eq!(user_sessions("u1"), "user_sessions:u1");
        assert_eq!(device("u1"), "device:u1");
        assert_eq!(user_id("ab"), "user_id:ab");
        assert_eq!(user_profile("u1"), "user_profile:u1");
    }
}
