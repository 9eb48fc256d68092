//! What create mode grants a PostgreSQL account's group at each privilege level, checks it
//! holds (and that the admin may grant), and takes back when the accounts are removed.

use sqlx::{Connection, Executor, PgConnection};

use super::{classify, first_few, quote_ident};
use crate::database::account::{DbSettings, Privilege};
use crate::rotator::{RotateError, TargetContext};

/// The table privileges a level gives, if any.
fn table_privileges(privilege: Privilege) -> &'static [&'static str] {
    match privilege {
        Privilege::ReadWrite | Privilege::DMLOnly => &["SELECT", "INSERT", "UPDATE", "DELETE"],
        Privilege::ReadOnly => &["SELECT"],
        Privilege::DDLOnly => &[],
    }
}

/// The sequence privileges a level gives in schema public: what writing rows whose key a
/// sequence makes (`serial`, `GENERATED … AS IDENTITY` needs none) takes — `nextval` and
/// `currval`.
fn sequence_privileges(privilege: Privilege) -> &'static [&'static str] {
    match privilege {
        Privilege::ReadWrite | Privilege::DMLOnly => &["USAGE", "SELECT"],
        Privilege::ReadOnly | Privilege::DDLOnly => &[],
    }
}

/// The schema privileges a level gives on schema public.
fn schema_privileges(privilege: Privilege) -> &'static [&'static str] {
    match privilege {
        Privilege::ReadWrite | Privilege::DDLOnly => &["USAGE", "CREATE"],
        Privilege::ReadOnly | Privilege::DMLOnly => &["USAGE"],
    }
}

/// The grants a level makes to `group` (quoted), on the connection to the account's database.
pub(super) async fn grant(
    conn: &mut PgConnection,
    target: &TargetContext,
    settings: &DbSettings,
    privilege: Privilege,
    group: &str,
) -> Result<(), RotateError> {
    let mut grants = vec![];
    if let Some(db) = &settings.database {
        grants.push(format!(
            "GRANT CONNECT ON DATABASE {} TO {group}",
            quote_ident(db)
        ));
    }
    grants.push(format!(
        "GRANT {} ON SCHEMA public TO {group}",
        schema_privileges(privilege).join(", ")
    ));
    for (privileges, objects) in [
        (table_privileges(privilege), "TABLES"),
        (sequence_privileges(privilege), "SEQUENCES"),
    ] {
        if privileges.is_empty() {
            continue;
        }
        let p = privileges.join(", ");
        grants.push(format!(
            "GRANT {p} ON ALL {objects} IN SCHEMA public TO {group}"
        ));
        grants.push(format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {p} ON {objects} TO {group}"
        ));
    }
    for sql in grants {
        conn.execute(sql.as_str())
            .await
            .map_err(|e| classify(target, "granting privileges", e))?;
    }
    Ok(())
}

/// What `role` lacks of a level's privileges in the connection's database (`grant_option`:
/// the right to grant them, which the admin needs), in words; empty when it holds them all.
pub(super) async fn missing(
    conn: &mut PgConnection,
    target: &TargetContext,
    role: &str,
    settings: &DbSettings,
    privilege: Privilege,
    grant_option: bool,
) -> Result<Vec<String>, RotateError> {
    let with = if grant_option {
        " WITH GRANT OPTION"
    } else {
        ""
    };
    let fail = |e| classify(target, "checking privileges", e);
    let mut lacking = vec![];
    if grant_option {
        // The admin also makes the roles.
        let can: bool =
            sqlx::query_scalar("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut *conn)
                .await
                .map_err(fail)?
                .unwrap_or(false);
        if !can {
            lacking.push("CREATEROLE".to_owned());
        }
    }
    if let Some(db) = &settings.database {
        let ok: bool = sqlx::query_scalar("SELECT has_database_privilege($1, $2, $3)")
            .bind(role)
            .bind(db)
            .bind(format!("CONNECT{with}"))
            .fetch_one(&mut *conn)
            .await
            .map_err(fail)?;
        if !ok {
            lacking.push(format!("CONNECT on database {db}"));
        }
    }
    let mut schema = vec![];
    for p in schema_privileges(privilege) {
        let ok: bool = sqlx::query_scalar("SELECT has_schema_privilege($1, 'public', $2)")
            .bind(role)
            .bind(format!("{p}{with}"))
            .fetch_one(&mut *conn)
            .await
            .map_err(fail)?;
        if !ok {
            schema.push(*p);
        }
    }
    if !schema.is_empty() {
        lacking.push(format!("{} on schema public", schema.join(" and ")));
    }
    for (privileges, kinds, check, what) in [
        (
            table_privileges(privilege),
            "'r', 'p', 'v', 'm', 'f'",
            "has_table_privilege",
            "table(s)",
        ),
        (
            sequence_privileges(privilege),
            "'S'",
            "has_sequence_privilege",
            "sequence(s)",
        ),
    ] {
        if privileges.is_empty() {
            continue;
        }
        // A relation lacks them when any one is missing; each check is a bound parameter.
        let checks: Vec<String> = (0..privileges.len())
            .map(|i| format!("{check}($1, c.oid, ${})", i + 2))
            .collect();
        let sql = format!(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ({kinds}) \
             AND NOT ({}) ORDER BY 1",
            checks.join(" AND ")
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(role);
        for p in privileges {
            query = query.bind(format!("{p}{with}"));
        }
        let names = query.fetch_all(&mut *conn).await.map_err(fail)?;
        if !names.is_empty() {
            lacking.push(format!(
                "{} on {what} {} of schema public",
                privileges.join(", "),
                first_few(&names)
            ));
        }
    }
    Ok(lacking)
}

/// Removes `accounts` and their `group` with the grants create mode made in the connection's
/// database, in one transaction: all of them or none. Returns the roles that were there.
pub(super) async fn drop_roles(
    conn: &mut PgConnection,
    target: &TargetContext,
    settings: &DbSettings,
    accounts: &[String],
    group: &str,
) -> Result<Vec<String>, RotateError> {
    let names: Vec<String> = accounts.iter().cloned().chain([group.to_owned()]).collect();
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind(&names)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(target, "the admin", e))?;
    let mut statements = vec![];
    if existing.iter().any(|n| n == group) {
        let g = quote_ident(group);
        for objects in ["TABLES", "SEQUENCES"] {
            statements.push(format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON {objects} FROM {g}"
            ));
            statements.push(format!(
                "REVOKE ALL ON ALL {objects} IN SCHEMA public FROM {g}"
            ));
        }
        statements.push(format!("REVOKE ALL ON SCHEMA public FROM {g}"));
        if let Some(db) = &settings.database {
            statements.push(format!(
                "REVOKE ALL ON DATABASE {} FROM {g}",
                quote_ident(db)
            ));
        }
    }
    // The accounts before their group.
    for name in names.iter().filter(|n| existing.contains(n)) {
        statements.push(format!("DROP ROLE {}", quote_ident(name)));
    }
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| classify(target, "the admin", e))?;
    for sql in &statements {
        if let Err(e) = tx.execute(sql.as_str()).await {
            let detail = match &e {
                sqlx::Error::Database(db) => db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|p| p.detail())
                    .map(|d| format!(" ({})", d.replace('\n', "; ")))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let err = classify(target, "removing accounts", e);
            return Err(match err {
                RotateError::Fatal(m) => {
                    RotateError::fatal(format!("{m}{detail}; nothing was dropped"))
                }
                other => other,
            });
        }
    }
    tx.commit()
        .await
        .map_err(|e| classify(target, "removing accounts", e))?;
    Ok(existing)
}
