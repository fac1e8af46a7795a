//! The session record stored as JSON under `session:{id}`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a sign-in leaves in Redis. Timestamps are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Hex SHA-256 device fingerprint of the client that signed in.
    pub fingerprint: String,
    pub created_at: u64,
    pub last_seen_at: u64,
    /// Absolute expiry: the session ends here whatever the activity.
    pub expires_at: u64,
    /// The signing-in browser's `User-Agent` (cut to 256 bytes), to describe the device in
    /// the session list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The signing-in client's address with its last part hidden (`203.0.113.x`): enough
    /// for a person to recognise a place, not to locate them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_hint: Option<String>,
    /// Provider-specific data kept with the session (e.g. encrypted upstream tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_data: Option<String>,
    /// What the session proves about its holder: how and when they signed in, and the roles
    /// they held as of the last change. Absent in records written before it existed (they
    /// read as proving nothing beyond the sign-in, with no roles).
    #[serde(default, skip_serializing_if = "Claims::is_empty")]
    pub claims: Claims,
    /// With `on_fingerprint_mismatch = "reauth"`: set (Unix ms) when a request from another
    /// device put the session aside. Refused for every device until the person signs in
    /// again from the new one (which re-binds it) or the hold runs out (the record's TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<u64>,
    /// The fingerprint the session was bound to before its last re-bind: that device is
    /// refused without putting the session aside again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_fingerprint: Option<String>,
}

/// What a session proves, in one shape for every sign-in method and every check: the
/// gateway's route access (roles now; the second factor and its freshness later), `/verify`
/// and the identity headers all read this, never flags spread over the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Authentication methods used (RFC 8176 values: `pwd`, later `otp`, `hwk`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// When the person last proved who they are (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// The external provider (`[[identity.providers]]` id) the person signed in through, when
    /// `amr` holds `fed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// The account's roles, sorted and unique ([`crate::roles::normalize`]). Re-written in
    /// every live session of the user when an operator changes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// When a second factor was last used in this session (Unix ms): at sign-in, or at a
    /// step-up. Routes with `mfa_max_age` compare against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_time: Option<u64>,
}

/// `amr` values (RFC 8176) that are a second factor: a one-time code, a hardware- or
/// software-bound key (passkey), or a provider's own multi-factor sign-in.
pub const SECOND_FACTORS: [&str; 4] = ["otp", "hwk", "swk", "mfa"];

impl Claims {
    /// A password sign-in at `now_ms` by someone holding `roles` (already normalized).
    pub fn password(now_ms: u64, roles: Vec<String>) -> Self {
        Claims {
            amr: vec!["pwd".into()],
            auth_time: Some(now_ms),
            idp: None,
            roles,
            mfa_time: None,
        }
    }

    /// A sign-in at `now_ms` through provider `idp` (RFC 8176 `fed`); `with_password` when
    /// the person also gave the account's password (linking the identity to it).
    pub fn federated(now_ms: u64, idp: &str, with_password: bool, roles: Vec<String>) -> Self {
        let mut amr = vec!["fed".to_owned()];
        if with_password {
            amr.insert(0, "pwd".to_owned());
        }
        Claims {
            amr,
            auth_time: Some(now_ms),
            idp: Some(idp.to_owned()),
            roles,
            mfa_time: None,
        }
    }

    /// When the session's last second factor was used, if it has one.
    pub fn second_factor_at(&self) -> Option<u64> {
        self.amr
            .iter()
            .any(|m| SECOND_FACTORS.contains(&m.as_str()))
            .then_some(self.mfa_time.or(self.auth_time))
            .flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.amr.is_empty()
            && self.auth_time.is_none()
            && self.idp.is_none()
            && self.roles.is_empty()
            && self.mfa_time.is_none()
    }

    /// Whether the session holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles
            .binary_search_by(|r| r.as_str().cmp(role))
            .is_ok()
    }
}

/// Why a stored session is no longer valid at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
}

