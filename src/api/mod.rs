//! The KMS-compatible secrets API (KMS API version 2016-01-20): what applications call with the
//! official Alibaba Cloud SDKs, pointed at rotor's endpoint.
//!
//! One request's path: the body is read (at most [`MAX_BODY`], within [`READ_TIMEOUT`]); the
//! signature is checked — V3 `ACS3-HMAC-SHA256` or the RPC `HMAC-SHA1` style
//! ([`rotators::ram::verify`]) — with the AccessKey's secret (cached for [`KEY_CACHE_TTL`]);
//! the nonce must be new, on this server and in the store's record every server on the store
//! shares ([`nonces`]); the key's policy must allow the action on the secret
//! ([`policy`]); then [`actions`] runs it against the store (and the engine, for
//! `RotateSecret`). Every answer is JSON with a `RequestId`; errors are
//! `{"Code","Message","RequestId","HostId"}` with the KMS codes and statuses.
//!
//! Served over HTTPS (HTTP/1.1, rustls) with a certificate signed by the installation's CA
//! ([`tls`]), or plain HTTP on a loopback address only. `/healthz` answers without
//! authentication. At most `max_connections` connections are served at once; one more is
//! answered `503 ServiceUnavailable` and closed, and memory freed by closed connections goes
//! back to the system.

pub mod actions;
pub mod nonces;
pub mod policy;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rotators::ram::verify;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::{ApiSettings, DEFAULT_MAX_CONNECTIONS};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::SecretName;
use crate::store::{AccessKeyAuth, SealedVersion, Selector, Store};

/// The API version this server speaks.
pub const VERSION: &str = "2016-01-20";
/// The largest request body read.
pub const MAX_BODY: usize = 256 * 1024;
/// How long reading a request's headers, or its body, may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Signed timestamps this far from the server's clock are refused.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an AccessKey (its secret, state and policy) is cached: a disabled or deleted key
/// stops working within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
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

/// A refusal as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, "InvalidParameter", message)
    }

    pub fn forbidden() -> Self {
        ApiError::new(
            403,
            "Forbidden.NoPermission",
            "This operation is forbidden by the access key's policy.",
        )
    }
}

impl From<verify::Refused> for ApiError {
    fn from(r: verify::Refused) -> Self {
        ApiError::new(r.status, r.code, r.message)
    }
}

/// Store and engine errors as KMS errors. Messages name secrets and reasons, never values.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound(m) => ApiError::new(404, "Forbidden.ResourceNotFound", m.clone()),
            Error::Invalid(m) => ApiError::invalid(m.clone()),
            Error::Conflict(m) if m.contains("scheduled for deletion") => {
                ApiError::new(409, "Rejected.ResourceInDeleteWindow", m.clone())
            }
            Error::Conflict(m) if m.contains("already exists") => {
                ApiError::new(409, "Rejected.ResourceExist", m.clone())
            }
            Error::InProgress(m) => ApiError::new(409, "Rejected.RotationInProgress", m.clone()),
            Error::Conflict(m) | Error::Lease(m) => {
                ApiError::new(409, "Rejected.ResourceConflict", m.clone())
            }
            Error::Rotation(m) | Error::Target(m) => {
                ApiError::new(409, "Rejected.RotationFailed", m.clone())
            }
            _ => {
                tracing::error!(error = %e, "API request failed in the store");
                ApiError::new(
                    500,
                    "InternalFailure",
                    "The request failed inside rotor; see its log.",
                )
            }
        }
    }
}

/// The API's shared state.
#[derive(Clone)]
pub struct Api {
    pub(crate) store: Store,
    pub(crate) engine: Arc<Engine>,
    keys: Arc<Mutex<KeyCache>>,
    nonces: Arc<Mutex<nonces::Nonces>>,
    /// The store's record of nonces, shared by every server on it.
    recorder: nonces::Recorder,
    /// Versions read lately, still sealed: every use decrypts.
    versions: Arc<Mutex<VersionCache>>,
    /// Cancelled when the server stops: `RotateSecret` stops between steps, like the worker.
    pub(crate) shutdown: CancellationToken,
}

/// Sealed versions by (secret, `VersionStage`/`VersionId` asked for), with when they were read.
type VersionCache = HashMap<(String, String), (Instant, Arc<SealedVersion>)>;

/// How long a version read from the store serves further reads of the same secret and
/// selector. Changes made through this server are seen at once; changes made elsewhere (the
/// CLI, a worker's rotation, another server) within this time.
pub const VERSION_CACHE_TTL: Duration = Duration::from_secs(1);
const VERSION_CACHE_MAX: usize = 10_000;

/// AccessKeys by id (unknown ids too), with when they were read.
type KeyCache = HashMap<String, (Instant, Option<Arc<AccessKeyAuth>>)>;

/// The most AccessKeys (known and unknown ids) remembered at once.
const KEY_CACHE_MAX: usize = 10_000;

