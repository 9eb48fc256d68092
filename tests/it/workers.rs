//! Worker processes: killed with SIGKILL at every step boundary and in the middle of every step,
//! then restarted; four workers sharing one PostgreSQL store; the SQLite single-worker rule; and
//! the one-shot `rotor rotate` runs. The workers are `rotor-testkit` processes: the rotor CLI
//! with the file-host test rotator.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rotor::model::{SecretName, Stage};
use rotor::store::{OpenMode, Selector, Store};
use serde_json::json;

use crate::both_backends;
use crate::support::{assert_refused, TestEnv};
use crate::testkit_rotator::FileRotator;

/// Quick polling and short leases, so that a restarted worker takes over within a second.
pub(crate) const FAST: [&str; 4] = ["--poll", "100ms", "--test-retry-delay", "50ms"];

/// Creates an `ECS`/`Password` secret through the CLI, with its host accepting the password.
pub(crate) fn ecs_secret(t: &TestEnv, hosts: &Path, name: &str) {
    let password = format!("initial-{name}");
    let value = json!({"UserName": name, "Password": password}).to_string();
    let out = t
        .testkit(hosts)
        .args(["secret", "create", name, "--type", "ECS", "--value", &value])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    FileRotator::set_passwords(hosts, name, &[password]);
}

pub(crate) fn testkit_ok(t: &TestEnv, hosts: &Path, args: &[&str]) -> String {
    let out = t.testkit(hosts).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rotor-testkit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn spawn_worker(
    t: &TestEnv,
    hosts: &Path,
    fault: Option<&str>,
    extra: &[&str],
) -> Child {
    spawn_worker_env(t, hosts, fault, extra, &[])
}

/// [`spawn_worker`] with extra environment variables for the test rotator.
pub(crate) fn spawn_worker_env(
    t: &TestEnv,
    hosts: &Path,
    fault: Option<&str>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = t.testkit(hosts);
    cmd.envs(env.iter().copied());
    cmd.arg("worker")
        .args(FAST)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !extra.contains(&"--lease") {
        cmd.args(["--lease", "1s"]);
    }
    if let Some(fault) = fault {
        cmd.env("ROTOR_TEST_FAULT", fault);
    }
    cmd.spawn().expect("worker starts")
}

pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn terminate(child: &mut Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_exit(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "worker exits 0 on SIGTERM");
}

/// (version id, stages), newest first.
async fn versions(store: &Store, name: &str) -> Vec<(String, Vec<Stage>)> {
    let name = SecretName::parse(name).unwrap();
    store
        .versions(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version_id.to_string(), v.version_stages))
        .collect()
}

pub(crate) async fn password(store: &Store, name: &str, stage: Stage) -> String {
    let v = store
        .get_value(&SecretName::parse(name).unwrap(), &Selector::Stage(stage))
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(v.value.expose()).unwrap();
    json["Password"].as_str().unwrap().to_owned()
}

