//! The SSH (ECS) family: host users' passwords and SSH key pairs, changed over SSH.
//!
//! A target is `ssh://HOST[:PORT]` with a pinned host key (given as a key or a `SHA256:`
//! fingerprint, or read once on first use when asked to, and recorded): a host presenting any
//! other key is refused, naming both fingerprints. Its admin credential is optional — root or a
//! user with `sudo`, by key or password — and needed where users cannot change their own
//! secret, and to create a first key pair or password for a user.
//!
//! [`client`] is one SSH connection (russh), [`remote`] what rotor runs on a host, [`keys`] key
//! pairs and authorized_keys text, [`rotator`] the two rotators, [`settings`] what is stored.

pub mod client;
pub mod keys;
pub mod remote;
pub mod rotator;
pub mod sessions;
pub mod settings;

use std::sync::Arc;

use async_trait::async_trait;

use self::keys::KeyPair;
use self::remote::{Credential, CredentialSecret, Editor, Host};
use self::rotator::{password_value, KeyRotator, PasswordRotator};
use self::settings::{check_fingerprint, check_user_name, EcsSettings, SshAddress, SshTarget};
use crate::database::account::PasswordPolicy;
use crate::family::shared::{
    ADMIN_PASSWORD, ADMIN_PASSWORD_STDIN, ADMIN_USER, EXCLUDE_CHARS, PASSWORD_LENGTH,
};
use crate::family::{
    Family, NewAdmin, NewTarget, OptionArg, OptionScope, OptionSpec, Options, Provisioned,
    SecretRequest, SetupError, Source, TargetKindSpec,
};
use crate::kind::{SecretKind, SecretType, SubType};
use crate::rotator::{RotateError, Rotator, TargetContext};
use crate::value::SecretValue;

const KINDS: &[TargetKindSpec] = &[TargetKindSpec {
    name: "ssh",
    aliases: &["ecs"],
    schemes: &["ssh://"],
    default_url: None,
}];

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "host-key",
        help: "SSH targets: the host's public key, as in known_hosts ('ssh-ed25519 AAAA…')",
        arg: OptionArg::Value { value_name: "KEY" },
        scope: OptionScope::TargetAdd,
    },
    OptionSpec {
        name: "host-key-fingerprint",
        help: "SSH targets: the host key's fingerprint (SHA256:…, as ssh-keygen -lf prints it)",
        arg: OptionArg::Value {
            value_name: "SHA256:…",
        },
        scope: OptionScope::TargetAdd,
    },
    OptionSpec {
        name: "trust-on-first-use",
        help: "SSH targets: read the host key now and pin it (it is printed; compare it)",
        arg: OptionArg::Flag,
        scope: OptionScope::TargetAdd,
    },
    ADMIN_USER,
    OptionSpec {
        name: "admin-key-file",
        help: "SSH targets: the admin's private key file (OpenSSH or PEM, unencrypted, mode 0600)",
        arg: OptionArg::SecretFile { value_name: "PATH" },
        scope: OptionScope::TargetAdd,
    },
    ADMIN_PASSWORD_STDIN,
    ADMIN_PASSWORD,
    OptionSpec {
        name: "user",
        help: "ECS create mode: the host user whose password or key pair rotor makes (needs the target's admin)",
        arg: OptionArg::Value { value_name: "USER" },
        scope: OptionScope::SecretCreate,
    },
    OptionSpec {
        name: "key-type",
        help: "ECS SSHKey: the type of new key pairs: ed25519 (default), rsa-3072, rsa-4096, ecdsa-p256 or ecdsa-p384",
        arg: OptionArg::Value { value_name: "TYPE" },
        scope: OptionScope::SecretCreate,
    },
    PASSWORD_LENGTH,
    EXCLUDE_CHARS,
];

/// Host users' passwords and SSH key pairs.
pub struct SshFamily;

impl SshFamily {
    /// The SSH family.
    pub fn new() -> Arc<Self> {
        Arc::new(SshFamily)
    }
}

fn invalid(m: impl Into<String>) -> SetupError {
    SetupError::Invalid(m.into())
}

/// One of the options, or none; more than one is refused.
fn one_of<'a>(options: &Options, names: &[&'a str]) -> Result<Option<&'a str>, SetupError> {
    let given: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| options.names().any(|g| g == *n))
        .collect();
    if given.len() > 1 {
        return Err(invalid(format!(
            "give one of --{}, not several",
            names.join(", --")
        )));
    }
    Ok(given.first().copied())
}

