//! The RAM family: a cloud RAM user's AccessKey pair, replaced through the RAM OpenAPI within
//! the two-key limit.
//!
//! A target of kind `ram` is a RAM endpoint (default the public one) with an admin AccessKey
//! pair that may manage users' keys. A `RAMCredentials` secret names its RAM user
//! (`--ram-user`) and holds `{"AccessKeyId","AccessKeySecret","GenerateTimestamp"}`.
//!
//! Unlike other targets, the cloud makes the credential: `create` calls CreateAccessKey, so it
//! changes the target before the engine stores the result. A crash between the two would leave
//! a key nobody holds; the engine therefore stores a create mark first
//! ([`RotationContext::create_mark`]: rotor's clock when the attempt began, kept only while an
//! attempt has not ended — one that returned, even with an error, clears it), and `create`
//! deletes any key of the user that no version holds and that was created at or after the mark
//! (an interrupted attempt's) before making a new one. The cloud's `CreateDate` is on the
//! cloud's clock: the mark is moved onto it by the difference the answers' `Date` headers show,
//! so a clock a few minutes off on either side changes nothing. A key created before the mark
//! that no version holds was made by someone else: the rotation fails, naming it, and deletes
//! nothing. A `create` that fails after CreateAccessKey may have made a key deletes it itself
//! before returning. A user holds at most two keys: after a rotation exactly `ACSCurrent` and
//! `ACSPrevious`; `create` deletes the previous version's key when two are present (never the
//! current one) — if it then fails, its error says so and the engine takes `ACSPrevious` off
//! that version ([`Rotator::previous_gone`]).
//!
//! [`client`] is the OpenAPI client; it signs its requests with the `acs-sign` crate.

pub mod client;
mod rotator;

pub use self::rotator::AccessKeyRotator;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use self::client::{RamClient, SignatureStyle, DEFAULT_ENDPOINT};
use crate::family::{
    Family, NewAdmin, NewTarget, OptionArg, OptionScope, OptionSpec, Options, Provisioned,
    SecretRequest, SetupError, Source, TargetKindSpec,
};
use crate::kind::{SecretKind, SecretType};
use crate::rotator::{RotateError, RotationContext, Rotator, TargetContext};
use crate::value::SecretValue;

const KINDS: &[TargetKindSpec] = &[TargetKindSpec {
    name: "ram",
    aliases: &[],
    schemes: &["https://", "http://"],
    default_url: Some(DEFAULT_ENDPOINT),
}];

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "admin-access-key-id",
        help: "RAM targets: the AccessKey ID of an admin that may manage users' AccessKeys",
        arg: OptionArg::Value { value_name: "ID" },
        scope: OptionScope::TargetAdd,
    },
    OptionSpec {
        name: "admin-access-key-secret-stdin",
        help: "RAM targets: read the admin's AccessKey secret from standard input",
        arg: OptionArg::SecretFromStdin,
        scope: OptionScope::TargetAdd,
    },
    OptionSpec {
        name: "signature",
        help:
            "RAM targets: request signature, v3 (ACS3-HMAC-SHA256, default) or v1 (RPC HMAC-SHA1)",
        arg: OptionArg::Value {
            value_name: "v3|v1",
        },
        scope: OptionScope::TargetAdd,
    },
    OptionSpec {
        name: "previous-grace",
        help: "RAMCredentials: after a rotation, disable the previous AccessKey once this has passed (e.g. 1h); it stays Active until the next rotation without it",
        arg: OptionArg::Value {
            value_name: "DURATION",
        },
        scope: OptionScope::SecretCreate,
    },
    OptionSpec {
        name: "ram-user",
        help: "RAMCredentials: the RAM user whose AccessKey pair the secret holds",
        arg: OptionArg::Value { value_name: "USER" },
        scope: OptionScope::SecretCreate,
    },
];

/// A target's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RamTarget {
    #[serde(default)]
    signature: SignatureStyle,
}

