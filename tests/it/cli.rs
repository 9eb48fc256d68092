//! The `rotor` binary end to end: the README's session, JSON output, the worker's lifecycle, and
//! every bad-input rule — each refused with a one-line error, a non-zero exit code and an
//! unchanged store.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::support::{assert_refused, write_file, TestEnv};

const RDS_VALUE: &str = r#"{"AccountName":"app","AccountPassword":"Pw-5d1f0c2a9e"}"#;

both_backends!(a_short_session, |t: TestEnv| async move {
    t.ok(&["init"]);
    let out = t.ok(&[
        "secret",
        "create",
        "app/api-token",
        "--type",
        "Generic",
        "--value",
        "tok-one",
        "--tag",
        "team=platform",
        "--description",
        "API token",
    ]);
    assert!(out.contains("version v1 is ACSCurrent"), "{out}");
    assert_eq!(
        t.ok(&["secret", "get", "app/api-token"]),
        "tok-one",
        "get prints the value itself"
    );
    t.ok(&["secret", "put", "app/api-token", "--value", "tok-two"]);
    assert_eq!(t.ok(&["secret", "get", "app/api-token"]), "tok-two");
    assert_eq!(
        t.ok(&["secret", "get", "app/api-token", "--stage", "ACSPrevious"]),
        "tok-one"
    );
    assert_eq!(
        t.ok(&["secret", "get", "app/api-token", "--version-id", "v1"]),
        "tok-one"
    );

    let got = t.json(&["secret", "get", "app/api-token"]);
    assert_eq!(got["SecretName"], "app/api-token");
    assert_eq!(got["SecretType"], "Generic");
    assert_eq!(got["VersionId"], "v2");
    assert_eq!(got["VersionStages"], serde_json::json!(["ACSCurrent"]));
    assert_eq!(got["SecretData"], "tok-two");
    assert!(got["CreateTime"].as_str().unwrap().ends_with('Z'));

    let described = t.json(&["secret", "describe", "app/api-token"]);
    assert_eq!(described["Description"], "API token");
    assert_eq!(described["Tags"][0]["TagKey"], "team");
    assert_eq!(described["AutomaticRotation"], "Disabled");
    assert!(
        !described.to_string().contains("tok-"),
        "describe never shows values"
    );

    let versions = t.json(&["secret", "versions", "app/api-token"]);
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let listed = t.json(&["secret", "list", "--tag", "team=platform"]);
    assert_eq!(listed[0]["SecretName"], "app/api-token");

    // A schedule needs a secret that can rotate: the test kit's host user (an Rds secret
    // without a target is refused one, see flags.rs).
    let hosts = tempfile::tempdir().unwrap();
    crate::workers::ecs_secret(&t, hosts.path(), "app-db");
    let kit = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&crate::workers::testkit_ok(&t, hosts.path(), &all)).unwrap()
    };
    let rotation = kit(&["rotation", "set", "app-db", "--interval", "7d"]);
    assert_eq!(rotation["RotationInterval"], "604800s");
    let rotation = kit(&[
        "rotation",
        "set",
        "app-db",
        "--cron",
        "0 3 * * 0",
        "--window",
        "2h",
    ]);
    assert_eq!(rotation["RotationCron"], "0 3 * * 0");
    assert_eq!(rotation["RotationWindow"], "7200s");
    kit(&["rotation", "set", "app-db", "--disable"]);

    t.ok(&[
        "secret",
        "stage",
        "app/api-token",
        "--stage",
        "ACSCurrent",
        "--move-to",
        "v1",
    ]);
    assert_eq!(t.ok(&["secret", "get", "app/api-token"]), "tok-one");

    let deleted = t.json(&["secret", "delete", "app/api-token", "--recovery-days", "7"]);
    assert!(deleted["PlannedDeleteTime"].is_string());
    t.ok(&["secret", "restore", "app/api-token"]);
    t.ok(&["secret", "delete", "app/api-token", "--force"]);
    assert_refused(
        &t.run(&["secret", "describe", "app/api-token"]),
        3,
        "does not exist",
        None,
    );

    t.ok(&["key", "create", "payments"]);
    let keys = t.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
});

