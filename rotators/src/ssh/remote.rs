//! What rotor does on a host: log in as a user or as the target's admin, change a password
//! (`passwd` as the user, `chpasswd` as root or through `sudo`), read and atomically replace a
//! user's `~/.ssh/authorized_keys`.
//!
//! Remote commands are fixed scripts; the only thing put into them is a user name that passed
//! [`check_user_name`](super::settings::check_user_name), single-quoted. Passwords and file
//! contents go on the command's standard input.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::client::{Login, Output, Session, SshError};
use super::keys::KeyPair;
use super::sessions;
use super::settings::{HostKeyPin, SshAddress, SshTarget};
use crate::rotator::{RotateError, TargetContext};
use crate::value::SecretValue;

/// Exit status of the write script when the file changed since rotor read it.
const CHANGED: u32 = 75;

/// Where a target is and which host key it accepts.
pub struct Host {
    /// The target's name, for messages.
    pub name: String,
    /// Where the host listens.
    pub address: SshAddress,
    /// The host key the target accepts.
    pub pin: HostKeyPin,
    /// The target's name and settings: what a kept session must match.
    id: String,
}

impl Host {
    /// The host a target names, from its stored settings.
    pub fn of(target: &TargetContext) -> Result<Host, RotateError> {
        let config = SshTarget::from_json(&target.config)?;
        Ok(Host {
            name: target.name.clone(),
            pin: config.pin()?,
            address: config.address,
            id: format!("{}\u{0}{}", target.name, target.config),
        })
    }

    /// A session of `credential`'s user: a kept one (see [`sessions`](super::sessions)), or a
    /// fresh, checked login with it. Give it back with [`keep_user`](Self::keep_user).
    pub async fn user_session(&self, credential: &Credential) -> Result<Session, SshError> {
        match sessions::take_user(&self.id, &credential.user) {
            Some(session) => Ok(session),
            None => self.login_checked(credential).await,
        }
    }

    /// Keeps a checked session of its user for the next step or rotation.
    pub fn keep_user(&self, session: Session) {
        sessions::keep_user(&self.id, session);
    }

    /// The target's admin: a kept session of the same admin credential, or a fresh login
    /// ([`admin`](Self::admin)). Give it back with [`keep_admin`](Self::keep_admin).
    pub async fn admin_session(&self, target: &TargetContext) -> Result<Admin, RotateError> {
        let credential = target.admin()?;
        let user = Credential::from_value(credential)?.user;
        match sessions::take_admin(&self.id, &user, credential.expose()) {
            Some(admin) => Ok(admin),
            None => self.admin(target).await,
        }
    }

    /// Edits `user`'s authorized_keys through `editor`: `change` gives the new content from
    /// the current one, or `None` when nothing is to change. When rotor saw the file lately
    /// (its own last write, a step or a rotation before), the edit is one command: the new
    /// content goes with the old one's SHA-256, and the host replaces the file only if it
    /// still matches. Otherwise — or when it no longer matches — the file is read first.
    pub async fn edit_keys(
        &self,
        editor: &Editor<'_>,
        user: &str,
        change: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), SshError> {
        if let Some(content) = sessions::known_file(&self.id, user) {
            let guess = KeysFile { content };
            // Nothing to change by the guess: what the file holds is read, never assumed.
            if let Some(new) = change(guess.bytes()) {
                match editor.write(user, &guess, &new).await {
                    Ok(()) => {
                        sessions::remember_file(&self.id, user, Some(Some(new)));
                        return Ok(());
                    }
                    Err(SshError::Unreachable(_)) => {} // changed since: read it
                    Err(e) => {
                        sessions::remember_file(&self.id, user, None);
                        return Err(e);
                    }
                }
            }
        }
        sessions::remember_file(&self.id, user, None);
        let file = editor.read(user).await?;
        let Some(new) = change(file.bytes()) else {
            sessions::remember_file(&self.id, user, Some(file.content));
            return Ok(());
        };
        editor.write(user, &file, &new).await?;
        sessions::remember_file(&self.id, user, Some(Some(new)));
        Ok(())
    }

    /// Keeps an admin session for the next step or rotation on this target.
    pub fn keep_admin(&self, target: &TargetContext, admin: Admin) {
        if let Ok(credential) = target.admin() {
            sessions::keep_admin(&self.id, credential.expose(), admin);
        }
    }

