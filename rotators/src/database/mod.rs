//! The database family: accounts on PostgreSQL, MySQL/MariaDB and Redis servers.
//!
//! [`DatabaseFamily`] is what the engine sees: target kinds `postgres`, `mysql`, `redis`, an
//! admin credential that is a `SingleUser` account secret, create and import modes
//! ([`provision`]), and one rotator for `Rds`, `PolarDB` and `Redis` secrets. Underneath,
//! [`AccountServer`] is what rotor asks of one kind of server ([`postgres`], [`mysql`],
//! [`redis`]), and [`AccountRotator`] turns those primitives into dual-account and
//! single-account rotations.
//!
//! Dual accounts: the rotation resets the password of the account that is *not* current (its
//! partner), tests it, and the engine promotes it; the account that was current keeps working
//! until the next rotation. Single account: the one password changes in place — a short gap in
//! which the stored current password no longer logs in, unavoidable and kept to one step.

pub mod account;
pub mod hash;
pub mod mysql;
pub mod postgres;
mod provision;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use self::account::{Account, DbSettings, Privilege};
use crate::kind::SubType;
use crate::rotator::{RotateError, RotationContext, Rotator, TargetContext};
use crate::value::SecretValue;

pub use self::provision::DatabaseFamily;

/// The target's admin account (an `{"AccountName","AccountPassword"}` value).
pub fn admin_account(target: &TargetContext) -> Result<Account, RotateError> {
    Account::from_value(target.admin()?)
}

/// What rotor asks of one kind of database server: account management.
#[async_trait]
pub trait AccountServer: Send + Sync {
    /// The target kind it serves (`postgres`, `mysql`, `redis`).
    fn kind(&self) -> &'static str;

    /// The longest account name the server takes.
    fn max_account_len(&self) -> usize;

    /// Whether create mode needs `--database` (the grants name one).
    fn needs_database(&self) -> bool {
        false
    }

    /// Checks that the admin account logs in and holds what create mode needs: one line saying
    /// what it may do, or a fatal error naming what it lacks.
    async fn check_admin(&self, target: &TargetContext) -> Result<String, RotateError>;

    /// Logs in as `account` (to `database`, if the server has databases) and proves who is
    /// logged in with the narrowest operation every privilege level allows.
    async fn login(
        &self,
        target: &TargetContext,
        database: Option<&str>,
        account: &Account,
    ) -> Result<(), RotateError>;

    /// Sets `account`'s password, as the admin.
    async fn set_password(
        &self,
        target: &TargetContext,
        account: &Account,
    ) -> Result<(), RotateError>;

    /// Creates `accounts` with identical privileges from `settings` (create mode). Every grant
    /// is checked: one that does not take is a fatal error naming what the admin lacks, and
    /// whatever was made is removed again.
    async fn create_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[Account],
    ) -> Result<(), RotateError>;

    /// Removes accounts rotor created (`accounts`, the base account first) with the grants it
    /// made (PostgreSQL: and their group), all or nothing; refuses, changing nothing, when they
    /// own objects. Returns what it removed, in words: an account already gone is not in it.
    async fn remove_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[String],
    ) -> Result<Vec<String>, RotateError>;

    /// `accounts` and what goes with them on this server, in words (`role 'app'`, …).
    fn describe_accounts(&self, settings: &DbSettings, accounts: &[String]) -> Vec<String>;

    /// The privilege levels create mode gives on this server (all four by default); another
    /// is refused before anything is made.
    fn privileges(&self) -> &'static [Privilege] {
        &[
            Privilege::ReadWrite,
            Privilege::ReadOnly,
            Privilege::DDLOnly,
            Privilege::DMLOnly,
        ]
    }

    /// Makes `to`'s privileges identical to `from`'s, before `to` becomes current.
    async fn sync_privileges(
        &self,
        _target: &TargetContext,
        _settings: &DbSettings,
        _from: &str,
        _to: &str,
    ) -> Result<(), RotateError> {
        Ok(())
    }
}

/// Rotates `Rds`/`PolarDB`/`Redis` secrets on whichever kind of database their target is.
pub struct AccountRotator {
    servers: Vec<Arc<dyn AccountServer>>,
}

