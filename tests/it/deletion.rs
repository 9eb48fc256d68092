//! `secret delete` says what it leaves on the target, and `--drop-accounts` (with `--force`)
//! removes the accounts rotor created — never imported ones, never the application's objects,
//! and nothing at all when it cannot remove everything.

use sqlx::{Connection, Executor, Row};

use crate::databases::{
    account_of, admin, create_rds, maria, mysql_admin, redis_admin, redis_target, scram_url, Pg,
};
use crate::support::{assert_refused, Backend, TestEnv};

/// The PostgreSQL roles among `names` that exist.
async fn pg_roles(names: &[String]) -> Vec<String> {
    sqlx::query("SELECT rolname::text AS r FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1")
        .bind(names)
        .fetch_all(&mut admin().await)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("r"))
        .collect()
}

/// How many of `app` and `app_clone` exist as MariaDB users.
async fn mysql_users(conn: &mut sqlx::MySqlConnection, app: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM mysql.user WHERE User IN (?, ?)")
        .bind(app)
        .bind(format!("{app}_clone"))
        .fetch_one(conn)
        .await
        .unwrap()
        .get("n")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn postgres_delete_names_what_stays_and_drop_accounts_removes_what_rotor_created() {
    let pg = Pg::new().await;
    let app = pg.name("del");
    let created = vec![app.clone(), format!("{app}_clone"), format!("{app}_group")];
    // A table with a sequence (its key is `serial`): the writing level's sequence grants go
    // with the accounts too.
    let base = crate::databases::scram_url();
    let base = base.rsplit_once('/').unwrap().0;
    let mut owner = sqlx::PgConnection::connect(&format!("{base}/{}", pg.db))
        .await
        .unwrap();
    owner
        .execute("CREATE TABLE numbered (id serial PRIMARY KEY)")
        .await
        .unwrap();
    owner.close().await.unwrap();
    pg.t.ok(&create_rds(
        "db/app",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    // A scheduled deletion names every role it leaves, and how to drop them.
    let out =
        pg.t.ok(&["secret", "delete", "db/app", "--recovery-days", "7"]);
    for role in &created {
        assert!(out.contains(&format!("role '{role}'")), "{out}");
    }
    assert!(out.contains("left on target 'pg'"), "{out}");
    assert!(out.contains("--force --drop-accounts"), "{out}");
    // Dropping goes only with a deletion that cannot be undone.
    let out = pg.t.run(&["secret", "delete", "db/app", "--drop-accounts"]);
    assert_refused(&out, 2, "--drop-accounts needs --force", None);
    assert_eq!(pg_roles(&created).await.len(), 3);
    // The secret awaiting deletion can still be deleted for good, with its roles.
    let json =
        pg.t.json(&["secret", "delete", "db/app", "--force", "--drop-accounts"]);
    assert_eq!(json["TargetName"], "pg");
    assert_eq!(
        json["DroppedFromTarget"].as_array().unwrap().len(),
        3,
        "{json}"
    );
    assert_eq!(json["LeftOnTarget"].as_array().unwrap().len(), 0, "{json}");
    assert!(pg_roles(&created).await.is_empty(), "the roles are gone");
    assert_refused(
        &pg.t.run(&["secret", "describe", "db/app"]),
        3,
        "does not exist",
        None,
    );

    // A single account goes with its group too.
    let solo = pg.name("solo");
    let solos = vec![solo.clone(), format!("{solo}_group")];
    pg.t.ok(&create_rds(
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
    pg.t.ok(&["rotate", "db/solo"]);
    let json =
        pg.t.json(&["secret", "delete", "db/solo", "--recovery-days", "7"]);
    assert_eq!(json["CreatedByRotor"], true, "{json}");
    assert_eq!(json["LeftOnTarget"].as_array().unwrap().len(), 2, "{json}");
    pg.t.ok(&["secret", "delete", "db/solo", "--force", "--drop-accounts"]);
    assert!(
        pg_roles(&solos).await.is_empty(),
        "the role and its group are gone"
    );

    // A role already gone by hand is not reported as dropped.
    let half = pg.name("half");
    pg.t.ok(&create_rds(
        "db/half",
        "pg",
        &["--account", &half, "--database", &pg.db],
    ));
    admin()
        .await
        .execute(format!("DROP ROLE \"{half}_clone\"").as_str())
        .await
        .unwrap();
    let json =
        pg.t.json(&["secret", "delete", "db/half", "--force", "--drop-accounts"]);
    assert_eq!(
        json["DroppedFromTarget"],
        serde_json::json!([
            format!("role '{half}'"),
            format!(
                "role '{half}_group' with its grants in database '{}'",
                pg.db
            )
        ]),
        "{json}"
    );
    assert!(pg_roles(&[half.clone(), format!("{half}_group")])
        .await
        .is_empty());

    // Objects the accounts made are the application's: the roles stay, and so does the secret.
    let keep = pg.name("keep");
    let kept = vec![
        keep.clone(),
        format!("{keep}_clone"),
        format!("{keep}_group"),
    ];
    pg.t.ok(&create_rds(
        "db/keep",
        "pg",
        &["--account", &keep, "--database", &pg.db],
    ));
    let who = account_of(&pg.t, "db/keep", "ACSCurrent").await;
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        who.0,
        crate::databases::urlencode(&who.1),
        crate::databases::scram_port(),
        pg.db
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    conn.execute("CREATE TABLE app_data (id int)")
        .await
        .unwrap();
    conn.close().await.unwrap();
    let out =
        pg.t.run(&["secret", "delete", "db/keep", "--force", "--drop-accounts"]);
    assert_refused(&out, 7, &format!("role '{keep}_group' owns 1 object"), None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was dropped"));
    assert_eq!(pg_roles(&kept).await.len(), 3, "nothing was dropped");
    pg.t.ok(&["secret", "describe", "db/keep"]);
    // Once the data is gone (or given away), the roles go too.
    let base = scram_url();
    let base = base.rsplit_once('/').unwrap().0;
    let mut owner = sqlx::PgConnection::connect(&format!("{base}/{}", pg.db))
        .await
        .unwrap();
    owner.execute("DROP TABLE app_data").await.unwrap();
    owner.close().await.unwrap();
    pg.t.ok(&["secret", "delete", "db/keep", "--force", "--drop-accounts"]);
    assert!(pg_roles(&kept).await.is_empty());

    // Imported accounts belong to whoever made them: named, never dropped.
    let mut pg = pg;
    let own = pg.name("own");
    pg.role(&own, "", "Own-Password-123").await;
    let value = serde_json::json!({"AccountName": own, "AccountPassword": "Own-Password-123"});
    pg.t.ok(&create_rds(
        "db/own",
        "pg",
        &[
            "--sub-type",
            "SingleUser",
            "--database",
            &pg.db,
            "--value",
            &value.to_string(),
        ],
    ));
    let out =
        pg.t.run(&["secret", "delete", "db/own", "--force", "--drop-accounts"]);
    assert_refused(&out, 2, "rotor did not create", Some("Own-Password-123"));
    pg.t.ok(&["secret", "describe", "db/own"]);
    assert_eq!(
        pg_roles(std::slice::from_ref(&own)).await,
        vec![own.clone()]
    );
    let out = pg.t.run(&["secret", "delete", "db/own", "--force"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("left on target 'pg': account '{own}'")),
        "{text}"
    );
    assert!(text.contains("imported: rotor never drops them"), "{text}");
    assert_eq!(pg_roles(std::slice::from_ref(&own)).await, vec![own]);
    pg.cleanup(&[]).await;
}

#[tokio::test]
async fn mariadb_drop_accounts_removes_both_users_and_their_grants() {
    let (t, suffix, db) = maria().await;
    let app = format!("del_{suffix}");
    t.ok(&create_rds(
        "db/my",
        "maria",
        &["--account", &app, "--database", &db],
    ));
    let out = t.ok(&["secret", "delete", "db/my", "--force"]);
    assert!(out.contains(&format!("user '{app}'@'%'")), "{out}");
    assert!(out.contains(&format!("user '{app}_clone'@'%'")), "{out}");
    let mut conn = mysql_admin().await;
    assert_eq!(
        mysql_users(&mut conn, &app).await,
        2,
        "a plain delete leaves them"
    );
    let _ = conn
        .execute(format!("DROP USER '{app}'@'%', '{app}_clone'@'%'").as_str())
        .await;

    t.ok(&create_rds(
        "db/my",
        "maria",
        &["--account", &app, "--database", &db],
    ));
    // A user already gone by hand is not reported as dropped.
    conn.execute(format!("DROP USER '{app}_clone'@'%'").as_str())
        .await
        .unwrap();
    let out = t.ok(&["secret", "delete", "db/my", "--force", "--drop-accounts"]);
    assert!(out.contains("dropped from target 'maria'"), "{out}");
    assert!(out.contains(&format!("user '{app}'@'%'")), "{out}");
    assert!(!out.contains("_clone"), "the clone was gone already: {out}");
    assert_eq!(mysql_users(&mut conn, &app).await, 0, "both users are gone");
    let _ = conn
        .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
        .await;
}

#[tokio::test]
async fn redis_drop_accounts_removes_the_acl_users() {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let user = crate::databases::redis_pair(&t, "cache/app", "del", &["--privilege", "ReadOnly"]);
    let json = t.json(&["secret", "delete", "cache/app"]);
    let left: Vec<&str> = json["LeftOnTarget"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        left,
        vec![
            format!("ACL user '{user}'"),
            format!("ACL user '{user}_clone'")
        ],
        "{json}"
    );
    // A user already gone by hand is not reported as dropped.
    let mut admin = redis_admin().await;
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(format!("{user}_clone"))
        .query_async(&mut admin)
        .await
        .unwrap();
    let json = t.json(&[
        "secret",
        "delete",
        "cache/app",
        "--force",
        "--drop-accounts",
    ]);
    assert_eq!(
        json["DroppedFromTarget"],
        serde_json::json!([format!("ACL user '{user}'")]),
        "{json}"
    );
    for name in [user.clone(), format!("{user}_clone")] {
        let found: redis::Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(&name)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(found, redis::Value::Nil, "{name} is gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_that_cannot_drop_accounts_refuse_and_delete_nothing() {
    use crate::ram::{add_ram_target, env, keys_of, Emulator};
    let t = env(Backend::Sqlite).await;
    let emulator = Emulator::start();
    emulator
        .admin(rotators::ram::client::SignatureStyle::V3)
        .call("CreateUser", &[("UserName", "app")])
        .await
        .unwrap();
    let out = add_ram_target(&t, "cloud", &emulator, &[]);
    assert!(out.status.success(), "{out:?}");
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
    let keys = keys_of(&emulator, "app").await;
    let out = t.run(&["secret", "delete", "ram/app", "--force", "--drop-accounts"]);
    assert_refused(
        &out,
        2,
        "rotor cannot remove accounts from ram targets",
        None,
    );
    t.ok(&["secret", "describe", "ram/app"]);
    let out = t.ok(&["secret", "delete", "ram/app", "--force"]);
    assert!(
        out.contains("its credentials stay on target 'cloud'"),
        "{out}"
    );
    assert_eq!(
        keys_of(&emulator, "app").await,
        keys,
        "nothing changed on the target"
    );
}

/// Found by a hostile run: with an admin that may remove users but not save the ACL file,
/// `--drop-accounts` removed them from memory, failed at `ACL SAVE` and kept the secret —
/// pointing at users that no longer existed (and would come back at restart).
#[tokio::test]
async fn redis_drop_accounts_the_admin_cannot_save_removes_nothing() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let suffix = &rotor::crypto::random_id()[..8];
    let boss = format!("delboss_{suffix}");
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&boss)
        .arg(&["on", ">Del-Boss-Pass-1", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let out = crate::databases::add_target(
        &t,
        "redboss",
        "redis",
        &crate::databases::redis_url(),
        &boss,
        "Del-Boss-Pass-1",
    );
    assert!(out.status.success(), "{out:?}");
    let user = format!("delsave_{suffix}");
    t.ok(&[
        "secret",
        "create",
        "cache/keep",
        "--type",
        "Redis",
        "--target",
        "redboss",
        "--account",
        &user,
    ]);
    // The admin loses the right to save the ACL file.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&boss)
        .arg("-acl|save")
        .query_async(&mut admin)
        .await
        .unwrap();
    let out = t.run(&[
        "secret",
        "delete",
        "cache/keep",
        "--force",
        "--drop-accounts",
    ]);
    assert_refused(&out, 7, "acl|save", None);
    for name in [user.clone(), format!("{user}_clone")] {
        let found: redis::Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(&name)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_ne!(found, redis::Value::Nil, "{name} is still there");
    }
    t.ok(&["secret", "describe", "cache/keep"]);
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&[boss, user.clone(), format!("{user}_clone")])
        .query_async(&mut admin)
        .await
        .unwrap();
}
