//! Redis: accounts are ACL users. Dual accounts get the same rules at creation, and before each
//! rotation the partner's keys, channels and commands are replaced by the current user's
//! (passwords untouched), so the pair stays identical. When the server keeps its users in an ACL
//! file, every change is saved to it (`ACL SAVE`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{Client, ConnectionInfo, RedisError, Value};

use super::account::{Account, DbSettings, Privilege};
use super::{hash, AccountServer};
use crate::rotator::{RotateError, TargetContext};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Redis ACL user management.
#[derive(Default)]
pub struct Redis;

fn classify(target: &TargetContext, who: &str, e: RedisError) -> RotateError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        RotateError::retryable(format!(
            "Redis target '{}' is unreachable for {who}: {e}",
            target.name
        ))
    } else {
        RotateError::fatal(format!("Redis target '{}' refused {who}: {e}", target.name))
    }
}

async fn connect(
    target: &TargetContext,
    account: &Account,
) -> Result<MultiplexedConnection, RotateError> {
    let url = target.url.as_str();
    let mut info = ConnectionInfo::from_str(url).map_err(|e| {
        RotateError::fatal(format!("target '{}' has a malformed URL: {e}", target.name))
    })?;
    // The default user without a password needs no AUTH at all.
    if !(account.name == "default" && account.password().is_empty()) {
        info.redis.username = Some(account.name.clone());
        info.redis.password = Some(account.password().to_owned());
    }
    let who = format!("login as '{}'", account.name);
    let client = Client::open(info).map_err(|e| classify(target, &who, e))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(target, &who, e)),
        Err(_) => Err(RotateError::retryable(format!(
            "Redis target '{}' did not answer {who} in time",
            target.name
        ))),
    }
}

/// Saves the users to the ACL file, if the server uses one.
async fn persist(
    target: &TargetContext,
    conn: &mut MultiplexedConnection,
) -> Result<(), RotateError> {
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("aclfile")
        .query_async(conn)
        .await
        .map_err(|e| classify(target, "reading its ACL file setting", e))?;
    if config.get(1).is_some_and(|f| !f.is_empty()) {
        redis::cmd("ACL")
            .arg("SAVE")
            .query_async::<()>(conn)
            .await
            .map_err(|e| classify(target, "ACL SAVE", e))?;
    }
    Ok(())
}

/// The commands the admin runs that its ACL rules forbid (`ACL DRYRUN`, Redis 7), named as
/// Redis names them (`config|get`); empty when it may run them all. On a server without
/// `ACL DRYRUN`, listing the users is the check.
async fn admin_lacks(
    target: &TargetContext,
    conn: &mut MultiplexedConnection,
    admin: &str,
) -> Result<Vec<String>, RotateError> {
    const PROBE: &str = "rotor_permission_probe";
    let needed: [&[&str]; 5] = [
        &["ACL", "SETUSER", PROBE],
        &["ACL", "GETUSER", PROBE],
        &["ACL", "DELUSER", PROBE],
        &["CONFIG", "GET", "aclfile"],
        &["ACL", "SAVE"],
    ];
    let mut lacking = vec![];
    for command in needed {
        let answer: Result<Value, RedisError> = redis::cmd("ACL")
            .arg("DRYRUN")
            .arg(admin)
            .arg(command)
            .query_async(conn)
            .await;
        match answer {
            Ok(Value::Okay) => {}
            Ok(_) => lacking.push(format!(
                "{}|{}",
                command[0].to_ascii_lowercase(),
                command[1].to_ascii_lowercase()
            )),
            Err(e) if e.code() == Some("NOPERM") => {
                lacking.push("acl|dryrun".into());
                break;
            }
            Err(e)
                if e.to_string()
                    .to_ascii_lowercase()
                    .contains("unknown subcommand") =>
            {
                // Redis 6: no dry run; the admin must at least list the users.
                redis::cmd("ACL")
                    .arg("USERS")
                    .query_async::<Vec<String>>(conn)
                    .await
                    .map_err(|e| match classify(target, "the admin", e) {
                        RotateError::Fatal(m) => RotateError::fatal(format!(
                            "{m}; the admin account may not manage users"
                        )),
                        other => other,
                    })?;
                return Ok(vec![]);
            }
            Err(e) => return Err(classify(target, "the admin", e)),
        }
    }
    Ok(lacking)
}

