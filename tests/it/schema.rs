//! The SQLite and PostgreSQL migrations agree: a fresh store of each kind, migrated, has the same
//! tables, columns (name, type family, nullability, default, primary key), indexes (name, columns,
//! uniqueness, partial or not) and triggers (name, table, event). Every difference is reported at
//! once; deliberate ones are listed in [`ALLOWED`] with their reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sqlx::{Connection, Row};

use crate::support::{Backend, TestEnv};

/// Differences the two backends have on purpose, each as the line [`schema_lines`] prints for
/// one side (`sqlite: …` or `postgres: …`), with why.
const ALLOWED: &[(&str, &str)] = &[
    (
        "sqlite: column rotation_jobs.pending_on_target: integer not null default 0 pk 0",
        "a 0/1 flag, declared INTEGER (32 bits) on PostgreSQL in migration 0011 where every other \
         integer is BIGINT: 32 bits hold it, and widening it would rewrite rotation_jobs for nothing",
    ),
    (
        "postgres: column rotation_jobs.pending_on_target: integer (32-bit) not null default 0 pk 0",
        "the same column, seen from PostgreSQL",
    ),
];

/// One backend's schema as sorted, comparable lines (`table.column: …`, `index …`, `trigger …`).
type Schema = BTreeMap<String, String>;

/// The type family a declared type belongs to: what the store's code can rely on across both.
fn family(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        // SQLite keeps every integer in 64 bits, whatever the declared name.
        "integer" | "int" | "bigint" | "int8" => "integer",
        "int4" => "integer (32-bit)",
        "int2" | "smallint" => "integer (16-bit)",
        "text" | "character varying" | "varchar" => "text",
        "blob" | "bytea" => "bytes",
        "boolean" | "bool" => "boolean",
        "real" | "double precision" | "float8" | "float4" => "real",
        _ => panic!("unknown column type {declared:?}: teach family() its family"),
    }
}

/// A default as both backends can be compared: PostgreSQL's casts (`'x'::text`) dropped.
fn default(raw: Option<String>) -> String {
    match raw {
        None => "none".into(),
        Some(d) => {
            let d = d.trim();
            let d = d.split("::").next().unwrap_or(d).trim();
            let d = d.trim_start_matches('(').trim_end_matches(')');
            d.to_string()
        }
    }
}

/// Tables that belong to the database or to sqlx, not to rotor's migrations.
fn ours(table: &str) -> bool {
    !table.starts_with("sqlite_") && table != "_sqlx_migrations"
}

