//! No password in any log: the servers' statement logs, rotor's trace and JSON logs, the metrics
//! and the audit log.

use super::*;

// --- No password in any log: the servers' statement logs and rotor's own trace logs ---

/// Runs rotor with `ROTOR_LOG=trace` (as every test does) in the given log format, and keeps
/// what it printed on stderr for the log checks.
fn logged(t: &TestEnv, args: &[&str], json_logs: bool, logs: &mut String) -> Output {
    let format = if json_logs { "json" } else { "text" };
    let out = t
        .rotor()
        .args(["--log-format", format])
        .args(args)
        .output()
        .unwrap();
    logs.push_str(&String::from_utf8_lossy(&out.stderr));
    out
}

/// The password of every version rotor holds for `secret` (pending ones included).
fn stored_passwords(t: &TestEnv, secret: &str) -> Vec<String> {
    let versions = t.json(&["secret", "versions", secret]);
    versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let id = v["VersionId"].as_str().unwrap();
            let got = t.json(&["secret", "get", secret, "--version-id", id]);
            let data: serde_json::Value =
                serde_json::from_str(got["SecretData"].as_str().unwrap()).unwrap();
            data["AccountPassword"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn assert_no_password(haystack: &str, passwords: &[String], what: &str) {
    assert!(!passwords.is_empty());
    for password in passwords {
        assert!(
            !haystack.contains(password.as_str()),
            "{what} shows a password"
        );
    }
}

/// An import file for accounts `a` and `b`, whose passwords the tests set as
/// `Imported-Pass-A1` and `Imported-Pass-B1`.
fn write_import(dir: &std::path::Path, a: &str, b: &str) -> std::path::PathBuf {
    let import = serde_json::json!({"Accounts": [
        {"AccountName": a, "AccountPassword": "Imported-Pass-A1"},
        {"AccountName": b, "AccountPassword": "Imported-Pass-B1"},
    ]})
    .to_string();
    crate::support::write_file(dir, "import.json", import.as_bytes())
}

fn file_len(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn read_from(path: &str, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    String::from_utf8_lossy(&bytes[offset.min(bytes.len() as u64) as usize..]).into_owned()
}

#[tokio::test]
async fn postgres_statement_logs_and_trace_logs_never_show_a_password() {
    let mut pg = Pg::new().await;
    let log = std::env::var("ROTOR_TEST_PG_SCRAM_LOG").unwrap_or_else(|_| {
        let ca =
            std::env::var("ROTOR_TEST_PG_SCRAM_CA").expect("tests/run sets ROTOR_TEST_PG_SCRAM_CA");
        format!("{}/server.log", ca.rsplit_once('/').unwrap().0)
    });
    // Accounts to import, made by the test (its own statements carry their passwords).
    let (a, b) = (pg.name("imp_a"), pg.name("imp_b"));
    pg.role(&a, "", "Imported-Pass-A1").await;
    pg.role(&b, "", "Imported-Pass-B1").await;
    let mut conn = admin().await;
    conn.execute(format!("GRANT CONNECT ON DATABASE {} TO {a}, {b}", pg.db).as_str())
        .await
        .unwrap();
    // Every statement logged from here on.
    conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    conn.execute("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = file_len(&log);

    let app = pg.name("app");
    let mut logs = String::new();
    let t = &pg.t;
    let create = create_rds("db/app", "pg", &["--account", &app, "--database", &pg.db]);
    assert!(logged(t, &create, true, &mut logs).status.success());
    for json_logs in [false, true] {
        let out = logged(t, &["rotate", "db/app"], json_logs, &mut logs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = write_import(&t.data_dir(), &a, &b);
    let create_import = create_rds(
        "db/imp",
        "pg",
        &["--database", &pg.db, "--value-file", file.to_str().unwrap()],
    );
    assert!(logged(t, &create_import, false, &mut logs).status.success());
    assert!(logged(t, &["rotate", "db/imp"], true, &mut logs)
        .status
        .success());
    // A forced failure: the partner account is gone, so setting its password fails (and
    // PostgreSQL logs the failing statement); the pending password stays in the store.
    conn.execute(format!("DROP ROLE {app}_clone").as_str())
        .await
        .unwrap();
    let out = logged(t, &["rotate", "db/app"], false, &mut logs);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conn.execute("ALTER SYSTEM RESET log_statement")
        .await
        .unwrap();
    conn.execute("SELECT pg_reload_conf()").await.unwrap();

    let mut passwords = stored_passwords(t, "db/app");
    assert_eq!(passwords.len(), 5, "two created, two rotated, one pending");
    passwords.extend(stored_passwords(t, "db/imp"));
    let server = read_from(&log, start);
    assert!(
        server.contains("PASSWORD 'SCRAM-SHA-256$"),
        "the server log holds rotor's statements (with verifiers)"
    );
    assert_no_password(&server, &passwords, "PostgreSQL's statement log");
    assert!(logs.contains("step starts"), "rotor logged its steps");
    assert!(
        !logs.contains('\x1b'),
        "no colour codes when stderr is not a terminal"
    );
    assert_no_password(&logs, &passwords, "rotor's trace logs");
    pg.cleanup(&[app.clone(), format!("{app}_group")]).await;
}

#[tokio::test]
async fn mysql_general_log_and_trace_logs_never_show_a_password() {
    let (t, suffix, db) = maria().await;
    let mut conn = mysql_admin().await;
    let (a, b) = (format!("ia_{suffix}"), format!("ib_{suffix}"));
    for (user, pw) in [(&a, "Imported-Pass-A1"), (&b, "Imported-Pass-B1")] {
        conn.execute(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'").as_str())
            .await
            .unwrap();
        conn.execute(format!("GRANT SELECT ON {db}.* TO '{user}'@'%'").as_str())
            .await
            .unwrap();
    }
    let log: String = sqlx::query_scalar("SELECT @@general_log_file")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let datadir: String = sqlx::query_scalar("SELECT @@datadir")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let log = if log.starts_with('/') {
        log
    } else {
        format!("{datadir}/{log}")
    };
    conn.execute("SET GLOBAL general_log = 1").await.unwrap();
    let start = file_len(&log);

    let app = format!("my_{suffix}");
    let mut logs = String::new();
    let create = create_rds("db/my", "maria", &["--account", &app, "--database", &db]);
    assert!(logged(&t, &create, false, &mut logs).status.success());
    for json_logs in [true, false] {
        assert!(logged(&t, &["rotate", "db/my"], json_logs, &mut logs)
            .status
            .success());
    }
    let file = write_import(&t.data_dir(), &a, &b);
    let create_import = create_rds(
        "db/imp",
        "maria",
        &["--database", &db, "--value-file", file.to_str().unwrap()],
    );
    assert!(logged(&t, &create_import, true, &mut logs).status.success());
    assert!(logged(&t, &["rotate", "db/imp"], false, &mut logs)
        .status
        .success());
    conn.execute(format!("DROP USER '{app}_clone'@'%'").as_str())
        .await
        .unwrap();
    let out = logged(&t, &["rotate", "db/my"], true, &mut logs);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conn.execute("SET GLOBAL general_log = 0").await.unwrap();

    let mut passwords = stored_passwords(&t, "db/my");
    assert_eq!(passwords.len(), 5, "two created, two rotated, one pending");
    passwords.extend(stored_passwords(&t, "db/imp"));
    let server = read_from(&log, start);
    assert!(
        server.contains("IDENTIFIED BY PASSWORD '*"),
        "the general log holds rotor's statements (with hashes)"
    );
    assert_no_password(&server, &passwords, "MariaDB's general log");
    assert_no_password(&logs, &passwords, "rotor's trace logs");
    mysql_cleanup(&[&a, &b, &app], &[&db]).await;
}

#[tokio::test]
async fn redis_monitor_and_trace_logs_never_show_a_password() {
    use std::io::{Read as _, Write as _};
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    // MONITOR on a connection of its own, read in the background until the test ends.
    let addr = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut monitor = std::net::TcpStream::connect(&addr).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    monitor
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = monitor.read(&mut buf) {
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        })
    };
    // And the slowlog, with every command in it for the test's length.
    let mut admin = redis_admin().await;
    let slower: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-log-slower-than")
        .query_async(&mut admin)
        .await
        .unwrap();
    let config = |k: &str, v: &str| redis::cmd("CONFIG").arg("SET").arg(k).arg(v).to_owned();
    config("slowlog-log-slower-than", "0")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    config("slowlog-max-len", "100000")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let suffix = rotor::crypto::random_id()[..8].to_owned();
    let user = format!("mon_{suffix}");
    let mut logs = String::new();
    let create = [
        "secret",
        "create",
        "kv/app",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
    ];
    assert!(logged(&t, &create, true, &mut logs).status.success());
    for json_logs in [false, true] {
        assert!(logged(&t, &["rotate", "kv/app"], json_logs, &mut logs)
            .status
            .success());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let slowlog: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg("-1")
        .query_async(&mut admin)
        .await
        .unwrap();
    config("slowlog-log-slower-than", &slower[1])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let slowlog = format!("{slowlog:?}");
    let passwords = stored_passwords(&t, "kv/app");
    assert!(
        seen.contains("WHOAMI"),
        "MONITOR saw rotor's logins: {seen}"
    );
    assert_no_password(&seen, &passwords, "Redis MONITOR");
    assert!(
        slowlog.contains("SETUSER"),
        "the slowlog holds rotor's commands: {slowlog}"
    );
    assert_no_password(&slowlog, &passwords, "Redis's slowlog");
    assert_no_password(&logs, &passwords, "rotor's trace logs");
    for u in [user.clone(), format!("{user}_clone")] {
        let _: redis::RedisResult<()> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&u)
            .query_async(&mut admin)
            .await;
    }
}

// --- One rotation suite, every output scanned: JSON logs, metrics, the audit log ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_suite_leaves_no_value_in_json_logs_metrics_or_the_audit_log() {
    use crate::workers::{http_get, terminate, wait_rotated};
    let pg = Pg::new().await;
    let t = &pg.t;
    let out = add_target(t, "red", "redis", &redis_url(), "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = pg.name("scan");
    let redis_user = format!("rs_{}", pg.suffix);
    t.ok(&create_rds(
        "db/scan",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    t.ok(&[
        "secret",
        "create",
        "cache/scan",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &redis_user,
        "--privilege",
        "ReadWrite",
    ]);
    for name in ["db/scan", "cache/scan"] {
        t.ok(&["rotation", "set", name, "--interval", "1d", "--rotate-now"]);
    }
    // A worker with JSON logs at trace level, metrics, and audited reads.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = t
        .rotor()
        .args(["--log-format", "json", "worker", "--poll", "100ms"])
        .args(["--metrics-listen", &addr])
        .env("ROTOR_AUDIT_READS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = pg.store().await;
    for name in ["db/scan", "cache/scan"] {
        wait_rotated(&store, name, Duration::from_secs(60)).await;
    }
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("rotor_rotations_total"), "{metrics}");
    // More rotations and reads from one-shot commands, logging JSON too.
    let mut logs = String::new();
    for name in ["db/scan", "cache/scan"] {
        let out = logged(t, &["rotate", name], true, &mut logs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = t
            .rotor()
            .env("ROTOR_AUDIT_READS", "true")
            .args(["--log-format", "json", "secret", "get", name])
            .output()
            .unwrap();
        assert!(out.status.success());
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    terminate(&mut worker);
    let mut worker_logs = String::new();
    std::io::Read::read_to_string(&mut worker.stderr.take().unwrap(), &mut worker_logs).unwrap();
    let audit = t.ok(&["--json", "audit"]);

    // One JSON object per line; the steps carry the secret, step, attempt and duration.
    let mut steps_done = 0;
    for line in worker_logs.lines().chain(logs.lines()) {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
        if event["target"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rotor")
        {
            assert!(event["fields"]["message"].is_string(), "{line}");
        }
        if event["fields"]["message"] == "step done" {
            steps_done += 1;
            let f = &event["fields"];
            assert!(
                f["step"].is_string() && f["attempt"].is_u64() && f["duration_ms"].is_u64(),
                "{line}"
            );
            let secret = event["span"]["secret"].as_str().unwrap_or_default();
            assert!(secret == "db/scan" || secret == "cache/scan", "{line}");
        }
    }
    assert!(
        steps_done >= 12,
        "create, set and test of four rotations: {steps_done}"
    );
    let audit_json: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let records = audit_json.as_array().unwrap();
    for name in ["db/scan", "cache/scan"] {
        let of = |action: &str| {
            records
                .iter()
                .filter(|r| r["SecretName"] == name && r["Action"] == action)
                .count()
        };
        assert_eq!(of("rotation.promote"), 2, "{name}");
        assert_eq!(of("secret.read"), 1, "{name}");
    }

    // Every value involved: each version of both secrets and the targets' admin password.
    let mut values = stored_passwords(t, "db/scan");
    values.extend(stored_passwords(t, "cache/scan"));
    assert_eq!(
        values.len(),
        8,
        "current and previous of two accounts, per secret"
    );
    let admin = scram_url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    values.push(admin);
    assert_no_password(&worker_logs, &values, "the worker's JSON logs");
    assert_no_password(&logs, &values, "the commands' JSON logs");
    assert_no_password(&metrics, &values, "/metrics");
    assert_no_password(&audit, &values, "the audit log");

    redis_drop_pair(&redis_user).await;
    pg.cleanup_dual(&app).await;
}
