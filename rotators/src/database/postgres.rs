//! PostgreSQL: accounts are roles. Dual accounts log in as members of one NOLOGIN group role
//! and take it on at login (`ALTER ROLE … SET role`), so whatever either creates is owned by the
//! group and stays fully usable by the other, across rotations. Privileges are granted to the
//! group, so the two accounts' privileges are identical by construction.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool, Row};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::account::{Account, DbSettings, Privilege};
use super::{hash, AccountServer};
use crate::rotator::{RotateError, TargetContext};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// PostgreSQL account management. Keeps one small admin pool per target.
#[derive(Default)]
pub struct Postgres {
    admin_pools: Mutex<HashMap<String, (Zeroizing<String>, PgPool)>>,
    /// Each target's `scram_iterations`, read once: any count makes a valid verifier.
    scram_iterations: Mutex<HashMap<String, u32>>,
}

/// `"name"` with inner quotes doubled (names are also restricted to `[A-Za-z0-9_]`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled (standard_conforming_strings, on since PostgreSQL 9.1).
fn quote_literal(text: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("'{}'", text.replace('\'', "''")))
}

fn options(
    target: &TargetContext,
    account: &Account,
    database: Option<&str>,
) -> Result<PgConnectOptions, RotateError> {
    let mut options = PgConnectOptions::from_str(target.url.as_str())
        .map_err(|e| {
            RotateError::fatal(format!("target '{}' has a malformed URL: {e}", target.name))
        })?
        .username(&account.name)
        .password(account.password())
        // Statements never reach rotor's own logs either (sqlx logs them at debug).
        .disable_statement_logging();
    if let Some(db) = database {
        options = options.database(db);
    }
    Ok(options)
}

/// Sorts a server error into retryable (unreachable, busy) or fatal (refused, not allowed).
fn classify(target: &TargetContext, who: &str, e: sqlx::Error) -> RotateError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().to_string();
            let msg = format!(
                "PostgreSQL target '{}' refused {who}: {} (SQLSTATE {code})",
                target.name,
                db.message()
            );
            match code.as_str() {
                // too many connections, cannot connect now, admin shutdown, serialization
                "53300" | "57P03" | "57P01" | "40001" | "40P01" => RotateError::retryable(msg),
                _ => RotateError::fatal(msg),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => RotateError::retryable(format!(
            "PostgreSQL target '{}' is unreachable for {who}: {e}",
            target.name
        )),
        _ => RotateError::retryable(format!(
            "PostgreSQL target '{}' failed for {who}: {e}",
            target.name
        )),
    }
}

async fn connect(
    target: &TargetContext,
    account: &Account,
    database: Option<&str>,
) -> Result<PgConnection, RotateError> {
    let opts = options(target, account, database)?;
    let who = format!("login as '{}'", account.name);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(target, &who, e)),
        Err(_) => Err(RotateError::retryable(format!(
            "PostgreSQL target '{}' did not answer {who} in time",
            target.name
        ))),
    }
}

impl Postgres {
    pub fn new() -> Self {
        Postgres::default()
    }

    /// The admin pool for `target`, rebuilt when the admin password changed.
    async fn admin_pool(&self, target: &TargetContext) -> Result<PgPool, RotateError> {
        let admin = super::admin_account(target)?;
        let mut pools = self.admin_pools.lock().await;
        if let Some((password, pool)) = pools.get(&target.name) {
            if password.as_str() == admin.password() {
                return Ok(pool.clone());
            }
        }
        // Several rotations on one target run at once (the worker's per-target limit).
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options(target, &admin, None)?);
        pools.insert(
            target.name.clone(),
            (Zeroizing::new(admin.password().to_owned()), pool.clone()),
        );
        Ok(pool)
    }

    /// `account`'s password as the SCRAM-SHA-256 verifier the server stores, with the server's
    /// own iteration count: the password itself never reaches the server.
    async fn verifier(
        &self,
        target: &TargetContext,
        account: &Account,
    ) -> Result<String, RotateError> {
        let cached = self
            .scram_iterations
            .lock()
            .await
            .get(&target.name)
            .copied();
        let iterations = match cached {
            Some(n) => n,
            None => {
                let pool = self.admin_pool(target).await?;
                let setting: Option<String> =
                    sqlx::query_scalar("SELECT current_setting('scram_iterations', true)")
                        .fetch_one(&pool)
                        .await
                        .map_err(|e| classify(target, "the admin", e))?;
                let n = setting
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(hash::DEFAULT_SCRAM_ITERATIONS);
                self.scram_iterations
                    .lock()
                    .await
                    .insert(target.name.clone(), n);
                n
            }
        };
        // PBKDF2 is milliseconds of CPU: off the async workers.
        let password = Zeroizing::new(account.password().to_owned());
        tokio::task::spawn_blocking(move || hash::scram_sha256_verifier(&password, iterations))
            .await
            .map_err(|e| RotateError::retryable(format!("computing a SCRAM verifier failed: {e}")))
    }

    async fn admin_exec(&self, target: &TargetContext, sql: &str) -> Result<(), RotateError> {
        let pool = self.admin_pool(target).await?;
        pool.execute(sql)
            .await
            .map_err(|e| classify(target, "the admin", e))?;
        Ok(())
    }
}

