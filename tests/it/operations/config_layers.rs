//! The configuration file and its layers, and `rotor config check` saying where each value
//! came from.

use super::*;

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
    // A value clap refuses names the variable it came from, not only the flag.
    refused(
        &[("ROTOR_CONCURRENCY", "abc")],
        &["config", "check"],
        &["--concurrency", "the value came from ROTOR_CONCURRENCY"],
    );
    let err = refused(
        &[],
        &["--concurrency", "abc", "config", "check"],
        &["--concurrency"],
    );
    assert!(!err.contains("ROTOR_CONCURRENCY"), "{err}");
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
