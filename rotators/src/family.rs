//! Rotator families: everything kind-specific about one kind of target, behind one trait.
//!
//! A family (databases, SSH hosts, a cloud RAM endpoint) declares the target kinds it serves and
//! their URL schemes, the options it reads from the command line, how it validates a target and
//! builds its admin credential (`target add`), how it checks a target (`target check`), how it
//! provisions or adopts a secret's credentials (`secret create --target`), and which [`Rotator`]
//! serves which secret kind. The engine, store and CLI drive any `dyn Family` and name none.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::kind::SecretKind;
use crate::rotator::{RotateError, Rotator, TargetContext};
use crate::value::SecretValue;

/// A target kind: its canonical name (stored with the target), other names accepted for it, and
/// the URL schemes its address may use.
#[derive(Clone, Copy, Debug)]
pub struct TargetKindSpec {
    /// The canonical name, stored with each target of this kind.
    pub name: &'static str,
    /// Other names `target add` accepts for this kind.
    pub aliases: &'static [&'static str],
    /// The URL schemes a target address of this kind may use.
    pub schemes: &'static [&'static str],
    /// The address used when `target add` gives no `--url` (a cloud's public endpoint).
    pub default_url: Option<&'static str>,
}

impl TargetKindSpec {
    /// True when `name` names this kind (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        std::iter::once(self.name)
            .chain(self.aliases.iter().copied())
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Which command an option belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionScope {
    /// `rotor target add`.
    TargetAdd,
    /// `rotor secret create --target`.
    SecretCreate,
}

/// How an option is given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionArg {
    /// `--name VALUE`.
    Value {
        /// The value's placeholder in help (e.g. `USER`).
        value_name: &'static str,
    },
    /// `--name`, no value.
    Flag,
    /// `--name VALUE`, a secret: kept out of `Debug` (prefer the stdin form).
    Secret {
        /// The value's placeholder in help (e.g. `PASSWORD`).
        value_name: &'static str,
    },
    /// `--name`, a flag that makes the CLI read a secret from standard input (bounded, one
    /// trailing newline removed) into this option.
    SecretFromStdin,
    /// `--name PATH`: the CLI reads the file (bounded; refused if others may read or write it,
    /// as OpenSSH refuses a private key) into this option as a secret.
    SecretFile {
        /// The path's placeholder in help (e.g. `PATH`).
        value_name: &'static str,
    },
}

/// One command-line option a family declares; the CLI adds it as `--name` to its command.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    /// The option's name, given as `--name`.
    pub name: &'static str,
    /// The help text the CLI shows for it.
    pub help: &'static str,
    /// How the option is given (a value, a flag, or a secret).
    pub arg: OptionArg,
    /// The command it belongs to.
    pub scope: OptionScope,
}

/// Options more than one family declares (the CLI shows one of each name).
pub mod shared {
    use super::{OptionArg, OptionScope, OptionSpec};

    /// `--admin-user`: the target's admin account.
    pub const ADMIN_USER: OptionSpec = OptionSpec {
        name: "admin-user",
        help: "The admin account (databases: one that may manage accounts; SSH hosts: root or a sudo user)",
        arg: OptionArg::Value { value_name: "USER" },
        scope: OptionScope::TargetAdd,
    };

    /// `--admin-password-stdin`: read the admin password from standard input.
    pub const ADMIN_PASSWORD_STDIN: OptionSpec = OptionSpec {
        name: "admin-password-stdin",
        help: "Read the admin password from standard input (empty for none)",
        arg: OptionArg::SecretFromStdin,
        scope: OptionScope::TargetAdd,
    };

    /// `--admin-password`: the admin password on the command line.
    pub const ADMIN_PASSWORD: OptionSpec = OptionSpec {
        name: "admin-password",
        help: "The admin password (visible in the process list; prefer --admin-password-stdin)",
        arg: OptionArg::Secret {
            value_name: "PASSWORD",
        },
        scope: OptionScope::TargetAdd,
    };

