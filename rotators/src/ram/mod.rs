//! The RAM family's building blocks (work in progress, see issue 10): request signatures
//! ([`sign`]) and the RAM OpenAPI client ([`client`]). The family itself — targets, secrets,
//! the AccessKey rotator — is not registered yet.

pub mod client;
pub mod sign;
