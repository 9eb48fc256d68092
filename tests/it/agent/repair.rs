//! `on_drift = "rotate"` and the agent together: a PostgreSQL password changed by hand makes
//! the application stand-in's logins fail (it reads the agent's file, which holds the drifted
//! credential); the worker's next drift check rotates the secret, the agent renders the new
//! credential, and the stand-in logs in again within the agent's poll + 1 s of the repair.

use super::rotations::{creds_template, IN_PLACE, POLL};
use super::*;
use crate::databases::{account_of, admin, create_rds, scram_port, Pg};
use crate::drift_schedule::{between_checks, drift_record};
use sqlx::Executor;

/// A shell loop that logs in every 100 ms with the account and password in `file`, printing
/// `ok MS` or `FAIL MS`: MS is when the attempt began, before it read the file.
fn stand_in(login: &str, file: &Path) -> Command {
    let script = format!(
        "trap 'exit 0' TERM; while :; do at=$(date +%s%3N); \
         {{ read -r U; read -r P; }} < '{}'; out=$({login} 2>&1); rc=$?; \
         if [ \"$rc\" -ge 128 ]; then exit 0; fi; \
         if [ \"$rc\" -eq 0 ] && [ \"$out\" = 1 ]; then echo \"ok $at\"; else echo \"FAIL $at\"; fi; \
         sleep 0.1; done",
        file.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    cmd
}

/// The stand-in's attempts: (began at, ms; logged in).
fn attempts(running: &Running) -> Vec<(i64, bool)> {
    running
        .lines()
        .iter()
        .filter_map(|l| {
            let (word, at) = l.split_once(' ')?;
            Some((at.parse().ok()?, word == "ok"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_on_drift_rotate_repairs_a_secret_the_application_logs_in_again() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("heal");
    t.ok(&create_rds(
        "db/heal",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    crate::operations::write_private(
        &t.data_dir().join("rotor.toml"),
        "[worker]\nverify_interval = \"3s\"\non_drift = \"rotate\"\n",
        0o600,
    );
    let rig = Rig::start(t, &["GetSecretValue:db/*", "ListSecretVersionIds:db/*"]);
    let config = rig.config(t, POLL, &creds_template("db/heal", &rig));
    let agent = rig.agent(t, &["--config", config.to_str().unwrap()]);
    let creds = rig.out.join("creds");
    wait_for(Duration::from_secs(10), "the first render", || {
        creds.exists()
    });
    let login = format!(
        "PGPASSWORD=\"$P\" PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -p {} -U \"$U\" -d {} -Atc 'SELECT 1'",
        scram_port(),
        pg.db
    );
    let mut app_running = Running::spawn(stand_in(&login, &creds));
    wait_for(
        Duration::from_secs(10),
        "the stand-in's first login",
        || attempts(&app_running).iter().any(|(_, ok)| *ok),
    );

    // Between two drift checks, someone resets the current account's password by hand.
    let store = t.store().await;
    between_checks(&store, "db/heal").await;
    let current = account_of(t, "db/heal", "ACSCurrent").await;
    let changed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    admin()
        .await
        .execute(format!("ALTER ROLE {} PASSWORD 'Changed-By-Hand-6'", current.0).as_str())
        .await
        .unwrap();
    let drift = drift_record(&store, "db/heal", "drift", changed, Duration::from_secs(10)).await;
    let repaired = drift_record(
        &store,
        "db/heal",
        "resolved",
        drift.at_ms,
        Duration::from_secs(20),
    )
    .await;
    // Leave the agent its poll + 1 s, then as long again for the stand-in to show it.
    let deadline = repaired.at_ms + IN_PLACE.as_millis() as i64;
    std::thread::sleep(IN_PLACE * 2);
    let seen = attempts(&app_running);
    signal(&app_running.child, libc::SIGKILL);
    let _ = app_running.child.wait();
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");

    // While drifted, the application's logins fail; after the repair they work again.
    let failed_while_drifted = seen
        .iter()
        .filter(|(at, ok)| *at >= changed && *at < drift.at_ms && !ok)
        .count();
    assert!(
        failed_while_drifted > 0,
        "no failed login while drifted: {seen:?}"
    );
    let after: Vec<&(i64, bool)> = seen.iter().filter(|(at, _)| *at >= deadline).collect();
    assert!(
        after.len() >= 3,
        "too few logins after the repair: {seen:?}"
    );
    assert!(
        after.iter().all(|(_, ok)| *ok),
        "a login failed after poll + 1 s from the repair: {seen:?}"
    );
    let recovered = seen
        .iter()
        .find(|(at, ok)| *at >= drift.at_ms && *ok)
        .map(|(at, _)| at - repaired.at_ms);
    eprintln!(
        "{failed_while_drifted} failed logins while drifted; first login after the repair began {recovered:?} ms from it"
    );
    assert!(!log.contains("Changed-By-Hand-6"));
    rig.stop();
    pg.cleanup_dual(&app).await;
}
