//! Key pairs: current and previous both log in, other lines stay, imported keys are adopted
//! and retired.

use super::*;

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

    // The user's password is another secret's to rotate, beside the key pair's.
    let password = serde_json::json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/password",
        "--type",
        "ECS",
        "--sub-type",
        "Password",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &password),
    ]);

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

/// In one process (a worker, the API server) an edit of a file rotor saw lately is one
/// command, whose write the host refuses when the file changed since; then rotor reads it and
/// edits what is there. Lines added by hand between rotations are kept, and each rotation
/// still leaves exactly current and previous logging in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_added_by_hand_between_rotations_in_one_process_are_kept() {
    use rotor::engine::{Engine, EngineConfig, Outcome};
    use rotor::model::SecretName;
    use rotor::store::{OpenMode, Store};

    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    let (public, private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    user.write_authorized_keys(&format!("{public}\n"));
    ok(add_target(
        &t,
        "host",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));
    let key =
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
        &import_file(&t, &key),
    ]);
    let store = Store::open(&t.config(), OpenMode::Existing).await.unwrap();
    let engine = Engine::new(store, rotor::builtin_rotators(), EngineConfig::default());
    let name = SecretName::parse("host/key").unwrap();
    let mut keys = vec![private];
    let mut by_hand = vec![];
    for round in 1..=5 {
        if round % 2 == 0 {
            // Between two rotations of this process: rotor's last view of the file is stale.
            let (extra, _) = keygen(t.dir.path(), &["-t", "ed25519"]);
            let content = std::fs::read_to_string(user.authorized_keys()).unwrap();
            user.write_authorized_keys(&format!("{content}{extra} by-hand-{round}\n"));
            by_hand.push(format!("{extra} by-hand-{round}\n"));
        }
        let outcome = engine
            .rotate_now(&name, &tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Rotated { .. }),
            "round {round}: {outcome:?}"
        );
        keys.push(field(&value(&t, "host/key", "ACSCurrent"), "PrivateKey"));
        let content = std::fs::read_to_string(user.authorized_keys()).unwrap();
        for line in &by_hand {
            assert!(
                content.contains(line.as_str()),
                "round {round}: {line} kept:\n{content}"
            );
        }
        let n = keys.len();
        for (i, k) in keys.iter().enumerate() {
            let works = sshd.login_key(&user.name, k).is_ok();
            assert_eq!(
                works,
                i + 2 >= n,
                "round {round}: key {i} of {n} logs in: {works}"
            );
        }
    }
}
