//! Host keys are pinned, and an sshd that goes down mid-rotation is retried; bad input is
//! refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_pinned_and_a_host_presenting_another_key_is_refused() {
    let t = env(Backend::Sqlite).await;
    let mut sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);

    // No pin: refused. Trust on first use is never implicit.
    let out = add_target(&t, "h0", &sshd, &[], "");
    assert_refused(&out, 2, "needs its host key", None);

    let key = sshd.host_key();
    let fingerprint = sshd.fingerprint();
    ok(add_target(&t, "by-key", &sshd, &["--host-key", &key], ""));
    ok(add_target(
        &t,
        "by-fingerprint",
        &sshd,
        &["--host-key-fingerprint", &fingerprint],
        "",
    ));
    let out = add_target(&t, "tofu", &sshd, &["--trust-on-first-use"], "");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        stderr.contains("trusting host key") && stderr.contains(&fingerprint),
        "trust on first use says what it recorded: {stderr}"
    );
    let listed = t.json(&["target", "list"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["AdminSecretName"].is_null()));
    let table = t.ok(&["target", "list"]);
    assert!(
        table.lines().skip(1).all(|l| l.trim_end().ends_with(" -")),
        "no admin shown as -: {table}"
    );
    for name in ["by-key", "by-fingerprint", "tofu"] {
        let out = t.ok(&["target", "check", name]);
        assert!(out.contains("pinned host key"), "{out}");
    }
    let secret = serde_json::json!({"UserName": user.name, "Password": user.password});
    let file = import_file(&t, &secret);
    t.ok(&[
        "secret",
        "create",
        "host/app",
        "--type",
        "ECS",
        "--target",
        "tofu",
        "--value-file",
        &file,
    ]);

    // Bad pins and options of other families are refused.
    let out = add_target(
        &t,
        "bad",
        &sshd,
        &["--host-key-fingerprint", "MD5:aa:bb"],
        "",
    );
    assert_refused(&out, 2, "SHA256", None);
    let out = add_target(&t, "bad", &sshd, &["--host-key", "ssh-ed25519 AAAA"], "");
    assert_refused(&out, 2, "OpenSSH public key", None);
    let out = add_target(
        &t,
        "bad",
        &sshd,
        &["--host-key", &key, "--trust-on-first-use"],
        "",
    );
    assert_refused(&out, 2, "not several", None);
    let out = t.run(&[
        "target",
        "add",
        "pg",
        "--kind",
        "postgres",
        "--url",
        "postgres://127.0.0.1:5432/x",
        "--admin-user",
        "postgres",
        "--admin-password",
        "x",
        "--host-key",
        &key,
    ]);
    assert_refused(
        &out,
        2,
        "--host-key is not an option for postgres targets",
        None,
    );

    // The host is re-keyed: every target refuses it, naming both fingerprints.
    sshd.stop();
    sshd.new_host_key();
    sshd.resume();
    let new_fingerprint = sshd.fingerprint();
    for name in ["by-key", "by-fingerprint", "tofu"] {
        let out = t.run(&["target", "check", name]);
        assert_refused(&out, 7, &new_fingerprint, None);
        assert_refused(&out, 7, &fingerprint, None);
    }
    let out = t.run(&["rotate", "host/app"]);
    assert_refused(&out, 6, "refusing to connect", None);
    assert_eq!(
        t.json(&["secret", "describe", "host/app"])["RotationStatus"],
        "Failed",
        "a changed host key is fatal"
    );
    assert_eq!(
        sshd.login_password(&user.name, &user.password).unwrap(),
        user.name,
        "the password did not change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_down_mid_rotation_is_retried_and_bad_input_is_refused() {
    let t = env(Backend::Sqlite).await;
    let mut sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    ok(add_target(
        &t,
        "host",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));
    for bad in ["a;b", "$(id)", "x y", "-rf", "1000"] {
        let v = serde_json::json!({"UserName": bad, "Password": "Whatever-Pass-1"});
        let out = t.run(&[
            "secret",
            "create",
            "host/bad",
            "--type",
            "ECS",
            "--target",
            "host",
            "--value-file",
            &import_file(&t, &v),
        ]);
        assert_refused(
            &out,
            2,
            "not a valid host user name",
            Some("Whatever-Pass-1"),
        );
    }
    let good = serde_json::json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/app",
        "--type",
        "ECS",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &good),
    ]);

    sshd.stop();
    let out = t.run(&["rotate", "host/app", "--backoff-base", "1s"]);
    assert_refused(&out, 6, "cannot connect", None);
    assert_eq!(
        t.json(&["secret", "describe", "host/app"])["RotationStatus"],
        "Retrying"
    );
    sshd.resume();
    assert_eq!(
        sshd.login_password(&user.name, &user.password).unwrap(),
        user.name,
        "current untouched"
    );
    rotate(&t, "host/app");
    let current = field(&value(&t, "host/app", "ACSCurrent"), "Password");
    assert_eq!(
        sshd.login_password(&user.name, &current).unwrap(),
        user.name
    );

    // Changed outside rotor: a fatal, clear message, and nothing changes.
    set_password(&user.name, "Changed-Outside-1");
    let out = t.run(&["rotate", "host/app"]);
    assert_refused(&out, 6, "current password of user", Some(&current));
    assert_eq!(
        t.json(&["secret", "describe", "host/app"])["RotationStatus"],
        "Failed"
    );
    assert_eq!(
        sshd.login_password(&user.name, "Changed-Outside-1")
            .unwrap(),
        user.name
    );
    // The target refusing the credential is a target error (7), not a store conflict.
    assert_refused(
        &t.run(&["rotate", "host/app", "--dry-run"]),
        7,
        "does not log in",
        None,
    );

    // The operator re-imports the password in use: checked by logging in, then rotation resumes.
    let other = HostUser::new(Sudo::No);
    let wrong_user = serde_json::json!({"UserName": other.name, "Password": other.password});
    let out = t.run(&[
        "secret",
        "import",
        "host/app",
        "--value-file",
        &import_file(&t, &wrong_user),
    ]);
    assert_refused(&out, 2, "is not this secret's", Some(&other.password));
    let changed = serde_json::json!({"UserName": user.name, "Password": "Changed-Outside-1"});
    t.ok(&[
        "secret",
        "import",
        "host/app",
        "--value-file",
        &import_file(&t, &changed),
    ]);
    let described = t.json(&["secret", "describe", "host/app"]);
    assert_eq!(
        described["RotationStatus"], "Idle",
        "the import ended the failed rotation: {described}"
    );
    assert!(
        !t.ok(&["secret", "versions", "host/app"])
            .contains("ACSPending"),
        "its pending version is unstaged"
    );
    t.ok(&["rotate", "host/app", "--dry-run"]);
    rotate(&t, "host/app");
    let current = field(&value(&t, "host/app", "ACSCurrent"), "Password");
    assert_eq!(
        sshd.login_password(&user.name, &current).unwrap(),
        user.name
    );
    // A host password cannot be rolled back: the previous one stopped working.
    assert_refused(
        &t.run(&["secret", "rollback", "host/app"]),
        2,
        "cannot be rolled back",
        None,
    );
}
