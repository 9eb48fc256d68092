//! The server: listening (HTTPS with rustls, or plain HTTP on loopback only), TLS handshakes,
//! hyper HTTP/1.1 connections, the request's limits ([`MAX_BODY`] within [`READ_TIMEOUT`],
//! headers within the same time), the connection cap (one more is answered `503
//! ServiceUnavailable` and closed), memory given back after bursts, and the drain on shutdown.
//! Every request to `/` goes to [`Api::call`]; every answer is JSON with a `RequestId`, errors
//! `{"Code","Message","RequestId","HostId"}`. `/healthz` answers without authentication.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{tls, Api, ApiError};
pub use crate::config::{ApiSettings, DEFAULT_MAX_CONNECTIONS};
use crate::error::{Error, Result};

/// The largest request body read.
pub const MAX_BODY: usize = 256 * 1024;
/// How long reading a request's headers, or its body, may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long open requests may take to finish.
const DRAIN: Duration = Duration::from_secs(10);
/// Connections over the cap being answered `503` at once, at most; more are closed unanswered
/// (answering takes a TLS handshake, which must not grow without bound either).
const REFUSING: usize = 64;
/// How long answering a connection over the cap may take.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Memory is given back to the system once this many connections have closed since the most
/// open at once.
const TRIM_AFTER_CLOSED: usize = 256;

/// A new `RequestId`: 32 random hex digits as a UUID-shaped text.
pub fn request_id() -> String {
    let id = crate::crypto::random_id().to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

/// A JSON answer with its `RequestId` (in the body and the `x-acs-request-id` header).
fn answer(status: StatusCode, mut body: Value, request_id: &str) -> Response {
    body["RequestId"] = Value::from(request_id);
    let bytes = serde_json::to_vec(&body).expect("JSON serialises");
    let mut response = (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json;charset=utf-8",
        )],
        bytes,
    )
        .into_response();
    if let Ok(v) = request_id.parse() {
        response.headers_mut().insert("x-acs-request-id", v);
    }
    response
}

/// A refusal in the KMS shape: `{"Code","Message","HostId","RequestId"}`.
fn error_response(e: &ApiError, request_id: &str) -> Response {
    answer(
        e.status,
        json!({"Code": e.code, "Message": e.message, "HostId": "kms.rotor"}),
        request_id,
    )
}

/// An answer given before the request's body was read to its end: the rest of it is still on
/// the connection, so the connection closes after it, and says so (`Connection: close`), so
/// that no client sends its next request on it.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Every API call: the body read within its limits, the method checked, then [`Api::call`].
async fn handle(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let body = match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            let e = ApiError::new(
                413,
                "InvalidParameter",
                format!("The request body is larger than {} KiB.", MAX_BODY / 1024),
            );
            crate::telemetry::api_request("unknown", e.code, started.elapsed());
            return closing(error_response(&e, &request_id));
        }
        Err(_) => {
            let e = ApiError::new(
                408,
                "RequestTimeout",
                "The request body did not arrive in time.",
            );
            crate::telemetry::api_request("unknown", e.code, started.elapsed());
            return closing(error_response(&e, &request_id));
        }
    };
    if method != Method::POST && method != Method::GET {
        let e = ApiError::new(405, "InvalidParameter", "Use POST (or GET).");
        return error_response(&e, &request_id);
    }
    let (action, result) = api.call(&method, &uri, &headers, &body).await;
    let action = action.map_or("unknown", |a| a.as_str());
    match result {
        Ok(body) => {
            crate::telemetry::api_request(action, "OK", started.elapsed());
            answer(StatusCode::OK, body, &request_id)
        }
        Err(e) => {
            crate::telemetry::api_request(action, e.code, started.elapsed());
            tracing::debug!(
                action,
                code = e.code,
                status = e.status.as_u16(),
                "API call refused"
            );
            error_response(&e, &request_id)
        }
    }
}

