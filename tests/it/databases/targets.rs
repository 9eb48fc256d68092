//! Targets themselves: TLS with a pinned CA, removal with their admin secret, stored atomically.

use super::*;

#[tokio::test]
async fn postgres_targets_speak_tls_and_verify_the_pinned_ca() {
    let ca = std::env::var("ROTOR_TEST_PG_SCRAM_CA")
        .unwrap_or_else(|_| "/tmp/rotor-pg-scram-0/ca.crt".into());
    assert!(
        std::path::Path::new(&ca).exists(),
        "the test cluster's certificate {ca} is missing; tests/run makes it"
    );
    let pg = Pg::new().await;
    let port = scram_port();
    let password = "rotor-scram-admin";
    let pinned = format!("postgres://127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={ca}");
    assert!(pg
        .add_target("tls", &pinned, "postgres", password)
        .status
        .success());
    let out = pg.t.ok(&["target", "check", "tls"]);
    assert!(out.contains("may manage accounts"), "{out}");
    let app = pg.name("tls");
    pg.t.ok(&create_rds(
        "db/tls",
        "tls",
        &["--account", &app, "--database", &pg.db],
    ));
    pg.t.ok(&["rotate", "db/tls"]);
    let current = pg.account("db/tls", "ACSCurrent").await;
    assert_eq!(pg.login(&current).await.unwrap(), current.0);

    // Another CA than the server's: the TLS handshake is refused, so TLS is really in use.
    let other = "/etc/ssl/certs/ca-certificates.crt";
    let wrong =
        format!("postgres://127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={other}");
    let out = add_target_with(
        &pg.t,
        "mistrusted",
        "postgres",
        &wrong,
        "postgres",
        password,
        &["--no-check"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = pg.t.run(&["target", "check", "mistrusted"]);
    assert_refused(&out, 7, "unreachable", Some(password));
    pg.cleanup_dual(&app).await;
}

#[tokio::test]
async fn targets_are_removed_with_their_admin_secret_only_when_no_secret_uses_them() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    pg.t.ok(&create_rds(
        "db/app",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    // In use: refused, naming the secret, and nothing changes.
    let out = pg.t.run(&["target", "remove", "pg"]);
    assert_refused(&out, 4, "db/app", None);
    assert_eq!(pg.t.json(&["target", "list"]).as_array().unwrap().len(), 1);
    pg.t.ok(&["secret", "describe", "acs/target/pg/admin"]);

    pg.t.ok(&["secret", "delete", "db/app", "--force"]);
    let out = pg.t.ok(&["target", "remove", "pg"]);
    assert!(out.contains("removed target 'pg'"), "{out}");
    assert_eq!(pg.t.json(&["target", "list"]), serde_json::json!([]));
    let out = pg.t.run(&["secret", "describe", "acs/target/pg/admin"]);
    assert_refused(&out, 3, "does not exist", None);
    let out = pg.t.run(&["target", "remove", "pg"]);
    assert_refused(&out, 3, "does not exist", None);
    // Gone cleanly: the same name can be added again.
    let password = scram_url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    let out = pg.add_target("pg", &url, "postgres", &password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.cleanup_dual(&app).await;
}

#[tokio::test]
async fn a_target_and_its_admin_secret_are_stored_together_or_not_at_all() {
    let pg = Pg::new().await;
    // A leftover admin secret of the same name makes storing the admin fail...
    let store = pg.store().await;
    let admin = rotators::database::account::Account::new("someone", "Leftover-Pass-1");
    store
        .create_secret(rotor::store::NewSecret::new(
            SecretName::parse_any("acs/target/pg2/admin").unwrap(),
            rotators::SecretKind::new(
                rotators::SecretType::Rds,
                Some(rotators::SubType::SingleUser),
            )
            .unwrap(),
            admin.to_value(),
        ))
        .await
        .unwrap();
    store.close().await;
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    let out = add_target_with(
        &pg.t,
        "pg2",
        "postgres",
        &url,
        "postgres",
        "unused-Pass-1",
        &["--no-check"],
    );
    assert_refused(&out, 4, "already exists", Some("unused-Pass-1"));
    // ...and then the target row is not there either: one transaction.
    let targets = pg.t.json(&["target", "list"]);
    let names: Vec<&str> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["TargetName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pg"]);
    // Family options belong with a target.
    let out =
        pg.t.run(&["secret", "create", "x", "--type", "Rds", "--account", "a"]);
    assert_refused(&out, 2, "--account needs --target", None);
    pg.cleanup(&[]).await;
}
