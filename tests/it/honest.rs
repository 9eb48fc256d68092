//! Single-account failures are honest and recoverable (issue 24, point 2). A rotation that
//! changes its one password in place and then fails in `test` puts `ACSCurrent` back and says
//! so; when it cannot (here: the target's admin lost its rights mid-rotation), the failure, `describe`
//! and the audit log say the target holds the pending credential, and `rotor rotate` or a
//! checked `secret import` recovers it.
//!
//! Real PostgreSQL and Redis, the real database rotator; the only thing added is the failure
//! itself: [`FailTest`] runs the real `test` and then reports a fatal failure once (after
//! optionally breaking the target's admin account through the server's superuser).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rotators::{
    RotateError, RotationContext, Rotator, SecretKind, SecretType, SecretValue, SubType,
};
use rotor::engine::{Engine, EngineConfig, Outcome};
use rotor::model::SecretName;
use rotor::store::{OpenMode, Store};
use sqlx::Executor;
use tokio_util::sync::CancellationToken;

use crate::databases::{
    account_of, add_target, admin, login, redis_admin, redis_login, redis_url, scram_port, Pg,
};
use crate::operations::Receiver;
use crate::ssh::{add_target as add_host, import_file, ok, value};
use crate::sshd::{HostUser, Sshd, Sudo};
use crate::support::{Backend, TestEnv};

/// What [`FailTest`] breaks before it reports its failure.
#[derive(Clone)]
enum Break {
    Nothing,
    /// A statement run as the PostgreSQL superuser.
    Pg(String),
    /// An `ACL SETUSER` run as Redis's default user.
    RedisAcl(Vec<String>),
}

/// The real rotator, whose `test` fails (fatally) its first `fails` times — after the real
/// test passed, so the pending credential is surely on the target.
struct FailTest {
    inner: Arc<dyn Rotator>,
    fails: AtomicU32,
    breaks: Break,
}

#[async_trait]
impl Rotator for FailTest {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        self.inner.create(cx).await
    }
    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        self.inner.set(cx, pending).await
    }
    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        self.inner.test(cx, pending).await?;
        if self
            .fails
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Ok(());
        }
        match &self.breaks {
            Break::Nothing => {}
            Break::Pg(sql) => {
                admin().await.execute(sql.as_str()).await.unwrap();
            }
            Break::RedisAcl(args) => {
                let _: () = redis::cmd("ACL")
                    .arg("SETUSER")
                    .arg(args)
                    .query_async(&mut redis_admin().await)
                    .await
                    .unwrap();
            }
        }
        Err(RotateError::fatal("forced test failure"))
    }
    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        self.inner.check(cx).await
    }
}

/// An engine on `t`'s store whose `ty`/`sub` rotator fails its test once.
async fn engine(t: &TestEnv, ty: SecretType, sub: SubType, breaks: Break) -> Engine {
    let store = Store::open(&t.config(), OpenMode::Existing).await.unwrap();
    let mut registry = rotor::builtin_rotators();
    let kind = SecretKind::new(ty, Some(sub)).unwrap();
    let inner = registry.get(kind).unwrap();
    registry.register(
        kind,
        Arc::new(FailTest {
            inner,
            fails: AtomicU32::new(1),
            breaks,
        }),
    );
    let config = EngineConfig {
        max_attempts: 1,
        test_retries: 0,
        test_retry_delay: Duration::from_millis(10),
        ..EngineConfig::default()
    };
    Engine::new(store, registry, config)
}

/// Runs a manual rotation that must fail; returns its reason.
async fn failed_rotation(engine: &Engine, secret: &str) -> String {
    let name = SecretName::parse(secret).unwrap();
    match engine
        .rotate_now(&name, &CancellationToken::new())
        .await
        .unwrap()
    {
        Outcome::Failed { error, .. } => error,
        other => panic!("expected a failed rotation, got {other:?}"),
    }
}

