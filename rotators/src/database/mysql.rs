//! MySQL and MariaDB: accounts are `'name'@'%'` users. Dual accounts get identical grants at
//! creation, and before each rotation the partner's grants are replaced by the current
//! account's (`SHOW GRANTS`, grantee swapped), so grants added *and revoked* on the current
//! account are mirrored and the pair never drifts apart.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection, Row};

use super::account::{Account, DbSettings, Privilege};
use super::{hash, AccountServer};
use crate::rotator::{RotateError, TargetContext};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Accounts rotor manages connect from any host.
const HOST: &str = "%";

/// MySQL / MariaDB account management.
#[derive(Default)]
pub struct Mysql;

/// `'name'@'%'` (names are restricted to `[A-Za-z0-9_]`; quotes are escaped all the same).
fn user(name: &str) -> String {
    format!(
        "'{}'@'{HOST}'",
        name.replace('\\', "\\\\").replace('\'', "''")
    )
}

/// A database name in a GRANT: backquoted, with `_` and `%` escaped — in a grant's database
/// name they are wildcards, so `sec_db` would also cover `secXdb`.
fn quote_grant_db(name: &str) -> String {
    format!(
        "`{}`",
        name.replace('`', "``")
            .replace('\\', "\\\\")
            .replace('_', "\\_")
            .replace('%', "\\%")
    )
}

/// `IDENTIFIED …` with the password's `mysql_native_password` hash, never the password: MariaDB
/// takes `IDENTIFIED BY PASSWORD '*…'`, MySQL `IDENTIFIED WITH mysql_native_password AS '*…'`.
async fn identified(
    conn: &mut MySqlConnection,
    target: &TargetContext,
    account: &Account,
) -> Result<String, RotateError> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
    let hash = hash::mysql_native_hash(account.password());
    Ok(if version.contains("MariaDB") {
        format!("IDENTIFIED BY PASSWORD '{hash}'")
    } else {
        format!("IDENTIFIED WITH mysql_native_password AS '{hash}'")
    })
}

fn classify(target: &TargetContext, who: &str, e: sqlx::Error) -> RotateError {
    match &e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map_or(0, |e| e.number());
            let msg = format!(
                "MySQL target '{}' refused {who}: {} (error {number})",
                target.name,
                db.message()
            );
            match number {
                // too many connections, lock wait timeout, deadlock, shutting down, gone away, lost
                1040 | 1205 | 1213 | 1053 | 2006 | 2013 => RotateError::retryable(msg),
                _ => RotateError::fatal(msg),
            }
        }
        _ => RotateError::retryable(format!(
            "MySQL target '{}' is unreachable for {who}: {e}",
            target.name
        )),
    }
}

/// Which of `accounts` exist as `'name'@'%'` (all of them when the admin may not read
/// `mysql.user`: then `DROP USER IF EXISTS` cannot say, and none is taken for gone).
async fn existing_users(
    target: &TargetContext,
    conn: &mut MySqlConnection,
    accounts: &[String],
) -> Result<Vec<String>, RotateError> {
    let marks = vec!["?"; accounts.len()].join(", ");
    let sql = format!(
        "SELECT CONVERT(User USING utf8mb4) FROM mysql.user \
         WHERE Host = '{HOST}' AND User IN ({marks})"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for a in accounts {
        query = query.bind(a);
    }
    match query.fetch_all(&mut *conn).await {
        Ok(found) => Ok(accounts
            .iter()
            .filter(|a| found.contains(a))
            .cloned()
            .collect()),
        Err(e) if is_access_denied(&e) => Ok(accounts.to_vec()),
        Err(e) => Err(classify(target, "the admin", e)),
    }
}

async fn connect(
    target: &TargetContext,
    account: &Account,
    database: Option<&str>,
) -> Result<MySqlConnection, RotateError> {
    let url = target.url.as_str();
    let url = url.replacen("mariadb://", "mysql://", 1);
    let mut options = MySqlConnectOptions::from_str(&url)
        .map_err(|e| {
            RotateError::fatal(format!("target '{}' has a malformed URL: {e}", target.name))
        })?
        .username(&account.name)
        // Statements never reach rotor's own logs either (sqlx logs them at debug).
        .disable_statement_logging();
    // An empty password means none (MariaDB's root on a fresh install): send no password.
    if !account.password().is_empty() {
        options = options.password(account.password());
    }
    if let Some(db) = database {
        options = options.database(db);
    }
    let who = format!("login as '{}'", account.name);
    match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(target, &who, e)),
        Err(_) => Err(RotateError::retryable(format!(
            "MySQL target '{}' did not answer {who} in time",
            target.name
        ))),
    }
}