impl Api {
    pub fn new(store: Store, engine: Arc<Engine>) -> Api {
        Api {
            recorder: nonces::Recorder::start(store.clone(), WINDOW),
            store,
            engine,
            keys: Arc::default(),
            nonces: Arc::new(Mutex::new(nonces::Nonces::new(nonces::DEFAULT_CAPACITY))),
            versions: Arc::default(),
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

    /// A version of `name`, sealed, from the cache or the store.
    pub(crate) async fn sealed(
        &self,
        name: &SecretName,
        selector: &Selector,
    ) -> std::result::Result<Arc<SealedVersion>, ApiError> {
        let key = (
            name.as_str().to_owned(),
            match selector {
                Selector::Stage(s) => format!("stage:{s}"),
                Selector::Version(v) => format!("version:{v}"),
            },
        );
        if let Some((at, v)) = self.versions.lock().expect("version cache").get(&key) {
            if at.elapsed() < VERSION_CACHE_TTL {
                return Ok(v.clone());
            }
        }
        let version = Arc::new(self.store.get_sealed(name, selector).await?);
        let mut cache = self.versions.lock().expect("version cache");
        if cache.len() >= VERSION_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), version.clone()));
        Ok(version)
    }

    /// Forgets what is cached of `name` (after a change made through this server).
    pub(crate) fn forget(&self, name: &SecretName) {
        self.versions
            .lock()
            .expect("version cache")
            .retain(|(secret, _), _| secret != name.as_str());
    }

    /// The key's secret, state and policy, from the cache or the store.
    async fn key(&self, key_id: &str) -> std::result::Result<Option<Arc<AccessKeyAuth>>, ApiError> {
        if key_id.len() > 64 || !key_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        if let Some((at, key)) = self.keys.lock().expect("key cache").get(key_id) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(key.clone());
            }
        }
        let key = self.store.access_key_auth(key_id).await?.map(Arc::new);
        let mut cache = self.keys.lock().expect("key cache");
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key_id.to_owned(), (Instant::now(), key.clone()));
        Ok(key)
    }

    /// Authenticates a request: signature, window, key state, nonce. Returns the call and the
    /// key's policy.
    async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<(verify::Verified, Arc<AccessKeyAuth>), ApiError> {
        let mut list = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let value = value
                .to_str()
                .map_err(|_| ApiError::invalid("A header is not visible ASCII text."))?;
            list.push((name.as_str().to_owned(), value.to_owned()));
        }
        let req = verify::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or_default(),
            headers: &list,
            body,
        };
        // The request names its key; the key (async, cached) gives the secret to check it with.
        let prepared = verify::prepare(&req)?;
        let key = match self.key(&prepared.key_id).await? {
            None => {
                return Err(ApiError::new(
                    404,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                ))
            }
            Some(k) if !k.enabled => {
                return Err(ApiError::new(
                    403,
                    "InvalidAccessKeyId.Inactive",
                    "Specified access key is disabled.",
                ))
            }
            Some(k) => k,
        };
        let call = prepared.verify(&key.secret, chrono::Utc::now(), WINDOW)?;
        let now = chrono::Utc::now().timestamp();
        // This server's memory first (a replay to it costs no round trip), then the store's
        // record, which every server sharing the store consults.
        self.nonces.lock().expect("nonces").check(
            &call.nonce,
            call.timestamp,
            now,
            WINDOW.as_secs() as i64,
        )?;
        match self.recorder.record(&call.nonce, call.timestamp).await {
            Ok(true) => {}
            Ok(false) => return Err(nonces::used()),
            Err(e) => {
                // Not recorded: the client may send it again.
                self.nonces.lock().expect("nonces").forget(&call.nonce);
                return Err(e);
            }
        }
        if call.version.as_deref() != Some(VERSION) {
            return Err(ApiError::new(
                400,
                "InvalidVersion",
                format!("Specified parameter Version is not valid: this server speaks {VERSION}."),
            ));
        }
        Ok((call, key))
    }
}

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

fn error_response(e: &ApiError, request_id: &str) -> Response {
    answer(
        e.status,
        json!({"Code": e.code, "Message": e.message, "HostId": "kms.rotor"}),
        request_id,
    )
}

/// Every API call.
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
            return error_response(&e, &request_id);
        }
        Err(_) => {
            let e = ApiError::new(
                408,
                "RequestTimeout",
                "The request body did not arrive in time.",
            );
            crate::telemetry::api_request("unknown", e.code, started.elapsed());
            return error_response(&e, &request_id);
        }
    };
    if method != Method::POST && method != Method::GET {
        let e = ApiError::new(405, "InvalidParameter", "Use POST (or GET).");
        return error_response(&e, &request_id);
    }
    let (action, result) = match api.authenticate(&method, &uri, &headers, &body).await {
        Err(e) => ("unknown", Err(e)),
        Ok((call, key)) => {
            let action = policy::ACTIONS
                .iter()
                .find(|a| **a == call.action)
                .copied()
                .unwrap_or("unknown");
            let result = actions::run(&api, &call, &key.policy).await;
            tracing::debug!(action, key = %call.key_id, ok = result.is_ok(), "API call");
            (action, result)
        }
    };
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

fn router(api: Api) -> Router {
    Router::new()
        .route("/", any(handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            let e = ApiError::new(404, "InvalidAction.NotFound", "Requests go to /.");
            error_response(&e, &request_id())
        })
        .with_state(api)
}

/// A running API server: wait for it after cancelling its token.
pub struct Server {
    pub local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
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
    let app = router(api);
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
    match tls {
        Some(acceptor) => {
            // A failed or slow handshake gets no answer.
            let handshake = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp));
            if let Ok(Ok(stream)) = handshake.await {
                connection(stream, app, keep_alive, stop).await;
            }
        }
        None => connection(tcp, app, keep_alive, stop).await,
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
async fn connection<S>(stream: S, app: Router, keep_alive: bool, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
