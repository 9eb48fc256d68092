//! Logged-in sessions kept for a short while, so that a rotation's steps, and rotations that
//! follow one another on a host, do not each pay a fresh SSH login (about 90 ms on loopback:
//! key exchange, authentication, the server's fork and PAM).
//!
//! Only sessions rotor has already checked are kept: the target admin's (found root or sudo,
//! keyed by the admin credential, so a re-imported admin secret never meets the old one's
//! session) and a user's own (the host agreed on who logged in). A kept session is taken out
//! while in use — one user at a time, so no server channel limit is met — handed out only while
//! its connection is open, kept at most [`IDLE`] unused and at most [`PER_KEY`] per key. What
//! proves a credential never comes from here: `test` and every check log in afresh.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::client::Session;
use super::remote::Admin;

/// How long a kept session may sit unused.
pub const IDLE: Duration = Duration::from_secs(30);
/// Sessions kept per host and user.
pub const PER_KEY: usize = 4;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The target's name and settings (address, pinned host key).
    host: String,
    user: String,
    /// The admin credential's digest (salted per process); empty for a user's own sessions.
    credential: Vec<u8>,
}

struct Pool<T> {
    kept: HashMap<Key, Vec<(Instant, T)>>,
}

impl<T> Pool<T> {
    fn take(&mut self, key: &Key, open: impl Fn(&T) -> bool) -> Option<T> {
        self.sweep();
        let list = self.kept.get_mut(key)?;
        while let Some((_, item)) = list.pop() {
            if open(&item) {
                return Some(item);
            }
        }
        None
    }

    fn give(&mut self, key: Key, item: T) {
        self.sweep();
        let list = self.kept.entry(key).or_default();
        if list.len() < PER_KEY {
            list.push((Instant::now(), item));
        }
    }

    /// Drops (and so disconnects) what sat unused too long.
    fn sweep(&mut self) {
        for list in self.kept.values_mut() {
            list.retain(|(at, _)| at.elapsed() < IDLE);
        }
        self.kept.retain(|_, list| !list.is_empty());
    }
}

static USERS: LazyLock<Mutex<Pool<Session>>> = LazyLock::new(|| {
    Mutex::new(Pool {
        kept: HashMap::new(),
    })
});
static ADMINS: LazyLock<Mutex<Pool<Admin>>> = LazyLock::new(|| {
    Mutex::new(Pool {
        kept: HashMap::new(),
    })
});
static SALT: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

fn digest(credential: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(*SALT);
    hash.update(credential);
    hash.finalize().to_vec()
}

fn user_key(host: &str, user: &str) -> Key {
    Key {
        host: host.to_owned(),
        user: user.to_owned(),
        credential: vec![],
    }
}

fn admin_key(host: &str, user: &str, credential: &[u8]) -> Key {
    Key {
        host: host.to_owned(),
        user: user.to_owned(),
        credential: digest(credential),
    }
}

/// A kept session of `user` on `host`, if one is open.
pub fn take_user(host: &str, user: &str) -> Option<Session> {
    USERS
        .lock()
        .expect("session pool")
        .take(&user_key(host, user), Session::is_open)
}

/// Keeps a checked session of its user on `host`.
pub fn keep_user(host: &str, session: Session) {
    let key = user_key(host, &session.user);
    USERS.lock().expect("session pool").give(key, session);
}

/// authorized_keys files as rotor last read or wrote them, by host and user: the guess an
/// edit sends with its write, which the host compares with the file (SHA-256) before
/// replacing it, so a guess that is out of date costs a read, never a wrong edit.
static FILES: LazyLock<Mutex<Pool<Option<Vec<u8>>>>> = LazyLock::new(|| {
    Mutex::new(Pool {
        kept: HashMap::new(),
    })
});
/// Files remembered at most (the oldest are forgotten first).
const FILES_KEPT: usize = 1024;

/// `user`'s authorized_keys on `host` as rotor last saw it (`Some(None)`: there was none).
pub fn known_file(host: &str, user: &str) -> Option<Option<Vec<u8>>> {
    let mut files = FILES.lock().expect("file cache");
    files.sweep();
    // Looked at, not refreshed: its age stays that of the read or write that saw it.
    let list = files.kept.get(&user_key(host, user))?;
    list.last().map(|(_, content)| content.clone())
}

/// Remembers `user`'s authorized_keys on `host` as rotor just read or wrote it; `None`
/// forgets it.
pub fn remember_file(host: &str, user: &str, content: Option<Option<Vec<u8>>>) {
    let mut files = FILES.lock().expect("file cache");
    let key = user_key(host, user);
    files.kept.remove(&key);
    if let Some(content) = content {
        if files.kept.len() >= FILES_KEPT {
            let oldest = files
                .kept
                .iter()
                .min_by_key(|(_, list)| list.last().map(|(at, _)| *at))
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                files.kept.remove(&oldest);
            }
        }
        files.give(key, content);
    }
}

/// A kept session of the admin whose credential is `credential`, if one is open.
pub fn take_admin(host: &str, user: &str, credential: &[u8]) -> Option<Admin> {
    ADMINS
        .lock()
        .expect("session pool")
        .take(&admin_key(host, user, credential), |a| a.session.is_open())
}

/// Keeps an admin session logged in with `credential`.
pub fn keep_admin(host: &str, credential: &[u8], admin: Admin) {
    let key = admin_key(host, &admin.user, credential);
    ADMINS.lock().expect("session pool").give(key, admin);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_out_only_open_items_and_forgets_idle_ones() {
        let mut pool = Pool {
            kept: HashMap::new(),
        };
        let key = user_key("h", "u");
        pool.give(key.clone(), 1);
        pool.give(key.clone(), 2);
        assert_eq!(
            pool.take(&key, |i| *i == 1),
            Some(1),
            "a closed one is dropped"
        );
        assert_eq!(pool.take(&key, |_| true), None);
        for i in 0..10 {
            pool.give(key.clone(), i);
        }
        assert_eq!(pool.kept[&key].len(), PER_KEY);
        if let Some(long_ago) = Instant::now().checked_sub(IDLE + Duration::from_secs(1)) {
            pool.kept.get_mut(&key).unwrap()[0].0 = long_ago;
            pool.sweep();
            assert_eq!(pool.kept[&key].len(), PER_KEY - 1, "idle too long: dropped");
        }
        assert!(
            admin_key("h", "root", b"one") != admin_key("h", "root", b"two"),
            "another admin credential never meets the old one's session"
        );
    }
}