both_backends!(value_files_and_stdin, |t: TestEnv| async move {
    t.ok(&["init"]);
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let file = write_file(t.dir.path(), "blob.bin", &binary);
    t.ok(&[
        "secret",
        "create",
        "blob",
        "--type",
        "Generic",
        "--value-file",
        file.to_str().unwrap(),
    ]);
    let out = t.rotor().args(["secret", "get", "blob"]).output().unwrap();
    assert_eq!(out.stdout, binary, "binary values come back byte for byte");
    let got = t.json(&["secret", "get", "blob"]);
    assert_eq!(got["SecretDataType"], "binary");

    let mut child = t
        .rotor()
        .args(["secret", "put", "blob", "--value-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(t.ok(&["secret", "get", "blob"]), "from stdin");
});

both_backends!(
    bad_input_is_refused_and_changes_nothing,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        t.ok(&[
            "secret", "create", "db/app", "--type", "Rds", "--value", RDS_VALUE,
        ]);
        t.ok(&[
            "secret",
            "create",
            "plain",
            "--type",
            "Generic",
            "--value",
            "Keep-Me-77",
            "--version-id",
            "v1",
        ]);
        let too_big = write_file(t.dir.path(), "big", &vec![b'x'; 30_721]);
        let long = "n".repeat(193);
        let k129 = format!("{}=v", "k".repeat(129));
        let v129 = format!("k={}", "v".repeat(129));
        let mut many_tags = vec![
            "secret",
            "create",
            "tagged",
            "--type",
            "Generic",
            "--value",
            "Sekrit-21",
        ];
        let tags: Vec<String> = (0..21).map(|i| format!("k{i}=v")).collect();
        for tag in &tags {
            many_tags.extend(["--tag", tag.as_str()]);
        }
        let create = |name: &'static str, extra: &'static [&'static str]| -> Vec<&'static str> {
            let mut args = vec![
                "secret",
                "create",
                name,
                "--type",
                "Generic",
                "--value",
                "Sekrit-21",
            ];
            args.extend_from_slice(extra);
            args
        };

        // (arguments, exit code, what the message must name)
        let cases: Vec<(Vec<&str>, i32, &str)> = vec![
            (
                vec![
                    "secret",
                    "create",
                    long.as_str(),
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                ],
                2,
                "limit is 192",
            ),
            (create("bad name!", &[]), 2, "contains ' '"),
            (create("acs/mine", &[]), 2, "reserved"),
            (many_tags.clone(), 2, "at most 20"),
            (create("t", &["--tag", "placeholder"]), 2, "KEY=VALUE"),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                    "--tag",
                    k129.as_str(),
                ],
                2,
                "tag key is 129 characters",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                    "--tag",
                    v129.as_str(),
                ],
                2,
                "tag value is 129 characters",
            ),
            (
                create("t", &["--tag", "aliyun:env=x"]),
                2,
                "reserved prefix",
            ),
            (create("t", &["--tag", "acs:env=x"]), 2, "reserved prefix"),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value-file",
                    too_big.to_str().unwrap(),
                ],
                2,
                "30721 bytes",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Rds",
                    "--value",
                    r#"{"User":"app","Password":"Sekrit-21"}"#,
                ],
                2,
                "unexpected fields 'Password', 'User'",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Rds",
                    "--value",
                    r#"{"AccountName":"app"}"#,
                ],
                2,
                "missing field 'AccountPassword'",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "ECS",
                    "--sub-type",
                    "SSHKey",
                    "--value",
                    r#"{"UserName":"u","Password":"Sekrit-21"}"#,
                ],
                2,
                "unexpected field 'Password'",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Vault",
                    "--value",
                    "Sekrit-21",
                ],
                2,
                "unknown secret type",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "PolarDB",
                    "--sub-type",
                    "SingleUser",
                    "--value",
                    "Sekrit-21",
                ],
                2,
                "does not support sub-type",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                    "--key",
                    "nope",
                ],
                3,
                "key 'nope' does not exist",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "plain",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                ],
                4,
                "already exists",
            ),
            (
                vec!["rotation", "set", "db/app", "--interval", "1h"],
                2,
                "out of bounds",
            ),
            (
                vec!["rotation", "set", "db/app", "--interval", "400d"],
                2,
                "out of bounds",
            ),
            (
                vec!["rotation", "set", "plain", "--interval", "7d"],
                2,
                "do not rotate automatically",
            ),
            (
                vec!["rotation", "set", "db/app", "--cron", "0 3 * *"],
                2,
                "malformed cron",
            ),
            (
                vec!["rotation", "set", "db/app", "--cron", "*/10 * * * *"],
                2,
                "too often",
            ),
            (
                vec!["rotation", "set", "db/app", "--interval", "soon"],
                2,
                "malformed duration",
            ),
            (
                vec!["secret", "get", "nope"],
                3,
                "secret 'nope' does not exist",
            ),
            (
                vec!["secret", "get", "plain", "--version-id", "v9"],
                3,
                "no version 'v9'",
            ),
            (
                vec!["secret", "put", "nope", "--value", "Sekrit-21"],
                3,
                "does not exist",
            ),
            (
                vec![
                    "secret",
                    "put",
                    "plain",
                    "--value",
                    "Sekrit-21",
                    "--version-id",
                    "v1",
                ],
                4,
                "already exists with other data",
            ),
            (
                vec!["secret", "put", "db/app", "--value", "Sekrit-21"],
                2,
                "must be a JSON object",
            ),
            (
                vec![
                    "secret", "put", "db/app", "--value", RDS_VALUE, "--stage", "blue",
                ],
                2,
                "only allowed on Generic",
            ),
            (
                vec![
                    "secret",
                    "put",
                    "plain",
                    "--value",
                    "Sekrit-21",
                    "--stage",
                    "ACSPending",
                ],
                2,
                "ACSPending is managed",
            ),
            (
                vec![
                    "secret",
                    "stage",
                    "plain",
                    "--stage",
                    "ACSCurrent",
                    "--move-to",
                    "v7",
                ],
                3,
                "no version 'v7'",
            ),
            (
                vec!["secret", "delete", "plain", "--recovery-days", "3"],
                2,
                "7 to 30 days",
            ),
            (
                vec!["secret", "restore", "plain"],
                4,
                "not scheduled for deletion",
            ),
            (vec!["key", "create", "default"], 4, "already exists"),
        ];
        let before = t.snapshot().await;
        for (args, code, expect) in cases {
            let out = t.run(&args);
            assert_refused(&out, code, expect, Some("Sekrit-21"));
            assert_eq!(
                t.snapshot().await,
                before,
                "rotor {args:?} changed the store"
            );
        }
    }
);

