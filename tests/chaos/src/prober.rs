//! The independent prober: its own logins, with its own clients, straight to each target (never
//! through the fault proxy), with the credentials rotor's API hands out. It records every
//! refusal with the versions involved and the faults active, and classifies it: a refusal is
//! a violation unless the family documents the gap it fell in.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

use crate::faults::Faults;
use crate::rotor::{Api, Rotor, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    PgDual,
    PgSingle,
    RedisDual,
    RedisSingle,
    MariaDual,
    MariaSingle,
    SshPassword,
    SshKey,
    Ram,
}

impl Family {
    /// Whether `ACSPrevious` stays valid until the next rotation starts.
    pub fn keeps_previous(self) -> bool {
        matches!(
            self,
            Family::PgDual | Family::RedisDual | Family::MariaDual | Family::SshKey | Family::Ram
        )
    }

    /// The shortest interval the family takes (the soak makes secrets due by hand).
    pub fn interval(self) -> &'static str {
        match self {
            Family::SshPassword | Family::SshKey => "1h",
            Family::Ram => "7d",
            _ => "6h",
        }
    }
}

/// A secret under test and where its credential is checked.
#[derive(Clone, Debug)]
pub struct Secret {
    pub name: String,
    pub family: Family,
    /// The target's own port (not the proxy's).
    pub port: u16,
}

pub enum Login {
    Ok,
    Refused(String),
    Unreachable(String),
}

/// One login attempt with `value` (the secret's JSON) on `s`'s target.
pub async fn login(s: &Secret, value: &str) -> Login {
    let v: Value = match serde_json::from_str(value) {
        Ok(v) => v,
        Err(_) => return Login::Refused("the value is not JSON".into()),
    };
    let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let attempt = async {
        match s.family {
            Family::PgDual | Family::PgSingle => {
                let opts = sqlx::postgres::PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(s.port)
                    .username(&field("AccountName"))
                    .password(&field("AccountPassword"))
                    .database("postgres")
                    .ssl_mode(sqlx::postgres::PgSslMode::Disable);
                match sqlx::PgConnection::connect_with(&opts).await {
                    Ok(c) => {
                        let _ = c.close().await;
                        Login::Ok
                    }
                    Err(sqlx::Error::Database(e))
                        if matches!(e.code().as_deref(), Some("28P01") | Some("28000")) =>
                    {
                        Login::Refused(e.message().to_owned())
                    }
                    Err(e) => Login::Unreachable(e.to_string()),
                }
            }
            Family::MariaDual | Family::MariaSingle => {
                let opts = sqlx::mysql::MySqlConnectOptions::new()
                    .host("127.0.0.1")
                    .port(s.port)
                    .username(&field("AccountName"))
                    .password(&field("AccountPassword"))
                    .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled);
                match sqlx::MySqlConnection::connect_with(&opts).await {
                    Ok(c) => {
                        let _ = c.close().await;
                        Login::Ok
                    }
                    Err(sqlx::Error::Database(e)) if e.message().contains("Access denied") => {
                        Login::Refused(e.message().to_owned())
                    }
                    Err(e) => Login::Unreachable(e.to_string()),
                }
            }
            Family::RedisDual | Family::RedisSingle => {
                let info = redis::ConnectionInfo {
                    addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), s.port),
                    redis: redis::RedisConnectionInfo {
                        db: 0,
                        username: Some(field("AccountName")),
                        password: Some(field("AccountPassword")),
                        ..Default::default()
                    },
                };
                let client = match redis::Client::open(info) {
                    Ok(c) => c,
                    Err(e) => return Login::Unreachable(e.to_string()),
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(_) => Login::Ok,
                    Err(e)
                        if e.kind() == redis::ErrorKind::AuthenticationFailed
                            || e.to_string().contains("WRONGPASS") =>
                    {
                        Login::Refused(e.to_string())
                    }
                    Err(e) => Login::Unreachable(e.to_string()),
                }
            }
            Family::SshPassword | Family::SshKey => ssh_login(s, &v).await,
            Family::Ram => {
                // A signed call with the pair, as an application would make.
                let api = Api {
                    addr: format!("127.0.0.1:{}", s.port),
                    key_id: field("AccessKeyId"),
                    key_secret: field("AccessKeySecret"),
                    version: crate::rotor::RAM,
                };
                match api.call("GetUser", &[]).await {
                    Ok(_) => Login::Ok,
                    Err(e)
                        if e.to_string().contains("InvalidAccessKeyId")
                            || e.to_string().contains("SignatureDoesNotMatch") =>
                    {
                        Login::Refused(e.to_string())
                    }
                    Err(e) => Login::Unreachable(e.to_string()),
                }
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(l) => l,
        Err(_) => Login::Unreachable("no answer within 15 s".into()),
    }
}

