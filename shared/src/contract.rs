//! The session contract: what the gateway and the auth service must agree on about sessions.
//! Both config files hold it as their `[session]` table, parsed into this one type, so the
//! two cannot drift in shape or defaults; `authflow check gateway.toml auth.toml` compares the
//! values of two files ([`SessionContract::differences`]).

use crate::config::{HumanDuration, Problems, Validate};
use crate::cookie::CookieSpec;
use crate::fingerprint::FingerprintSpec;
use crate::keys;
use serde::{Deserialize, Serialize};

/// `[session]` in both `gateway.toml` and `auth.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionContract {
    /// The session cookie's name. A `__Host-` name makes browsers bind it to this exact host.
    pub cookie_name: String,
    /// Whether the cookie carries `Secure`. Both sides must agree so that the gateway's
    /// clearing `Set-Cookie` replaces the cookie the auth service set.
    pub cookie_secure: bool,
    /// A session ends after this long without a request (the `session:{id}` TTL, refreshed by
    /// activity).
    pub idle_timeout: HumanDuration,
    /// ...and at the latest this long after sign-in, whatever the activity.
    pub absolute_timeout: HumanDuration,
    /// What identifies the device that signed in; computed at sign-in and on every request.
    pub fingerprint: FingerprintSpec,
}

impl Default for SessionContract {
    fn default() -> Self {
        SessionContract {
            cookie_name: "authflow_session".into(),
            cookie_secure: true,
            idle_timeout: HumanDuration(keys::SESSION_IDLE_TTL),
            absolute_timeout: HumanDuration(keys::SESSION_ABSOLUTE_TTL),
            fingerprint: FingerprintSpec::default(),
        }
    }
}

impl Validate for SessionContract {
    fn validate(&self, p: &mut Problems) {
        if !crate::cookie::valid_name(&self.cookie_name) {
            p.add(
                "cookie_name",
                format!("{:?} is not a valid cookie name", self.cookie_name),
            );
        }
        if let Some(prefix) = crate::cookie::secure_prefix(&self.cookie_name) {
            if !self.cookie_secure {
                p.add(
                    "cookie_secure",
                    format!(
                        "a {prefix} cookie must be Secure (browsers match the prefix in any case)"
                    ),
                );
            }
        }
        if self.idle_timeout.0.is_zero() {
            p.add("idle_timeout", "must be greater than 0");
        }
        if self.absolute_timeout < self.idle_timeout {
            p.add("absolute_timeout", "must not be shorter than idle_timeout");
        }
        p.section("fingerprint", &self.fingerprint);
    }
}

/// One setting on which two files disagree: its key under `[session]` and both values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub key: &'static str,
    pub left: String,
    pub right: String,
}

