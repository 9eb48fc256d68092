//! Failed console logins, counted per user name and per client address. After
//! [`FREE_FAILURES`] failures in a row, the name (or address) must wait before it may try again:
//! 30 s, doubling with every further failure, up to [`MAX_LOCK`]. A login that succeeds clears
//! both counts. While either waits, a login is refused without checking the password. Names
//! that do not exist are counted like those that do, so the answers do not tell them apart.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row allowed before a wait.
pub const FREE_FAILURES: u32 = 5;
/// The first wait.
const FIRST_LOCK: Duration = Duration::from_secs(30);
/// The longest wait.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// The most names (or addresses) tracked; past it, those not waiting are forgotten.
const MAX_TRACKED: usize = 50_000;

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    until: Option<Instant>,
}

struct Counts<K>(Mutex<HashMap<K, Failures>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq> Counts<K> {
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let map = self.0.lock().expect("login throttle");
        let until = map.get(key)?.until?;
        (until > now).then(|| until - now)
    }

    fn failed(&self, key: K, now: Instant) {
        let mut map = self.0.lock().expect("login throttle");
        if map.len() >= MAX_TRACKED {
            map.retain(|_, f| f.until.is_some_and(|u| u > now));
        }
        let f = map.entry(key).or_insert(Failures {
            count: 0,
            until: None,
        });
        f.count = f.count.saturating_add(1);
        if f.count >= FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES).min(16);
            f.until = Some(now + (FIRST_LOCK * 2u32.pow(doublings)).min(MAX_LOCK));
        }
    }

    fn cleared(&self, key: &K) {
        self.0.lock().expect("login throttle").remove(key);
    }
}

/// Failed logins by user name and by address.
#[derive(Default)]
pub(super) struct Throttle {
    users: Counts<String>,
    addresses: Counts<IpAddr>,
}

impl Throttle {
    /// How long `user` or `address` must still wait, if either must.
    pub fn wait(&self, user: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        let user = self.users.wait(&user.to_owned(), now);
        let address = self.addresses.wait(&address, now);
        user.max(address)
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, address: IpAddr, now: Instant) {
        self.users.failed(user.to_owned(), now);
        self.addresses.failed(address, now);
    }

    /// A login succeeded: both start again from zero.
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        self.users.cleared(&user.to_owned());
        self.addresses.cleared(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_then_waits_that_double_up_to_the_cap() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("ops", a, now);
            assert_eq!(t.wait("ops", a, now), None);
        }
        t.failed("ops", a, now);
        assert_eq!(t.wait("ops", a, now), Some(FIRST_LOCK));
        // The name waits from any address; the address waits for any name.
        assert_eq!(t.wait("ops", b, now), Some(FIRST_LOCK));
        assert_eq!(t.wait("dev", a, now), Some(FIRST_LOCK));
        assert_eq!(t.wait("dev", b, now), None);
        t.failed("ops", a, now);
        assert_eq!(t.wait("ops", b, now), Some(FIRST_LOCK * 2));
        for _ in 0..20 {
            t.failed("ops", a, now);
        }
        assert_eq!(t.wait("ops", b, now), Some(MAX_LOCK));
        assert_eq!(t.wait("ops", b, now + MAX_LOCK), None);
        t.succeeded("ops", a);
        t.failed("ops", a, now);
        assert_eq!(t.wait("ops", a, now), None);
    }
}
