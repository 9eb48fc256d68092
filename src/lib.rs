//! rotor: a secrets store and rotation engine worker.
//!
//! The engine library behind the `rotor` binary: the encrypted, versioned secret [`store`] on
//! SQLite or PostgreSQL, the envelope [`crypto`] that seals every value before it reaches the
//! store, the validated domain [`model`], and the [`cli`]. It knows nothing of MySQL, Redis or
//! SSH: rotators live in the `rotors` crate.

pub mod cli;
pub mod clock;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod model;
pub mod store;
pub mod worker;

pub use error::{Error, Result};

/// The rotators this build ships. Empty until the rotator issues land: database, SSH and RAM
/// rotators register here.
pub fn builtin_rotators() -> rotors::Registry {
    rotors::Registry::new()
}
