//! Nonces seen within the signature window, bounded. A nonce is refused if seen before. The
//! memory is capped: when full, the oldest entries go and the *floor* rises to their timestamp —
//! a request signed at or before the floor is refused, since its nonce can no longer be checked.
//! Under a load that fills the cache faster than the window passes, the replay window narrows
//! to what the cache holds (65,536 nonces: about 4 s at 15,000 requests a second) instead of
//! memory growing. Nonces are kept as 64-bit keyed hashes (SipHash with a per-process random
//! key): 24 bytes or so each, so the cache stays near 2 MB.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

use super::ApiError;

pub const DEFAULT_CAPACITY: usize = 65_536;
/// The longest nonce kept (longer ones are refused).
const MAX_NONCE: usize = 128;

pub struct Nonces {
    hasher: RandomState,
    seen: HashSet<u64>,
    /// (signed timestamp, nonce hash), in arrival order.
    order: VecDeque<(i64, u64)>,
    capacity: usize,
    floor: i64,
}

impl Nonces {
    /// A cache for `capacity` nonces, taking its whole memory now (the tables are filled once
    /// and emptied, so their pages are resident from the start): the server's memory does not
    /// grow with the requests it serves.
    pub fn new(capacity: usize) -> Nonces {
        let capacity = capacity.max(1);
        // Room for twice the entries: with removals leaving tombstones, a table more than half
        // full would double itself when it runs out of free slots; at most half full, it
        // cleans up in place.
        let mut seen = HashSet::with_capacity(2 * capacity);
        let mut order = VecDeque::with_capacity(capacity);
        for i in 0..2 * capacity as u64 {
            seen.insert(i);
        }
        for i in 0..capacity as u64 {
            order.push_back((0, i));
        }
        seen.clear();
        order.clear();
        Nonces {
            hasher: RandomState::new(),
            seen,
            order,
            capacity,
            floor: i64::MIN,
        }
    }

    /// Records `nonce` of a request signed at `timestamp` (Unix seconds), or refuses it.
    pub fn check(
        &mut self,
        nonce: &str,
        timestamp: i64,
        now: i64,
        window: i64,
    ) -> Result<(), ApiError> {
        if nonce.is_empty() || nonce.len() > MAX_NONCE {
            return Err(ApiError::invalid(format!(
                "SignatureNonce must be 1 to {MAX_NONCE} characters."
            )));
        }
        // Entries older than the window cannot be replayed anyway.
        while let Some((at, _)) = self.order.front() {
            if *at >= now - window {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        if timestamp <= self.floor {
            return Err(ApiError::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce cannot be checked any more (the request is too old for this server's load); sign it again.",
            ));
        }
        let hash = self.hasher.hash_one(nonce);
        if !self.seen.insert(hash) {
            return Err(ApiError::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        self.order.push_back((timestamp, hash));
        while self.order.len() > self.capacity {
            let (at, old) = self.order.pop_front().expect("over capacity");
            self.seen.remove(&old);
            self.floor = self.floor.max(at);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_is_refused_and_memory_stays_bounded() {
        let mut n = Nonces::new(100);
        n.check("a", 1000, 1000, 900).unwrap();
        assert_eq!(
            n.check("a", 1000, 1000, 900).unwrap_err().code,
            "SignatureNonceUsed"
        );
        for i in 0..10_000 {
            n.check(&format!("n{i}"), 1001 + i / 1000, 1001 + i / 1000, 900)
                .unwrap();
        }
        assert_eq!(n.len(), 100);
        // Older than what the cache can vouch for: refused, even with a fresh nonce.
        assert_eq!(
            n.check("fresh", 1001, 1011, 900).unwrap_err().code,
            "SignatureNonceUsed"
        );
        n.check("fresh", 1011, 1011, 900).unwrap();
        assert!(n.check("", 1011, 1011, 900).is_err());
    }
}