/// The levels a Redis account has: its ACL rules cannot tell DDL from DML.
const LEVELS: &[Privilege] = &[Privilege::ReadWrite, Privilege::ReadOnly];

/// The ACL rules of a privilege level.
fn rules(privilege: Privilege) -> Result<&'static [&'static str], RotateError> {
    match privilege {
        Privilege::ReadWrite => Ok(&["~*", "&*", "+@all", "-@dangerous"]),
        Privilege::ReadOnly => Ok(&["~*", "&*", "+@read", "+@connection"]),
        other => Err(RotateError::fatal(format!(
            "Redis accounts are ReadWrite or ReadOnly, not {other:?}"
        ))),
    }
}

/// Reads one field of `ACL GETUSER` as text tokens.
fn acl_field(fields: &[Value], name: &str) -> Vec<String> {
    let mut it = fields.iter();
    while let Some(key) = it.next() {
        let value = it.next();
        if matches!(key, Value::BulkString(k) if k == name.as_bytes())
            || matches!(key, Value::SimpleString(k) if k == name)
        {
            return match value {
                Some(Value::BulkString(v)) => String::from_utf8_lossy(v)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                Some(Value::SimpleString(v)) => v.split_whitespace().map(str::to_owned).collect(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| match i {
                        Value::BulkString(v) => Some(String::from_utf8_lossy(v).into_owned()),
                        Value::SimpleString(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => vec![],
            };
        }
    }
    vec![]
}

#[async_trait]
impl AccountServer for Redis {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn max_account_len(&self) -> usize {
        128
    }

    fn privileges(&self) -> &'static [Privilege] {
        LEVELS
    }

    async fn check_admin(&self, target: &TargetContext) -> Result<String, RotateError> {
        let admin = super::admin_account(target)?;
        let mut conn = connect(target, &admin).await?;
        let lacking = admin_lacks(target, &mut conn, &admin.name).await?;
        if lacking.is_empty() {
            Ok("logs in and may manage ACL users".into())
        } else {
            Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not manage users: it may not run {}",
                target.name,
                lacking.join(", ")
            )))
        }
    }

    async fn login(
        &self,
        target: &TargetContext,
        _database: Option<&str>,
        account: &Account,
    ) -> Result<(), RotateError> {
        // The proof is the successful `AUTH name password` of the connection itself.
        let mut conn = connect(target, account).await?;
        // A server without ACLs (before Redis 6) refuses the two-argument AUTH and the client
        // falls back to the password alone, i.e. to the default user: ask who we are. A user
        // whose rules forbid `ACL WHOAMI` (ReadOnly: `+@read +@connection`) gets NOPERM, which
        // only a server with ACLs answers, so its AUTH named the user.
        let who: String = match redis::cmd("ACL").arg("WHOAMI").query_async(&mut conn).await {
            Ok(who) => who,
            Err(e) if e.code() == Some("NOPERM") => return Ok(()),
            Err(e) => return Err(classify(target, "ACL WHOAMI", e)),
        };
        if who == account.name {
            Ok(())
        } else {
            Err(RotateError::fatal(format!(
                "logged in as '{who}', not '{}'",
                account.name
            )))
        }
    }

    async fn set_password(
        &self,
        target: &TargetContext,
        account: &Account,
    ) -> Result<(), RotateError> {
        let mut conn = connect(target, &super::admin_account(target)?).await?;
        // The SHA-256 of the password, never the password: MONITOR and the slowlog see only it.
        let password = hash::redis_password_hash(account.password());
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&account.name)
            .arg("resetpass")
            .arg(password.as_str())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| classify(target, "a password change", e))?;
        persist(target, &mut conn).await
    }

    async fn create_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[Account],
    ) -> Result<(), RotateError> {
        let rules = rules(settings.privilege.unwrap_or(Privilege::ReadWrite))?;
        let admin = super::admin_account(target)?;
        let mut conn = connect(target, &admin).await?;
        // Every command creating, saving and removing users needs, checked before any runs.
        let lacking = admin_lacks(target, &mut conn, &admin.name).await?;
        if !lacking.is_empty() {
            return Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not run {}, which create mode needs",
                target.name,
                lacking.join(", ")
            )));
        }
        for a in accounts {
            let existing: Value = redis::cmd("ACL")
                .arg("GETUSER")
                .arg(&a.name)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(target, "the admin", e))?;
            if !matches!(existing, Value::Nil) {
                return Err(RotateError::fatal(format!(
                    "user '{}' already exists on target '{}'; import existing accounts instead",
                    a.name, target.name
                )));
            }
        }
        let mut made = vec![];
        let mut done = Ok(());
        for a in accounts {
            let password = hash::redis_password_hash(a.password());
            done = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&a.name)
                .arg("reset")
                .arg("on")
                .arg(password.as_str())
                .arg(rules)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| classify(target, "creating users", e));
            made.push(a.name.clone());
            if done.is_err() {
                break;
            }
        }
        if done.is_ok() {
            done = persist(target, &mut conn).await;
        }
        if let Err(e) = done {
            // Leave no user behind that the store does not hold.
            let _: Result<(), _> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&made)
                .query_async(&mut conn)
                .await;
            let _ = persist(target, &mut conn).await;
            return Err(e);
        }
        Ok(())
    }

    async fn remove_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[String],
    ) -> Result<Vec<String>, RotateError> {
        if accounts.is_empty() {
            return Ok(vec![]);
        }
        let admin = super::admin_account(target)?;
        let mut conn = connect(target, &admin).await?;
        // All or nothing: a removal the ACL file could not keep would come back at restart,
        // so what removing and saving need is checked before anything is removed.
        let lacking = admin_lacks(target, &mut conn, &admin.name).await?;
        if !lacking.is_empty() {
            return Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not run {}, which removing users needs; nothing was removed",
                target.name,
                lacking.join(", ")
            )));
        }
        let users: Vec<String> = redis::cmd("ACL")
            .arg("USERS")
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(target, "listing users", e))?;
        let there: Vec<String> = accounts
            .iter()
            .filter(|a| users.contains(a))
            .cloned()
            .collect();
        if there.is_empty() {
            return Ok(vec![]);
        }
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&there)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| classify(target, "removing users", e))?;
        persist(target, &mut conn).await?;
        Ok(self.describe_accounts(settings, &there))
    }

    fn describe_accounts(&self, _settings: &DbSettings, accounts: &[String]) -> Vec<String> {
        accounts.iter().map(|a| format!("ACL user '{a}'")).collect()
    }

    async fn sync_privileges(
        &self,
        target: &TargetContext,
        _settings: &DbSettings,
        from: &str,
        to: &str,
    ) -> Result<(), RotateError> {
        let mut conn = connect(target, &super::admin_account(target)?).await?;
        let user: Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(from)
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(target, "reading ACL rules", e))?;
        let fields = match user {
            Value::Array(f) => f,
            Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => {
                return Err(RotateError::fatal(format!(
                    "user '{from}' does not exist on target '{}'",
                    target.name
                )))
            }
        };
        let mut args = vec![
            "resetkeys".to_owned(),
            "resetchannels".to_owned(),
            "-@all".to_owned(),
        ];
        args.extend(acl_field(&fields, "keys"));
        args.extend(acl_field(&fields, "channels"));
        args.extend(acl_field(&fields, "commands"));
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(to)
            .arg(&args)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| classify(target, "mirroring ACL rules", e))?;
        persist(target, &mut conn).await
    }
}
