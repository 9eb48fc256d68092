//! The SSH family at its edges, against real OpenSSH: a login shell that prints on stdout
//! (a `~/.bashrc` that echoes) changes nothing rotor reads — a user's or the admin's; create mode never takes over the
//! target's admin or a superuser, and the admin secret can be re-imported; a host re-keyed on
//! purpose is re-pinned with `target update`.

use std::process::Command;

use serde_json::json;

use crate::ssh::{add_target, import_file, ok, rotate, value};
use crate::sshd::{keygen, run, set_password, HostUser, Sshd, Sudo};
use crate::support::{assert_refused, Backend, TestEnv};

async fn env(backend: Backend) -> TestEnv {
    let t = TestEnv::new(backend).await;
    t.ok(&["init"]);
    t
}

/// Gives `user` bash as its login shell and a `~/.bashrc` (and `~/.profile`) that print, as
/// conda, nvm or fortune do.
fn noisy_shell(user: &HostUser) {
    let out = run(Command::new("usermod").args(["-s", "/bin/bash", &user.name]));
    assert!(out.status.success(), "usermod: {out:?}");
    for file in [".bashrc", ".profile"] {
        std::fs::write(
            user.home().join(file),
            "echo \"Welcome from $HOME\"\necho 'rotor-output-0000 is not a marker'\nprintf 'no newline: '\necho 'on stderr' >&2\n",
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_shell_that_prints_changes_nothing_rotor_reads() {
    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    ok(add_target(
        &t,
        "host",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));

    // A password: imported (logged in and checked), then rotated with passwd twice.
    let user = HostUser::new(Sudo::No);
    noisy_shell(&user);
    let noisy = sshd.login_password(&user.name, &user.password).unwrap();
    assert!(
        noisy.contains("Welcome from") && noisy.ends_with(&user.name),
        "the shell prints before the command: {noisy}"
    );
    let first = json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/pw",
        "--type",
        "ECS",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &first),
    ]);
    for _ in 0..2 {
        rotate(&t, "host/pw");
    }
    let current = value(&t, "host/pw", "ACSCurrent");
    let login = sshd
        .login_password(&user.name, current["Password"].as_str().unwrap())
        .unwrap();
    assert!(login.ends_with(&user.name), "{login}");
    assert!(sshd.login_password(&user.name, &user.password).is_err());

    // A key pair: imported, rotated twice by the user itself.
    let keyed = HostUser::new(Sudo::No);
    noisy_shell(&keyed);
    let (public, private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    keyed.write_authorized_keys(&format!("{public}\n"));
    let pair = json!({"UserName": keyed.name, "PublicKey": public, "PrivateKey": private});
    t.ok(&[
        "secret",
        "create",
        "host/key",
        "--type",
        "ECS",
        "--sub-type",
        "SSHKey",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &pair),
    ]);
    for _ in 0..2 {
        rotate(&t, "host/key");
    }
    for stage in ["ACSCurrent", "ACSPrevious"] {
        let v = value(&t, "host/key", stage);
        let login = sshd
            .login_key(&keyed.name, v["PrivateKey"].as_str().unwrap())
            .unwrap();
        assert!(login.ends_with(&keyed.name), "{stage}: {login}");
    }
    assert!(sshd.login_key(&keyed.name, &private).is_err());

    // An admin whose shell prints too: it is still found to get root through sudo, and
    // create mode and chpasswd work through it.
    let admin = HostUser::new(Sudo::WithPassword);
    noisy_shell(&admin);
    let key = sshd.host_key();
    ok(add_target(
        &t,
        "ha",
        &sshd,
        &[
            "--host-key",
            &key,
            "--admin-user",
            &admin.name,
            "--admin-password-stdin",
        ],
        &admin.password,
    ));
    let report = t.ok(&["target", "check", "ha"]);
    assert!(report.contains("sudo (password)"), "{report}");
    let managed = HostUser::new(Sudo::No);
    noisy_shell(&managed);
    t.ok(&[
        "secret",
        "create",
        "host/managed",
        "--type",
        "ECS",
        "--target",
        "ha",
        "--user",
        &managed.name,
    ]);
    rotate(&t, "host/managed");
    let v = value(&t, "host/managed", "ACSCurrent");
    let login = sshd
        .login_password(&managed.name, v["Password"].as_str().unwrap())
        .unwrap();
    assert!(login.ends_with(&managed.name), "{login}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_mode_refuses_the_admin_and_uid_0_and_the_admin_secret_can_be_re_imported() {
    let t = env(Backend::Postgres).await;
    let sshd = Sshd::start();
    let admin = HostUser::new(Sudo::WithPassword);
    let alias = HostUser::new(Sudo::IsRoot);
    ok(add_target(
        &t,
        "ha",
        &sshd,
        &[
            "--host-key",
            &sshd.host_key(),
            "--admin-user",
            &admin.name,
            "--admin-password-stdin",
        ],
        &admin.password,
    ));
    let create = |user: &str| {
        t.run(&[
            "secret", "create", "h/self", "--type", "ECS", "--target", "ha", "--user", user,
        ])
    };
    assert_refused(&create(&admin.name), 2, "is the admin of target 'ha'", None);
    assert_refused(&create(&alias.name), 2, "uid 0", None);
    assert_refused(&create("root"), 2, "uid 0", None);
    assert_refused(&t.run(&["secret", "describe", "h/self"]), 3, "", None);
    assert!(
        sshd.login_password(&admin.name, &admin.password).is_ok(),
        "the admin's password did not change"
    );
    assert!(sshd.login_password(&alias.name, &alias.password).is_ok());

    // The admin's password is changed by hand: the target stops working until the new one
    // is re-imported, after rotor logged in with it as the admin.
    set_password(&admin.name, "Changed-By-Hand-1x");
    assert_refused(&t.run(&["target", "check", "ha"]), 7, "", None);
    let wrong = json!({"UserName": admin.name, "Password": "Not-The-Password-2"});
    let out = t.run(&[
        "secret",
        "import",
        "acs/target/ha/admin",
        "--value-file",
        &import_file(&t, &wrong),
    ]);
    assert_refused(&out, 2, "does not work", Some("Not-The-Password-2"));
    let right = json!({"UserName": admin.name, "Password": "Changed-By-Hand-1x"});
    t.ok(&[
        "secret",
        "import",
        "acs/target/ha/admin",
        "--value-file",
        &import_file(&t, &right),
    ]);
    let report = t.ok(&["target", "check", "ha"]);
    assert!(report.contains("sudo (password)"), "{report}");
    // Create mode works for an ordinary user again.
    let user = HostUser::new(Sudo::No);
    t.ok(&[
        "secret", "create", "h/app", "--type", "ECS", "--target", "ha", "--user", &user.name,
    ]);
    let v = value(&t, "h/app", "ACSCurrent");
    assert!(sshd
        .login_password(&user.name, v["Password"].as_str().unwrap())
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_keyed_host_is_re_pinned_with_target_update() {
    let t = env(Backend::Sqlite).await;
    let mut sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    ok(add_target(
        &t,
        "h",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));
    let first = json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/app",
        "--type",
        "ECS",
        "--target",
        "h",
        "--value-file",
        &import_file(&t, &first),
    ]);
    rotate(&t, "host/app");

    // Re-keyed on purpose: rotations fail on the pin, and say how to re-pin.
    sshd.stop();
    sshd.new_host_key();
    sshd.resume();
    let out = t.run(&["rotate", "host/app"]);
    assert_refused(&out, 6, "rotor target update", None);
    let url = sshd.url();

    // What may not change through update is refused; a check that fails changes nothing.
    let out = t.run(&["target", "update", "h", "--admin-user", "root"]);
    assert_refused(&out, 2, "--admin-user cannot be changed", None);
    let out = t.run(&["target", "update", "h", "--url", "ssh://127.0.0.1:1"]);
    assert_refused(&out, 7, "nothing stored", None);
    assert_eq!(t.json(&["target", "list"])[0]["TargetUrl"], url.as_str());

    // Re-pinned: the secrets on it rotate again.
    let key = sshd.host_key();
    let out = t.ok(&["target", "update", "h", "--host-key", &key]);
    assert!(out.contains("updated target 'h'"), "{out}");
    t.ok(&["target", "check", "h"]);
    rotate(&t, "host/app");
    rotate(&t, "host/app");
    let v = value(&t, "host/app", "ACSCurrent");
    assert!(sshd
        .login_password(&user.name, v["Password"].as_str().unwrap())
        .is_ok());

    // Trust on first use again, on a new port: the fingerprint is printed.
    sshd.stop();
    sshd.new_host_key();
    sshd.resume();
    let out = t.run(&[
        "target",
        "update",
        "h",
        "--url",
        &url,
        "--trust-on-first-use",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&sshd.fingerprint()), "{stderr}");
    rotate(&t, "host/app");
}

/// Found by a hostile run: the key given with `--admin-key-file` was never retired — after two
/// rotations of the admin secret it still logged in as the admin. It is the secret's first
/// version, adopted like an imported key: gone once it is neither current nor previous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_given_at_target_add_is_retired_by_rotation() {
    use std::os::unix::fs::PermissionsExt;
    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    let admin = HostUser::new(Sudo::WithoutPassword);
    let (public, private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    admin.write_authorized_keys(&format!("{public}\n"));
    let key_file = t.dir.path().join("admin_key");
    std::fs::write(&key_file, private.as_bytes()).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(add_target(
        &t,
        "keyed",
        &sshd,
        &[
            "--host-key",
            &sshd.host_key(),
            "--admin-user",
            &admin.name,
            "--admin-key-file",
            &key_file.display().to_string(),
        ],
        "",
    ));
    let secret = "acs/target/keyed/admin";
    rotate(&t, secret);
    assert_eq!(
        sshd.login_key(&admin.name, &private).unwrap(),
        admin.name,
        "the given key is ACSPrevious after one rotation: it still logs in"
    );
    rotate(&t, secret);
    assert!(
        sshd.login_key(&admin.name, &private).is_err(),
        "two rotations later the given key no longer logs in"
    );
    let current = value(&t, secret, "ACSCurrent");
    let current_private = current["PrivateKey"].as_str().unwrap();
    assert_eq!(
        sshd.login_key(&admin.name, current_private).unwrap(),
        admin.name
    );
    assert!(t
        .ok(&["target", "check", "keyed"])
        .contains("sudo (no password)"));
}