/// A secret's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RamSettings {
    user: String,
    /// Seconds after a rotation before the previous key is set Inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_grace_s: Option<u64>,
}

impl RamSettings {
    fn from_json(settings: &serde_json::Value) -> Result<Self, RotateError> {
        serde_json::from_value(settings.clone()).map_err(|e| {
            RotateError::fatal(format!("the secret's RAM settings are malformed: {e}"))
        })
    }
}

/// An AccessKey pair value.
struct AccessKey {
    id: String,
    secret: Zeroizing<String>,
    generated: String,
}

impl AccessKey {
    fn from_value(value: &SecretValue) -> Result<AccessKey, RotateError> {
        let v: serde_json::Value = serde_json::from_slice(value.expose())
            .map_err(|_| RotateError::fatal("an AccessKey value is not JSON"))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        match (field("AccessKeyId"), field("AccessKeySecret")) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(AccessKey {
                id,
                secret: Zeroizing::new(secret),
                generated: field("GenerateTimestamp").unwrap_or_default(),
            }),
            _ => Err(RotateError::fatal(
                "an AccessKey value needs AccessKeyId and AccessKeySecret",
            )),
        }
    }

    fn to_value(&self) -> SecretValue {
        let text = Zeroizing::new(
            json!({"AccessKeyId": self.id, "AccessKeySecret": self.secret.as_str(), "GenerateTimestamp": self.generated})
                .to_string(),
        );
        SecretValue::new(text.as_bytes().to_vec())
    }
}

fn client(target: &TargetContext, key: &AccessKey) -> Result<RamClient, RotateError> {
    let config: RamTarget = if target.config.is_null() {
        RamTarget::default()
    } else {
        serde_json::from_value(target.config.clone()).map_err(|e| {
            RotateError::fatal(format!("the RAM target's settings are malformed: {e}"))
        })?
    };
    RamClient::new(&target.url, config.signature, &key.id, &key.secret).map_err(RotateError::fatal)
}

fn admin_client(target: &TargetContext) -> Result<RamClient, RotateError> {
    client(target, &AccessKey::from_value(target.admin()?)?)
}

/// Checks a RAM user name: 1–64 letters, digits, `.`, `_`, `-`, `@`.
fn check_user(name: &str) -> Result<(), SetupError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(SetupError::Invalid(format!(
            "'{}' is not a RAM user name (1 to 64 letters, digits, '.', '_', '-', '@')",
            name.chars().take(64).collect::<String>().escape_debug()
        )));
    }
    Ok(())
}

/// `2026-11-29T14:00:05Z` → seconds since the epoch.
fn epoch_seconds(date: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(date)
        .ok()
        .map(|d| d.timestamp())
}

/// How an AccessKey's creation time compares with a create mark.
#[derive(Debug, PartialEq, Eq)]
enum Made {
    /// At or after the mark: an attempt of this rotation made it.
    Since,
    /// Before the mark, or with no mark: someone else's.
    Before,
    /// Cannot tell: the cloud's creation time or clock is unknown.
    Unknown,
}

impl Made {
    /// What a refusal adds about the clocks.
    fn note(&self, skew: Option<i64>) -> String {
        match (self, skew) {
            (Made::Unknown, _) => " (rotor could not compare its creation time with the cloud's clock)".into(),
            (_, Some(skew)) if skew.abs() > 2_000 => format!(
                " (the cloud's clock is {}s {} rotor's; creation times were compared on the cloud's clock)",
                skew.abs() / 1000,
                if skew > 0 { "ahead of" } else { "behind" }
            ),
            _ => String::new(),
        }
    }
}

