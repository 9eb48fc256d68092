//! Follow-ups that keep failing: the RAM family's `--previous-grace` follow-up (disable the
//! previous AccessKey once its grace has passed) against an emulator that refuses
//! `UpdateAccessKey`. A follow-up backs off like a rotation, is given up after `--max-attempts`
//! failures (at once when the error is fatal) and shows on the secret (`describe`, metrics, the
//! audit log), and it never holds up the secret's next rotation.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rotators::ram::client::SignatureStyle;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::ram::{add_ram_target, env, pair, Emulator};
use crate::support::{Backend, TestEnv};
use crate::workers::{sample, scrape};

const SECRET: &str = "ram/web";

/// User `web` on the emulator and `ram/web`, whose previous key gets a 1 s grace, rotated once
/// by hand: its follow-up is planned a second later.
async fn rotated_with_grace(t: &TestEnv, emulator: &Emulator) {
    emulator
        .admin(SignatureStyle::V3)
        .call("CreateUser", &[("UserName", "web")])
        .await
        .unwrap();
    assert!(add_ram_target(t, "cloud", emulator, &[]).status.success());
    t.ok(&[
        "secret",
        "create",
        SECRET,
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "web",
        "--previous-grace",
        "1s",
        "--rotation-interval",
        "30d",
    ]);
    t.ok(&["rotate", SECRET]);
}

/// A worker polling every 100 ms, with `extra` flags.
fn worker(t: &TestEnv, extra: &[&str]) -> Child {
    t.rotor()
        .args(["worker", "--poll", "100ms"])
        .args(extra)
        .env("ROTOR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut worker: Child) {
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success());
}

