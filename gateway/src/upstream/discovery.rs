//! Where an upstream's servers come from: each configured `host:port` resolved again on every
//! round, from a server list that a reload replaces in place.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Turns `host:port` into addresses. The DNS in production; a stand-in in tests.
#[async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, host_port: &str) -> std::io::Result<Vec<std::net::SocketAddr>>;
}

/// The system resolver.
pub struct Dns;

#[async_trait]
impl Resolve for Dns {
    async fn resolve(&self, host_port: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok(tokio::net::lookup_host(host_port).await?.collect())
    }
}

/// Discovery that resolves every configured `host:port` again on each round. An entry that
/// does not resolve this time is left out (and logged); when none resolves, discovery fails
/// and Pingora keeps the servers it had.
pub struct Resolving {
    servers: ServerList,
    resolver: Arc<dyn Resolve>,
}

/// The configured `host:port` list, shared with the upstream so that a reload can replace it.
pub type ServerList = Arc<ArcSwap<Vec<String>>>;

impl Resolving {
    pub fn new(servers: ServerList, resolver: Arc<dyn Resolve>) -> Self {
        Resolving { servers, resolver }
    }
}

#[async_trait]
impl ServiceDiscovery for Resolving {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut found = BTreeSet::new();
        let servers = self.servers.load_full();
        for server in servers.iter() {
            match self.resolver.resolve(server).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if let Ok(b) = Backend::new(&addr.to_string()) {
                            found.insert(b);
                        }
                    }
                }
                Err(e) => tracing::warn!(server, error = %e, "upstream host does not resolve"),
            }
        }
        if found.is_empty() {
            return pingora::Error::e_explain(
                pingora::ErrorType::ConnectNoRoute,
                "no upstream server resolves",
            );
        }
        Ok((found, HashMap::new()))
    }
}
