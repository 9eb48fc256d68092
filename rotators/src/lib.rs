//! `rotators`: what a rotator needs to know about secrets and targets, and nothing about how they
//! are stored.
//!
//! This crate is the boundary between the rotor engine and the code that changes credentials on
//! real systems. It owns the secret types and sub-types ([`kind`]) with their rotation bounds, the
//! value formats each type stores ([`value`]), the [`rotator`] contract — four idempotent steps
//! (create / set / test / finish) that the engine drives — the [`family`] contract (targets,
//! provisioning, options), the [`registry`] that maps kinds to both, and the families
//! themselves, one module each: [`database`] (PostgreSQL, MySQL/MariaDB, Redis accounts),
//! [`ssh`] (host users' passwords and key pairs, over SSH) and [`ram`] (cloud RAM users'
//! AccessKey pairs, through the RAM OpenAPI). It
//! knows nothing of jobs, cron, the store or HTTP.

#![warn(missing_docs)]

pub mod database;
pub mod family;
pub mod kind;
pub mod ram;
pub mod registry;
pub mod rotator;
pub mod ssh;
pub mod value;

pub use family::{
    Family, NewAdmin, NewTarget, OnTarget, Options, Origin, Provisioned, SecretRequest, SetupError,
    Source,
};
pub use kind::{KindError, SecretKind, SecretType, SubType};
pub use registry::Registry;
pub use rotator::{RotateError, RotationContext, Rotator, TargetContext, VersionValue};
pub use value::{SecretValue, ValueError, MAX_VALUE_BYTES};