/// The secret's `rotation.followup` audit records, oldest first: (ms since the epoch, outcome,
/// detail).
fn followups(t: &TestEnv) -> Vec<(i64, String, String)> {
    let records = t.json(&["audit", "--secret", SECRET, "--action", "rotation.followup"]);
    records
        .as_array()
        .expect("a list of records")
        .iter()
        .map(|r| {
            let at = chrono::DateTime::parse_from_rfc3339(r["Time"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (at, text("Outcome"), text("Detail"))
        })
        .collect()
}

fn outcomes(records: &[(i64, String, String)]) -> Vec<&str> {
    records.iter().map(|r| r.1.as_str()).collect()
}

/// `secret describe --json` once `done` holds for it, or a panic saying `what` never happened.
async fn describe_when(t: &TestEnv, done: impl Fn(&Value) -> bool, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let described = t.json(&["secret", "describe", SECRET]);
        if done(&described) {
            return described;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {described}\nfollow-ups: {:?}",
            followups(t)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status of key `id` of user `web`.
async fn key_status(emulator: &Emulator, id: &str) -> String {
    emulator
        .admin(SignatureStyle::V3)
        .list_access_keys("web")
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.access_key_id == id)
        .map(|k| k.status)
        .unwrap_or_else(|| panic!("key {id} is gone"))
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn followups_failed(metrics: &str) -> f64 {
    sample(
        &scrape(metrics),
        "rotor_rotations_total",
        &[("type", "RAMCredentials"), ("result", "followup_failed")],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_follow_up_backs_off_is_given_up_and_shows_on_the_secret() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    rotated_with_grace(&t, &emulator).await;
    let previous = pair(&t, SECRET, "ACSPrevious");

    // A retryable refusal (HTTP 503): the follow-up backs off, then is given up after four.
    emulator
        .refuse("UpdateAccessKey", 503, "ServiceUnavailable")
        .await;
    let metrics = free_addr();
    let w = worker(
        &t,
        &[
            "--backoff-base",
            "2s",
            "--max-attempts",
            "4",
            "--metrics-listen",
            &metrics,
        ],
    );
    let described = describe_when(
        &t,
        |d| d["RotationStatus"] == "Failed",
        "the failing follow-up was never given up",
    )
    .await;
    let failure = &described["RotationFailure"];
    let reason = failure["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("follow-up failed") && reason.contains("ServiceUnavailable"),
        "{described}"
    );
    assert_eq!(failure["Attempts"], 4, "{described}");
    let records = followups(&t);
    assert_eq!(
        outcomes(&records),
        ["retrying", "retrying", "retrying", "failed"],
        "one record per attempt, not one per poll: {records:?}"
    );
    // Each attempt waits at least half its backoff (2 s, doubled per attempt: 1, 2, 4 s) after
    // the last; audit times are whole seconds, so each gap may show up to 1 s short.
    for (i, pair) in records.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let least = (1000 << i) - 1000;
        assert!(
            gap >= least,
            "attempt {} came {gap} ms after attempt {}, before its backoff: {records:?}",
            i + 2,
            i + 1
        );
    }
    assert!(
        records[3].0 - records[0].0 >= 6000,
        "the retries waited less than their backoffs: {records:?}"
    );
    for (i, r) in records.iter().enumerate() {
        assert!(r.2.starts_with(&format!("attempt {}: ", i + 1)), "{r:?}");
    }
    assert_eq!(followups_failed(&metrics), 1.0);
    assert_eq!(key_status(&emulator, &previous.0).await, "Active");

    // A fatal refusal (403 NoPermission) is given up at its first attempt. The rotation that
    // plans the next follow-up clears the failure first.
    emulator
        .refuse("UpdateAccessKey", 403, "NoPermission")
        .await;
    t.ok(&["rotate", SECRET]);
    assert_eq!(
        t.json(&["secret", "describe", SECRET])["RotationStatus"],
        "Idle"
    );
    let described = describe_when(
        &t,
        |d| d["RotationStatus"] == "Failed",
        "the fatal follow-up was never shown",
    )
    .await;
    let failure = &described["RotationFailure"];
    let reason = failure["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("follow-up failed") && reason.contains("NoPermission"),
        "{described}"
    );
    assert_eq!(failure["Attempts"], 1, "{described}");
    // Several polls and more than any backoff later, it was still tried only once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let records = followups(&t);
    assert_eq!(
        outcomes(&records[4..]),
        ["failed"],
        "a fatal follow-up is not retried: {records:?}"
    );
    assert!(records[4].2.starts_with("attempt 1: "), "{records:?}");
    assert_eq!(followups_failed(&metrics), 2.0);
    stop(w);
}

/// Waits until the worker has rotated `ram/web` away from `current` and finished.
async fn rotated_from(t: &TestEnv, current: &(String, String), what: &str) {
    describe_when(
        t,
        |d| d["RotationStatus"] == "Idle" && pair(t, SECRET, "ACSCurrent") != *current,
        what,
    )
    .await;
    assert_eq!(pair(t, SECRET, "ACSPrevious"), *current);
    let records = followups(t);
    assert!(
        !outcomes(&records).contains(&"failed"),
        "the rotation did not wait for the follow-up to be given up: {records:?}"
    );
}

/// Waits until the follow-up has failed `n` times in all.
async fn follow_up_failed(t: &TestEnv, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while followups(t).iter().filter(|r| r.1 == "retrying").count() < n {
        assert!(
            Instant::now() < deadline,
            "the follow-up never ran: {:?}",
            followups(t)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_follow_up_never_holds_up_the_next_rotation() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    rotated_with_grace(&t, &emulator).await;
    emulator
        .refuse("UpdateAccessKey", 503, "ServiceUnavailable")
        .await;
    // Enough attempts that the follow-up is still being retried when the rotation is due.
    let w = worker(&t, &["--backoff-base", "2s", "--max-attempts", "1000"]);
    follow_up_failed(&t, 1).await;

    // The scheduled rotation comes due while the follow-up keeps failing. (Its interval is at
    // least 7 days, so the test moves its planned time to now, where the store keeps it while a
    // follow-up is pending.) The worker rotates at its next look.
    let current = pair(&t, SECRET, "ACSCurrent");
    let mut store_db = PgConnection::connect(&t.store_url().unwrap())
        .await
        .expect("the test store's PostgreSQL database");
    let moved = sqlx::query("UPDATE secrets SET followup_next_at = $1 WHERE name = $2")
        .bind(chrono::Utc::now().timestamp_millis())
        .bind(SECRET)
        .execute(&mut store_db)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    rotated_from(
        &t,
        &current,
        "the scheduled rotation never ran while the follow-up kept failing",
    )
    .await;

    // The new rotation's follow-up fails too; a rotation asked for now still runs.
    let before = followups(&t).len();
    follow_up_failed(&t, before + 1).await;
    let current = pair(&t, SECRET, "ACSCurrent");
    t.ok(&[
        "rotation",
        "set",
        SECRET,
        "--interval",
        "7d",
        "--rotate-now",
    ]);
    rotated_from(
        &t,
        &current,
        "the rotation asked for now never ran while the follow-up kept failing",
    )
    .await;

    // The last rotation's follow-up disables the key it made previous once the cloud allows it.
    emulator.allow("UpdateAccessKey").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while key_status(&emulator, &current.0).await != "Inactive" {
        assert!(
            Instant::now() < deadline,
            "the previous key stayed Active: {:?}",
            followups(&t)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        key_status(&emulator, &pair(&t, SECRET, "ACSCurrent").0).await,
        "Active"
    );
    assert_eq!(
        t.json(&["secret", "describe", SECRET])["RotationStatus"],
        "Idle"
    );
    stop(w);
}