/// Whether a key created at `created` (the cloud's clock, whole seconds) was made at or after
/// `mark` (rotor's clock, ms), given `skew` (the cloud's clock minus rotor's, ms, as
/// [`RamClient::clock_skew_ms`] measured it: at most the true difference, by less than a
/// second plus an answer's travel time). The mark moved onto the cloud's clock is then at most
/// the true one, so a key made after the mark always counts; a key made by someone else counts
/// only within about two seconds before the mark.
fn made_since(created: &str, mark: Option<i64>, skew: Option<i64>) -> Made {
    match (epoch_seconds(created), mark, skew) {
        (_, None, _) => Made::Before,
        (Some(created), Some(mark), Some(skew)) => {
            if created * 1000 + 1000 > mark + skew {
                Made::Since
            } else {
                Made::Before
            }
        }
        _ => Made::Unknown,
    }
}

/// After a CreateAccessKey that may have made a key: deletes keys of `user` that were not
/// there `before`, no version holds, and were made since `started` (rotor's clock, moved onto
/// the cloud's). False when it did not run to its end (the keys could not be listed, or one
/// not deleted): a key this attempt made may still be there, and the next attempt must know it
/// for this secret's.
async fn sweep(
    admin: &RamClient,
    user: &str,
    before: &[&str],
    started: i64,
    ours: &(dyn Fn(&str) -> bool + Sync),
) -> bool {
    let Ok(keys) = admin.list_access_keys(user).await else {
        tracing::warn!("could not list the RAM user's AccessKeys after a failed CreateAccessKey");
        return false;
    };
    let skew = admin.clock_skew_ms();
    let mut swept = true;
    for key in keys.iter().filter(|k| {
        !before.contains(&k.access_key_id.as_str())
            && !ours(&k.access_key_id)
            && made_since(&k.create_date, Some(started), skew) == Made::Since
    }) {
        match admin.delete_access_key(user, &key.access_key_id).await {
            Ok(()) => {
                tracing::info!(access_key_id = %key.access_key_id, "deleted the AccessKey a failed CreateAccessKey made")
            }
            Err(e) => {
                tracing::warn!(access_key_id = %key.access_key_id, error = %e, "could not delete the AccessKey a failed CreateAccessKey made");
                swept = false;
            }
        }
    }
    swept
}

/// `e` with `note` added to its message.
fn with_note(e: RotateError, note: &str) -> RotateError {
    e.map_message(|m| m + note)
}

/// The cloud's AccessKey pairs of RAM users.
pub struct RamFamily;

impl RamFamily {
    /// The RAM family.
    pub fn new() -> Arc<Self> {
        Arc::new(RamFamily)
    }
}

fn invalid(m: impl Into<String>) -> SetupError {
    SetupError::Invalid(m.into())
}