    /// Logs in with an `ECS` value (password or key pair).
    pub async fn login(&self, credential: &Credential) -> Result<Session, SshError> {
        let login = match &credential.secret {
            CredentialSecret::Password(p) => Login::Password(p),
            CredentialSecret::Key(k) => Login::Key(&k.private),
        };
        Session::connect(&self.address, &self.pin, &credential.user, login).await
    }

    /// Logs in with `credential` and checks the host agrees on who logged in.
    pub async fn login_checked(&self, credential: &Credential) -> Result<Session, SshError> {
        let session = self.login(credential).await?;
        let who = session.whoami().await?;
        if who != credential.user {
            return Err(SshError::Remote(format!(
                "logging in as '{}' on {} gave user '{who}'",
                credential.user, self.name
            )));
        }
        Ok(session)
    }

    /// Logs in as the target's admin and finds out how it gets root: it is root, or it has
    /// `sudo` (with its password, or without one for a key).
    pub async fn admin(&self, target: &TargetContext) -> Result<Admin, RotateError> {
        let credential = Credential::from_value(target.admin()?)?;
        let session = self.login(&credential).await.map_err(|e| match e {
            SshError::Denied(m) => {
                RotateError::fatal(format!("the admin of target '{}': {m}", self.name))
            }
            other => other.into(),
        })?;
        let out = session.exec("id -u", b"").await?;
        let root = String::from_utf8_lossy(&out.stdout).trim() == "0";
        // A password goes to sudo only if sudo will ask for one: with a NOPASSWD rule it
        // would not read it, and the password line would reach the command's input instead.
        // (`-k` ignores cached credentials, so `sudo -k -n` succeeds only without a password.)
        let via = if root {
            Via::Root
        } else {
            match credential.secret {
                CredentialSecret::Password(p) => {
                    let probe = session.exec("sudo -k -n true", b"").await?;
                    if probe.status == 0 {
                        Via::SudoNoPassword
                    } else {
                        Via::SudoPassword(p)
                    }
                }
                CredentialSecret::Key(_) => Via::SudoNoPassword,
            }
        };
        Ok(Admin {
            session,
            user: credential.user,
            via,
        })
    }
}

/// A user and the secret it logs in with.
pub struct Credential {
    /// The user to log in as.
    pub user: String,
    /// The password or key pair it logs in with.
    pub secret: CredentialSecret,
}

/// The secret of a [`Credential`].
pub enum CredentialSecret {
    /// A password.
    Password(Zeroizing<String>),
    /// A key pair.
    Key(Box<KeyPair>),
}

impl Credential {
    /// Reads an `ECS` value: `{"UserName","Password"}` or a key pair.
    pub fn from_value(value: &SecretValue) -> Result<Credential, RotateError> {
        let parsed: serde_json::Value = serde_json::from_slice(value.expose())
            .map_err(|_| RotateError::fatal("an ECS credential is not JSON"))?;
        if parsed.get("PrivateKey").is_some() {
            let pair = KeyPair::from_value(value)?;
            return Ok(Credential {
                user: pair.user.clone(),
                secret: CredentialSecret::Key(Box::new(pair)),
            });
        }
        let field = |name: &str| {
            parsed
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| RotateError::fatal(format!("an ECS credential has no '{name}'")))
        };
        Ok(Credential {
            user: field("UserName")?.to_owned(),
            secret: CredentialSecret::Password(Zeroizing::new(field("Password")?.to_owned())),
        })
    }

    /// The password, or an empty string for a key pair.
    pub fn password(&self) -> &str {
        match &self.secret {
            CredentialSecret::Password(p) => p,
            CredentialSecret::Key(_) => "",
        }
    }
}

/// How the admin runs commands as root.
pub enum Via {
    /// The admin is root.
    Root,
    /// The admin uses `sudo` with this password.
    SudoPassword(Zeroizing<String>),
    /// The admin uses `sudo` without a password.
    SudoNoPassword,
}

/// A session logged in as the target's admin.
pub struct Admin {
    /// The logged-in session.
    pub session: Session,
    /// The admin's user name.
    pub user: String,
    /// How the admin runs commands as root.
    pub via: Via,
}

