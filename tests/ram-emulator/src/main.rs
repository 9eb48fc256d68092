//! `ram-emulator`: a stand-in for the Alibaba Cloud RAM OpenAPI (version 2015-05-01), the one
//! service rotor's tests cannot run for real.
//!
//! ```text
//! ram-emulator --listen 127.0.0.1:PORT --admin-access-key-id ID --admin-access-key-secret SECRET
//! ```
//!
//! It prints `listening on ADDR` once ready. Requests must carry a valid signature in either
//! style — V3 (`ACS3-HMAC-SHA256`, signed headers as sent) or V1 (RPC `HMAC-SHA1`) — within 15
//! minutes of the emulator's clock and with a nonce not seen before; otherwise the cloud's
//! errors (`SignatureDoesNotMatch`, `InvalidTimeStamp.Expired`, `SignatureNonceUsed`,
//! `InvalidAccessKeyId.NotFound`, `InvalidAccessKeyId.Inactive`) come back in the cloud's JSON
//! shape with a `RequestId`. Users and AccessKeys live in memory; a user holds at most two keys.
//! The admin pair may call every action (CreateUser, GetUser, ListUsers, DeleteUser, CreateAccessKey,
//! ListAccessKeys, UpdateAccessKey, DeleteAccessKey); an Active user key may call GetUser and
//! ListAccessKeys for its own user.
//!
//! Test controls (loopback only, no signature): `POST /_emulator/throttle?count=N` makes the
//! next N signed calls answer `Throttling.User`; `POST /_emulator/slow-create?ms=N` makes
//! CreateAccessKey wait N ms after creating the key, before answering;
//! `POST /_emulator/refuse?action=A&status=S&code=C` makes every signed call of action `A`
//! answer HTTP `S` with error code `C` (without doing anything) until
//! `POST /_emulator/refuse?action=A` (no code) lets it through again;
//! `POST /_emulator/lose-create?count=N` makes the next N CreateAccessKey calls create the key
//! and then answer `503 ServiceUnavailable`, as an answer lost on the way would;
//! `POST /_emulator/clock?offset_s=N` sets the emulator's clock N seconds (may be negative) off
//! the machine's, as a cloud whose clock differs from rotor's: every time it shows (`Date`
//! headers, `CreateDate`) and its timestamp check use it. Every answer carries a `Date` header,
//! as the cloud's do.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acs_sign::verify;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_KEYS: usize = 2;

struct Key {
    user: Option<String>,
    secret: String,
    active: bool,
    created: String,
}

struct User {
    id: String,
    display: String,
    created: String,
    keys: Vec<String>,
}

#[derive(Default)]
struct Cloud {
    keys: HashMap<String, Key>,
    users: BTreeMap<String, User>,
    nonces: HashMap<String, Instant>,
    throttle: u32,
    slow_create: Duration,
    /// CreateAccessKey calls still to answer 503 after creating the key.
    lose_create: u32,
    /// Whether a lost CreateAccessKey answer starts an outage.
    outage_after_lost: bool,
    /// Every signed call answers 503, doing nothing (the network down), until lifted.
    outage: bool,
    /// Actions refused with (HTTP status, error code).
    refused: HashMap<String, (StatusCode, String)>,
}

type Shared = Arc<Mutex<Cloud>>;

/// A cloud error.
struct Fault(StatusCode, &'static str, String);

/// How far the emulator's clock is off the machine's, in seconds (`/_emulator/clock`).
static CLOCK_OFFSET_S: AtomicI64 = AtomicI64::new(0);

/// The emulator's clock.
fn clock() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::seconds(CLOCK_OFFSET_S.load(Ordering::SeqCst))
}

fn now() -> String {
    clock().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn request_id() -> String {
    let raw = Alphanumeric
        .sample_string(&mut rand::rng(), 32)
        .to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &raw[..8],
        &raw[8..12],
        &raw[12..16],
        &raw[16..20],
        &raw[20..32]
    )
}

