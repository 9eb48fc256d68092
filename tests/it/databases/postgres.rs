//! PostgreSQL accounts: dual accounts, objects shared by both, import, single accounts, refusals
//! up front, and a target that is down.

use super::*;

#[tokio::test]
async fn the_test_cluster_refuses_wrong_passwords() {
    let mut pg = Pg::new().await;
    let user = pg.name("probe");
    pg.role(&user, "", "Right-Password-1").await;
    assert_eq!(
        login(&user, "Right-Password-1", "postgres", scram_port())
            .await
            .unwrap(),
        user
    );
    let err = login(&user, "Wrong-Password-1", "postgres", scram_port())
        .await
        .unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    pg.cleanup(&[]).await;
}

#[tokio::test]
async fn dual_accounts_survive_20_rotations() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    let out = pg.t.ok(&create_rds(
        "db/app",
        "pg",
        &[
            "--account",
            &app,
            "--database",
            &pg.db,
            "--privilege",
            "ReadWrite",
            "--rotation-interval",
            "7d",
        ],
    ));
    assert!(out.contains("version v2 is ACSCurrent"), "{out}");
    let mut history = vec![
        pg.account("db/app", "ACSPrevious").await,
        pg.account("db/app", "ACSCurrent").await,
    ];
    assert_eq!(history[0].0, format!("{app}_clone"));
    for pair in &history {
        assert_eq!(
            pg.login(pair).await.unwrap(),
            pair.0,
            "both accounts log in after create"
        );
    }
    for round in 1..=20 {
        // An application fetched ACSCurrent before the rotation...
        let held = pg.account("db/app", "ACSCurrent").await;
        let out = pg.t.ok(&["rotate", "db/app"]);
        assert!(out.contains("rotated"), "{out}");
        let current = pg.account("db/app", "ACSCurrent").await;
        let previous = pg.account("db/app", "ACSPrevious").await;
        // ...and still connects after it: its account is now ACSPrevious, untouched.
        assert_eq!(previous, held, "round {round}");
        assert_eq!(
            pg.login(&held).await.unwrap(),
            held.0,
            "round {round}: the held credential works"
        );
        assert_eq!(
            pg.login(&current).await.unwrap(),
            current.0,
            "round {round}: ACSCurrent logs in"
        );
        assert_ne!(
            current.0, previous.0,
            "round {round}: the accounts alternate"
        );
        history.push(current);
        // Every password older than ACSPrevious has been replaced.
        for old in &history[..history.len() - 2] {
            assert!(
                pg.login(old).await.is_err(),
                "round {round}: an old password of {} still works",
                old.0
            );
        }
    }
    pg.cleanup_dual(&app).await;
}

