//! Who may pass a route once a session is found: the route's requirements against what the
//! session proves ([`Claims`]): its roles, then its second factor and how fresh that is
//! (issue 21). `decide` in `proxy.rs` and `/verify` make one call, [`check`], and turn its
//! [`Access`] into a response in one place each.
//!
//! The check runs on every request to a protected route, on a record the session cache
//! already holds: a binary search in the session's sorted roles per required role
//! (benches/request_path.rs: "access: ...", tens of ns); a second factor is a scan of `amr`
//! (a handful of entries, 6.5 ns) and, only for a route with `mfa_max_age`, one clock read
//! (35 ns in all). Nothing allocates; a route that demands nothing loops over nothing.

use authflow_shared::roles::{self, RoleError};
use authflow_shared::session::Claims;
use std::time::Duration;

/// What a route (or a `/verify` caller) demands beyond a valid session. Role names are
/// checked when the config is ([`authflow_shared::roles::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// One of these admits (empty: no such demand).
    pub any: Vec<String>,
    /// Every one of these is needed.
    pub all: Vec<String>,
    /// A second factor in the session (`mfa = true`), and how recent (`mfa_max_age`).
    pub second_factor: Option<SecondFactor>,
}

/// The demand for a second factor: the session's `amr` holds one of
/// [`authflow_shared::session::SECOND_FACTORS`], used at most `max_age` ago when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondFactor {
    pub max_age: Option<Duration>,
}

impl SecondFactor {
    /// The demand that satisfies both: the shorter `max_age`.
    fn and(self, other: SecondFactor) -> SecondFactor {
        let max_age = match (self.max_age, other.max_age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        SecondFactor { max_age }
    }

    /// `Err(reason)` for a `max_age` the answer could not state: RFC 9470's `max_age` is
    /// whole seconds, and under a second every request would be asked again.
    pub fn check_max_age(max_age: Duration) -> Result<(), &'static str> {
        if max_age < Duration::from_secs(1) || max_age.subsec_nanos() != 0 {
            return Err("must be whole seconds, at least 1s (it is sent as max_age in seconds)");
        }
        Ok(())
    }
}

impl Requirements {
    pub fn new(any: &[String], all: &[String]) -> Self {
        Requirements {
            any: any.to_vec(),
            all: all.to_vec(),
            second_factor: None,
        }
    }

    /// `?roles=a,b` on a forward-auth check URL: any of them admits.
    pub fn from_query(list: &str) -> Result<Self, RoleError> {
        Ok(Requirements {
            any: roles::parse_list(list)?,
            ..Requirements::default()
        })
    }

    /// Nothing beyond a session.
    pub fn is_open(&self) -> bool {
        self.any.is_empty() && self.all.is_empty() && self.second_factor.is_none()
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allow,
    /// Signed in, but not allowed here: 403 (the session stays; the cookie is kept).
    Forbidden(Denied),
    /// Allowed by roles, but the route wants a second factor the session has not shown, or
    /// one used more recently than `max_age` (the strictest demanded): a step-up, 302 to the
    /// second-factor page or 401 (the session stays; the cookie is kept).
    SecondFactor {
        max_age: Option<Duration>,
        why: StepUp,
    },
}

/// Why a signed-in request was refused: for logs, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// None of the route's `roles`.
    NoneOfRoles,
    /// Not every one of the route's `roles_all`.
    NotAllRoles,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::NoneOfRoles => "none_of_roles",
            Denied::NotAllRoles => "not_all_roles",
        }
    }
}

/// Why a second factor is asked for: for logs, never for the client (which is told only
/// `max_age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUp {
    /// The session shows no second factor (a password or provider sign-in alone).
    Missing,
    /// Its second factor was used longer ago than the route's `mfa_max_age`.
    Stale,
}

impl StepUp {
    pub fn as_str(self) -> &'static str {
        match self {
            StepUp::Missing => "no_second_factor",
            StepUp::Stale => "second_factor_too_old",
        }
    }
}

/// Whether a session proving `claims` may pass every one of `needs`, now. Roles first, over
/// every requirement: someone without the role is refused (403), never asked for a second
/// factor they could not use here anyway. The clock is read only when a `max_age` is
/// demanded of a session that has a second factor.
pub fn check(needs: &[&Requirements], claims: &Claims) -> Access {
    decide(needs, claims, authflow_shared::now_ms)
}

