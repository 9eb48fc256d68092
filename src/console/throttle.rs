//! Failed console logins, counted per user name and per client address. After
//! [`FREE_FAILURES`] failures in a row, the name (or address) must wait before it may try again:
//! 30 s, doubling with every further failure, up to [`MAX_LOCK`]. An attempt counts as a
//! failure from the moment it is let in ([`Throttle::attempt`]), before its password is checked,
//! so attempts sent at once cannot all pass while the first are still being checked. A login
//! that succeeds clears the name's count and takes back its own count at the address (one
//! account must not reset the count of guesses from its address at other names). A count left alone for [`MAX_LOCK`]
//! starts again. While either waits, a login is refused without checking the password. Names
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
    last: Instant,
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
            last: now,
        });
        if now.duration_since(f.last) >= MAX_LOCK && f.until.is_none_or(|u| u <= now) {
            // Quiet for as long as the longest wait: start again.
            f.count = 0;
            f.until = None;
        }
        f.last = now;
        f.count = f.count.saturating_add(1);
        if f.count >= FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES).min(16);
            f.until = Some(now + (FIRST_LOCK * 2u32.pow(doublings)).min(MAX_LOCK));
        }
    }

    /// Takes back one counted failure (an attempt that succeeded after all), with the wait it
    /// may have started.
    fn undo_one(&self, key: &K) {
        let mut map = self.0.lock().expect("login throttle");
        if let Some(f) = map.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            if f.count < FREE_FAILURES {
                f.until = None;
            }
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
    /// Makes [`attempt`](Self::attempt)'s check and count one step.
    gate: Mutex<()>,
}

impl Throttle {
    /// How long `user` or `address` must still wait, if either must.
    pub fn wait(&self, user: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        let user = self.users.wait(&user.to_owned(), now);
        let address = self.addresses.wait(&address, now);
        user.max(address)
    }

    /// Lets a login attempt in, counted as a failure until it succeeds; or how long `user` or
    /// `address` must still wait. Checked and counted under one lock each, so attempts sent at
    /// once are counted before any password is checked.
    pub fn attempt(&self, user: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let _one_at_a_time = self.gate.lock().expect("login throttle");
        if let Some(wait) = self.wait(user, address, now) {
            return Err(wait);
        }
        self.failed(user, address, now);
        Ok(())
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, address: IpAddr, now: Instant) {
        self.users.failed(user.to_owned(), now);
        self.addresses.failed(address, now);
    }

    /// A login succeeded: the name starts again from zero; the address only takes back this
    /// attempt (one account must not wipe its address's count of guesses at other names).
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        self.users.cleared(&user.to_owned());
        self.addresses.undo_one(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_sent_at_once_are_counted_before_their_passwords_are_checked() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        // Ten attempts in flight at once (none checked yet): only five are let in.
        let let_in = (0..10).filter(|_| t.attempt("ops", a, now).is_ok()).count();
        assert_eq!(let_in, FREE_FAILURES as usize);
        // A success takes back its own count at the address, and clears the name.
        let t = Throttle::default();
        for _ in 0..3 {
            t.attempt("ops", a, now).unwrap();
            t.succeeded("ops", a);
        }
        for _ in 0..FREE_FAILURES - 1 {
            t.attempt("dev", a, now).unwrap();
        }
        assert!(
            t.attempt("qa", a, now).is_ok(),
            "logins that succeeded are not guesses"
        );
        assert!(t.attempt("qa", a, now).is_err(), "the address waits now");
    }

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
        t.failed("ops", b, now);
        assert_eq!(t.wait("ops", b, now), None, "a success clears the name");
        assert!(
            t.wait("dev", a, now).is_some(),
            "but not the address's guesses at other names"
        );
    }
}
