//! The two ECS rotators: a host user's password, and a host user's SSH key pair.
//!
//! Password: the user changes its own password with `passwd` over a PTY (logged in with the
//! current one), or the target's admin sets it with `chpasswd`. The old password stops working
//! at `set`; the gap until promotion is one `test` login.
//!
//! Sessions: `test` always logs in afresh; `set` and `finish` use a session kept from the
//! step or rotation before on the same host when one is open (`sessions`), so a rotation
//! that follows another costs one login, not two or three.
//!
//! Key pair: `set` adds the new public key to the user's authorized_keys (an atomic rename,
//! every other line byte for byte), `test` logs in with it, and `finish`, after promotion,
//! removes this secret's keys that are neither current nor previous. An edit of a file rotor
//! saw lately is one command (the host checks the file is still what rotor saw: see
//! [`Host::edit_keys`]), else a read and a write. Both keys log in between
//! rotations; no older key does.

use async_trait::async_trait;

use super::client::SshError;
use super::keys::{self, KeyPair};
use super::remote::{Admin, Credential, CredentialSecret, Editor, Host};
use super::settings::EcsSettings;
use crate::rotator::{RotateError, RotationContext, Rotator, TargetContext};
use crate::value::SecretValue;

fn current(cx: &RotationContext) -> Result<&SecretValue, RotateError> {
    cx.current
        .as_ref()
        .map(|v| &v.value)
        .ok_or_else(|| RotateError::fatal("the secret has no current version"))
}

/// The pending credential must be for the same user as the current one.
fn same_user(current: &Credential, pending: &Credential) -> Result<(), RotateError> {
    if current.user != pending.user {
        return Err(RotateError::fatal(format!(
            "refusing to change user '{}': this secret's user is '{}'",
            pending.user, current.user
        )));
    }
    Ok(())
}

/// A login refused with the credential that should work: fatal, naming whose.
fn refused(what: &str, user: &str, host: &Host, e: SshError) -> RotateError {
    match e {
        SshError::Denied(_) => RotateError::fatal(format!(
            "the {what} of user '{user}' does not log in on target '{}'; nothing changed \
             (if it was changed outside rotor, re-import it: rotor secret import)",
            host.name
        )),
        other => other.into(),
    }
}

/// `test` of both kinds: a fresh login with the pending credential, as the right user (never
/// a kept session). A refusal is retryable: a new password or key may take a moment to reach
/// every PAM backend. The session is kept for the steps that follow (`finish`, the next `set`).
async fn login_with_pending(
    cx: &RotationContext,
    pending: &SecretValue,
) -> Result<(), RotateError> {
    let host = Host::of(cx.require_target()?)?;
    let pending = Credential::from_value(pending)?;
    let session = host.login_checked(&pending).await.map_err(|e| match e {
        SshError::Denied(m) => RotateError::retryable(m),
        other => other.into(),
    })?;
    host.keep_user(session);
    Ok(())
}

/// Logs in with the current credential, as a dry run does.
async fn login_with_current(cx: &RotationContext, what: &str) -> Result<Host, RotateError> {
    let host = Host::of(cx.require_target()?)?;
    let current = Credential::from_value(current(cx)?)?;
    let session = host
        .login_checked(&current)
        .await
        .map_err(|e| refused(what, &current.user, &host, e))?;
    session.close().await;
    Ok(host)
}

/// An `ECS`/`Password` secret.
pub struct PasswordRotator;

#[async_trait]
impl Rotator for PasswordRotator {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        let settings = EcsSettings::from_json(&cx.settings)?;
        let current = Credential::from_value(current(cx)?)?;
        let password = settings.password.generate();
        Ok(password_value(
            &current.user,
            secrecy::ExposeSecret::expose_secret(&password),
        ))
    }

    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let target = cx.require_target()?;
        let host = Host::of(target)?;
        let current = Credential::from_value(current(cx)?)?;
        let pending = Credential::from_value(pending)?;
        same_user(&current, &pending)?;
        // Done already (a resumed step)? The new password logs in.
        if cx.resumed && host.login(&pending).await.is_ok() {
            return Ok(());
        }
        let secrets = [pending.password(), current.password()];
        if target.admin.is_some() {
            let admin = host.admin_session(target).await?;
            let done = admin.set_password(&current.user, pending.password()).await;
            match done {
                Ok(()) => host.keep_admin(target, admin),
                Err(_) => admin.session.close().await,
            }
            return done.map_err(|e| RotateError::from(e).scrub(&secrets));
        }
        // Who the host says logged in is checked before anything changes (when the session
        // was made: a kept one was checked then).
        let session = host
            .user_session(&current)
            .await
            .map_err(|e| refused("current password", &current.user, &host, e))?;
        let done = session.passwd(current.password(), pending.password()).await;
        match done {
            Ok(()) => host.keep_user(session),
            Err(_) => session.close().await,
        }
        done.map_err(|e| RotateError::from(e).scrub(&secrets))
    }

    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        login_with_pending(cx, pending).await
    }

    fn finish_is_noop(&self) -> bool {
        true
    }

    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        let target = cx.require_target()?;
        let host = login_with_current(cx, "current password").await?;
        if target.admin.is_some() {
            let admin = host.admin(target).await?;
            admin.check_root().await?;
            admin.session.close().await;
        }
        Ok(())
    }
}

