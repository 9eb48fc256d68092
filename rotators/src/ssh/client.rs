//! One SSH connection to a target host: the host key checked against the pinned one, password
//! or public-key login, remote commands with bounded output and their input on stdin, and
//! `passwd` driven over a PTY.
//!
//! Secrets travel only inside the encrypted session, as authentication data or on a remote
//! command's standard input; command lines carry none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use zeroize::Zeroizing;

use super::settings::{HostKeyPin, SshAddress};
use crate::rotator::RotateError;

/// How long connecting (TCP, key exchange, login) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one remote command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The most output read from one remote command (stdout and stderr each).
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Why an SSH operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host cannot be reached, or the session broke: worth retrying.
    #[error("{0}")]
    Unreachable(String),
    /// The host presented another key than the pinned one.
    #[error("{0}")]
    HostKey(String),
    /// The credential was refused.
    #[error("{0}")]
    Denied(String),
    /// A remote command failed or answered what rotor does not understand.
    #[error("{0}")]
    Remote(String),
}

impl From<SshError> for RotateError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::Unreachable(m) => RotateError::retryable(m),
            SshError::HostKey(m) | SshError::Denied(m) | SshError::Remote(m) => {
                RotateError::fatal(m)
            }
        }
    }
}

/// A credential to log in with.
pub enum Login<'a> {
    /// A password.
    Password(&'a str),
    /// A private key.
    Key(&'a PrivateKey),
}

/// Checks the host key and remembers the one it saw.
struct Handler {
    pin: HostKeyPin,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        *self.seen.lock().expect("host key slot") = Some(key.clone());
        Ok(self.pin.accepts(key))
    }
}

/// A logged-in session.
pub struct Session {
    handle: Handle<Handler>,
    /// The user the session is logged in as.
    pub user: String,
    address: String,
}

/// What a remote command did.
pub struct Output {
    /// The command's exit status.
    pub status: u32,
    /// What the command wrote to standard output.
    pub stdout: Vec<u8>,
    /// What the command wrote to standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// stderr (or stdout when stderr is empty), trimmed and shortened for a message.
    pub fn reason(&self) -> String {
        let text = if self.stderr.iter().all(u8::is_ascii_whitespace) {
            &self.stdout
        } else {
            &self.stderr
        };
        printable_tail(text)
    }
}

/// The last 300 characters of `bytes`, control characters shown as `?`.
pub fn printable_tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect();
    let count = text.chars().count();
    let tail: String = text.chars().skip(count.saturating_sub(300)).collect();
    tail.replace('\n', " / ")
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: Some(COMMAND_TIMEOUT),
        nodelay: true,
        ..Default::default()
    })
}

