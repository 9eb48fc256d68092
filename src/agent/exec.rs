//! Exec mode (`rotor agent exec --env VAR=SECRET[#FIELD] -- CMD ARGS`): the program starts with
//! those variables and, when one of their values changes, is stopped (the configured signal to
//! its process group, then `SIGKILL` after the grace) and started again with the new values —
//! so a program that reads its environment once still follows rotations. When the program exits
//! on its own, the agent exits with its status; a signal to the agent is passed on the same way.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::client::CallError;
use super::secrets::{backoff, Snapshot, Watcher};
use crate::error::{Error, Result};

/// One `--env VAR=SECRET[#FIELD]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvSpec {
    /// The variable.
    pub var: String,
    /// The secret's name.
    pub secret: String,
    /// The value's JSON field; the whole value when absent.
    pub field: Option<String>,
}

impl FromStr for EnvSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<EnvSpec, String> {
        let (var, rest) = s
            .split_once('=')
            .ok_or_else(|| "expected VAR=SECRET[#FIELD]".to_owned())?;
        let var_ok = !var.is_empty()
            && !var.starts_with(|c: char| c.is_ascii_digit())
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !var_ok {
            return Err(format!(
                "'{}' is not a variable name (letters, digits, _)",
                crate::model::printable(var)
            ));
        }
        let (secret, field) = match rest.split_once('#') {
            Some((s, f)) if !f.is_empty() => (s, Some(f.to_owned())),
            Some(_) => return Err("an empty #FIELD".into()),
            None => (rest, None),
        };
        let secret = crate::model::SecretName::parse(secret)
            .map_err(|e| e.to_string())?
            .as_str()
            .to_owned();
        Ok(EnvSpec {
            var: var.to_owned(),
            secret,
            field,
        })
    }
}

/// What `rotor agent exec` runs, and how it stops it.
#[derive(Clone, Debug)]
pub struct ExecSpec {
    /// The variables.
    pub env: Vec<EnvSpec>,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// The signal that asks it to stop.
    pub signal: i32,
    /// How long it may take before `SIGKILL`.
    pub grace: Duration,
}

/// A signal by name: `TERM`, `SIGTERM`, `HUP`, `INT`, `QUIT`, `USR1`, `USR2`, `KILL`.
pub fn parse_signal(s: &str) -> std::result::Result<i32, String> {
    let name = s.trim_start_matches("SIG");
    Ok(match name {
        "TERM" => libc::SIGTERM,
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "KILL" => libc::SIGKILL,
        _ => {
            return Err(format!(
                "'{}' is not one of TERM, HUP, INT, QUIT, USR1, USR2, KILL",
                crate::model::printable(s)
            ))
        }
    })
}

/// The variables' values from `snapshot`; `Err` names the variable that has none (never a
/// value).
fn environment(
    specs: &[EnvSpec],
    snapshot: &Snapshot,
) -> Result<Vec<(String, Zeroizing<String>)>, String> {
    specs
        .iter()
        .map(|spec| {
            let fetched = snapshot.get(&spec.secret).ok_or_else(|| {
                format!("{}: secret '{}' has no value (yet)", spec.var, spec.secret)
            })?;
            let value = match &spec.field {
                None => fetched.data.clone(),
                Some(field) => {
                    let json: serde_json::Value =
                        serde_json::from_str(&fetched.data).map_err(|_| {
                            format!(
                                "{}: secret '{}' holds no JSON, so no field {field}",
                                spec.var, spec.secret
                            )
                        })?;
                    match json.get(field) {
                        Some(serde_json::Value::String(s)) => Zeroizing::new(s.clone()),
                        _ => {
                            return Err(format!(
                                "{}: secret '{}' has no text field {}",
                                spec.var,
                                spec.secret,
                                crate::model::printable(field)
                            ))
                        }
                    }
                }
            };
            if value.contains('\0') {
                return Err(format!("{}: the value holds a NUL byte", spec.var));
            }
            Ok((spec.var.clone(), value))
        })
        .collect()
}

/// Versions the program was started with, to tell a change from a poll that found none.
fn versions(specs: &[EnvSpec], snapshot: &Snapshot) -> Vec<Option<String>> {
    specs
        .iter()
        .map(|s| snapshot.get(&s.secret).map(|f| f.version_id.clone()))
        .collect()
}

