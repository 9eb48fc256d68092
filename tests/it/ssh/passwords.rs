//! Passwords: through `passwd` without an admin, and through `chpasswd` as root or with sudo.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_rotate_through_passwd_without_an_admin_10_times() {
    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    ok(add_target(
        &t,
        "host",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));

    // A wrong password is refused and nothing is stored.
    let wrong = serde_json::json!({"UserName": user.name, "Password": "Not-the-password-1"});
    let out = t.run(&[
        "secret",
        "create",
        "host/app",
        "--type",
        "ECS",
        "--sub-type",
        "Password",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &wrong),
    ]);
    assert_refused(&out, 2, "does not log in", Some("Not-the-password-1"));
    assert_refused(&t.run(&["secret", "describe", "host/app"]), 3, "", None);

    let good = serde_json::json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/app",
        "--type",
        "ECS",
        "--sub-type",
        "Password",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &good),
    ]);
    let mut older: Vec<String> = vec![];
    let mut current = user.password.clone();
    for round in 1..=10 {
        rotate(&t, "host/app");
        older.push(current);
        let v = value(&t, "host/app", "ACSCurrent");
        current = field(&v, "Password");
        assert_eq!(field(&v, "UserName"), user.name);
        assert_eq!(current.len(), 32, "32 characters by default");
        assert!(
            !current.chars().any(|c| ":/@\"'\\ ".contains(c)),
            "safe alphabet"
        );
        assert_eq!(
            sshd.login_password(&user.name, &current).unwrap(),
            user.name,
            "round {round}: ACSCurrent logs in"
        );
        let previous = older.last().unwrap();
        assert!(
            sshd.login_password(&user.name, previous).is_err(),
            "round {round}: the old password no longer does"
        );
    }
    // A second secret for the user's password is refused: each would lock the other out.
    let again = serde_json::json!({"UserName": user.name, "Password": current});
    let out = t.run(&[
        "secret",
        "create",
        "host/again",
        "--type",
        "ECS",
        "--sub-type",
        "Password",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &again),
    ]);
    assert_refused(
        &out,
        4,
        "is rotated by secret 'host/app' already",
        Some(&current),
    );
    older.push(current);
    let log = sshd.log();
    assert!(
        log.contains("Accepted password") && log.contains("entering command"),
        "sshd's debug log is on and shows every command run"
    );
    for password in &older {
        assert!(
            !log.contains(password.as_str()),
            "sshd's debug log never shows a password"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_set_passwords_with_chpasswd_as_root_or_through_sudo() {
    let t = env(Backend::Postgres).await;
    let sshd = Sshd::start();
    let sudoer = HostUser::new(Sudo::WithPassword);
    let root = HostUser::new(Sudo::IsRoot);
    let plain = HostUser::new(Sudo::No);
    let (root_public, root_private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    root.write_authorized_keys(&format!("{root_public}\n"));
    let key_file = write_file(t.dir.path(), "root_key", root_private.as_bytes());
    let host_key = sshd.host_key();

    // A key file others may read is refused, as OpenSSH refuses it.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key_path = key_file.display().to_string();
    let args = [
        "--host-key",
        &host_key,
        "--admin-user",
        &root.name,
        "--admin-key-file",
        &key_path,
    ];
    let out = add_target(&t, "as-root", &sshd, &args, "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod"),
        "{out:?}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(add_target(&t, "as-root", &sshd, &args, ""));
    let out = add_target(
        &t,
        "with-sudo",
        &sshd,
        &[
            "--host-key",
            &host_key,
            "--admin-user",
            &sudoer.name,
            "--admin-password-stdin",
        ],
        &sudoer.password,
    );
    assert!(ok(out).contains("acs/target/with-sudo/admin"));
    let report = t.ok(&["target", "check", "as-root"]);
    assert!(report.contains("(root)"), "{report}");
    let report = t.ok(&["target", "check", "with-sudo"]);
    assert!(report.contains("sudo (password)"), "{report}");
    // A user without sudo is no admin: adding it is refused, and check says so.
    let mut args = vec![
        "--host-key",
        &host_key,
        "--admin-user",
        &plain.name,
        "--admin-password-stdin",
    ];
    let out = add_target(&t, "no-sudo", &sshd, &args, &plain.password);
    assert_refused(
        &out,
        7,
        "cannot run commands as root",
        Some(&plain.password),
    );
    args.push("--no-check");
    ok(add_target(&t, "no-sudo", &sshd, &args, &plain.password));
    assert_refused(
        &t.run(&["target", "check", "no-sudo"]),
        7,
        "cannot run commands as root",
        None,
    );

    let mut seen = vec![sudoer.password.clone()];
    for target in ["as-root", "with-sudo"] {
        let user = HostUser::new(Sudo::No);
        let secret = format!("host/{target}");
        // Create mode: rotor makes the first password and installs it with the admin.
        t.ok(&[
            "secret",
            "create",
            &secret,
            "--type",
            "ECS",
            "--target",
            target,
            "--user",
            &user.name,
            "--password-length",
            "40",
        ]);
        let first = field(&value(&t, &secret, "ACSCurrent"), "Password");
        assert_eq!(first.len(), 40);
        assert_eq!(sshd.login_password(&user.name, &first).unwrap(), user.name);
        assert!(sshd.login_password(&user.name, &user.password).is_err());
        seen.push(first.clone());
        let mut previous = first;
        for _ in 0..3 {
            rotate(&t, &secret);
            let current = field(&value(&t, &secret, "ACSCurrent"), "Password");
            assert_eq!(
                sshd.login_password(&user.name, &current).unwrap(),
                user.name
            );
            assert!(sshd.login_password(&user.name, &previous).is_err());
            seen.push(current.clone());
            previous = current;
        }
    }
    // The sudo admin's own password rotates too (it is an ECS secret of its own).
    rotate(&t, "acs/target/with-sudo/admin");
    let admin = field(
        &value(&t, "acs/target/with-sudo/admin", "ACSCurrent"),
        "Password",
    );
    assert_eq!(
        sshd.login_password(&sudoer.name, &admin).unwrap(),
        sudoer.name
    );
    t.ok(&["target", "check", "with-sudo"]);
    seen.push(admin);
    // chpasswd and sudo read passwords on stdin: sshd's log of every command shows none.
    let log = sshd.log();
    assert!(
        log.contains("entering command printf") && log.contains("exec sudo -S"),
        "commands are logged"
    );
    for password in &seen {
        assert!(
            !log.contains(password.as_str()),
            "sshd's log shows a password"
        );
    }
}