impl AccountRotator {
    /// A rotator over these database implementations, one per target kind.
    pub fn new(servers: Vec<Arc<dyn AccountServer>>) -> Arc<Self> {
        Arc::new(AccountRotator { servers })
    }

    /// The database implementation for `target`'s kind.
    pub fn server(&self, target: &TargetContext) -> Result<&dyn AccountServer, RotateError> {
        let kind = target.kind.as_str();
        self.servers
            .iter()
            .find(|d| d.kind() == kind)
            .map(|d| d.as_ref())
            .ok_or_else(|| {
                RotateError::fatal(format!(
                    "target '{}' is of kind '{kind}', which this build cannot rotate",
                    target.name
                ))
            })
    }
}

fn current(cx: &RotationContext) -> Result<Account, RotateError> {
    let current = cx
        .current
        .as_ref()
        .ok_or_else(|| RotateError::fatal("the secret has no current version"))?;
    Account::from_value(&current.value)
}

fn dual(cx: &RotationContext) -> bool {
    cx.kind.sub != Some(SubType::SingleUser)
}

#[async_trait]
impl Rotator for AccountRotator {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        let settings = DbSettings::from_json(&cx.settings)?;
        let current = current(cx)?;
        let name = if dual(cx) {
            settings.partner(&current.name)?
        } else {
            current.name.clone()
        };
        let account = Account {
            name,
            password: settings.password.generate(),
        };
        Ok(account.to_value())
    }

    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let target = cx.require_target()?;
        let settings = DbSettings::from_json(&cx.settings)?;
        let current = current(cx)?;
        let pending = Account::from_value(pending)?;
        // Aimed at the right account? The partner of the current one, or the one itself.
        let expected = if dual(cx) {
            settings.partner(&current.name)?
        } else {
            current.name.clone()
        };
        if pending.name != expected {
            return Err(RotateError::fatal(format!(
                "refusing to change '{}': the pending account must be '{expected}'",
                pending.name
            )));
        }
        let db = self.server(target)?;
        // A repeated step does nothing if the pending password already works. (A first run
        // cannot find it working: the password was generated a moment ago.)
        if cx.resumed
            && db
                .login(target, settings.database.as_deref(), &pending)
                .await
                .is_ok()
        {
            return Ok(());
        }
        if dual(cx) {
            db.sync_privileges(target, &settings, &current.name, &pending.name)
                .await?;
        }
        db.set_password(target, &pending)
            .await
            .map_err(|e| e.scrub(&[pending.password(), current.password()]))
    }

    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let settings = DbSettings::from_json(&cx.settings)?;
        let pending = Account::from_value(pending)?;
        let target = cx.require_target()?;
        self.server(target)?
            .login(target, settings.database.as_deref(), &pending)
            .await
            .map_err(|e| e.scrub(&[pending.password()]))
    }

    /// Nothing to clean up: a dual account's previous password stays valid until the next
    /// rotation changes it; a single account has only one.
    fn finish_is_noop(&self) -> bool {
        true
    }

    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        let target = cx.require_target()?;
        let settings = DbSettings::from_json(&cx.settings)?;
        let db = self.server(target)?;
        db.login(target, settings.database.as_deref(), &current(cx)?)
            .await?;
        db.check_admin(target).await.map(|_| ())
    }

    /// A dual account's previous account keeps its password until the next rotation resets
    /// it: it must still log in. A single account has no previous credential that works.
    async fn check_previous(&self, cx: &RotationContext) -> Result<bool, RotateError> {
        let Some(previous) = cx.previous.as_ref().filter(|_| dual(cx)) else {
            return Ok(false);
        };
        let previous = Account::from_value(&previous.value)?;
        if previous.name == current(cx)?.name {
            // Never rotated since an import that gave no partner: nothing to promise.
            return Ok(false);
        }
        let target = cx.require_target()?;
        let settings = DbSettings::from_json(&cx.settings)?;
        self.server(target)?
            .login(target, settings.database.as_deref(), &previous)
            .await
            .map_err(|e| e.scrub(&[previous.password()]))?;
        Ok(true)
    }
}
