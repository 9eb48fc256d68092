//! The web console, served under `/console` on the API's listener (the same TLS, the same
//! process): a person's way to the secrets, their versions and rotations, the targets and the
//! audit log.
//!
//! Pages are rendered on the server with `maud` (its `html!` escapes every value it is given,
//! so a description holding `<script>` is text), and one small script of our own
//! (`assets/console.js`) adds what needs a browser: live rotation progress over server-sent
//! events and hiding a revealed value again. Every asset is compiled into the binary; the
//! Content-Security-Policy allows scripts and styles from this origin only (no inline script)
//! and no framing. Server-rendered pages keep what a security product shows on the server,
//! behind the same checks as the API, with no client-side framework to audit or update.
//!
//! In layers, one request's path:
//! - [`headers`]: the security headers every answer carries;
//! - [`session`]: the session cookie (Secure, HttpOnly, SameSite=Strict; idle and absolute
//!   timeouts) and the CSRF checks every change passes (the session's token in the form, and
//!   the browser's `Origin`/`Sec-Fetch-Site` saying the request came from this origin);
//! - [`login`] with [`password`] (argon2id) and [`throttle`] (failed logins per user and per
//!   address);
//! - [`form`]: every form read whole, a field that is not UTF-8 refused rather than mended;
//! - the pages: [`secrets`] (the list), [`details`] (one secret and what can be done to it),
//!   [`actions`] (what its buttons do), [`versions`] (a Generic secret's new version and stage
//!   moves), [`rotate`] (rotate now, with the steps streamed as they are recorded), [`create`]
//!   (a panel per type), [`pages`] (targets and the audit log); [`layout`] is their frame.
//!
//! A console user carries the same `ACTION:PATTERN` rules as an AccessKey
//! ([`crate::policy`]): each page and action names the KMS action it needs on the secret.
//! Every change runs as `console:USER` in the audit log, as does every value revealed.

mod actions;
mod create;
mod details;
mod form;
mod headers;
mod layout;
mod login;
mod pages;
pub mod password;
mod rotate;
mod secrets;
mod session;
mod throttle;
mod versions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::api::cache::ReadCache;
use crate::api::Api;
use crate::engine::Engine;
use crate::model::SecretName;
use crate::policy::{Action, Policy};
use crate::store::Store;

pub use self::session::{ABSOLUTE_TIMEOUT, IDLE_TIMEOUT};
pub use self::throttle::{FREE_FAILURES, MAX_LOCK};

/// Where the console is served.
pub const PREFIX: &str = "/console";

/// The largest form the console reads.
const MAX_FORM: usize = 64 * 1024;

/// The console's shared state.
#[derive(Clone)]
pub(crate) struct Console {
    store: Store,
    engine: Arc<Engine>,
    /// Versions the API caches: a change made here forgets them, as the API's own do.
    cache: Arc<ReadCache>,
    shutdown: CancellationToken,
    sessions: Arc<session::Sessions>,
    throttle: Arc<throttle::Throttle>,
    runs: Arc<rotate::Runs>,
    /// Served over TLS: the scheme a change's `Origin` must name, and HSTS on every answer.
    tls: bool,
}

impl Console {
    fn new(api: &Api, tls: bool) -> Console {
        Console {
            store: api.store.clone(),
            engine: api.engine.clone(),
            cache: api.cache.clone(),
            shutdown: api.shutdown.clone(),
            sessions: Arc::default(),
            throttle: Arc::default(),
            runs: Arc::default(),
            tls,
        }
    }

    /// The store acting as `console:USER` in the audit log.
    fn store_for(&self, user: &str) -> Store {
        self.store.with_actor(&format!("console:{user}"))
    }

    /// After a change: reads through the API see it at once.
    fn changed(&self, name: &SecretName) {
        self.cache.forget(name);
    }
}

/// The console's routes, nested under [`PREFIX`] by the API's router; `tls` when the listener
/// serves HTTPS.
pub fn router<S: Clone + Send + Sync + 'static>(api: &Api, tls: bool) -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/secrets") }))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/{file}", get(layout::asset))
        .route("/secrets", get(secrets::page))
        .route("/secret", get(details::page))
        .route("/secret/reveal", post(actions::reveal))
        .route("/secret/rotation", post(actions::rotation_settings))
        .route("/secret/rollback", post(actions::rollback))
        .route("/secret/put", post(versions::put))
        .route("/secret/stage", post(versions::stage))
        .route("/secret/delete", post(actions::delete))
        .route("/secret/restore", post(actions::restore))
        .route("/secret/rotate", post(rotate::start))
        .route("/runs/{id}/events", get(rotate::events))
        .route("/create", get(create::page).post(create::submit))
        .route("/targets", get(pages::targets))
        .route("/targets/check", post(pages::check_target))
        .route("/audit", get(pages::audit))
        .fallback(|| async { layout::not_found() })
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::from_fn(read_body))
        .layer(axum::middleware::map_response(move |r: Response| {
            headers::secure(r, tls)
        }))
        .with_state(Console::new(api, tls))
}

/// Reads every request's body whole, within the API's read timeout and the form limit, before
/// any handler sees it: a sender that trickles a body holds a connection no longer here than on
/// the API (`408`), an oversized one gets `413`.
async fn read_body(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        crate::api::server::READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_FORM),
    )
    .await;
    match read {
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Ok(Err(_)) => layout::message(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            "The form is larger than the console takes.",
        ),
        Err(_) => layout::message(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "Too slow",
            "The request body did not arrive in time.",
        ),
    }
}

/// Whether `policy` allows every action on every secret (a `*:*` rule): what the pages about
/// more than secrets (the whole audit log) need.
fn is_admin(policy: &Policy) -> bool {
    policy
        .0
        .iter()
        .any(|r| r.action.is_none() && r.pattern == "*")
}

/// Whether `policy` lets its holder see target `name`: its admin secret may be described.
fn sees_target(policy: &Policy, name: &str) -> bool {
    policy.allows(
        Action::DescribeSecret,
        &crate::store::admin_secret_name(name),
    )
}

/// A refusal page for an action the user's rules do not allow.
fn forbidden(action: Action, name: &str) -> Response {
    layout::message(
        axum::http::StatusCode::FORBIDDEN,
        "Not allowed",
        &format!(
            "Your rules do not allow {action} on {}.",
            crate::model::printable(name)
        ),
    )
    .into_response()
}