async fn ssh_login(s: &Secret, v: &Value) -> Login {
    let user = v["UserName"].as_str().unwrap_or_default();
    let mut cmd;
    let mut keyfile = None;
    let common = [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        "-F",
        "/dev/null",
    ];
    if s.family == Family::SshPassword {
        cmd = tokio::process::Command::new("sshpass");
        cmd.arg("-e")
            .env("SSHPASS", v["Password"].as_str().unwrap_or_default())
            .arg("ssh")
            .args(common)
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
            ]);
    } else {
        use std::os::unix::fs::PermissionsExt;
        let path =
            std::env::temp_dir().join(format!("rotor-chaos-key-{:016x}", rand::random::<u64>()));
        let key = v["PrivateKey"].as_str().unwrap_or_default();
        if std::fs::write(&path, format!("{}\n", key.trim_end())).is_err()
            || std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).is_err()
        {
            return Login::Unreachable("cannot write the key file".into());
        }
        cmd = tokio::process::Command::new("ssh");
        cmd.args(common).args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
            "-i",
        ]);
        cmd.arg(&path);
        keyfile = Some(path);
    }
    cmd.args(["-p", &s.port.to_string()])
        .arg(format!("{user}@127.0.0.1"))
        .arg("true")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = cmd.output().await;
    if let Some(p) = keyfile {
        let _ = std::fs::remove_file(p);
    }
    match out {
        Ok(o) if o.status.success() => Login::Ok,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            if err.contains("Permission denied") {
                Login::Refused(err)
            } else {
                Login::Unreachable(err)
            }
        }
        Err(e) => Login::Unreachable(e.to_string()),
    }
}

/// A refusal and how it was judged.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub at: Instant,
    pub secret: String,
    pub stage: &'static str,
    pub version: String,
    pub after: String,
    pub status: String,
    pub faults: String,
    pub cause: &'static str,
    pub violation: bool,
    /// Until the version left the stage or logged in again.
    pub lasted: Duration,
}

/// What the prober saw, per secret.
#[derive(Default)]
pub struct Seen {
    pub logins: u64,
    pub refusals: Vec<Refusal>,
    pub unreachable: u64,
    pub read_failures: u64,
    /// Each secret's ACSCurrent version ids in the order they were seen.
    pub currents: HashMap<String, Vec<String>>,
    /// Since when each secret's ACSCurrent has not logged in (reset by a login).
    pub down_since: HashMap<String, Instant>,
    /// The longest time each secret's ACSCurrent did not log in.
    pub longest_down: BTreeMap<String, Duration>,
    pub violations: Vec<String>,
}

pub type Shared = Arc<Mutex<Seen>>;

