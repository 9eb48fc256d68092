//! The KMS-compatible secrets API (KMS API version 2016-01-20): what applications call with the
//! official Alibaba Cloud SDKs, pointed at rotor's endpoint.
//!
//! In layers, one request's path from top to bottom:
//! - [`server`]: TLS, HTTP/1.1 connections and their limits (body size and read time, the
//!   connection cap answered `503`), the drain on shutdown; it hands each request to
//!   [`Api::call`] and answers in the KMS JSON shape.
//! - [`auth`]: signature, timestamp window, key state and policy (cached), nonce replay
//!   ([`nonces`]), API version.
//! - [`actions`]: the request's [`Action`], parsed once; the key's policy ([`crate::policy`])
//!   checked for the secret it names; then the action runs against the store (and the engine,
//!   for `RotateSecret`), reads through the 1 s [`cache`] of sealed versions.
//! - [`error`]: refusals as [`ApiError`], rotor's typed errors mapped to KMS codes and statuses.
//!
//! Served over HTTPS with a certificate signed by the installation's CA ([`tls`]), or plain
//! HTTP on a loopback address only.

pub mod actions;
pub mod auth;
pub mod cache;
pub mod error;
pub mod nonces;
pub mod server;
pub mod tls;

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use self::error::ApiError;
pub use self::server::{serve, ApiSettings, Server, DEFAULT_MAX_CONNECTIONS};
use crate::engine::Engine;
use crate::policy::Action;
use crate::store::Store;

/// The API version this server speaks.
pub const VERSION: &str = "2016-01-20";

/// The API's shared state.
#[derive(Clone)]
pub struct Api {
    pub(crate) store: Store,
    pub(crate) engine: Arc<Engine>,
    auth: Arc<auth::Auth>,
    /// Versions read lately, still sealed: every use decrypts.
    pub(crate) cache: Arc<cache::ReadCache>,
    /// Cancelled when the server stops: `RotateSecret` stops between steps, like the worker.
    pub(crate) shutdown: CancellationToken,
}

impl Api {
    /// The API over `store`, rotating through `engine`; it starts the nonce recorder.
    pub fn new(store: Store, engine: Arc<Engine>) -> Api {
        Api {
            auth: Arc::new(auth::Auth::new(store.clone())),
            store,
            engine,
            cache: Arc::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// This API with rotations it starts stopping (between steps) once `shutdown` is cancelled.
    pub fn with_shutdown(self, shutdown: CancellationToken) -> Api {
        Api { shutdown, ..self }
    }

    /// This API with its store acting for `actor` in the audit log.
    pub(crate) fn acting_as(&self, actor: &str) -> Api {
        Api {
            store: self.store.with_actor(actor),
            ..self.clone()
        }
    }

    /// One request to `/`, authenticated, then run. Returns the action it named, if it names
    /// one (for metrics), and the answer's body or the refusal.
    pub(crate) async fn call(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Option<Action>, Result<Value, ApiError>) {
        let (call, key) = match self.auth.authenticate(method, uri, headers, body).await {
            Ok(authenticated) => authenticated,
            Err(e) => return (None, Err(e)),
        };
        let action = Action::from_name(&call.action);
        let result = actions::run(self, &call, action, &key.policy).await;
        tracing::debug!(action = action.map_or("unknown", Action::as_str), key = %call.key_id, ok = result.is_ok(), "API call");
        (action, result)
    }
}
