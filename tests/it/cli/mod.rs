//! The `rotor` binary end to end: the README's session, JSON output, the worker's lifecycle, and
//! every bad-input rule — each refused with a one-line error, a non-zero exit code and an
//! unchanged store.

mod hostile_input;
mod refusals;
mod session;
mod stores;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::support::{assert_refused, write_file, TestEnv};

const RDS_VALUE: &str = r#"{"AccountName":"app","AccountPassword":"Pw-5d1f0c2a9e"}"#;
