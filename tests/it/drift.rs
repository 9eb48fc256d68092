//! Drift checks on demand (`rotor secret verify NAME`, `rotor verify --all`): a PostgreSQL
//! password and a Redis ACL password changed by hand are drift (exit 6) — of `ACSCurrent`, or of
//! `ACSPrevious` for a dual account's previous account, which must still log in; a target that
//! cannot be reached is not (exit 7); credentials that log in are fine (exit 0).

use sqlx::Executor;

use crate::databases::{admin, create_rds, redis_admin, redis_target, Pg};
use crate::support::{Backend, TestEnv};

pub(crate) fn verdict(t: &TestEnv, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = t.run(&all);
    let body = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: not JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), body)
}

#[tokio::test]
async fn a_postgres_password_changed_by_hand_is_drift_and_a_stopped_target_is_not() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("drift");
    t.ok(&create_rds(
        "db/drift",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    let (code, body) = verdict(t, &["secret", "verify", "db/drift"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(0), Some("Works")),
        "{body}"
    );
    // Someone resets the current account's password by hand.
    let current = crate::databases::account_of(t, "db/drift", "ACSCurrent")
        .await
        .0;
    admin()
        .await
        .execute(format!("ALTER ROLE {current} PASSWORD 'Changed-By-Hand-1'").as_str())
        .await
        .unwrap();
    let (code, body) = verdict(t, &["secret", "verify", "db/drift"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(6), Some("Drift")),
        "{body}"
    );
    assert!(
        body["Detail"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{body}"
    );
    let (code, body) = verdict(t, &["verify", "--all"]);
    assert_eq!(
        (code, body["Drifted"].as_u64()),
        (Some(6), Some(1)),
        "{body}"
    );
    // A target that cannot be reached is not drift.
    t.ok(&[
        "target",
        "update",
        "pg",
        "--url",
        "postgres://127.0.0.1:1/postgres",
        "--no-check",
    ]);
    let (code, body) = verdict(t, &["secret", "verify", "db/drift"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(7), Some("Unreachable")),
        "{body}"
    );
    pg.cleanup_dual(&app).await;
}

#[tokio::test]
async fn a_redis_acl_password_changed_by_hand_is_drift() {
    let t = &TestEnv::new(Backend::Sqlite).await;
    redis_target(t).await;
    let user = crate::databases::redis_pair(t, "cache/drift", "dr", &["--privilege", "ReadWrite"]);
    // Every secret with a target, the target's own admin credential included.
    let (code, body) = verdict(t, &["verify", "--all"]);
    assert_eq!(
        (code, body["Checked"].as_u64(), body["Drifted"].as_u64()),
        (Some(0), Some(2), Some(0)),
        "{body}"
    );
    assert!(body.to_string().contains("acs/target/red/admin"), "{body}");
    let current = crate::databases::account_of(t, "cache/drift", "ACSCurrent")
        .await
        .0;
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&current)
        .arg("resetpass")
        .arg(">Changed-By-Hand-1")
        .query_async(&mut admin)
        .await
        .unwrap();
    let (code, body) = verdict(t, &["secret", "verify", "cache/drift"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(6), Some("Drift")),
        "{body}"
    );
    for u in [user.clone(), format!("{user}_clone")] {
        let _: Result<i64, _> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&u)
            .query_async(&mut admin)
            .await;
    }
}

/// A dual account's previous account must still log in until the next rotation: its password
/// changed by hand is drift of `ACSPrevious` (the current one still logs in); a rotation makes a
/// new previous, which repairs it.
#[tokio::test]
async fn a_clone_password_changed_by_hand_is_drift_of_acs_previous_on_postgres() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("pdrift");
    t.ok(&create_rds(
        "db/pdrift",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    let (code, body) = verdict(t, &["secret", "verify", "db/pdrift"]);
    assert_eq!(code, Some(0), "{body}");
    assert_eq!(body["Stages"]["ACSCurrent"], "Works", "{body}");
    assert_eq!(body["Stages"]["ACSPrevious"], "Works", "{body}");
    let previous = crate::databases::account_of(t, "db/pdrift", "ACSPrevious").await;
    assert_eq!(previous.0, format!("{app}_clone"));
    admin()
        .await
        .execute(format!("ALTER ROLE {} PASSWORD 'Changed-By-Hand-3'", previous.0).as_str())
        .await
        .unwrap();
    previous_drifted(t, "db/pdrift", "password authentication failed");
    repaired_by_a_rotation(t, "db/pdrift");
    let now = crate::databases::account_of(t, "db/pdrift", "ACSCurrent").await;
    assert_eq!(now.0, previous.0, "the drifted account is current again");
    assert_eq!(pg.login(&now).await.unwrap(), now.0);
    pg.cleanup_dual(&app).await;
}

#[tokio::test]
async fn a_clone_acl_password_changed_by_hand_is_drift_of_acs_previous_on_redis() {
    let t = &TestEnv::new(Backend::Sqlite).await;
    redis_target(t).await;
    let user = format!("dp_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/pdrift",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
        "--privilege",
        "ReadWrite",
    ]);
    let (code, body) = verdict(t, &["secret", "verify", "cache/pdrift"]);
    assert_eq!(code, Some(0), "{body}");
    assert_eq!(body["Stages"]["ACSPrevious"], "Works", "{body}");
    let previous = crate::databases::account_of(t, "cache/pdrift", "ACSPrevious").await;
    assert_eq!(previous.0, format!("{user}_clone"));
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&previous.0)
        .arg("resetpass")
        .arg(">Changed-By-Hand-3")
        .query_async(&mut admin)
        .await
        .unwrap();
    previous_drifted(t, "cache/pdrift", "refused");
    repaired_by_a_rotation(t, "cache/pdrift");
    let now = crate::databases::account_of(t, "cache/pdrift", "ACSCurrent").await;
    assert_eq!(crate::databases::redis_login(&now).await.unwrap(), now.0);
    for u in [user.clone(), format!("{user}_clone")] {
        let _: Result<i64, _> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&u)
            .query_async(&mut admin)
            .await;
    }
}