both_backends!(
    commands_need_an_initialised_store,
    |t: TestEnv| async move {
        let out = t.run(&["secret", "list"]);
        let expect = if t.pg_db.is_some() {
            "rotor init"
        } else {
            "no rotor store"
        };
        assert_refused(&out, 1, expect, None);
    }
);

both_backends!(
    worker_starts_fresh_and_stops_on_signals,
    |t: TestEnv| async move {
        for signal in ["TERM", "INT"] {
            let mut child = t
                .rotor()
                .arg("worker")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let line = rx
                    .recv_timeout(deadline - Instant::now())
                    .expect("worker logs that it started");
                if line.contains("worker started") {
                    break;
                }
            }
            assert!(
                t.data_dir().join("master.key").exists(),
                "the worker initialised a fresh data directory"
            );
            let kill = std::process::Command::new("kill")
                .args([format!("-{signal}"), child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(0), "worker exits 0 on SIG{signal}");
        }
    }
);

both_backends!(values_stay_out_of_logs, |t: TestEnv| async move {
    // ROTOR_LOG=trace is set for every command the tests run: nothing may print a value.
    t.ok(&["init"]);
    let value = "Leak-Canary-3141";
    for args in [
        vec![
            "secret", "create", "c", "--type", "Generic", "--value", value,
        ],
        vec!["secret", "put", "c", "--value", "Leak-Canary-2718"],
        vec!["--json", "secret", "describe", "c"],
        vec!["--json", "secret", "versions", "c"],
        vec!["--json", "secret", "list"],
    ] {
        let out = t.run(&args);
        assert!(out.status.success());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("Leak-Canary"),
            "rotor {args:?} printed a value: {all}"
        );
    }
    let out = t.run(&["secret", "get", "c"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Leak-Canary"));
});

/// `rotor target add --no-check` for a target nothing connects to (it touches no server).
fn add_offline_target(t: &TestEnv, name: &str, url: &str) -> std::process::Output {
    t.run(&[
        "target",
        "add",
        name,
        "--kind",
        "postgres",
        "--url",
        url,
        "--admin-user",
        "admin",
        "--admin-password",
        "Admin-Pass-9f3",
        "--no-check",
    ])
}

both_backends!(hostile_input_is_refused, |t: TestEnv| async move {
    t.ok(&["init"]);
    // An endless value is refused once past the limit, in bounded memory (a value file must be
    // a regular file, so the endless stream comes on standard input).
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -v 1000000; exec \"$0\" secret put x --value-file - </dev/zero",
        ])
        .arg(env!("CARGO_BIN_EXE_rotor"))
        .env("ROTOR_DATA_DIR", t.data_dir())
        .envs(t.store_url().map(|u| ("ROTOR_STORE", u)))
        .output()
        .unwrap();
    assert_refused(&out, 2, "at least 30721 bytes", None);

    // Control characters and bidi overrides in free text.
    for text in [
        "title\x1b]0;pwned\x07",
        "a\rb",
        "x\u{202e}gnp.exe",
        "del\x7f",
        "c1\u{9b}2J",
    ] {
        let out = t.run(&[
            "secret",
            "create",
            "d",
            "--type",
            "Generic",
            "--value",
            "v",
            "--description",
            text,
        ]);
        assert_refused(&out, 2, "control character", None);
        let out = add_offline_target(&t, "t", &format!("postgres://h/{text}"));
        assert_refused(&out, 2, "control character", None);
    }
    // Credentials in a target URL's query.
    for url in [
        "postgres://h/db?password=Hunter2-Q",
        "postgres://h/db?sslmode=require&sslpassword=Hunter2-Q",
    ] {
        assert_refused(
            &add_offline_target(&t, "t", url),
            2,
            "carries a credential",
            Some("Hunter2-Q"),
        );
    }
    assert!(
        add_offline_target(&t, "t", "postgres://127.0.0.1:1/db?sslmode=disable")
            .status
            .success()
    );

    // rotor's own secrets change only through rotation or their target.
    let admin = "acs/target/t/admin";
    for args in [
        vec![
            "secret",
            "put",
            admin,
            "--value",
            r#"{"AccountName":"x","AccountPassword":"y"}"#,
        ],
        vec![
            "secret",
            "stage",
            admin,
            "--stage",
            "ACSCurrent",
            "--move-to",
            "v1",
        ],
        vec!["secret", "delete", admin, "--force"],
        vec!["secret", "delete", admin],
    ] {
        let out = t.run(&args);
        assert_refused(&out, 2, "rotor target remove t", None);
    }
    t.ok(&["secret", "describe", admin]);

    // Repeated JSON keys.
    let out = t.run(&[
        "secret",
        "create",
        "e",
        "--type",
        "ECS",
        "--value",
        r#"{"UserName":"a","Password":"Pw-Hunter2-x","UserName":"b"}"#,
    ]);
    assert_refused(
        &out,
        2,
        "'UserName' appears more than once",
        Some("Pw-Hunter2-x"),
    );

    // Password policies below 128 bits (checked before any server is contacted).
    let out = t.run(&[
        "secret",
        "create",
        "db/weak",
        "--type",
        "Rds",
        "--target",
        "t",
        "--account",
        "weak",
        "--password-length",
        "16",
    ]);
    assert_refused(&out, 2, "99 bits of entropy", None);
    let out = t.run(&[
        "secret",
        "create",
        "db/weak",
        "--type",
        "Rds",
        "--target",
        "t",
        "--account",
        "weak",
        "--exclude-chars",
        "defghijklmnopqrstuvwxyzBCDEFGHIJKLMNOPQRSTUVWXYZ123456789!#%*+-.=?^_~",
    ]);
    assert_refused(&out, 2, "alphabet of 5", None);
});