    /// `--password-length`: the length of generated passwords.
    pub const PASSWORD_LENGTH: OptionSpec = OptionSpec {
        name: "password-length",
        help: "Length of generated passwords (16–128) [default: 32]",
        arg: OptionArg::Value { value_name: "N" },
        scope: OptionScope::SecretCreate,
    };

    /// `--exclude-chars`: characters generated passwords must not use.
    pub const EXCLUDE_CHARS: OptionSpec = OptionSpec {
        name: "exclude-chars",
        help: "Characters generated passwords must not use (: / @ \" ' \\ and space never are)",
        arg: OptionArg::Value {
            value_name: "CHARS",
        },
        scope: OptionScope::SecretCreate,
    };
}

/// A value given for a family option.
#[derive(Clone)]
pub enum OptionValue {
    /// A `Value` option's text.
    Text(String),
    /// A `Flag` option that was given.
    Flag,
    /// A secret option's value (from the command line, standard input or a file).
    Secret(SecretString),
}

/// The family options given on the command line, by name. `Debug` never shows secrets.
#[derive(Clone, Default)]
pub struct Options(BTreeMap<String, OptionValue>);

impl Options {
    /// No options.
    pub fn new() -> Self {
        Options::default()
    }

    /// Records `value` for option `name` (replacing any earlier one).
    pub fn insert(&mut self, name: &str, value: OptionValue) -> &mut Self {
        self.0.insert(name.to_owned(), value);
        self
    }

    /// A text option's value.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(OptionValue::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// A secret option's value.
    pub fn secret(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(OptionValue::Secret(s)) => Some(s.expose_secret()),
            _ => None,
        }
    }

    /// The names given, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Parses a text option with `FromStr`; a parse error names the option.
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, SetupError>
    where
        T::Err: fmt::Display,
    {
        self.text(name)
            .map(|t| {
                t.parse()
                    .map_err(|e| SetupError::Invalid(format!("--{name}: {e}")))
            })
            .transpose()
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            match v {
                OptionValue::Text(t) => map.entry(k, t),
                OptionValue::Flag => map.entry(k, &true),
                OptionValue::Secret(_) => map.entry(k, &"[REDACTED]"),
            };
        }
        map.finish()
    }
}

/// Why a family refused to set something up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The input is wrong (a bad name, a missing option, a credential that does not log in).
    #[error("{0}")]
    Invalid(String),
    /// The target refused or could not be reached.
    #[error("{0}")]
    Target(String),
}

impl From<RotateError> for SetupError {
    fn from(e: RotateError) -> Self {
        SetupError::Target(e.to_string())
    }
}

/// A target as its family validated it, ready to store.
#[derive(Debug)]
pub struct NewTarget {
    /// The canonical kind name.
    pub kind: &'static str,
    /// The target's address, never carrying a credential.
    pub url: String,
    /// The family's typed settings for the target, as JSON (`Null` when none).
    pub config: serde_json::Value,
    /// The admin credential, if the target has one (an SSH host may not need one).
    pub admin: Option<NewAdmin>,
    /// What the user should know about what was set up (e.g. a host key trusted on first use).
    pub notes: Vec<String>,
}

/// A target's admin credential and the secret kind that holds it (a `SingleUser` database
/// account, an SSH key or password, an AccessKey pair).
#[derive(Debug)]
pub struct NewAdmin {
    /// The secret kind that holds the admin credential.
    pub kind: SecretKind,
    /// The admin credential's value.
    pub value: SecretValue,
    /// Settings stored with the admin secret for its rotator (`Null` for none): an SSH admin key
    /// pair records its public key as adopted, so rotation retires it like any other.
    pub settings: serde_json::Value,
}

/// Where a managed secret's first credential comes from.
#[derive(Debug)]
pub enum Source {
    /// Create mode: the family makes the credential (from its options).
    Create,
    /// Import mode: adopt this existing credential; it must work on the target first.
    Import(SecretValue),
}

/// What `secret create --target` asks of a family.
#[derive(Debug)]
pub struct SecretRequest<'a> {
    /// The name of the secret being created.
    pub secret_name: &'a str,
    /// The secret's kind.
    pub kind: SecretKind,
    /// Whether rotor makes the credential or adopts an existing one.
    pub source: Source,
    /// The family options given on the command line.
    pub options: &'a Options,
    /// The target the secret's credentials live on, with its admin credential.
    pub target: &'a TargetContext,
}

