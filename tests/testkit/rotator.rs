//! A rotator for tests: it rotates an `ECS`/`Password` secret's password on a "host" that is a
//! JSON file listing the passwords the user may log in with, and can be told to fail, hang or
//! kill its own process at a chosen step. Used in-process by the integration tests and by the
//! `rotor-testkit` binary (the `rotor` CLI with this rotator) for the process-kill tests.
//!
//! Faults come from [`Fault`] or, in the binary, `ROTOR_TEST_FAULT=step:mode[:times]` with mode
//! `fail` (retryable), `fatal`, `hang`, `slow` (the step waits `ROTOR_TEST_SLOW_MS`, default
//! 3000, then runs), `crash-before`, `crash-during` or `crash-after`.
//! `check` (the dry run, the check after a takeover) takes the modes that act at a step's start.
//! Every step run is appended to `steps.log` in the target directory: `secret step pid`.
//! `ROTOR_TEST_FINISH_NOOP=1` makes it a rotator with nothing to clean up after promotion.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rotators::{RotateError, RotationContext, Rotator, SecretValue};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fail,
    Fatal,
    Hang,
    Slow,
    CrashBefore,
    CrashDuring,
    CrashAfter,
}

/// A fault at one step, for its first `times` runs (every run when `None`).
#[derive(Clone, Debug)]
pub struct Fault {
    pub step: String,
    pub mode: Mode,
    pub times: Option<u32>,
}

impl Fault {
    pub fn parse(spec: &str) -> Fault {
        let mut parts = spec.split(':');
        let step = parts.next().expect("fault step").to_owned();
        let mode = match parts.next().expect("fault mode") {
            "fail" => Mode::Fail,
            "fatal" => Mode::Fatal,
            "hang" => Mode::Hang,
            "slow" => Mode::Slow,
            "crash-before" => Mode::CrashBefore,
            "crash-during" => Mode::CrashDuring,
            "crash-after" => Mode::CrashAfter,
            other => panic!("unknown fault mode {other}"),
        };
        let times = parts.next().map(|t| t.parse().expect("fault times"));
        Fault { step, mode, times }
    }
}

pub struct FileRotator {
    dir: PathBuf,
    fault: Option<Fault>,
    fired: AtomicU32,
    /// Says its `finish` does nothing (`ROTOR_TEST_FINISH_NOOP=1` in the binary), so that the
    /// engine ends the job with the promotion, as for database accounts; `finish` then never
    /// runs (the host keeps every password it was given).
    finish_noop: bool,
}

impl FileRotator {
    pub fn new(dir: &Path, fault: Option<Fault>) -> Arc<Self> {
        Arc::new(FileRotator {
            dir: dir.to_owned(),
            fault,
            fired: AtomicU32::new(0),
            finish_noop: false,
        })
    }

    /// The binary's rotator: `ROTOR_TEST_TARGET_DIR` and `ROTOR_TEST_FAULT`.
    pub fn from_env() -> Arc<Self> {
        let dir = std::env::var("ROTOR_TEST_TARGET_DIR").expect("ROTOR_TEST_TARGET_DIR is set");
        let fault = std::env::var("ROTOR_TEST_FAULT")
            .ok()
            .filter(|f| !f.is_empty())
            .map(|f| Fault::parse(&f));
        Arc::new(FileRotator {
            dir: PathBuf::from(dir),
            fault,
            fired: AtomicU32::new(0),
            finish_noop: std::env::var("ROTOR_TEST_FINISH_NOOP").is_ok_and(|v| v == "1"),
        })
    }

    fn host_file(dir: &Path, user: &str) -> PathBuf {
        dir.join(format!("host-{user}.json"))
    }

    /// The passwords `user` may log in with.
    pub fn passwords(dir: &Path, user: &str) -> Vec<String> {
        match std::fs::read(Self::host_file(dir, user)) {
            Ok(bytes) => serde_json::from_slice(&bytes).expect("host file is JSON"),
            Err(_) => vec![],
        }
    }

    pub fn set_passwords(dir: &Path, user: &str, passwords: &[String]) {
        let path = Self::host_file(dir, user);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(passwords).unwrap()).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// `(secret, step, pid)` for every step run so far.
    pub fn log(dir: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(dir.join("steps.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut w = l.split(' ');
                (
                    w.next().unwrap().into(),
                    w.next().unwrap().into(),
                    w.next().unwrap_or("").into(),
                )
            })
            .collect()
    }