impl SessionRecord {
    /// A new record for a sign-in at `now_ms`, ending at most `absolute` later.
    pub fn new(
        user_id: impl Into<String>,
        email: Option<String>,
        fingerprint: impl Into<String>,
        now_ms: u64,
        absolute: Duration,
    ) -> Self {
        SessionRecord {
            user_id: user_id.into(),
            email,
            fingerprint: fingerprint.into(),
            created_at: now_ms,
            last_seen_at: now_ms,
            expires_at: now_ms.saturating_add(absolute.as_millis() as u64),
            user_agent: None,
            ip_hint: None,
            provider_data: None,
            claims: Claims::default(),
            held_since: None,
            replaced_fingerprint: None,
        }
    }

    /// When the session ends whatever the activity: the expiry written at sign-in, or
    /// `absolute` after sign-in if that is sooner (a lowered `absolute_timeout` applies to
    /// sessions that already exist).
    pub fn ends_at(&self, absolute: Duration) -> u64 {
        self.expires_at
            .min(self.created_at.saturating_add(absolute.as_millis() as u64))
    }

    /// `Some(reason)` when the session is over at `now_ms` under `idle` inactivity and the
    /// `absolute` lifetime.
    pub fn expiry(&self, now_ms: u64, idle: Duration, absolute: Duration) -> Option<Expiry> {
        self.expiry_seen(now_ms, self.last_seen_at, idle, absolute)
    }

    /// Like [`SessionRecord::expiry`], with activity at `seen_ms` known besides the record's
    /// own (an instance's cache knows of requests the record has not heard of yet).
    pub fn expiry_seen(
        &self,
        now_ms: u64,
        seen_ms: u64,
        idle: Duration,
        absolute: Duration,
    ) -> Option<Expiry> {
        let last_seen = self.last_seen_at.max(seen_ms);
        if now_ms >= self.ends_at(absolute) {
            Some(Expiry::Absolute)
        } else if now_ms.saturating_sub(last_seen) >= idle.as_millis() as u64 {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// The Redis TTL the record should carry: the idle timeout, never past the absolute expiry.
    pub fn ttl(&self, now_ms: u64, idle: Duration, absolute: Duration) -> Duration {
        let idle_ms = idle.as_millis() as u64;
        let left = self.ends_at(absolute).saturating_sub(now_ms);
        Duration::from_millis(idle_ms.min(left).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let r = SessionRecord::new("u", None, "fp", 1_000, Duration::from_secs(10));
        let idle = Duration::from_secs(3);
        let abs = Duration::from_secs(3600);
        assert_eq!(r.expiry(2_000, idle, abs), None);
        assert_eq!(r.expiry(4_000, idle, abs), Some(Expiry::Idle));
        let mut touched = r.clone();
        touched.last_seen_at = 10_500;
        assert_eq!(touched.expiry(10_999, idle, abs), None);
        assert_eq!(touched.expiry(11_000, idle, abs), Some(Expiry::Absolute));
        // A shorter configured absolute timeout wins over the one written at sign-in.
        assert_eq!(
            touched.expiry(10_999, idle, Duration::from_secs(5)),
            Some(Expiry::Absolute)
        );
    }

    #[test]
    fn records_without_claims_stay_valid_and_claims_round_trip() {
        let old =
            r#"{"user_id":"u","fingerprint":"fp","created_at":1,"last_seen_at":1,"expires_at":9}"#;
        let r: SessionRecord = serde_json::from_str(old).expect("old record");
        assert!(r.claims.is_empty());
        assert_eq!(serde_json::to_string(&r).expect("json"), old);
        let mut new = r.clone();
        new.claims = Claims::password(5, vec!["admin".into(), "ops".into()]);
        let json = serde_json::to_string(&new).expect("json");
        assert!(json.contains(r#""claims":{"amr":["pwd"],"auth_time":5,"roles":["admin","ops"]}"#));
        let back: SessionRecord = serde_json::from_str(&json).expect("new record");
        assert!(back.claims.has_role("ops") && !back.claims.has_role("op"));
    }

    #[test]
    fn ttl_never_passes_absolute_expiry() {
        let r = SessionRecord::new("u", None, "fp", 0, Duration::from_secs(10));
        let (idle, abs) = (Duration::from_secs(3), Duration::from_secs(3600));
        assert_eq!(r.ttl(0, idle, abs), Duration::from_secs(3));
        assert_eq!(r.ttl(9_000, idle, abs), Duration::from_secs(1));
        assert_eq!(
            r.ttl(0, idle, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
