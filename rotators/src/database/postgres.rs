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

mod grants;
use grants::{drop_roles, grant, missing};

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
    // sqlx prepares the name with SASLprep and panics on one it refuses: refuse it here.
    if stringprep::saslprep(&account.name).is_err() {
        return Err(RotateError::fatal(format!(
            "account name '{}' cannot log in to PostgreSQL target '{}': SASLprep refuses it",
            account.name.escape_debug(),
            target.name
        )));
    }
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

/// Keeps the server's notices and warnings off an admin connection: sqlx would print them as
/// raw log lines. A grant that does not take ("no privileges were granted") is found by
/// checking privileges, not by reading warnings. (A `SET`, not a startup option, which
/// connection poolers such as PgBouncer refuse.)
const QUIET: &str = "SET client_min_messages TO error";

/// A connection as the target's admin, to `database` (or the URL's), without notices.
async fn admin_connect(
    target: &TargetContext,
    database: Option<&str>,
) -> Result<PgConnection, RotateError> {
    let mut conn = connect(target, &super::admin_account(target)?, database).await?;
    conn.execute(QUIET)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
    Ok(conn)
}

impl Postgres {
    /// PostgreSQL support with no admin pools open yet.
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
            .after_connect(|conn, _| Box::pin(async move { conn.execute(QUIET).await.map(|_| ()) }))
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

    async fn check_admin(&self, target: &TargetContext) -> Result<String, RotateError> {
        let pool = self.admin_pool(target).await?;
        let row = sqlx::query(
            "SELECT rolsuper AS superuser, rolcreaterole AS createrole FROM pg_roles \
             WHERE rolname = session_user",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
        let get = |column: &str| -> Result<bool, RotateError> {
            row.try_get(column)
                .map_err(|e| classify(target, "the admin", e))
        };
        if get("superuser")? {
            return Ok(
                "logs in and may manage accounts and grant in every database (a superuser)".into(),
            );
        }
        if !get("createrole")? {
            return Err(RotateError::fatal(format!(
                "the admin account of target '{}' may not manage accounts (it needs CREATEROLE)",
                target.name
            )));
        }
        // Create mode grants CONNECT on the account's database and USAGE, CREATE on its schema
        // public: the admin must hold them WITH GRANT OPTION (an owner does).
        let lacking: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate \
             AND NOT has_database_privilege(current_user, oid, 'CONNECT WITH GRANT OPTION') \
             ORDER BY datname",
        )
        .fetch_all(&pool)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
        let all: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
        let need = "create mode needs, in the account's database, CONNECT on it and USAGE and CREATE on its schema public, WITH GRANT OPTION (owning the database and the schema gives them)";
        // Rotations need only CREATEROLE; create mode fails where the admin may not grant.
        let mut line = "logs in and may manage accounts (CREATEROLE)".to_owned();
        if lacking.len() as i64 >= all {
            line.push_str(&format!(
                "; but it may grant in no database, so create mode fails everywhere: {need}"
            ));
        } else if !lacking.is_empty() {
            line.push_str(&format!(
                "; it may not grant CONNECT on {} of {all} databases ({}), so create mode fails there: {need}",
                lacking.len(),
                first_few(&lacking)
            ));
        }
        Ok(line)
    }

    async fn login(
        &self,
        target: &TargetContext,
        database: Option<&str>,
        account: &Account,
    ) -> Result<(), RotateError> {
        let mut conn = connect(target, account, database).await?;
        // The simple query protocol: one round trip (a prepared statement takes two, and this
        // connection runs one statement before it closes).
        let row = (&mut conn)
            .fetch_one("SELECT session_user::text AS who")
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
        let group_name = group_of(&base.name);
        let group = quote_ident(&group_name);
        let privilege = settings.privilege.unwrap_or(Privilege::ReadWrite);
        // The grants are checked before anything changes: each one the admin could not give
        // would only raise a warning ("no privileges were granted") and leave the account
        // without them.
        let mut conn = admin_connect(target, settings.database.as_deref()).await?;
        let me: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| classify(target, "the admin", e))?;
        let lacking = missing(&mut conn, target, &me, settings, privilege, true).await?;
        if !lacking.is_empty() {
            let _ = conn.close().await;
            return Err(RotateError::fatal(format!(
                "the admin account '{me}' of target '{}' lacks what create mode needs ({}): the privileges it grants must be its own WITH GRANT OPTION, which owning the database, its schema public and its tables gives",
                target.name,
                lacking.join("; ")
            )));
        }