/// A managed secret's first values and settings, before anything on the target changed.
#[derive(Debug)]
pub struct Provisioned {
    /// The first `ACSCurrent` value.
    pub current: SecretValue,
    /// A value stored as `ACSPrevious` beside it (a dual account's partner).
    pub previous: Option<SecretValue>,
    /// Settings stored with the secret and handed to its rotator (`RotationContext.settings`).
    pub settings: serde_json::Value,
    /// Create mode: the credentials must be installed on the target ([`Family::install`]) once
    /// the secret is stored. Import mode: they already work there.
    pub install: bool,
    /// The target made the credential during `provision` (a cloud's CreateAccessKey): if the
    /// store then refuses the secret, [`Family::discard`] removes it again.
    pub made_on_target: bool,
}

/// The `AccountName` or `UserName` of each of `values`, each name once ([`Family::accounts`]'s
/// default).
pub fn account_names(values: &[&SecretValue]) -> Vec<String> {
    let mut names: Vec<String> = values
        .iter()
        .filter_map(|v| {
            let v: serde_json::Value = serde_json::from_slice(v.expose()).ok()?;
            ["AccountName", "UserName"]
                .iter()
                .find_map(|f| v.get(f)?.as_str().map(str::to_owned))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What a secret's credentials are on its target, for `secret delete` to say what stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnTarget {
    /// Each thing in words (`role 'app'`, `user 'app'@'%' with its grants on database 'd'`).
    pub items: Vec<String>,
    /// Who made the accounts: whether `secret delete` may remove them.
    pub origin: Origin,
}

/// Who made a secret's accounts on its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// rotor, in create mode: [`Family::remove_accounts`] may remove them.
    Created,
    /// Someone else: the secret imported them, and they stay theirs.
    Imported,
    /// The secret predates rotor's record of it; they are treated as imported.
    Unknown,
}

/// One kind of target and everything rotor does with it.
#[async_trait]
pub trait Family: Send + Sync {
    /// A short name for messages (`database`, `ssh`, `ram`).
    fn name(&self) -> &'static str;

    /// The target kinds it serves.
    fn target_kinds(&self) -> &'static [TargetKindSpec];

    /// The options it reads on `target add` and `secret create --target`.
    fn options(&self) -> &'static [OptionSpec];

    /// The rotators it supplies, by secret kind.
    fn rotators(&self) -> Vec<(SecretKind, Arc<dyn Rotator>)>;

    /// Validates a target (`kind` is one of [`target_kinds`](Self::target_kinds), `url`
    /// carries no credentials) and builds its admin credential from `options`. It may contact
    /// the target (to read an SSH host key on first use); it changes nothing there.
    async fn new_target(
        &self,
        kind: &'static TargetKindSpec,
        url: &str,
        options: &Options,
    ) -> Result<NewTarget, SetupError>;

    /// Logs in as the admin (or, without one, checks the target answers as pinned) and says
    /// what it may do (one line for `target check`).
    async fn check_target(&self, target: &TargetContext) -> Result<String, SetupError>;

    /// `target update`: the target's settings once `url` (already checked like `target add`'s)
    /// replaces its address and `options` (of `target add`'s) change what may change — a
    /// pinned host key, TLS settings — never its admin credential, which is a secret of its
    /// own. Returns the new settings and notes for the user. By default only the URL changes
    /// (where databases keep their TLS settings) and every option is refused.
    async fn update_target(
        &self,
        _kind: &'static TargetKindSpec,
        target: &TargetContext,
        _url: &str,
        options: &Options,
    ) -> Result<(serde_json::Value, Vec<String>), SetupError> {
        match options.names().next() {
            Some(name) => Err(SetupError::Invalid(format!(
                "--{name} cannot be changed with target update on a {} target",
                target.kind
            ))),
            None => Ok((target.config.clone(), vec![])),
        }
    }

    /// Checks a `secret create --target` request and makes the secret's first values: new
    /// credentials (create mode; nothing on the target changes yet) or the imported ones, which
    /// must log in. Nothing is stored until this returns.
    async fn provision(&self, request: SecretRequest<'_>) -> Result<Provisioned, SetupError>;

    /// Logs in with `value`, a credential for a secret of `kind` whose settings and current
    /// value are given, proving it works and belongs to this secret (a dual account's pair, the
    /// same user): the check before a re-import or a rollback.
    async fn check_credential(
        &self,
        target: &TargetContext,
        kind: SecretKind,
        settings: &serde_json::Value,
        current: &SecretValue,
        value: &SecretValue,
    ) -> Result<(), SetupError>;

    /// Whether secrets of `kind` may live on a target of kind `target_kind` (the canonical
    /// name of one of this family's kinds): by default, any kind this family rotates. A secret
    /// of another kind is refused at `secret create` before anything changes.
    fn serves(&self, _target_kind: &str, kind: SecretKind) -> bool {
        self.rotators().iter().any(|(k, _)| *k == kind)
    }

    /// Whether the `ACSPrevious` credential of a secret of `kind` still works after a rotation
    /// (dual accounts, key pairs), so that rolling back to it is safe.
    fn previous_stays_valid(&self, kind: SecretKind) -> bool;

    /// What `secret describe` shows about a secret of `kind` beside its target and the account
    /// names in its values, read from its stored settings: labels and values for people (the
    /// RAM user, the database and privilege) — never a credential.
    fn describe_secret(
        &self,
        _kind: SecretKind,
        _settings: &serde_json::Value,
    ) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The accounts on its target that a secret of `kind` logs in as and rotates, from its
    /// settings and values (current, previous): two secrets must never share one, or each
    /// rotation would lock out the applications of the other. By default the `AccountName` or
    /// `UserName` of each value.
    fn accounts(
        &self,
        _kind: SecretKind,
        _settings: &serde_json::Value,
        values: &[&SecretValue],
    ) -> Vec<String> {
        account_names(values)
    }

    /// Whether two targets of this family naming one server (host and port) reach the same
    /// accounts, so that [`accounts`](Self::accounts) are compared across them. True for
    /// databases and hosts; not for a cloud API endpoint, which serves many accounts.
    fn server_holds_accounts(&self) -> bool {
        true
    }

    /// The store refused a secret whose credential the target made in `provision`
    /// ([`Provisioned::made_on_target`]): removes that credential, so none exists only on the
    /// target.
    async fn discard(
        &self,
        _target: &TargetContext,
        _kind: SecretKind,
        _provisioned: &Provisioned,
    ) -> Result<(), SetupError> {
        Ok(())
    }

    /// What a secret of `kind` (with its settings and current value) has on `target`, in words;
    /// `None` when the family does not say (the caller then speaks of its credentials).
    fn on_target(
        &self,
        _target: &TargetContext,
        _kind: SecretKind,
        _settings: &serde_json::Value,
        _current: &SecretValue,
    ) -> Option<OnTarget> {
        None
    }

    /// Removes from `target` the accounts rotor created for a secret of `kind` in create mode,
    /// with what was granted to them, before the secret is deleted (`secret delete
    /// --drop-accounts`). All or nothing: when it refuses (imported accounts, objects they own,
    /// a family that cannot) nothing on the target changed. Returns what it removed, in words.
    async fn remove_accounts(
        &self,
        target: &TargetContext,
        _kind: SecretKind,
        _settings: &serde_json::Value,
        _current: &SecretValue,
    ) -> Result<Vec<String>, SetupError> {
        Err(SetupError::Invalid(format!(
            "rotor cannot remove accounts from {} targets such as '{}': remove them there yourself",
            target.kind, target.name
        )))
    }

    /// Create mode, after the secret is stored as `secret_name` with first version
    /// `version_id`: puts its credentials on the target. On error the secret is deleted again,
    /// so no credential exists only on the target.
    async fn install(
        &self,
        target: &TargetContext,
        kind: SecretKind,
        secret_name: &str,
        version_id: &str,
        provisioned: &Provisioned,
    ) -> Result<(), SetupError>;
}
