//! A rotation killed after CreateAccessKey leaves no orphan; the worker disables the previous
//! key once its grace has passed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_after_create_access_key_leaves_no_orphan() {
    let t = env(Backend::Sqlite).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "batch")])
        .await
        .unwrap();
    assert!(add_ram_target(&t, "cloud", &emulator, &[]).status.success());
    t.ok(&[
        "secret",
        "create",
        "ram/batch",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "batch",
    ]);
    t.ok(&["rotate", "ram/batch"]);
    assert_eq!(keys_of(&emulator, "batch").await.len(), 2);

    // The cloud makes the key, then answers slowly: the worker is killed before it stores it.
    t.ok(&[
        "rotation",
        "set",
        "ram/batch",
        "--interval",
        "7d",
        "--rotate-now",
    ]);
    emulator.slow_create(5000).await;
    let worker = || {
        t.rotor()
            .args(["worker", "--lease", "2s", "--poll", "100ms"])
            .env("ROTOR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = worker();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let current = pair(&t, "ram/batch", "ACSCurrent");
    let previous = pair(&t, "ram/batch", "ACSPrevious");
    loop {
        // Previous deleted, a new key made: current plus the key nobody holds yet.
        let keys = keys_of(&emulator, "batch").await;
        if keys.len() == 2 && !keys.contains(&previous.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CreateAccessKey never ran: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let orphan: Vec<String> = keys_of(&emulator, "batch")
        .await
        .into_iter()
        .filter(|k| *k != current.0)
        .collect();
    assert_eq!(orphan.len(), 1, "one key nobody holds");
    assert_eq!(
        pair(&t, "ram/batch", "ACSCurrent"),
        current,
        "nothing stored"
    );
    emulator.slow_create(0).await;

    // The next worker takes the job over once the lease has expired, finds the key (created
    // after the job's create mark), deletes it and rotates.
    let mut child = worker();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pair(&t, "ram/batch", "ACSCurrent") == current
        || t.json(&["secret", "describe", "ram/batch"])["RotationStatus"] != "Idle"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation never completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let new = pair(&t, "ram/batch", "ACSCurrent");
    let mut expected = vec![new.0.clone(), current.0.clone()];
    expected.sort();
    assert_eq!(
        keys_of(&emulator, "batch").await,
        expected,
        "current and previous, no orphan"
    );
    assert!(!expected.contains(&orphan[0]));
    assert_eq!(pair(&t, "ram/batch", "ACSPrevious").0, current.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_disables_the_previous_key_once_its_grace_has_passed() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "web")])
        .await
        .unwrap();
    assert!(add_ram_target(&t, "cloud", &emulator, &[]).status.success());
    let out = t.run(&[
        "secret",
        "create",
        "ram/web",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "web",
        "--previous-grace",
        "soon",
    ]);
    assert_refused(&out, 2, "--previous-grace", None);
    t.ok(&[
        "secret",
        "create",
        "ram/web",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "web",
        "--previous-grace",
        "2s",
        "--rotation-interval",
        "30d",
    ]);
    t.ok(&["rotate", "ram/web"]);
    let current = pair(&t, "ram/web", "ACSCurrent");
    let previous = pair(&t, "ram/web", "ACSPrevious");
    signs(&emulator, "web", &previous).await.unwrap();
    let status = |keys: &[rotators::ram::client::AccessKeyInfo], id: &str| {
        keys.iter()
            .find(|k| k.access_key_id == id)
            .map(|k| k.status.clone())
    };

    let mut worker = t
        .rotor()
        .args(["worker", "--poll", "100ms"])
        .env("ROTOR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let keys = admin.list_access_keys("web").await.unwrap();
        if status(&keys, &previous.0).as_deref() == Some("Inactive") {
            assert_eq!(status(&keys, &current.0).as_deref(), Some("Active"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the previous key stayed Active: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success());
    assert_eq!(
        signs(&emulator, "web", &previous).await,
        Err("InvalidAccessKeyId.Inactive".into())
    );
    signs(&emulator, "web", &current).await.unwrap();
    // The follow-up did not rotate: the secret waits for its next rotation, 30 days away.
    assert_eq!(pair(&t, "ram/web", "ACSCurrent"), current);
    let described = t.json(&["secret", "describe", "ram/web"]);
    assert_eq!(described["RotationStatus"], "Idle", "{described}");
    assert!(described["NextRotationDate"].is_string(), "{described}");
    // The next rotation replaces the Inactive key.
    t.ok(&["rotate", "ram/web"]);
    let mut expected = vec![pair(&t, "ram/web", "ACSCurrent").0, current.0.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "web").await, expected);
}
