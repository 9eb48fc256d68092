//! Nonces seen within the signature window, bounded. A nonce is refused if seen before. The
//! memory is capped: when full, the oldest entry goes and the *floor* rises to its timestamp —
//! a request signed at or before the floor is refused (`SignatureNonceUsed`: its nonce can no
//! longer be checked; signing again fixes it). Under a load that fills the cache faster than
//! the window passes, the replay window narrows to what the cache holds (65,536 nonces: about
//! 4 s at 15,000 requests a second) instead of memory growing; more requests within one second
//! than the cache holds are throttled (`Rejected.Throttling`, 429), never let through
//! unchecked. Nonces are kept as 64-bit keyed hashes (SipHash with a per-process random
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
        if self.order.len() >= self.capacity {
            let (oldest, old) = *self.order.front().expect("full");
            if oldest >= timestamp {
                // Evicting would make this very second unverifiable: more requests arrive in
                // one second than the cache holds.
                self.seen.remove(&hash);
                return Err(ApiError::new(
                    429,
                    "Rejected.Throttling",
                    "Too many requests in one second for this server to check their nonces; retry.",
                ));
            }
            self.order.pop_front();
            self.seen.remove(&old);
            self.floor = self.floor.max(oldest);
        }
        self.order.push_back((timestamp, hash));
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
            n.check(&format!("n{i}"), 1001 + i / 50, 1001 + i / 50, 900)
                .unwrap();
        }
        assert_eq!(n.len(), 100);
        // Older than what the cache can vouch for: refused, even with a fresh nonce.
        assert_eq!(
            n.check("fresh", 1001, 1200, 900).unwrap_err().code,
            "SignatureNonceUsed"
        );
        n.check("fresh", 1200, 1200, 900).unwrap();
        assert!(n.check("", 1200, 1200, 900).is_err());
        // More in one second than the cache holds: throttled, not forgotten.
        let mut m = Nonces::new(10);
        for i in 0..10 {
            m.check(&format!("s{i}"), 5000, 5000, 900).unwrap();
        }
        assert_eq!(
            m.check("s10", 5000, 5000, 900).unwrap_err().code,
            "Rejected.Throttling"
        );
        assert_eq!(
            m.check("s0", 5000, 5000, 900).unwrap_err().code,
            "SignatureNonceUsed"
        );
        m.check("t0", 5001, 5001, 900).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn never_more_than_capacity_and_never_a_repeat(
            nonces in proptest::collection::vec(("[a-z]{1,3}", 0i64..50), 1..400)
        ) {
            let mut n = Nonces::new(32);
            let mut accepted = std::collections::HashSet::new();
            for (nonce, at) in nonces {
                if n.check(&nonce, 1000 + at, 1050, 900).is_ok() {
                    // Accepted twice only if the first acceptance left the cache.
                    proptest::prop_assert!(accepted.insert(nonce.clone()) || n.len() == 32);
                }
                proptest::prop_assert!(n.len() <= 32);
            }
        }
    }
}
