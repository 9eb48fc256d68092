//! Operating rotor: the configuration file and its layers (`rotor config check`), the audit log
//! (`rotor audit`), failure webhooks against a local receiver that checks signatures, and lease
//! takeovers in the metrics. The rotations run in `rotor-testkit` worker processes.

mod audit;
mod config_layers;
mod webhooks;

pub(crate) use webhooks::Receiver;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::both_backends;
use crate::support::{Backend, TestEnv};
use crate::testkit_rotator::FileRotator;
use crate::workers::{
    ecs_secret, sample, scrape, spawn_worker, terminate, testkit_ok, wait_exit, wait_rotated, FAST,
};

pub(crate) fn write_private(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
