//! Liveness and readiness, as orchestrators mean them.
//!
//! - `/livez`: the process serves requests. Nothing else: a Redis outage must not make a
//!   load balancer or Kubernetes restart or drop every gateway, since public routes keep
//!   working without Redis.
//! - `/readyz` (and `/health`, its older name): the gateway can do its whole job: Redis
//!   answers (when a route is protected) and every upstream has a healthy server.
//!
//! The public listener says only `{"status": ...}`; the names and states of the dependencies
//! are for the private metrics listener, not for anyone on the internet.

use crate::policy::Policy;
use crate::response::LocalResponse;
use crate::session_cache::SessionCache;
use arc_swap::ArcSwap;
use authflow_shared::store::SessionStore;
use serde_json::json;
use std::sync::Arc;

/// A handle on everything `/health` looks at; shared by the proxy and the private listener.
#[derive(Clone)]
pub struct Health {
    store: Arc<dyn SessionStore>,
    /// The policy in force: its upstreams, and whether sessions are needed.
    policy: Arc<ArcSwap<Policy>>,
    /// The session cache, reported in the details (it never decides readiness).
    cache: Option<Arc<SessionCache>>,
}

/// Which question a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

impl Probe {
    /// The probe answered at `path`, if any.
    pub fn at(path: &str) -> Option<Probe> {
        match path {
            "/livez" => Some(Probe::Live),
            "/readyz" | "/health" => Some(Probe::Ready),
            _ => None,
        }
    }
}

impl Health {
    pub fn new(store: Arc<dyn SessionStore>, policy: Arc<ArcSwap<Policy>>) -> Self {
        Health {
            store,
            policy,
            cache: None,
        }
    }

    /// Reports `cache` in the details too.
    pub fn with_cache(mut self, cache: Option<Arc<SessionCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// The answer to `probe`: 200 or 503; with `details`, each dependency's state too.
    pub async fn report(&self, probe: Probe, details: bool) -> LocalResponse {
        if probe == Probe::Live {
            return LocalResponse::json(200, json!({ "status": "ok" }));
        }
        let policy = self.policy.load_full();
        let store_up = self.store.ping().await.is_ok();
        let upstreams_up = policy.upstreams.iter().all(|u| u.health().0 > 0);
        let ready = (store_up || !policy.needs_store) && upstreams_up;
        let status = if ready { "ok" } else { "unavailable" };
        let code = if ready { 200 } else { 503 };
        if !details {
            return LocalResponse::json(code, json!({ "status": status }));
        }
        let upstreams: serde_json::Map<String, serde_json::Value> = policy
            .upstreams
            .iter()
            .map(|u| {
                let (healthy, total) = u.health();
                (
                    u.name.clone(),
                    json!({ "healthy": healthy, "total": total }),
                )
            })
            .collect();
        let cache = self.cache.as_ref().map_or(
            json!("off"),
            |c| json!({ "live": c.is_live(), "entries": c.len() }),
        );
        LocalResponse::json(
            code,
            json!({
                "status": status,
                self.store.kind(): if store_up { "up" } else { "down" },
                "upstreams": upstreams,
                "session_cache": cache,
            }),
        )
    }
}

impl Health {
    /// Sets `authflow_gateway_upstream_server_up{upstream,server}` for every server of the
    /// upstreams in force (before a scrape: servers come and go with DNS and reloads).
    pub fn export_upstreams(&self) {
        let policy = self.policy.load();
        crate::metrics::upstream_servers(policy.upstreams.iter().flat_map(|u| {
            u.servers_up()
                .into_iter()
                .map(|(addr, up)| (u.name.as_str(), addr, up))
        }));
    }
}
