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

    async fn check_admin(&self, target: &TargetContext) -> Result<(), RotateError> {
        let mut conn = as_admin(target).await?;
        let grants: Vec<String> = sqlx::query("SHOW GRANTS")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(target, "the admin", e))?
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .collect();
        let _ = conn.close().await;
        let can = grants.iter().any(|g| {
            let g = g.to_ascii_uppercase();
            (g.contains("ALL PRIVILEGES ON *.*") && g.contains("WITH GRANT OPTION"))
                || (g.contains("CREATE USER") && g.contains("GRANT OPTION"))
        });
        if can {
            Ok(())
        } else {
            Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not manage accounts (it needs CREATE USER and GRANT OPTION)",
                target.name
            )))
        }
    }

    async fn login(
        &self,
        target: &TargetContext,
        database: Option<&str>,
        account: &Account,
    ) -> Result<(), RotateError> {
        let mut conn = connect(target, account, database).await?;
        let who: String = sqlx::query("SELECT CURRENT_USER() AS who")
            .fetch_one(&mut conn)
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
        for a in accounts {
            let exists: i64 = sqlx::query("SELECT COUNT(*) AS n FROM mysql.user WHERE User = ?")
                .bind(&a.name)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| classify(target, "the admin", e))?
                .try_get("n")
                .map_err(|e| classify(target, "the admin", e))?;
            if exists > 0 {
                return Err(RotateError::fatal(format!(
                    "user '{}' already exists on target '{}'; import existing accounts instead",
                    a.name, target.name
                )));
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
            for sql in &statements {
                if let Err(e) = conn.execute(sql.as_str()).await {
                    let err = classify(target, "creating accounts", e);
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
