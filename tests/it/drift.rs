//! Drift checks on demand (`rotor secret verify NAME`, `rotor verify --all`): a PostgreSQL
//! password and a Redis ACL password changed by hand are drift (exit 6); a target that cannot
//! be reached is not (exit 7); a credential that logs in is fine (exit 0).

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
    let user = format!("dr_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/drift",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
        "--privilege",
        "ReadWrite",
    ]);
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