impl SessionContract {
    /// The cross-section check both files make: a cookie without `Secure` is only for a
    /// development box that listens on loopback, unless the file says `insecure_dev = true`.
    /// `listeners` are the file's listen addresses; the problem goes to
    /// `session.cookie_secure`.
    pub fn check_secure_cookie(&self, listeners: &[&str], insecure_dev: bool, p: &mut Problems) {
        if self.cookie_secure || insecure_dev {
            return;
        }
        let exposed: Vec<&str> = listeners
            .iter()
            .copied()
            .filter(|l| {
                l.parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| !a.ip().is_loopback())
            })
            .collect();
        if let Some(first) = exposed.first() {
            p.add(
                "session.cookie_secure",
                format!(
                    "false while listening on {first}, beyond this machine: browsers would send \
                     the session cookie in clear text; set it true (behind TLS), or set \
                     insecure_dev = true for a development box"
                ),
            );
        }
    }

    /// How the cookie is written and cleared.
    pub fn cookie(&self) -> CookieSpec {
        CookieSpec {
            name: self.cookie_name.clone(),
            secure: self.cookie_secure,
        }
    }

    /// Every setting on which `self` and `other` disagree, in file order, values shown as they
    /// would be written in TOML.
    pub fn differences(&self, other: &SessionContract) -> Vec<Difference> {
        let fields = |c: &SessionContract| -> [(&'static str, String); 7] {
            let fp = &c.fingerprint;
            [
                ("cookie_name", format!("{:?}", c.cookie_name)),
                ("cookie_secure", c.cookie_secure.to_string()),
                ("idle_timeout", format!("\"{}\"", c.idle_timeout)),
                ("absolute_timeout", format!("\"{}\"", c.absolute_timeout)),
                (
                    "fingerprint.components",
                    serde_json::to_string(&fp.components).unwrap_or_default(),
                ),
                ("fingerprint.ipv4_prefix", fp.ipv4_prefix.to_string()),
                ("fingerprint.ipv6_prefix", fp.ipv6_prefix.to_string()),
            ]
        };
        fields(self)
            .into_iter()
            .zip(fields(other))
            .filter(|((_, a), (_, b))| a != b)
            .map(|((key, left), (_, right))| Difference { key, left, right })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::problems_of;

    #[test]
    fn defaults_are_valid_and_use_the_schema_ttls() {
        let c = SessionContract::default();
        assert!(problems_of(&c).is_empty());
        assert_eq!(c.idle_timeout.0, keys::SESSION_IDLE_TTL);
    }

    #[test]
    fn bad_values_are_named() {
        let c = SessionContract {
            cookie_name: "__Host-x".into(),
            cookie_secure: false,
            idle_timeout: HumanDuration::secs(60),
            absolute_timeout: HumanDuration::secs(30),
            fingerprint: FingerprintSpec {
                components: vec![],
                ..FingerprintSpec::default()
            },
        };
        let keys: Vec<_> = problems_of(&c).into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            vec![
                "cookie_secure",
                "absolute_timeout",
                "fingerprint.components"
            ]
        );
    }

    /// Browsers refuse a `__Host-` or `__Secure-` cookie without `Secure` whatever the case
    /// of the prefix, so a config naming one in any case must ask for `Secure`.
    #[test]
    fn prefixed_cookie_names_need_secure_in_any_case() {
        for name in [
            "__Host-x",
            "__host-x",
            "__HOST-x",
            "__Secure-x",
            "__secure-x",
        ] {
            let c = SessionContract {
                cookie_name: name.into(),
                cookie_secure: false,
                ..SessionContract::default()
            };
            let keys: Vec<_> = problems_of(&c).into_iter().map(|p| p.0).collect();
            assert_eq!(keys, vec!["cookie_secure"], "{name}");
            let secure = SessionContract {
                cookie_secure: true,
                ..c
            };
            assert!(problems_of(&secure).is_empty(), "{name}");
        }
        let plain = SessionContract {
            cookie_name: "host-x".into(),
            cookie_secure: false,
            ..SessionContract::default()
        };
        assert!(problems_of(&plain).is_empty());
    }

    #[test]
    fn a_cookie_without_secure_stays_on_loopback_unless_insecure_dev() {
        let c = SessionContract {
            cookie_secure: false,
            ..SessionContract::default()
        };
        let check = |listeners: &[&str], dev: bool| {
            let mut p = Problems::new();
            c.check_secure_cookie(listeners, dev, &mut p);
            p.into_vec().into_iter().map(|x| x.0).collect::<Vec<_>>()
        };
        assert!(check(&["127.0.0.1:8000", "[::1]:8443"], false).is_empty());
        assert_eq!(
            check(&["0.0.0.0:8000"], false),
            vec!["session.cookie_secure"]
        );
        assert!(check(&["0.0.0.0:8000"], true).is_empty());
    }

    #[test]
    fn differences_list_every_disagreement() {
        let a = SessionContract::default();
        assert!(a.differences(&a.clone()).is_empty());
        let mut b = a.clone();
        b.cookie_name = "sid".into();
        b.fingerprint.ipv4_prefix = 24;
        let d = a.differences(&b);
        assert_eq!(
            d,
            vec![
                Difference {
                    key: "cookie_name",
                    left: "\"authflow_session\"".into(),
                    right: "\"sid\"".into()
                },
                Difference {
                    key: "fingerprint.ipv4_prefix",
                    left: "32".into(),
                    right: "24".into()
                },
            ]
        );
    }
}