/// `/` for calls, `/healthz` without authentication, the web console under `/console`,
/// anything else `404`.
fn router(api: Api, tls: bool) -> Router {
    Router::new()
        .route("/", any(handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .nest(crate::console::PREFIX, crate::console::router(&api, tls))
        // `nest` serves `/console` but not `/console/`: sent to the former.
        .route(
            "/console/",
            get(|| async { axum::response::Redirect::to(crate::console::PREFIX) }),
        )
        .fallback(|| async {
            let e = ApiError::new(404, "InvalidAction.NotFound", "Requests go to /.");
            error_response(&e, &request_id())
        })
        .with_state(api)
}

/// A running API server: wait for it after cancelling its token.
pub struct Server {
    /// The address it listens on (the port chosen, for port 0).
    pub local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Waits until the server has stopped and drained.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Binds `settings.listen` and serves the API until `stop`; then lets open requests finish (up
/// to 10 s).
pub async fn serve(
    api: Api,
    settings: &ApiSettings,
    data_dir: &Path,
    stop: CancellationToken,
) -> Result<Server> {
    let tls = if settings.plain_http {
        if !settings.listen.ip().is_loopback() {
            return Err(Error::config(format!(
                "--api-plain-http serves only a loopback address, not {}; drop it to serve HTTPS",
                settings.listen
            )));
        }
        None
    } else {
        Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
            data_dir,
            &settings.hostnames,
        )?))
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            Error::config(format!(
                "cannot listen on {} for the API: {e}",
                settings.listen
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::config(e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %local, scheme, "serving the KMS-compatible API");
    let app = router(api, tls.is_some());
    let busy = busy_router();
    let open = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    let refusing = Arc::new(tokio::sync::Semaphore::new(REFUSING));
    let counts = Arc::new(Counts::default());
    tokio::spawn(trim_memory(counts.clone(), stop.clone()));
    let task = tokio::spawn(async move {
        let tracker = TaskTracker::new();
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (tls, stop) = (tls.clone(), stop.clone());
            if let Ok(slot) = open.clone().try_acquire_owned() {
                let (app, counts) = (app.clone(), counts.clone());
                counts.opened();
                tracker.spawn(async move {
                    accepted(tcp, tls, app, true, stop).await;
                    counts.closed();
                    drop(slot);
                });
            } else if let Ok(slot) = refusing.clone().try_acquire_owned() {
                // Full: told so politely, within a bound, then closed.
                let busy = busy.clone();
                tracker.spawn(async move {
                    let refusal = accepted(tcp, tls, busy, false, stop);
                    let _ = tokio::time::timeout(REFUSE_TIMEOUT, refusal).await;
                    drop(slot);
                });
            } else {
                drop(tcp);
            }
        }
        tracker.close();
        if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
            tracing::warn!("API connections still open after the drain were dropped");
        }
        tracing::info!("the API stopped");
    });
    Ok(Server { local, task })
}

/// An accepted connection: the TLS handshake (if any), then HTTP.
async fn accepted(
    tcp: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    keep_alive: bool,
    stop: CancellationToken,
) {
    let peer = tcp.peer_addr().ok();
    match tls {
        Some(acceptor) => {
            // A failed or slow handshake gets no answer.
            let handshake = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp));
            if let Ok(Ok(stream)) = handshake.await {
                connection(stream, app, peer, keep_alive, stop).await;
            }
        }
        None => connection(tcp, app, peer, keep_alive, stop).await,
    }
}

/// What a connection over the cap is answered: `503 ServiceUnavailable`, then it is closed.
fn busy_router() -> Router {
    Router::new().fallback(|| async {
        let e = ApiError::new(
            503,
            "ServiceUnavailable",
            "The server has too many open connections; retry later.",
        );
        crate::telemetry::api_request("unknown", e.code, Duration::ZERO);
        let mut response = error_response(&e, &request_id());
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        response
    })
}

/// Connections open now, and the most open at once since memory was last given back.
#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl Counts {
    fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Gives memory back to the system after many connections closed. Their buffers are freed
/// into glibc's malloc arenas (one per thread that allocated, up to eight per core), which
/// keep freed pages unless the arena's top is free: without this, the memory of a burst of
/// connections stays with the process after they close. `malloc_trim` returns every arena's
/// free pages; it runs at most once a second, on a blocking thread.
async fn trim_memory(counts: Arc<Counts>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let open = counts.open.load(Ordering::Relaxed);
        if counts.peak.load(Ordering::Relaxed) < open + TRIM_AFTER_CLOSED {
            continue;
        }
        counts.peak.store(open, Ordering::Relaxed);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

/// Serves one connection (HTTP/1.1, with keep-alive if `keep_alive`) until it closes or `stop`.
/// Each request carries the client's address (`ConnectInfo`: the console throttles failed
/// logins by it).
async fn connection<S>(
    stream: S,
    app: Router,
    peer: Option<SocketAddr>,
    keep_alive: bool,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::util::MapRequest::new(
        app,
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            if let Some(peer) = peer {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            request
        },
    );
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(64 * 1024)
        .keep_alive(keep_alive);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
