//! The real `rotor` binary, driven as processes: one-shot CLI commands, the workers, the API
//! server, and signed API calls to it (RPC style, HMAC-SHA1, as the SDKs send them). Nothing
//! here reaches into the engine: what the chaos run knows of rotor it learns as a user would.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// How every command reaches the store.
#[derive(Clone)]
pub struct Rotor {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub store: String,
}

/// A worker's settings: short leases and backoffs, so that faults are felt within a soak.
pub const LEASE_SECS: u64 = 5;

impl Rotor {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ROTOR_DATA_DIR", &self.data_dir)
            .env("ROTOR_STORE", &self.store)
            .env("ROTOR_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("ROTOR_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs one command (its input on stdin), killed after `timeout`.
    pub async fn run_for(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<Output> {
        let mut cmd = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().context("rotor starts")?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).await?;
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(out) => Ok(out?),
            Err(_) => bail!("rotor {} did not end within {timeout:?}", args.join(" ")),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_for(args, None, Duration::from_secs(120)).await
    }

    /// A command that must succeed; its stdout.
    pub async fn ok_with(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let out = self.run_for(args, stdin, Duration::from_secs(120)).await?;
        if !out.status.success() {
            bail!(
                "rotor {} failed ({}): {}",
                redact_args(args),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        self.ok_with(args, None).await
    }

    pub async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all).await?;
        serde_json::from_str(&text).with_context(|| format!("rotor --json {}", args.join(" ")))
    }

    /// `rotor worker` with the soak's settings, its log appended to `log`.
    pub fn spawn_worker(&self, log: &Path) -> Result<Child> {
        let file = append_to(log)?;
        let mut cmd = self.command();
        cmd.env("ROTOR_LOG", "info")
            .args(["worker", "--lease"])
            .arg(format!("{LEASE_SECS}s"))
            .args([
                "--poll",
                "250ms",
                "--backoff-base",
                "1s",
                "--backoff-cap",
                "8s",
                "--max-attempts",
                "12",
                "--step-timeout",
                "20s",
                "--drain-timeout",
                "5s",
            ])
            .stdout(Stdio::null())
            .stderr(file);
        Ok(cmd.spawn()?)
    }

    /// `rotor serve` on a loopback port, plain HTTP.
    pub fn spawn_api(&self, addr: &str, log: &Path) -> Result<Child> {
        let file = append_to(log)?;
        let mut cmd = self.command();
        cmd.env("ROTOR_LOG", "info")
            .args(["serve", "--api-listen", addr, "--api-plain-http"])
            .stdout(Stdio::null())
            .stderr(file);
        Ok(cmd.spawn()?)
    }
}

/// The arguments as they may be shown: the value after `--value` hidden.
fn redact_args(args: &[&str]) -> String {
    let mut shown = Vec::new();
    let mut hide = false;
    for a in args {
        shown.push(if hide { "…" } else { a });
        hide = *a == "--value" || *a == "--admin-password";
    }
    shown.join(" ")
}

/// A client of rotor's KMS-compatible API (or the RAM emulator) over plain HTTP on loopback.
#[derive(Clone)]
pub struct Api {
    pub addr: String,
    pub key_id: String,
    pub key_secret: String,
    /// The API version signed in: KMS's `2016-01-20` (rotor), RAM's `2015-05-01` (the emulator).
    pub version: &'static str,
}

pub const KMS: &str = "2016-01-20";
pub const RAM: &str = "2015-05-01";

/// A version as `GetSecretValue` returns it.
#[derive(Clone, Debug)]
pub struct Version {
    pub id: String,
    pub data: String,
}

impl Api {
    /// One signed call; the answer's JSON, or the API's error code.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value> {
        let nonce = format!("{:032x}", rand::random::<u128>());
        let mut all: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Version".into(), self.version.into()),
            ("Format".into(), "JSON".into()),
            ("AccessKeyId".into(), self.key_id.clone()),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureVersion".into(), "1.0".into()),
            ("SignatureNonce".into(), nonce),
            (
                "Timestamp".into(),
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
        ];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let signature = acs_sign::sign::v1_signature(&self.key_secret, "POST", &all);
        all.push(("Signature".into(), signature));
        let body = acs_sign::sign::canonical_query(&all);
        let (status, text) = tokio::time::timeout(Duration::from_secs(30), self.post(&body))
            .await
            .map_err(|_| anyhow!("{action}: no answer within 30 s"))??;
        let value: Value = serde_json::from_str(&text)
            .map_err(|_| anyhow!("{action}: HTTP {status}, not JSON"))?;
        if status != 200 {
            bail!(
                "{action}: HTTP {status} {}",
                value["Code"].as_str().unwrap_or("?")
            );
        }
        Ok(value)
    }

    async fn post(&self, body: &str) -> Result<(u16, String)> {
        let mut s = tokio::net::TcpStream::connect(&self.addr).await?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(4 << 20).read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("a truncated HTTP answer"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no HTTP status"))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        Ok((status, body))
    }

    /// The version holding `stage`, or None when no version holds it.
    pub async fn stage(&self, name: &str, stage: &str) -> Result<Option<Version>> {
        match self
            .call(
                "GetSecretValue",
                &[("SecretName", name), ("VersionStage", stage)],
            )
            .await
        {
            Ok(v) => Ok(Some(Version {
                id: v["VersionId"].as_str().unwrap_or_default().to_owned(),
                data: v["SecretData"].as_str().unwrap_or_default().to_owned(),
            })),
            Err(e) if e.to_string().contains("NotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// `log`, opened for appending (made if missing): a process's stderr across restarts.
fn append_to(log: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
}
