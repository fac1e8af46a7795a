//! What `/health` reports. The public listener says only whether the gateway can do its job
//! (`{"status": "ok"}`); the names and states of its dependencies (Redis, each upstream's
//! healthy servers) are for the private metrics listener, not for anyone on the internet.

use crate::response::LocalResponse;
use crate::upstream::Upstream;
use authflow_shared::store::SessionStore;
use serde_json::json;
use std::sync::Arc;

/// A handle on everything `/health` looks at; shared by the proxy and the private listener.
#[derive(Clone)]
pub struct Health {
    store: Arc<dyn SessionStore>,
    upstreams: Vec<Upstream>,
}

impl Health {
    pub fn new(store: Arc<dyn SessionStore>, upstreams: Vec<Upstream>) -> Self {
        Health { store, upstreams }
    }

    /// 200 when the session store answers, 503 otherwise; with `details`, each dependency's
    /// state too.
    pub async fn report(&self, details: bool) -> LocalResponse {
        let store_up = self.store.ping().await.is_ok();
        let status = if store_up { "ok" } else { "unavailable" };
        let code = if store_up { 200 } else { 503 };
        if !details {
            return LocalResponse::json(code, json!({ "status": status }));
        }
        let upstreams: serde_json::Map<String, serde_json::Value> = self
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
        LocalResponse::json(
            code,
            json!({
                "status": status,
                self.store.kind(): if store_up { "up" } else { "down" },
                "upstreams": upstreams,
            }),
        )
    }
}
