//! AccessKey rotation: 10 rotations within the two-key limit, imported pairs checked, foreign
//! keys stopping the rotation.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_rotate_10_times_within_the_two_key_limit() {
    let t = env(Backend::Sqlite).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "app")])
        .await
        .unwrap();
    let out = add_ram_target(&t, "cloud", &emulator, &["--signature", "v1"]);
    assert!(out.status.success(), "{out:?}");
    let report = t.ok(&["target", "check", "cloud"]);
    assert!(report.contains("ListUsers"), "{report}");

    // Create mode: the cloud makes the first pair.
    t.ok(&[
        "secret",
        "create",
        "ram/app",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "app",
    ]);
    let first = pair(&t, "ram/app", "ACSCurrent");
    assert_eq!(keys_of(&emulator, "app").await, vec![first.0.clone()]);
    signs(&emulator, "app", &first).await.unwrap();

    let mut seen = vec![first];
    for round in 1..=10 {
        let out = t.run(&["rotate", "ram/app"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "round {round}: {text}");
        let current = pair(&t, "ram/app", "ACSCurrent");
        let previous = pair(&t, "ram/app", "ACSPrevious");
        assert!(
            !text.contains(&current.1) && !text.contains(&previous.1),
            "no secret in rotor's output or logs"
        );
        let mut expected = vec![current.0.clone(), previous.0.clone()];
        expected.sort();
        assert_eq!(
            keys_of(&emulator, "app").await,
            expected,
            "round {round}: exactly current and previous"
        );
        signs(&emulator, "app", &current).await.unwrap();
        signs(&emulator, "app", &previous).await.unwrap();
        for old in &seen[..seen.len() - 1] {
            assert_eq!(
                signs(&emulator, "app", old).await,
                Err("InvalidAccessKeyId.NotFound".into()),
                "round {round}: an older key is gone"
            );
        }
        seen.push(current);
    }
    // describe names the RAM user and both key ids, never a key secret.
    let (current, previous) = (
        pair(&t, "ram/app", "ACSCurrent"),
        pair(&t, "ram/app", "ACSPrevious"),
    );
    let described = t.ok(&["secret", "describe", "ram/app"]);
    assert!(described.contains("\nRAM user:      app\n"), "{described}");
    assert!(
        described.contains(&format!(
            "\nAccessKeys:    {} (ACSCurrent), {} (ACSPrevious)\n",
            current.0, previous.0
        )),
        "{described}"
    );
    assert!(
        !described.contains(&current.1) && !described.contains(&previous.1),
        "{described}"
    );
    // Both keys work, so rolling back is allowed.
    t.ok(&["secret", "rollback", "ram/app"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_pairs_are_checked_and_foreign_keys_stop_the_rotation() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "svc")])
        .await
        .unwrap();
    let existing = admin.create_access_key("svc").await.unwrap();
    assert!(add_ram_target(&t, "cloud", &emulator, &[]).status.success());

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, v: serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    };
    let wrong = file(
        "wrong.json",
        serde_json::json!({"AccessKeyId": existing.access_key_id, "AccessKeySecret": "not-it"}),
    );
    let out = t.run(&[
        "secret",
        "create",
        "ram/svc",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "svc",
        "--value-file",
        &wrong,
    ]);
    assert_refused(&out, 2, "does not sign", Some("not-it"));
    let good = file(
        "good.json",
        serde_json::json!({"AccessKeyId": existing.access_key_id, "AccessKeySecret": existing.access_key_secret.as_str()}),
    );
    t.ok(&[
        "secret",
        "create",
        "ram/svc",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "svc",
        "--value-file",
        &good,
    ]);
    assert_eq!(pair(&t, "ram/svc", "ACSCurrent").0, existing.access_key_id);

    // Someone adds a key of their own: the rotation fails, naming it, and changes nothing.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let foreign = admin.create_access_key("svc").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let before = keys_of(&emulator, "svc").await;
    let out = t.run(&["rotate", "ram/svc"]);
    assert_refused(&out, 6, &foreign.access_key_id, None);
    assert_eq!(keys_of(&emulator, "svc").await, before, "nothing changed");
    assert_eq!(
        t.json(&["secret", "describe", "ram/svc"])["RotationStatus"],
        "Failed"
    );
    admin
        .delete_access_key("svc", &foreign.access_key_id)
        .await
        .unwrap();

    // Throttling answers back off and the rotation succeeds.
    emulator.throttle(3).await;
    t.ok(&["rotate", "ram/svc"]);
    let current = pair(&t, "ram/svc", "ACSCurrent");
    assert_ne!(current.0, existing.access_key_id);
    let mut expected = vec![current.0.clone(), existing.access_key_id.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "svc").await, expected);
}
