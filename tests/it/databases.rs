//! Database rotators against real servers. PostgreSQL runs on a throwaway cluster that checks
//! passwords (scram-sha-256; `tests/run` starts it on port 55432), because the machine's own
//! cluster trusts every local login and would let a wrong password through.

use std::process::{Output, Stdio};
use std::time::Duration;

use rotor::model::SecretName;
use rotor::store::{OpenMode, Store};
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::support::{assert_refused, Backend, TestEnv};

/// The password-checking PostgreSQL's admin URL.
pub(crate) fn scram_url() -> String {
    std::env::var("ROTOR_TEST_PG_SCRAM")
        .unwrap_or_else(|_| "postgres://postgres:rotor-scram-admin@127.0.0.1:55432/postgres".into())
}

pub(crate) fn scram_port() -> u16 {
    scram_url()
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap_or(55432)
}

/// `rotor target add`, the admin password given on standard input.
pub(crate) fn add_target(
    t: &TestEnv,
    name: &str,
    kind: &str,
    url: &str,
    user: &str,
    password: &str,
) -> Output {
    add_target_with(t, name, kind, url, user, password, &[])
}

/// [`add_target`] with more arguments (`--no-check`).
pub(crate) fn add_target_with(
    t: &TestEnv,
    name: &str,
    kind: &str,
    url: &str,
    user: &str,
    password: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "target",
        "add",
        name,
        "--kind",
        kind,
        "--url",
        url,
        "--admin-user",
        user,
        "--admin-password-stdin",
    ];
    args.extend_from_slice(extra);
    t.run_with_stdin(&args, password)
}

pub(crate) async fn admin() -> PgConnection {
    PgConnection::connect(&scram_url()).await.unwrap_or_else(|e| {
        panic!("the password-checking PostgreSQL at {} is not reachable ({e}); tests/run starts it", scram_url())
    })
}

/// Logs in as `user` and returns `session_user`, or the server's refusal.
pub(crate) async fn login(
    user: &str,
    password: &str,
    db: &str,
    port: u16,
) -> Result<String, String> {
    let url = format!(
        "postgres://{user}:{}@127.0.0.1:{port}/{db}",
        urlencode(password)
    );
    let mut conn = PgConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let who: String = sqlx::query("SELECT session_user::text AS who")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?
        .get("who");
    Ok(who)
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One test's slice of the shared cluster: a database and role names of its own.
pub(crate) struct Pg {
    pub t: TestEnv,
    pub suffix: String,
    pub db: String,
    roles: Vec<String>,
}

impl Pg {
    pub async fn new() -> Pg {
        let t = TestEnv::new(Backend::Sqlite).await;
        let suffix = rotor::crypto::random_id()[..8].to_owned();
        let db = format!("appdb_{suffix}");
        admin()
            .await
            .execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .unwrap();
        t.ok(&["init"]);
        let pg = Pg {
            t,
            suffix,
            db,
            roles: vec![],
        };
        let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
        let password = scram_url()
            .split(':')
            .nth(2)
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_owned();
        let out = pg.add_target("pg", &url, "postgres", &password);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    pub fn name(&self, base: &str) -> String {
        format!("{base}_{}", self.suffix)
    }

    pub(crate) fn add_target(&self, name: &str, url: &str, user: &str, password: &str) -> Output {
        add_target(&self.t, name, "postgres", url, user, password)
    }

    async fn store(&self) -> Store {
        Store::open(&self.t.config(), OpenMode::Existing)
            .await
            .unwrap()
    }

    /// (account, password) of a stage.
    async fn account(&self, secret: &str, stage: &str) -> (String, String) {
        let v = self.t.json(&["secret", "get", secret, "--stage", stage]);
        let data: serde_json::Value =
            serde_json::from_str(v["SecretData"].as_str().unwrap()).unwrap();
        (
            data["AccountName"].as_str().unwrap().into(),
            data["AccountPassword"].as_str().unwrap().into(),
        )
    }

    pub async fn login(&self, (user, password): &(String, String)) -> Result<String, String> {
        login(user, password, &self.db, scram_port()).await
    }

    pub(crate) async fn role(&mut self, name: &str, options: &str, password: &str) {
        admin()
            .await
            .execute(format!("CREATE ROLE {name} LOGIN {options} PASSWORD '{password}'").as_str())
            .await
            .unwrap();
        self.roles.push(name.into());
    }

    pub async fn cleanup(&self, extra_roles: &[String]) {
        let mut conn = admin().await;
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db).as_str())
            .await;
        for role in self.roles.iter().chain(extra_roles) {
            let _ = conn
                .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
                .await;
        }
    }
}

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
    let out = pg.t.ok(&[
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
        "--privilege",
        "ReadWrite",
        "--rotation-interval",
        "7d",
    ]);
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
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
}

