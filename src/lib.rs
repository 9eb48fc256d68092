//! rotor: a secrets store and rotation engine worker.
//!
//! The engine library behind the `rotor` binary: the encrypted, versioned secret [`store`] on
//! SQLite or PostgreSQL, the envelope [`crypto`] that seals every value before it reaches the
//! store, the validated domain [`model`], the rotation [`engine`] and [`worker`], [`targets`]
//! (targets and the secrets on them, through their rotator family), and the [`cli`]. It names no
//! kind of target: rotator families live in the `rotators` crate and are registered below.

#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod drift;
pub mod engine;
pub mod error;
pub mod files;
pub mod model;
pub mod notify;
pub mod policy;
pub mod redact;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod worker;

pub use error::{Error, Result};

/// The rotator families this build ships, registered in this one place: each brings its target
/// kinds, options and rotators.
pub fn builtin_rotators() -> rotators::Registry {
    let mut registry = rotators::Registry::new();
    registry.add_family(rotators::database::DatabaseFamily::new());
    registry.add_family(rotators::ssh::SshFamily::new());
    registry.add_family(rotators::ram::RamFamily::new());
    registry
}
