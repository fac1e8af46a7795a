//! HTTP/2 streams a client cancelled, per connection: the rapid-reset attack
//! (CVE-2023-44487) opens and cancels streams as fast as it can, so that the server's
//! concurrent-stream limit never binds while each stream still costs a request's work.
//! The `h2` crate only bounds streams reset before they were accepted; Pingora accepts at
//! once, so the ones cancelled afterwards are counted here. Past the budget, every further
//! stream of that connection is answered 429 before any lookup or upstream.

use quick_cache::sync::Cache;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Connections remembered at once: enough for every attacker a gateway can serve; the
/// least used are forgotten first.
const CONNECTIONS: usize = 16_384;

pub struct StreamResets {
    max: u32,
    /// Keyed by the client's address and port: unique while its connection lives.
    counts: Cache<SocketAddr, Arc<AtomicU32>>,
}

impl StreamResets {
    /// `max` cancelled streams per connection; `0` counts nothing.
    pub fn new(max: u32) -> Self {
        StreamResets {
            max,
            counts: Cache::new(if max == 0 { 1 } else { CONNECTIONS }),
        }
    }

    /// Whether the connection from `client` has cancelled more streams than allowed.
    pub fn over(&self, client: SocketAddr) -> bool {
        self.max > 0
            && self
                .counts
                .get(&client)
                .is_some_and(|n| n.load(Ordering::Relaxed) > self.max)
    }

    /// The connection from `client` cancelled a stream before its answer was complete.
    pub fn cancelled(&self, client: SocketAddr) {
        if self.max == 0 {
            return;
        }
        match self.counts.get(&client) {
            Some(n) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => self.counts.insert(client, Arc::new(AtomicU32::new(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_over_only_past_its_budget_and_alone() {
        let r = StreamResets::new(3);
        let a: SocketAddr = "10.0.0.1:1000".parse().expect("addr");
        let b: SocketAddr = "10.0.0.1:1001".parse().expect("addr");
        for _ in 0..3 {
            r.cancelled(a);
        }
        assert!(!r.over(a));
        r.cancelled(a);
        assert!(r.over(a));
        assert!(!r.over(b), "another connection of the same address is not");
        let off = StreamResets::new(0);
        for _ in 0..10 {
            off.cancelled(a);
        }
        assert!(!off.over(a));
    }
}