#[tokio::test]
async fn objects_either_account_creates_stay_usable_by_the_other() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    pg.t.ok(&create_rds(
        "db/app",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    pg.t.ok(&["rotate", "db/app"]);
    let clone = pg.account("db/app", "ACSCurrent").await;
    assert_eq!(clone.0, format!("{app}_clone"));
    let url = |(u, p): &(String, String)| {
        format!(
            "postgres://{u}:{}@127.0.0.1:{}/{}",
            urlencode(p),
            scram_port(),
            pg.db
        )
    };
    let mut conn = PgConnection::connect(&url(&clone)).await.unwrap();
    conn.execute("CREATE TABLE made_by_clone (id int); INSERT INTO made_by_clone VALUES (1)")
        .await
        .unwrap();
    conn.close().await.unwrap();

    pg.t.ok(&["rotate", "db/app"]);
    let main = pg.account("db/app", "ACSCurrent").await;
    assert_eq!(main.0, app);
    let mut conn = PgConnection::connect(&url(&main)).await.unwrap();
    conn.execute("INSERT INTO made_by_clone VALUES (2)")
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT count(*) AS n FROM made_by_clone")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 2);
    conn.execute("DROP TABLE made_by_clone").await.unwrap();
    conn.close().await.unwrap();
    pg.cleanup_dual(&app).await;
}

#[tokio::test]
async fn import_checks_both_accounts_and_rotates_nothing() {
    let mut pg = Pg::new().await;
    let (a, b) = (pg.name("imp_a"), pg.name("imp_b"));
    pg.role(&a, "", "Imported-Pass-A1").await;
    pg.role(&b, "", "Imported-Pass-B1").await;
    admin()
        .await
        .execute(format!("GRANT CONNECT ON DATABASE {} TO {a}, {b}", pg.db).as_str())
        .await
        .unwrap();
    let value = |pw_b: &str| {
        serde_json::json!({"Accounts": [
            {"AccountName": a, "AccountPassword": "Imported-Pass-A1"},
            {"AccountName": b, "AccountPassword": pw_b},
        ]})
        .to_string()
    };
    let out = pg.t.run(&create_rds(
        "db/imp",
        "pg",
        &["--database", &pg.db, "--value", &value("Wrong-Pass-B1")],
    ));
    assert_refused(&out, 2, "does not log in", Some("Wrong-Pass-B1"));
    assert_refused(
        &pg.t.run(&["secret", "describe", "db/imp"]),
        3,
        "does not exist",
        None,
    );

    pg.t.ok(&create_rds(
        "db/imp",
        "pg",
        &["--database", &pg.db, "--value", &value("Imported-Pass-B1")],
    ));
    let versions = pg.t.json(&["secret", "versions", "db/imp"]);
    assert_eq!(
        versions.as_array().unwrap().len(),
        2,
        "nothing rotated at import"
    );
    assert_eq!(
        pg.account("db/imp", "ACSCurrent").await,
        (a.clone(), "Imported-Pass-A1".into())
    );
    pg.t.ok(&["rotate", "db/imp"]);
    let current = pg.account("db/imp", "ACSCurrent").await;
    assert_eq!(current.0, b, "the account that was not current is reset");
    assert_eq!(pg.login(&current).await.unwrap(), b);
    assert_eq!(
        pg.login(&(a.clone(), "Imported-Pass-A1".into()))
            .await
            .unwrap(),
        a,
        "the old current keeps working"
    );
    assert!(login(&b, "Imported-Pass-B1", &pg.db, scram_port())
        .await
        .is_err());
    pg.cleanup(&[]).await;
}

#[tokio::test]
async fn single_accounts_change_in_place_including_the_targets_own_admin() {
    let mut pg = Pg::new().await;
    let solo = pg.name("solo");
    pg.role(&solo, "", "Solo-Initial-Pass1").await;
    let value = serde_json::json!({"AccountName": solo, "AccountPassword": "Solo-Initial-Pass1"})
        .to_string();
    pg.t.ok(&create_rds(
        "db/solo",
        "pg",
        &["--sub-type", "SingleUser", "--value", &value],
    ));
    for _ in 0..3 {
        let before = pg.account("db/solo", "ACSCurrent").await;
        pg.t.ok(&["rotate", "db/solo"]);
        let after = pg.account("db/solo", "ACSCurrent").await;
        assert_eq!(after.0, solo);
        assert_eq!(
            login(&solo, &after.1, "postgres", scram_port())
                .await
                .unwrap(),
            solo
        );
        assert!(
            login(&solo, &before.1, "postgres", scram_port())
                .await
                .is_err(),
            "the old password is gone"
        );
    }

    // A target whose admin is rotated as a SingleUser secret keeps working with the new password.
    let boss = pg.name("boss");
    pg.role(&boss, "CREATEROLE", "Boss-Initial-Pass1").await;
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    let out = pg.add_target("pg2", &url, &boss, "Boss-Initial-Pass1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_secret = "acs/target/pg2/admin";
    pg.t.ok(&["rotate", admin_secret]);
    assert!(login(&boss, "Boss-Initial-Pass1", "postgres", scram_port())
        .await
        .is_err());
    let out = pg.t.ok(&["target", "check", "pg2"]);
    assert!(out.contains("may manage accounts"), "{out}");
    let store = pg.store().await;
    let info = store
        .describe(&SecretName::parse_any(admin_secret).unwrap())
        .await
        .unwrap();
    assert!(info.last_rotation_at.is_some());
    pg.cleanup(&[]).await;
}

#[tokio::test]
async fn unsafe_names_and_weak_admins_are_refused_up_front() {
    let mut pg = Pg::new().await;
    for bad in ["a\"b", "x;drop_table", "two words", "1st", &"n".repeat(58)] {
        let out = pg.t.run(&create_rds(
            "db/bad",
            "pg",
            &["--account", bad, "--database", &pg.db],
        ));
        assert_refused(&out, 2, "account name", None);
    }
    assert_refused(
        &pg.t.run(&["secret", "describe", "db/bad"]),
        3,
        "does not exist",
        None,
    );

    let weak = pg.name("weak");
    pg.role(&weak, "", "Weak-Admin-Pass1").await;
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    // Adding it is refused (the check target check makes), and stored with --no-check.
    assert_refused(
        &pg.add_target("weak", &url, &weak, "Weak-Admin-Pass1"),
        7,
        "may not manage accounts",
        Some("Weak-Admin-Pass1"),
    );
    let out = add_target_with(
        &pg.t,
        "weak",
        "postgres",
        &url,
        &weak,
        "Weak-Admin-Pass1",
        &["--no-check"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_refused(
        &pg.t.run(&["target", "check", "weak"]),
        7,
        "may not manage accounts",
        None,
    );
    let app = pg.name("never");
    let out = pg.t.run(&create_rds(
        "db/never",
        "weak",
        &["--account", &app, "--database", &pg.db],
    ));
    // Named before anything changes: what the admin lacks.
    assert_refused(&out, 7, "lacks what create mode needs (CREATEROLE", None);
    assert_refused(
        &pg.t.run(&["secret", "describe", "db/never"]),
        3,
        "does not exist",
        None,
    );
    let mut conn = admin().await;
    let left: i64 = sqlx::query("SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE $1")
        .bind(format!("{app}%"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0, "nothing was created");
    let out = pg.t.run(&[
        "target",
        "add",
        "inline",
        "--kind",
        "postgres",
        "--url",
        "postgres://u:p@127.0.0.1/x",
        "--admin-user",
        "u",
        "--admin-password",
        "p",
    ]);
    assert_refused(&out, 2, "put no account in the target URL", None);
    pg.cleanup(&[]).await;
}

/// A TCP forwarder to the test cluster that can be stopped and started again on one port.
struct Proxy {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = scram_port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                conns.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy {
            port,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_is_retried_and_the_current_credential_stays() {
    let pg = Pg::new().await;
    let mut proxy = Proxy::start(0).await;
    let url = format!("postgres://127.0.0.1:{}/postgres", proxy.port);
    assert!(pg
        .add_target("flaky", &url, "postgres", "rotor-scram-admin")
        .status
        .success());
    let app = pg.name("app");
    pg.t.ok(&create_rds(
        "db/app",
        "flaky",
        &["--account", &app, "--database", &pg.db],
    ));
    let before = pg.account("db/app", "ACSCurrent").await;

    proxy.stop().await;
    let out = pg.t.run(&["rotate", "db/app", "--backoff-base", "1s"]);
    assert_refused(&out, 6, "unreachable", None);
    let described = pg.t.json(&["secret", "describe", "db/app"]);
    assert_eq!(described["RotationStatus"], "Retrying");
    assert_eq!(
        pg.account("db/app", "ACSCurrent").await,
        before,
        "current untouched"
    );
    assert_eq!(
        pg.login(&before).await.unwrap(),
        before.0,
        "and still logs in"
    );

    // The target comes back on the same port: the rotation completes.
    let _back = Proxy::start(proxy.port).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = pg.t.ok(&["rotate", "db/app"]);
    assert!(out.contains("rotated"), "{out}");
    let current = pg.account("db/app", "ACSCurrent").await;
    assert_eq!(pg.login(&current).await.unwrap(), current.0);
    assert_eq!(
        pg.t.json(&["secret", "describe", "db/app"])["RotationStatus"],
        "Idle"
    );
    pg.cleanup_dual(&app).await;
}
