//! The store's schema migrations, embedded in the binary from `migrations/<backend>/NNNN_name.sql`
//! (one list for both backends, kept in step: the `schema` integration test checks that both give
//! the same schema). sqlx's `migrate!` macro would embed them too, but it builds a second copy of
//! sqlx's drivers for the compiler; this source gives sqlx the same migrations (version,
//! description, checksum: the tests below compare them with sqlx's own reading of the folders).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

/// Every migration's file name without `.sql`, in order: a new one is added here and in both
/// folders.
macro_rules! embedded {
    ($($name:literal,)*) => {
        const SQLITE: &[(&str, &str)] =
            &[$(($name, include_str!(concat!("migrations/sqlite/", $name, ".sql")))),*];
        const POSTGRES: &[(&str, &str)] =
            &[$(($name, include_str!(concat!("migrations/postgres/", $name, ".sql")))),*];
    };
}

embedded!(
    "0001_store",
    "0002_rotation",
    "0003_targets",
    "0004_target_config",
    "0005_optional_admin",
    "0006_create_mark",
    "0007_audit",
    "0008_access_keys",
    "0009_claims",
    "0010_api_nonces",
    "0011_pending_on_target",
    "0012_console_users",
    "0013_drift",
    "0014_drift_stages",
    "0015_rotation_calls",
);

/// A backend's embedded migrations, as sqlx reads a folder of them.
#[derive(Debug)]
struct Embedded(&'static [(&'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        Box::pin(async move {
            self.0
                .iter()
                .map(|(name, sql)| {
                    let (version, description) = name
                        .split_once('_')
                        .ok_or_else(|| format!("migration {name}: no NNNN_ prefix"))?;
                    Ok(Migration::new(
                        version.parse()?,
                        Cow::Owned(description.replace('_', " ")),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        sql.starts_with("-- no-transaction"),
                    ))
                })
                .collect()
        })
    }
}

/// The backend's migrations.
pub(super) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What sqlx's `migrate!` embeds: the folder as sqlx reads it.
    async fn from_folder(backend: &str) -> Migrator {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/migrations")
            .join(backend);
        Migrator::new(dir).await.unwrap()
    }

    #[tokio::test]
    async fn the_embedded_migrations_are_the_folders_own() {
        for (backend, name) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
            let embedded = migrator(backend).await.unwrap();
            let folder = from_folder(name).await;
            let key = |m: &Migration| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                    m.migration_type.is_reversible(),
                )
            };
            assert_eq!(
                embedded.iter().map(key).collect::<Vec<_>>(),
                folder.iter().map(key).collect::<Vec<_>>(),
                "{name}: every file in src/store/migrations/{name} is listed in embedded!, and only those"
            );
        }
    }
}
