//! Redis ACL users: dual and single users, and ACL files saved after every change.

use super::*;

#[tokio::test]
async fn redis_dual_acl_users_survive_20_rotations() {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let user = redis_pair(&t, "cache/app", "rd", &["--privilege", "ReadWrite"]);
    assert_eq!(
        acl_rules(&user).await,
        acl_rules(&format!("{user}_clone")).await
    );
    let mut history = vec![
        account_of(&t, "cache/app", "ACSPrevious").await,
        account_of(&t, "cache/app", "ACSCurrent").await,
    ];
    for round in 1..=20 {
        let held = account_of(&t, "cache/app", "ACSCurrent").await;
        t.ok(&["rotate", "cache/app"]);
        let current = account_of(&t, "cache/app", "ACSCurrent").await;
        assert_eq!(account_of(&t, "cache/app", "ACSPrevious").await, held);
        // WHOAMI proves who is logged in: a failed AUTH would leave us as `default`.
        assert_eq!(
            redis_login(&held).await.unwrap(),
            held.0,
            "round {round}: held works"
        );
        assert_eq!(
            redis_login(&current).await.unwrap(),
            current.0,
            "round {round}"
        );
        assert_eq!(
            acl_rules(&current.0).await,
            acl_rules(&held.0).await,
            "round {round}: rules identical"
        );
        history.push(current);
        for old in &history[..history.len() - 2] {
            let err = redis_login(old).await.unwrap_err();
            let err = err.to_lowercase();
            assert!(
                err.contains("wrongpass") || err.contains("authentication failed"),
                "round {round}: {err}"
            );
        }
    }
    redis_drop_pair(&user).await;
}

