//! rotor: a secrets store and rotation engine worker.
//!
//! The engine library behind the `rotor` binary: the encrypted, versioned secret [`store`] on
//! SQLite or PostgreSQL, the envelope [`crypto`] that seals every value before it reaches the
//! store, the validated domain [`model`], and the [`cli`]. It knows nothing of MySQL, Redis or
//! SSH: rotators live in the `rotors` crate.

pub mod accounts;
pub mod cli;
pub mod clock;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod model;
pub mod store;
pub mod worker;

pub use error::{Error, Result};

/// The database servers this build manages accounts on.
pub fn builtin_databases() -> Vec<std::sync::Arc<dyn rotors::database::Database>> {
    vec![
        std::sync::Arc::new(rotors::postgres::Postgres::new()),
        std::sync::Arc::new(rotors::mysql::Mysql),
        std::sync::Arc::new(rotors::redis::Redis),
    ]
}

/// The rotators this build ships: database accounts (dual and single) on the servers of
/// [`builtin_databases`]. SSH and RAM rotators register here when they land.
pub fn builtin_rotators() -> rotors::Registry {
    use rotors::{SecretKind, SecretType, SubType};
    let accounts = rotors::database::AccountRotator::new(builtin_databases());
    let mut registry = rotors::Registry::new();
    for (ty, sub) in [
        (SecretType::Rds, SubType::DoubleUsers),
        (SecretType::Rds, SubType::SingleUser),
        (SecretType::PolarDB, SubType::DoubleUsers),
        (SecretType::Redis, SubType::DoubleUsers),
        (SecretType::Redis, SubType::SingleUser),
    ] {
        registry.register(SecretKind { ty, sub: Some(sub) }, accounts.clone());
    }
    registry
}