both_backends!(
    human_output_escapes_what_an_older_store_holds,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        t.ok(&[
            "secret",
            "create",
            "old",
            "--type",
            "Generic",
            "--value",
            "v",
            "--description",
            "fine",
        ]);
        let url = t
            .store_url()
            .unwrap_or_else(|| format!("sqlite://{}", t.data_dir().join("rotor.db").display()));
        sqlx::any::install_default_drivers();
        let raw = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE secrets SET description = $1 WHERE name = 'old'")
            .bind("x\x1b[2J\x1b]0;pwned\x07\r\u{202e}y")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
        let out = t.ok(&["secret", "describe", "old"]);
        assert!(
            !out.chars()
                .any(|c| c == '\x1b' || c == '\r' || c == '\x07' || c == '\u{202e}'),
            "{out:?}"
        );
        assert!(out.contains("x\\u{1b}[2J"), "{out}");
    }
);

#[tokio::test]
async fn stores_that_cannot_open_say_why_at_once() {
    // A corrupt SQLite file: SQLite's own reason, one line.
    let t = TestEnv::new(crate::support::Backend::Sqlite).await;
    t.ok(&["init"]);
    // (Without its WAL, which may still hold the first page and so hide the damage.)
    for side in ["rotor.db-wal", "rotor.db-shm"] {
        let _ = std::fs::remove_file(t.data_dir().join(side));
    }
    std::fs::write(t.data_dir().join("rotor.db"), vec![0x5a; 8192]).unwrap();
    let out = t.run(&["secret", "list"]);
    assert_refused(&out, 1, "file is not a database", None);
    // An unreachable PostgreSQL store: its host and the cause.
    let out = t
        .rotor()
        .args([
            "--store",
            "postgres://rotor:Hunter2-Store@127.0.0.1:1/rotor",
            "--store-connect-timeout",
            "2s",
            "secret",
            "list",
        ])
        .output()
        .unwrap();
    assert_refused(
        &out,
        1,
        "the PostgreSQL store at 127.0.0.1:1",
        Some("Hunter2-Store"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

/// StrictModes for rotor's files (these cases give files to `nobody`: CI runs as root).
mod trusted_files {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn give_to_nobody(path: &Path) {
        let ok = std::process::Command::new("chown")
            .args(["nobody", path.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "chown nobody {} failed: this test needs root to give files to another user",
            path.display()
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[tokio::test]
    async fn init_makes_private_files_and_refuses_a_prepared_directory() {
        let t = TestEnv::new(crate::support::Backend::Sqlite).await;
        let dir = t.data_dir();
        t.ok(&["init"]);
        t.ok(&["secret", "create", "s", "--type", "Generic", "--value", "v"]);
        assert_eq!(mode(&dir), 0o700);
        for file in ["master.key", "rotor.db"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }

        // An attacker's directory: world-writable, someone else's, with their key and store.
        let evil = t.data_dir().with_file_name("evil");
        std::fs::create_dir(&evil).unwrap();
        std::fs::copy(dir.join("master.key"), evil.join("master.key")).unwrap();
        std::fs::write(evil.join("rotor.db"), b"").unwrap();
        chmod(&evil.join("rotor.db"), 0o666);
        for f in ["master.key", "rotor.db"] {
            give_to_nobody(&evil.join(f));
        }
        give_to_nobody(&evil);
        chmod(&evil, 0o777);
        let out = t
            .rotor()
            .args(["--data-dir", evil.to_str().unwrap(), "init"])
            .output()
            .unwrap();
        assert_refused(
            &out,
            1,
            &format!("data directory {} belongs to uid 65534", evil.display()),
            None,
        );
        assert_eq!(mode(&evil), 0o777, "nothing repaired");
        assert_eq!(
            std::fs::metadata(evil.join("rotor.db")).unwrap().len(),
            0,
            "nothing written"
        );

        // Ours but writable by others.
        let open = t.data_dir().with_file_name("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let out = t
            .rotor()
            .args(["--data-dir", open.to_str().unwrap(), "init"])
            .output()
            .unwrap();
        assert_refused(
            &out,
            1,
            "is writable by others (mode 0777); run: chmod 700",
            None,
        );
        assert!(!open.join("master.key").exists());
    }

    #[tokio::test]
    async fn key_store_and_lock_files_others_could_use_are_refused() {
        let t = TestEnv::new(crate::support::Backend::Sqlite).await;
        let dir = t.data_dir();
        t.ok(&["init"]);
        let list = || t.run(&["secret", "list"]);

        // A store file others can read.
        chmod(&dir.join("rotor.db"), 0o644);
        assert_refused(&list(), 1, "store file", None);
        assert_refused(
            &list(),
            1,
            "readable by others (mode 0644); run: chmod 600",
            None,
        );
        chmod(&dir.join("rotor.db"), 0o600);
        t.ok(&["secret", "list"]);

        // A key file someone else owns.
        give_to_nobody(&dir.join("master.key"));
        assert_refused(&list(), 1, "master key file", None);
        assert_refused(&list(), 1, "belongs to uid 65534", None);
        std::process::Command::new("chown")
            .args(["root", dir.join("master.key").to_str().unwrap()])
            .status()
            .unwrap();
        t.ok(&["secret", "list"]);

        // A symlinked key file whose target sits in a directory anyone may write.
        let shared = dir.with_file_name("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        std::fs::rename(dir.join("master.key"), shared.join("master.key")).unwrap();
        std::os::unix::fs::symlink(shared.join("master.key"), dir.join("master.key")).unwrap();
        assert_refused(
            &list(),
            1,
            &format!("reached through {}", shared.display()),
            None,
        );
        chmod(&shared, 0o700);
        t.ok(&["secret", "list"]);

        // A worker lock others may write.
        std::fs::write(dir.join("worker.lock"), b"").unwrap();
        chmod(&dir.join("worker.lock"), 0o666);
        let out = t.run(&["worker"]);
        assert_refused(&out, 1, "worker lock file", None);
        assert_eq!(mode(&dir.join("worker.lock")), 0o666, "nothing repaired");
    }
}

both_backends!(
    describe_lines_up_labels_and_values,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        // A schedule needs a secret that can rotate: the test kit's host user.
        let hosts = tempfile::tempdir().unwrap();
        crate::workers::ecs_secret(&t, hosts.path(), "dbx");
        crate::workers::testkit_ok(
            &t,
            hosts.path(),
            &["rotation", "set", "dbx", "--interval", "7d"],
        );
        let out = t.ok(&["secret", "describe", "dbx"]);
        assert!(out.contains("Next rotation: 20"), "{out}");
        let columns: Vec<usize> = out
            .lines()
            .filter(|l| !l.ends_with(':'))
            .map(|l| {
                let colon = l.find(':').unwrap();
                colon + 1 + l[colon + 1..].chars().take_while(|c| *c == ' ').count()
            })
            .collect();
        assert!(columns.iter().all(|c| *c == columns[0]), "{out}");
        for line in out.lines() {
            let colon = line.find(':').unwrap();
            assert!(
                line[colon + 1..].is_empty() || line[colon + 1..].starts_with(' '),
                "{line}"
            );
        }
    }
);

/// Found by a hostile run: `secret stage` moved a managed secret's ACSCurrent to a version its
/// target does not hold, with no login check.
#[tokio::test]
async fn a_managed_secrets_current_and_previous_do_not_move_by_hand() {
    let t = TestEnv::new(crate::support::Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "db/app", "--type", "Rds", "--value", RDS_VALUE,
    ]);
    let before = t.snapshot().await;
    for stage in ["ACSCurrent", "ACSPrevious"] {
        let out = t.run(&[
            "secret",
            "stage",
            "db/app",
            "--stage",
            stage,
            "--move-to",
            "v1",
        ]);
        assert_refused(
            &out,
            2,
            "moves only with its credential on the target",
            None,
        );
    }
    assert_eq!(t.snapshot().await, before, "nothing changed");
}
