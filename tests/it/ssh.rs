//! The SSH (ECS) family against real OpenSSH: each test starts its own `sshd` on a loopback
//! port with its own host key and config, and creates its own Linux users (with and without
//! sudo). Logins are checked with the OpenSSH client (`ssh`, and `sshpass` for passwords), not
//! with rotor's own code.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::sshd::{keygen, random_word, run, set_password, HostUser, Sshd, Sudo};
use crate::support::{assert_refused, write_file, Backend, TestEnv};

/// `rotor target add NAME --kind ssh --url URL ARGS…`, with `stdin` on standard input.
pub(crate) fn add_target(
    t: &TestEnv,
    name: &str,
    sshd: &Sshd,
    args: &[&str],
    stdin: &str,
) -> Output {
    let url = sshd.url();
    let mut all = vec!["target", "add", name, "--kind", "ssh", "--url", &url];
    all.extend_from_slice(args);
    t.run_with_stdin(&all, stdin)
}

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A stage's value of a secret.
pub(crate) fn value(t: &TestEnv, secret: &str, stage: &str) -> Value {
    let out = t.json(&["secret", "get", secret, "--stage", stage]);
    serde_json::from_str(out["SecretData"].as_str().expect("text value")).unwrap()
}

fn field(v: &Value, name: &str) -> String {
    v[name].as_str().unwrap().to_owned()
}

pub(crate) fn import_file(t: &TestEnv, v: &Value) -> String {
    write_file(
        t.dir.path(),
        &format!("v{}.json", random_word(6)),
        v.to_string().as_bytes(),
    )
    .display()
    .to_string()
}

/// A test's store, initialised.
async fn env(backend: Backend) -> TestEnv {
    let t = TestEnv::new(backend).await;
    t.ok(&["init"]);
    t
}

