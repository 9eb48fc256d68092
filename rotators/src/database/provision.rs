//! The database family as the engine sees it: target kinds and their admin accounts, the
//! options of `target add` and `secret create --target`, create mode (new accounts, passwords
//! from the OS random source) and import mode (existing accounts, which must log in first).
//!
//! Create mode makes the accounts only in [`Family::install`], after the engine has stored the
//! secret (and deletes the secret again if the server refuses): no account ever exists without
//! its password in the store.

use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::account::{check_identifier, clone_name, Account, DbSettings, PasswordPolicy};
use super::{mysql::Mysql, postgres::Postgres, redis::Redis, AccountRotator, AccountServer};
use crate::family::shared::{
    ADMIN_PASSWORD, ADMIN_PASSWORD_STDIN, ADMIN_USER, EXCLUDE_CHARS, PASSWORD_LENGTH,
};
use crate::family::{
    Family, NewAdmin, NewTarget, OnTarget, OptionArg, OptionScope, OptionSpec, Options, Origin,
    Provisioned, SecretRequest, SetupError, Source, TargetKindSpec,
};
use crate::kind::{SecretKind, SecretType, SubType};
use crate::rotator::{Rotator, TargetContext};
use crate::value::SecretValue;

const KINDS: &[TargetKindSpec] = &[
    TargetKindSpec {
        name: "postgres",
        aliases: &["postgresql"],
        schemes: &["postgres://", "postgresql://"],
        default_url: None,
    },
    TargetKindSpec {
        name: "mysql",
        aliases: &["mariadb"],
        schemes: &["mysql://", "mariadb://"],
        default_url: None,
    },
    TargetKindSpec {
        name: "redis",
        aliases: &[],
        schemes: &["redis://", "rediss://"],
        default_url: None,
    },
];

const OPTIONS: &[OptionSpec] = &[
    ADMIN_USER,
    ADMIN_PASSWORD_STDIN,
    ADMIN_PASSWORD,
    OptionSpec {
        name: "account",
        help: "Create mode: the account to create (and ACCOUNT_clone for dual accounts)",
        arg: OptionArg::Value {
            value_name: "ACCOUNT",
        },
        scope: OptionScope::SecretCreate,
    },
    OptionSpec {
        name: "database",
        help: "The database the accounts work in",
        arg: OptionArg::Value {
            value_name: "DATABASE",
        },
        scope: OptionScope::SecretCreate,
    },
    OptionSpec {
        name: "privilege",
        help: "Create mode: ReadWrite (default), ReadOnly, DDLOnly or DMLOnly",
        arg: OptionArg::Value {
            value_name: "PRIVILEGE",
        },
        scope: OptionScope::SecretCreate,
    },
    PASSWORD_LENGTH,
    EXCLUDE_CHARS,
];

/// The secret kinds the family rotates.
const SECRET_KINDS: [(SecretType, SubType); 5] = [
    (SecretType::Rds, SubType::DoubleUsers),
    (SecretType::Rds, SubType::SingleUser),
    (SecretType::PolarDB, SubType::DoubleUsers),
    (SecretType::Redis, SubType::DoubleUsers),
    (SecretType::Redis, SubType::SingleUser),
];

/// Database accounts on PostgreSQL, MySQL/MariaDB and Redis.
pub struct DatabaseFamily {
    rotator: Arc<AccountRotator>,
}

impl DatabaseFamily {
    /// The database family, serving PostgreSQL, MySQL/MariaDB and Redis targets.
    pub fn new() -> Arc<Self> {
        let servers: Vec<Arc<dyn AccountServer>> =
            vec![Arc::new(Postgres::new()), Arc::new(Mysql), Arc::new(Redis)];
        Arc::new(DatabaseFamily {
            rotator: AccountRotator::new(servers),
        })
    }

    fn server(&self, target: &TargetContext) -> Result<&dyn AccountServer, SetupError> {
        Ok(self.rotator.server(target)?)
    }
}