/// [`check`] at `now_ms` (Unix ms).
pub fn check_at(needs: &[&Requirements], claims: &Claims, now_ms: u64) -> Access {
    decide(needs, claims, || now_ms)
}

fn decide(needs: &[&Requirements], claims: &Claims, now_ms: impl FnOnce() -> u64) -> Access {
    let mut second_factor: Option<SecondFactor> = None;
    for n in needs {
        if !n.any.is_empty() && !n.any.iter().any(|r| claims.has_role(r)) {
            return Access::Forbidden(Denied::NoneOfRoles);
        }
        if !n.all.iter().all(|r| claims.has_role(r)) {
            return Access::Forbidden(Denied::NotAllRoles);
        }
        if let Some(sf) = n.second_factor {
            second_factor = Some(second_factor.map_or(sf, |d| d.and(sf)));
        }
    }
    let Some(SecondFactor { max_age }) = second_factor else {
        return Access::Allow;
    };
    let Some(at) = claims.second_factor_at() else {
        return Access::SecondFactor {
            max_age,
            why: StepUp::Missing,
        };
    };
    match max_age {
        // Stamped after `now` (the auth service's clock a little ahead): just used.
        Some(max) if now_ms().saturating_sub(at) > max.as_millis() as u64 => Access::SecondFactor {
            max_age,
            why: StepUp::Stale,
        },
        _ => Access::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(roles: &[&str]) -> Claims {
        Claims {
            roles: roles::normalize(roles.iter().copied()).expect("roles"),
            ..Claims::default()
        }
    }

    fn req(any: &[&str], all: &[&str]) -> Requirements {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Requirements::new(&v(any), &v(all))
    }

    #[test]
    fn any_of_roles_admits() {
        let admin_or_ops = req(&["admin", "ops"], &[]);
        assert_eq!(check(&[&admin_or_ops], &claims(&["ops"])), Access::Allow);
        assert_eq!(
            check(&[&admin_or_ops], &claims(&["dev"])),
            Access::Forbidden(Denied::NoneOfRoles)
        );
        assert_eq!(
            check(&[&admin_or_ops], &Claims::default()),
            Access::Forbidden(Denied::NoneOfRoles)
        );
    }

    #[test]
    fn all_roles_are_needed() {
        let both = req(&[], &["admin", "ops"]);
        assert_eq!(
            check(&[&both], &claims(&["ops", "admin", "x"])),
            Access::Allow
        );
        assert_eq!(
            check(&[&both], &claims(&["ops"])),
            Access::Forbidden(Denied::NotAllRoles)
        );
    }

    #[test]
    fn open_routes_and_every_requirement() {
        assert!(req(&[], &[]).is_open());
        assert_eq!(check(&[&req(&[], &[])], &Claims::default()), Access::Allow);
        let route = req(&["staff"], &[]);
        let query = Requirements::from_query("admin").expect("query");
        assert_eq!(
            check(&[&route, &query], &claims(&["staff"])),
            Access::Forbidden(Denied::NoneOfRoles)
        );
        assert_eq!(
            check(&[&route, &query], &claims(&["staff", "admin"])),
            Access::Allow
        );
        assert!(Requirements::from_query("admin,bad role").is_err());
    }

    fn mfa(max_age_secs: Option<u64>) -> Requirements {
        Requirements {
            second_factor: Some(SecondFactor {
                max_age: max_age_secs.map(Duration::from_secs),
            }),
            ..Requirements::default()
        }
    }

    /// A session signed in at `auth_time` with `amr`, its second factor last used at
    /// `mfa_time`.
    fn signed_in(amr: &[&str], auth_time: u64, mfa_time: Option<u64>) -> Claims {
        Claims {
            amr: amr.iter().map(|m| m.to_string()).collect(),
            auth_time: Some(auth_time),
            mfa_time,
            ..Claims::default()
        }
    }

    const T: u64 = 1_800_000_000_000;

    fn asked(max_age_secs: Option<u64>, why: StepUp) -> Access {
        Access::SecondFactor {
            max_age: max_age_secs.map(Duration::from_secs),
            why,
        }
    }

    #[test]
    fn a_second_factor_is_asked_of_a_session_without_one() {
        let route = mfa(None);
        assert!(!route.is_open());
        let password = signed_in(&["pwd"], T, None);
        assert_eq!(
            check_at(&[&route], &password, T),
            asked(None, StepUp::Missing)
        );
        // mfa_time alone proves nothing: amr names the factor.
        let stamped = signed_in(&["pwd"], T, Some(T));
        assert_eq!(
            check_at(&[&route], &stamped, T),
            asked(None, StepUp::Missing)
        );
        let provider = signed_in(&["fed"], T, None);
        assert_eq!(
            check_at(&[&route], &provider, T),
            asked(None, StepUp::Missing)
        );
        for factor in ["otp", "hwk", "swk", "mfa"] {
            let with = signed_in(&["pwd", factor], T, Some(T));
            assert_eq!(check_at(&[&route], &with, T + 86_400_000), Access::Allow);
        }
        // Without a demand, no factor is needed.
        assert_eq!(check_at(&[], &password, T), Access::Allow);
    }

    #[test]
    fn a_second_factor_older_than_max_age_is_asked_again() {
        let route = mfa(Some(900));
        let fresh = signed_in(&["pwd", "otp"], T - 3_600_000, Some(T));
        assert_eq!(check_at(&[&route], &fresh, T), Access::Allow);
        assert_eq!(check_at(&[&route], &fresh, T + 900_000), Access::Allow);
        assert_eq!(
            check_at(&[&route], &fresh, T + 900_001),
            asked(Some(900), StepUp::Stale)
        );
        // Without mfa_time, the factor was used at sign-in.
        let at_sign_in = signed_in(&["pwd", "otp"], T, None);
        assert_eq!(check_at(&[&route], &at_sign_in, T + 900_000), Access::Allow);
        assert_eq!(
            check_at(&[&route], &at_sign_in, T + 900_001),
            asked(Some(900), StepUp::Stale)
        );
        // A stamp from a clock a little ahead is fresh, not an underflow.
        let ahead = signed_in(&["pwd", "otp"], T, Some(T + 5_000));
        assert_eq!(check_at(&[&route], &ahead, T), Access::Allow);
        // No factor at all is Missing, whatever the age asked.
        assert_eq!(
            check_at(&[&route], &signed_in(&["pwd"], T, None), T),
            asked(Some(900), StepUp::Missing)
        );
        // `check` reads the clock: a factor used an hour ago is stale now.
        let hour_ago = authflow_shared::now_ms() - 3_600_000;
        assert_eq!(
            check(&[&route], &signed_in(&["otp"], hour_ago, None)),
            asked(Some(900), StepUp::Stale)
        );
    }

    #[test]
    fn roles_are_checked_before_the_second_factor() {
        let mut admin_mfa = req(&["admin"], &[]);
        admin_mfa.second_factor = Some(SecondFactor::default());
        let no_role_no_factor = signed_in(&["pwd"], T, None);
        assert_eq!(
            check_at(&[&admin_mfa], &no_role_no_factor, T),
            Access::Forbidden(Denied::NoneOfRoles)
        );
        // Also when the role is asked by another requirement (`/verify?roles=`) after it.
        let query = Requirements::from_query("admin").expect("query");
        assert_eq!(
            check_at(&[&mfa(Some(60)), &query], &no_role_no_factor, T),
            Access::Forbidden(Denied::NoneOfRoles)
        );
        let mut admin = no_role_no_factor.clone();
        admin.roles = vec!["admin".into()];
        assert_eq!(
            check_at(&[&admin_mfa], &admin, T),
            asked(None, StepUp::Missing)
        );
        admin.amr.push("otp".into());
        assert_eq!(check_at(&[&admin_mfa, &query], &admin, T), Access::Allow);
    }

    #[test]
    fn the_strictest_of_several_demands_answers() {
        let claims = signed_in(&["pwd", "otp"], T, Some(T));
        let at = T + 61_000;
        for needs in [
            [&mfa(Some(900)), &mfa(Some(60))],
            [&mfa(Some(60)), &mfa(None)],
            [&mfa(None), &mfa(Some(60))],
        ] {
            assert_eq!(
                check_at(&needs, &claims, at),
                asked(Some(60), StepUp::Stale)
            );
        }
        assert_eq!(
            check_at(&[&mfa(None), &mfa(Some(900))], &claims, at),
            Access::Allow
        );
    }

    #[test]
    fn max_age_is_whole_seconds_of_at_least_one() {
        assert!(SecondFactor::check_max_age(Duration::from_secs(1)).is_ok());
        assert!(SecondFactor::check_max_age(Duration::from_secs(900)).is_ok());
        assert!(SecondFactor::check_max_age(Duration::ZERO).is_err());
        assert!(SecondFactor::check_max_age(Duration::from_millis(1_500)).is_err());
    }
}
