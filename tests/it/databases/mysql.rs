//! MariaDB/MySQL accounts: dual accounts with their grants mirrored, grants scoped to one database.

use super::*;

#[tokio::test]
async fn mysql_dual_accounts_survive_20_rotations_with_grants_mirrored_both_ways() {
    let (t, suffix, db) = maria().await;
    let app = format!("my_{suffix}");
    t.ok(&create_rds(
        "db/my",
        "maria",
        &["--account", &app, "--database", &db],
    ));
    assert_eq!(
        grants(&app).await,
        grants(&format!("{app}_clone")).await,
        "identical grants at creation"
    );
    let mut history = vec![
        account_of(&t, "db/my", "ACSPrevious").await,
        account_of(&t, "db/my", "ACSCurrent").await,
    ];
    for round in 1..=20 {
        let held = account_of(&t, "db/my", "ACSCurrent").await;
        if round == 5 {
            // A grant added on the current account reaches its partner at the next rotation.
            mysql_admin()
                .await
                .execute(format!("GRANT SELECT ON test.* TO '{}'@'%'", held.0).as_str())
                .await
                .unwrap();
        }
        if round == 6 {
            // ...and one revoked on the current account is revoked from its partner too.
            mysql_admin()
                .await
                .execute(format!("REVOKE SELECT ON test.* FROM '{}'@'%'", held.0).as_str())
                .await
                .unwrap();
        }
        t.ok(&["rotate", "db/my"]);
        let current = account_of(&t, "db/my", "ACSCurrent").await;
        assert_eq!(
            account_of(&t, "db/my", "ACSPrevious").await,
            held,
            "round {round}"
        );
        assert!(
            mysql_login(&held, &db)
                .await
                .unwrap()
                .starts_with(&format!("{}@", held.0)),
            "round {round}: held works"
        );
        assert!(
            mysql_login(&current, &db)
                .await
                .unwrap()
                .starts_with(&format!("{}@", current.0)),
            "round {round}"
        );
        assert_eq!(
            grants(&current.0).await,
            grants(&held.0).await,
            "round {round}: grants identical"
        );
        let test_grant = grants(&current.0)
            .await
            .iter()
            .any(|g| g.contains("`test`"));
        assert_eq!(
            test_grant,
            round == 5,
            "round {round}: mirrored grant present only after round 5"
        );
        history.push(current);
        for old in &history[..history.len() - 2] {
            assert!(
                mysql_login(old, &db).await.is_err(),
                "round {round}: an old password of {} works",
                old.0
            );
        }
    }
    let out = t.run(&create_rds(
        "db/bad",
        "maria",
        &["--account", "x'y", "--database", &db],
    ));
    assert_refused(&out, 2, "account name", None);
    let out = t.run(&create_rds(
        "db/bad",
        "maria",
        &["--account", &"m".repeat(27), "--database", &db],
    ));
    assert_refused(&out, 2, "allows 32 characters", None);
    mysql_cleanup(&[&app, &format!("{app}_clone")], &[&db]).await;
}

#[tokio::test]
async fn mysql_grants_on_a_database_with_underscores_cover_only_that_database() {
    let (t, suffix, db) = maria().await;
    // `_` is a wildcard in a grant's database name: `myapp_x` would also match `myappXx`.
    let lookalike = db.replacen('_', "X", 1);
    let mut conn = mysql_admin().await;
    conn.execute(format!("CREATE DATABASE {lookalike}").as_str())
        .await
        .unwrap();
    conn.execute(format!("CREATE TABLE {lookalike}.secret_table (id INT)").as_str())
        .await
        .unwrap();
    conn.execute(format!("CREATE TABLE {db}.own_table (id INT)").as_str())
        .await
        .unwrap();
    let app = format!("wc_{suffix}");
    t.ok(&create_rds(
        "db/wc",
        "maria",
        &["--account", &app, "--database", &db],
    ));
    let current = account_of(&t, "db/wc", "ACSCurrent").await;
    let base = mysql_url();
    let host = base
        .rsplit_once('@')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let url = format!(
        "mysql://{}:{}@{host}/{db}",
        current.0,
        urlencode(&current.1)
    );
    let mut own = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("SELECT * FROM {db}.own_table"))
        .fetch_all(&mut own)
        .await
        .expect("its own database is readable");
    let err = sqlx::query(&format!("SELECT * FROM {lookalike}.secret_table"))
        .fetch_all(&mut own)
        .await
        .expect_err("the look-alike database must not be readable");
    assert!(err.to_string().contains("denied"), "{err}");
    let _ = own.close().await;
    mysql_cleanup(&[&app, &format!("{app}_clone")], &[&db, &lookalike]).await;
}

/// MySQL grants name a database: create mode without `--database` is a usage error (exit 2),
/// refused before the server is touched.
#[tokio::test]
async fn mysql_create_mode_without_a_database_is_a_usage_error() {
    let (t, suffix, db) = maria().await;
    let app = format!("my_{suffix}");
    let out = t.run(&create_rds("db/nodb", "maria", &["--account", &app]));
    assert_refused(
        &out,
        2,
        "need a database for their grants: give --database",
        None,
    );
    assert_refused(&t.run(&["secret", "describe", "db/nodb"]), 3, "", None);
    let users: Vec<String> = sqlx::query_scalar("SELECT user FROM mysql.user WHERE user LIKE ?")
        .bind(format!("{app}%"))
        .fetch_all(&mut mysql_admin().await)
        .await
        .unwrap();
    assert!(users.is_empty(), "{users:?}");
    mysql_cleanup(&[], &[&db]).await;
}
