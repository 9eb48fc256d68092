//! Encryption at rest: no plaintext in the SQLite file or a `pg_dump`, ciphertexts bound to
//! their secret and version, and the master key's rules (file mode, environment, wrong key).

use std::os::unix::fs::PermissionsExt;

use sqlx::Executor;

use crate::both_backends;
use crate::support::{assert_refused, TestEnv};

/// Runs raw SQL on the test's store, behind rotor's back.
async fn tamper(t: &TestEnv, sql: &str) {
    sqlx::any::install_default_drivers();
    let url = t
        .store_url()
        .unwrap_or_else(|| format!("sqlite://{}", t.data_dir().join("rotor.db").display()));
    let pool = sqlx::AnyPool::connect(&url)
        .await
        .expect("store database opens");
    let done = pool.execute(sql).await.expect("tampering statement runs");
    assert!(done.rows_affected() > 0, "{sql} changed nothing");
    pool.close().await;
}

both_backends!(no_plaintext_reaches_the_store, |t: TestEnv| async move {
    t.ok(&["init"]);
    let values = [
        "Plain-Generic-Canary-1",
        "Plain-Generic-Canary-2",
        "Rds-Password-Canary-3",
        "Ram-Secret-Canary-4",
    ];
    t.ok(&[
        "secret", "create", "g", "--type", "Generic", "--value", values[0],
    ]);
    t.ok(&["secret", "put", "g", "--value", values[1]]);
    let rds = format!(
        r#"{{"AccountName":"app","AccountPassword":"{}"}}"#,
        values[2]
    );
    t.ok(&["secret", "create", "db", "--type", "Rds", "--value", &rds]);
    let ram = format!(
        r#"{{"AccessKeyId":"LTAI5tKeyId","AccessKeySecret":"{}","GenerateTimestamp":"2026-11-28T00:00:00Z"}}"#,
        values[3]
    );
    t.ok(&[
        "secret",
        "create",
        "ram",
        "--type",
        "RAMCredentials",
        "--value",
        &ram,
    ]);
    let raw = t.raw_store_bytes();
    assert!(raw.len() > 1000, "the store's bytes were read");
    assert!(
        raw.windows(2).any(|w| w == b"db"),
        "names are stored in the clear"
    );
    for value in values {
        assert!(
            !raw.windows(value.len()).any(|w| w == value.as_bytes()),
            "{value} is stored in plaintext"
        );
    }
    // The master key never enters the store either.
    let key = std::fs::read_to_string(t.data_dir().join("master.key")).unwrap();
    let key = key.trim();
    assert!(
        !raw.windows(key.len()).any(|w| w == key.as_bytes()),
        "master key in the store"
    );
});

both_backends!(
    ciphertexts_are_bound_to_secret_and_version,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        t.ok(&[
            "secret",
            "create",
            "a",
            "--type",
            "Generic",
            "--value",
            "value-of-a",
        ]);
        t.ok(&["secret", "put", "a", "--value", "value-of-a-2"]);
        t.ok(&[
            "secret",
            "create",
            "b",
            "--type",
            "Generic",
            "--value",
            "value-of-b",
        ]);

        // a's v1 ciphertext copied over a's v2: the version id in the associated data differs.
        tamper(&t, "UPDATE versions SET ciphertext = (SELECT v.ciphertext FROM versions v JOIN secrets s ON s.id = v.secret_id \
                WHERE s.name = 'a' AND v.version_id = 'v1') \
                WHERE version_id = 'v2' AND secret_id = (SELECT id FROM secrets WHERE name = 'a')").await;
        let out = t.run(&["secret", "get", "a"]);
        assert_refused(
            &out,
            5,
            "version 'v2' of secret 'a' does not decrypt",
            Some("value-of-a"),
        );
        assert_eq!(
            t.ok(&["secret", "get", "a", "--version-id", "v1"]),
            "value-of-a",
            "the rest still opens"
        );

        // a's v1 ciphertext copied into b's v1: another secret's data key.
        tamper(&t, "UPDATE versions SET ciphertext = (SELECT v.ciphertext FROM versions v JOIN secrets s ON s.id = v.secret_id \
                WHERE s.name = 'a' AND v.version_id = 'v1') \
                WHERE secret_id = (SELECT id FROM secrets WHERE name = 'b')").await;
        let out = t.run(&["secret", "get", "b"]);
        assert_refused(
            &out,
            5,
            "version 'v1' of secret 'b' does not decrypt",
            Some("value-of-"),
        );

        // a's wrapped data key copied to b: bound to a's id and name.
        tamper(&t, "UPDATE secrets SET wrapped_data_key = (SELECT wrapped_data_key FROM secrets WHERE name = 'a') \
                WHERE name = 'b'").await;
        let out = t.run(&["secret", "get", "b"]);
        assert_refused(
            &out,
            5,
            "data key of secret 'b' does not decrypt",
            Some("value-of-"),
        );
    }
);

both_backends!(master_key_rules, |t: TestEnv| async move {
    let out = t.ok(&["init"]);
    assert!(out.contains("master key"), "{out}");
    let key_file = t.data_dir().join("master.key");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600, "key file mode");
    assert_eq!(mode(&t.data_dir()), 0o700, "data directory mode");
    if t.pg_db.is_none() {
        assert_eq!(
            mode(&t.data_dir().join("rotor.db")),
            0o600,
            "store file mode"
        );
    }
    t.ok(&[
        "secret", "create", "s", "--type", "Generic", "--value", "guarded",
    ]);
    let key = std::fs::read_to_string(&key_file).unwrap();

    // A key file others can read is refused, with the fix in the message.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(
        &t.run(&["secret", "get", "s"]),
        1,
        "readable by others",
        Some("guarded"),
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // ROTOR_MASTER_KEY stands in for the file; a wrong key is refused before anything is read.
    std::fs::rename(&key_file, t.dir.path().join("moved.key")).unwrap();
    assert_refused(&t.run(&["secret", "get", "s"]), 1, "master key file", None);
    let out = t
        .rotor()
        .env("ROTOR_MASTER_KEY", key.trim())
        .args(["secret", "get", "s"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "guarded");
    let other = rotor::crypto::KeyMaterial::generate().to_base64();
    let out = t
        .rotor()
        .env("ROTOR_MASTER_KEY", other.as_str())
        .args(["secret", "get", "s"])
        .output()
        .unwrap();
    assert_refused(&out, 5, "does not fit this store", Some("guarded"));
    let out = t
        .rotor()
        .env("ROTOR_MASTER_KEY", "not-base64!")
        .args(["secret", "list"])
        .output()
        .unwrap();
    assert_refused(&out, 1, "ROTOR_MASTER_KEY", None);
    // Key listings never show material.
    let out = t
        .rotor()
        .env("ROTOR_MASTER_KEY", key.trim())
        .args(["--json", "key", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(key.trim()));
});

both_backends!(
    init_with_an_environment_key_writes_no_key_file,
    |t: TestEnv| async move {
        let key = rotor::crypto::KeyMaterial::generate().to_base64();
        let out = t
            .rotor()
            .env("ROTOR_MASTER_KEY", key.as_str())
            .arg("init")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!t.data_dir().join("master.key").exists());
        let out = t
            .rotor()
            .env("ROTOR_MASTER_KEY", key.as_str())
            .args(["secret", "create", "s", "--type", "Generic", "--value", "x"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // init again is harmless.
        let out = t
            .rotor()
            .env("ROTOR_MASTER_KEY", key.as_str())
            .arg("init")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
);
