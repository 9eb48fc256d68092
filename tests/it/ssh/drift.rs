//! Drift on an SSH host: a key pair's public key removed from `authorized_keys` by hand is drift
//! (exit 6); a host whose sshd is stopped is not (exit 7).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_by_hand_is_drift_and_a_stopped_host_is_not() {
    let t = env(Backend::Sqlite).await;
    let mut sshd = Sshd::start();
    let admin = HostUser::new(Sudo::WithoutPassword);
    let user = HostUser::new(Sudo::No);
    let (admin_public, admin_private) = keygen(t.dir.path(), &["-t", "ed25519"]);
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
    let (code, body) = crate::drift::verdict(&t, &["secret", "verify", "host/key"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(0), Some("Works")),
        "{body}"
    );
    // Someone empties the user's authorized_keys by hand.
    user.write_authorized_keys("");
    let (code, body) = crate::drift::verdict(&t, &["secret", "verify", "host/key"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(6), Some("Drift")),
        "{body}"
    );
    // The host goes down: that says nothing about the key.
    sshd.stop();
    let (code, body) = crate::drift::verdict(&t, &["secret", "verify", "host/key"]);
    assert_eq!(
        (code, body["Verdict"].as_str()),
        (Some(7), Some("Unreachable")),
        "{body}"
    );
}