#[async_trait]
impl Family for RamFamily {
    fn name(&self) -> &'static str {
        "ram"
    }

    fn target_kinds(&self) -> &'static [TargetKindSpec] {
        KINDS
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn rotators(&self) -> Vec<(SecretKind, Arc<dyn Rotator>)> {
        vec![(
            SecretKind {
                ty: SecretType::RAMCredentials,
                sub: None,
            },
            Arc::new(AccessKeyRotator),
        )]
    }

    async fn new_target(
        &self,
        kind: &'static TargetKindSpec,
        url: &str,
        options: &Options,
    ) -> Result<NewTarget, SetupError> {
        let signature: SignatureStyle = options.parse("signature")?.unwrap_or_default();
        let id = options
            .text("admin-access-key-id")
            .ok_or_else(|| invalid("give --admin-access-key-id for a RAM target"))?;
        let secret = options
            .secret("admin-access-key-secret-stdin")
            .ok_or_else(|| {
                invalid(
                    "give the admin's AccessKey secret on stdin: --admin-access-key-secret-stdin",
                )
            })?;
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("an AccessKey ID is letters and digits"));
        }
        if secret.is_empty() || secret.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid(
                "the AccessKey secret is empty or holds spaces or control characters",
            ));
        }
        RamClient::new(url, signature, id, secret).map_err(invalid)?;
        let admin = AccessKey {
            id: id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
            generated: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        };
        Ok(NewTarget {
            kind: kind.name,
            url: url.to_owned(),
            config: serde_json::to_value(RamTarget { signature }).expect("settings serialise"),
            admin: Some(NewAdmin {
                kind: SecretKind {
                    ty: SecretType::RAMCredentials,
                    sub: None,
                },
                value: admin.to_value(),
                settings: serde_json::Value::Null,
            }),
            notes: vec![],
        })
    }

    async fn check_target(&self, target: &TargetContext) -> Result<String, SetupError> {
        admin_client(target)?
            .call("ListUsers", &[("MaxItems", "1")])
            .await
            .map_err(|e| SetupError::Target(e.to_string()))?;
        Ok("signs RAM API calls that the endpoint accepts (ListUsers)".into())
    }

    async fn provision(&self, request: SecretRequest<'_>) -> Result<Provisioned, SetupError> {
        let SecretRequest {
            kind,
            source,
            options,
            target,
            ..
        } = request;
        if kind.ty != SecretType::RAMCredentials {
            return Err(invalid("a RAM target holds RAMCredentials secrets"));
        }
        let user = options.text("ram-user").ok_or_else(|| {
            invalid("give --ram-user: the RAM user whose AccessKey the secret holds")
        })?;
        check_user(user)?;
        let admin_key = AccessKey::from_value(target.admin()?)?;
        let admin = client(target, &admin_key)?;
        let target_error = |e: client::RamError| SetupError::Target(e.to_string());
        let keys = admin.list_access_keys(user).await.map_err(target_error)?;
        // The target's own admin: rotating its keys would delete the key rotor signs with.
        if keys.iter().any(|k| k.access_key_id == admin_key.id) {
            return Err(invalid(format!(
                "RAM user '{user}' holds the admin AccessKey of target '{}': rotor does not rotate its own admin's keys as a user secret (its secret is acs/target/{}/admin)",
                target.name, target.name
            )));
        }
        let previous_grace_s = options
            .text("previous-grace")
            .map(|g| {
                humantime::parse_duration(g)
                    .map(|d| d.as_secs())
                    .map_err(|e| invalid(format!("--previous-grace: {e}")))
            })
            .transpose()?;
        let settings = serde_json::to_value(RamSettings {
            user: user.to_owned(),
            previous_grace_s,
        })
        .expect("settings serialise");
        match source {
            Source::Create => {
                if keys.len() >= 2 {
                    return Err(invalid(format!(
                        "RAM user '{user}' already holds two AccessKeys ({}); import the one in use with --value-file, or delete one",
                        keys.iter().map(|k| k.access_key_id.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
                let new = admin.create_access_key(user).await.map_err(target_error)?;
                let key = AccessKey {
                    id: new.access_key_id,
                    secret: new.access_key_secret,
                    generated: new.create_date,
                };
                Ok(Provisioned {
                    current: key.to_value(),
                    previous: None,
                    settings,
                    install: false,
                    made_on_target: true,
                })
            }
            Source::Import(value) => {
                crate::value::check_unique_keys(value.expose()).map_err(invalid)?;
                let mut key = AccessKey::from_value(&value).map_err(|e| invalid(e.to_string()))?;
                let listed = keys
                    .iter()
                    .find(|k| k.access_key_id == key.id)
                    .ok_or_else(|| {
                        invalid(format!(
                            "AccessKey {} is not one of RAM user '{user}''s keys; nothing stored",
                            key.id
                        ))
                    })?;
                client(target, &key)?.get_user(user).await.map_err(|e| {
                    invalid(format!(
                        "AccessKey {} does not sign for RAM user '{user}': {e}; nothing stored",
                        key.id
                    ))
                })?;
                if key.generated.is_empty() {
                    key.generated = listed.create_date.clone();
                }
                Ok(Provisioned {
                    current: key.to_value(),
                    previous: None,
                    settings,
                    install: false,
                    made_on_target: false,
                })
            }
        }
    }

    async fn check_credential(
        &self,
        target: &TargetContext,
        _kind: SecretKind,
        settings: &serde_json::Value,
        _current: &SecretValue,
        value: &SecretValue,
    ) -> Result<(), SetupError> {
        let settings = RamSettings::from_json(settings)?;
        let key = AccessKey::from_value(value).map_err(|e| invalid(e.to_string()))?;
        client(target, &key)?
            .get_user(&settings.user)
            .await
            .map_err(|e| {
                invalid(format!(
                    "AccessKey {} does not sign for RAM user '{}': {e}",
                    key.id, settings.user
                ))
            })?;
        Ok(())
    }

    fn describe_secret(
        &self,
        _kind: SecretKind,
        settings: &serde_json::Value,
    ) -> Vec<(&'static str, String)> {
        RamSettings::from_json(settings)
            .map(|s| vec![("RAM user", s.user)])
            .unwrap_or_default()
    }

    /// One endpoint serves every cloud account: its RAM users are told apart by target.
    fn server_holds_accounts(&self) -> bool {
        false
    }

    /// The RAM user: its AccessKeys are what the secret rotates.
    fn accounts(
        &self,
        _kind: SecretKind,
        settings: &serde_json::Value,
        _values: &[&SecretValue],
    ) -> Vec<String> {
        RamSettings::from_json(settings)
            .map(|s| vec![s.user])
            .unwrap_or_default()
    }

    fn previous_stays_valid(&self, _kind: SecretKind) -> bool {
        true
    }

    async fn install(
        &self,
        _target: &TargetContext,
        _kind: SecretKind,
        _secret_name: &str,
        _version_id: &str,
        _provisioned: &Provisioned,
    ) -> Result<(), SetupError> {
        Ok(())
    }

    async fn discard(
        &self,
        target: &TargetContext,
        _kind: SecretKind,
        provisioned: &Provisioned,
    ) -> Result<(), SetupError> {
        let settings = RamSettings::from_json(&provisioned.settings)?;
        let key = AccessKey::from_value(&provisioned.current)?;
        admin_client(target)?
            .delete_access_key(&settings.user, &key.id)
            .await
            .map_err(|e| SetupError::Target(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_count_as_an_attempts_own_on_the_clouds_clock() {
        // Rotor's mark at 12:00:00.500; the cloud's clock 5 minutes ahead.
        let mark = epoch_seconds("2026-11-30T12:00:00Z").unwrap() * 1000 + 500;
        let ahead = Some(300_000 - 400);
        assert_eq!(
            made_since("2026-11-30T12:05:00Z", Some(mark), ahead),
            Made::Since
        );
        assert_eq!(
            made_since("2026-11-30T12:05:03Z", Some(mark), ahead),
            Made::Since
        );
        // Made by hand a few seconds before the attempt, on the cloud's clock.
        assert_eq!(
            made_since("2026-11-30T12:04:57Z", Some(mark), ahead),
            Made::Before
        );
        // Without the skew this key would have looked like the attempt's.
        assert_eq!(
            made_since("2026-11-30T12:04:57Z", Some(mark), Some(0)),
            Made::Since
        );
        // The cloud 5 minutes behind: the attempt's key is still found.
        let behind = Some(-300_000 - 400);
        assert_eq!(
            made_since("2026-11-30T11:55:00Z", Some(mark), behind),
            Made::Since
        );
        assert_eq!(
            made_since("2026-11-30T11:54:50Z", Some(mark), behind),
            Made::Before
        );
        // No mark (every attempt ended), no clock, no date: never the attempt's.
        assert_eq!(
            made_since("2026-11-30T12:05:00Z", None, ahead),
            Made::Before
        );
        assert_eq!(
            made_since("2026-11-30T12:05:00Z", Some(mark), None),
            Made::Unknown
        );
        assert_eq!(made_since("yesterday", Some(mark), ahead), Made::Unknown);
        assert!(Made::Before.note(ahead).contains("ahead of"));
        assert!(Made::Before.note(Some(500)).is_empty());
    }
}
