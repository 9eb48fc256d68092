//! Managed secrets change only by rotation, checked import or rollback.

use super::*;

#[tokio::test]
async fn managed_secrets_change_only_by_rotation_checked_import_or_rollback() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    let clone = format!("{app}_clone");
    let t = &pg.t;
    t.ok(&create_rds(
        "db/app",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    let value = |user: &str, pw: &str| {
        serde_json::json!({"AccountName": user, "AccountPassword": pw}).to_string()
    };
    let versions = || t.json(&["secret", "versions", "db/app"]);

    // Put is for generic secrets: refused, naming the supported ways; nothing stored.
    let before = versions();
    let out = t.run(&[
        "secret",
        "put",
        "db/app",
        "--value",
        &value(&app, "Typed-By-Hand-1"),
    ]);
    assert_refused(
        &out,
        2,
        "rotor secret import db/app",
        Some("Typed-By-Hand-1"),
    );
    assert_eq!(versions(), before);

    t.ok(&["rotate", "db/app"]); // ACSCurrent: the clone
                                 // An operator resets the clone's password by hand.
    admin()
        .await
        .execute(format!("ALTER ROLE {clone} PASSWORD 'Reset-By-Ops-1'").as_str())
        .await
        .unwrap();
    let before = versions();
    let file = crate::support::write_file(
        &t.data_dir(),
        "wrong.json",
        value(&clone, "Wrong-Pass-9").as_bytes(),
    );
    let out = t.run(&[
        "secret",
        "import",
        "db/app",
        "--value-file",
        file.to_str().unwrap(),
    ]);
    assert_refused(&out, 2, "does not log in", Some("Wrong-Pass-9"));
    let out = t.run(&[
        "secret",
        "import",
        "db/app",
        "--value",
        &value("postgres", "rotor-scram-admin"),
    ]);
    assert_refused(&out, 2, "is not this secret's", Some("rotor-scram-admin"));
    assert_eq!(versions(), before, "nothing stored");
    let file = crate::support::write_file(
        &t.data_dir(),
        "reset.json",
        value(&clone, "Reset-By-Ops-1").as_bytes(),
    );
    let out = t.ok(&[
        "secret",
        "import",
        "db/app",
        "--value-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.contains("ACSCurrent"), "{out}");
    let reset = (clone.clone(), "Reset-By-Ops-1".to_string());
    assert_eq!(pg.account("db/app", "ACSCurrent").await, reset);

    // A rotation moves to the main account; rollback returns to the clone after it logs in.
    t.ok(&["rotate", "db/app"]);
    let main = pg.account("db/app", "ACSCurrent").await;
    assert_eq!(main.0, app);
    let out = t.ok(&["secret", "rollback", "db/app"]);
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(pg.account("db/app", "ACSCurrent").await, reset);
    assert_eq!(pg.account("db/app", "ACSPrevious").await, main);
    for both in [&reset, &main] {
        assert_eq!(pg.login(both).await.unwrap(), both.0, "both stages log in");
    }
    // The next rotation resets the account that is not current: the main one.
    t.ok(&["rotate", "db/app"]);
    let next = pg.account("db/app", "ACSCurrent").await;
    assert_eq!(next.0, app);
    assert_eq!(pg.account("db/app", "ACSPrevious").await, reset);
    assert_eq!(pg.login(&next).await.unwrap(), app);
    assert_eq!(pg.login(&reset).await.unwrap(), clone);
    assert!(
        pg.login(&main).await.is_err(),
        "the main account's old password is gone"
    );

    // Not while a rotation is in flight: a cycle that failed in its test step keeps its job.
    admin()
        .await
        .execute(format!("ALTER ROLE {clone} NOLOGIN").as_str())
        .await
        .unwrap();
    let out = t.run(&[
        "rotate",
        "db/app",
        "--max-attempts",
        "1",
        "--test-retries",
        "0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_refused(
        &t.run(&["secret", "rollback", "db/app"]),
        4,
        "being rotated",
        None,
    );
    assert_refused(
        &t.run(&[
            "secret",
            "import",
            "db/app",
            "--value-file",
            file.to_str().unwrap(),
        ]),
        4,
        "being rotated",
        None,
    );
    admin()
        .await
        .execute(format!("ALTER ROLE {clone} LOGIN").as_str())
        .await
        .unwrap();
    t.ok(&["rotate", "db/app"]);

    // A single account's previous password stops working when it rotates: no rollback.
    let solo = pg.name("solo");
    t.ok(&create_rds(
        "db/solo",
        "pg",
        &[
            "--sub-type",
            "SingleUser",
            "--account",
            &solo,
            "--database",
            &pg.db,
        ],
    ));
    t.ok(&["rotate", "db/solo"]);
    let out = t.run(&["secret", "rollback", "db/solo"]);
    assert_refused(&out, 2, "cannot be rolled back", None);
    pg.cleanup(&[
        app.clone(),
        clone.clone(),
        format!("{app}_group"),
        solo.clone(),
        format!("{solo}_group"),
    ])
    .await;
}