/// `rotor rotate SECRET` (trace logs on), which must succeed and whose output and logs show
/// neither the new nor the old credential.
pub(crate) fn rotate(t: &TestEnv, secret: &str) -> String {
    let out = t.run(&["rotate", secret]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rotate {secret}: {text}");
    for stage in ["ACSCurrent", "ACSPrevious"] {
        let v = value(t, secret, stage);
        for secret_field in ["Password", "PrivateKey"] {
            if let Some(s) = v[secret_field].as_str() {
                // A private key: one line of its body is enough to find it.
                let needle = s.lines().nth(2).unwrap_or(s);
                assert!(
                    !text.contains(needle),
                    "rotate's output shows the {stage} {secret_field}"
                );
            }
        }
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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

/// Lines rotor must never touch, in the user's authorized_keys from the start.
fn unrelated_lines(dir: &Path) -> String {
    let (a, _) = keygen(dir, &["-t", "ed25519"]);
    let (b, _) = keygen(dir, &["-t", "ecdsa"]);
    format!("# managed by hand\n\nfrom=\"10.0.0.1\",no-pty {a}\n{b}   extra   spaces\n")
}

fn assert_file_kept(user: &HostUser, unrelated: &str) {
    let content = std::fs::read_to_string(user.authorized_keys()).unwrap();
    let meta = std::fs::metadata(user.authorized_keys()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "mode kept");
    let uid = run(Command::new("id").args(["-u", &user.name]));
    assert_eq!(
        meta.uid().to_string(),
        String::from_utf8_lossy(&uid.stdout).trim(),
        "owner kept"
    );
    assert!(
        content.starts_with(unrelated),
        "unrelated lines byte for byte:\n{content}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pairs_rotate_with_current_and_previous_working_and_others_untouched() {
    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    let admin = HostUser::new(Sudo::WithoutPassword);
    let user = HostUser::new(Sudo::No);
    let unrelated = unrelated_lines(t.dir.path());
    user.write_authorized_keys(&unrelated);
    let (admin_public, admin_private) = keygen(t.dir.path(), &["-t", "rsa", "-b", "3072"]);
    admin.write_authorized_keys(&format!("{admin_public}\n"));
    let key_file = write_file(t.dir.path(), "admin_key", admin_private.as_bytes());
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(add_target(
        &t,
        "host",
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
    assert!(t
        .ok(&["target", "check", "host"])
        .contains("sudo (no password)"));

    // Create mode: rotor generates the first pair (Ed25519) and installs it with the admin.
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
        "--user",
        &user.name,
    ]);
    let first = value(&t, "host/key", "ACSCurrent");
    assert!(field(&first, "PublicKey").starts_with("ssh-ed25519 "));
    assert!(field(&first, "PrivateKey").starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert_eq!(
        sshd.login_key(&user.name, &field(&first, "PrivateKey"))
            .unwrap(),
        user.name
    );
    assert_file_kept(&user, &unrelated);

    let mut keys = vec![field(&first, "PrivateKey")];
    for round in 1..=10 {
        rotate(&t, "host/key");
        let current = value(&t, "host/key", "ACSCurrent");
        keys.push(field(&current, "PrivateKey"));
        let n = keys.len();
        assert_eq!(
            sshd.login_key(&user.name, &keys[n - 1]).unwrap(),
            user.name,
            "round {round}: ACSCurrent logs in"
        );
        assert_eq!(
            sshd.login_key(&user.name, &keys[n - 2]).unwrap(),
            user.name,
            "round {round}: ACSPrevious logs in"
        );
        for (i, old) in keys[..n - 2].iter().enumerate() {
            assert!(
                sshd.login_key(&user.name, old).is_err(),
                "round {round}: key {i} no longer logs in"
            );
        }
        assert_file_kept(&user, &unrelated);
        let content = std::fs::read_to_string(user.authorized_keys()).unwrap();
        let ours: Vec<&str> = content
            .lines()
            .filter(|l| l.contains(" rotor:host/key:"))
            .collect();
        assert_eq!(ours.len(), 2, "exactly current and previous:\n{content}");
    }
    let content = std::fs::read_to_string(user.authorized_keys()).unwrap();
    let current_version = t.json(&["secret", "get", "host/key"])["VersionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        content.contains(&format!(" rotor:host/key:{current_version}\n")),
        "rotor's lines name the secret and version:\n{content}"
    );
    assert!(
        t.ok(&["secret", "rollback", "host/key"])
            .contains("ACSCurrent"),
        "the previous key still works, so it can be rolled back to"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_keys_rotate_without_an_admin_and_the_adopted_key_is_retired() {
    let t = env(Backend::Postgres).await;
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    let unrelated = unrelated_lines(t.dir.path());
    let (public, private) = keygen(t.dir.path(), &["-t", "ecdsa", "-b", "384"]);
    user.write_authorized_keys(&format!("{unrelated}{public}\n"));
    ok(add_target(
        &t,
        "host",
        &sshd,
        &["--host-key-fingerprint", &sshd.fingerprint()],
        "",
    ));
    assert!(t
        .ok(&["target", "check", "host"])
        .contains("change their own"));

    // A pair whose halves do not match, or a key that does not log in: refused, nothing stored.
    let (other_public, other_private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    let mismatched = serde_json::json!({"UserName": user.name, "PublicKey": other_public, "PrivateKey": private});
    let out = t.run(&[
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
        &import_file(&t, &mismatched),
    ]);
    assert_refused(&out, 2, "does not belong", None);
    let stranger = serde_json::json!({"UserName": user.name, "PublicKey": other_public, "PrivateKey": other_private});
    let out = t.run(&[
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
        &import_file(&t, &stranger),
    ]);
    assert_refused(&out, 2, "does not log in", None);
    // Create mode needs an admin.
    let out = t.run(&[
        "secret",
        "create",
        "host/key",
        "--type",
        "ECS",
        "--sub-type",
        "SSHKey",
        "--target",
        "host",
        "--user",
        &user.name,
    ]);
    assert_refused(&out, 2, "no admin credential", None);

    let adopted =
        serde_json::json!({"UserName": user.name, "PublicKey": public, "PrivateKey": private});
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
        &import_file(&t, &adopted),
        "--key-type",
        "rsa-3072",
    ]);
    rotate(&t, "host/key");
    let first = value(&t, "host/key", "ACSCurrent");
    assert!(
        field(&first, "PublicKey").starts_with("ssh-rsa "),
        "--key-type"
    );
    assert_eq!(
        sshd.login_key(&user.name, &private).unwrap(),
        user.name,
        "adopted key is ACSPrevious"
    );
    rotate(&t, "host/key");
    assert!(
        sshd.login_key(&user.name, &private).is_err(),
        "the adopted key is retired once it is neither current nor previous"
    );
    assert_eq!(
        sshd.login_key(&user.name, &field(&first, "PrivateKey"))
            .unwrap(),
        user.name
    );
    assert_file_kept(&user, &unrelated);
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

/// Target `host` (pinned by key, no admin) with `host/pw` and `host/key`, imported from `user`'s
/// password and a fresh Ed25519 key pair.
fn both_secrets(t: &TestEnv, sshd: &Sshd, user: &HostUser) {
    ok(add_target(
        t,
        "host",
        sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));
    let good = serde_json::json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/pw",
        "--type",
        "ECS",
        "--target",
        "host",
        "--value-file",
        &import_file(t, &good),
    ]);
    let (public, private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    user.write_authorized_keys(&format!("{public}\n"));
    let pair =
        serde_json::json!({"UserName": user.name, "PublicKey": public, "PrivateKey": private});
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
        &import_file(t, &pair),
    ]);
}

/// Whether the secret's stored current credential, or its pending one if it has one, logs in.
fn current_or_pending_logs_in(t: &TestEnv, secret: &str, logs_in: impl Fn(&Value) -> bool) -> bool {
    if logs_in(&value(t, secret, "ACSCurrent")) {
        return true;
    }
    let pending = t.run(&["--json", "secret", "get", secret, "--stage", "ACSPending"]);
    pending.status.success() && {
        let v: Value = serde_json::from_slice(&pending.stdout).unwrap();
        logs_in(&serde_json::from_str(v["SecretData"].as_str().unwrap()).unwrap())
    }
}

/// Kills `rotor rotate` at spread-out instants until a rotation completes; after every kill the
/// user can still log in with the stored current or pending credential.
fn rotate_through_kills(
    t: &TestEnv,
    secret: &str,
    steps: &mut Vec<String>,
    logs_in: impl Fn(&Value) -> bool,
) -> usize {
    let mut kills = 0;
    for attempt in 0..60u64 {
        let mut child = t
            .rotor()
            .args(["rotate", secret, "--backoff-base", "1s"])
            .env("ROTOR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(40 + (attempt * 37) % 400));
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                return kills;
            }
            // Retrying after an earlier kill: go on.
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let step = &t.json(&["secret", "describe", secret])["RotationStep"];
        steps.push(step.as_str().unwrap_or("none").to_owned());
        assert!(
            current_or_pending_logs_in(t, secret, &logs_in),
            "{secret} after kill {kills}: neither the current nor the pending credential logs in"
        );
    }
    panic!("the rotation never completed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_during_set_resumes_without_locking_the_user_out() {
    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    both_secrets(&t, &sshd, &user);
    let (mut kills, mut steps) = (0, vec![]);
    for _ in 0..3 {
        kills += rotate_through_kills(&t, "host/pw", &mut steps, |v| {
            sshd.login_password(&field(v, "UserName"), &field(v, "Password"))
                .is_ok()
        });
        let current = value(&t, "host/pw", "ACSCurrent");
        assert!(sshd
            .login_password(&user.name, &field(&current, "Password"))
            .is_ok());
        kills += rotate_through_kills(&t, "host/key", &mut steps, |v| {
            sshd.login_key(&field(v, "UserName"), &field(v, "PrivateKey"))
                .is_ok()
        });
        let current = value(&t, "host/key", "ACSCurrent");
        assert!(sshd
            .login_key(&user.name, &field(&current, "PrivateKey"))
            .is_ok());
    }
    eprintln!("{kills} kills; the step each left next: {steps:?}");
    assert!(
        steps.iter().any(|s| s == "set"),
        "some kills landed in set: {steps:?}"
    );
}

/// The current version id of a secret.
fn version_of(t: &TestEnv, secret: &str) -> String {
    t.json(&["secret", "get", secret])["VersionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_rotation_leaves_it_to_the_next_worker_without_a_lockout() {
    let t = env(Backend::Postgres).await;
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    both_secrets(&t, &sshd, &user);
    let before = [version_of(&t, "host/pw"), version_of(&t, "host/key")];
    for secret in ["host/pw", "host/key"] {
        t.ok(&[
            "rotation",
            "set",
            secret,
            "--interval",
            "1h",
            "--rotate-now",
        ]);
    }
    let logs_in = |secret: &str, v: &Value| match secret {
        "host/pw" => sshd
            .login_password(&field(v, "UserName"), &field(v, "Password"))
            .is_ok(),
        _ => sshd
            .login_key(&field(v, "UserName"), &field(v, "PrivateKey"))
            .is_ok(),
    };
    let worker = || {
        t.rotor()
            .args(["worker", "--lease", "2s", "--poll", "100ms"])
            .env("ROTOR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let done = |t: &TestEnv| {
        ["host/pw", "host/key"].iter().zip(&before).all(|(s, v)| {
            version_of(t, s) != *v && t.json(&["secret", "describe", s])["RotationStatus"] == "Idle"
        })
    };
    let (mut kills, mut steps) = (0, vec![]);
    for attempt in 0..12u64 {
        let mut child = worker();
        std::thread::sleep(Duration::from_millis(120 + attempt * 45));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        for secret in ["host/pw", "host/key"] {
            let step = &t.json(&["secret", "describe", secret])["RotationStep"];
            steps.push(format!("{secret}:{}", step.as_str().unwrap_or("-")));
            assert!(
                current_or_pending_logs_in(&t, secret, |v| logs_in(secret, v)),
                "{secret} after kill {kills}: neither current nor pending logs in"
            );
        }
        if done(&t) {
            break;
        }
        // The killed worker's lease runs out; the next worker takes the job over.
        std::thread::sleep(Duration::from_millis(2100));
    }
    // A last worker finishes whatever is left, then stops on SIGTERM.
    let mut child = worker();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done(&t) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotations never completed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(
        child.wait().unwrap().success(),
        "the worker drains and exits 0"
    );
    for secret in ["host/pw", "host/key"] {
        assert!(
            logs_in(secret, &value(&t, secret, "ACSCurrent")),
            "{secret}"
        );
    }
    assert!(logs_in("host/key", &value(&t, "host/key", "ACSPrevious")));
    eprintln!("{kills} workers killed; steps left next: {steps:?}");
    assert!(
        steps
            .iter()
            .any(|s| s.ends_with(":set") || s.ends_with(":test")),
        "some worker was killed mid-rotation: {steps:?}"
    );
}