#[tokio::test]
async fn objects_either_account_creates_stay_usable_by_the_other() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    pg.t.ok(&[
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
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
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
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
    let out = pg.t.run(&[
        "secret",
        "create",
        "db/imp",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--database",
        &pg.db,
        "--value",
        &value("Wrong-Pass-B1"),
    ]);
    assert_refused(&out, 2, "does not log in", Some("Wrong-Pass-B1"));
    assert_refused(
        &pg.t.run(&["secret", "describe", "db/imp"]),
        3,
        "does not exist",
        None,
    );

    pg.t.ok(&[
        "secret",
        "create",
        "db/imp",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--database",
        &pg.db,
        "--value",
        &value("Imported-Pass-B1"),
    ]);
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
    pg.t.ok(&[
        "secret",
        "create",
        "db/solo",
        "--type",
        "Rds",
        "--sub-type",
        "SingleUser",
        "--target",
        "pg",
        "--value",
        &value,
    ]);
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
        let out = pg.t.run(&[
            "secret",
            "create",
            "db/bad",
            "--type",
            "Rds",
            "--target",
            "pg",
            "--account",
            bad,
            "--database",
            &pg.db,
        ]);
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
    let out = pg.t.run(&[
        "secret",
        "create",
        "db/never",
        "--type",
        "Rds",
        "--target",
        "weak",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
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
    pg.t.ok(&[
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--target",
        "flaky",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
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
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
}

// ---- MySQL / MariaDB -------------------------------------------------------------------------

pub(crate) fn mysql_url() -> String {
    std::env::var("ROTOR_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub(crate) async fn mysql_admin() -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect(&mysql_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MariaDB/MySQL at {} is not reachable ({e}); start it (see .ci/run)",
                mysql_url()
            )
        })
}

pub(crate) async fn mysql_login(
    (user, password): &(String, String),
    db: &str,
) -> Result<String, String> {
    let base = mysql_url();
    let host = base
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or("127.0.0.1:3306/test");
    let host = host.split('/').next().unwrap();
    let url = format!("mysql://{user}:{}@{host}/{db}", urlencode(password));
    let mut conn = sqlx::MySqlConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let who: String = sqlx::query("SELECT CURRENT_USER() AS who")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?
        .get("who");
    Ok(who)
}

async fn grants(user: &str) -> Vec<String> {
    let mut conn = mysql_admin().await;
    let mut lines: Vec<String> = sqlx::query(&format!("SHOW GRANTS FOR '{user}'@'%'"))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .filter(|g| !g.starts_with("GRANT USAGE"))
        .map(|g| g.replace(&format!("`{user}`@`%`"), "`ACCOUNT`@`%`"))
        .collect();
    lines.sort();
    lines
}

/// A store with a `maria` target on the machine's MariaDB, and a database of the test's own.
pub(crate) async fn maria() -> (TestEnv, String, String) {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let suffix = rotor::crypto::random_id()[..8].to_owned();
    let db = format!("myapp_{suffix}");
    mysql_admin()
        .await
        .execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .unwrap();
    let url = mysql_url();
    let (user_part, host) = url.trim_start_matches("mysql://").split_once('@').unwrap();
    let (user, password) = user_part.split_once(':').unwrap_or((user_part, ""));
    let out = add_target(
        &t,
        "maria",
        "mysql",
        &format!("mysql://{host}"),
        user,
        password,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (t, suffix, db)
}

pub(crate) async fn account_of(t: &TestEnv, secret: &str, stage: &str) -> (String, String) {
    let v = t.json(&["secret", "get", secret, "--stage", stage]);
    let data: serde_json::Value = serde_json::from_str(v["SecretData"].as_str().unwrap()).unwrap();
    (
        data["AccountName"].as_str().unwrap().into(),
        data["AccountPassword"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn mysql_dual_accounts_survive_20_rotations_with_grants_mirrored_both_ways() {
    let (t, suffix, db) = maria().await;
    let app = format!("my_{suffix}");
    t.ok(&[
        "secret",
        "create",
        "db/my",
        "--type",
        "Rds",
        "--target",
        "maria",
        "--account",
        &app,
        "--database",
        &db,
    ]);
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
    let out = t.run(&[
        "secret",
        "create",
        "db/bad",
        "--type",
        "Rds",
        "--target",
        "maria",
        "--account",
        "x'y",
        "--database",
        &db,
    ]);
    assert_refused(&out, 2, "account name", None);
    let out = t.run(&[
        "secret",
        "create",
        "db/bad",
        "--type",
        "Rds",
        "--target",
        "maria",
        "--account",
        &"m".repeat(27),
        "--database",
        &db,
    ]);
    assert_refused(&out, 2, "allows 32 characters", None);
    let mut conn = mysql_admin().await;
    for user in [app.clone(), format!("{app}_clone")] {
        let _ = conn
            .execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
            .await;
    }
    let _ = conn
        .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
        .await;
}

// ---- Redis -----------------------------------------------------------------------------------

pub(crate) fn redis_url() -> String {
    std::env::var("ROTOR_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub(crate) async fn redis_admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {} is not reachable ({e}); start it (see .ci/run)",
                redis_url()
            )
        })
}

/// Logs in as `user` and returns `ACL WHOAMI`: who the server says we are.
pub(crate) async fn redis_login((user, password): &(String, String)) -> Result<String, String> {
    let mut info: redis::ConnectionInfo = redis_url().parse().unwrap();
    info.redis.username = Some(user.clone());
    info.redis.password = Some(password.clone());
    let mut conn = redis::Client::open(info)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

async fn acl_rules(user: &str) -> String {
    let list: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
    let line = list
        .into_iter()
        .find(|l| l.starts_with(&format!("user {user} ")))
        .expect("user exists");
    // Drop the name and the password hashes: the rest is the rules.
    line.split_whitespace()
        .skip(2)
        .filter(|w| !w.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) async fn redis_target(t: &TestEnv) {
    t.ok(&["init"]);
    let out = add_target(t, "red", "redis", &redis_url(), "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn redis_dual_acl_users_survive_20_rotations() {
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    let user = format!("rd_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/app",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
        "--privilege",
        "ReadWrite",
    ]);
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
    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .arg(format!("{user}_clone"))
        .query_async(&mut admin)
        .await
        .unwrap();
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
    pg.t.ok(&[
        "secret",
        "create",
        "db/tls",
        "--type",
        "Rds",
        "--target",
        "tls",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
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
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
}

#[tokio::test]
async fn targets_are_removed_with_their_admin_secret_only_when_no_secret_uses_them() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    pg.t.ok(&[
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
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
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
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

// --- No password in any log: the servers' statement logs and rotor's own trace logs ---

/// Runs rotor with `ROTOR_LOG=trace` (as every test does) in the given log format, and keeps
/// what it printed on stderr for the log checks.
fn logged(t: &TestEnv, args: &[&str], json_logs: bool, logs: &mut String) -> Output {
    let format = if json_logs { "json" } else { "text" };
    let out = t
        .rotor()
        .args(["--log-format", format])
        .args(args)
        .output()
        .unwrap();
    logs.push_str(&String::from_utf8_lossy(&out.stderr));
    out
}

/// The password of every version rotor holds for `secret` (pending ones included).
fn stored_passwords(t: &TestEnv, secret: &str) -> Vec<String> {
    let versions = t.json(&["secret", "versions", secret]);
    versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let id = v["VersionId"].as_str().unwrap();
            let got = t.json(&["secret", "get", secret, "--version-id", id]);
            let data: serde_json::Value =
                serde_json::from_str(got["SecretData"].as_str().unwrap()).unwrap();
            data["AccountPassword"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn assert_no_password(haystack: &str, passwords: &[String], what: &str) {
    assert!(!passwords.is_empty());
    for password in passwords {
        assert!(
            !haystack.contains(password.as_str()),
            "{what} shows a password"
        );
    }
}

/// An import file for accounts `a` and `b`, whose passwords the tests set as
/// `Imported-Pass-A1` and `Imported-Pass-B1`.
fn write_import(dir: &std::path::Path, a: &str, b: &str) -> std::path::PathBuf {
    let import = serde_json::json!({"Accounts": [
        {"AccountName": a, "AccountPassword": "Imported-Pass-A1"},
        {"AccountName": b, "AccountPassword": "Imported-Pass-B1"},
    ]})
    .to_string();
    crate::support::write_file(dir, "import.json", import.as_bytes())
}

fn file_len(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn read_from(path: &str, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    String::from_utf8_lossy(&bytes[offset.min(bytes.len() as u64) as usize..]).into_owned()
}

#[tokio::test]
async fn postgres_statement_logs_and_trace_logs_never_show_a_password() {
    let mut pg = Pg::new().await;
    let log = std::env::var("ROTOR_TEST_PG_SCRAM_LOG").unwrap_or_else(|_| {
        let ca =
            std::env::var("ROTOR_TEST_PG_SCRAM_CA").expect("tests/run sets ROTOR_TEST_PG_SCRAM_CA");
        format!("{}/server.log", ca.rsplit_once('/').unwrap().0)
    });
    // Accounts to import, made by the test (its own statements carry their passwords).
    let (a, b) = (pg.name("imp_a"), pg.name("imp_b"));
    pg.role(&a, "", "Imported-Pass-A1").await;
    pg.role(&b, "", "Imported-Pass-B1").await;
    let mut conn = admin().await;
    conn.execute(format!("GRANT CONNECT ON DATABASE {} TO {a}, {b}", pg.db).as_str())
        .await
        .unwrap();
    // Every statement logged from here on.
    conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    conn.execute("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = file_len(&log);

    let app = pg.name("app");
    let mut logs = String::new();
    let t = &pg.t;
    let create = [
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
    ];
    assert!(logged(t, &create, true, &mut logs).status.success());
    for json_logs in [false, true] {
        let out = logged(t, &["rotate", "db/app"], json_logs, &mut logs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = write_import(&t.data_dir(), &a, &b);
    let create_import = [
        "secret",
        "create",
        "db/imp",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--database",
        &pg.db,
        "--value-file",
        file.to_str().unwrap(),
    ];
    assert!(logged(t, &create_import, false, &mut logs).status.success());
    assert!(logged(t, &["rotate", "db/imp"], true, &mut logs)
        .status
        .success());
    // A forced failure: the partner account is gone, so setting its password fails (and
    // PostgreSQL logs the failing statement); the pending password stays in the store.
    conn.execute(format!("DROP ROLE {app}_clone").as_str())
        .await
        .unwrap();
    let out = logged(t, &["rotate", "db/app"], false, &mut logs);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conn.execute("ALTER SYSTEM RESET log_statement")
        .await
        .unwrap();
    conn.execute("SELECT pg_reload_conf()").await.unwrap();

    let mut passwords = stored_passwords(t, "db/app");
    assert_eq!(passwords.len(), 5, "two created, two rotated, one pending");
    passwords.extend(stored_passwords(t, "db/imp"));
    let server = read_from(&log, start);
    assert!(
        server.contains("PASSWORD 'SCRAM-SHA-256$"),
        "the server log holds rotor's statements (with verifiers)"
    );
    assert_no_password(&server, &passwords, "PostgreSQL's statement log");
    assert!(logs.contains("step starts"), "rotor logged its steps");
    assert!(
        !logs.contains('\x1b'),
        "no colour codes when stderr is not a terminal"
    );
    assert_no_password(&logs, &passwords, "rotor's trace logs");
    pg.cleanup(&[app.clone(), format!("{app}_group")]).await;
}

#[tokio::test]
async fn mysql_general_log_and_trace_logs_never_show_a_password() {
    let (t, suffix, db) = maria().await;
    let mut conn = mysql_admin().await;
    let (a, b) = (format!("ia_{suffix}"), format!("ib_{suffix}"));
    for (user, pw) in [(&a, "Imported-Pass-A1"), (&b, "Imported-Pass-B1")] {
        conn.execute(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'").as_str())
            .await
            .unwrap();
        conn.execute(format!("GRANT SELECT ON {db}.* TO '{user}'@'%'").as_str())
            .await
            .unwrap();
    }
    let log: String = sqlx::query_scalar("SELECT @@general_log_file")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let datadir: String = sqlx::query_scalar("SELECT @@datadir")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let log = if log.starts_with('/') {
        log
    } else {
        format!("{datadir}/{log}")
    };
    conn.execute("SET GLOBAL general_log = 1").await.unwrap();
    let start = file_len(&log);

    let app = format!("my_{suffix}");
    let mut logs = String::new();
    let create = [
        "secret",
        "create",
        "db/my",
        "--type",
        "Rds",
        "--target",
        "maria",
        "--account",
        &app,
        "--database",
        &db,
    ];
    assert!(logged(&t, &create, false, &mut logs).status.success());
    for json_logs in [true, false] {
        assert!(logged(&t, &["rotate", "db/my"], json_logs, &mut logs)
            .status
            .success());
    }
    let file = write_import(&t.data_dir(), &a, &b);
    let create_import = [
        "secret",
        "create",
        "db/imp",
        "--type",
        "Rds",
        "--target",
        "maria",
        "--database",
        &db,
        "--value-file",
        file.to_str().unwrap(),
    ];
    assert!(logged(&t, &create_import, true, &mut logs).status.success());
    assert!(logged(&t, &["rotate", "db/imp"], false, &mut logs)
        .status
        .success());
    conn.execute(format!("DROP USER '{app}_clone'@'%'").as_str())
        .await
        .unwrap();
    let out = logged(&t, &["rotate", "db/my"], true, &mut logs);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conn.execute("SET GLOBAL general_log = 0").await.unwrap();

    let mut passwords = stored_passwords(&t, "db/my");
    assert_eq!(passwords.len(), 5, "two created, two rotated, one pending");
    passwords.extend(stored_passwords(&t, "db/imp"));
    let server = read_from(&log, start);
    assert!(
        server.contains("IDENTIFIED BY PASSWORD '*"),
        "the general log holds rotor's statements (with hashes)"
    );
    assert_no_password(&server, &passwords, "MariaDB's general log");
    assert_no_password(&logs, &passwords, "rotor's trace logs");
    for user in [&a, &b, &app] {
        let _ = conn
            .execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
            .await;
    }
    let _ = conn
        .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
        .await;
}

#[tokio::test]
async fn redis_monitor_and_trace_logs_never_show_a_password() {
    use std::io::{Read as _, Write as _};
    let t = TestEnv::new(Backend::Sqlite).await;
    redis_target(&t).await;
    // MONITOR on a connection of its own, read in the background until the test ends.
    let addr = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut monitor = std::net::TcpStream::connect(&addr).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    monitor
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = monitor.read(&mut buf) {
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        })
    };
    // And the slowlog, with every command in it for the test's length.
    let mut admin = redis_admin().await;
    let slower: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-log-slower-than")
        .query_async(&mut admin)
        .await
        .unwrap();
    let config = |k: &str, v: &str| redis::cmd("CONFIG").arg("SET").arg(k).arg(v).to_owned();
    config("slowlog-log-slower-than", "0")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    config("slowlog-max-len", "100000")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let suffix = rotor::crypto::random_id()[..8].to_owned();
    let user = format!("mon_{suffix}");
    let mut logs = String::new();
    let create = [
        "secret",
        "create",
        "kv/app",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
    ];
    assert!(logged(&t, &create, true, &mut logs).status.success());
    for json_logs in [false, true] {
        assert!(logged(&t, &["rotate", "kv/app"], json_logs, &mut logs)
            .status
            .success());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let slowlog: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg("-1")
        .query_async(&mut admin)
        .await
        .unwrap();
    config("slowlog-log-slower-than", &slower[1])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let slowlog = format!("{slowlog:?}");
    let passwords = stored_passwords(&t, "kv/app");
    assert!(
        seen.contains("WHOAMI"),
        "MONITOR saw rotor's logins: {seen}"
    );
    assert_no_password(&seen, &passwords, "Redis MONITOR");
    assert!(
        slowlog.contains("SETUSER"),
        "the slowlog holds rotor's commands: {slowlog}"
    );
    assert_no_password(&slowlog, &passwords, "Redis's slowlog");
    assert_no_password(&logs, &passwords, "rotor's trace logs");
    for u in [user.clone(), format!("{user}_clone")] {
        let _: redis::RedisResult<()> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&u)
            .query_async(&mut admin)
            .await;
    }
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
    t.ok(&[
        "secret",
        "create",
        "db/wc",
        "--type",
        "Rds",
        "--target",
        "maria",
        "--account",
        &app,
        "--database",
        &db,
    ]);
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
    for user in [app.clone(), format!("{app}_clone")] {
        let _ = conn
            .execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
            .await;
    }
    for d in [&db, &lookalike] {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {d}").as_str())
            .await;
    }
}

#[tokio::test]
async fn managed_secrets_change_only_by_rotation_checked_import_or_rollback() {
    let pg = Pg::new().await;
    let app = pg.name("app");
    let clone = format!("{app}_clone");
    let t = &pg.t;
    t.ok(&[
        "secret",
        "create",
        "db/app",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
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
    t.ok(&[
        "secret",
        "create",
        "db/solo",
        "--type",
        "Rds",
        "--sub-type",
        "SingleUser",
        "--target",
        "pg",
        "--account",
        &solo,
        "--database",
        &pg.db,
    ]);
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

// --- One rotation suite, every output scanned: JSON logs, metrics, the audit log ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_suite_leaves_no_value_in_json_logs_metrics_or_the_audit_log() {
    use crate::workers::{http_get, terminate, wait_rotated};
    let pg = Pg::new().await;
    let t = &pg.t;
    let out = add_target(t, "red", "redis", &redis_url(), "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = pg.name("scan");
    let redis_user = format!("rs_{}", pg.suffix);
    t.ok(&[
        "secret",
        "create",
        "db/scan",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
    t.ok(&[
        "secret",
        "create",
        "cache/scan",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &redis_user,
        "--privilege",
        "ReadWrite",
    ]);
    for name in ["db/scan", "cache/scan"] {
        t.ok(&["rotation", "set", name, "--interval", "1d", "--rotate-now"]);
    }
    // A worker with JSON logs at trace level, metrics, and audited reads.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = t
        .rotor()
        .args(["--log-format", "json", "worker", "--poll", "100ms"])
        .args(["--metrics-listen", &addr])
        .env("ROTOR_AUDIT_READS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = pg.store().await;
    for name in ["db/scan", "cache/scan"] {
        wait_rotated(&store, name, Duration::from_secs(60)).await;
    }
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("rotor_rotations_total"), "{metrics}");
    // More rotations and reads from one-shot commands, logging JSON too.
    let mut logs = String::new();
    for name in ["db/scan", "cache/scan"] {
        let out = logged(t, &["rotate", name], true, &mut logs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = t
            .rotor()
            .env("ROTOR_AUDIT_READS", "true")
            .args(["--log-format", "json", "secret", "get", name])
            .output()
            .unwrap();
        assert!(out.status.success());
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    terminate(&mut worker);
    let mut worker_logs = String::new();
    std::io::Read::read_to_string(&mut worker.stderr.take().unwrap(), &mut worker_logs).unwrap();
    let audit = t.ok(&["--json", "audit"]);

    // One JSON object per line; the steps carry the secret, step, attempt and duration.
    let mut steps_done = 0;
    for line in worker_logs.lines().chain(logs.lines()) {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
        if event["target"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rotor")
        {
            assert!(event["fields"]["message"].is_string(), "{line}");
        }
        if event["fields"]["message"] == "step done" {
            steps_done += 1;
            let f = &event["fields"];
            assert!(
                f["step"].is_string() && f["attempt"].is_u64() && f["duration_ms"].is_u64(),
                "{line}"
            );
            let secret = event["span"]["secret"].as_str().unwrap_or_default();
            assert!(secret == "db/scan" || secret == "cache/scan", "{line}");
        }
    }
    assert!(
        steps_done >= 12,
        "create, set and test of four rotations: {steps_done}"
    );
    let audit_json: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let records = audit_json.as_array().unwrap();
    for name in ["db/scan", "cache/scan"] {
        let of = |action: &str| {
            records
                .iter()
                .filter(|r| r["SecretName"] == name && r["Action"] == action)
                .count()
        };
        assert_eq!(of("rotation.promote"), 2, "{name}");
        assert_eq!(of("secret.read"), 1, "{name}");
    }

    // Every value involved: each version of both secrets and the targets' admin password.
    let mut values = stored_passwords(t, "db/scan");
    values.extend(stored_passwords(t, "cache/scan"));
    assert_eq!(
        values.len(),
        8,
        "current and previous of two accounts, per secret"
    );
    let admin = scram_url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    values.push(admin);
    assert_no_password(&worker_logs, &values, "the worker's JSON logs");
    assert_no_password(&logs, &values, "the commands' JSON logs");
    assert_no_password(&metrics, &values, "/metrics");
    assert_no_password(&audit, &values, "the audit log");

    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&redis_user)
        .arg(format!("{redis_user}_clone"))
        .query_async(&mut admin)
        .await
        .unwrap();
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
}
