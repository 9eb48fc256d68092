//! Rotations killed mid-step (the CLI, or a worker) resume without locking the user out.

use super::*;

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
        // Kill windows of 40–440 ms, growing after every 20 attempts so that a loaded machine,
        // where one rotation outlasts the longest window, still lets one finish.
        let window = (40 + (attempt * 37) % 400) * (1 + attempt / 20);
        std::thread::sleep(Duration::from_millis(window));
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
