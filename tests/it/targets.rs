//! `rotor target add` checks the admin credential before it stores anything (one login or
//! signed call, as `target check` makes), for every kind of target; `--no-check` stores a
//! target that is down without contacting it. `rotor target update` changes a database
//! target's address and TLS settings the same way (the SSH host key: `ssh_edges.rs`).

use crate::databases::{add_target_with, scram_port};
use crate::ram::{Emulator, ADMIN_ID};
use crate::sshd::{HostUser, Sshd, Sudo};
use crate::support::{assert_refused, Backend, TestEnv};

async fn env(backend: Backend) -> TestEnv {
    let t = TestEnv::new(backend).await;
    t.ok(&["init"]);
    t
}

/// Nothing of target `name` was stored: no target, no admin secret.
fn nothing_stored(t: &TestEnv, name: &str) {
    let listed = t.json(&["target", "list"]);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["TargetName"] == name),
        "{listed}"
    );
    let admin = format!("acs/target/{name}/admin");
    assert_refused(&t.run(&["secret", "describe", &admin]), 3, "", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_admin_that_does_not_log_in_is_refused_unless_no_check() {
    let t = env(Backend::Sqlite).await;
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    let out = add_target_with(
        &t,
        "pg",
        "postgres",
        &url,
        "postgres",
        "Wrong-Admin-9x",
        &[],
    );
    assert_refused(&out, 7, "nothing stored", Some("Wrong-Admin-9x"));
    nothing_stored(&t, "pg");
    // A server that is down: refused, or stored as asked with --no-check.
    let down = "postgres://127.0.0.1:1/postgres";
    let out = add_target_with(&t, "pg", "postgres", down, "postgres", "Any-Pass-1", &[]);
    assert_refused(&out, 7, "--no-check", Some("Any-Pass-1"));
    nothing_stored(&t, "pg");
    let out = add_target_with(
        &t,
        "pg",
        "postgres",
        down,
        "postgres",
        "Any-Pass-1",
        &["--no-check"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_refused(&t.run(&["target", "check", "pg"]), 7, "", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ram_admin_pair_that_does_not_sign_is_refused_unless_no_check() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    let add = |secret: &str, extra: &[&str]| {
        let endpoint = emulator.endpoint();
        let mut args = vec![
            "target",
            "add",
            "cloud",
            "--kind",
            "ram",
            "--url",
            &endpoint,
            "--admin-access-key-id",
            ADMIN_ID,
            "--admin-access-key-secret-stdin",
        ];
        args.extend_from_slice(extra);
        t.run_with_stdin(&args, secret)
    };
    let out = add("Not-The-Admin-Secret-1", &[]);
    assert_refused(
        &out,
        7,
        "SignatureDoesNotMatch",
        Some("Not-The-Admin-Secret-1"),
    );
    nothing_stored(&t, "cloud");
    let out = add("Not-The-Admin-Secret-1", &["--no-check"]);
    assert!(out.status.success(), "{out:?}");
    assert_refused(&t.run(&["target", "check", "cloud"]), 7, "", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_admin_that_does_not_log_in_or_a_host_that_is_down_is_refused_unless_no_check() {
    let t = env(Backend::Sqlite).await;
    let sshd = Sshd::start();
    let admin = HostUser::new(Sudo::WithPassword);
    let key = sshd.host_key();
    let args = [
        "--host-key",
        key.as_str(),
        "--admin-user",
        &admin.name,
        "--admin-password-stdin",
    ];
    let out = crate::ssh::add_target(&t, "h", &sshd, &args, "Wrong-Admin-Pass-7");
    assert_refused(&out, 7, "nothing stored", Some("Wrong-Admin-Pass-7"));
    nothing_stored(&t, "h");
    crate::ssh::ok(crate::ssh::add_target(
        &t,
        "h",
        &sshd,
        &args,
        &admin.password,
    ));
    // A host that is down, without an admin: the pin cannot be checked.
    let down = [
        "target",
        "add",
        "down",
        "--kind",
        "ssh",
        "--url",
        "ssh://127.0.0.1:1",
        "--host-key",
        key.as_str(),
    ];
    assert_refused(&t.run(&down), 7, "nothing stored", None);
    nothing_stored(&t, "down");
    let mut down = down.to_vec();
    down.push("--no-check");
    t.ok(&down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_targets_tls_settings_change_with_target_update_checked_first() {
    let t = env(Backend::Sqlite).await;
    let password = crate::databases::scram_url()
        .split(':')
        .nth(2)
        .and_then(|s| s.split('@').next())
        .unwrap()
        .to_owned();
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    let out = add_target_with(&t, "pg", "postgres", &url, "postgres", &password, &[]);
    assert!(out.status.success(), "{out:?}");
    // Another CA than the server's: the check fails and nothing changes.
    let mistrusted =
        format!("{url}?sslmode=verify-ca&sslrootcert=/etc/ssl/certs/ca-certificates.crt");
    let out = t.run(&["target", "update", "pg", "--url", &mistrusted]);
    assert_refused(&out, 7, "nothing stored", Some(&password));
    assert_eq!(t.json(&["target", "list"])[0]["TargetUrl"], url.as_str());
    // TLS required: checked, stored; the admin secret is untouched.
    let admin_before = t.json(&["secret", "get", "acs/target/pg/admin"])["VersionId"].clone();
    let tls = format!("{url}?sslmode=require");
    t.ok(&["target", "update", "pg", "--url", &tls]);
    assert_eq!(t.json(&["target", "list"])[0]["TargetUrl"], tls.as_str());
    assert_eq!(
        t.json(&["secret", "get", "acs/target/pg/admin"])["VersionId"],
        admin_before
    );
    t.ok(&["target", "check", "pg"]);
    // The admin credential is not something update changes.
    let out = t.run(&["target", "update", "pg", "--admin-user", "other"]);
    assert_refused(&out, 2, "cannot be changed with target update", None);
    let out = t.run(&["target", "update", "pg"]);
    assert_refused(&out, 2, "give what changes", None);
}
