//! The SSH (ECS) family against real OpenSSH: each test starts its own `sshd` on a loopback
//! port with its own host key and config, and creates its own Linux users (with and without
//! sudo). Logins are checked with the OpenSSH client (`ssh`, and `sshpass` for passwords), not
//! with rotor's own code.

mod drift;
mod hosts;
mod keys;
mod kills;
mod passwords;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::sshd::{keygen, random_word, run, set_password, HostUser, Sshd, Sudo};
use crate::support::{assert_refused, write_file, Backend, TestEnv};

/// `rotor target add NAME --kind ssh --url URL ARGS…`, with `stdin` on standard input.
pub(crate) fn add_target(
    t: &TestEnv,
    name: &str,
    sshd: &Sshd,
    args: &[&str],
    stdin: &str,
) -> Output {
    let url = sshd.url();
    let mut all = vec!["target", "add", name, "--kind", "ssh", "--url", &url];
    all.extend_from_slice(args);
    t.run_with_stdin(&all, stdin)
}

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A stage's value of a secret.
pub(crate) fn value(t: &TestEnv, secret: &str, stage: &str) -> Value {
    let out = t.json(&["secret", "get", secret, "--stage", stage]);
    serde_json::from_str(out["SecretData"].as_str().expect("text value")).unwrap()
}

fn field(v: &Value, name: &str) -> String {
    v[name].as_str().unwrap().to_owned()
}

pub(crate) fn import_file(t: &TestEnv, v: &Value) -> String {
    write_file(
        t.dir.path(),
        &format!("v{}.json", random_word(6)),
        v.to_string().as_bytes(),
    )
    .display()
    .to_string()
}

/// A test's store, initialised.
async fn env(backend: Backend) -> TestEnv {
    let t = TestEnv::new(backend).await;
    t.ok(&["init"]);
    t
}

/// `rotor rotate SECRET` (trace logs on), which must succeed and whose output and logs show
/// neither the new nor the old credential.
pub(crate) fn rotate(t: &TestEnv, secret: &str) -> String {
    let out = t.run(&["rotate", secret]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rotate {secret}: {text}");
    for stage in ["ACSCurrent", "ACSPrevious"] {
        let v = value(t, secret, stage);
        for secret_field in ["Password", "PrivateKey"] {
            if let Some(s) = v[secret_field].as_str() {
                // A private key: one line of its body is enough to find it.
                let needle = s.lines().nth(2).unwrap_or(s);
                assert!(
                    !text.contains(needle),
                    "rotate's output shows the {stage} {secret_field}"
                );
            }
        }
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
