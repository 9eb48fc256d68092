//! The README's session, value files and stdin, an uninitialised store, the worker's signals,
//! values kept out of logs, and `describe`'s layout.

use super::*;

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