async fn sqlite_schema(env: &TestEnv) -> Schema {
    drop(env.store().await);
    let path = env.data_dir().join("rotor.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("the SQLite store opens");
    let mut out = Schema::new();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for table in tables.into_iter().filter(|t| ours(t)) {
        out.insert(format!("table {table}"), String::new());
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for c in columns {
            let name: String = c.get("name");
            let ty: String = c.get("type");
            let not_null: i64 = c.get("notnull");
            let pk: i64 = c.get("pk");
            // A primary key column is NOT NULL on PostgreSQL whether or not it says so.
            let nullable = not_null == 0 && pk == 0;
            out.insert(
                format!("column {table}.{name}"),
                format!(
                    "{} {} default {} pk {pk}",
                    family(&ty),
                    if nullable { "null" } else { "not null" },
                    default(c.get("dflt_value")),
                ),
            );
        }
        let indexes = sqlx::query(
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1) ORDER BY name",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for i in indexes {
            let name: String = i.get("name");
            let origin: String = i.get("origin");
            if origin == "pk" {
                continue; // primary keys are compared on their columns
            }
            let unique: i64 = i.get("unique");
            let partial: i64 = i.get("partial");
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            // A UNIQUE constraint's index has a generated name on each side: compare its columns.
            let key = if origin == "u" {
                format!("index {table}(unique constraint {})", columns.join(", "))
            } else {
                format!("index {name}")
            };
            out.insert(
                key,
                describe_index(&table, &columns, unique != 0, partial != 0),
            );
        }
    }
    let triggers = sqlx::query(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for t in triggers {
        let name: String = t.get("name");
        let table: String = t.get("tbl_name");
        let sql: String = t.get::<String, _>("sql").to_ascii_uppercase();
        let timing = ["BEFORE", "AFTER", "INSTEAD OF"]
            .into_iter()
            .find(|w| sql.contains(&format!(" {w} ")))
            .unwrap_or("?");
        let event = ["INSERT", "UPDATE", "DELETE"]
            .into_iter()
            .find(|w| sql.contains(&format!("{timing} {w}")))
            .unwrap_or("?");
        out.insert(
            format!("trigger {name}"),
            format!("{timing} {event} on {table}"),
        );
    }
    out
}

async fn postgres_schema(env: &TestEnv) -> Schema {
    drop(env.store().await);
    let mut conn = sqlx::PgConnection::connect(&env.store_url().expect("a PostgreSQL store"))
        .await
        .expect("the PostgreSQL store opens");
    let mut out = Schema::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in tables.into_iter().filter(|t| ours(t)) {
        out.insert(format!("table {table}"), String::new());
        let columns = sqlx::query(
            "SELECT c.column_name::text AS name, c.data_type::text AS ty,
                    c.is_nullable::text AS nullable, c.column_default::text AS dflt,
                    COALESCE((SELECT k.n
                              FROM pg_index i
                              CROSS JOIN unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                              JOIN pg_attribute a
                                ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                              WHERE i.indrelid = ($1::text)::regclass AND i.indisprimary
                                AND a.attname = c.column_name), 0)::bigint AS pk
             FROM information_schema.columns c
             WHERE c.table_schema = 'public' AND c.table_name = $1
             ORDER BY c.ordinal_position",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for c in columns {
            let name: String = c.get("name");
            // PostgreSQL's `integer` is 32 bits (SQLite's 64): name it so that they differ.
            let ty: String = match c.get::<String, _>("ty").as_str() {
                "integer" => "int4".into(),
                other => other.into(),
            };
            let nullable: String = c.get("nullable");
            let pk: i64 = c.get("pk");
            out.insert(
                format!("column {table}.{name}"),
                format!(
                    "{} {} default {} pk {pk}",
                    family(&ty),
                    if nullable == "YES" {
                        "null"
                    } else {
                        "not null"
                    },
                    default(c.get("dflt")),
                ),
            );
        }
        let indexes = sqlx::query(
            "SELECT ic.relname::text AS name, i.indisunique AS is_unique,
                    (i.indpred IS NOT NULL) AS partial,
                    EXISTS (SELECT 1 FROM pg_constraint k
                            WHERE k.conindid = i.indexrelid AND k.contype = 'u') AS constraint_index,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                          ORDER BY k.n) AS columns
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = ($1::text)::regclass AND NOT i.indisprimary
             ORDER BY 1",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for i in indexes {
            let name: String = i.get("name");
            let unique: bool = i.get("is_unique");
            let partial: bool = i.get("partial");
            let constraint: bool = i.get("constraint_index");
            let columns: Vec<String> = i.get("columns");
            let key = if constraint {
                format!("index {table}(unique constraint {})", columns.join(", "))
            } else {
                format!("index {name}")
            };
            out.insert(key, describe_index(&table, &columns, unique, partial));
        }
    }
    let triggers = sqlx::query(
        "SELECT trigger_name::text AS name, event_object_table::text AS tbl,
                action_timing::text AS timing, event_manipulation::text AS event
         FROM information_schema.triggers WHERE trigger_schema = 'public' ORDER BY 1, 4",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for t in triggers {
        let name: String = t.get("name");
        let table: String = t.get("tbl");
        let timing: String = t.get("timing");
        let event: String = t.get("event");
        out.insert(
            format!("trigger {name}"),
            format!("{timing} {event} on {table}"),
        );
    }
    out
}

fn describe_index(table: &str, columns: &[String], unique: bool, partial: bool) -> String {
    format!(
        "on {table} ({}){}{}",
        columns.join(", "),
        if unique { " unique" } else { "" },
        if partial { " partial" } else { "" },
    )
}

/// Lines present on one side only or different between them, as `sqlite: …` / `postgres: …`.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for (key, s) in sqlite {
        match postgres.get(key) {
            Some(p) if p == s => {}
            Some(p) => {
                out.push(format!("sqlite: {key}: {s}"));
                out.push(format!("postgres: {key}: {p}"));
            }
            None => out.push(format!("sqlite: {key}: {s}")),
        }
    }
    for (key, p) in postgres {
        if !sqlite.contains_key(key) {
            out.push(format!("postgres: {key}: {p}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrations_agree() {
    let sqlite_env = TestEnv::new(Backend::Sqlite).await;
    let postgres_env = TestEnv::new(Backend::Postgres).await;
    let sqlite = sqlite_schema(&sqlite_env).await;
    let postgres = postgres_schema(&postgres_env).await;
    assert!(
        sqlite.contains_key("column secrets.name")
            && sqlite.contains_key("trigger audit_log_append_only"),
        "the SQLite introspection found the store's tables: {sqlite:#?}"
    );
    assert!(
        postgres.contains_key("column secrets.name")
            && postgres.contains_key("trigger audit_log_append_only"),
        "the PostgreSQL introspection found the store's tables: {postgres:#?}"
    );

    let found = differences(&sqlite, &postgres);
    let unexpected: Vec<&String> = found
        .iter()
        .filter(|line| !ALLOWED.iter().any(|(allowed, _)| allowed == line))
        .collect();
    let stale: Vec<&str> = ALLOWED
        .iter()
        .map(|(allowed, _)| *allowed)
        .filter(|allowed| !found.iter().any(|line| line == allowed))
        .collect();
    let mut report = String::new();
    for line in &unexpected {
        writeln!(report, "  {line}").unwrap();
    }
    assert!(
        unexpected.is_empty(),
        "the SQLite and PostgreSQL schemas differ after migrations:\n{report}"
    );
    assert!(
        stale.is_empty(),
        "allowed differences that no longer exist (remove them from ALLOWED): {stale:?}"
    );
}
