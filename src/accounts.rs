//! Database secrets with accounts on a target: create mode (new accounts, passwords generated
//! from the OS random source) and import mode (existing accounts, which must log in first).
//!
//! Create mode stores the secret before the accounts exist on the server, and deletes it again
//! if the server refuses: no account ever exists without its password in the store.

use std::sync::Arc;

use rotors::account::{
    check_identifier, clone_name, Account, DbSettings, PasswordPolicy, Privilege,
};
use rotors::database::Database;
use rotors::{SecretKind, SecretType, SecretValue, SubType};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::SecretName;
use crate::store::{DeleteMode, NewSecret, PutOutcome, Store};

/// Where a database secret's accounts come from.
#[derive(Debug)]
pub enum AccountSource {
    /// Create this account (and `ACCOUNT_clone` for dual accounts).
    Create(String),
    /// Adopt existing accounts: `{"Accounts":[{…},{…}]}` for dual, one account for single.
    Import(SecretValue),
}

/// A database secret to make.
#[derive(Debug)]
pub struct DbSecretSpec {
    pub name: SecretName,
    pub kind: SecretKind,
    pub target: String,
    pub source: AccountSource,
    pub database: Option<String>,
    pub privilege: Option<Privilege>,
    pub password: PasswordPolicy,
}

/// The database implementation behind a target.
pub async fn database_for(store: &Store, target: &str) -> Result<Arc<dyn Database>> {
    let info = store.target(target).await?;
    crate::builtin_databases()
        .into_iter()
        .find(|d| d.kind() == info.kind.as_str())
        .ok_or_else(|| {
            Error::invalid(format!(
                "this build cannot manage accounts on {} targets",
                info.kind.as_str()
            ))
        })
}

/// A target's refusal as an engine error.
pub fn target_error(e: rotors::RotateError) -> Error {
    Error::Target(e.to_string())
}

/// Checks the spec and builds the secret; for create mode also returns the accounts to create
/// (empty for import mode, whose accounts were checked to log in).
pub async fn prepare(store: &Store, spec: DbSecretSpec) -> Result<(NewSecret, Vec<Account>)> {
    let kind = spec.kind;
    if !matches!(
        kind.ty,
        SecretType::Rds | SecretType::PolarDB | SecretType::Redis
    ) {
        return Err(Error::invalid(
            "--target is for database secrets (Rds, PolarDB, Redis)",
        ));
    }
    let db = database_for(store, &spec.target).await?;
    let dual = kind.sub != Some(SubType::SingleUser);
    spec.password.check().map_err(Error::invalid)?;
    if let Some(database) = &spec.database {
        check_identifier("database name", database, 64).map_err(Error::invalid)?;
    }
    let mut settings = DbSettings {
        accounts: vec![],
        database: spec.database.clone(),
        privilege: spec.privilege,
        password: spec.password.clone(),
    };
    let (first, second, to_create) = match &spec.source {
        AccountSource::Create(account) => {
            let max = db.max_account_len() - if dual { "_clone".len() } else { 0 };
            check_identifier("account name", account, max).map_err(|e| {
                Error::invalid(format!(
                    "{e} (with the _clone suffix, {} allows {} characters)",
                    db.kind(),
                    db.max_account_len()
                ))
            })?;
            let first = Account {
                name: account.clone(),
                password: settings.password.generate(),
            };
            let second = dual.then(|| Account {
                name: clone_name(account),
                password: settings.password.generate(),
            });
            let to_create = std::iter::once(first.clone())
                .chain(second.clone())
                .collect();
            (first, second, to_create)
        }
        AccountSource::Import(value) => {
            let (first, second) = import_accounts(value, dual, kind)?;
            let tcx = store.target_context(&spec.target).await?;
            for account in std::iter::once(&first).chain(&second) {
                db.login(&tcx, settings.database.as_deref(), account)
                    .await
                    .map_err(|e| {
                        Error::invalid(format!(
                            "account '{}' does not log in on target '{}', so it cannot be imported: {e}",
                            account.name, spec.target
                        ))
                    })?;
            }
            (first, second, vec![])
        }
    };
    if let Some(second) = &second {
        settings.accounts = vec![first.name.clone(), second.name.clone()];
    }
    let mut new = NewSecret::new(spec.name, kind, first.to_value());
    new.previous = second.map(|a| a.to_value());
    new.target = Some(spec.target);
    new.settings = Some(serde_json::to_value(&settings).expect("settings serialise"));
    Ok((new, to_create))
}

/// Stores the secret, then creates `accounts` on its target; if the server refuses, the secret
/// goes again and the server's reason is returned.
pub async fn create(store: &Store, new: NewSecret, accounts: Vec<Account>) -> Result<PutOutcome> {
    let name = new.name.clone();
    let target = new.target.clone();
    let settings =
        DbSettings::from_json(&new.settings.clone().unwrap_or_default()).map_err(target_error)?;
    let done = store.create_secret(new).await?;
    if let (Some(target), false) = (target, accounts.is_empty()) {
        let created = async {
            let db = database_for(store, &target).await?;
            let tcx = store.target_context(&target).await?;
            let passwords: Vec<&str> = accounts.iter().map(Account::password).collect();
            db.create_accounts(&tcx, &settings, &accounts)
                .await
                .map_err(|e| target_error(e.scrub(&passwords)))
        }
        .await;
        if let Err(e) = created {
            store.delete(&name, DeleteMode::Force).await?;
            return Err(e);
        }
    }
    Ok(done)
}

/// Reads an import value: `{"Accounts":[{…},{…}]}` for dual accounts, one account otherwise.
fn import_accounts(
    value: &SecretValue,
    dual: bool,
    kind: SecretKind,
) -> Result<(Account, Option<Account>)> {
    let malformed = || {
        Error::invalid(if dual {
            format!("{kind} import value must be {{\"Accounts\":[{{\"AccountName\",\"AccountPassword\"}}, {{…}}]}} with two accounts")
        } else {
            format!("{kind} import value must be {{\"AccountName\",\"AccountPassword\"}}")
        })
    };
    if !dual {
        rotors::value::validate(kind, value.expose()).map_err(|e| Error::invalid(e.to_string()))?;
        return Ok((Account::from_value(value).map_err(|_| malformed())?, None));
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(value.expose()).map_err(|_| malformed())?;
    let list = parsed
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("Accounts"))
        .and_then(|a| a.as_array())
        .filter(|a| a.len() == 2)
        .ok_or_else(malformed)?;
    let mut accounts = Vec::with_capacity(2);
    for item in list {
        let text = Zeroizing::new(item.to_string());
        let v = SecretValue::new(text.as_bytes().to_vec());
        rotors::value::validate(kind, v.expose()).map_err(|e| Error::invalid(e.to_string()))?;
        accounts.push(Account::from_value(&v).map_err(|_| malformed())?);
    }
    let second = accounts.pop().ok_or_else(malformed)?;
    let first = accounts.pop().ok_or_else(malformed)?;
    if first.name == second.name {
        return Err(Error::invalid("the two imported accounts must differ"));
    }
    Ok((first, Some(second)))
}
