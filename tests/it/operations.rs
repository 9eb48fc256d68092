//! Operating rotor: the configuration file and its layers (`rotor config check`), the audit log
//! (`rotor audit`), failure webhooks against a local receiver that checks signatures, and lease
//! takeovers in the metrics. The rotations run in `rotor-testkit` worker processes.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::both_backends;
use crate::support::{Backend, TestEnv};
use crate::testkit_rotator::FileRotator;
use crate::workers::{
    ecs_secret, sample, scrape, spawn_worker, terminate, testkit_ok, wait_exit, wait_rotated, FAST,
};

pub(crate) fn write_private(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `rotor --json config check ARGS` → setting key → (value, source).
fn effective(
    t: &TestEnv,
    envs: &[(&str, &str)],
    args: &[&str],
) -> (Value, Vec<(String, String, String)>) {
    let mut cmd = t.rotor();
    cmd.args(["--json", "config", "check"]).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["Settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["Key"].as_str().unwrap().to_owned(),
                s["Value"].as_str().unwrap().to_owned(),
                s["Source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (json, rows)
}

fn setting<'a>(rows: &'a [(String, String, String)], key: &str) -> (&'a str, &'a str) {
    let row = rows
        .iter()
        .find(|(k, _, _)| k == key)
        .unwrap_or_else(|| panic!("{key} is shown"));
    (row.1.as_str(), row.2.as_str())
}

#[tokio::test]
async fn configuration_layers_defaults_file_environment_and_flags_and_says_where_each_came_from() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let (json, rows) = effective(&t, &[], &[]);
    assert_eq!(json["File"], Value::Null, "no file yet");
    assert_eq!(setting(&rows, "data_dir").1, "ROTOR_DATA_DIR");
    assert_eq!(setting(&rows, "worker.concurrency"), ("16", "default"));

    // DATA_DIR/rotor.toml is read when present; the environment overrides it, flags override both.
    let file = t.data_dir().join("rotor.toml");
    write_private(
        &file,
        "[worker]\nconcurrency = 4\nlease = \"10s\"\npoll = \"250ms\"\n\n[audit]\nretention = \"30d\"\nreads = true\n",
        0o644,
    );
    let (json, rows) = effective(&t, &[("ROTOR_POLL", "2s")], &["--lease", "5s"]);
    let shown_file = file.display().to_string();
    assert_eq!(json["File"], shown_file.as_str());
    assert_eq!(
        setting(&rows, "worker.concurrency"),
        ("4", shown_file.as_str())
    );
    assert_eq!(setting(&rows, "worker.lease"), ("5s", "command line"));
    assert_eq!(setting(&rows, "worker.poll"), ("2s", "ROTOR_POLL"));
    assert_eq!(
        setting(&rows, "audit.retention"),
        ("30d", shown_file.as_str())
    );
    assert_eq!(setting(&rows, "worker.max_attempts"), ("5", "default"));
    let text = t.ok(&["config", "check"]);
    assert!(text.starts_with("configuration OK"), "{text}");
    assert!(
        text.contains("worker.concurrency") && text.contains(&shown_file),
        "{text}"
    );

    // The file's settings take effect: audit.reads = true records reads.
    t.ok(&[
        "secret",
        "create",
        "app",
        "--type",
        "Generic",
        "--value",
        "Cfg-Value-1",
    ]);
    t.ok(&["secret", "get", "app"]);
    let reads = t.json(&["audit", "--action", "secret.read"]);
    assert_eq!(reads.as_array().unwrap().len(), 1, "{reads}");

    // --config PATH: its data_dir is where `init` puts the store.
    let alt = t.dir.path().join("alt.toml");
    let alt_data = t.dir.path().join("alt-data");
    write_private(
        &alt,
        &format!("data_dir = {:?}\n", alt_data.display().to_string()),
        0o600,
    );
    let out = t
        .rotor()
        .env_remove("ROTOR_DATA_DIR")
        .args(["--config", alt.to_str().unwrap(), "init"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        alt_data.join("rotor.db").exists(),
        "the file's data_dir was used"
    );

    // Refusals name the key and the file (or variable) and exit 2.
    let refused = |envs: &[(&str, &str)], args: &[&str], expect: &[&str]| {
        let mut cmd = t.rotor();
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: {e:?} in {err}");
        }
        err
    };
    write_private(&file, "[worker]\nconcurency = 3\n", 0o644);
    refused(
        &[],
        &["config", "check"],
        &["unknown field", "worker.concurency", &shown_file],
    );
    refused(&[], &["secret", "list"], &["worker.concurency"]);
    write_private(&file, "[worker]\nlease = \"soon\"\n", 0o644);
    refused(&[], &["config", "check"], &["worker.lease", &shown_file]);
    write_private(&file, "[worker]\nconcurrency = 0\n", 0o644);
    refused(
        &[],
        &["config", "check"],
        &["worker.concurrency must be at least 1", &shown_file],
    );
    std::fs::remove_file(&file).unwrap();
    refused(
        &[("ROTOR_CONCURRENCY", "0")],
        &["config", "check"],
        &["worker.concurrency", "ROTOR_CONCURRENCY"],
    );
    refused(
        &[("ROTOR_AUDIT_RETENTION", "forever")],
        &["config", "check"],
        &["ROTOR_AUDIT_RETENTION", "environment"],
    );
    refused(
        &[],
        &["--config", "/nonexistent/rotor.toml", "config", "check"],
        &["/nonexistent/rotor.toml"],
    );
    // A file others may write is not trusted.
    write_private(&file, "[worker]\nconcurrency = 3\n", 0o666);
    refused(&[], &["config", "check"], &["writable", &shown_file]);
    // A signing secret written in the file needs a private file; a webhook needs a secret.
    let hook = "[[webhook]]\nurl = \"https://hooks.example.com/services/T0/B0/Xyz-Token-Path\"\nsecret = \"Inline-Hook-Secret-123\"\n";
    write_private(&file, hook, 0o644);
    refused(
        &[],
        &["config", "check"],
        &["webhook[0].secret", "readable by others"],
    );
    write_private(
        &file,
        "[[webhook]]\nurl = \"https://h.example.com/x\"\n",
        0o600,
    );
    refused(
        &[],
        &["config", "check"],
        &["webhook[0]", "no signing secret"],
    );

    // The README's example file is valid as written.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has Configuration");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("an example TOML block");
    let example_file = t.dir.path().join("example.toml");
    write_private(&example_file, example, 0o600);
    let (_, rows) = effective(&t, &[], &["--config", example_file.to_str().unwrap()]);
    assert_eq!(
        setting(&rows, "webhook[0].events").0,
        "rotation_failed,secret_failed"
    );
    assert_eq!(setting(&rows, "log.format").0, "json");

    // Secret material is never shown: the store URL's password, the webhook's secret and the
    // token in its path.
    write_private(&file, hook, 0o600);
    let out = t
        .rotor()
        .env(
            "ROTOR_STORE",
            "postgres://app:Store-Password-9@db.example.com/rotor",
        )
        .args(["config", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("postgres://app@db.example.com/rotor"),
        "{text}"
    );
    assert!(text.contains("https://hooks.example.com/…"), "{text}");
    for secret in [
        "Store-Password-9",
        "Inline-Hook-Secret-123",
        "Xyz-Token-Path",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
}

// ---- Audit log -----------------------------------------------------------------------------

fn audit(t: &TestEnv, hosts: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "audit"];
    all.extend_from_slice(args);
    let out = testkit_ok(t, hosts, &all);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn actions(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["Action"].as_str().unwrap().to_owned(),
                r["Outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

both_backends!(
    the_audit_log_records_every_change_and_rotation_step_and_no_value,
    |t: TestEnv| async move {
        let hosts = tempfile::tempdir().unwrap();
        let hosts = hosts.path();
        testkit_ok(&t, hosts, &["init"]);
        ecs_secret(&t, hosts, "a1");
        testkit_ok(&t, hosts, &["rotation", "set", "a1", "--interval", "1d"]);
        // One attempt fails at `set`, the next run completes.
        let out = t
            .testkit(hosts)
            .env("ROTOR_TEST_FAULT", "set:fail:1")
            .args(["rotate", "a1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        testkit_ok(&t, hosts, &["rotate", "a1"]);

        let records = audit(&t, hosts, &["--secret", "a1"]);
        assert_eq!(
            actions(&records),
            [
                ("secret.create", "ok"),
                ("rotation.policy", "ok"),
                ("rotation.create", "ok"),
                ("rotation.set", "retrying"),
                ("rotation.set", "ok"),
                ("rotation.test", "ok"),
                ("rotation.promote", "ok"),
                ("rotation.finish", "ok"),
            ]
            .map(|(a, o)| (a.to_owned(), o.to_owned())),
            "{records:#?}"
        );
        let cli = records[0]["Actor"].as_str().unwrap();
        assert!(cli.starts_with("cli:"), "{cli}");
        // A manual rotation names who asked; the lease holder is in the detail.
        for r in &records[2..] {
            assert_eq!(r["Actor"], cli, "{r}");
            assert!(
                r["Detail"].as_str().unwrap().contains("lease worker:"),
                "{r}"
            );
        }
        assert_eq!(records[2]["VersionId"], "v2");
        assert_eq!(records[6]["VersionId"], "v2");
        assert!(
            records[3]["Detail"].as_str().unwrap().contains("attempt 1"),
            "{}",
            records[3]
        );
        let ids: Vec<i64> = records.iter().map(|r| r["Id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

        // Filters.
        let rotation = audit(&t, hosts, &["--secret", "a1", "--action", "rotation"]);
        assert_eq!(rotation.len(), 7);
        assert_eq!(audit(&t, hosts, &["--action", "rotation.promote"]).len(), 1);
        assert_eq!(
            audit(&t, hosts, &["--secret", "a1", "--since", "1h"]).len(),
            8
        );
        assert_eq!(
            audit(&t, hosts, &["--secret", "a1", "--limit", "2"]).len(),
            2
        );
        let out = t
            .testkit(hosts)
            .args(["audit", "--action", "x';--"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

        // Refused writes leave no record: a conflicting put, a stage move to a missing version.
        t.ok(&[
            "secret",
            "create",
            "g1",
            "--type",
            "Generic",
            "--value",
            "Generic-Value-1",
        ]);
        let before = audit(&t, hosts, &[]).len();
        let out = t.run(&[
            "secret",
            "put",
            "g1",
            "--version-id",
            "v1",
            "--value",
            "Other-Value-2",
        ]);
        assert!(!out.status.success());
        let out = t.run(&[
            "secret",
            "stage",
            "g1",
            "--stage",
            "blue",
            "--move-to",
            "v9",
        ]);
        assert!(!out.status.success(), "{}", stderr(&out));
        assert_eq!(
            audit(&t, hosts, &[]).len(),
            before,
            "no record of refused writes"
        );
        // Reads are recorded only when configured.
        t.ok(&["secret", "get", "g1"]);
        assert!(audit(&t, hosts, &["--action", "secret.read"]).is_empty());
        let out = t
            .rotor()
            .env("ROTOR_AUDIT_READS", "true")
            .args(["secret", "get", "g1"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let reads = audit(&t, hosts, &["--action", "secret.read"]);
        assert_eq!(reads.len(), 1);
        assert_eq!(
            (
                reads[0]["SecretName"].as_str(),
                reads[0]["VersionId"].as_str()
            ),
            (Some("g1"), Some("v1"))
        );

        // The store itself refuses to change a record.
        let refused = match &t.pg_db {
            Some(_) => {
                let mut conn =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&t.store_url().unwrap())
                        .await
                        .unwrap();
                sqlx::Executor::execute(&mut conn, "UPDATE audit_log SET outcome = 'ok'")
                    .await
                    .unwrap_err()
                    .to_string()
            }
            None => {
                let url = format!("sqlite://{}", t.data_dir().join("rotor.db").display());
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                sqlx::Executor::execute(&mut conn, "UPDATE audit_log SET outcome = 'ok'")
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        assert!(
            refused.contains("audit records cannot be changed"),
            "{refused}"
        );

        // No value anywhere in the log.
        let all = testkit_ok(&t, hosts, &["--json", "audit"]);
        let mut values = FileRotator::passwords(hosts, "a1");
        values.extend([
            "initial-a1".into(),
            "Generic-Value-1".into(),
            "Other-Value-2".into(),
        ]);
        for v in &values {
            assert!(!all.contains(v.as_str()), "the audit log shows a value");
        }

        // A worker killed mid-rotation: the next one takes over its lease (counted in the
        // metrics), and the log names both workers.
        ecs_secret(&t, hosts, "k1");
        testkit_ok(
            &t,
            hosts,
            &["rotation", "set", "k1", "--interval", "1d", "--rotate-now"],
        );
        let mut doomed = spawn_worker(&t, hosts, Some("set:crash-during"), &[]);
        wait_exit(&mut doomed, Duration::from_secs(30));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut survivor = spawn_worker(&t, hosts, None, &["--metrics-listen", &addr]);
        let store = t.store().await;
        wait_rotated(&store, "k1", Duration::from_secs(30)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "metrics listener");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            sample(&scrape(&addr), "rotor_lease_takeovers_total", &[]),
            Some(1.0)
        );
        terminate(&mut survivor);
        let k1 = audit(&t, hosts, &["--secret", "k1", "--action", "rotation"]);
        let workers: std::collections::BTreeSet<&str> = k1
            .iter()
            .map(|r| r["Actor"].as_str().unwrap())
            .filter(|a| a.starts_with("worker:"))
            .collect();
        assert_eq!(workers.len(), 2, "{k1:#?}");

        // Retention: the worker prunes records older than audit.retention.
        std::thread::sleep(Duration::from_millis(1100));
        let mut worker = t
            .testkit(hosts)
            .args(["worker"])
            .args(FAST)
            .env("ROTOR_AUDIT_RETENTION", "1s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !audit(&t, hosts, &["--action", "secret.create"]).is_empty() {
            assert!(Instant::now() < deadline, "old records were not pruned");
            std::thread::sleep(Duration::from_millis(100));
        }
        terminate(&mut worker);
    }
);

// ---- Webhooks ------------------------------------------------------------------------------

/// One request a receiver took: headers of interest and the raw body.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    path: String,
    pub(crate) event: String,
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

impl Delivery {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// Checks the signature as a receiver would: HMAC-SHA256 over `TIMESTAMP.BODY`, a fresh
    /// timestamp.
    fn verifies(&self, key: &[u8]) -> bool {
        let ts: i64 = self.timestamp.parse().expect("numeric timestamp");
        let now = chrono::Utc::now().timestamp();
        if (now - ts).abs() > 300 {
            return false;
        }
        let Some(hex) = self.signature.strip_prefix("v1=") else {
            return false;
        };
        let Ok(given) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(self.timestamp.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&given).is_ok()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    /// Requests to refuse with 503 before accepting.
    refuse: Arc<AtomicU32>,
}

impl Receiver {
    pub(crate) async fn start(listener: tokio::net::TcpListener, refuse: u32) -> Receiver {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};
        let receiver = Receiver::default();
        receiver.refuse.store(refuse, Ordering::SeqCst);
        async fn take(
            State(r): State<Receiver>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let h = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let refuse = r
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let status = if refuse {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NO_CONTENT
            };
            r.got.lock().unwrap().push(Delivery {
                path: uri.path().to_owned(),
                event: h("x-rotor-event"),
                id: h("x-rotor-delivery"),
                timestamp: h("x-rotor-timestamp"),
                signature: h("x-rotor-signature"),
                body: body.to_vec(),
                status: status.as_u16(),
            });
            status
        }
        let app = axum::Router::new()
            .fallback(axum::routing::post(take))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    pub(crate) fn accepted(&self) -> Vec<Delivery> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.status == 204)
            .cloned()
            .collect()
    }

    pub(crate) async fn wait_for(&self, event: &str, secret: &str, within: Duration) -> Delivery {
        let deadline = Instant::now() + within;
        loop {
            if let Some(d) = self
                .accepted()
                .into_iter()
                .find(|d| d.event == event && d.json()["SecretName"] == secret)
            {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} notice for {secret} within {within:?}: {:#?}",
                self.got.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_never_hold_up_a_rotation() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    for name in ["ok-app", "bad-app", "soon-app"] {
        ecs_secret(&t, hosts, name);
    }
    let key_a = "File-Hook-Key-0123456789";
    let key_b = "Inline-Hook-Key-0123456789";
    let key_file = t.data_dir().join("hook-a.key");
    write_private(&key_file, &format!("{key_a}\n"), 0o600);
    // Receiver A takes every event (refusing its first request); B only `secret_failed`, and
    // is down until the failure has happened.
    let a_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_port = a_listener.local_addr().unwrap().port();
    let a = Receiver::start(a_listener, 1).await;
    let b_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_private(
        &t.data_dir().join("rotor.toml"),
        &format!(
            "[[webhook]]\nurl = \"http://127.0.0.1:{a_port}/hooks/a\"\nsecret_file = {:?}\ndue_soon = \"2h\"\n\n\
             [[webhook]]\nurl = \"http://127.0.0.1:{b_port}/hooks/b\"\nevents = [\"secret_failed\"]\nsecret = \"{key_b}\"\nmax_attempts = 12\n",
            key_file.display().to_string()
        ),
        0o600,
    );

    // A success, and a secret due within A's two hours.
    testkit_ok(
        &t,
        hosts,
        &["rotation", "set", "soon-app", "--interval", "1h"],
    );
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "ok-app",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, None, &[]);
    let ok = a
        .wait_for("rotation_succeeded", "ok-app", Duration::from_secs(30))
        .await;
    let soon = a
        .wait_for("secret_due_soon", "soon-app", Duration::from_secs(30))
        .await;
    terminate(&mut worker);
    let body = ok.json();
    assert_eq!(body["SecretType"], "ECS");
    assert_eq!(body["VersionId"], "v2");
    assert!(body["NextRotationDate"].is_null());
    assert!(soon.json()["NextRotationDate"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let store = t.store().await;
    wait_rotated(&store, "ok-app", Duration::from_secs(1)).await;
    // The refused first request was sent again with the same delivery id.
    let all = a.got.lock().unwrap().clone();
    assert_eq!(all[0].status, 503);
    assert!(
        all[1..]
            .iter()
            .any(|d| d.id == all[0].id && d.status == 204),
        "the refused notice was retried: {all:#?}"
    );

    // A failure: A hears both events at once; B is down and hears when it comes back.
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "bad-app",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, Some("set:fatal"), &[]);
    let failed = a
        .wait_for("secret_failed", "bad-app", Duration::from_secs(30))
        .await;
    a.wait_for("rotation_failed", "bad-app", Duration::from_secs(5))
        .await;
    let error = failed.json()["Error"].as_str().unwrap().to_owned();
    assert!(error.contains("set step failed"), "{error}");
    assert_eq!(failed.json()["Attempts"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b_listener = tokio::net::TcpListener::bind(("127.0.0.1", b_port))
        .await
        .unwrap();
    let b = Receiver::start(b_listener, 0).await;
    b.wait_for("secret_failed", "bad-app", Duration::from_secs(40))
        .await;
    terminate(&mut worker);
    assert!(b.accepted().iter().all(|d| d.event == "secret_failed"));

    // Every notice is signed with its webhook's key over the exact body, names its event in
    // the header and the body, and carries no value.
    let mut values: Vec<String> = vec![];
    for name in ["ok-app", "bad-app", "soon-app"] {
        values.extend(FileRotator::passwords(hosts, name));
        values.push(format!("initial-{name}"));
    }
    for (receiver, key, path) in [(&a, key_a, "/hooks/a"), (&b, key_b, "/hooks/b")] {
        let got = receiver.accepted();
        assert!(!got.is_empty());
        for d in got {
            assert_eq!(d.path, path);
            assert!(d.verifies(key.as_bytes()), "signature of {d:?}");
            assert!(!d.verifies(b"another-key-0123456789"), "a wrong key fails");
            assert_eq!(d.json()["Event"], d.event.as_str());
            let body = String::from_utf8_lossy(&d.body);
            for v in &values {
                assert!(!body.contains(v.as_str()), "a notice shows a value: {body}");
            }
        }
    }
}
