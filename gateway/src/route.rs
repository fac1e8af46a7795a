//! Routing: the longest path prefix wins; a route bound to a host beats one that is not.

use crate::config::{AuthMode, RouteConfig};

/// A route, resolved against the upstream list.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub host: Option<String>,
    /// Index into the gateway's upstream list.
    pub upstream: usize,
    pub auth: AuthMode,
    pub auth_service: bool,
}

pub struct Router {
    /// Longest prefix first; host-bound before host-less at equal length.
    routes: Vec<Route>,
}

impl Router {
    /// `upstream_index` maps an upstream name to its index (validated config: always found).
    pub fn new(cfgs: &[RouteConfig], upstream_index: impl Fn(&str) -> Option<usize>) -> Self {
        let mut routes: Vec<Route> = cfgs
            .iter()
            .filter_map(|r| {
                Some(Route {
                    prefix: r.prefix.clone(),
                    host: r.host.as_deref().map(str::to_ascii_lowercase),
                    upstream: upstream_index(&r.upstream)?,
                    auth: r.auth,
                    auth_service: r.auth_service,
                })
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

    /// The route for `host` (without port, any case) and `path`, if any.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let host = host.map(|h| strip_port(h).to_ascii_lowercase());
        self.routes.iter().find(|r| {
            prefix_matches(&r.prefix, path)
                && r.host
                    .as_ref()
                    .is_none_or(|rh| host.as_deref() == Some(rh.as_str()))
        })
    }
}

/// `/app/` matches `/app/x`; `/app` matches `/app` and `/app/x` but not `/apple`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// False for paths an upstream could resolve differently from the gateway: dot segments
/// (also percent-encoded), encoded slashes and backslashes. Those would let `/app/../admin`
/// pass the check of one route and reach another.
pub fn path_is_safe(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
        return false;
    }
    lower
        .split('/')
        .map(|seg| seg.replace("%2e", "."))
        .all(|seg| seg != "." && seg != "..")
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
        }
    }

    fn router() -> Router {
        let names = ["root", "app", "admin", "api-host"];
        Router::new(
            &[
                route("/", None, "root"),
                route("/app/", None, "app"),
                route("/app/admin", None, "admin"),
                route("/app/", Some("API.example.com"), "api-host"),
            ],
            |n| names.iter().position(|x| *x == n),
        )
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(r.find(None, "/app/x").map(|r| r.upstream), Some(1));
        assert_eq!(
            r.find(None, "/app/admin/users").map(|r| r.upstream),
            Some(2)
        );
        assert_eq!(
            r.find(None, "/app/administrator").map(|r| r.upstream),
            Some(1)
        );
        assert_eq!(r.find(None, "/other").map(|r| r.upstream), Some(0));
    }

    #[test]
    fn host_routes_win_over_hostless() {
        let r = router();
        assert_eq!(
            r.find(Some("api.example.com:8443"), "/app/x")
                .map(|r| r.upstream),
            Some(3)
        );
        assert_eq!(
            r.find(Some("www.example.com"), "/app/x")
                .map(|r| r.upstream),
            Some(1)
        );
    }

    #[test]
    fn no_route_without_catch_all() {
        let r = Router::new(&[route("/app", None, "app")], |_| Some(0));
        assert!(r.find(None, "/apple").is_none());
        assert!(r.find(None, "/app").is_some());
        assert!(r.find(None, "/app/1").is_some());
    }

    #[test]
    fn unsafe_paths() {
        for bad in [
            "/app/../admin",
            "/app/%2e%2e/admin",
            "/app/%2E./x",
            "/a/./b",
            "/a%2fb",
            "/a\\b",
            "x",
        ] {
            assert!(!path_is_safe(bad), "{bad}");
        }
        for good in ["/", "/app/x.y", "/app/..x", "/a/b/"] {
            assert!(path_is_safe(good), "{good}");
        }
    }
}
