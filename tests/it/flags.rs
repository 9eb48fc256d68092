//! Commands do what their flags say, or refuse them: `rotate --due --dry-run` changes nothing,
//! `--window` belongs to `--cron`, `--rotate-now` retries a failed secret now, a secret type
//! its target does not serve and a schedule on a secret that cannot rotate are refused, bounds
//! read as the README states them, and a dry run the target refuses exits 7 (not 4).

use serde_json::json;
use sqlx::{Executor, Row};

use crate::databases::{admin, create_rds, Pg};
use crate::support::{assert_refused, Backend, TestEnv};
use crate::testkit_rotator::FileRotator;
use crate::workers::{ecs_secret, testkit_ok};

#[tokio::test]
async fn rotate_due_dry_run_checks_every_due_secret_and_changes_nothing() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    for name in ["dry-a", "dry-b"] {
        ecs_secret(&t, hosts, name);
        testkit_ok(
            &t,
            hosts,
            &["rotation", "set", name, "--interval", "1d", "--rotate-now"],
        );
    }
    let before = t.snapshot().await;
    let out = t
        .testkit(hosts)
        .args(["--json", "rotate", "--due", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["Due"], 2, "{summary}");
    assert_eq!(summary["Checked"], 2, "{summary}");
    assert_eq!(summary["Failed"], 0, "{summary}");
    assert_eq!(t.snapshot().await, before, "a dry run changes nothing");
    for name in ["dry-a", "dry-b"] {
        assert_eq!(
            FileRotator::passwords(hosts, name),
            [format!("initial-{name}")],
            "the host keeps its password"
        );
    }
    // A host that refuses its credential: the pass says which, exits 7, and still changes
    // nothing.
    FileRotator::set_passwords(hosts, "dry-b", &[]);
    let out = t
        .testkit(hosts)
        .args(["--json", "rotate", "--due", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["Checked"], 1, "{summary}");
    assert_eq!(summary["Failed"], 1, "{summary}");
    assert_eq!(t.snapshot().await, before, "a dry run changes nothing");
    FileRotator::set_passwords(hosts, "dry-b", &["initial-dry-b".to_owned()]);

    // Both are still due: the real pass rotates them.
    let out = testkit_ok(&t, hosts, &["rotate", "--due"]);
    assert!(out.contains("2 due, 2 rotated"), "{out}");
}

#[tokio::test]
async fn rotation_flags_are_refused_or_obeyed() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    ecs_secret(&t, hosts, "flag-a");

    // --window belongs to --cron.
    let out = t
        .testkit(hosts)
        .args([
            "rotation",
            "set",
            "flag-a",
            "--interval",
            "7d",
            "--window",
            "1h",
        ])
        .output()
        .unwrap();
    assert_refused(&out, 2, "--window", None);

    // Bounds read as the README states them.
    let out = t
        .testkit(hosts)
        .args(["rotation", "set", "flag-a", "--interval", "400d"])
        .output()
        .unwrap();
    assert_refused(&out, 2, "ECS secrets rotate every 1 hour to 365 days", None);

    // A failed secret with --rotate-now runs again now.
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "flag-a",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let out = t
        .testkit(hosts)
        .env("ROTOR_TEST_FAULT", "set:fatal")
        .args(["rotate", "--due"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let info = t.json(&["secret", "describe", "flag-a"]);
    assert_eq!(info["RotationStatus"], "Failed", "{info}");
    // While someone rotates it, --rotate-now is refused with the reason.
    let store = t.store().await;
    let name = rotor::model::SecretName::parse("flag-a").unwrap();
    let claim = store
        .claim_now("someone-else", &name, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let out = t
        .testkit(hosts)
        .args([
            "rotation",
            "set",
            "flag-a",
            "--interval",
            "1d",
            "--rotate-now",
        ])
        .output()
        .unwrap();
    assert_refused(&out, 4, "is being rotated right now", None);
    assert!(store.release_claim(&claim).await.unwrap());
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "flag-a",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let out = testkit_ok(&t, hosts, &["rotate", "--due"]);
    assert!(out.contains("1 due, 1 rotated"), "{out}");
    let info = t.json(&["secret", "describe", "flag-a"]);
    assert_eq!(info["RotationStatus"], "Idle", "{info}");
}

#[tokio::test]
async fn a_schedule_on_a_secret_that_cannot_rotate_is_refused() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let value = json!({"AccountName": "app", "AccountPassword": "App-Initial-Pass1"}).to_string();
    let out = t.run(&[
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--value",
        &value,
        "--rotation-interval",
        "7d",
    ]);
    assert_refused(
        &out,
        2,
        "has no target, so it cannot rotate",
        Some("App-Initial"),
    );
    let out = t.run(&["secret", "describe", "db/app"]);
    assert_refused(&out, 3, "does not exist", None);
    // Stored as it is, it keeps no schedule.
    t.ok(&[
        "secret", "create", "db/app", "--type", "Rds", "--value", &value,
    ]);
    let out = t.run(&[
        "rotation",
        "set",
        "db/app",
        "--cron",
        "0 3 * * 0",
        "--window",
        "2h",
    ]);
    assert_refused(&out, 2, "has no target, so it cannot rotate", None);
    let info = t.json(&["secret", "describe", "db/app"]);
    assert_eq!(info["AutomaticRotation"], "Disabled", "{info}");
}

#[tokio::test]
async fn a_secret_type_its_target_does_not_serve_is_refused_and_a_refused_dry_run_exits_7() {
    let pg = Pg::new().await;
    let account = pg.name("mixed");
    let out = pg.t.run(&[
        "secret",
        "create",
        "cache/mixed",
        "--type",
        "Redis",
        "--target",
        "pg",
        "--account",
        &account,
    ]);
    assert_refused(&out, 2, "cannot live on target 'pg'", None);
    let roles = admin()
        .await
        .fetch_all(format!("SELECT 1 FROM pg_roles WHERE rolname LIKE '{account}%'").as_str())
        .await
        .unwrap();
    assert!(roles.is_empty(), "nothing was made on the target");

    // A dry run whose target refuses the current credential: a target error (7).
    let solo = pg.name("dryrun");
    pg.t.ok(&create_rds(
        "db/dryrun",
        "pg",
        &[
            "--sub-type",
            "SingleUser",
            "--account",
            &solo,
            "--database",
            &pg.db,
        ],
    ));
    pg.t.ok(&["rotate", "db/dryrun", "--dry-run"]);
    admin()
        .await
        .execute(format!("ALTER ROLE {solo} PASSWORD 'Changed-Elsewhere-1'").as_str())
        .await
        .unwrap();
    let out = pg.t.run(&["rotate", "db/dryrun", "--dry-run"]);
    assert_refused(&out, 7, "dry run failed", None);
    let who: i64 = admin()
        .await
        .fetch_one(format!("SELECT count(*) AS n FROM pg_roles WHERE rolname = '{solo}'").as_str())
        .await
        .unwrap()
        .get("n");
    assert_eq!(who, 1);
    pg.cleanup(&[solo, account]).await;
}