/// `{"UserName","Password"}`.
pub fn password_value(user: &str, password: &str) -> SecretValue {
    let text = zeroize::Zeroizing::new(
        serde_json::json!({"UserName": user, "Password": password}).to_string(),
    );
    SecretValue::new(text.as_bytes().to_vec())
}

/// An `ECS`/`SSHKey` secret.
pub struct KeyRotator;

/// A logged-in session that may edit a user's authorized_keys.
enum EditSession {
    User(super::client::Session),
    Admin(Admin),
}

impl EditSession {
    /// A kept session of the user, else a login as the user with `login_as` (its current
    /// key, or the new current one in `finish`), else, if that key is refused, as the target's
    /// admin.
    async fn open(
        host: &Host,
        target: &TargetContext,
        login_as: &Credential,
    ) -> Result<EditSession, RotateError> {
        match host.user_session(login_as).await {
            Ok(session) => Ok(EditSession::User(session)),
            Err(SshError::Denied(_)) if target.admin.is_some() => {
                Ok(EditSession::Admin(host.admin_session(target).await?))
            }
            Err(e) => Err(refused("key", &login_as.user, host, e)),
        }
    }

    /// Keeps the session after an edit went through; closes it after one that did not.
    async fn done(self, host: &Host, target: &TargetContext, ok: bool) {
        match (self, ok) {
            (EditSession::User(s), true) => host.keep_user(s),
            (EditSession::Admin(a), true) => host.keep_admin(target, a),
            (session, false) => session.close().await,
        }
    }

    fn editor(&self) -> Editor<'_> {
        match self {
            EditSession::User(s) => Editor::User(s),
            EditSession::Admin(a) => Editor::Admin(a),
        }
    }

    async fn close(self) {
        match self {
            EditSession::User(s) => s.close().await,
            EditSession::Admin(a) => a.session.close().await,
        }
    }
}

#[async_trait]
impl Rotator for KeyRotator {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        let settings = EcsSettings::from_json(&cx.settings)?;
        let current = KeyPair::from_value(current(cx)?)?;
        let comment = format!("rotor:{}", cx.secret_name);
        keys::generate_value(&current.user, settings.key_type, &comment).await
    }

    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let target = cx.require_target()?;
        let host = Host::of(target)?;
        let current = Credential::from_value(current(cx)?)?;
        let new = KeyPair::from_value(pending)?;
        if new.user != current.user {
            return Err(RotateError::fatal(format!(
                "refusing to change user '{}': this secret's user is '{}'",
                new.user, current.user
            )));
        }
        let version = cx
            .pending
            .as_ref()
            .map(|p| p.version_id.clone())
            .unwrap_or_else(|| "pending".into());
        let line = keys::authorized_line(&new.public, &cx.secret_name, &version);
        let session = EditSession::open(&host, target, &current).await?;
        let done = host
            .edit_keys(&session.editor(), &current.user, |file| {
                // Added already (a resumed step)? Then nothing changes.
                (!keys::contains_key(file, &new.public)).then(|| keys::with_line(file, &line))
            })
            .await;
        session.done(&host, target, done.is_ok()).await;
        Ok(done?)
    }

    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        login_with_pending(cx, pending).await
    }

    async fn finish(
        &self,
        cx: &RotationContext,
        promoted: &SecretValue,
    ) -> Result<(), RotateError> {
        let target = cx.require_target()?;
        let host = Host::of(target)?;
        let settings = EcsSettings::from_json(&cx.settings)?;
        let promoted = KeyPair::from_value(promoted)?;
        let mut keep = vec![promoted.public.key_data().clone()];
        if let Some(previous) = &cx.previous {
            keep.push(
                KeyPair::from_value(&previous.value)?
                    .public
                    .key_data()
                    .clone(),
            );
        }
        let adopted = settings
            .adopted_key
            .as_deref()
            .and_then(|k| russh::keys::PublicKey::from_openssh(k).ok())
            .map(|k| k.key_data().clone())
            .filter(|k| !keep.contains(k));
        let ours = format!("rotor:{}:", cx.secret_name);
        let user = promoted.user.clone();
        let login = Credential {
            user: user.clone(),
            secret: CredentialSecret::Key(Box::new(promoted)),
        };
        let session = EditSession::open(&host, target, &login).await?;
        let retired = |e: &keys::Entry| {
            !keep.contains(&e.key)
                && (e.comment.starts_with(&ours) || adopted.as_ref() == Some(&e.key))
        };
        let done = host
            .edit_keys(&session.editor(), &user, |file| {
                let (content, removed) = keys::without_lines(file, retired);
                (removed > 0).then_some(content)
            })
            .await;
        session.done(&host, target, done.is_ok()).await;
        Ok(done?)
    }

    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        login_with_current(cx, "key").await.map(drop)
    }
}
