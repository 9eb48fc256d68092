//! `rotors`: what a rotator needs to know about secrets, and nothing about how they are stored.
//!
//! This crate is the boundary between the rotor engine and the code that changes credentials on
//! real systems. It owns the secret types and sub-types ([`kind`]) with their rotation bounds, the
//! value formats each type stores ([`value`]), the [`rotator`] contract — four idempotent steps
//! (create / set / test / finish) that the engine drives — and the rotators themselves: database
//! accounts ([`account`], [`database`], [`postgres`]). It knows nothing of jobs, cron, the store
//! or HTTP.

pub mod account;
pub mod database;
pub mod kind;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod rotator;
pub mod value;

pub use kind::{KindError, SecretKind, SecretType, SubType};
pub use rotator::{Registry, RotateError, RotationContext, Rotator, TargetContext, VersionValue};
pub use value::{SecretValue, ValueError, MAX_VALUE_BYTES};