fn answer(status: StatusCode, mut body: Value) -> Response {
    body["RequestId"] = json!(request_id());
    let date = clock().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    (
        status,
        [
            ("content-type", "application/json;charset=utf-8".to_owned()),
            ("date", date),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A cloud error answer.
fn error_answer(status: StatusCode, code: &str, message: &str) -> Response {
    answer(
        status,
        json!({"HostId": "ram.aliyuncs.com", "Code": code, "Message": message,
               "Recommend": "https://api.aliyun.com/troubleshoot"}),
    )
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        error_answer(self.0, self.1, &self.2)
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> Fault {
    Fault(StatusCode::BAD_REQUEST, code, message.into())
}

/// Checks the signature (both styles, [`verify`]), the nonce and the version; returns the call.
fn authenticate(
    cloud: &mut Cloud,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Call, Fault> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let req = verify::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &headers,
        body,
    };
    let call = verify::verify(&req, clock(), WINDOW, &mut |id| {
        secret_of(cloud, id).map(zeroize::Zeroizing::new)
    })
    .map_err(|r| {
        Fault(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            r.code,
            r.message,
        )
    })?;
    let seen = Instant::now();
    cloud
        .nonces
        .retain(|_, at| seen.duration_since(*at) < WINDOW);
    if call.nonce.is_empty() || cloud.nonces.insert(call.nonce.clone(), seen).is_some() {
        return Err(bad(
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    if call.version.as_deref() != Some("2015-05-01") {
        return Err(bad(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    Ok((call.key_id, call.action, call.params))
}

/// A signed call: the caller's key id, the action and its parameters.
type Call = (String, String, Vec<(String, String)>);

fn secret_of(cloud: &Cloud, key_id: &str) -> Result<String, verify::Refused> {
    match cloud.keys.get(key_id) {
        None => Err(verify::Refused::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )),
        Some(k) if !k.active => Err(verify::Refused::new(
            403,
            "InvalidAccessKeyId.Inactive",
            "Specified access key is disabled.",
        )),
        Some(k) => Ok(k.secret.clone()),
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, Fault> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("MissingParameter", format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied.")))
}

fn no_user(name: &str) -> Fault {
    Fault(
        StatusCode::NOT_FOUND,
        "EntityNotExist.User",
        format!("The user does not exist: {name}."),
    )
}

fn user_json(name: &str, u: &User) -> Value {
    json!({"UserId": u.id, "UserName": name, "DisplayName": u.display, "CreateDate": u.created})
}

/// Runs `action` for the caller `key_id`.
fn act(
    cloud: &mut Cloud,
    key_id: &str,
    action: &str,
    params: &[(String, String)],
) -> Result<(Value, Option<Duration>), Fault> {
    let caller_user = cloud.keys.get(key_id).and_then(|k| k.user.clone());
    // A user key may read its own user and keys; the admin pair may do everything.
    if let Some(own) = &caller_user {
        let target = params
            .iter()
            .find(|(k, _)| k == "UserName")
            .map(|(_, v)| v.as_str())
            .unwrap_or(own);
        if !matches!(action, "GetUser" | "ListAccessKeys") || target != own {
            return Err(Fault(
                StatusCode::FORBIDDEN,
                "NoPermission",
                format!("You are not authorized to do action {action}."),
            ));
        }
    }
    let user_param = |params: &[(String, String)]| -> Result<String, Fault> {
        match (param(params, "UserName"), &caller_user) {
            (Ok(u), _) => Ok(u.to_owned()),
            (Err(_), Some(own)) => Ok(own.clone()),
            (Err(e), None) => Err(e),
        }
    };
    match action {
        "CreateUser" => {
            let name = param(params, "UserName")?.to_owned();
            if cloud.users.contains_key(&name) {
                return Err(Fault(
                    StatusCode::CONFLICT,
                    "EntityAlreadyExists.User",
                    format!("The user does already exist: {name}."),
                ));
            }
            let user = User {
                id: format!("{}", rand::random::<u64>() % 10u64.pow(16)),
                display: params
                    .iter()
                    .find(|(k, _)| k == "DisplayName")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| name.clone()),
                created: now(),
                keys: vec![],
            };
            let body = json!({"User": user_json(&name, &user)});
            cloud.users.insert(name, user);
            Ok((body, None))
        }
        "ListUsers" => {
            let users: Vec<Value> = cloud.users.iter().map(|(n, u)| user_json(n, u)).collect();
            Ok((
                json!({"IsTruncated": false, "Users": {"User": users}}),
                None,
            ))
        }
        "GetUser" => {
            let name = user_param(params)?;
            let user = cloud.users.get(&name).ok_or_else(|| no_user(&name))?;
            Ok((json!({"User": user_json(&name, user)}), None))
        }
        "DeleteUser" => {
            let name = param(params, "UserName")?.to_owned();
            let user = cloud.users.get(&name).ok_or_else(|| no_user(&name))?;
            if !user.keys.is_empty() {
                return Err(Fault(
                    StatusCode::CONFLICT,
                    "DeleteConflict.User.AccessKey",
                    "The user has access keys.".into(),
                ));
            }
            cloud.users.remove(&name);
            Ok((json!({}), None))
        }
        "CreateAccessKey" => {
            let name = user_param(params)?;
            let user = cloud.users.get_mut(&name).ok_or_else(|| no_user(&name))?;
            if user.keys.len() >= MAX_KEYS {
                return Err(Fault(
                    StatusCode::CONFLICT,
                    "LimitExceeded.User.AccessKey",
                    "The count of access keys for the user exceeds the limit: 2.".into(),
                ));
            }
            let id = format!("LTAI{}", Alphanumeric.sample_string(&mut rand::rng(), 20));
            let secret = Alphanumeric.sample_string(&mut rand::rng(), 30);
            let created = now();
            user.keys.push(id.clone());
            let body = json!({"AccessKey": {"AccessKeyId": id, "AccessKeySecret": secret, "Status": "Active", "CreateDate": created}});
            cloud.keys.insert(
                id,
                Key {
                    user: Some(name),
                    secret,
                    active: true,
                    created,
                },
            );
            Ok((body, Some(cloud.slow_create)))
        }
        "ListAccessKeys" => {
            let name = user_param(params)?;
            let user = cloud.users.get(&name).ok_or_else(|| no_user(&name))?;
            let list: Vec<Value> = user.keys.iter().filter_map(|id| cloud.keys.get(id).map(|k| {
                json!({"AccessKeyId": id, "Status": if k.active {"Active"} else {"Inactive"}, "CreateDate": k.created})
            })).collect();
            Ok((json!({"AccessKeys": {"AccessKey": list}}), None))
        }
        "UpdateAccessKey" | "DeleteAccessKey" => {
            let name = user_param(params)?;
            let id = param(params, "UserAccessKeyId")?.to_owned();
            let user = cloud.users.get_mut(&name).ok_or_else(|| no_user(&name))?;
            if !user.keys.contains(&id) {
                return Err(Fault(
                    StatusCode::NOT_FOUND,
                    "EntityNotExist.User.AccessKey",
                    format!("The access key does not exist: {id}."),
                ));
            }
            if action == "DeleteAccessKey" {
                user.keys.retain(|k| *k != id);
                cloud.keys.remove(&id);
            } else {
                let active = match param(params, "Status")? {
                    "Active" => true,
                    "Inactive" => false,
                    _ => {
                        return Err(bad(
                            "InvalidParameter.Status",
                            "The parameter Status must be Active or Inactive.",
                        ))
                    }
                };
                if let Some(k) = cloud.keys.get_mut(&id) {
                    k.active = active;
                }
            }
            Ok((json!({}), None))
        }
        _ => Err(Fault(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method: {action}."),
        )),
    }
}

async fn handle(
    State(cloud): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let done = {
        let mut c = cloud.lock().expect("state");
        let call = authenticate(&mut c, &method, &uri, &headers, &body);
        if call.is_ok() && c.outage {
            return error_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Refused by the emulator's outage.",
            );
        }
        if let Ok((_, action, _)) = &call {
            if let Some((status, code)) = c.refused.get(action) {
                return error_answer(*status, code, "Refused by the emulator's test control.");
            }
        }
        call.and_then(|(key_id, action, params)| {
            if c.throttle > 0 {
                c.throttle -= 1;
                return Err(bad(
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                ));
            }
            let done = act(&mut c, &key_id, &action, &params);
            if done.is_ok() && action == "CreateAccessKey" && c.lose_create > 0 {
                c.lose_create -= 1;
                c.outage = c.outage_after_lost;
                return Err(Fault(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.".into(),
                ));
            }
            done
        })
    };
    match done {
        Ok((body, delay)) => {
            if let Some(d) = delay.filter(|d| !d.is_zero()) {
                tokio::time::sleep(d).await;
            }
            answer(StatusCode::OK, body)
        }
        Err(fault) => fault.into_response(),
    }
}

async fn throttle(
    State(cloud): State<Shared>,
    Query(q): Query<HashMap<String, u32>>,
) -> &'static str {
    cloud.lock().expect("state").throttle = q.get("count").copied().unwrap_or(1);
    "ok\n"
}

async fn lose_create(
    State(cloud): State<Shared>,
    Query(q): Query<HashMap<String, u32>>,
) -> &'static str {
    let mut c = cloud.lock().expect("state");
    c.lose_create = q.get("count").copied().unwrap_or(1);
    c.outage_after_lost = q.get("outage").is_some_and(|o| *o != 0);
    "ok\n"
}

/// `?on=0` ends an outage (`lose-create?outage=1` starts one).
async fn outage(
    State(cloud): State<Shared>,
    Query(q): Query<HashMap<String, u32>>,
) -> &'static str {
    cloud.lock().expect("state").outage = q.get("on").is_some_and(|o| *o != 0);
    "ok\n"
}

async fn slow_create(
    State(cloud): State<Shared>,
    Query(q): Query<HashMap<String, u64>>,
) -> &'static str {
    cloud.lock().expect("state").slow_create =
        Duration::from_millis(q.get("ms").copied().unwrap_or(0));
    "ok\n"
}

async fn refuse(State(cloud): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(action) = q.get("action").cloned() else {
        return (StatusCode::BAD_REQUEST, "action is missing\n").into_response();
    };
    let mut c = cloud.lock().expect("state");
    match q.get("code").filter(|c| !c.is_empty()) {
        None => {
            c.refused.remove(&action);
        }
        Some(code) => {
            let status = q
                .get("status")
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            c.refused.insert(action, (status, code.clone()));
        }
    }
    "ok\n".into_response()
}

async fn set_clock(Query(q): Query<HashMap<String, i64>>) -> &'static str {
    CLOCK_OFFSET_S.store(q.get("offset_s").copied().unwrap_or(0), Ordering::SeqCst);
    "ok\n"
}

fn usage() -> ! {
    eprintln!("usage: ram-emulator --listen ADDR --admin-access-key-id ID --admin-access-key-secret SECRET");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| usage())
    };
    let listen: SocketAddr = arg("--listen").parse().unwrap_or_else(|_| usage());
    let mut cloud = Cloud::default();
    cloud.keys.insert(
        arg("--admin-access-key-id"),
        Key {
            user: None,
            secret: arg("--admin-access-key-secret"),
            active: true,
            created: now(),
        },
    );
    let shared: Shared = Arc::new(Mutex::new(cloud));
    let app = Router::new()
        .route("/", any(handle))
        .route("/_emulator/throttle", post(throttle))
        .route("/_emulator/slow-create", post(slow_create))
        .route("/_emulator/refuse", post(refuse))
        .route("/_emulator/clock", post(set_clock))
        .route("/_emulator/lose-create", post(lose_create))
        .route("/_emulator/outage", post(outage))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("ram-emulator: cannot listen on {listen}: {e}");
            std::process::exit(1)
        });
    println!(
        "listening on {}",
        listener.local_addr().expect("local address")
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, app).await.expect("serve");
}
