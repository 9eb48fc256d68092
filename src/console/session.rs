//! Console sessions and the checks every change passes.
//!
//! A session is a random token in a cookie (`Secure; HttpOnly; SameSite=Strict`, path
//! `/console`), kept in this process's memory by the token's SHA-256 (never the token itself),
//! with the user's rules read at login. It ends after [`IDLE_TIMEOUT`] without a request, after
//! [`ABSOLUTE_TIMEOUT`] in all, at logout, or when the process stops; a user deleted or
//! disabled loses it at the next request. A change (every `POST`) must come from this origin
//! (`Origin`, or `Sec-Fetch-Site`, when the browser sends them) and carry the session's CSRF
//! token in its form (`_csrf`), compared in constant time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{layout, Console};
use crate::policy::Policy;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after login, however busy.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name.
pub(super) const COOKIE: &str = "rotor_console";
/// The most sessions kept; past it the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in user, as a request sees it.
#[derive(Clone)]
pub(super) struct Active {
    /// The console user's name.
    pub user: String,
    /// What the user may do.
    pub policy: Policy,
    /// The token forms must carry.
    pub csrf: String,
    key: [u8; 32],
    credential: [u8; 32],
}

struct Session {
    user: String,
    /// A digest of the user's password hash when the session began: a user deleted and made
    /// again (a new hash, with its own salt) or given a new password never meets it.
    credential: [u8; 32],
    policy: Policy,
    csrf: String,
    created: Instant,
    seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.seen) >= IDLE_TIMEOUT
            || now.duration_since(self.created) >= ABSOLUTE_TIMEOUT
    }
}

/// The sessions of this process, by their token's hash.
#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn key_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn credential_of(password_hash: &str) -> [u8; 32] {
    Sha256::digest(password_hash.as_bytes()).into()
}

impl Sessions {
    /// A new session for `user`, signed in with the password whose stored hash is
    /// `password_hash`; returns its token (for the cookie).
    pub fn open(&self, user: &str, password_hash: &str, policy: Policy, now: Instant) -> String {
        let token = format!(
            "{}{}",
            crate::crypto::random_id(),
            crate::crypto::random_id()
        );
        let mut map = self.map.lock().expect("sessions");
        map.retain(|_, s| !s.expired(now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key_of(&token),
            Session {
                user: user.to_owned(),
                credential: credential_of(password_hash),
                policy,
                csrf: crate::crypto::random_id(),
                created: now,
                seen: now,
            },
        );
        token
    }

    /// The live session of `token`, its idle time restarted; an expired one is forgotten.
    pub fn get(&self, token: &str, now: Instant) -> Option<Active> {
        let key = key_of(token);
        let mut map = self.map.lock().expect("sessions");
        let session = map.get_mut(&key)?;
        if session.expired(now) {
            map.remove(&key);
            return None;
        }
        session.seen = now;
        Some(Active {
            user: session.user.clone(),
            policy: session.policy.clone(),
            csrf: session.csrf.clone(),
            key,
            credential: session.credential,
        })
    }

    /// Ends `active`'s session.
    pub fn close(&self, active: &Active) {
        self.map.lock().expect("sessions").remove(&active.key);
    }

    /// Ends every session of `user` (deleted or disabled).
    fn close_user(&self, user: &str) {
        self.map
            .lock()
            .expect("sessions")
            .retain(|_, s| s.user != user);
    }
}

/// The session token the request's cookie carries, if any.
fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The cookie that carries a new session's `token`.
pub(super) fn cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/console; Secure; HttpOnly; SameSite=Strict"
    ))
    .expect("a hex token is a header value")
}