#[async_trait]
impl AccountServer for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn max_account_len(&self) -> usize {
        63
    }

    async fn check_admin(&self, target: &TargetContext) -> Result<(), RotateError> {
        let pool = self.admin_pool(target).await?;
        let row = sqlx::query(
            "SELECT rolsuper OR rolcreaterole AS can FROM pg_roles WHERE rolname = session_user",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
        let can: bool = row
            .try_get("can")
            .map_err(|e| classify(target, "the admin", e))?;
        if can {
            Ok(())
        } else {
            Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not manage accounts (it needs CREATEROLE)",
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
        let row = sqlx::query("SELECT session_user::text AS who")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| classify(target, "a trivial query", e))?;
        let who: String = row
            .try_get("who")
            .map_err(|e| classify(target, "a trivial query", e))?;
        let _ = conn.close().await;
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
        let verifier = self.verifier(target, account).await?;
        let sql = format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            quote_ident(&account.name),
            quote_literal(&verifier).as_str()
        );
        self.admin_exec(target, &sql).await
    }

    async fn create_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[Account],
    ) -> Result<(), RotateError> {
        let base = accounts
            .first()
            .ok_or_else(|| RotateError::fatal("no account to create"))?;
        let group = quote_ident(&format!("{}_group", base.name));
        let pool = self.admin_pool(target).await?;
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| classify(target, "the admin", e))?;
        let names: Vec<String> = std::iter::once(format!("{}_group", base.name))
            .chain(accounts.iter().map(|a| a.name.clone()))
            .collect();
        let existing = sqlx::query("SELECT rolname FROM pg_roles WHERE rolname = ANY($1)")
            .bind(&names)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| classify(target, "the admin", e))?;
        if let Some(row) = existing.first() {
            let name: String = row.get("rolname");
            return Err(RotateError::fatal(format!(
                "role '{name}' already exists on target '{}'; import existing accounts instead",
                target.name
            )));
        }
        let mut statements = vec![Zeroizing::new(format!("CREATE ROLE {group} NOLOGIN"))];
        for a in accounts {
            let name = quote_ident(&a.name);
            let verifier = self.verifier(target, a).await?;
            statements.push(Zeroizing::new(format!(
                "CREATE ROLE {name} LOGIN PASSWORD {} IN ROLE {group}",
                quote_literal(&verifier).as_str()
            )));
            // Objects either account creates belong to the group, so both can use them.
            statements.push(Zeroizing::new(format!(
                "ALTER ROLE {name} SET role = {}",
                quote_literal(&format!("{}_group", base.name)).as_str()
            )));
        }
        if let Some(db) = &settings.database {
            statements.push(Zeroizing::new(format!(
                "GRANT CONNECT ON DATABASE {} TO {group}",
                quote_ident(db)
            )));
        }
        for sql in &statements {
            tx.execute(sql.as_str())
                .await
                .map_err(|e| classify(target, "creating accounts", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| classify(target, "creating accounts", e))?;

        // Schema privileges live in the account's database.
        let privilege = settings.privilege.unwrap_or(Privilege::ReadWrite);
        let dml = "SELECT, INSERT, UPDATE, DELETE";
        let mut grants = vec![format!("GRANT USAGE ON SCHEMA public TO {group}")];
        if matches!(privilege, Privilege::ReadWrite | Privilege::DDLOnly) {
            grants.push(format!("GRANT CREATE ON SCHEMA public TO {group}"));
        }
        let table_privileges = match privilege {
            Privilege::ReadWrite | Privilege::DMLOnly => Some(dml),
            Privilege::ReadOnly => Some("SELECT"),
            Privilege::DDLOnly => None,
        };
        if let Some(p) = table_privileges {
            grants.push(format!(
                "GRANT {p} ON ALL TABLES IN SCHEMA public TO {group}"
            ));
            grants.push(format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {p} ON TABLES TO {group}"
            ));
        }
        let admin = super::admin_account(target)?;
        let mut conn = connect(target, &admin, settings.database.as_deref()).await?;
        for sql in grants {
            if let Err(e) = conn.execute(sql.as_str()).await {
                let err = classify(target, "granting privileges", e);
                // Leave nothing half made behind: the accounts go again.
                for name in accounts
                    .iter()
                    .map(|a| quote_ident(&a.name))
                    .chain([group.clone()])
                {
                    let _ = pool
                        .execute(format!("DROP ROLE IF EXISTS {name}").as_str())
                        .await;
                }
                return Err(err);
            }
        }
        let _ = conn.close().await;
        Ok(())
    }
}