async fn as_admin(target: &TargetContext) -> Result<MySqlConnection, RotateError> {
    connect(target, &super::admin_account(target)?, None).await
}

/// The privileges each level grants on the account's database.
fn privileges(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::ReadWrite => {
            "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, \
             EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, REFERENCES"
        }
        Privilege::ReadOnly => "SELECT, LOCK TABLES, SHOW VIEW, EXECUTE",
        Privilege::DDLOnly => "CREATE, DROP, INDEX, ALTER, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, REFERENCES",
        Privilege::DMLOnly => "SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, SHOW VIEW, EVENT, TRIGGER",
    }
}

/// The server's error number, 0 for an error that is not the server's.
fn error_number(e: &sqlx::Error) -> u16 {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map_or(0, |e| e.number())
}

/// True when the server refused a statement for want of privileges.
fn is_access_denied(e: &sqlx::Error) -> bool {
    // dbaccess denied, access denied, table access denied, specific privilege needed,
    // not allowed to create a user with GRANT
    matches!(error_number(e), 1044 | 1045 | 1142 | 1227 | 1410)
}

/// The warnings the last statement raised, as an error: a grant that warns did not fully take.
async fn warnings(conn: &mut MySqlConnection, target: &TargetContext) -> Result<(), RotateError> {
    let rows = sqlx::query("SHOW WARNINGS")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(target, "reading warnings", e))?;
    let warned: Vec<String> = rows
        .iter()
        .filter(|r| r.try_get::<String, _>(0).is_ok_and(|level| level != "Note"))
        .map(|r| r.try_get::<String, _>(2).unwrap_or_default())
        .collect();
    if warned.is_empty() {
        Ok(())
    } else {
        Err(RotateError::fatal(format!(
            "MySQL target '{}' warned while creating accounts: {}",
            target.name,
            warned.join("; ")
        )))
    }
}

/// A `SHOW GRANTS` line for `from`, rewritten for `to`: the grantee swapped, any password hash
/// (MariaDB prints one on the USAGE line) removed.
fn retarget_grant(line: &str, from: &str, to: &str) -> Option<String> {
    let mut line = line.to_owned();
    if let Some(start) = line.find(" IDENTIFIED BY PASSWORD '") {
        let hash_start = start + " IDENTIFIED BY PASSWORD '".len();
        let end = line[hash_start..].find('\'').map(|i| hash_start + i + 1)?;
        line.replace_range(start..end, "");
    }
    for (a, b) in [
        (format!("`{from}`@`{HOST}`"), format!("`{to}`@`{HOST}`")),
        (format!("'{from}'@'{HOST}'"), format!("'{to}'@'{HOST}'")),
    ] {
        if line.contains(&a) {
            return Some(line.replace(&a, &b));
        }
    }
    None
}

#[async_trait]
impl AccountServer for Mysql {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn max_account_len(&self) -> usize {
        32
    }

    fn needs_database(&self) -> bool {
        true
    }

