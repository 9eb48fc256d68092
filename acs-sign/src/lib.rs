//! Alibaba Cloud OpenAPI request signatures, both styles the cloud's APIs (and rotor's
//! KMS-compatible API) accept: V3 `ACS3-HMAC-SHA256` and the older V1 RPC `HMAC-SHA1`.
//!
//! [`sign`] is the client side (canonical requests, the two signatures, the `Authorization`
//! header); [`verify`] the server side (bounded parameter parsing, the signature and timestamp
//! checks). Three users share them: rotor's RAM client signs, and rotor's API and the RAM
//! emulator the tests run verify. This crate knows no HTTP client or server: it works on
//! methods, paths, parameter lists, headers and bodies as plain values.

#![warn(missing_docs)]

pub mod sign;
pub mod verify;