impl Admin {
    /// Runs `script` as root, `input` on its standard input (after the sudo password, which
    /// `sudo -S -k` reads first: `-k` makes it ask even where an earlier sudo left cached
    /// credentials).
    pub async fn run_as_root(&self, script: &str, input: &[u8]) -> Result<Output, SshError> {
        let quoted = shell_quote(script);
        match &self.via {
            Via::Root => self.session.exec(&format!("sh -c {quoted}"), input).await,
            Via::SudoNoPassword => {
                self.session
                    .exec(&format!("sudo -n sh -c {quoted}"), input)
                    .await
            }
            Via::SudoPassword(password) => {
                let mut stdin =
                    Zeroizing::new(Vec::with_capacity(password.len() + 1 + input.len()));
                stdin.extend_from_slice(password.as_bytes());
                stdin.push(b'\n');
                stdin.extend_from_slice(input);
                self.session
                    .exec(&format!("sudo -S -k -p '' sh -c {quoted}"), &stdin)
                    .await
            }
        }
    }

    /// What it may do, for `target check`.
    pub fn describe(&self) -> String {
        match self.via {
            Via::Root => format!("logs in as '{}' (root)", self.user),
            Via::SudoPassword(_) => format!(
                "logs in as '{}' and runs commands with sudo (password)",
                self.user
            ),
            Via::SudoNoPassword => format!(
                "logs in as '{}' and runs commands with sudo (no password)",
                self.user
            ),
        }
    }

    /// `user`'s uid on the host (`id -u`), or an error saying it does not exist.
    pub async fn uid_of(&self, user: &str) -> Result<u32, SshError> {
        let out = self
            .session
            .exec(&format!("id -u -- {}", shell_quote(user)), b"")
            .await?;
        if out.status != 0 {
            return Err(SshError::Remote(format!(
                "user '{user}' does not exist on the host: {}",
                out.reason()
            )));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| SshError::Remote(format!("'id -u' of user '{user}' gave no number")))
    }

    /// Checks that it really gets root (`sudo` may be missing or refuse).
    pub async fn check_root(&self) -> Result<(), SshError> {
        let out = self.run_as_root("id -u", b"").await?;
        if out.status != 0 || String::from_utf8_lossy(&out.stdout).trim() != "0" {
            return Err(SshError::Denied(format!(
                "the admin '{}' cannot run commands as root: {}",
                self.user,
                out.reason()
            )));
        }
        Ok(())
    }

    /// Sets `user`'s password with `chpasswd`, the password on its standard input. The line
    /// goes to chpasswd only once it arrived whole (newline included): a connection cut
    /// mid-way must not set a truncated password. It stays in the shell's memory (`read`,
    /// then the `printf` builtin into the pipe): no file, no command line.
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), SshError> {
        let line = Zeroizing::new(format!("{user}:{password}\n"));
        let script =
            "IFS= read -r line || { echo 'the password arrived incomplete' >&2; exit 75; }\n\
                      printf '%s\\n' \"$line\" | chpasswd";
        let out = self.run_as_root(script, line.as_bytes()).await?;
        if out.status != 0 {
            return Err(SshError::Remote(format!(
                "chpasswd for user '{user}' failed: {}",
                scrub(&out.reason(), password)
            )));
        }
        Ok(())
    }
}

fn scrub(text: &str, secret: &str) -> String {
    crate::value::withhold_if_quoting(text.to_owned(), &[secret])
}

/// `'…'` for sh, with single quotes escaped.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A user's authorized_keys as rotor read it.
pub struct KeysFile {
    /// `None` when the file does not exist.
    pub content: Option<Vec<u8>>,
}

impl KeysFile {
    /// The SHA-256 the write script compares against (`absent` for no file).
    fn fingerprint(&self) -> String {
        match &self.content {
            Some(c) => hex::encode(Sha256::digest(c)),
            None => "absent".into(),
        }
    }

    /// The file's content, empty when there is no file.
    pub fn bytes(&self) -> &[u8] {
        self.content.as_deref().unwrap_or_default()
    }
}

