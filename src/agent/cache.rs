//! The local cache endpoint (`[cache]`), for applications that ask at run time:
//! `GET /v1/secret?SecretName=NAME` on a loopback address answers in the KMS `GetSecretValue`
//! JSON shape from the agent's values. Every request must carry the token read from
//! `token_file` in `X-Rotor-Token` (compared in constant time), and a request that came through
//! a proxy (`X-Forwarded-For`, `Forwarded`) is refused: a server-side request forgery on this
//! host cannot read secrets without the token (as AWS's Secrets Manager Agent does).
//!
//! A secret first asked for is read and then watched (a rotation is seen within `poll`); one
//! whose version was last confirmed more than `ttl` ago is read again before it is served. An API
//! that cannot be reached then keeps the last good value served.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::client::{CallError, Fetched};
use super::secrets::Watcher;
use super::settings::CacheSpec;
use crate::error::{Error, Result};
use crate::files::{self, Kind};

/// The header carrying the token.
pub const TOKEN_HEADER: &str = "x-rotor-token";

/// The cache endpoint, bound.
pub struct Server {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    watcher: Arc<Watcher>,
    token: Zeroizing<String>,
    ttl: std::time::Duration,
}

impl Server {
    /// Reads the token file (owner-only) and binds the address.
    pub async fn bind(spec: &CacheSpec, watcher: Arc<Watcher>) -> Result<Server> {
        let bytes = files::read_checked(&spec.token_file, "cache token file", Kind::Private, 4096)?;
        let token = std::str::from_utf8(&bytes)
            .ok()
            .map(|t| t.trim_end_matches(['\n', '\r']))
            .filter(|t| t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Error::config(format!(
                    "cache token file {} must hold one line of at least 16 visible ASCII characters",
                    spec.token_file.display()
                ))
            })?;
        let listener = tokio::net::TcpListener::bind(spec.listen)
            .await
            .map_err(|e| Error::config(format!("cannot listen on {}: {e}", spec.listen)))?;
        tracing::info!(listen = %spec.listen, "cache endpoint listening");
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                watcher,
                token: Zeroizing::new(token.to_owned()),
                ttl: spec.ttl,
            }),
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `cancel`.
    pub async fn serve(self, cancel: CancellationToken) {
        let app = Router::new()
            .route("/v1/secret", get(get_secret))
            .with_state(self.shared);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("the cache endpoint stopped: {e}");
        }
    }
}

#[derive(serde::Deserialize)]
struct Params {
    #[serde(rename = "SecretName")]
    secret_name: Option<String>,
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let body = json!({"Code": code, "Message": message, "RequestId": crate::crypto::random_id()});
    (status, axum::Json(body)).into_response()
}

async fn get_secret(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded") {
        return error(
            StatusCode::BAD_REQUEST,
            "Forbidden.Proxied",
            "requests through a proxy are refused".into(),
        );
    }
    let token = headers
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(token.ct_eq(shared.token.as_bytes())) {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden.Token",
            format!("the {TOKEN_HEADER} header is missing or wrong"),
        );
    }
    let Some(name) = params
        .secret_name
        .filter(|n| crate::model::SecretName::parse(n).is_ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "give a valid SecretName".into(),
        );
    };
    let fresh = shared
        .watcher
        .checked_at(&name)
        .is_some_and(|at| at.elapsed() < shared.ttl);
    let held = shared.watcher.snapshot().get(&name).cloned();
    let fetched = match (held, fresh) {
        (Some(f), true) => f,
        (held, _) => match shared.watcher.fetch(&name).await {
            Ok(f) => f,
            Err(CallError::Unreachable(e)) => match held {
                Some(f) => {
                    tracing::debug!(secret = %name, "{e}; serving the last good value");
                    f
                }
                None => return error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e),
            },
            Err(CallError::Refused { code, message, .. }) => {
                let status = if code.starts_with("Forbidden.ResourceNotFound") {
                    StatusCode::NOT_FOUND
                } else if code.starts_with("Forbidden") {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                };
                return error(status, &code, message);
            }
        },
    };
    answer(&fetched)
}

/// The KMS `GetSecretValue` shape.
fn answer(f: &Fetched) -> Response {
    let body = json!({
        "SecretName": f.name,
        "SecretType": f.secret_type,
        "SecretData": f.data.as_str(),
        "SecretDataType": f.data_type,
        "VersionId": f.version_id,
        "VersionStages": {"VersionStage": f.stages},
        "CreateTime": f.create_time,
        "RequestId": crate::crypto::random_id(),
    });
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        "cache-control",
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
