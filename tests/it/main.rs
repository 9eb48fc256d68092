//! rotor's integration tests, one binary: every test runs against real services, and the store
//! tests run once on SQLite and once on PostgreSQL (`both_backends!`).

#[path = "../testkit/proxy.rs"]
mod proxy;
#[path = "../testkit/sshd.rs"]
mod sshd;
mod support;
#[path = "../testkit/rotator.rs"]
mod testkit_rotator;

mod agent;
mod api;
mod api_conflicts;
mod cli;
mod concurrency;
mod console;
mod console_changes;
mod console_hostile;
mod databases;
mod deletion;
mod deploy;
mod drift;
mod drift_schedule;
mod encryption;
mod flags;
mod followups;
mod honest;
mod hostile;
mod latewrite;
mod leases;
mod operations;
mod ops;
mod privileges;
mod ram;
mod ram_edges;
mod readme;
mod recovery;
mod rotation;
mod schema;
mod scripting;
mod ssh;
mod ssh_edges;
mod store;
mod targets;
mod workers;
