//! Hostile input (control characters, odd URLs) is refused, and human output escapes what an
//! older store holds.

use super::*;

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
