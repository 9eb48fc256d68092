//! The worker's drift checks keep their schedule: a password changed by hand between two checks
//! is reported by the next one — within the interval, and not before that check was due (the
//! times taken from the store's own schedule and audit records, not from sleeps) — naming the
//! stage that drifted; `on_drift = "rotate"` repairs it. PostgreSQL (a dual account's previous
//! account) and Redis (the current account's ACL password, repaired by two rotations).

use std::time::{Duration, Instant};

use rotor::model::SecretName;
use rotor::store::{AuditQuery, AuditRecord, Store};
use sqlx::Executor;

use crate::databases::{account_of, admin, create_rds, redis_admin, redis_login, redis_target, Pg};
use crate::drift::{drift_of, stop, verdict};
use crate::support::{Backend, TestEnv};

/// The workers' `verify_interval` here, and the most a check may come after it is due: a round
/// (a tenth of the interval) and a generous margin for a loaded machine.
const INTERVAL: &str = "3s";
const LATE: i64 = 300 + 2000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `rotor worker` checking every [`INTERVAL`], with `on_drift` and its metrics on `metrics`.
pub(crate) fn worker(t: &TestEnv, on_drift: &str, metrics: &str) -> std::process::Child {
    t.rotor()
        .args(["worker", "--poll", "100ms", "--metrics-listen", metrics])
        .env("ROTOR_VERIFY_INTERVAL", INTERVAL)
        .env("ROTOR_ON_DRIFT", on_drift)
        .env("ROTOR_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until a worker has just checked `name` (its next check moved on) and that check had
/// time to finish: a change made now comes between two checks. The next check's time (ms).
pub(crate) async fn between_checks(store: &Store, name: &str) -> i64 {
    let name: SecretName = name.parse().unwrap();
    let start = Instant::now();
    let mut planned = None;
    loop {
        let next = store.next_drift_check(&name).await.unwrap();
        match (planned, next) {
            (None, Some(n)) => planned = Some(n),
            (Some(p), Some(n)) if n != p => break,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no drift check of {name} was planned and made"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The check claimed a moment ago runs its logins now: let it finish.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let next = store.next_drift_check(&name).await.unwrap().unwrap();
    assert!(
        next - now_ms() >= 1000,
        "the next check is due too soon for the test to come between: {} ms",
        next - now_ms()
    );
    next
}

/// `name`'s first `secret.drift` record with `outcome` at or after `since` (ms), waited for
/// up to `limit`.
pub(crate) async fn drift_record(
    store: &Store,
    name: &str,
    outcome: &str,
    since: i64,
    limit: Duration,
) -> AuditRecord {
    let start = Instant::now();
    loop {
        let records = store
            .audit_log(&AuditQuery {
                secret: Some(name.to_owned()),
                action: Some("secret.drift".into()),
                since: Some(since),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        if let Some(r) = records.into_iter().find(|r| r.outcome == outcome) {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "no secret.drift '{outcome}' for {name} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The drift was found by the check due at `next`: not before it, and within a round and a
/// margin after it.
fn found_by_the_check_due_at(record: &AuditRecord, next: i64) {
    assert!(
        record.at_ms >= next,
        "drift reported {} ms before the check was due",
        next - record.at_ms
    );
    assert!(
        record.at_ms <= next + LATE,
        "drift reported {} ms after the check was due",
        record.at_ms - next
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_previous_password_changed_between_checks_is_reported_by_the_next_one() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("sdrift");
    t.ok(&create_rds(
        "db/sdrift",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let hook = crate::operations::Receiver::start(listener, 0).await;
    crate::operations::write_private(
        &t.data_dir().join("rotor.toml"),
        &format!(
            "[[webhook]]\nurl = \"http://127.0.0.1:{hook_port}/drift\"\nevents = [\"secret_drifted\"]\nsecret = \"Drift-Hook-Key-0123456789\"\n"
        ),
        0o600,
    );
    let metrics = format!("127.0.0.1:{}", crate::api::free_port());
    let w = worker(t, "report", &metrics);
    let store = t.store().await;
    let next = between_checks(&store, "db/sdrift").await;
    let changed = now_ms();
    let previous = account_of(t, "db/sdrift", "ACSPrevious").await;
    admin()
        .await
        .execute(format!("ALTER ROLE {} PASSWORD 'Changed-By-Hand-4'", previous.0).as_str())
        .await
        .unwrap();
    let record = drift_record(
        &store,
        "db/sdrift",
        "drift",
        changed,
        Duration::from_secs(10),
    )
    .await;
    found_by_the_check_due_at(&record, next);
    eprintln!(
        "changed {} ms before the check due; reported {} ms after it was due",
        next - changed,
        record.at_ms - next
    );
    let detail = record.detail.clone().unwrap();
    assert!(detail.starts_with("ACSPrevious: "), "{detail}");
    assert!(
        detail.contains("password authentication failed"),
        "{detail}"
    );
    // describe names the stage; the gauge counts the secret; the webhook says which stage.
    let drift = drift_of(t, "db/sdrift");
    assert_eq!(
        drift["Stages"],
        serde_json::json!(["ACSPrevious"]),
        "{drift}"
    );
    let text = t.ok(&["secret", "describe", "db/sdrift"]);
    assert!(
        text.contains("Drift:") && text.contains("ACSPrevious: "),
        "{text}"
    );
    let notice = hook
        .wait_for("secret_drifted", "db/sdrift", Duration::from_secs(5))
        .await
        .json();
    assert!(
        notice["Error"]
            .as_str()
            .unwrap()
            .starts_with("ACSPrevious: "),
        "{notice}"
    );
    assert!(
        !notice.to_string().contains("Changed-By-Hand-4"),
        "{notice}"
    );
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("rotor_secrets_drifted 1"), "{text}");
    let (code, body) = verdict(t, &["secret", "verify", "db/sdrift"]);
    assert_eq!(code, Some(6), "{body}");
    stop(w);

    // on_drift = "rotate": one rotation makes a new previous (the current account) and gives
    // the drifted account a new password as the current one.
    let w = worker(
        t,
        "rotate",
        &format!("127.0.0.1:{}", crate::api::free_port()),
    );
    drift_record(
        &store,
        "db/sdrift",
        "resolved",
        record.at_ms,
        Duration::from_secs(15),
    )
    .await;
    assert!(drift_of(t, "db/sdrift").is_null());
    let now = account_of(t, "db/sdrift", "ACSCurrent").await;
    assert_eq!(now.0, previous.0);
    assert_eq!(pg.login(&now).await.unwrap(), now.0);
    let (code, body) = verdict(t, &["secret", "verify", "db/sdrift"]);
    assert_eq!(
        (code, body["Detail"].as_str()),
        (Some(0), Some("ACSCurrent and ACSPrevious log in")),
        "{body}"
    );
    stop(w);
    pg.cleanup_dual(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_acl_password_changed_between_checks_is_reported_and_on_drift_rotate_repairs_it() {
    let t = &TestEnv::new(Backend::Sqlite).await;
    redis_target(t).await;
    let user = format!("sd_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/sdrift",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
        "--privilege",
        "ReadWrite",
    ]);
    let before = t.json(&["secret", "get", "cache/sdrift"])["VersionId"].clone();
    let w = worker(
        t,
        "rotate",
        &format!("127.0.0.1:{}", crate::api::free_port()),
    );
    let store = t.store().await;
    let next = between_checks(&store, "cache/sdrift").await;
    let changed = now_ms();
    let current = account_of(t, "cache/sdrift", "ACSCurrent").await;
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&current.0)
        .arg("resetpass")
        .arg(">Changed-By-Hand-5")
        .query_async(&mut admin)
        .await
        .unwrap();
    let record = drift_record(
        &store,
        "cache/sdrift",
        "drift",
        changed,
        Duration::from_secs(10),
    )
    .await;
    found_by_the_check_due_at(&record, next);
    let detail = record.detail.clone().unwrap();
    assert!(detail.starts_with("ACSCurrent: "), "{detail}");
    assert!(!detail.contains("Changed-By-Hand-5"), "{detail}");
    // Repaired: the first rotation makes the partner current (the drifted account becomes
    // ACSPrevious), the second gives the drifted account a new password as ACSCurrent.
    drift_record(
        &store,
        "cache/sdrift",
        "resolved",
        record.at_ms,
        Duration::from_secs(15),
    )
    .await;
    stop(w);
    assert!(drift_of(t, "cache/sdrift").is_null());
    assert_ne!(
        t.json(&["secret", "get", "cache/sdrift"])["VersionId"],
        before
    );
    let now = account_of(t, "cache/sdrift", "ACSCurrent").await;
    let previous = account_of(t, "cache/sdrift", "ACSPrevious").await;
    assert_eq!(
        now.0, current.0,
        "two rotations: the drifted account is current"
    );
    assert_eq!(redis_login(&now).await.unwrap(), now.0);
    assert_eq!(redis_login(&previous).await.unwrap(), previous.0);
    let (code, body) = verdict(t, &["secret", "verify", "cache/sdrift"]);
    assert_eq!(code, Some(0), "{body}");
    for u in [user.clone(), format!("{user}_clone")] {
        let _: Result<i64, _> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&u)
            .query_async(&mut admin)
            .await;
    }
}