fn start(spec: &ExecSpec, env: &[(String, Zeroizing<String>)]) -> Result<Child> {
    let mut command = Command::new(&spec.command[0]);
    command.args(&spec.command[1..]).process_group(0);
    // The agent's own settings (`ROTOR_…`: its key file, rotor's master key or config if the
    // agent was started with them) are not the program's: it gets only what `--env` names.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ROTOR_") {
            command.env_remove(k);
        }
    }
    for (k, v) in env {
        command.env(k, v.as_str());
    }
    let child = command.spawn().map_err(|e| {
        Error::invalid(format!(
            "cannot start {}: {e}",
            spec.command[0].to_string_lossy()
        ))
    })?;
    tracing::info!(pid = child.id(), "program started");
    Ok(child)
}

/// Stops `child` (its process group): `signal`, then `SIGKILL` after `grace`. Its exit code.
async fn stop(child: &mut Child, signal: i32, grace: Duration) -> i32 {
    if let Some(pid) = child.id() {
        // SAFETY: kill has no memory effects; the group is the child's own (process_group(0)).
        unsafe { libc::kill(-(pid as i32), signal) };
    }
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!("the program did not stop within {grace:?}: SIGKILL");
            if let Some(pid) = child.id() {
                // SAFETY: as above.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            child.wait().await
        }
    };
    exit_code(status)
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => 1,
    }
}

/// Runs the program until it exits or `cancel`; restarts it when a value it uses changes.
pub async fn run(watcher: Arc<Watcher>, spec: ExecSpec, cancel: CancellationToken) -> Result<i32> {
    let names: BTreeSet<String> = spec.env.iter().map(|e| e.secret.clone()).collect();
    // The first values: the program never starts without them; an unreachable API is retried,
    // a refusal (a key without the secret, a secret that does not exist) ends the agent.
    let mut failures = 0;
    while let Err(e) = watcher.ensure(&names).await {
        if let CallError::Refused { .. } = e {
            return Err(Error::Target(format!("{e}; the program was not started")));
        }
        failures += 1;
        if failures == 1 {
            tracing::warn!("{e}; the program starts once every value is read");
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(130),
            _ = tokio::time::sleep(backoff(Duration::from_secs(30), failures)) => {}
        }
    }
    let mut changes = watcher.subscribe();
    let mut snapshot = changes.borrow_and_update().clone();
    let env = environment(&spec.env, &snapshot).map_err(Error::invalid)?;
    let mut started = versions(&spec.env, &snapshot);
    let mut child = start(&spec, &env)?;
    drop(env);
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = exit_code(status);
                tracing::info!(code, "the program exited");
                return Ok(code);
            }
            _ = cancel.cancelled() => {
                return Ok(stop(&mut child, spec.signal, spec.grace).await);
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(stop(&mut child, spec.signal, spec.grace).await);
                }
            }
        }
        snapshot = changes.borrow_and_update().clone();
        if versions(&spec.env, &snapshot) == started {
            continue;
        }
        let env = match environment(&spec.env, &snapshot) {
            Ok(env) => env,
            Err(e) => {
                tracing::error!("{e}; the program keeps running with the values it has");
                continue;
            }
        };
        tracing::info!("a value changed: restarting the program");
        let code = stop(&mut child, spec.signal, spec.grace).await;
        tracing::info!(code, "the program stopped");
        child = start(&spec, &env)?;
        started = versions(&spec.env, &snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_specs_and_signals_parse() {
        let e: EnvSpec = "DB_USER=db/orders#AccountName".parse().unwrap();
        assert_eq!(
            e,
            EnvSpec {
                var: "DB_USER".into(),
                secret: "db/orders".into(),
                field: Some("AccountName".into())
            }
        );
        let e: EnvSpec = "TOKEN=app/token".parse().unwrap();
        assert_eq!(e.field, None);
        for bad in ["NOEQUALS", "1X=a", "X-Y=a", "X=a#", "X=bad name"] {
            assert!(bad.parse::<EnvSpec>().is_err(), "{bad}");
        }
        assert_eq!(parse_signal("SIGHUP"), Ok(libc::SIGHUP));
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert!(parse_signal("SIGFOO").is_err());
    }
}