#[tokio::test]
async fn redis_single_user_import_and_rotation() {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let user = format!("solo_{}", &rotor::crypto::random_id()[..8]);
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg(&["on", ">Solo-Initial-Pass1", "~*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let value = serde_json::json!({"AccountName": user, "AccountPassword": "Solo-Initial-Pass1"})
        .to_string();
    let out = t.run(&[
        "secret",
        "create",
        "cache/solo",
        "--type",
        "Redis",
        "--sub-type",
        "SingleUser",
        "--target",
        "red",
        "--value",
        &value.replace("Solo-Initial", "Wrong"),
    ]);
    assert_refused(&out, 2, "does not log in", Some("Wrong-Pass1"));
    t.ok(&[
        "secret",
        "create",
        "cache/solo",
        "--type",
        "Redis",
        "--sub-type",
        "SingleUser",
        "--target",
        "red",
        "--value",
        &value,
    ]);
    t.ok(&["rotate", "cache/solo"]);
    let current = account_of(&t, "cache/solo", "ACSCurrent").await;
    assert_eq!(redis_login(&current).await.unwrap(), user);
    assert!(redis_login(&(user.clone(), "Solo-Initial-Pass1".into()))
        .await
        .is_err());
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_acl_files_are_saved_after_every_change() {
    // A Redis of our own that keeps its users in an ACL file.
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, "user default on nopass ~* &* +@all\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--aclfile")
        .arg(&acl)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (install the Redis server)");
    let url = format!("redis://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the ACL-file Redis did not start");

    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "target",
        "add",
        "acl",
        "--kind",
        "redis",
        "--url",
        &url,
        "--admin-user",
        "default",
        "--admin-password",
        "",
    ]);
    t.ok(&[
        "secret",
        "create",
        "cache/acl",
        "--type",
        "Redis",
        "--target",
        "acl",
        "--account",
        "filed",
    ]);
    let saved = || std::fs::read_to_string(&acl).unwrap();
    let line = |text: &str, user: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("user {user} ")))
            .map(str::to_owned)
    };
    assert!(
        line(&saved(), "filed").is_some() && line(&saved(), "filed_clone").is_some(),
        "created users are saved"
    );
    let before = line(&saved(), "filed_clone").unwrap();
    t.ok(&["rotate", "cache/acl"]);
    let after = saved();
    assert_ne!(
        line(&after, "filed_clone").unwrap(),
        before,
        "the new password is saved"
    );
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let live: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let live_clone = live
        .iter()
        .find(|l| l.starts_with("user filed_clone "))
        .unwrap();
    assert_eq!(
        &line(&after, "filed_clone").unwrap(),
        live_clone,
        "file and server agree"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Two secrets never rotate one account: each rotation would lock out the applications of the
/// other. Importing a dual pair another secret rotates, either half of it as a single account,
/// or the target's admin account is refused, nothing stored; the first secret rotates on.
#[tokio::test]
async fn an_account_another_secret_rotates_is_not_imported_again() {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let user = redis_pair(&t, "cache/app", "rd", &[]);
    let current = account_of(&t, "cache/app", "ACSCurrent").await;
    let previous = account_of(&t, "cache/app", "ACSPrevious").await;
    let json = |(name, password): &(String, String)| serde_json::json!({"AccountName": name, "AccountPassword": password});
    let tries = [
        (
            "cache/pair",
            None,
            serde_json::json!({"Accounts": [json(&current), json(&previous)]}),
            "cache/app",
        ),
        (
            "cache/half",
            Some("SingleUser"),
            json(&previous),
            "cache/app",
        ),
        (
            "cache/admin",
            Some("SingleUser"),
            json(&("default".to_owned(), String::new())),
            "acs/target/red/admin",
        ),
    ];
    let create = |name: &str, sub: Option<&str>, value: &serde_json::Value| {
        let file =
            crate::support::write_file(&t.data_dir(), "import.json", value.to_string().as_bytes());
        let mut args = vec![
            "secret",
            "create",
            name,
            "--type",
            "Redis",
            "--target",
            "red",
            "--value-file",
            file.to_str().unwrap(),
        ];
        args.extend(sub.map(|s| ["--sub-type", s]).into_iter().flatten());
        t.run(&args)
    };
    for (name, sub, value, holder) in &tries {
        assert_refused(
            &create(name, *sub, value),
            4,
            &format!("is rotated by secret '{holder}' already"),
            Some(&previous.1),
        );
        let out = t.run(&["secret", "describe", name]);
        assert!(!out.status.success(), "{name} was stored");
    }
    // Nor on another target naming the same server.
    let out = add_target(&t, "red2", "redis", &redis_url(), "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, sub, value, _) = &tries[0];
    let file =
        crate::support::write_file(&t.data_dir(), "again.json", value.to_string().as_bytes());
    let mut args = vec!["secret", "create", "cache/elsewhere", "--type", "Redis"];
    args.extend(sub.map(|s| ["--sub-type", s]).into_iter().flatten());
    args.extend(["--target", "red2", "--value-file", file.to_str().unwrap()]);
    assert_refused(
        &t.run(&args),
        4,
        "is rotated by secret 'cache/app' (on target 'red', the same server) already",
        Some(&previous.1),
    );
    // Nor does the target's admin secret take over one of the pair.
    let file = crate::support::write_file(
        &t.data_dir(),
        "admin.json",
        json(&current).to_string().as_bytes(),
    );
    let out = t.run(&[
        "secret",
        "import",
        "acs/target/red/admin",
        "--value-file",
        file.to_str().unwrap(),
    ]);
    assert_refused(&out, 4, "was not imported: account", Some(&current.1));
    t.ok(&["target", "check", "red"]); // the admin unchanged
                                       // Its own account again is fine, though target red2 shares it.
    let file = crate::support::write_file(
        &t.data_dir(),
        "admin.json",
        json(&("default".to_owned(), String::new()))
            .to_string()
            .as_bytes(),
    );
    t.ok(&[
        "secret",
        "import",
        "acs/target/red/admin",
        "--value-file",
        file.to_str().unwrap(),
    ]);
    // Scheduled for deletion, the secret still holds its accounts: it may be restored.
    t.ok(&["secret", "delete", "cache/app"]);
    let (name, sub, value, _) = &tries[0];
    assert_refused(
        &create(name, *sub, value),
        4,
        "'cache/app' is scheduled for deletion: restore it",
        Some(&previous.1),
    );
    t.ok(&["secret", "restore", "cache/app"]);
    t.ok(&["rotate", "cache/app"]);
    assert_eq!(account_of(&t, "cache/app", "ACSPrevious").await, current);
    assert_eq!(redis_login(&current).await.unwrap(), current.0);
    redis_drop_pair(&user).await;
}