/// `rotor secret verify` and `rotor verify --all` find `secret`'s `ACSPrevious` refused (with
/// `refusal` in the reason) and its `ACSCurrent` logging in: exit 6, the stage named.
fn previous_drifted(t: &TestEnv, secret: &str, refusal: &str) {
    let (code, body) = verdict(t, &["secret", "verify", secret]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(6), Some("Drift")),
        "{body}"
    );
    assert_eq!(body["Stages"]["ACSCurrent"], "Works", "{body}");
    assert_eq!(body["Stages"]["ACSPrevious"], "Drift", "{body}");
    let detail = body["Detail"].as_str().unwrap();
    assert!(detail.starts_with("ACSPrevious: "), "{body}");
    assert!(detail.contains(refusal), "{body}");
    assert!(!detail.contains("Changed-By-Hand"), "{body}");
    let out = t.run(&["secret", "verify", secret]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("drift: ACSPrevious: "), "{text}");
    let (code, body) = verdict(t, &["verify", "--all"]);
    assert_eq!(
        (code, body["Drifted"].as_u64()),
        (Some(6), Some(1)),
        "{body}"
    );
}

/// A rotation makes the credential that was current `ACSPrevious` and gives the drifted account
/// a new password as `ACSCurrent`: both log in again.
fn repaired_by_a_rotation(t: &TestEnv, secret: &str) {
    t.ok(&["rotate", secret]);
    let (code, body) = verdict(t, &["secret", "verify", secret]);
    assert_eq!(code, Some(0), "{body}");
    assert_eq!(
        body["Detail"], "ACSCurrent and ACSPrevious log in",
        "{body}"
    );
}

/// `rotor describe --json`'s `Drift`, if any.
pub(crate) fn drift_of(t: &TestEnv, secret: &str) -> serde_json::Value {
    t.json(&["secret", "describe", secret])["Drift"].clone()
}

fn worker(t: &TestEnv, on_drift: &str, metrics: &str) -> std::process::Child {
    t.rotor()
        .args(["worker", "--poll", "100ms", "--metrics-listen", metrics])
        .env("ROTOR_VERIFY_INTERVAL", "2s")
        .env("ROTOR_ON_DRIFT", on_drift)
        .env("ROTOR_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) fn stop(mut worker: std::process::Child) {
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reports_drift_within_its_interval_and_on_drift_rotate_repairs_it() {
    use std::time::{Duration, Instant};
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("wdrift");
    t.ok(&create_rds(
        "db/wdrift",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    // A webhook for secret_drifted, and the worker's metrics.
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
    // Every secret is checked within the interval: nothing has drifted, nothing is reported.
    std::thread::sleep(Duration::from_millis(2600));
    assert!(drift_of(t, "db/wdrift").is_null());
    let current = crate::databases::account_of(t, "db/wdrift", "ACSCurrent").await;
    admin()
        .await
        .execute(format!("ALTER ROLE {} PASSWORD 'Changed-By-Hand-2'", current.0).as_str())
        .await
        .unwrap();
    let changed = Instant::now();
    let drift = loop {
        let d = drift_of(t, "db/wdrift");
        if !d.is_null() {
            break d;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "no drift reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Within the interval (2 s ± 10 %) and a round (200 ms).
    assert!(
        changed.elapsed() < Duration::from_millis(2700),
        "{:?}",
        changed.elapsed()
    );
    assert!(
        drift["Reason"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{drift}"
    );
    let text = t.ok(&["secret", "describe", "db/wdrift"]);
    assert!(text.contains("Drift:"), "{text}");
    let audit = t.json(&["audit", "--secret", "db/wdrift", "--action", "secret.drift"]);
    assert_eq!(audit[0]["Outcome"], "drift", "{audit}");
    let (code, _) = verdict(t, &["secret", "verify", "db/wdrift"]);
    assert_eq!(code, Some(6));
    let notice = hook
        .wait_for("secret_drifted", "db/wdrift", Duration::from_secs(5))
        .await
        .json();
    assert!(
        notice["Error"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{notice}"
    );
    assert!(
        !notice.to_string().contains("Changed-By-Hand-2"),
        "{notice}"
    );
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("rotor_secrets_drifted 1"), "{text}");
    stop(w);

    // on_drift = "rotate": the next check rotates the secret; its new current logs in, and the
    // drift is cleared.
    let before = t.json(&["secret", "get", "db/wdrift"])["VersionId"].clone();
    let w = worker(
        t,
        "rotate",
        &format!("127.0.0.1:{}", crate::api::free_port()),
    );
    let repaired = Instant::now();
    while !drift_of(t, "db/wdrift").is_null() {
        assert!(
            repaired.elapsed() < Duration::from_secs(8),
            "drift not repaired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(t.json(&["secret", "get", "db/wdrift"])["VersionId"], before);
    let now = crate::databases::account_of(t, "db/wdrift", "ACSCurrent").await;
    assert_eq!(pg.login(&now).await.unwrap(), now.0);
    let audit = t.json(&["audit", "--secret", "db/wdrift", "--action", "secret.drift"]);
    assert_eq!(audit[1]["Outcome"], "resolved", "{audit}");
    stop(w);
    pg.cleanup_dual(&app).await;
}