/// The ECS kind of a request, or an error naming what the family serves.
fn ecs_sub(kind: SecretKind) -> Result<SubType, SetupError> {
    match (kind.ty, kind.sub) {
        (SecretType::ECS, Some(sub)) => Ok(sub),
        _ => Err(invalid(
            "an SSH target holds ECS secrets (--type ECS --sub-type Password or SSHKey)",
        )),
    }
}

/// Reads and checks an imported or re-imported ECS value.
fn credential(kind: SecretKind, value: &SecretValue) -> Result<Credential, SetupError> {
    crate::value::validate(kind, value.expose()).map_err(|e| invalid(e.to_string()))?;
    let credential = Credential::from_value(value).map_err(|e| invalid(e.to_string()))?;
    check_user_name(&credential.user)?;
    Ok(credential)
}

fn login_refused(user: &str, target: &str, e: client::SshError) -> SetupError {
    match e {
        client::SshError::Denied(_) => invalid(format!(
            "user '{user}' does not log in on target '{target}' with this credential; nothing stored"
        )),
        other => SetupError::Target(other.to_string()),
    }
}

/// Pins the host key the options give (`--host-key`, `--host-key-fingerprint`, or the key
/// `config.address` presents now with `--trust-on-first-use`) in `config`; false when none is
/// given.
async fn pin_from(
    options: &Options,
    config: &mut SshTarget,
    notes: &mut Vec<String>,
) -> Result<bool, SetupError> {
    let (key, fingerprint) = match one_of(
        options,
        &["host-key", "host-key-fingerprint", "trust-on-first-use"],
    )? {
        Some("host-key") => {
            let text = options.text("host-key").unwrap_or_default();
            let key = russh::keys::PublicKey::from_openssh(text.trim()).map_err(|_| {
                invalid("--host-key must be an OpenSSH public key ('ssh-ed25519 AAAA…')")
            })?;
            (Some(keys::bare_key(&key)), None)
        }
        Some("host-key-fingerprint") => {
            let f = options.text("host-key-fingerprint").unwrap_or_default();
            check_fingerprint(f).map_err(invalid)?;
            (None, Some(f.to_owned()))
        }
        Some(_) => {
            let key = client::scan_host_key(&config.address)
                .await
                .map_err(|e| SetupError::Target(e.to_string()))?;
            notes.push(format!(
                "trusting host key {} ({}) that {} presented on first use; compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)",
                client::fingerprint(&key),
                key.algorithm(),
                config.address
            ));
            (Some(keys::bare_key(&key)), None)
        }
        None => return Ok(false),
    };
    config.host_key = key;
    config.host_key_fingerprint = fingerprint;
    Ok(true)
}

/// Create mode never takes over the target's own admin or a superuser (uid 0, whatever its
/// name): rotor would lock itself, and every rotation on the host, out.
async fn refuse_privileged(
    host: &Host,
    target: &TargetContext,
    user: &str,
) -> Result<(), SetupError> {
    let admin = host.admin(target).await?;
    let uid = if user == admin.user {
        Ok(None)
    } else {
        admin.uid_of(user).await.map(Some)
    };
    admin.session.close().await;
    match uid.map_err(|e| SetupError::Target(e.to_string()))? {
        None => Err(invalid(format!(
            "user '{user}' is the admin of target '{}': rotor does not make its credential in create mode (its secret is acs/target/{}/admin; rotate that, or re-import it)",
            target.name, target.name
        ))),
        Some(0) => Err(invalid(format!(
            "user '{user}' has uid 0 on target '{}' (a superuser): rotor does not take over its credential in create mode; import it with --value-file if rotor should rotate it",
            target.name
        ))),
        Some(_) => Ok(()),
    }
}

#[async_trait]
impl Family for SshFamily {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn target_kinds(&self) -> &'static [TargetKindSpec] {
        KINDS
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn rotators(&self) -> Vec<(SecretKind, Arc<dyn Rotator>)> {
        let kind = |sub| SecretKind {
            ty: SecretType::ECS,
            sub: Some(sub),
        };
        vec![
            (kind(SubType::Password), Arc::new(PasswordRotator)),
            (kind(SubType::SSHKey), Arc::new(KeyRotator)),
        ]
    }

