//! The local cache endpoint (`[cache]`), for applications that ask at run time:
//! `GET /v1/secret?SecretName=NAME` on a loopback address or a Unix socket (owner-only, 0600)
//! answers in the KMS `GetSecretValue` JSON shape from the agent's values. Every request, on
//! either, must carry the token read from
//! `token_file` in `X-Rotor-Token` (compared in constant time), and a request that came through
//! a proxy (`X-Forwarded-For`, `Forwarded`) is refused: a server-side request forgery on this
//! host cannot read secrets without the token (as AWS's Secrets Manager Agent does).
//!
//! A secret first asked for is read and then watched (a rotation is seen within `poll`); one
//! whose version was last confirmed more than `ttl` ago is read again before it is served. An API
//! that cannot be reached then keeps the last good value served.

use std::path::{Path, PathBuf};
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
/// Connections open at once, at most; one more is closed unanswered.
pub const MAX_CONNECTIONS: usize = 128;
/// How long a request's headers may take to arrive (an idle connection is closed after it too).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The cache endpoint, bound.
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

/// Where the endpoint listens.
enum Listener {
    Tcp(tokio::net::TcpListener),
    /// The socket and its path, removed when the endpoint stops.
    Unix(tokio::net::UnixListener, PathBuf),
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
        let listener = match (spec.listen, &spec.socket) {
            (_, Some(path)) => {
                let listener = bind_socket(path)?;
                tracing::info!(socket = %path.display(), "cache endpoint listening");
                Listener::Unix(listener, path.clone())
            }
            (Some(listen), None) => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| Error::config(format!("cannot listen on {listen}: {e}")))?;
                tracing::info!(listen = %listen, "cache endpoint listening");
                Listener::Tcp(listener)
            }
            (None, None) => return Err(Error::invalid("[cache] needs listen or socket")),
        };
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                watcher,
                token: Zeroizing::new(token.to_owned()),
                ttl: spec.ttl,
            }),
        })
    }

    /// The address bound, on TCP.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Serves until `cancel`; a Unix socket is removed then. At most [`MAX_CONNECTIONS`] are
    /// open at once (one more is closed unanswered), and a request's headers must arrive
    /// within [`HEADER_TIMEOUT`].
    pub async fn serve(self, cancel: CancellationToken) {
        let app = Router::new()
            .route("/v1/secret", get(get_secret))
            .with_state(self.shared);
        let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("the cache endpoint cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = open.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let (app, cancel) = (app.clone(), cancel.clone());
            tracker.spawn(async move {
                match stream {
                    Stream::Tcp(s) => connection(s, app, cancel).await,
                    Stream::Unix(s) => connection(s, app, cancel).await,
                }
                drop(slot);
            });
        }
        tracker.close();
        let _ = tokio::time::timeout(HEADER_TIMEOUT, tracker.wait()).await;
        if let Listener::Unix(_, path) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An accepted connection.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// Serves one connection (HTTP/1.1) until it closes or `cancel`.
async fn connection<S>(stream: S, app: Router, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(16 * 1024);
    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HEADER_TIMEOUT, conn).await;
        }
    }
}

/// Binds the Unix socket at `path`, owner-only from the start: made under umask 077 (the agent
/// binds before its templates' files are written, so no other file is made meanwhile), then
/// set to 0600. A stale socket left by an agent that died is replaced; one that answers, or a
/// path that is not a socket, is refused.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::config(format!(
                "[cache] socket {} exists and is not a socket",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::config(format!(
                "[cache] socket {} is in use by another process",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| {
            Error::config(format!(
                "cannot remove the stale socket {}: {e}",
                path.display()
            ))
        })?;
    }
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o077) };
    let bound = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener =
        bound.map_err(|e| Error::config(format!("cannot listen on {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::config(format!("cannot chmod 600 {}: {e}", path.display())))?;
    Ok(listener)
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
        (Some(f), true) => {
            shared.watcher.used(&name);
            f
        }
        (held, _) => match shared.watcher.fetch_cached(&name).await {
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
