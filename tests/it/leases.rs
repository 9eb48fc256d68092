//! One driver per secret on every path: a lease belongs to one claim, is renewed while any step
//! runs — worker, `rotor rotate`, the API's `RotateSecret` — and released by that claim alone; a
//! second rotation of a secret being rotated is refused. Real `rotor-testkit` processes (the
//! rotor CLI with the file-host test rotator, whose `set` can be made slow) on a PostgreSQL
//! store, the API driven by the official KMS SDK for Python.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{assert_refused, Backend, TestEnv};
use crate::testkit_rotator::FileRotator;
use crate::workers::{
    ecs_secret, sample, scrape, spawn_worker, terminate, testkit_ok, wait_exit, FAST,
};

/// A PostgreSQL store, initialised.
async fn env() -> TestEnv {
    let t = TestEnv::new(Backend::Postgres).await;
    t.ok(&["init"]);
    t
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", crate::api::free_port())
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids that ran `step` of `secret`, in order.
fn runs(hosts: &Path, secret: &str, step: &str) -> Vec<String> {
    FileRotator::log(hosts)
        .into_iter()
        .filter(|(s, st, _)| s == secret && st == step)
        .map(|(_, _, pid)| pid)
        .collect()
}

/// An AccessKey allowed everything, and the API's CA in a file, for the SDK.
fn sdk_access(t: &TestEnv) -> (String, String, String) {
    let key = t.json(&["access-key", "create", "--name", "sdk", "--allow", "*:*"]);
    let ca = t.dir.path().join("ca.pem");
    std::fs::write(&ca, t.ok(&["ca"])).unwrap();
    (
        key["AccessKeyId"].as_str().unwrap().to_owned(),
        key["AccessKeySecret"].as_str().unwrap().to_owned(),
        ca.to_str().unwrap().to_owned(),
    )
}

/// `RotateSecret` on each of `names` at once, through the official SDK: one JSON line each.
fn sdk_rotate(
    addr: &str,
    access: &(String, String, String),
    names: &[&str],
) -> std::process::Command {
    let python = std::env::var("ROTOR_TEST_KMS_SDK_PYTHON").unwrap_or_else(|_| {
        panic!("ROTOR_TEST_KMS_SDK_PYTHON is not set: tests/run makes the KMS SDK virtualenv and sets it")
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/rotate_many.py");
    let mut cmd = std::process::Command::new(python);
    cmd.args([script, addr, &access.2, &access.0, &access.1])
        .args(names)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn answers(out: &std::process::Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn listening(addr: &str) {
    wait_for(
        &format!("listening on {addr}"),
        Duration::from_secs(30),
        || std::net::TcpStream::connect(addr).is_ok(),
    );
}

/// A `rotor-testkit` process whose `set` steps take `slow_ms`.
fn slow(t: &TestEnv, hosts: &Path, slow_ms: u64, args: &[&str]) -> Child {
    slow_first(t, hosts, slow_ms, None, args)
}

/// A `rotor-testkit` process whose first `times` `set` steps (all, with `None`) take `slow_ms`.
fn slow_first(t: &TestEnv, hosts: &Path, slow_ms: u64, times: Option<u32>, args: &[&str]) -> Child {
    let fault = match times {
        Some(n) => format!("set:slow:{n}"),
        None => "set:slow".into(),
    };
    t.testkit(hosts)
        .args(args)
        .env("ROTOR_TEST_FAULT", fault)
        .env("ROTOR_TEST_SLOW_MS", slow_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `name`'s rotation has stored its pending value and is in its `set` step.
fn in_set(t: &TestEnv, name: &str) {
    wait_for(&format!("{name} in set"), Duration::from_secs(20), || {
        describe(t, name)["RotationStep"] == "set"
    });
    std::thread::sleep(Duration::from_millis(300));
}

/// Runs `rotor-testkit rotate NAME --lease 1s` with a `set` that hangs and SIGKILLs it once
/// it is in `set`, its lease left to run out; returns its pid.
fn killed_in_set(t: &TestEnv, hosts: &Path, name: &str) -> String {
    let mut killed = t
        .testkit(hosts)
        .args(["rotate", name, "--lease", "1s"])
        .env("ROTOR_TEST_FAULT", "set:hang")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    in_set(t, name);
    killed.kill().unwrap();
    killed.wait().unwrap();
    killed.id().to_string()
}

fn describe(t: &TestEnv, name: &str) -> Value {
    t.json(&["secret", "describe", name])
}

fn current_version(t: &TestEnv, name: &str) -> String {
    let versions = t.json(&["secret", "versions", name]);
    versions
        .as_array()
        .or_else(|| versions["VersionIds"].as_array())
        .unwrap()
        .iter()
        .find(|v| v.to_string().contains("ACSCurrent"))
        .map(|v| v["VersionId"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rotations_beside_a_worker_leave_its_in_flight_leases_alone() {
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    let busy = ["busy-1", "busy-2", "busy-3"];
    for name in busy.iter().chain(&["api-1", "api-2"]) {
        ecs_secret(&t, h, name);
    }
    for name in busy {
        testkit_ok(
            &t,
            h,
            &["rotation", "set", name, "--interval", "1d", "--rotate-now"],
        );
    }
    let access = sdk_access(&t);
    let (api, metrics) = (free_addr(), free_addr());
    // The three sets take 6 s, three lease lengths: the worker renews each claim meanwhile.
    // The API's rotations, later, are quick.
    let mut worker = slow_first(
        &t,
        h,
        6000,
        Some(3),
        &[
            "worker",
            "--lease",
            "2s",
            "--poll",
            "100ms",
            "--api-listen",
            &api,
            "--metrics-listen",
            &metrics,
        ],
    );
    listening(&api);
    for name in busy {
        in_set(&t, name);
    }
    // Two API rotations of other secrets, in the same process, while the three are in `set`.
    let out = sdk_rotate(&api, &access, &["api-1", "api-2"])
        .output()
        .unwrap();
    for answer in answers(&out) {
        assert_eq!(answer["ok"], true, "{answer}");
    }
    for name in busy {
        assert_eq!(
            describe(&t, name)["RotationStep"],
            "set",
            "{name} still in set"
        );
    }
    wait_for("the worker's rotations", Duration::from_secs(30), || {
        busy.iter()
            .all(|n| describe(&t, n)["RotationStatus"] == "Idle")
    });
    for name in busy.iter().chain(&["api-1", "api-2"]) {
        for step in ["create", "set", "test", "finish"] {
            assert_eq!(runs(h, name, step).len(), 1, "{name} ran {step} once");
        }
        assert_eq!(current_version(&t, name), "v2", "{name}");
        let audit = t.json(&["audit", "--secret", name]);
        let records = audit.as_array().unwrap();
        for action in ["rotation.create", "rotation.set", "rotation.promote"] {
            let n = records.iter().filter(|r| r["Action"] == action).count();
            assert_eq!(n, 1, "{name}: {action} once in {audit}");
        }
    }
    assert_eq!(
        sample(&scrape(&metrics), "rotor_lease_takeovers_total", &[]).unwrap_or(0.0),
        0.0,
        "no lease was taken over"
    );
    terminate(&mut worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotate_secret_calls_on_one_secret_one_rotates_the_other_is_refused() {
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "one");
    let access = sdk_access(&t);
    let api = free_addr();
    let mut server = slow(&t, h, 3000, &["serve", "--api-listen", &api]);
    listening(&api);
    let out = sdk_rotate(&api, &access, &["one", "one"]).output().unwrap();
    let answers = answers(&out);
    assert_eq!(answers.len(), 2);
    let rotated: Vec<&Value> = answers.iter().filter(|a| a["ok"] == true).collect();
    let refused: Vec<&Value> = answers.iter().filter(|a| a["ok"] == false).collect();
    assert_eq!(rotated.len(), 1, "{answers:?}");
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(refused[0]["code"], "Rejected.RotationInProgress");
    assert_eq!(rotated[0]["version"], "v2");
    assert_eq!(runs(h, "one", "create").len(), 1, "one driver only");
    assert_eq!(runs(h, "one", "set").len(), 1, "one driver only");
    terminate(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rotation_keeps_its_lease_through_a_slow_set_and_a_killed_one_is_resumed() {
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "manual");
    let mut worker = t
        .testkit(h)
        .args(["worker", "--lease", "1s"])
        .args(FAST)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // `set` takes 3.5 lease lengths; the worker beside it must never take the secret over.
    let mut manual = slow(&t, h, 3500, &["rotate", "manual", "--lease", "1s"]);
    let pid = manual.id().to_string();
    let status = wait_exit(&mut manual, Duration::from_secs(30));
    assert!(status.success(), "the manual rotation completes");
    assert_eq!(runs(h, "manual", "set"), vec![pid.clone()], "one driver");
    assert_eq!(runs(h, "manual", "finish"), vec![pid], "one driver");
    assert_eq!(current_version(&t, "manual"), "v2");
    // A second manual run, killed in its `set`: the worker resumes it once the lease expires.
    let killed_pid = killed_in_set(&t, h, "manual");
    wait_for("the worker to resume", Duration::from_secs(30), || {
        describe(&t, "manual")["RotationStatus"] == "Idle" && current_version(&t, "manual") == "v3"
    });
    let sets = runs(h, "manual", "set");
    assert_eq!(
        sets.len(),
        2,
        "the killed run never logged its hung set: {sets:?}"
    );
    assert_ne!(sets[1], killed_pid, "the worker ran the resumed set");
    terminate(&mut worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_an_api_rotation_between_steps_and_gives_its_lease_back() {
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "drain");
    let access = sdk_access(&t);
    let api = free_addr();
    let mut server = slow(&t, h, 3000, &["serve", "--api-listen", &api]);
    listening(&api);
    let call = sdk_rotate(&api, &access, &["drain"]).spawn().unwrap();
    in_set(&t, "drain");
    terminate(&mut server);
    let answer = answers(&call.wait_with_output().unwrap());
    assert_eq!(answer[0]["ok"], false, "{answer:?}");
    // The step in flight finished; the rotation stopped before the next one.
    assert!(runs(h, "drain", "test").is_empty(), "stopped after set");
    let described = describe(&t, "drain");
    assert_eq!(described["RotationStep"], "test", "{described}");
    // Its lease was given back: a manual run resumes at once, from `test`.
    let started = Instant::now();
    testkit_ok(&t, h, &["rotate", "drain"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(runs(h, "drain", "set").len(), 1, "set is not run again");
    assert_eq!(runs(h, "drain", "finish").len(), 1);
    assert_eq!(current_version(&t, "drain"), "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_being_rotated_is_not_deleted_under_its_driver() {
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "busy");
    // A manual rotation holds the secret in a slow `set`: deleting it now would leave the
    // driver changing the host for a secret no longer stored.
    let mut manual = slow(&t, h, 3000, &["rotate", "busy", "--lease", "2s"]);
    in_set(&t, "busy");
    for args in [
        &["secret", "delete", "busy", "--force"][..],
        &["secret", "delete", "busy", "--force", "--drop-accounts"],
        &["secret", "delete", "busy", "--recovery-days", "7"],
    ] {
        let out = t.testkit(h).args(args).output().unwrap();
        assert_refused(&out, 4, "is being rotated by", None);
    }
    let status = wait_exit(&mut manual, Duration::from_secs(30));
    assert!(status.success(), "the rotation completes");
    assert_eq!(current_version(&t, "busy"), "v2");
    // Once it is done, the deletion goes through.
    t.testkit(h)
        .args(["secret", "delete", "busy", "--force"])
        .output()
        .map(|out| assert!(out.status.success(), "{out:?}"))
        .unwrap();
    assert!(!t.run(&["secret", "describe", "busy"]).status.success());
}

/// A claim granted after its lease ran out is renewed before it drives, or not driven at all.
/// Found by the chaos soak (tests/chaos, seed 1): the store restarting under a worker made its
/// claim wait 8.6 s for a connection, so the claim was written with a 5 s lease already past;
/// the worker's next poll took its own claim over, and two drives of one RAM rotation ran —
/// the stale one deleted the new ACSCurrent AccessKey as "an interrupted attempt's". Here a
/// manual rotation's claim waits 3 s on a row lock (a 1 s lease) while a worker polls beside
/// it; `set` (150 ms, recorded when it ends) must run in one process only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_granted_after_its_lease_ran_out_is_renewed_before_it_drives() {
    use sqlx::{Connection, Executor};
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "late");
    let worker_args = [
        "worker",
        "--lease",
        "1s",
        "--poll",
        "100ms",
        "--test-retry-delay",
        "50ms",
    ];
    let mut worker = slow(&t, h, 150, &worker_args);
    std::thread::sleep(Duration::from_millis(1500));

    let mut lock = sqlx::PgConnection::connect(&t.store_url().unwrap())
        .await
        .unwrap();
    lock.execute("BEGIN").await.unwrap();
    lock.execute("SELECT id FROM secrets WHERE name = 'late' FOR UPDATE")
        .await
        .unwrap();
    let mut manual = t
        .testkit(h)
        .args(["rotate", "late"])
        .env("ROTOR_LEASE", "1s")
        .env("ROTOR_TEST_FAULT", "set:slow")
        .env("ROTOR_TEST_SLOW_MS", "150")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    lock.execute("COMMIT").await.unwrap();
    wait_exit(&mut manual, Duration::from_secs(30));
    wait_for("the rotation done", Duration::from_secs(30), || {
        current_version(&t, "late") != "v1" && describe(&t, "late")["RotationStep"].is_null()
    });
    std::thread::sleep(Duration::from_millis(500));
    terminate(&mut worker);

    let mut setters = runs(h, "late", "set");
    setters.dedup();
    assert_eq!(
        setters.len(),
        1,
        "one process drove the rotation's set, not the late claim and the one that took it over: {setters:?}"
    );
}

/// `set`'s record is written while `test` runs (it orders nothing: `set` may always run again).
/// Here the record is held on a row lock of the job: `test` runs all the same, the worker is
/// SIGKILLed with the record still waiting (its server backend ended with it), and the next
/// worker resumes at `set` — the job says so — and the rotation completes once, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_sets_record_waits_resumes_at_set() {
    use sqlx::{Connection, Executor};
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "held");
    testkit_ok(
        &t,
        h,
        &[
            "rotation",
            "set",
            "held",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut doomed = slow(&t, h, 1500, &["worker", "--lease", "5s", "--poll", "100ms"]);
    let doomed_pid = doomed.id().to_string();
    in_set(&t, "held");

    let mut lock = sqlx::PgConnection::connect(&t.store_url().unwrap())
        .await
        .unwrap();
    lock.execute("BEGIN").await.unwrap();
    lock.execute(
        "SELECT 1 FROM rotation_jobs j JOIN secrets s ON s.id = j.secret_id \
         WHERE s.name = 'held' FOR UPDATE OF j",
    )
    .await
    .unwrap();
    wait_for(
        "test to run while set's record waits",
        Duration::from_secs(20),
        || runs(h, "held", "test").len() == 1,
    );
    let waiting: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_all(&mut lock)
    .await
    .unwrap();
    assert_eq!(waiting.len(), 1, "set's record waits on the job's row");
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    // The killed process's statement would still run once the lock is gone: its backend goes.
    for pid in waiting {
        lock.execute(format!("SELECT pg_terminate_backend({pid})").as_str())
            .await
            .unwrap();
    }
    lock.execute("ROLLBACK").await.unwrap();
    assert_eq!(
        describe(&t, "held")["RotationStep"],
        "set",
        "set's record never landed"
    );

    let mut survivor = spawn_worker(&t, h, None, &[]);
    wait_for("the rotation to complete", Duration::from_secs(30), || {
        describe(&t, "held")["RotationStatus"] == "Idle" && current_version(&t, "held") == "v2"
    });
    terminate(&mut survivor);
    let sets = runs(h, "held", "set");
    assert_eq!(sets.len(), 2, "set ran again on resume: {sets:?}");
    assert_eq!(sets[0], doomed_pid);
    assert_ne!(sets[1], doomed_pid, "the survivor resumed at set");
    assert_eq!(runs(h, "held", "test").len(), 2);
    let versions = t.json(&["secret", "versions", "held"]);
    assert_eq!(
        versions
            .as_array()
            .or_else(|| versions["VersionIds"].as_array())
            .map(Vec::len),
        Some(2),
        "one new version, nothing lost: {versions}"
    );
    let data = t.json(&["secret", "get", "held"])["SecretData"].clone();
    let value: Value = serde_json::from_str(data.as_str().unwrap()).unwrap();
    assert!(
        FileRotator::passwords(h, "held").contains(&value["Password"].as_str().unwrap().to_owned()),
        "the promoted password logs in on the host"
    );
}

/// The check after a takeover could not reach the target (a retryable error, here injected in
/// the test rotator's `check` four times: the check's three retries, then once more). That
/// proves nothing: the worker plans the check again (`retrying`) and, when it answers, finds
/// `ACSCurrent` logging in (`ok`). It never sets `ACSCurrent` again and calls that a repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_after_a_takeover_that_cannot_reach_the_target_is_tried_again_not_repaired() {
    let t = env().await;
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path();
    ecs_secret(&t, h, "checked");
    // A manual run killed in its `set`: the worker takes it over once its lease runs out.
    killed_in_set(&t, h, "checked");
    let mut worker = t
        .testkit(h)
        .args(["worker", "--lease", "1s", "--step-timeout", "2s"])
        .args(FAST)
        .env("ROTOR_TEST_FAULT", "check:fail:4")
        .env("ROTOR_BACKOFF_BASE", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let outcomes = || -> Vec<String> {
        t.json(&[
            "audit",
            "--secret",
            "checked",
            "--action",
            "rotation.verify",
        ])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["Outcome"].as_str().map(str::to_owned))
        .collect()
    };
    wait_for(
        "the check after the takeover to end",
        Duration::from_secs(40),
        || {
            outcomes()
                .iter()
                .any(|o| ["ok", "repaired", "failed"].contains(&o.as_str()))
        },
    );
    terminate(&mut worker);
    let seen = outcomes();
    assert!(!seen.iter().any(|o| o == "repaired"), "no repair: {seen:?}");
    assert!(seen.iter().any(|o| o == "retrying"), "{seen:?}");
    assert!(seen.iter().any(|o| o == "ok"), "{seen:?}");
    assert_eq!(
        runs(h, "checked", "set").len(),
        1,
        "the killed run never logged its hung set; the worker's resumed set ran once, and \
         no set ran after the check"
    );
    assert_eq!(current_version(&t, "checked"), "v2");
    assert_eq!(describe(&t, "checked")["RotationStatus"], "Idle");
}