/// Opens a connection, checks the host key, and returns the key the host presented.
async fn open(
    address: &SshAddress,
    pin: HostKeyPin,
) -> Result<(Handle<Handler>, PublicKey), SshError> {
    let seen = Arc::new(Mutex::new(None));
    let handler = Handler {
        pin: pin.clone(),
        seen: seen.clone(),
    };
    let shown = address.to_string();
    let connect = client::connect(config(), (address.host.as_str(), address.port), handler);
    let result = tokio::time::timeout(CONNECT_TIMEOUT, connect).await;
    let seen_key = seen.lock().expect("host key slot").clone();
    match (result, seen_key) {
        (Err(_), _) => Err(SshError::Unreachable(format!(
            "ssh host {shown} did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
        (Ok(Ok(handle)), Some(key)) => Ok((handle, key)),
        (Ok(Ok(_)), None) => Err(SshError::HostKey(format!(
            "ssh host {shown} presented no plain host key"
        ))),
        (Ok(Err(russh::Error::UnknownKey)), Some(key)) => Err(SshError::HostKey(format!(
            "ssh host {shown} presented host key {}, but the target pins {}: refusing to connect \
             (if the host was re-keyed on purpose, pin its new key: rotor target update TARGET --host-key-fingerprint {} or --trust-on-first-use)",
            fingerprint(&key),
            pin.describe(),
            fingerprint(&key)
        ))),
        (Ok(Err(e)), _) => Err(SshError::Unreachable(format!(
            "cannot connect to ssh host {shown}: {e}"
        ))),
    }
}

/// The host's key, accepting whatever it presents (trust on first use; the caller records it).
pub async fn scan_host_key(address: &SshAddress) -> Result<PublicKey, SshError> {
    let (handle, key) = open(address, HostKeyPin::Any).await?;
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    Ok(key)
}

/// Connects and checks the host key against `pin`, without logging in.
pub async fn probe(address: &SshAddress, pin: &HostKeyPin) -> Result<(), SshError> {
    let (handle, _) = open(address, pin.clone()).await?;
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    Ok(())
}

/// `SHA256:…`, as OpenSSH shows it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl Session {
    /// Connects to `address` (checking the host key against `pin`) and logs in as `user`.
    pub async fn connect(
        address: &SshAddress,
        pin: &HostKeyPin,
        user: &str,
        login: Login<'_>,
    ) -> Result<Session, SshError> {
        let (mut handle, _) = open(address, pin.clone()).await?;
        let shown = address.to_string();
        let broken =
            |e: russh::Error| SshError::Unreachable(format!("ssh session to {shown} broke: {e}"));
        let (result, how) = match login {
            Login::Password(password) => (
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    handle.authenticate_password(user, password),
                )
                .await,
                "password",
            ),
            Login::Key(key) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(broken)?
                    .flatten();
                let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash);
                (
                    tokio::time::timeout(CONNECT_TIMEOUT, handle.authenticate_publickey(user, key))
                        .await,
                    "key",
                )
            }
        };
        let result = result
            .map_err(|_| SshError::Unreachable(format!("ssh login on {shown} timed out")))?
            .map_err(broken)?;
        if !result.success() {
            return Err(SshError::Denied(format!(
                "ssh host {shown} refused the {how} of user '{user}'"
            )));
        }
        Ok(Session {
            handle,
            user: user.to_owned(),
            address: shown,
        })
    }

    fn broken(&self, e: russh::Error) -> SshError {
        SshError::Unreachable(format!("ssh session to {} broke: {e}", self.address))
    }

    /// Runs `command` (through the user's login shell, as SSH does) with `stdin` as its input,
    /// and collects its output, at most [`MAX_OUTPUT`] bytes of each stream. What the login
    /// shell prints before it runs the command (a `~/.bashrc` that echoes) is not the
    /// command's: the command line first prints a marker of its own, then `exec`s the command,
    /// and only what follows the marker is its standard output. `command` is therefore one
    /// simple command (`sh -c '…'` for a script).
    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<Output, SshError> {
        let mark = marker();
        let mut out = self
            .exec_raw(&format!("printf '%s\\n' {mark}; exec {command}"), stdin)
            .await?;
        out.stdout = after_marker(&out.stdout, &mark).ok_or_else(|| {
            SshError::Remote(format!(
                "the login shell of user '{}' on {} did not run rotor's command (a forced command, or a shell that exits early?): {}",
                self.user,
                self.address,
                out.reason()
            ))
        })?;
        Ok(out)
    }

    async fn exec_raw(&self, command: &str, stdin: &[u8]) -> Result<Output, SshError> {
        let run = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.broken(e))?;
            channel
                .exec(true, command.as_bytes())
                .await
                .map_err(|e| self.broken(e))?;
            if !stdin.is_empty() {
                channel
                    .data_bytes(stdin.to_vec())
                    .await
                    .map_err(|e| self.broken(e))?;
            }
            channel.eof().await.map_err(|e| self.broken(e))?;
            let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => append(&mut stdout, &data, &self.address)?,
                    ChannelMsg::ExtendedData { data, .. } => {
                        append(&mut stderr, &data, &self.address)?
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        return Err(SshError::Remote(format!(
                            "a command on {} was killed by signal {signal_name:?}",
                            self.address
                        )))
                    }
                    _ => {}
                }
            }
            let status = status.ok_or_else(|| {
                SshError::Unreachable(format!(
                    "a command on {} ended without an exit status",
                    self.address
                ))
            })?;
            Ok(Output {
                status,
                stdout,
                stderr,
            })
        };
        tokio::time::timeout(COMMAND_TIMEOUT, run)
            .await
            .map_err(|_| {
                SshError::Unreachable(format!(
                    "a command on {} took longer than {}s",
                    self.address,
                    COMMAND_TIMEOUT.as_secs()
                ))
            })?
    }

    /// The name of the logged-in user, as the host says (`id -un`).
    pub async fn whoami(&self) -> Result<String, SshError> {
        let out = self.exec("id -un", b"").await?;
        if out.status != 0 {
            return Err(SshError::Remote(format!(
                "'id -un' failed on {}: {}",
                self.address,
                out.reason()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Changes the logged-in user's own password with `passwd` over a PTY, answering its
    /// prompts for the current and the new password. Any other question, or a failure message
    /// from PAM, stops it: nothing is guessed.
    pub async fn passwd(&self, current: &str, new: &str) -> Result<(), SshError> {
        let run = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.broken(e))?;
            channel
                .request_pty(true, "dumb", 200, 24, 0, 0, &[])
                .await
                .map_err(|e| self.broken(e))?;
            // As in `exec`: what the login shell prints before the marker is not passwd's.
            let mark = marker();
            channel
                .exec(
                    true,
                    format!("printf '%s\\n' {mark}; exec env LC_ALL=C LANG=C passwd"),
                )
                .await
                .map_err(|e| self.broken(e))?;
            let mut transcript: Vec<u8> = Vec::new();
            let mut answered = 0usize;
            let mut pending_line = None;
            let mut status = None;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                        append(&mut transcript, &data, &self.address)?;
                        if pending_line.is_none() {
                            pending_line = marker_end(&transcript, &mark);
                        }
                        let Some(from) = pending_line else {
                            continue;
                        };
                        let text = String::from_utf8_lossy(&transcript[from..]);
                        let Some(prompt) = prompt_of(&text) else {
                            continue;
                        };
                        let answer = match classify_prompt(&prompt) {
                            Some(Prompt::Current) => current,
                            Some(Prompt::New) | Some(Prompt::Retype) => new,
                            None => {
                                let _ = channel.close().await;
                                return Err(SshError::Remote(format!(
                                    "passwd on {} asked '{}', which rotor does not answer",
                                    self.address,
                                    printable_tail(prompt.as_bytes())
                                )));
                            }
                        };
                        answered += 1;
                        if answered > 4 {
                            let _ = channel.close().await;
                            return Err(SshError::Remote(format!(
                                "passwd on {} keeps asking: {}",
                                self.address,
                                printable_tail(&transcript)
                            )));
                        }
                        pending_line = Some(transcript.len());
                        let line = Zeroizing::new(format!("{answer}\n"));
                        channel
                            .data_bytes(line.as_bytes().to_vec())
                            .await
                            .map_err(|e| self.broken(e))?;
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    _ => {}
                }
            }
            let from = pending_line.map_or(0, |_| marker_end(&transcript, &mark).unwrap_or(0));
            let said = scrubbed(&transcript[from..], &[current, new]);
            match status {
                Some(0) => Ok(()),
                Some(_) => Err(SshError::Remote(passwd_failure(&self.address, &said))),
                None => Err(SshError::Unreachable(format!(
                    "passwd on {} ended without an exit status: {said}",
                    self.address
                ))),
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, run)
            .await
            .map_err(|_| {
                SshError::Unreachable(format!(
                    "passwd on {} did not finish within {}s",
                    self.address,
                    COMMAND_TIMEOUT.as_secs()
                ))
            })?
    }

    /// Whether the connection is still open (a kept session is checked before reuse).
    pub fn is_open(&self) -> bool {
        !self.handle.is_closed()
    }

    /// Ends the session (errors ignored).
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A fresh marker a remote command line prints before the command's own output.
fn marker() -> String {
    format!("rotor-output-{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Where the output after the first line that is `mark` begins (a PTY ends it with `\r\n`).
fn marker_end(output: &[u8], mark: &str) -> Option<usize> {
    let mark = mark.as_bytes();
    output
        .windows(mark.len())
        .enumerate()
        .filter(|(_, w)| *w == mark)
        .find_map(|(at, _)| {
            let end = at + mark.len();
            let rest = &output[end..];
            if rest.starts_with(b"\r\n") {
                Some(end + 2)
            } else if rest.starts_with(b"\n") {
                Some(end + 1)
            } else {
                None
            }
        })
}

/// The output after the marker line, or `None` when the marker never came.
fn after_marker(output: &[u8], mark: &str) -> Option<Vec<u8>> {
    marker_end(output, mark).map(|end| output[end..].to_vec())
}

fn append(buf: &mut Vec<u8>, data: &[u8], address: &str) -> Result<(), SshError> {
    if buf.len() + data.len() > MAX_OUTPUT {
        return Err(SshError::Remote(format!(
            "a command on {address} wrote more than {MAX_OUTPUT} bytes"
        )));
    }
    buf.extend_from_slice(data);
    Ok(())
}

/// What passwd said, shortened, with every secret replaced.
fn scrubbed(transcript: &[u8], secrets: &[&str]) -> String {
    crate::value::withhold_if_quoting(printable_tail(transcript), secrets)
}

/// A clear message for PAM's usual refusals; otherwise what passwd said.
fn passwd_failure(address: &str, said: &str) -> String {
    let lower = said.to_ascii_lowercase();
    // PAM ends most refusals with "Authentication token manipulation error": the more precise
    // reason before it wins.
    let why = if lower.contains("must wait") {
        "the password was changed too recently (the account's minimum password age)"
    } else if lower.contains("authentication token manipulation error")
        || lower.contains("authentication failure")
    {
        "the current password was refused"
    } else if lower.contains("bad password") || lower.contains("unchanged") {
        "the new password was rejected by the host's password policy"
    } else {
        "passwd failed"
    };
    format!("{why} (passwd on {address} said: {said})")
}

#[derive(Debug, PartialEq, Eq)]
enum Prompt {
    Current,
    New,
    Retype,
}

/// The last line of `text` if it is a prompt waiting for input (ends with `:`).
fn prompt_of(text: &str) -> Option<String> {
    let line = text.rsplit(['\n', '\r']).find(|l| !l.trim().is_empty())?;
    let trimmed = line.trim_end();
    // A prompt is the last thing written, with no newline after it.
    let after = &text[text.rfind(line).unwrap_or(0) + line.len()..];
    (trimmed.ends_with(':') && !after.contains('\n')).then(|| trimmed.to_owned())
}

/// Which password a passwd prompt asks for; `None` for any other question.
fn classify_prompt(prompt: &str) -> Option<Prompt> {
    let p = prompt.to_ascii_lowercase();
    if !p.contains("password") {
        return None;
    }
    if ["retype", "re-enter", "again", "repeat", "confirm"]
        .iter()
        .any(|w| p.contains(w))
    {
        Some(Prompt::Retype)
    } else if p.contains("current") || p.contains("old") {
        Some(Prompt::Current)
    } else if p.contains("new") {
        Some(Prompt::New)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_failures_name_the_precise_reason() {
        let said = "You must wait longer to change your password\npasswd: Authentication token manipulation error";
        assert!(passwd_failure("h:22", said).starts_with("the password was changed too recently"));
        let said = "passwd: Authentication token manipulation error";
        assert!(passwd_failure("h:22", said).starts_with("the current password was refused"));
    }

    #[test]
    fn output_starts_after_the_marker_line() {
        let mark = marker();
        let noisy = format!("Welcome to conda\nfortune: {mark} is not it\n{mark}\nalice\n");
        assert_eq!(after_marker(noisy.as_bytes(), &mark).unwrap(), b"alice\n");
        let pty = format!("hi\r\n{mark}\r\nCurrent password: ");
        assert_eq!(
            &pty.as_bytes()[marker_end(pty.as_bytes(), &mark).unwrap()..],
            b"Current password: "
        );
        assert_eq!(after_marker(b"no marker here\n", &mark), None);
        assert_ne!(marker(), marker());
    }

    #[test]
    fn passwd_prompts_are_recognised_and_nothing_else_is() {
        assert_eq!(classify_prompt("Current password:"), Some(Prompt::Current));
        assert_eq!(
            classify_prompt("(current) UNIX password:"),
            Some(Prompt::Current)
        );
        assert_eq!(classify_prompt("New password:"), Some(Prompt::New));
        assert_eq!(
            classify_prompt("Retype new password:"),
            Some(Prompt::Retype)
        );
        assert_eq!(
            classify_prompt("Enter new UNIX password:"),
            Some(Prompt::New)
        );
        assert_eq!(classify_prompt("Verification code:"), None);
        assert_eq!(classify_prompt("Password:"), None);
        assert_eq!(
            prompt_of("Changing password for app.\nCurrent password: "),
            Some("Current password:".into())
        );
        assert_eq!(prompt_of("passwd: password updated successfully\n"), None);
    }

    #[test]
    fn failures_name_the_reason_without_secrets() {
        let said = scrubbed(
            b"Current password: \r\npasswd: Authentication token manipulation error\r\n",
            &["Hunter2"],
        );
        let msg = passwd_failure("h:22", &said);
        assert!(msg.starts_with("the current password was refused"), "{msg}");
        let clean = scrubbed(b"echo Hunter2", &["Hunter2"]);
        assert!(
            !clean.contains("Hunter2") && clean.contains("[REDACTED]"),
            "{clean}"
        );
    }
}