/// `rotor secret describe NAME`'s Status line.
pub async fn status(rotor: &Rotor, name: &str) -> String {
    match rotor.ok(&["secret", "describe", name]).await {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("Status:"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "?".into()),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Probes `s` until `stop`.
pub async fn run(
    s: Secret,
    api: Api,
    rotor: Rotor,
    faults: Faults,
    seen: Shared,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        probe_once(&s, &api, &rotor, &faults, &seen).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

pub async fn probe_once(s: &Secret, api: &Api, rotor: &Rotor, faults: &Faults, seen: &Shared) {
    let current = match api.stage(&s.name, "ACSCurrent").await {
        Ok(Some(v)) => v,
        Ok(None) | Err(_) => {
            seen.lock().unwrap().read_failures += 1;
            return;
        }
    };
    note_current(seen, &s.name, &current.id);
    check(s, api, rotor, faults, seen, "ACSCurrent", &current).await;
    if s.family.keeps_previous() {
        if let Ok(Some(previous)) = api.stage(&s.name, "ACSPrevious").await {
            check(s, api, rotor, faults, seen, "ACSPrevious", &previous).await;
        }
    }
}

fn note_current(seen: &Shared, name: &str, id: &str) {
    let mut seen = seen.lock().unwrap();
    let list = seen.currents.entry(name.to_owned()).or_default();
    if list.last().map(String::as_str) == Some(id) {
        return;
    }
    let back = list.iter().any(|v| v == id);
    list.push(id.to_owned());
    if back {
        let msg = format!("{name}: ACSCurrent went back to {id}, an earlier ACSCurrent");
        seen.violations.push(msg);
    }
}

async fn check(
    s: &Secret,
    api: &Api,
    rotor: &Rotor,
    faults: &Faults,
    seen: &Shared,
    stage: &'static str,
    version: &Version,
) {
    let outcome = login(s, &version.data).await;
    let now = Instant::now();
    match outcome {
        Login::Ok => {
            let mut seen = seen.lock().unwrap();
            seen.logins += 1;
            if stage == "ACSCurrent" {
                if let Some(since) = seen.down_since.remove(&s.name) {
                    let d = now - since;
                    let longest = seen.longest_down.entry(s.name.clone()).or_default();
                    *longest = (*longest).max(d);
                }
            }
        }
        Login::Unreachable(_) => {
            let mut seen = seen.lock().unwrap();
            seen.unreachable += 1;
            if stage == "ACSCurrent" {
                seen.down_since.entry(s.name.clone()).or_insert(now);
            }
        }
        Login::Refused(_) => {
            let active = faults.active_labels();
            let (cause, violation, after, status) = follow(s, api, rotor, stage, version).await;
            let refusal = Refusal {
                at: now,
                secret: s.name.clone(),
                stage,
                version: version.id.clone(),
                after,
                status,
                faults: active,
                cause,
                violation,
                lasted: now.elapsed(),
            };
            let mut seen = seen.lock().unwrap();
            if stage == "ACSCurrent" {
                let longest = seen.longest_down.entry(s.name.clone()).or_default();
                *longest = (*longest).max(refusal.lasted);
            }
            seen.refusals.push(refusal);
        }
    }
}

/// The API serves versions up to a second old (its read cache).
const API_STALENESS: Duration = Duration::from_millis(1200);
/// How long a refusal is followed before it is judged a lockout.
const FOLLOW: Duration = Duration::from_secs(90);

/// Follows a refusal of `version` (read as `stage`) until it resolves: the version leaves the
/// stage (a rotation moved on: the single-account gap, a previous account being replaced, a
/// read overtaken by rotations) or logs in again (a credential put back). A dual account's
/// `ACSCurrent` that is refused while still `ACSCurrent` is a violation at once; a credential
/// still refused and still staged after [`FOLLOW`] is a lockout — a violation when rotor shows
/// nothing wrong (`Idle`), otherwise reported with the status that explains it.
async fn follow(
    s: &Secret,
    api: &Api,
    rotor: &Rotor,
    stage: &'static str,
    version: &Version,
) -> (&'static str, bool, String, String) {
    let start = Instant::now();
    tokio::time::sleep(API_STALENESS).await;
    loop {
        let cur = api.stage(&s.name, "ACSCurrent").await.ok().flatten();
        let prev = api.stage(&s.name, "ACSPrevious").await.ok().flatten();
        let id = |v: &Option<Version>| v.as_ref().map(|v| v.id.clone()).unwrap_or_default();
        let (cur, prev) = (id(&cur), id(&prev));
        let after = format!("ACSCurrent {cur}, ACSPrevious {prev}");
        let staged = if stage == "ACSCurrent" { &cur } else { &prev };
        if cur.is_empty() {
            // The store is down: keep following.
        } else if s.family.keeps_previous() && version.id == cur {
            let status = status(rotor, &s.name).await;
            return (
                "a dual-account ACSCurrent refused while ACSCurrent",
                true,
                after,
                status,
            );
        } else if *staged != version.id {
            let cause = match (s.family.keeps_previous(), stage) {
                (false, _) => "the single-account/host-password gap (rotated meanwhile)",
                (true, "ACSPrevious") => "ACSPrevious replaced by the next rotation",
                (true, _) => "a read overtaken by two rotations",
            };
            return (cause, false, after, String::new());
        } else if matches!(login(s, &version.data).await, Login::Ok) {
            let cause = if s.family.keeps_previous() {
                "ACSPrevious refused, then put back"
            } else {
                "the single-account/host-password gap (put back)"
            };
            return (cause, false, after, String::new());
        }
        if start.elapsed() > FOLLOW {
            let status = status(rotor, &s.name).await;
            if status.starts_with("Idle") {
                return ("locked out with no rotation running", true, after, status);
            }
            return (
                "locked out while its rotation retries",
                false,
                after,
                status,
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