    async fn check_admin(&self, target: &TargetContext) -> Result<String, RotateError> {
        let mut conn = as_admin(target).await?;
        let fail = |e| classify(target, "the admin", e);
        let grants: Vec<String> = sqlx::query("SHOW GRANTS")
            .fetch_all(&mut conn)
            .await
            .map_err(fail)?
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .collect();
        // Its global privileges, and those it may grant, as the server lists them.
        let me: String = sqlx::query_scalar("SELECT CURRENT_USER()")
            .fetch_one(&mut conn)
            .await
            .map_err(fail)?;
        let (name, host) = me.rsplit_once('@').unwrap_or((me.as_str(), ""));
        let grantee = format!("'{name}'@'{host}'");
        let global: Vec<(String, String)> = sqlx::query(
            "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
        )
        .bind(&grantee)
        .fetch_all(&mut conn)
        .await
        .map_err(fail)?
        .iter()
        .map(|r| {
            (
                r.try_get::<String, _>(0).unwrap_or_default(),
                r.try_get::<String, _>(1).unwrap_or_default(),
            )
        })
        .collect();
        let in_databases: Vec<String> = sqlx::query(
            "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES \
             WHERE GRANTEE = ? AND IS_GRANTABLE = 'YES' ORDER BY 1",
        )
        .bind(&grantee)
        .fetch_all(&mut conn)
        .await
        .map_err(fail)?
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
        .collect();
        // Rotation reads the accounts' grants (SHOW GRANTS FOR), which needs SELECT on `mysql`.
        let reads_mysql: bool = sqlx::query_scalar(
            "SELECT COUNT(*) > 0 FROM information_schema.SCHEMA_PRIVILEGES \
             WHERE GRANTEE = ? AND TABLE_SCHEMA = 'mysql' AND PRIVILEGE_TYPE = 'SELECT'",
        )
        .bind(&grantee)
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
        let _ = conn.close().await;
        let upper: Vec<String> = grants.iter().map(|g| g.to_ascii_uppercase()).collect();
        let create_user = global.iter().any(|(p, _)| p == "CREATE USER")
            || upper
                .iter()
                .any(|g| g.contains("ALL PRIVILEGES ON *.*") || g.contains("CREATE USER"));
        let grant_option = upper.iter().any(|g| g.contains("GRANT OPTION"));
        let select_mysql = reads_mysql
            || global.iter().any(|(p, _)| p == "SELECT")
            || upper.iter().any(|g| g.contains("ALL PRIVILEGES ON *.*"));
        if !create_user || !grant_option || !select_mysql {
            let lacks: Vec<&str> = [
                (!create_user, "CREATE USER"),
                (!grant_option, "GRANT OPTION"),
                (!select_mysql, "SELECT on the mysql schema"),
            ]
            .iter()
            .filter(|(lacking, _)| *lacking)
            .map(|(_, p)| *p)
            .collect();
            return Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not manage accounts (it needs CREATE USER, GRANT OPTION and SELECT on the mysql schema, to read accounts' grants; it lacks {})",
                target.name,
                lacks.join(" and ")
            )));
        }
        let grantable: Vec<&str> = global
            .iter()
            .filter(|(_, g)| g == "YES")
            .map(|(p, _)| p.as_str())
            .collect();
        let lacking: Vec<&str> = privileges(Privilege::ReadWrite)
            .split(", ")
            .filter(|p| !grantable.contains(p))
            .collect();
        if lacking.is_empty() {
            return Ok(
                "logs in and may manage accounts and grant every level in every database".into(),
            );
        }
        let need = format!(
            "create mode grants only what the admin holds WITH GRANT OPTION on the account's database or on *.*; on *.* it lacks {}",
            lacking.join(", ")
        );
        Ok(if in_databases.is_empty() && grantable.is_empty() {
            format!("logs in and may manage accounts; but it may grant privileges nowhere, so create mode fails everywhere: {need}")
        } else if in_databases.is_empty() {
            format!("logs in and may manage accounts; {need}")
        } else {
            format!(
                "logs in and may manage accounts; {need} (it holds privileges WITH GRANT OPTION on databases {})",
                in_databases.join(", ")
            )
        })
    }

    async fn login(
        &self,
        target: &TargetContext,
        database: Option<&str>,
        account: &Account,
    ) -> Result<(), RotateError> {
        let mut conn = connect(target, account, database).await?;
        // The text protocol: one round trip (a prepared statement takes two, and this
        // connection runs one statement before it closes).
        let who: String = (&mut conn)
            .fetch_one("SELECT CURRENT_USER() AS who")
            .await
            .map_err(|e| classify(target, "a trivial query", e))?
            .try_get("who")
            .map_err(|e| classify(target, "a trivial query", e))?;
        let _ = conn.close().await;
        match who.rsplit_once('@') {
            Some((name, _)) if name == account.name => Ok(()),
            _ => Err(RotateError::fatal(format!(
                "logged in as '{who}', not '{}'",
                account.name
            ))),
        }
    }

    async fn set_password(
        &self,
        target: &TargetContext,
        account: &Account,
    ) -> Result<(), RotateError> {
        let mut conn = as_admin(target).await?;
        let sql = format!(
            "ALTER USER {} {}",
            user(&account.name),
            identified(&mut conn, target, account).await?
        );
        conn.execute(sql.as_str())
            .await
            .map_err(|e| classify(target, "a password change", e))?;
        let _ = conn.close().await;
        Ok(())
    }

    async fn create_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[Account],
    ) -> Result<(), RotateError> {
        let db = settings
            .database
            .as_deref()
            .ok_or_else(|| RotateError::fatal("MySQL accounts need a database (--database)"))?;
        let mut conn = as_admin(target).await?;
        let exists = |name: &str| {
            RotateError::fatal(format!(
                "user '{name}' already exists on target '{}'; import existing accounts instead",
                target.name
            ))
        };
        for a in accounts {
            // An admin that may not read mysql.user learns it from CREATE USER (error 1396).
            let found = sqlx::query("SELECT COUNT(*) AS n FROM mysql.user WHERE User = ?")
                .bind(&a.name)
                .fetch_one(&mut conn)
                .await;
            let n: i64 = match found {
                Ok(row) => row
                    .try_get("n")
                    .map_err(|e| classify(target, "the admin", e))?,
                Err(e) if is_access_denied(&e) => 0,
                Err(e) => return Err(classify(target, "the admin", e)),
            };
            if n > 0 {
                return Err(exists(&a.name));
            }
        }
        let grant = privileges(settings.privilege.unwrap_or(Privilege::ReadWrite));
        let mut created: Vec<String> = vec![];
        for a in accounts {
            let statements = [
                format!(
                    "CREATE USER {} {}",
                    user(&a.name),
                    identified(&mut conn, target, a).await?
                ),
                format!(
                    "GRANT {grant} ON {}.* TO {}",
                    quote_grant_db(db),
                    user(&a.name)
                ),
            ];
            for (i, sql) in statements.iter().enumerate() {
                let done = match conn.execute(sql.as_str()).await {
                    // The GRANT's warnings (CREATE USER may warn of a deprecated plugin).
                    Ok(_) if i == 1 => warnings(&mut conn, target).await,
                    Ok(_) => Ok(()),
                    Err(e) if i == 0 && error_number(&e) == 1396 => {
                        // Someone else's user: drop only those made here.
                        for name in &created {
                            let _ = conn
                                .execute(format!("DROP USER IF EXISTS {}", user(name)).as_str())
                                .await;
                        }
                        return Err(exists(&a.name));
                    }
                    Err(e) if i == 1 && is_access_denied(&e) => Err(RotateError::fatal(format!(
                        "the admin account of target '{}' may not grant {:?} privileges on database '{db}' ({grant}): it needs them WITH GRANT OPTION on that database or on *.*; the server said: {}",
                        target.name,
                        settings.privilege.unwrap_or(Privilege::ReadWrite),
                        e.as_database_error().map(|d| d.message().to_owned()).unwrap_or_default()
                    ))),
                    Err(e) => Err(classify(target, "creating accounts", e)),
                };
                if let Err(err) = done {
                    for name in &created {
                        let _ = conn
                            .execute(format!("DROP USER IF EXISTS {}", user(name)).as_str())
                            .await;
                    }
                    let _ = conn
                        .execute(format!("DROP USER IF EXISTS {}", user(&a.name)).as_str())
                        .await;
                    return Err(err);
                }
            }
            created.push(a.name.clone());
        }
        let _ = conn.close().await;
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
        let mut conn = as_admin(target).await?;
        let there = existing_users(target, &mut conn, accounts).await;
        // One statement: the users go with every grant they hold.
        let done = match there {
            Ok(there) if there.is_empty() => Ok(there),
            Ok(there) => {
                let users: Vec<String> = there.iter().map(|a| user(a)).collect();
                conn.execute(format!("DROP USER IF EXISTS {}", users.join(", ")).as_str())
                    .await
                    .map(|_| there)
                    .map_err(|e| classify(target, "removing accounts", e))
            }
            Err(e) => Err(e),
        };
        let _ = conn.close().await;
        Ok(self.describe_accounts(settings, &done?))
    }

    fn describe_accounts(&self, settings: &DbSettings, accounts: &[String]) -> Vec<String> {
        accounts
            .iter()
            .map(|a| match &settings.database {
                Some(db) => format!("user '{a}'@'{HOST}' with its grants on database '{db}'"),
                None => format!("user '{a}'@'{HOST}'"),
            })
            .collect()
    }

    async fn sync_privileges(
        &self,
        target: &TargetContext,
        _settings: &DbSettings,
        from: &str,
        to: &str,
    ) -> Result<(), RotateError> {
        let mut conn = as_admin(target).await?;
        let grants: Vec<String> = sqlx::query(&format!("SHOW GRANTS FOR {}", user(from)))
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(target, "reading grants", e))?
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter_map(|line| retarget_grant(&line, from, to))
            .collect();
        conn.execute(format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {}", user(to)).as_str())
            .await
            .map_err(|e| classify(target, "revoking grants", e))?;
        for grant in grants {
            conn.execute(grant.as_str())
                .await
                .map_err(|e| classify(target, "mirroring grants", e))?;
        }
        let _ = conn.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_retargeted_without_password_hashes() {
        let maria = "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*A4B6157319038724E3560894F7F932C8886EBFCF'";
        assert_eq!(
            retarget_grant(maria, "app", "app_clone").unwrap(),
            "GRANT USAGE ON *.* TO `app_clone`@`%`"
        );
        let with = "GRANT SELECT ON `db`.* TO `app`@`%` WITH GRANT OPTION";
        assert_eq!(
            retarget_grant(with, "app", "app_clone").unwrap(),
            "GRANT SELECT ON `db`.* TO `app_clone`@`%` WITH GRANT OPTION"
        );
        assert_eq!(
            retarget_grant("GRANT SELECT ON *.* TO `other`@`%`", "app", "x"),
            None
        );
    }
}