    async fn new_target(
        &self,
        kind: &'static TargetKindSpec,
        url: &str,
        options: &Options,
    ) -> Result<NewTarget, SetupError> {
        let address = SshAddress::parse(url).map_err(invalid)?;
        let mut notes = vec![];
        let mut config = SshTarget {
            address: address.clone(),
            host_key: None,
            host_key_fingerprint: None,
        };
        if !pin_from(options, &mut config, &mut notes).await? {
            return Err(invalid(
                "an SSH target needs its host key: --host-key, --host-key-fingerprint, or --trust-on-first-use to read and pin the key it presents now",
            ));
        }
        let secret = one_of(
            options,
            &["admin-key-file", "admin-password-stdin", "admin-password"],
        )?;
        let admin = match (options.text("admin-user"), secret) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid("give --admin-user with the admin's credential"))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "give the admin's credential: --admin-key-file or --admin-password-stdin",
                ))
            }
            (Some(user), Some(option)) => {
                check_user_name(user)?;
                let secret = options.secret(option).unwrap_or_default();
                let (sub, value, settings) = if option == "admin-key-file" {
                    let private = keys::parse_private_key(secret)
                        .map_err(|e| invalid(format!("--admin-key-file: {e}")))?;
                    let pair = KeyPair {
                        user: user.to_owned(),
                        public: private.public_key().clone(),
                        private,
                    };
                    // The given key is this secret's too: rotation retires it like its own.
                    let settings = EcsSettings {
                        adopted_key: Some(keys::bare_key(&pair.public)),
                        ..EcsSettings::default()
                    };
                    (
                        SubType::SSHKey,
                        pair.to_value()?,
                        serde_json::to_value(&settings).expect("settings serialise"),
                    )
                } else {
                    (
                        SubType::Password,
                        password_value(user, secret),
                        serde_json::Value::Null,
                    )
                };
                Some(NewAdmin {
                    kind: SecretKind {
                        ty: SecretType::ECS,
                        sub: Some(sub),
                    },
                    value,
                    settings,
                })
            }
        };
        Ok(NewTarget {
            kind: kind.name,
            url: url.to_owned(),
            config: serde_json::to_value(&config).expect("settings serialise"),
            admin,
            notes,
        })
    }

    async fn update_target(
        &self,
        _kind: &'static TargetKindSpec,
        target: &TargetContext,
        url: &str,
        options: &Options,
    ) -> Result<(serde_json::Value, Vec<String>), SetupError> {
        if let Some(name) = options.names().find(|n| {
            !matches!(
                *n,
                "host-key" | "host-key-fingerprint" | "trust-on-first-use"
            )
        }) {
            return Err(invalid(format!(
                "--{name} cannot be changed with target update: the admin credential is the secret {}; rotate it, or re-import it with rotor secret import",
                format_args!("acs/target/{}/admin", target.name)
            )));
        }
        let mut config = SshTarget::from_json(&target.config)?;
        config.address = SshAddress::parse(url).map_err(invalid)?;
        let mut notes = vec![];
        pin_from(options, &mut config, &mut notes).await?;
        Ok((
            serde_json::to_value(&config).expect("settings serialise"),
            notes,
        ))
    }

    async fn check_target(&self, target: &TargetContext) -> Result<String, SetupError> {
        let host = Host::of(target)?;
        if target.admin.is_none() {
            client::probe(&host.address, &host.pin)
                .await
                .map_err(|e| SetupError::Target(e.to_string()))?;
            return Ok(format!(
                "is not set: {} answers with the pinned host key; users change their own passwords (passwd) and keys",
                host.address
            ));
        }
        let admin = host.admin(target).await?;
        let checked = admin.check_root().await;
        let report = admin.describe();
        admin.session.close().await;
        checked.map_err(|e| SetupError::Target(e.to_string()))?;
        Ok(format!(
            "{report}: may set any user's password (chpasswd) and edit authorized_keys"
        ))
    }

    async fn provision(&self, request: SecretRequest<'_>) -> Result<Provisioned, SetupError> {
        let SecretRequest {
            secret_name,
            kind,
            source,
            options,
            target,
        } = request;
        let sub = ecs_sub(kind)?;
        let mut settings = EcsSettings {
            password: PasswordPolicy::from_options(options)?,
            ..EcsSettings::default()
        };
        if let Some(key_type) = options.parse("key-type")? {
            if sub != SubType::SSHKey {
                return Err(invalid("--key-type is for ECS SSHKey secrets"));
            }
            settings.key_type = key_type;
        }
        let host = Host::of(target)?;
        let (current, install) = match (source, options.text("user")) {
            (Source::Import(_), Some(_)) => {
                return Err(invalid(
                    "give --user to have rotor make the credential, or --value / --value-file to import it, not both",
                ))
            }
            (Source::Create, None) => {
                return Err(invalid(
                    "give --value / --value-file to import the user's credential, or --user to have rotor make one (with the target's admin)",
                ))
            }
            (Source::Create, Some(user)) => {
                check_user_name(user)?;
                if target.admin.is_none() {
                    return Err(invalid(format!(
                        "target '{}' has no admin credential, which rotor needs to install a new credential for '{user}'; import the user's current one with --value-file instead",
                        target.name
                    )));
                }
                refuse_privileged(&host, target, user).await?;
                let value = match sub {
                    SubType::SSHKey => {
                        keys::generate_value(
                            user,
                            settings.key_type,
                            &format!("rotor:{secret_name}"),
                        )
                        .await?
                    }
                    _ => password_value(
                        user,
                        secrecy::ExposeSecret::expose_secret(&settings.password.generate()),
                    ),
                };
                (value, true)
            }
            (Source::Import(value), None) => {
                let credential = credential(kind, &value)?;
                let session = host
                    .login_checked(&credential)
                    .await
                    .map_err(|e| login_refused(&credential.user, &target.name, e))?;
                session.close().await;
                if let CredentialSecret::Key(pair) = &credential.secret {
                    settings.adopted_key = Some(keys::bare_key(&pair.public));
                }
                (value, false)
            }
        };
        Ok(Provisioned {
            current,
            previous: None,
            settings: serde_json::to_value(&settings).expect("settings serialise"),
            install,
            made_on_target: false,
        })
    }

    async fn check_credential(
        &self,
        target: &TargetContext,
        kind: SecretKind,
        _settings: &serde_json::Value,
        current: &SecretValue,
        value: &SecretValue,
    ) -> Result<(), SetupError> {
        ecs_sub(kind)?;
        let credential = credential(kind, value)?;
        let current = Credential::from_value(current)?;
        if credential.user != current.user {
            return Err(invalid(format!(
                "user '{}' is not this secret's (expected {})",
                credential.user, current.user
            )));
        }
        let session = Host::of(target)?
            .login_checked(&credential)
            .await
            .map_err(|e| login_refused(&credential.user, &target.name, e))?;
        session.close().await;
        Ok(())
    }

    fn previous_stays_valid(&self, kind: SecretKind) -> bool {
        kind.sub == Some(SubType::SSHKey)
    }

    /// A host user's password is one secret's; key pairs are not: each secret's authorized_keys
    /// lines carry its name, so several may rotate keys of one user side by side.
    fn accounts(
        &self,
        kind: SecretKind,
        _settings: &serde_json::Value,
        values: &[&SecretValue],
    ) -> Vec<String> {
        if kind.sub == Some(SubType::SSHKey) {
            return vec![];
        }
        crate::family::account_names(values)
    }

    async fn install(
        &self,
        target: &TargetContext,
        kind: SecretKind,
        secret_name: &str,
        version_id: &str,
        provisioned: &Provisioned,
    ) -> Result<(), SetupError> {
        let host = Host::of(target)?;
        let admin = host.admin(target).await?;
        let credential = Credential::from_value(&provisioned.current)?;
        let user = credential.user.clone();
        let done = match (&credential.secret, ecs_sub(kind)?) {
            (CredentialSecret::Key(pair), SubType::SSHKey) => {
                let editor = Editor::Admin(&admin);
                let line = keys::authorized_line(&pair.public, secret_name, version_id);
                host.edit_keys(&editor, &user, |file| Some(keys::with_line(file, &line)))
                    .await
            }
            (CredentialSecret::Password(p), _) => admin.set_password(&user, p).await,
            _ => Err(client::SshError::Remote(
                "the credential does not fit the secret's sub-type".into(),
            )),
        };
        admin.session.close().await;
        done.map_err(|e| RotateError::from(e).scrub(&[credential.password()]))?;
        Ok(())
    }
}
