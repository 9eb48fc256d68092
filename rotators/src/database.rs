//! Account rotation shared by every database: the [`Database`] primitives a server kind
//! implements (PostgreSQL here; MySQL and Redis alike), and [`AccountRotator`], the Rotator that
//! turns them into dual-account and single-account rotations.
//!
//! Dual accounts: the rotation resets the password of the account that is *not* current (its
//! partner), tests it, and the engine promotes it; the account that was current keeps working
//! until the next rotation. Single account: the one password changes in place — a short gap in
//! which the stored current password no longer logs in, unavoidable and kept to one step.

use std::sync::Arc;

use async_trait::async_trait;

use crate::account::{Account, DbSettings};
use crate::kind::SubType;
use crate::rotator::{RotateError, RotationContext, Rotator, TargetContext};
use crate::value::SecretValue;

/// What rotor asks of a database server.
#[async_trait]
pub trait Database: Send + Sync {
    /// The target kind it serves (`postgres`, `mysql`, `redis`).
    fn kind(&self) -> &'static str;

    /// The longest account name the server takes.
    fn max_account_len(&self) -> usize;

    /// Checks that the admin account logs in and may manage accounts.
    async fn check_admin(&self, target: &TargetContext) -> Result<(), RotateError>;

    /// Logs in as `account` (to `database`, if the server has databases) and proves who is
    /// logged in with a trivial query.
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

    /// Creates `accounts` with identical privileges from `settings` (create mode).
    async fn create_accounts(
        &self,
        target: &TargetContext,
        settings: &DbSettings,
        accounts: &[Account],
    ) -> Result<(), RotateError>;

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
    databases: Vec<Arc<dyn Database>>,
}

impl AccountRotator {
    pub fn new(databases: Vec<Arc<dyn Database>>) -> Arc<Self> {
        Arc::new(AccountRotator { databases })
    }

    /// The database implementation for `target`'s kind.
    pub fn database(&self, target: &TargetContext) -> Result<&dyn Database, RotateError> {
        let kind = target.config["Kind"].as_str().unwrap_or_default();
        self.databases
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

fn target(cx: &RotationContext) -> Result<&TargetContext, RotateError> {
    cx.target.as_ref().ok_or_else(|| {
        RotateError::fatal(format!(
            "secret '{}' names no target to rotate on",
            cx.secret_name
        ))
    })
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
        let target = target(cx)?;
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
        let db = self.database(target)?;
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
        let target = target(cx)?;
        self.database(target)?
            .login(target, settings.database.as_deref(), &pending)
            .await
            .map_err(|e| e.scrub(&[pending.password()]))
    }

    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        let target = target(cx)?;
        let settings = DbSettings::from_json(&cx.settings)?;
        let db = self.database(target)?;
        db.login(target, settings.database.as_deref(), &current(cx)?)
            .await?;
        db.check_admin(target).await
    }
}
