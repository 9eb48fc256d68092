//! Every privilege level, on every database kind, dual and single account: a secret made in
//! create mode rotates (its `test` step proves the new credential with what the account may
//! do), and the rotated credential logs in and can do exactly what its level allows.

use sqlx::{Connection, Executor};

use crate::databases::{
    account_of, create_rds, maria, mysql_admin, mysql_url, redis_admin, redis_login, redis_target,
    scram_port, urlencode, Pg,
};
use crate::support::{assert_refused, Backend, TestEnv};

/// The two shapes of a database secret: dual accounts (the default) and a single account.
const SHAPES: [(&str, Option<&str>); 2] = [("dual", None), ("single", Some("SingleUser"))];

/// `rotor secret create SECRET --type TY [--sub-type SingleUser] --privilege P` with the
/// target `options`, which must succeed, then one rotation, which must succeed too.
fn create_and_rotate(
    t: &TestEnv,
    secret: &str,
    (ty, sub): (&str, Option<&str>),
    privilege: &str,
    options: &[&str],
) {
    let mut args = vec!["secret", "create", secret, "--type", ty];
    if let Some(sub) = sub {
        args.extend(["--sub-type", sub]);
    }
    args.extend(options);
    args.extend(["--privilege", privilege]);
    t.ok(&args);
    let out = t.run(&["rotate", secret]);
    assert!(
        out.status.success(),
        "{privilege} {secret}: the rotation fails ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- PostgreSQL ------------------------------------------------------------------------------

/// Runs `sql` in the test database as `who`.
async fn pg_as(pg: &Pg, (user, password): &(String, String), sql: &str) -> Result<(), String> {
    let url = format!(
        "postgres://{user}:{}@127.0.0.1:{}/{}",
        urlencode(password),
        scram_port(),
        pg.db
    );
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let done = conn
        .execute(sql)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = conn.close().await;
    done
}

/// What each level may do in PostgreSQL: (DDL allowed, read allowed, write allowed).
fn pg_level(privilege: &str) -> (bool, bool, bool) {
    match privilege {
        "ReadWrite" => (true, true, true),
        "ReadOnly" => (false, true, false),
        "DDLOnly" => (true, false, false),
        "DMLOnly" => (false, true, true),
        other => panic!("no level {other}"),
    }
}

async fn postgres_level(privilege: &str) {
    let pg = Pg::new().await;
    // A table the database's owner made before the accounts existed.
    let url = crate::databases::scram_url();
    let base = url.rsplit_once('/').unwrap().0;
    let mut in_db = sqlx::PgConnection::connect(&format!("{base}/{}", pg.db))
        .await
        .unwrap();
    in_db
        .execute(
            "CREATE TABLE seed (id int); INSERT INTO seed VALUES (1); \
             CREATE TABLE numbered (id serial PRIMARY KEY, note text)",
        )
        .await
        .unwrap();
    let _ = in_db.close().await;
    let (ddl, read, write) = pg_level(privilege);
    let mut roles = vec![];
    for (shape, sub) in SHAPES {
        let account = pg.name(&format!("p{}", &shape[..1]));
        let secret = format!("db/{shape}");
        let options = [
            "--target",
            "pg",
            "--account",
            &account,
            "--database",
            &pg.db,
        ];
        create_and_rotate(&pg.t, &secret, ("Rds", sub), privilege, &options);
        let who = account_of(&pg.t, &secret, "ACSCurrent").await;
        assert_eq!(
            pg.login(&who).await.as_deref(),
            Ok(who.0.as_str()),
            "{privilege} {shape}: the rotated credential logs in"
        );
        let table = format!("made_by_{}", who.0);
        let create = pg_as(&pg, &who, &format!("CREATE TABLE {table} (id int)")).await;
        assert_eq!(
            create.is_ok(),
            ddl,
            "{privilege} {shape}: CREATE TABLE: {create:?}"
        );
        let select = pg_as(&pg, &who, "SELECT id FROM seed").await;
        assert_eq!(
            select.is_ok(),
            read,
            "{privilege} {shape}: SELECT: {select:?}"
        );
        let insert = pg_as(&pg, &who, "INSERT INTO seed VALUES (2)").await;
        assert_eq!(
            insert.is_ok(),
            write,
            "{privilege} {shape}: INSERT: {insert:?}"
        );
        // A row whose key a sequence makes (`serial`): writing it takes the sequence too.
        let numbered = pg_as(&pg, &who, "INSERT INTO numbered (note) VALUES ('x')").await;
        assert_eq!(
            numbered.is_ok(),
            write,
            "{privilege} {shape}: INSERT into a serial table: {numbered:?}"
        );
        roles.push(account.clone());
        roles.push(format!("{account}_clone"));
        roles.push(format!("{account}_group"));
    }
    pg.cleanup(&roles).await;
}

#[tokio::test]
async fn postgres_read_write_accounts_rotate_and_read_write_and_create() {
    postgres_level("ReadWrite").await;
}

#[tokio::test]
async fn postgres_read_only_accounts_rotate_and_only_read() {
    postgres_level("ReadOnly").await;
}

#[tokio::test]
async fn postgres_ddl_only_accounts_rotate_and_only_create() {
    postgres_level("DDLOnly").await;
}

#[tokio::test]
async fn postgres_dml_only_accounts_rotate_and_only_read_and_write() {
    postgres_level("DMLOnly").await;
}

// ---- MariaDB ---------------------------------------------------------------------------------

/// Runs `sql` in database `db` as `who`.
async fn mysql_as((user, password): &(String, String), db: &str, sql: &str) -> Result<(), String> {
    let base = mysql_url();
    let host = base.rsplit_once('@').map(|(_, h)| h).unwrap_or(&base);
    let host = host.split('/').next().unwrap();
    let url = format!("mysql://{user}:{}@{host}/{db}", urlencode(password));
    let mut conn = sqlx::MySqlConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let done = conn
        .execute(sql)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = conn.close().await;
    done
}

async fn mysql_level(privilege: &str) {
    let (t, suffix, db) = maria().await;
    mysql_admin()
        .await
        .execute(
            format!("CREATE TABLE {db}.seed (id int); INSERT INTO {db}.seed VALUES (1)").as_str(),
        )
        .await
        .unwrap();
    // The same levels as PostgreSQL: DDLOnly creates, ReadOnly reads, DMLOnly reads and writes.
    let (ddl, read, write) = pg_level(privilege);
    let mut users = vec![];
    for (shape, sub) in SHAPES {
        let account = format!("m{}_{suffix}", &shape[..1]);
        let secret = format!("db/{shape}");
        let options = [
            "--target",
            "maria",
            "--account",
            &account,
            "--database",
            &db,
        ];
        create_and_rotate(&t, &secret, ("Rds", sub), privilege, &options);
        let who = account_of(&t, &secret, "ACSCurrent").await;
        let me = crate::databases::mysql_login(&who, &db).await;
        assert!(
            me.as_deref()
                .is_ok_and(|m| m.starts_with(&format!("{}@", who.0))),
            "{privilege} {shape}: the rotated credential logs in: {me:?}"
        );
        let table = format!("made_by_{}", who.0);
        let create = mysql_as(&who, &db, &format!("CREATE TABLE {table} (id int)")).await;
        assert_eq!(
            create.is_ok(),
            ddl,
            "{privilege} {shape}: CREATE TABLE: {create:?}"
        );
        let select = mysql_as(&who, &db, "SELECT id FROM seed").await;
        assert_eq!(
            select.is_ok(),
            read,
            "{privilege} {shape}: SELECT: {select:?}"
        );
        let insert = mysql_as(&who, &db, "INSERT INTO seed VALUES (2)").await;
        assert_eq!(
            insert.is_ok(),
            write,
            "{privilege} {shape}: INSERT: {insert:?}"
        );
        users.push(account.clone());
        users.push(format!("{account}_clone"));
    }
    let mut conn = mysql_admin().await;
    for user in users {
        let _ = conn
            .execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
            .await;
    }
    let _ = conn
        .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
        .await;
}

#[tokio::test]
async fn mariadb_read_write_accounts_rotate_and_read_write_and_create() {
    mysql_level("ReadWrite").await;
}

#[tokio::test]
async fn mariadb_read_only_accounts_rotate_and_only_read() {
    mysql_level("ReadOnly").await;
}

#[tokio::test]
async fn mariadb_ddl_only_accounts_rotate_and_only_create() {
    mysql_level("DDLOnly").await;
}

#[tokio::test]
async fn mariadb_dml_only_accounts_rotate_and_only_read_and_write() {
    mysql_level("DMLOnly").await;
}

// ---- Redis -----------------------------------------------------------------------------------

/// Runs one command as `who`; the server's answer or refusal.
async fn redis_as((user, password): &(String, String), args: &[&str]) -> Result<(), String> {
    let mut info: redis::ConnectionInfo = crate::databases::redis_url().parse().unwrap();
    info.redis.username = Some(user.clone());
    info.redis.password = Some(password.clone());
    let mut conn = redis::Client::open(info)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn redis_level(privilege: &str, write: bool) {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let suffix = &rotor::crypto::random_id()[..8];
    let key = format!("rotor_it_privileges_{suffix}");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("before")
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
    let mut users = vec![];
    for (shape, sub) in SHAPES {
        let account = format!("r{}_{suffix}", &shape[..1]);
        let secret = format!("cache/{shape}");
        let options = ["--target", "red", "--account", &account];
        create_and_rotate(&t, &secret, ("Redis", sub), privilege, &options);
        users.push(account.clone());
        users.push(format!("{account}_clone"));
        let who = account_of(&t, &secret, "ACSCurrent").await;
        // The rotated credential logs in as its user (AUTH succeeds; WHOAMI may be refused).
        let me = redis_login(&who).await;
        assert!(
            me.as_deref() == Ok(who.0.as_str()) || me.as_ref().is_err_and(|e| e.contains("NOPERM")),
            "{privilege} {shape}: the rotated credential logs in: {me:?}"
        );
        let get = redis_as(&who, &["GET", &key]).await;
        assert!(get.is_ok(), "{privilege} {shape}: GET: {get:?}");
        let set = redis_as(&who, &["SET", &key, "after"]).await;
        assert_eq!(set.is_ok(), write, "{privilege} {shape}: SET: {set:?}");
    }
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&users)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_read_write_accounts_rotate_and_read_and_write() {
    redis_level("ReadWrite", true).await;
}

#[tokio::test]
async fn redis_read_only_accounts_rotate_and_only_read() {
    redis_level("ReadOnly", false).await;
}

#[tokio::test]
async fn redis_refuses_the_sql_levels_as_bad_input_before_making_anything() {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let suffix = &rotor::crypto::random_id()[..8];
    for level in ["DDLOnly", "DMLOnly"] {
        let account = format!("rl_{suffix}");
        let out = t.run(&[
            "secret",
            "create",
            "cache/sql-level",
            "--type",
            "Redis",
            "--target",
            "red",
            "--account",
            &account,
            "--privilege",
            level,
        ]);
        // Bad input (exit 2), not a target failure (7): it names the levels Redis has.
        assert_refused(&out, 2, "they are ReadWrite or ReadOnly", None);
        let users: Vec<String> = redis::cmd("ACL")
            .arg("USERS")
            .query_async(&mut redis_admin().await)
            .await
            .unwrap();
        assert!(!users.iter().any(|u| u.starts_with(&account)), "{users:?}");
        assert_refused(
            &t.run(&["secret", "describe", "cache/sql-level"]),
            3,
            "does not exist",
            None,
        );
    }
}

// ---- Admins that lack what create mode grants ------------------------------------------------

/// Asserts a refused create left no raw server notice on stderr.
fn assert_no_raw_notice(out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("no privileges were granted")
            && !stderr.contains("sqlx::postgres::notice"),
        "a raw server notice leaked: {stderr}"
    );
}

#[tokio::test]
async fn postgres_create_fails_and_leaves_nothing_when_the_admin_may_not_grant() {
    use sqlx::Row;
    let mut pg = Pg::new().await;
    let adm = pg.name("creator");
    pg.role(&adm, "CREATEROLE", "Creator-Admin-Pass1").await;
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    assert!(pg
        .add_target("weak", &url, &adm, "Creator-Admin-Pass1")
        .status
        .success());
    // It may create roles (and rotate passwords), but owns no database: target check says
    // that create mode fails, and why.
    let out = pg.t.ok(&["target", "check", "weak"]);
    assert!(
        out.contains("may grant in no database, so create mode fails"),
        "{out}"
    );
    assert!(
        out.contains("CONNECT on it and USAGE and CREATE on its schema public"),
        "{out}"
    );

    let app = pg.name("ungranted");
    let out = pg.t.run(&create_rds(
        "db/x",
        "weak",
        &[
            "--account",
            &app,
            "--database",
            &pg.db,
            "--privilege",
            "ReadWrite",
        ],
    ));
    assert_refused(&out, 7, &format!("CONNECT on database {}", pg.db), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("USAGE and CREATE on schema public"),
        "{stderr}"
    );
    assert!(stderr.contains("WITH GRANT OPTION"), "{stderr}");
    assert_no_raw_notice(&out);
    assert_refused(
        &pg.t.run(&["secret", "describe", "db/x"]),
        3,
        "does not exist",
        None,
    );
    let left: i64 = sqlx::query("SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE $1")
        .bind(format!("{app}%"))
        .fetch_one(&mut crate::databases::admin().await)
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0, "no account, clone or group is left");

    // Owning the database (and so its schema public) is enough: check and create pass.
    crate::databases::admin()
        .await
        .execute(format!("ALTER DATABASE {} OWNER TO {adm}", pg.db).as_str())
        .await
        .unwrap();
    let out = pg.t.ok(&["target", "check", "weak"]);
    assert!(out.contains("may manage accounts"), "{out}");
    assert!(!out.contains("may grant in no database"), "{out}");
    // A table it does not own is still out of its reach for ReadOnly.
    let base = crate::databases::scram_url();
    let base = base.rsplit_once('/').unwrap().0;
    let mut in_db = sqlx::PgConnection::connect(&format!("{base}/{}", pg.db))
        .await
        .unwrap();
    in_db
        .execute("CREATE TABLE not_its (id int)")
        .await
        .unwrap();
    let out = pg.t.run(&create_rds(
        "db/x",
        "weak",
        &[
            "--account",
            &app,
            "--database",
            &pg.db,
            "--privilege",
            "ReadOnly",
        ],
    ));
    assert_refused(&out, 7, "SELECT on table(s) not_its", None);
    assert_no_raw_notice(&out);
    in_db.execute("DROP TABLE not_its").await.unwrap();
    let _ = in_db.close().await;
    let out = pg.t.run(&create_rds(
        "db/x",
        "weak",
        &[
            "--account",
            &app,
            "--database",
            &pg.db,
            "--privilege",
            "ReadWrite",
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_raw_notice(&out);
    let who = account_of(&pg.t, "db/x", "ACSCurrent").await;
    pg_as(&pg, &who, "CREATE TABLE made (id int)")
        .await
        .unwrap();
    pg.cleanup(&[
        app.clone(),
        format!("{app}_clone"),
        format!("{app}_group"),
        adm,
    ])
    .await;
}

#[tokio::test]
async fn mariadb_create_fails_and_leaves_nothing_when_the_admin_may_not_grant() {
    use sqlx::Row;
    let (t, suffix, db) = maria().await;
    let mut root = mysql_admin().await;
    // No GRANT OPTION at all: target check names it.
    let plain = format!("plain_{suffix}");
    root.execute(format!("CREATE USER '{plain}'@'%' IDENTIFIED BY 'Plain-Admin-Pass1'; GRANT CREATE USER ON *.* TO '{plain}'@'%'").as_str())
        .await
        .unwrap();
    let url = mysql_url();
    let host = url
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Stored without target add's check (the same check target check makes below).
    let added = crate::databases::add_target_with(
        &t,
        "plain",
        "mysql",
        &format!("mysql://{host}"),
        &plain,
        "Plain-Admin-Pass1",
        &["--no-check"],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_refused(
        &t.run(&["target", "check", "plain"]),
        7,
        "it lacks GRANT OPTION",
        None,
    );

    // CREATE USER and GRANT OPTION, but no privileges on the database to pass on.
    let adm = format!("adm_{suffix}");
    root.execute(format!("CREATE USER '{adm}'@'%' IDENTIFIED BY 'Maria-Admin-Pass1'; GRANT CREATE USER ON *.* TO '{adm}'@'%' WITH GRANT OPTION").as_str())
        .await
        .unwrap();
    // Without SELECT on the mysql schema it cannot read the accounts' grants a rotation copies
    // (found by a hostile run: the README's privileges were not enough): target add says so.
    let weak = |t: &TestEnv| {
        crate::databases::add_target(
            t,
            "weak",
            "mysql",
            &format!("mysql://{host}"),
            &adm,
            "Maria-Admin-Pass1",
        )
    };
    assert_refused(&weak(&t), 7, "it lacks SELECT on the mysql schema", None);
    root.execute(format!("GRANT SELECT ON mysql.* TO '{adm}'@'%'").as_str())
        .await
        .unwrap();
    let added = weak(&t);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let out = t.ok(&["target", "check", "weak"]);
    assert!(out.contains("it lacks SELECT, INSERT"), "{out}");
    let app = format!("ung_{suffix}");
    let out = t.run(&create_rds(
        "db/x",
        "weak",
        &[
            "--account",
            &app,
            "--database",
            &db,
            "--privilege",
            "ReadOnly",
        ],
    ));
    assert_refused(
        &out,
        7,
        &format!("may not grant ReadOnly privileges on database '{db}'"),
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("WITH GRANT OPTION"));
    assert_refused(
        &t.run(&["secret", "describe", "db/x"]),
        3,
        "does not exist",
        None,
    );
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM mysql.user WHERE User LIKE ?")
        .bind(format!("{app}%"))
        .fetch_one(&mut root)
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0, "no user is left");
    for user in [plain, adm] {
        let _ = root
            .execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
            .await;
    }
    let _ = root
        .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
        .await;
}

#[tokio::test]
async fn redis_create_fails_and_leaves_nothing_when_the_admin_may_not_save_users() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let suffix = &rotor::crypto::random_id()[..8];
    let adm = format!("adm_{suffix}");
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&adm)
        .arg(&["on", ">Redis-Admin-Pass1", "~*", "&*", "+@all", "-config"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    // Stored without target add's check (the same check target check makes below).
    let added = crate::databases::add_target_with(
        &t,
        "weak",
        "redis",
        &crate::databases::redis_url(),
        &adm,
        "Redis-Admin-Pass1",
        &["--no-check"],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_refused(
        &t.run(&["target", "check", "weak"]),
        7,
        "may not run config|get",
        None,
    );
    let user = format!("ung_{suffix}");
    let out = t.run(&[
        "secret",
        "create",
        "cache/x",
        "--type",
        "Redis",
        "--target",
        "weak",
        "--account",
        &user,
    ]);
    assert_refused(&out, 7, "may not run config|get", None);
    assert_refused(
        &t.run(&["secret", "describe", "cache/x"]),
        3,
        "does not exist",
        None,
    );
    for name in [user.clone(), format!("{user}_clone")] {
        let found: redis::Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(&name)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(found, redis::Value::Nil, "{name} was not left behind");
    }
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&adm)
        .query_async(&mut admin)
        .await
        .unwrap();
}