#[async_trait]
impl Family for DatabaseFamily {
    fn name(&self) -> &'static str {
        "database"
    }

    fn target_kinds(&self) -> &'static [TargetKindSpec] {
        KINDS
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn rotators(&self) -> Vec<(SecretKind, Arc<dyn Rotator>)> {
        SECRET_KINDS
            .iter()
            .map(|&(ty, sub)| {
                let rotator: Arc<dyn Rotator> = self.rotator.clone();
                (SecretKind { ty, sub: Some(sub) }, rotator)
            })
            .collect()
    }

    async fn new_target(
        &self,
        kind: &'static TargetKindSpec,
        url: &str,
        options: &Options,
    ) -> Result<NewTarget, SetupError> {
        let invalid = |m: &str| SetupError::Invalid(m.to_owned());
        let user = options
            .text("admin-user")
            .ok_or_else(|| invalid("give --admin-user for a database target"))?;
        let password = match (
            options.secret("admin-password-stdin"),
            options.secret("admin-password"),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give --admin-password-stdin or --admin-password, not both",
                ))
            }
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => return Err(invalid("give --admin-password-stdin or --admin-password")),
        };
        check_identifier("admin user", user, 128)
            .or_else(|e| {
                // Some servers' admins have other characters (e.g. root@%): refuse only quotes and spaces.
                if user.chars().any(|c| "\"'` ;\\".contains(c)) {
                    Err(e)
                } else {
                    Ok(())
                }
            })
            .map_err(SetupError::Invalid)?;
        let ty = if kind.name == "redis" {
            SecretType::Redis
        } else {
            SecretType::Rds
        };
        Ok(NewTarget {
            kind: kind.name,
            url: url.to_owned(),
            config: serde_json::Value::Null,
            admin: Some(NewAdmin {
                kind: SecretKind {
                    ty,
                    sub: Some(SubType::SingleUser),
                },
                value: Account::new(user, password).to_value(),
                settings: serde_json::Value::Null,
            }),
            notes: vec![],
        })
    }

    async fn check_target(&self, target: &TargetContext) -> Result<String, SetupError> {
        Ok(self.server(target)?.check_admin(target).await?)
    }

    async fn provision(&self, request: SecretRequest<'_>) -> Result<Provisioned, SetupError> {
        let SecretRequest {
            kind,
            source,
            options,
            target,
            ..
        } = request;
        let invalid = |m: String| SetupError::Invalid(m);
        if !SECRET_KINDS.iter().any(|&(ty, _)| ty == kind.ty) {
            return Err(invalid(
                "--target is for database secrets (Rds, PolarDB, Redis)".into(),
            ));
        }
        let db = self.server(target)?;
        let dual = kind.sub != Some(SubType::SingleUser);
        let password = PasswordPolicy::from_options(options)?;
        let database = options.text("database").map(str::to_owned);
        if let Some(database) = &database {
            check_identifier("database name", database, 64).map_err(invalid)?;
        }
        let mut settings = DbSettings {
            accounts: vec![],
            database,
            privilege: options.parse("privilege")?,
            password,
            created: None,
        };
        if let Some(privilege) = settings.privilege {
            let levels = db.privileges();
            if !levels.contains(&privilege) {
                let names: Vec<String> = levels.iter().map(|p| format!("{p:?}")).collect();
                return Err(invalid(format!(
                    "--privilege {privilege:?} is not a level {} accounts have (they are {})",
                    db.kind(),
                    names.join(" or ")
                )));
            }
        }
        let (first, second, install) = match (source, options.text("account")) {
            (Source::Import(_), Some(_)) => {
                return Err(invalid(
                    "give --account to create accounts or --value to import them, not both".into(),
                ))
            }
            (Source::Create, None) => {
                return Err(invalid(
                    "give --account to create accounts, or --value / --value-file to import them"
                        .into(),
                ))
            }
            (Source::Create, Some(_)) if db.needs_database() && settings.database.is_none() => {
                return Err(invalid(format!(
                    "{} accounts need a database for their grants: give --database",
                    db.kind()
                )))
            }
            (Source::Create, Some(account)) => {
                let max = db.max_account_len() - if dual { "_clone".len() } else { 0 };
                check_identifier("account name", account, max).map_err(|e| {
                    invalid(format!(
                        "{e} (with the _clone suffix, {} allows {} characters)",
                        db.kind(),
                        db.max_account_len()
                    ))
                })?;
                let first = Account {
                    name: account.to_owned(),
                    password: settings.password.generate(),
                };
                let second = dual.then(|| Account {
                    name: clone_name(account),
                    password: settings.password.generate(),
                });
                (first, second, true)
            }
            (Source::Import(value), None) => {
                if settings.privilege.is_some() {
                    return Err(invalid(
                        "--privilege is for create mode (with --account)".into(),
                    ));
                }
                let (first, second) = import_accounts(&value, dual, kind)?;
                for account in std::iter::once(&first).chain(&second) {
                    db.login(target, settings.database.as_deref(), account)
                        .await
                        .map_err(|e| {
                            invalid(format!(
                                "account '{}' does not log in on target '{}', so it cannot be imported: {}",
                                account.name, target.name, e.scrub(&[account.password()])
                            ))
                        })?;
                }
                (first, second, false)
            }
        };
        if let Some(second) = &second {
            settings.accounts = vec![first.name.clone(), second.name.clone()];
        }
        settings.created = Some(install);
        Ok(Provisioned {
            current: first.to_value(),
            previous: second.map(|a| a.to_value()),
            settings: serde_json::to_value(&settings).expect("settings serialise"),
            install,
            made_on_target: false,
        })
    }

    async fn check_credential(
        &self,
        target: &TargetContext,
        kind: SecretKind,
        settings: &serde_json::Value,
        current: &SecretValue,
        value: &SecretValue,
    ) -> Result<(), SetupError> {
        crate::value::validate(kind, value.expose())
            .map_err(|e| SetupError::Invalid(e.to_string()))?;
        let settings = DbSettings::from_json(settings)?;
        let current = Account::from_value(current)?;
        let account = Account::from_value(value)?;
        let allowed = if settings.accounts.is_empty() {
            vec![current.name.clone()]
        } else {
            settings.accounts.clone()
        };
        if !allowed.contains(&account.name) {
            return Err(SetupError::Invalid(format!(
                "account '{}' is not this secret's (expected {})",
                account.name,
                allowed.join(" or ")
            )));
        }
        self.server(target)?
            .login(target, settings.database.as_deref(), &account)
            .await
            .map_err(|e| {
                SetupError::Invalid(format!(
                    "account '{}' does not log in on target '{}': {}",
                    account.name,
                    target.name,
                    e.scrub(&[account.password()])
                ))
            })
    }

    fn on_target(
        &self,
        target: &TargetContext,
        _kind: SecretKind,
        settings: &serde_json::Value,
        current: &SecretValue,
    ) -> Option<OnTarget> {
        let settings = DbSettings::from_json(settings).ok()?;
        let accounts = secret_accounts(&settings, current).ok()?;
        let origin = match settings.created {
            Some(true) => Origin::Created,
            Some(false) => Origin::Imported,
            None => Origin::Unknown,
        };
        let items = if origin == Origin::Created {
            self.server(target)
                .ok()?
                .describe_accounts(&settings, &accounts)
        } else {
            accounts.iter().map(|a| format!("account '{a}'")).collect()
        };
        Some(OnTarget { items, origin })
    }

    async fn remove_accounts(
        &self,
        target: &TargetContext,
        _kind: SecretKind,
        settings: &serde_json::Value,
        current: &SecretValue,
    ) -> Result<Vec<String>, SetupError> {
        let settings = DbSettings::from_json(settings)?;
        let accounts = secret_accounts(&settings, current)?;
        let them = if accounts.len() == 1 { "it" } else { "them" };
        match settings.created {
            Some(true) => {}
            Some(false) => {
                return Err(SetupError::Invalid(format!(
                    "rotor did not create {} (the secret imported {them}), so it does not drop {them}; nothing was deleted",
                    quoted_list(&accounts),
                )))
            }
            None => {
                return Err(SetupError::Invalid(format!(
                    "the secret predates rotor's record of who created {}, so rotor does not drop {them} (remove {them} on the target yourself, then delete the secret); nothing was deleted",
                    quoted_list(&accounts),
                )))
            }
        }
        Ok(self
            .server(target)?
            .remove_accounts(target, &settings, &accounts)
            .await?)
    }

    fn serves(&self, target_kind: &str, kind: SecretKind) -> bool {
        // Redis secrets on Redis servers; Rds and PolarDB on the SQL servers.
        SECRET_KINDS.contains(&(kind.ty, kind.sub.unwrap_or(SubType::DoubleUsers)))
            && (kind.ty == SecretType::Redis) == (target_kind == "redis")
    }

    fn describe_secret(
        &self,
        _kind: SecretKind,
        settings: &serde_json::Value,
    ) -> Vec<(&'static str, String)> {
        let Ok(settings) = DbSettings::from_json(settings) else {
            return Vec::new();
        };
        let mut shown = Vec::new();
        if let Some(database) = settings.database {
            shown.push(("Database", database));
        }
        if let Some(privilege) = settings.privilege {
            shown.push(("Privilege", format!("{privilege:?}")));
        }
        shown
    }

    fn previous_stays_valid(&self, kind: SecretKind) -> bool {
        kind.sub != Some(SubType::SingleUser)
    }

    async fn install(
        &self,
        target: &TargetContext,
        _kind: SecretKind,
        _secret_name: &str,
        _version_id: &str,
        provisioned: &Provisioned,
    ) -> Result<(), SetupError> {
        let settings = DbSettings::from_json(&provisioned.settings)?;
        let accounts = std::iter::once(&provisioned.current)
            .chain(&provisioned.previous)
            .map(Account::from_value)
            .collect::<Result<Vec<_>, _>>()?;
        let passwords: Vec<&str> = accounts.iter().map(Account::password).collect();
        self.server(target)?
            .create_accounts(target, &settings, &accounts)
            .await
            .map_err(|e| e.scrub(&passwords).into())
    }
}

