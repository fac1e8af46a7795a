//! Routing on the canonical path and host ([`crate::canonical`]): the longest path prefix
//! wins; a route bound to a host beats one that is not. Prefixes match in any ASCII case
//! unless the route is `case_sensitive`.

use crate::access::{Requirements, SecondFactor};
use crate::config::{AuthMode, RouteConfig};
use crate::metrics::traffic::{route_label, RouteMetrics};
use std::sync::Arc;

/// A route, resolved against the upstream list.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub host: Option<String>,
    /// Index into the gateway's upstream list.
    pub upstream: usize,
    pub auth: AuthMode,
    pub auth_service: bool,
    pub case_sensitive: bool,
    /// Largest request body, already defaulted from `[limits]`.
    pub max_body_bytes: u64,
    /// `Upgrade: websocket` is let through.
    pub websocket: bool,
    /// `TRACE` is forwarded.
    pub allow_trace: bool,
    /// Headers stripped by default that this route passes (lower case).
    pub pass_headers: Vec<String>,
    /// Who may pass, besides holding a session ([`crate::access`]).
    pub access: Requirements,
    /// The route's traffic series (label: host + prefix).
    pub metrics: Arc<RouteMetrics>,
}

impl Route {
    fn matches_path(&self, path: &str) -> bool {
        prefix_matches(&self.prefix, path, self.case_sensitive)
    }

    /// `path` is this route's `/section/` prefix without its trailing slash.
    fn matches_bare(&self, path: &str) -> bool {
        let Some(section) = self.prefix.strip_suffix('/') else {
            return false;
        };
        !section.is_empty()
            && if self.case_sensitive {
                path == section
            } else {
                path.eq_ignore_ascii_case(section)
            }
    }

    fn matches_host(&self, host: Option<&str>) -> bool {
        self.host.as_deref().is_none_or(|rh| host == Some(rh))
    }
}

/// What routing found for a request.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// Shared, so a request holds its route without copying it.
    Found(&'a Arc<Route>),
    /// Only another spelling of a case-sensitive protected route matched: refused, so that
    /// `/APP/` cannot fall through to a public route while `/app/` is protected.
    CaseConflict,
    None,
}

pub struct Router {
    /// Longest prefix first; host-bound before host-less at equal length.
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// `upstream_index` maps an upstream name to its index (validated config: always found);
    /// routes without their own body limit get `max_body_bytes`.
    pub fn new(
        cfgs: &[RouteConfig],
        max_body_bytes: u64,
        upstream_index: impl Fn(&str) -> Option<usize>,
    ) -> Self {
        let mut routes: Vec<Arc<Route>> =
            cfgs.iter()
                .filter_map(|r| {
                    let host = r.host.as_deref().map(|h| {
                        crate::canonical::host(h).unwrap_or_else(|_| h.to_ascii_lowercase())
                    });
                    let label = route_label(host.as_deref(), &r.prefix);
                    Some(Arc::new(Route {
                        prefix: r.prefix.clone(),
                        host,
                        metrics: Arc::new(RouteMetrics::new(label)),
                        upstream: upstream_index(&r.upstream)?,
                        auth: r.auth,
                        auth_service: r.auth_service,
                        case_sensitive: r.case_sensitive,
                        max_body_bytes: r.max_body_bytes.unwrap_or(max_body_bytes),
                        websocket: r.websocket,
                        allow_trace: r.allow_trace,
                        pass_headers: r
                            .pass_headers
                            .iter()
                            .map(|h| h.to_ascii_lowercase())
                            .collect(),
                        access: Requirements {
                            second_factor: r.mfa.then(|| SecondFactor {
                                max_age: r.mfa_max_age.map(|d| d.0),
                            }),
                            ..Requirements::new(&r.roles, &r.roles_all)
                        },
                    }))
                })
                .collect();
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        Router { routes }
    }

    /// The route for the canonical `host` and `path`.
    /// `/admin` belongs to a route `/admin/` unless a route names `/admin` itself: most
    /// frameworks serve the bare path as the section's index (a public catch-all must not
    /// take it; black-box review).
    pub fn find(&self, host: Option<&str>, path: &str) -> RouteMatch<'_> {
        let normal = self
            .routes
            .iter()
            .find(|r| r.matches_path(path) && r.matches_host(host));
        let bare = self
            .routes
            .iter()
            .find(|r| r.matches_bare(path) && r.matches_host(host));
        let found = match (normal, bare) {
            (Some(n), Some(b)) if n.prefix.len() < path.len() => b,
            (None, Some(b)) => b,
            (Some(n), _) => n,
            (None, None) => return RouteMatch::None,
        };
        if found.auth == AuthMode::Public && self.shadows_protected(found, host, path) {
            return RouteMatch::CaseConflict;
        }
        RouteMatch::Found(found)
    }

    /// Whether a case-sensitive protected route at least as specific as `found` would have
    /// matched `path` but for its case.
    fn shadows_protected(&self, found: &Route, host: Option<&str>, path: &str) -> bool {
        self.routes.iter().any(|r| {
            r.case_sensitive
                && r.auth == AuthMode::Required
                && r.prefix.len() >= found.prefix.len()
                && r.matches_host(host)
                && prefix_matches(&r.prefix, path, false)
        })
    }
}

