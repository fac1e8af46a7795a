//! Who may pass a route once a session is found: the route's requirements against what the
//! session proves ([`Claims`]). Roles today; the second factor and its freshness (issue 21)
//! join here, as further requirements with further answers, so `decide` in `proxy.rs` and
//! `/verify` keep one call: [`check`].
//!
//! The check runs on every request to a protected route, on a record the session cache
//! already holds: a binary search in the session's sorted roles per required role
//! (benches/request_path.rs: "access: ...", tens of ns).

use authflow_shared::roles::{self, RoleError};
use authflow_shared::session::Claims;

/// What a route (or a `/verify` caller) demands beyond a valid session. Role names are
/// checked when the config is ([`authflow_shared::roles::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// One of these admits (empty: no such demand).
    pub any: Vec<String>,
    /// Every one of these is needed.
    pub all: Vec<String>,
}

impl Requirements {
    pub fn new(any: &[String], all: &[String]) -> Self {
        Requirements {
            any: any.to_vec(),
            all: all.to_vec(),
        }
    }

    /// `?roles=a,b` on a forward-auth check URL: any of them admits.
    pub fn from_query(list: &str) -> Result<Self, RoleError> {
        Ok(Requirements {
            any: roles::parse_list(list)?,
            all: Vec::new(),
        })
    }

    /// Nothing beyond a session.
    pub fn is_open(&self) -> bool {
        self.any.is_empty() && self.all.is_empty()
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allow,
    /// Signed in, but not allowed here: 403 (the session stays; the cookie is kept).
    Forbidden(Denied),
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

/// Whether a session proving `claims` may pass every one of `needs`.
pub fn check(needs: &[&Requirements], claims: &Claims) -> Access {
    for n in needs {
        if !n.any.is_empty() && !n.any.iter().any(|r| claims.has_role(r)) {
            return Access::Forbidden(Denied::NoneOfRoles);
        }
        if !n.all.iter().all(|r| claims.has_role(r)) {
            return Access::Forbidden(Denied::NotAllRoles);
        }
    }
    Access::Allow
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
}