/// The prelude of the scripts: the user's home from the password database, never from input.
fn prelude(user: &str) -> String {
    format!(
        r#"set -eu
umask 077
u={user}
h=$(getent passwd "$u" | cut -d: -f6)
[ -n "$h" ] || {{ echo "user $u does not exist" >&2; exit 3; }}
d="$h/.ssh"
f="$d/authorized_keys"
if [ -L "$d" ] || [ -L "$f" ]; then echo "$f or its directory is a symbolic link; rotor does not follow it" >&2; exit 4; fi
"#,
        user = shell_quote(user)
    )
}

fn read_script(user: &str) -> String {
    format!(
        "{}if [ -f \"$f\" ]; then echo present; cat -- \"$f\"; else echo absent; fi\n",
        prelude(user)
    )
}

/// Writes standard input to a temporary file beside authorized_keys, mode 0600, owned by the
/// user, and renames it over the file — only if all of it arrived (its SHA-256 is `content`:
/// a connection cut mid-way gives `cat` an early end of input, not a signal) and the file has
/// not changed since rotor read it (its SHA-256 is still `expected`).
fn write_script(user: &str, expected: &str, content: &str) -> String {
    format!(
        r#"{prelude}if [ ! -d "$d" ]; then mkdir -m 700 "$d"; if [ "$(id -u)" = 0 ]; then chown "$u": "$d"; fi; fi
t=$(mktemp "$d/.authorized_keys.rotor.XXXXXX")
trap 'rm -f "$t"' EXIT HUP INT TERM
cat > "$t"
if [ "$(sha256sum < "$t" | cut -c1-64)" != {content} ]; then echo "the new authorized_keys arrived incomplete" >&2; exit {CHANGED}; fi
if [ -e "$f" ]; then now=$(sha256sum < "$f" | cut -c1-64); else now=absent; fi
if [ "$now" != {expected} ]; then echo "$f changed while rotor was editing it" >&2; exit {CHANGED}; fi
chmod 600 "$t"
if [ "$(id -u)" = 0 ]; then chown "$u": "$t"; fi
mv -f "$t" "$f"
trap - EXIT
"#,
        prelude = prelude(user),
        expected = shell_quote(expected),
        content = shell_quote(content),
    )
}

/// Who edits a user's authorized_keys: the user itself, or the admin as root.
pub enum Editor<'a> {
    /// The user itself, in its own session.
    User(&'a Session),
    /// The target's admin, as root.
    Admin(&'a Admin),
}

impl Editor<'_> {
    async fn run(&self, script: &str, input: &[u8]) -> Result<Output, SshError> {
        match self {
            Editor::User(session) => {
                session
                    .exec(&format!("sh -c {}", shell_quote(script)), input)
                    .await
            }
            Editor::Admin(admin) => admin.run_as_root(script, input).await,
        }
    }

    /// Reads `user`'s authorized_keys (bounded by the session's output limit).
    pub async fn read(&self, user: &str) -> Result<KeysFile, SshError> {
        let out = self.run(&read_script(user), b"").await?;
        if out.status != 0 {
            return Err(SshError::Remote(format!(
                "cannot read the authorized_keys of user '{user}': {}",
                out.reason()
            )));
        }
        let content = if let Some(rest) = out.stdout.strip_prefix(b"present\n") {
            Some(rest.to_vec())
        } else if out.stdout.starts_with(b"absent") {
            None
        } else {
            return Err(SshError::Remote(format!(
                "unexpected answer reading the authorized_keys of user '{user}'"
            )));
        };
        Ok(KeysFile { content })
    }

    /// Replaces `user`'s authorized_keys with `content` atomically, if it is still `read`.
    pub async fn write(&self, user: &str, read: &KeysFile, content: &[u8]) -> Result<(), SshError> {
        let out = self
            .run(
                &write_script(
                    user,
                    &read.fingerprint(),
                    &hex::encode(Sha256::digest(content)),
                ),
                content,
            )
            .await?;
        match out.status {
            0 => Ok(()),
            CHANGED => Err(SshError::Unreachable(format!(
                "the authorized_keys of user '{user}' changed while rotor was editing it; trying again later"
            ))),
            _ => Err(SshError::Remote(format!(
                "cannot write the authorized_keys of user '{user}': {}",
                out.reason()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_the_user_name() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        let s = write_script("app", "absent", "abc");
        assert!(s.contains("u='app'\n"), "{s}");
        assert!(s.contains("!= 'absent' ]"), "{s}");
    }
}
