//! The CLI as scripts use it: quiet by default (one-shot commands log warnings only), failures
//! under `--json` as `{"Code","Message"}` on stdout with the usual exit codes, one naming style
//! for every JSON output, a closed stdout that ends a command quietly, owner-only key files,
//! usage errors that say what is missing, and a `describe` that shows who a secret logs in as.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::databases::{create_rds, Pg};
use crate::support::{assert_refused, Backend, TestEnv};
use crate::workers::{ecs_secret, testkit_ok};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `rotor-testkit` with the log level left to rotor (the helper sets `ROTOR_LOG`).
fn testkit_default_log(t: &TestEnv, hosts: &Path) -> Command {
    let mut cmd = t.testkit(hosts);
    cmd.env_remove("ROTOR_LOG");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_log_warnings_only_unless_told_otherwise() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    ecs_secret(&t, hosts, "q1");

    // A rotation says what happened on stdout, and nothing on stderr.
    let out = testkit_default_log(&t, hosts)
        .args(["rotate", "q1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "secret 'q1' rotated: version v2 is ACSCurrent\n"
    );
    assert_eq!(stderr(&out), "", "a one-shot command logs nothing at info");
    // describe names the host user (the value's UserName; never its password).
    let described = testkit_ok(&t, hosts, &["secret", "describe", "q1"]);
    assert!(described.contains("\nUser:          q1\n"), "{described}");
    assert!(!described.contains("initial-q1"), "{described}");

    // A level given by flag or ROTOR_LOG still wins.
    let out = testkit_default_log(&t, hosts)
        .args(["rotate", "q1", "--log-level", "info"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("INFO"), "{}", stderr(&out));
    let out = testkit_default_log(&t, hosts)
        .env("ROTOR_LOG", "info")
        .args(["rotate", "q1"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("INFO"), "{}", stderr(&out));

    // The worker, which runs for long, logs at info.
    let mut worker = testkit_default_log(&t, hosts)
        .args(["worker", "--poll", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read all it logs (a reader that stops early would close its stderr under it).
    let mut err = worker.stderr.take().unwrap();
    let logged = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let logged = logged.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(&mut err).lines() {
                let Ok(line) = line else { break };
                logged.lock().unwrap().push_str(&line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logged.lock().unwrap().contains("INFO") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    worker.wait().unwrap();
    reader.join().unwrap();
    let logged = logged.lock().unwrap().clone();
    assert!(
        logged.contains("INFO"),
        "the worker logs at info: {logged:?}"
    );
}

/// Runs `rotor --json ARGS` and returns the exit code and the JSON on stdout.
fn json_failure(t: &TestEnv, args: &[&str]) -> (Option<i32>, Value, Output) {
    let out = t.rotor().arg("--json").args(args).output().unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of a failed --json command is JSON ({e}): {:?}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out.status.code(), body, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_failures_print_a_code_and_message_on_stdout_with_the_usual_exit_code() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "s1", "--type", "Generic", "--value", "x",
    ]);
    for (args, exit, code, says) in [
        (&["secret", "get", "nope"][..], 3, "NotFound", "nope"),
        (
            &[
                "secret", "create", "s1", "--type", "Generic", "--value", "y",
            ],
            4,
            "Conflict",
            "s1",
        ),
        (
            &["rotation", "set", "s1", "--interval", "7d"],
            2,
            "InvalidInput",
            "Generic",
        ),
        (&["rotate"], 2, "InvalidUsage", "<NAME|--due>"),
        (&["secret", "frobnicate"], 2, "InvalidUsage", "frobnicate"),
    ] {
        let (status, body, out) = json_failure(&t, args);
        assert_eq!(status, Some(exit), "{args:?}: {body}");
        assert_eq!(body["Code"], code, "{args:?}: {body}");
        let message = body["Message"].as_str().unwrap();
        assert!(message.contains(says), "{args:?}: {message}");
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "only Code and Message: {body}"
        );
        // stderr keeps its one line for people.
        assert_refused(&out, exit, says, None);
    }
    // Without --json, stdout stays empty on failure.
    let out = t.run(&["secret", "get", "nope"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_name_what_is_missing() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let out = t.run(&["rotate"]);
    assert_refused(
        &out,
        2,
        "required arguments were not provided: <NAME|--due>",
        None,
    );
    let out = t.run(&["rotation", "set", "x"]);
    assert_refused(
        &out,
        2,
        "required arguments were not provided: <--interval <INTERVAL>|--cron <CRON>|--disable>",
        None,
    );
    let out = t.run(&["access-key", "create"]);
    assert_refused(&out, 2, "--name <NAME>, --allow <ACTION:PATTERN>", None);
}

/// Runs `rotor ARGS` with its stdout on a pipe whose reading end is closed before rotor starts:
/// every write rotor makes to it fails with EPIPE.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    assert!(out.stdout.is_empty());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_command_quietly_with_its_usual_exit_code() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "many", "--type", "Generic", "--value", "v",
    ]);
    for i in 0..12 {
        t.ok(&["secret", "put", "many", "--value", &format!("value {i}")]);
    }
    for (args, exit) in [
        (&["secret", "versions", "many"][..], 0),
        (&["secret", "list"], 0),
        (&["secret", "get", "many"], 0),
        (&["secret", "describe", "many"], 0),
        (&["--json", "secret", "describe", "many"], 0),
        (&["audit"], 0),
        (&["ca"], 0),
        (&["config", "check"], 0),
        (&["--help"], 0),
        (&["secret", "put", "many", "--value", "one more"], 0),
        // A failure keeps its code; under --json its JSON is dropped like any other output.
        (&["secret", "get", "missing"], 3),
        (&["--json", "secret", "get", "missing"], 3),
    ] {
        let mut cmd = t.rotor();
        cmd.args(args);
        let out = with_closed_stdout(cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(exit), "{args:?}: {err}");
        for noise in ["panicked", "Broken pipe", "backtrace", "standard output"] {
            assert!(!err.contains(noise), "{args:?} says {noise:?}: {err}");
        }
    }
    // The put above ran to the end although nobody read what it printed.
    assert_eq!(
        t.ok(&["secret", "get", "many"]),
        "one more",
        "the last put is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_key_output_files_are_new_and_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.key.json");
    let out = t.ok(&[
        "access-key",
        "create",
        "--name",
        "app",
        "--allow",
        "GetSecretValue:db/*",
        "--output",
        path.to_str().unwrap(),
    ]);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&path).unwrap();
    let kept: Value = serde_json::from_slice(&bytes).unwrap();
    let id = kept["AccessKeyId"].as_str().unwrap();
    let secret = kept["AccessKeySecret"].as_str().unwrap();
    assert!(secret.len() >= 20, "{kept}");
    assert!(out.contains(id) && !out.contains(secret), "{out}");
    assert!(out.contains("mode 0600"), "{out}");

    // An existing file — ours or not — and a symlink, even one pointing nowhere, are refused
    // before a key is made.
    let elsewhere = dir.path().join("elsewhere");
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    for target in [&path, &link] {
        let out = t.run(&[
            "access-key",
            "create",
            "--name",
            "app2",
            "--allow",
            "*:*",
            "--output",
            target.to_str().unwrap(),
        ]);
        assert_refused(&out, 2, "cannot create --output", None);
    }
    assert!(!elsewhere.exists());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the first file is untouched"
    );
    let keys = t.json(&["access-key", "list"]);
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["AccessKeyName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app"], "no key was made for a refused file: {keys}");
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_outputs_share_one_naming_style_and_describe_shows_who_a_secret_is() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let account = pg.name("who");
    let t_out = t.ok(&create_rds(
        "db/who",
        "pg",
        &[
            "--account",
            &account,
            "--database",
            &pg.db,
            "--privilege",
            "ReadOnly",
            "--rotation-interval",
            "7d",
        ],
    ));
    assert!(t_out.contains("created secret 'db/who'"), "{t_out}");

    let targets = t.json(&["target", "list"]);
    assert_eq!(
        keys(&targets[0]),
        ["AdminSecretName", "TargetKind", "TargetName", "TargetUrl"]
    );
    assert_eq!(targets[0]["TargetName"], "pg");
    assert_eq!(targets[0]["TargetKind"], "postgres");
    assert_eq!(targets[0]["AdminSecretName"], "acs/target/pg/admin");
    let check = t.json(&["target", "check", "pg"]);
    assert_eq!(check["TargetName"], "pg", "{check}");
    assert_eq!(check["AdminSecretName"], "acs/target/pg/admin", "{check}");

    let described = t.json(&["secret", "describe", "db/who"]);
    assert_eq!(described["SecretName"], "db/who");
    assert_eq!(described["TargetName"], "pg", "{described}");
    assert!(described.get("Target").is_none(), "{described}");

    let audit = t.json(&["audit", "--secret", "db/who"]);
    let record = &audit.as_array().unwrap()[0];
    assert_eq!(
        keys(record),
        [
            "Action",
            "Actor",
            "Detail",
            "Id",
            "Outcome",
            "SecretName",
            "Time",
            "VersionId"
        ]
    );
    assert_eq!(record["SecretName"], "db/who");

    // People see the target, both accounts with their stages, and the interval in words.
    let text = t.ok(&["secret", "describe", "db/who"]);
    let line = |label: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{label}:")))
            .unwrap_or_else(|| panic!("no {label} line in:\n{text}"))
            .split_once(':')
            .unwrap()
            .1
            .trim()
            .to_owned()
    };
    assert_eq!(line("Target"), "pg");
    assert_eq!(
        line("Accounts"),
        format!("{account} (ACSCurrent), {account}_clone (ACSPrevious)")
    );
    assert_eq!(line("Database"), pg.db);
    assert_eq!(line("Privilege"), "ReadOnly");
    assert_eq!(line("Rotation"), "every 7 days");
    assert!(!text.contains("AccountPassword"), "{text}");
    // Looking is not reading: no secret.read record even with reads audited.
    let reads = t
        .rotor()
        .env("ROTOR_AUDIT_READS", "true")
        .args(["secret", "describe", "db/who"])
        .output()
        .unwrap();
    assert!(reads.status.success());
    assert!(t
        .json(&["audit", "--action", "secret.read"])
        .as_array()
        .unwrap()
        .is_empty());

    pg.cleanup(&[
        account.clone(),
        format!("{account}_clone"),
        format!("{account}_group"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_stderr_is_closed_still_stops_on_sigterm() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    testkit_ok(&t, hosts.path(), &["init"]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut worker = testkit_default_log(&t, hosts.path())
        .args(["worker", "--poll", "100ms"])
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            worker.kill().unwrap();
            worker.wait().unwrap();
            panic!("the worker did not stop within 15 s of SIGTERM with its stderr closed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "{status}");
}