/// Waits until `name`'s rotation has completed (promoted, cleaned up, job gone).
pub(crate) async fn wait_rotated(store: &Store, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let name = SecretName::parse(name).unwrap();
    loop {
        let info = store.describe(&name).await.unwrap();
        if info.last_rotation_at.is_some()
            && info.rotation_status == rotor::store::RotationStatus::Idle
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not rotated within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_backends!(
    workers_killed_at_any_instant_lose_nothing,
    |t: TestEnv| async move {
        let hosts = tempfile::tempdir().unwrap();
        let hosts = hosts.path();
        testkit_ok(&t, hosts, &["init"]);
        let store = Store::open(&t.config(), OpenMode::Existing).await.unwrap();
        // A rotator with clean-up after promotion (`test` passed and the promotion are one
        // commit, the end of the job another, after `finish`), then one without (`test`
        // passed, the promotion and the end of the job are one commit): "test:crash-after"
        // kills just before that commit, "finish:crash-before" just after the promotion's.
        let variants = [
            ("", "0", &["create", "set", "test", "finish"][..]),
            ("noop-", "1", &["create", "set", "test"][..]),
        ];
        for (prefix, noop, steps) in variants {
            let env = [("ROTOR_TEST_FINISH_NOOP", noop)];
            for step in steps {
                for when in ["crash-before", "crash-during", "crash-after"] {
                    let name = format!("{prefix}{step}-{when}");
                    ecs_secret(&t, hosts, &name);
                    testkit_ok(
                        &t,
                        hosts,
                        &["rotation", "set", &name, "--interval", "1d", "--rotate-now"],
                    );
                    let mut doomed =
                        spawn_worker_env(&t, hosts, Some(&format!("{step}:{when}")), &[], &env);
                    let status = wait_exit(&mut doomed, Duration::from_secs(30));
                    assert_eq!(
                        status.signal(),
                        Some(9),
                        "{name}: the worker was SIGKILLed mid-rotation"
                    );

                    let mut survivor = spawn_worker_env(&t, hosts, None, &[], &env);
                    wait_rotated(&store, &name, Duration::from_secs(30)).await;
                    terminate(&mut survivor);

                    assert_eq!(
                        versions(&store, &name).await,
                        vec![
                            ("v2".into(), vec![Stage::Current]),
                            ("v1".into(), vec![Stage::Previous])
                        ],
                        "{name}: one new version, promoted once, nothing lost"
                    );
                    let host = FileRotator::passwords(hosts, &name);
                    assert!(
                        host.contains(&password(&store, &name, Stage::Current).await),
                        "{name}: current logs in"
                    );
                    assert!(
                        host.contains(&password(&store, &name, Stage::Previous).await),
                        "{name}: previous logs in"
                    );
                    let info = store
                        .describe(&SecretName::parse(&name).unwrap())
                        .await
                        .unwrap();
                    assert_eq!(
                        info.rotation_status,
                        rotor::store::RotationStatus::Idle,
                        "{name}"
                    );
                }
            }
        }
    }
);

mod shared_postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_workers_rotate_each_of_500_secrets_exactly_once() {
        let t = TestEnv::new(crate::support::Backend::Postgres).await;
        let hosts = tempfile::tempdir().unwrap();
        let hosts = hosts.path();
        testkit_ok(&t, hosts, &["init"]);
        let store = Store::open(&t.config(), OpenMode::Existing).await.unwrap();
        let kind =
            rotators::SecretKind::new(rotators::SecretType::ECS, Some(rotators::SubType::Password))
                .unwrap();
        let names: Vec<String> = (0..500).map(|i| format!("fleet-{i:03}")).collect();
        for name in &names {
            let password = format!("initial-{name}");
            store
                .create_secret(rotor::store::NewSecret::new(
                    SecretName::parse(name).unwrap(),
                    kind,
                    rotators::SecretValue::new(
                        json!({"UserName": name, "Password": password})
                            .to_string()
                            .into_bytes(),
                    ),
                ))
                .await
                .unwrap();
            FileRotator::set_passwords(hosts, name, &[password]);
            let policy = rotor::model::RotationPolicy {
                schedule: rotor::model::RotationSchedule::Interval(Duration::from_secs(86_400)),
                jitter: None,
                rotate_now: true,
            };
            store
                .set_rotation(&SecretName::parse(name).unwrap(), Some(policy))
                .await
                .unwrap();
        }

        let mut workers: Vec<Child> = (0..4)
            .map(|_| spawn_worker(&t, hosts, None, &["--concurrency", "8", "--lease", "10s"]))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let rotated = store
                .list(&[], false)
                .await
                .unwrap()
                .iter()
                .filter(|s| s.last_rotation_at.is_some())
                .count();
            if rotated == names.len() {
                break;
            }
            assert!(Instant::now() < deadline, "only {rotated} of 500 rotated");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for w in &mut workers {
            terminate(w);
        }

        let log = FileRotator::log(hosts);
        let mut pids = std::collections::HashSet::new();
        for name in &names {
            let steps: Vec<&(String, String, String)> =
                log.iter().filter(|(s, _, _)| s == name).collect();
            let kinds: Vec<&str> = steps.iter().map(|(_, step, _)| step.as_str()).collect();
            assert_eq!(
                kinds,
                ["create", "set", "test", "finish"],
                "{name}: each step once"
            );
            let owners: std::collections::HashSet<&str> =
                steps.iter().map(|(_, _, pid)| pid.as_str()).collect();
            assert_eq!(owners.len(), 1, "{name}: one worker ran the whole rotation");
            pids.extend(owners.into_iter().map(str::to_owned));
            assert_eq!(
                versions(&store, name).await,
                vec![
                    ("v2".into(), vec![Stage::Current]),
                    ("v1".into(), vec![Stage::Previous])
                ]
            );
        }
        assert!(
            pids.len() > 1,
            "the work was shared between workers: {pids:?}"
        );
    }
}

mod sqlite_only {
    use super::*;

    #[tokio::test]
    async fn a_second_worker_on_one_sqlite_store_refuses_to_start() {
        let t = TestEnv::new(crate::support::Backend::Sqlite).await;
        let hosts = tempfile::tempdir().unwrap();
        testkit_ok(&t, hosts.path(), &["init"]);
        let mut first = spawn_worker(&t, hosts.path(), None, &[]);
        std::thread::sleep(Duration::from_millis(500));
        let out = t.testkit(hosts.path()).args(["worker"]).output().unwrap();
        assert_refused(&out, 4, "another rotor worker is already running", None);
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first worker runs on"
        );
        terminate(&mut first);
    }
}