        let pool = self.admin_pool(target).await?;
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| classify(target, "the admin", e))?;
        let names: Vec<String> = std::iter::once(group_name.clone())
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
                quote_literal(&group_name).as_str()
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

        let mut granted = grant(&mut conn, target, settings, privilege, &group).await;
        if granted.is_ok() {
            // And checked again: the accounts hold what their level promises.
            granted = match missing(&mut conn, target, &group_name, settings, privilege, false).await {
                Ok(lacking) if lacking.is_empty() => Ok(()),
                Ok(lacking) => Err(RotateError::fatal(format!(
                    "target '{}' did not give role '{group_name}' its {privilege:?} privileges ({}); the accounts were removed again",
                    target.name,
                    lacking.join("; ")
                ))),
                Err(e) => Err(e),
            };
        }
        if let Err(e) = granted {
            // Leave nothing half made behind: the accounts and their grants go again.
            let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
            if let Err(gone) = drop_roles(&mut conn, target, settings, &names, &group_name).await {
                let _ = conn.close().await;
                return Err(RotateError::fatal(format!(
                    "{e}; removing the accounts failed too: {gone}"
                )));
            }
            let _ = conn.close().await;
            return Err(e);
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
        let base = accounts
            .first()
            .ok_or_else(|| RotateError::fatal("no account to remove"))?;
        let group = group_of(base);
        let mut conn = admin_connect(target, settings.database.as_deref()).await?;
        // Objects the accounts made belong to the group: they are the application's data, so
        // they are never dropped along with it.
        let names: Vec<String> = accounts.iter().cloned().chain([group.clone()]).collect();
        let owners = sqlx::query(
            "SELECT r.rolname::text AS owner, count(*) AS n, \
                    string_agg(DISTINCT coalesce(d.datname::text, '(cluster)'), ', ') AS dbs \
             FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid \
             LEFT JOIN pg_database d ON d.oid = s.dbid \
             WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype = 'o' AND r.rolname = ANY($1) \
             GROUP BY r.rolname ORDER BY 1",
        )
        .bind(&names)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| classify(target, "the admin", e))?;
        if let Some(row) = owners.first() {
            let owner: String = row.get("owner");
            let n: i64 = row.get("n");
            let dbs: String = row.get("dbs");
            let _ = conn.close().await;
            return Err(RotateError::fatal(format!(
                "role '{owner}' owns {n} object(s) in database {dbs} on target '{}': drop them or give them to another role (REASSIGN OWNED BY {owner} TO …) first; nothing was dropped",
                target.name
            )));
        }
        let done = drop_roles(&mut conn, target, settings, accounts, &group).await;
        let _ = conn.close().await;
        let existed = done?;
        let mut what: Vec<String> = accounts
            .iter()
            .filter(|a| existed.contains(a))
            .map(|a| format!("role '{a}'"))
            .collect();
        if existed.contains(&group) {
            what.push(group_line(settings, &group));
        }
        Ok(what)
    }

    fn describe_accounts(&self, settings: &DbSettings, accounts: &[String]) -> Vec<String> {
        let mut what: Vec<String> = accounts.iter().map(|a| format!("role '{a}'")).collect();
        if let Some(base) = accounts.first() {
            what.push(group_line(settings, &group_of(base)));
        }
        what
    }
}

/// The accounts' group, in words.
fn group_line(settings: &DbSettings, group: &str) -> String {
    match &settings.database {
        Some(db) => format!("role '{group}' with its grants in database '{db}'"),
        None => format!("role '{group}' with its grants"),
    }
}

/// The NOLOGIN role a created account's objects and privileges belong to.
fn group_of(base: &str) -> String {
    format!("{base}_group")
}

/// Up to five names, then how many more.
fn first_few(names: &[String]) -> String {
    let mut text = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}
