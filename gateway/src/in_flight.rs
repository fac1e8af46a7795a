//! A cap on the requests one client address has in flight at once, so a single address
//! cannot hold every upstream connection with slow requests. Counters live in a fixed table
//! of atomics indexed by a keyed hash of the address: one atomic add on the way in and one
//! on the way out, no lock, bounded memory. Two addresses that share a slot share a count,
//! which can only refuse early, never let more through.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Slots in the table (4 bytes each).
const SLOTS: usize = 65_536;

/// The address already has its limit of requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

pub struct InFlight {
    slots: Box<[AtomicU32]>,
    limit: u32,
    /// Keyed per process, so nobody can pick addresses that collide on purpose.
    hasher: RandomState,
}

impl InFlight {
    /// A table allowing `limit` requests in flight per address; `0` turns the cap off.
    pub fn new(limit: u32) -> Self {
        InFlight {
            slots: (0..if limit == 0 { 0 } else { SLOTS })
                .map(|_| AtomicU32::new(0))
                .collect(),
            limit,
            hasher: RandomState::new(),
        }
    }

    /// Counts a request of `client` in and returns its slot (`None` when there is no cap),
    /// to be handed to [`InFlight::leave`]; [`OverLimit`] when it already has `limit` in
    /// flight (then nothing was counted).
    pub fn enter(&self, client: IpAddr) -> Result<Option<usize>, OverLimit> {
        if self.limit == 0 {
            return Ok(None);
        }
        let slot = (self.hasher.hash_one(client) as usize) % SLOTS;
        let counter = &self.slots[slot];
        let before = counter.fetch_add(1, Ordering::AcqRel);
        if before >= self.limit {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(OverLimit);
        }
        Ok(Some(slot))
    }

    /// Counts a request out.
    pub fn leave(&self, slot: usize) {
        if let Some(counter) = self.slots.get(slot) {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_releases() {
        let f = InFlight::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let s1 = f.enter(a).expect("first").expect("slot");
        let _s2 = f.enter(a).expect("second");
        assert!(f.enter(a).is_err(), "third in flight");
        assert!(f.enter(b).is_ok(), "another address");
        f.leave(s1);
        assert!(f.enter(a).is_ok(), "a slot was freed");
        assert_eq!(InFlight::new(0).enter(a), Ok(None));
    }
}