both_backends!(one_shot_rotations, |t: TestEnv| async move {
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    ecs_secret(&t, hosts, "ops");
    let store = Store::open(&t.config(), OpenMode::Existing).await.unwrap();

    // Dry run: checks and changes nothing.
    let out = testkit_ok(&t, hosts, &["rotate", "ops", "--dry-run"]);
    assert!(out.contains("the current credential works"), "{out}");
    assert_eq!(versions(&store, "ops").await.len(), 1);

    // A failing manual rotation: non-zero exit with the reason, state on describe.
    let out = t
        .testkit(hosts)
        .env("ROTOR_TEST_FAULT", "set:fatal")
        .args(["rotate", "ops"])
        .output()
        .unwrap();
    assert_refused(&out, 6, "set step failed", None);
    let described = testkit_ok(&t, hosts, &["--json", "secret", "describe", "ops"]);
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(described["RotationStatus"], "Failed");
    assert_eq!(described["RotationFailure"]["Attempts"], 1);
    assert_eq!(
        password(&store, "ops", Stage::Current).await,
        "initial-ops",
        "current untouched"
    );

    // A manual rotation of the failed secret retries it.
    let out = testkit_ok(&t, hosts, &["rotate", "ops"]);
    assert!(out.contains("version v2 is ACSCurrent"), "{out}");
    let described: serde_json::Value = serde_json::from_str(&testkit_ok(
        &t,
        hosts,
        &["--json", "secret", "describe", "ops"],
    ))
    .unwrap();
    assert_eq!(described["RotationStatus"], "Idle");

    // Step logs never carry a credential, not even at trace level.
    let out = t
        .testkit(hosts)
        .env("ROTOR_LOG", "trace")
        .args(["rotate", "ops"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("step starts") && all.contains("promoted to ACSCurrent"),
        "steps are logged"
    );
    for stage in [Stage::Current, Stage::Previous] {
        let secret = password(&store, "ops", stage).await;
        assert!(!all.contains(&secret), "a password reached the logs");
    }
    assert!(!all.contains("initial-ops"));

    // --due: one pass over everything due.
    ecs_secret(&t, hosts, "due-a");
    ecs_secret(&t, hosts, "due-b");
    ecs_secret(&t, hosts, "not-due");
    for name in ["due-a", "due-b"] {
        testkit_ok(
            &t,
            hosts,
            &["rotation", "set", name, "--interval", "1d", "--rotate-now"],
        );
    }
    testkit_ok(
        &t,
        hosts,
        &["rotation", "set", "not-due", "--interval", "1d"],
    );
    let out = testkit_ok(&t, hosts, &["rotate", "--due"]);
    assert!(out.contains("2 due, 2 rotated, 0 not rotated"), "{out}");
    assert_eq!(versions(&store, "not-due").await.len(), 1);
    let out = testkit_ok(&t, hosts, &["rotate", "--due"]);
    assert!(out.contains("0 due"), "{out}");

    // A broken host fails the dry run; generic secrets do not rotate.
    FileRotator::set_passwords(hosts, "due-a", &[]);
    let out = t
        .testkit(hosts)
        .args(["rotate", "due-a", "--dry-run"])
        .output()
        .unwrap();
    // The target refusing the credential is a target error (7), not a store conflict.
    assert_refused(&out, 7, "dry run failed", None);
    testkit_ok(
        &t,
        hosts,
        &[
            "secret", "create", "plain", "--type", "Generic", "--value", "x",
        ],
    );
    let out = t.testkit(hosts).args(["rotate", "plain"]).output().unwrap();
    assert_refused(&out, 2, "does not rotate", None);
    // Plain rotor rotates ECS secrets over SSH, on their target: this one (made for the test
    // rotator's file host) has none.
    let out = t.run(&["rotate", "ops"]);
    assert_refused(&out, 6, "names no target to rotate on", None);
});

both_backends!(
    a_killed_one_shot_run_does_not_lock_its_secret,
    |t: TestEnv| async move {
        let hosts = tempfile::tempdir().unwrap();
        let hosts = hosts.path();
        testkit_ok(&t, hosts, &["init"]);
        ecs_secret(&t, hosts, "ops");
        // A manual rotation that hangs in `set` (30 s lease), then is SIGKILLed.
        let mut child = t
            .testkit(hosts)
            .env("ROTOR_TEST_FAULT", "set:hang")
            .args(["rotate", "ops"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let log = hosts.join("steps.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        // `create` is logged once it ran; `set` hangs at its start right after.
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ops create")
        {
            assert!(
                Instant::now() < deadline,
                "the run never ran its create step"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9));
        // Its process is gone, on this host: the next run takes the lease over at once.
        let out = testkit_ok(&t, hosts, &["rotate", "ops"]);
        assert!(out.contains("is ACSCurrent"), "{out}");
    }
);

/// `GET path` on `addr`: (status code, body).
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the metrics listener answers");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of a sample of `metric` whose labels include `labels`, in a scrape.
pub(crate) fn sample(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .reduce(|a, b| a + b)
}

pub(crate) fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("the scrape parses as Prometheus text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_metrics_that_move_with_rotations_and_health_for_load_balancers() {
    let t = TestEnv::new(crate::support::Backend::Postgres).await;
    t.ok(&["init"]);
    let hosts = tempfile::tempdir().unwrap();
    for name in ["m1", "m2"] {
        ecs_secret(&t, hosts.path(), name);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = spawn_worker(&t, hosts.path(), None, &["--metrics-listen", &addr]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the metrics listener never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz"), (200, "ready\n".into()));
    let before = scrape(&addr);
    let rotated = |s: &prometheus_parse::Scrape| {
        sample(
            s,
            "rotor_rotations_total",
            &[("type", "ECS"), ("result", "rotated")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(rotated(&before), 0.0);

    for name in ["m1", "m2"] {
        testkit_ok(
            &t,
            hosts.path(),
            &["rotation", "set", name, "--interval", "1h", "--rotate-now"],
        );
    }
    let mut after = scrape(&addr);
    while rotated(&after) < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the rotations never showed in /metrics"
        );
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(&addr);
    }
    // Step durations for every step, and the gauges.
    for step in ["create", "set", "test"] {
        assert!(
            sample(
                &after,
                "rotor_step_duration_seconds_count",
                &[("step", step)]
            )
            .unwrap_or(0.0)
                >= 2.0,
            "{step} durations"
        );
    }
    while sample(&after, "rotor_secrets_due", &[]).is_none() {
        assert!(Instant::now() < deadline, "the gauges never showed");
        std::thread::sleep(Duration::from_millis(200));
        after = scrape(&addr);
    }
    assert_eq!(sample(&after, "rotor_secrets_failed", &[]), Some(0.0));
    let (_, text) = http_get(&addr, "/metrics");
    assert!(
        !text.contains("initial-m1") && !text.contains("m1\""),
        "no secret names or values in labels"
    );

    // The store goes away: not ready (503), still alive.
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&crate::support::pg_admin_url())
            .await
            .unwrap();
    let db = t.pg_db.clone().unwrap();
    sqlx::Executor::execute(
        &mut admin,
        format!("DROP DATABASE {db} WITH (FORCE)").as_str(),
    )
    .await
    .unwrap();
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store"), "{body}");
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    wait_exit(&mut worker, Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_pass_ends_with_a_table_and_a_machine_readable_summary() {
    let t = TestEnv::new(crate::support::Backend::Sqlite).await;
    t.ok(&["init"]);
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    for name in ["one-1", "two-1", "one-2", "two-2"] {
        ecs_secret(&t, hosts, name);
    }
    let due = |names: &[&str]| {
        for name in names {
            testkit_ok(
                &t,
                hosts,
                &["rotation", "set", name, "--interval", "1d", "--rotate-now"],
            );
        }
    };
    // One of the two rotations of each pass fails in its set step.
    let pass = |json: bool| {
        let mut cmd = t.testkit(hosts);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["rotate", "--due", "--max-attempts", "1"])
            .env("ROTOR_TEST_FAULT", "set:fatal:1")
            .output()
            .unwrap()
    };
    due(&["one-1", "two-1"]);
    let out = pass(true);
    assert_eq!(
        out.status.code(),
        Some(6),
        "a failure makes the pass exit 6"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &summary["Due"],
            &summary["Rotated"],
            &summary["Failed"],
            &summary["Skipped"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(0)),
        "{summary}"
    );
    let results = summary["Results"].as_array().unwrap();
    let failed = results.iter().find(|r| r["Outcome"] == "Failed").unwrap();
    assert!(
        failed["Message"]
            .as_str()
            .unwrap()
            .contains("set step failed"),
        "{failed}"
    );

    // On a pipe: no progress bar, a table with a reason per secret, then the counts.
    due(&["one-2", "two-2"]);
    let out = pass(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "no terminal control on a pipe"
    );
    let header = stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("SECRET") && header.contains("OUTCOME") && header.contains("DETAIL"),
        "{stdout}"
    );
    let failed = stdout
        .lines()
        .find(|l| l.contains("Failed"))
        .expect("a row per secret");
    assert!(failed.contains("failed after 1 attempt"), "{failed}");
    assert!(
        stdout.contains("2 due, 1 rotated, 1 not rotated (1 failed, 0 skipped)"),
        "{stdout}"
    );
}