    fn record(&self, cx: &RotationContext, step: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("steps.log"))
            .unwrap();
        // One write per line: O_APPEND keeps lines from several processes whole.
        let line = format!("{} {step} {}\n", cx.secret_name, std::process::id());
        f.write_all(line.as_bytes()).unwrap();
    }

    /// Applies the fault planned at `when` of `step`, if any.
    async fn fault(&self, step: &str, when: Mode) -> Result<(), RotateError> {
        let Some(f) = self.fault.as_ref().filter(|f| f.step == step) else {
            return Ok(());
        };
        let at_start = matches!(
            f.mode,
            Mode::Fail | Mode::Fatal | Mode::Hang | Mode::Slow | Mode::CrashBefore
        );
        if (when == Mode::CrashBefore) != at_start || (!at_start && f.mode != when) {
            return Ok(());
        }
        if let Some(times) = f.times {
            if self.fired.fetch_add(1, Ordering::SeqCst) >= times {
                return Ok(());
            }
        }
        match f.mode {
            Mode::Fail => Err(RotateError::retryable(format!(
                "host refused the {step} step (injected)"
            ))),
            Mode::Fatal => Err(RotateError::fatal(format!(
                "host rejected the {step} step for good (injected)"
            ))),
            Mode::Hang => std::future::pending().await,
            Mode::Slow => {
                let ms = std::env::var("ROTOR_TEST_SLOW_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3000);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(())
            }
            _ => {
                // SIGKILL ourselves: no destructor, no flush, like a power cut for the process.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &std::process::id().to_string()])
                    .status();
                std::future::pending().await
            }
        }
    }
}

fn field(value: &SecretValue, name: &str) -> String {
    let v: Value = serde_json::from_slice(value.expose()).expect("ECS value is JSON");
    v[name].as_str().expect("string field").to_owned()
}

fn user(cx: &RotationContext) -> String {
    field(
        &cx.current.as_ref().expect("a current version").value,
        "UserName",
    )
}

#[async_trait]
impl Rotator for FileRotator {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        self.fault("create", Mode::CrashBefore).await?;
        self.record(cx, "create");
        let password = format!("pw-{}", rotor::crypto::random_id());
        self.fault("create", Mode::CrashDuring).await?;
        let value = SecretValue::new(
            json!({"UserName": user(cx), "Password": password})
                .to_string()
                .into_bytes(),
        );
        self.fault("create", Mode::CrashAfter).await?;
        Ok(value)
    }

    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        self.fault("set", Mode::CrashBefore).await?;
        self.record(cx, "set");
        let user = user(cx);
        let mut passwords = Self::passwords(&self.dir, &user);
        let new = field(pending, "Password");
        if !passwords.contains(&new) {
            passwords.push(new);
            Self::set_passwords(&self.dir, &user, &passwords);
        }
        self.fault("set", Mode::CrashDuring).await?;
        self.fault("set", Mode::CrashAfter).await
    }

    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        self.fault("test", Mode::CrashBefore).await?;
        self.record(cx, "test");
        let ok = Self::passwords(&self.dir, &user(cx)).contains(&field(pending, "Password"));
        self.fault("test", Mode::CrashDuring).await?;
        if !ok {
            return Err(RotateError::retryable(
                "the pending password does not log in",
            ));
        }
        self.fault("test", Mode::CrashAfter).await
    }

    async fn finish(
        &self,
        cx: &RotationContext,
        promoted: &SecretValue,
    ) -> Result<(), RotateError> {
        self.fault("finish", Mode::CrashBefore).await?;
        self.record(cx, "finish");
        let user = user(cx);
        let keep: Vec<String> = [Some(promoted), cx.previous.as_ref().map(|p| &p.value)]
            .into_iter()
            .flatten()
            .map(|v| field(v, "Password"))
            .collect();
        let mut passwords = Self::passwords(&self.dir, &user);
        passwords.retain(|p| keep.contains(p));
        Self::set_passwords(&self.dir, &user, &passwords);
        self.fault("finish", Mode::CrashDuring).await?;
        self.fault("finish", Mode::CrashAfter).await
    }

    fn finish_is_noop(&self) -> bool {
        self.finish_noop
    }

    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        self.fault("check", Mode::CrashBefore).await?;
        let current = field(
            &cx.current.as_ref().expect("a current version").value,
            "Password",
        );
        if Self::passwords(&self.dir, &user(cx)).contains(&current) {
            Ok(())
        } else {
            Err(RotateError::fatal("the current password does not log in"))
        }
    }
}
