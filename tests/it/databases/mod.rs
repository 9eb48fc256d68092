//! Database rotators against real servers. PostgreSQL runs on a throwaway cluster that checks
//! passwords (scram-sha-256; `tests/run` starts it on port 55432), because the machine's own
//! cluster trusts every local login and would let a wrong password through.

mod logs;
mod managed;
mod mysql;
mod postgres;
mod redis_acl;
mod targets;

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

/// `secret create NAME --type Rds --target TARGET MORE…`, the command almost every database
/// test starts with.
pub(crate) fn create_rds<'a>(name: &'a str, target: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "secret", "create", name, "--type", "Rds", "--target", target,
    ];
    args.extend_from_slice(more);
    args
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

    /// [`Pg::cleanup`] with the roles of a dual-account secret on account `base`: `base`, its
    /// `_clone` and the `_group` both belong to.
    pub async fn cleanup_dual(&self, base: &str) {
        self.cleanup(&[
            base.to_owned(),
            format!("{base}_clone"),
            format!("{base}_group"),
        ])
        .await
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

/// Drops a MariaDB test's users and databases (best effort: cleanup never fails a test).
pub(crate) async fn mysql_cleanup(users: &[&str], databases: &[&str]) {
    let mut conn = mysql_admin().await;
    for user in users {
        let _ = conn
            .execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
            .await;
    }
    for db in databases {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
            .await;
    }
}

pub(crate) async fn account_of(t: &TestEnv, secret: &str, stage: &str) -> (String, String) {
    let v = t.json(&["secret", "get", secret, "--stage", stage]);
    let data: serde_json::Value = serde_json::from_str(v["SecretData"].as_str().unwrap()).unwrap();
    (
        data["AccountName"].as_str().unwrap().into(),
        data["AccountPassword"].as_str().unwrap().into(),
    )
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

/// A Redis dual-account secret `secret` on target `red` in create mode, for a fresh user named
/// `PREFIX_<random>` (returned), with `more` arguments.
pub(crate) fn redis_pair(t: &TestEnv, secret: &str, prefix: &str, more: &[&str]) -> String {
    let user = format!("{prefix}_{}", &rotor::crypto::random_id()[..8]);
    let mut args = vec![
        "secret",
        "create",
        secret,
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
    ];
    args.extend_from_slice(more);
    t.ok(&args);
    user
}

/// Drops the dual pair `user` and `user_clone` a test made.
pub(crate) async fn redis_drop_pair(user: &str) {
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(user)
        .arg(format!("{user}_clone"))
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
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