fn audit_detail(t: &TestEnv, secret: &str, action: &str) -> String {
    let records = t.json(&["audit", "--secret", secret, "--action", action]);
    let last = records.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Outcome"], "failed", "{last}");
    last["Detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn postgres_single_account_failing_its_test_puts_the_current_password_back() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let solo = pg.name("honest");
    t.ok(&[
        "secret",
        "create",
        "db/honest",
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
    let before = account_of(t, "db/honest", "ACSCurrent").await;
    let engine = engine(t, SecretType::Rds, SubType::SingleUser, Break::Nothing).await;
    let error = failed_rotation(&engine, "db/honest").await;
    assert!(
        error.contains("the current credential was put back on the target and logs in"),
        "{error}"
    );
    assert_eq!(account_of(t, "db/honest", "ACSCurrent").await, before);
    assert_eq!(pg.login(&before).await.unwrap(), solo, "ACSCurrent logs in");
    let info = t.json(&["secret", "describe", "db/honest"]);
    assert_eq!(info["RotationStatus"], "Failed", "{info}");
    assert!(info.get("TargetHoldsPending").is_none(), "{info}");
    assert_eq!(
        info["RotationStep"], "set",
        "the next attempt sets again: {info}"
    );
    assert!(audit_detail(t, "db/honest", "rotation.test").contains("put back"));

    // The next rotation sets the pending password again and completes.
    t.ok(&["rotate", "db/honest"]);
    let after = account_of(t, "db/honest", "ACSCurrent").await;
    assert_ne!(after, before);
    assert_eq!(pg.login(&after).await.unwrap(), solo);
    assert!(pg.login(&before).await.is_err());
    pg.cleanup(&[solo]).await;
}

/// Found by a hostile run: the put-back's `set` went through but its login was refused for
/// another reason (the account limited to no connections), and rotor claimed the target held
/// the pending credential. It holds ACSCurrent: the reason says it was set back.
#[tokio::test]
async fn postgres_single_account_set_back_but_refused_logins_is_not_called_pending() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let solo = pg.name("limited");
    t.ok(&[
        "secret",
        "create",
        "db/limited",
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
    let before = account_of(t, "db/limited", "ACSCurrent").await;
    let breaks = Break::Pg(format!("ALTER ROLE {solo} CONNECTION LIMIT 0"));
    let engine = engine(t, SecretType::Rds, SubType::SingleUser, breaks).await;
    let error = failed_rotation(&engine, "db/limited").await;
    assert!(
        error.contains(
            "the current credential was set back on the target, but logging in with it failed too"
        ),
        "{error}"
    );
    assert!(!error.contains("holds the pending"), "{error}");
    let info = t.json(&["secret", "describe", "db/limited"]);
    assert!(info.get("TargetHoldsPending").is_none(), "{info}");
    assert_eq!(
        info["RotationStep"], "set",
        "the next attempt sets again: {info}"
    );
    // Once the account may log in again, ACSCurrent is what the server holds.
    admin()
        .await
        .execute(format!("ALTER ROLE {solo} CONNECTION LIMIT -1").as_str())
        .await
        .unwrap();
    assert_eq!(pg.login(&before).await.unwrap(), solo, "ACSCurrent logs in");
    t.ok(&["rotate", "db/limited"]);
    let after = account_of(t, "db/limited", "ACSCurrent").await;
    assert_ne!(after, before);
    assert_eq!(pg.login(&after).await.unwrap(), solo);
    pg.cleanup(&[solo]).await;
}

#[tokio::test]
async fn postgres_single_account_that_cannot_be_put_back_says_so_and_rotate_recovers_it() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let boss = pg.name("hboss");
    admin()
        .await
        .execute(
            format!("CREATE ROLE {boss} LOGIN CREATEROLE PASSWORD 'Boss-Initial-Pass1'").as_str(),
        )
        .await
        .unwrap();
    // Create mode needs an admin that may grant on the database: it owns the test's database.
    admin()
        .await
        .execute(format!("ALTER DATABASE {} OWNER TO {boss}", pg.db).as_str())
        .await
        .unwrap();
    let url = format!("postgres://127.0.0.1:{}/postgres", scram_port());
    let out = add_target(t, "pgb", "postgres", &url, &boss, "Boss-Initial-Pass1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let solo = pg.name("stuck");
    t.ok(&[
        "secret",
        "create",
        "db/stuck",
        "--type",
        "Rds",
        "--sub-type",
        "SingleUser",
        "--target",
        "pgb",
        "--database",
        &pg.db,
        "--account",
        &solo,
    ]);
    let before = account_of(t, "db/stuck", "ACSCurrent").await;
    // The admin loses the right to manage accounts mid-rotation: nothing can be put back.
    let breaks = Break::Pg(format!("ALTER ROLE {boss} NOCREATEROLE"));
    let engine = engine(t, SecretType::Rds, SubType::SingleUser, breaks).await;
    let error = failed_rotation(&engine, "db/stuck").await;
    assert!(
        error.contains("the target holds the pending credential (version v2), not ACSCurrent"),
        "{error}"
    );
    assert!(error.contains("rotor rotate db/stuck"), "{error}");
    let pending = account_of(t, "db/stuck", "ACSPending").await;
    assert_eq!(
        at(&pending).await.unwrap(),
        solo,
        "the target holds ACSPending"
    );
    assert!(at(&before).await.is_err(), "ACSCurrent is refused");
    let info = t.json(&["secret", "describe", "db/stuck"]);
    assert_eq!(info["TargetHoldsPending"], true, "{info}");
    let human = t.ok(&["secret", "describe", "db/stuck"]);
    assert!(human.contains("Target holds:"), "{human}");
    assert!(audit_detail(t, "db/stuck", "rotation.test").contains("holds the pending credential"));

    // Once the admin is fixed, rotor rotate resumes the job and promotes what the target holds.
    admin()
        .await
        .execute(format!("ALTER ROLE {boss} CREATEROLE").as_str())
        .await
        .unwrap();
    t.ok(&["rotate", "db/stuck"]);
    assert_eq!(account_of(t, "db/stuck", "ACSCurrent").await, pending);
    assert_eq!(at(&pending).await.unwrap(), solo);
    let info = t.json(&["secret", "describe", "db/stuck"]);
    assert_eq!(info["RotationStatus"], "Idle", "{info}");
    assert!(info.get("TargetHoldsPending").is_none(), "{info}");
    pg.cleanup(&[solo, boss]).await;
}

/// Logs in to the `postgres` database as `(user, password)`.
async fn at((user, password): &(String, String)) -> Result<String, String> {
    login(user, password, "postgres", scram_port()).await
}

async fn redis_user_gone(users: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(users)
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_single_user_failing_its_test_puts_the_current_password_back() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let out = add_target(&t, "red", "redis", &redis_url(), "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = format!("hon_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/honest",
        "--type",
        "Redis",
        "--sub-type",
        "SingleUser",
        "--target",
        "red",
        "--account",
        &user,
        "--privilege",
        "ReadWrite",
    ]);
    let before = account_of(&t, "cache/honest", "ACSCurrent").await;
    let engine = engine(&t, SecretType::Redis, SubType::SingleUser, Break::Nothing).await;
    let error = failed_rotation(&engine, "cache/honest").await;
    assert!(
        error.contains("put back on the target and logs in"),
        "{error}"
    );
    assert_eq!(
        redis_login(&before).await.unwrap(),
        user,
        "ACSCurrent logs in"
    );
    let info = t.json(&["secret", "describe", "cache/honest"]);
    assert!(info.get("TargetHoldsPending").is_none(), "{info}");
    t.ok(&["rotate", "cache/honest"]);
    let after = account_of(&t, "cache/honest", "ACSCurrent").await;
    assert_eq!(redis_login(&after).await.unwrap(), user);
    assert!(redis_login(&before).await.is_err());
    redis_user_gone(&[&user]).await;
}

#[tokio::test]
async fn redis_single_user_that_cannot_be_put_back_says_so_and_a_checked_import_recovers_it() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let boss = format!("hadm_{}", &rotor::crypto::random_id()[..8]);
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&boss)
        .arg(&["on", ">Radm-Initial-Pass1", "~*", "&*", "+@all"][..])
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
    let out = add_target(
        &t,
        "redx",
        "redis",
        &redis_url(),
        &boss,
        "Radm-Initial-Pass1",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = format!("stk_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/stuck",
        "--type",
        "Redis",
        "--sub-type",
        "SingleUser",
        "--target",
        "redx",
        "--account",
        &user,
        "--privilege",
        "ReadWrite",
    ]);
    let before = account_of(&t, "cache/stuck", "ACSCurrent").await;
    let breaks = Break::RedisAcl(vec![
        boss.clone(),
        "resetpass".into(),
        ">Radm-Broken-Pass1".into(),
    ]);
    // A webhook hears it too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let hook = Receiver::start(listener, 0).await;
    let settings = rotor::config::WebhookSettings {
        url: hook_url,
        events: vec![],
        secret: Some("Honest-Hook-Key-0123456789".into()),
        secret_file: None,
        max_attempts: 3,
        timeout: Duration::from_secs(5),
        due_soon: Duration::from_secs(3600),
    };
    let (notifier, dispatcher) = rotor::notify::Notifier::start(&[settings])
        .unwrap()
        .unwrap();
    let engine = engine(&t, SecretType::Redis, SubType::SingleUser, breaks)
        .await
        .with_notifier(notifier);
    let error = failed_rotation(&engine, "cache/stuck").await;
    assert!(
        error.contains("the target holds the pending credential"),
        "{error}"
    );
    let notice = hook
        .wait_for("secret_failed", "cache/stuck", Duration::from_secs(20))
        .await
        .json();
    assert_eq!(notice["TargetHoldsPending"], true, "{notice}");
    assert_eq!(notice["VersionId"], "v2", "{notice}");
    drop(engine);
    dispatcher.finish(Duration::from_secs(5)).await;
    let pending = account_of(&t, "cache/stuck", "ACSPending").await;
    assert_eq!(redis_login(&pending).await.unwrap(), user);
    assert!(redis_login(&before).await.is_err());
    let info = t.json(&["secret", "describe", "cache/stuck"]);
    assert_eq!(info["TargetHoldsPending"], true, "{info}");

    // The admin fixed, the operator imports the credential the target holds: checked, it ends
    // the failed job.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&boss)
        .arg(&["resetpass", ">Radm-Initial-Pass1"][..])
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
    let value = serde_json::json!({"AccountName": pending.0, "AccountPassword": pending.1});
    t.ok(&[
        "secret",
        "import",
        "cache/stuck",
        "--value",
        &value.to_string(),
    ]);
    assert_eq!(account_of(&t, "cache/stuck", "ACSCurrent").await, pending);
    let info = t.json(&["secret", "describe", "cache/stuck"]);
    assert_eq!(info["RotationStatus"], "Idle", "{info}");
    assert!(info.get("TargetHoldsPending").is_none(), "{info}");
    // And it rotates again as usual.
    t.ok(&["rotate", "cache/stuck"]);
    let after = account_of(&t, "cache/stuck", "ACSCurrent").await;
    assert_eq!(redis_login(&after).await.unwrap(), user);
    redis_user_gone(&[&user, &boss]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_password_failing_its_test_is_put_back_through_passwd() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    ok(add_host(
        &t,
        "host",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));
    let good = serde_json::json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/honest",
        "--type",
        "ECS",
        "--sub-type",
        "Password",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &good),
    ]);
    let engine = engine(&t, SecretType::ECS, SubType::Password, Break::Nothing).await;
    let error = failed_rotation(&engine, "host/honest").await;
    assert!(
        error.contains("put back on the target and logs in"),
        "{error}"
    );
    assert_eq!(
        sshd.login_password(&user.name, &user.password).unwrap(),
        user.name,
        "ACSCurrent logs in"
    );
    t.ok(&["rotate", "host/honest"]);
    let current = value(&t, "host/honest", "ACSCurrent");
    let password = current["Password"].as_str().unwrap();
    assert_eq!(
        sshd.login_password(&user.name, password).unwrap(),
        user.name
    );
    assert!(sshd.login_password(&user.name, &user.password).is_err());
}