/// The accounts a secret's credentials are: its pair, or its one account (the base account
/// first, as create mode named them).
fn secret_accounts(
    settings: &DbSettings,
    current: &SecretValue,
) -> Result<Vec<String>, SetupError> {
    if settings.accounts.is_empty() {
        Ok(vec![Account::from_value(current)?.name])
    } else {
        Ok(settings.accounts.clone())
    }
}

/// `'a'`, `'a' and 'b'`.
fn quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    quoted.join(" and ")
}

/// Reads an import value: `{"Accounts":[{…},{…}]}` for dual accounts, one account otherwise.
fn import_accounts(
    value: &SecretValue,
    dual: bool,
    kind: SecretKind,
) -> Result<(Account, Option<Account>), SetupError> {
    let malformed = || {
        SetupError::Invalid(if dual {
            format!("{kind} import value must be {{\"Accounts\":[{{\"AccountName\",\"AccountPassword\"}}, {{…}}]}} with two accounts")
        } else {
            format!("{kind} import value must be {{\"AccountName\",\"AccountPassword\"}}")
        })
    };
    let validate = |v: &SecretValue| {
        crate::value::validate(kind, v.expose()).map_err(|e| SetupError::Invalid(e.to_string()))
    };
    if !dual {
        validate(value)?;
        return Ok((Account::from_value(value).map_err(|_| malformed())?, None));
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(value.expose()).map_err(|_| malformed())?;
    crate::value::check_unique_keys(value.expose()).map_err(SetupError::Invalid)?;
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
        validate(&v)?;
        accounts.push(Account::from_value(&v).map_err(|_| malformed())?);
    }
    let second = accounts.pop().ok_or_else(malformed)?;
    let first = accounts.pop().ok_or_else(malformed)?;
    if first.name == second.name {
        return Err(SetupError::Invalid(
            "the two imported accounts must differ".into(),
        ));
    }
    Ok((first, Some(second)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::account::DEFAULT_PASSWORD_LENGTH;

    #[test]
    fn the_help_shows_the_password_default_in_use() {
        let spec = OPTIONS
            .iter()
            .find(|o| o.name == "password-length")
            .unwrap();
        assert!(
            spec.help
                .contains(&format!("[default: {DEFAULT_PASSWORD_LENGTH}]")),
            "{}",
            spec.help
        );
    }
}
