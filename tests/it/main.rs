//! rotor's integration tests, one binary: every test runs against real services, and the store
//! tests run once on SQLite and once on PostgreSQL (`both_backends!`).

mod support;

mod cli;
mod concurrency;
mod encryption;
mod store;