/// `/app/` matches `/app/x`; `/app` matches `/app` and `/app/x` but not `/apple`. Also the
/// rate-limit rules' match ([`crate::rate_limit`]).
pub(crate) fn prefix_matches(prefix: &str, path: &str, case_sensitive: bool) -> bool {
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let same = if case_sensitive {
        head == prefix
    } else {
        head.eq_ignore_ascii_case(prefix)
    };
    same && (prefix.ends_with('/')
        || path.len() == prefix.len()
        || path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, host: Option<&str>, upstream: &str) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            host: host.map(Into::into),
            upstream: upstream.into(),
            auth: AuthMode::Public,
            auth_service: false,
            case_sensitive: false,
            max_body_bytes: None,
            websocket: false,
            allow_trace: false,
            pass_headers: Vec::new(),
            roles: Vec::new(),
            roles_all: Vec::new(),
            mfa: false,
            mfa_max_age: None,
        }
    }

    fn found(m: RouteMatch<'_>) -> Option<usize> {
        match m {
            RouteMatch::Found(r) => Some(r.upstream),
            _ => None,
        }
    }

    fn router() -> Router {
        let names = ["root", "app", "admin", "api-host"];
        Router::new(
            &[
                route("/", None, "root"),
                route("/app/", None, "app"),
                route("/app/admin", None, "admin"),
                route("/app/", Some("api.example.com"), "api-host"),
            ],
            1024,
            |n| names.iter().position(|x| *x == n),
        )
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(found(r.find(None, "/app/x")), Some(1));
        assert_eq!(found(r.find(None, "/app/admin/users")), Some(2));
        assert_eq!(found(r.find(None, "/app/administrator")), Some(1));
        assert_eq!(found(r.find(None, "/other")), Some(0));
    }

    #[test]
    fn a_section_without_its_slash_belongs_to_the_section() {
        let r = router();
        assert_eq!(found(r.find(None, "/app")), Some(1));
        assert_eq!(found(r.find(None, "/APP")), Some(1));
        assert_eq!(found(r.find(Some("api.example.com"), "/app")), Some(3));
        assert_eq!(found(r.find(None, "/ap")), Some(0));
        // A route that names the bare path itself keeps it.
        let names = ["root", "section", "index"];
        let r = Router::new(
            &[
                route("/", None, "root"),
                route("/admin/", None, "section"),
                route("/admin", None, "index"),
            ],
            1024,
            |n| names.iter().position(|x| *x == n),
        );
        assert_eq!(found(r.find(None, "/admin")), Some(2));
        assert_eq!(found(r.find(None, "/admin/x")), Some(1));
    }

    #[test]
    fn host_routes_win_over_hostless() {
        let r = router();
        assert_eq!(found(r.find(Some("api.example.com"), "/app/x")), Some(3));
        assert_eq!(found(r.find(Some("www.example.com"), "/app/x")), Some(1));
    }

    #[test]
    fn no_route_without_catch_all() {
        let r = Router::new(&[route("/app", None, "app")], 1024, |_| Some(0));
        assert_eq!(found(r.find(None, "/apple")), None);
        assert_eq!(found(r.find(None, "/app")), Some(0));
        assert_eq!(found(r.find(None, "/app/1")), Some(0));
    }

    #[test]
    fn other_cases_match_unless_the_route_is_case_sensitive() {
        let r = router();
        assert_eq!(found(r.find(None, "/APP/x")), Some(1));
        assert_eq!(found(r.find(None, "/App/ADMIN/x")), Some(2));
        let names = ["root", "app"];
        let mut app = route("/app/", None, "app");
        app.auth = AuthMode::Required;
        app.case_sensitive = true;
        let r = Router::new(&[route("/", None, "root"), app], 1024, |n| {
            names.iter().position(|x| *x == n)
        });
        assert_eq!(found(r.find(None, "/app/x")), Some(1));
        assert!(matches!(r.find(None, "/APP/x"), RouteMatch::CaseConflict));
        assert_eq!(found(r.find(None, "/other")), Some(0));
    }
}