/// The cookie that ends a session in the browser.
pub(super) fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "rotor_console=; Path=/console; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// The signed-in user of a request, if any: still enabled in the store, with the password it
/// signed in with (not a user deleted and made again under its name), and with the rules the
/// store holds now.
pub(super) async fn current(console: &Console, headers: &HeaderMap) -> Option<Active> {
    let mut active = console.sessions.get(token(headers)?, Instant::now())?;
    match console.store.console_login(&active.user).await {
        Ok(Some(login))
            if login.enabled && credential_of(&login.password_hash) == active.credential =>
        {
            active.policy = login.policy;
            Some(active)
        }
        Ok(Some(login)) if login.enabled => {
            // Another user of that name now: this session was its predecessor's.
            console.sessions.close(&active);
            None
        }
        Ok(_) => {
            console.sessions.close_user(&active.user);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: cannot read the user of a session");
            None
        }
    }
}

/// The signed-in user of a page request, or the answer that sends the browser to log in.
pub(super) async fn require(console: &Console, headers: &HeaderMap) -> Result<Active, Response> {
    current(console, headers)
        .await
        .ok_or_else(|| Redirect::to("/console/login").into_response())
}

/// Whether the browser says the request comes from a page of this origin: `Origin` (when
/// sent) names this scheme and host, and `Sec-Fetch-Site` (when sent) is `same-origin`. Clients that send
/// neither still need the CSRF token.
pub(super) fn same_origin(headers: &HeaderMap, tls: bool) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        // Scheme and host both: `http://HOST` is another origin than `https://HOST`.
        let scheme = if tls { "https" } else { "http" };
        let parts = origin.to_str().ok().and_then(|o| o.split_once("://"));
        match (parts, host) {
            (Some((s, authority)), Some(host)) if s == scheme && authority == host => {}
            _ => return false,
        }
    }
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin") | Some(b"none") => true,
        Some(_) => false,
    }
}

/// The signed-in user of a change: a session, this origin, and the session's CSRF token in
/// the form; otherwise `403` and nothing changes.
pub(super) async fn require_change(
    console: &Console,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Active, Response> {
    let refuse = |why: &str| layout::message(StatusCode::FORBIDDEN, "Refused", why).into_response();
    if !same_origin(headers, console.tls) {
        return Err(refuse("This request did not come from a console page."));
    }
    let Some(active) = current(console, headers).await else {
        return Err(refuse(
            "You are not signed in (or your session ended): sign in again.",
        ));
    };
    if !bool::from(active.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
        return Err(refuse(
            "This form is out of date or did not come from the console: reload the page and try again.",
        ));
    }
    Ok(active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let token = sessions.open("ops", "hash", Policy::default(), start);
        let minute = Duration::from_secs(60);
        assert_eq!(sessions.get(&token, start + minute).unwrap().user, "ops");
        // Busy: every request within the idle timeout keeps it, up to the absolute one.
        let mut at = start;
        while at + IDLE_TIMEOUT - minute < start + ABSOLUTE_TIMEOUT {
            at += IDLE_TIMEOUT - minute;
            assert!(sessions.get(&token, at).is_some());
        }
        assert!(sessions.get(&token, start + ABSOLUTE_TIMEOUT).is_none());
        // Idle.
        let token = sessions.open("ops", "hash", Policy::default(), start);
        assert!(sessions.get(&token, start + IDLE_TIMEOUT).is_none());
        assert!(sessions.get("not-a-token", start).is_none());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_changes_need_this_origin() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; rotor_console=abc; c=d".parse().unwrap(),
        );
        assert_eq!(token(&h), Some("abc"));
        h.insert(header::HOST, "127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h, true));
        h.insert(header::ORIGIN, "https://127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h, true));
        // The scheme counts: the same host over the other scheme is another origin.
        assert!(!same_origin(&h, false));
        h.insert(header::ORIGIN, "http://127.0.0.1:8443".parse().unwrap());
        assert!(!same_origin(&h, true));
        assert!(same_origin(&h, false));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, true));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h, true));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h, true));
        let c = cookie("abc").to_str().unwrap().to_owned();
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(c.contains(part), "{c}");
        }
    }
}
