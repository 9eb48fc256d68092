//! The writes: `CreateSecret` (Generic secrets only: the others are created on their target with
//! the CLI), `PutSecretValue` (idempotent for the same version id and data), `DeleteSecret`
//! (a recovery window, or forced), `RestoreSecret`.

use base64::Engine as _;
use rotators::{SecretKind, SecretType, SecretValue};
use serde_json::{json, Value};

use super::params::{printable, Params};
use super::{arn, stages_json, Answer};
use crate::api::{Api, ApiError};
use crate::clock::format_ms;
use crate::model::{SecretName, Stage, Tag, VersionId};
use crate::store::{DeleteMode, NewSecret, PutValue, DEFAULT_RECOVERY_DAYS, RECOVERY_DAYS};

/// `CreateSecret`: a Generic secret with its first version.
pub(super) async fn create_secret(api: &Api, p: &Params<'_>, name: SecretName) -> Answer {
    let ty = p.opt("SecretType").unwrap_or("Generic");
    if ty != "Generic" {
        return Err(ApiError::invalid(format!(
            "This server creates Generic secrets; create {} secrets on their target with: rotor secret create",
            printable(ty)
        )));
    }
    if p.bool("EnableAutomaticRotation")? == Some(true) {
        return Err(ApiError::invalid("Generic secrets do not rotate."));
    }
    let mut new = NewSecret::new(
        name,
        SecretKind::new(SecretType::Generic, None).expect("Generic is a kind"),
        value_of(p)?,
    );
    new.version_id = version_id(p)?;
    new.description = p.opt("Description").unwrap_or_default().to_owned();
    new.key = p.opt("EncryptionKeyId").map(str::to_owned);
    if let Some(tags) = p.opt("Tags") {
        new.tags = parse_tags(tags)?;
    }
    let done = api.store.create_secret(new).await?;
    Ok(json!({
        "Arn": arn(done.secret_name.as_str()),
        "SecretName": done.secret_name,
        "SecretType": "Generic",
        "VersionId": done.version_id.as_str(),
        "AutomaticRotation": "Invalid",
    }))
}

/// `[{"TagKey":"k","TagValue":"v"}, …]`.
fn parse_tags(text: &str) -> Result<Vec<Tag>, ApiError> {
    let bad = || ApiError::invalid(r#"Tags must be a JSON list of {"TagKey","TagValue"}."#);
    let list: Vec<Value> = serde_json::from_str(text).map_err(|_| bad())?;
    list.iter()
        .map(|t| {
            let k = t["TagKey"].as_str().ok_or_else(bad)?;
            let v = t["TagValue"].as_str().ok_or_else(bad)?;
            Tag::new(k, v).map_err(|e| ApiError::invalid(e.to_string()))
        })
        .collect()
}

fn value_of(p: &Params<'_>) -> Result<SecretValue, ApiError> {
    let data = p.req("SecretData")?;
    match p.opt("SecretDataType").unwrap_or("text") {
        t if t.eq_ignore_ascii_case("text") => Ok(SecretValue::from(data)),
        t if t.eq_ignore_ascii_case("binary") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map(SecretValue::new)
            .map_err(|_| ApiError::invalid("SecretData of SecretDataType binary must be base64.")),
        _ => Err(ApiError::invalid("SecretDataType must be text or binary.")),
    }
}

fn version_id(p: &Params<'_>) -> Result<Option<VersionId>, ApiError> {
    p.opt("VersionId")
        .map(|v| VersionId::parse(v).map_err(|e| ApiError::invalid(e.to_string())))
        .transpose()
}

/// `PutSecretValue`: a new version (the same id and data again is the same version).
pub(super) async fn put_secret_value(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let stages = match p.opt("VersionStages") {
        None => vec![],
        Some(text) => {
            let list: Vec<String> = serde_json::from_str(text).map_err(|_| {
                ApiError::invalid(r#"VersionStages must be a JSON list, e.g. ["ACSCurrent"]."#)
            })?;
            list.iter()
                .map(|s| {
                    s.parse()
                        .map_err(|e: crate::Error| ApiError::invalid(e.to_string()))
                })
                .collect::<Result<Vec<Stage>, _>>()?
        }
    };
    let put = PutValue {
        value: value_of(p)?,
        version_id: Some(
            VersionId::parse(p.req("VersionId")?).map_err(|e| ApiError::invalid(e.to_string()))?,
        ),
        stages,
    };
    let done = api.store.put_value(name, put).await?;
    Ok(json!({
        "SecretName": done.secret_name,
        "VersionId": done.version_id.as_str(),
        "VersionStages": stages_json(&done.version_stages),
    }))
}

/// `DeleteSecret`: scheduled with a recovery window, or at once when forced.
pub(super) async fn delete_secret(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let mode = if p.bool("ForceDeleteWithoutRecovery")?.unwrap_or(false) {
        DeleteMode::Force
    } else {
        let days = p.number("RecoveryWindowInDays", DEFAULT_RECOVERY_DAYS, RECOVERY_DAYS)?;
        DeleteMode::RecoveryWindow(days)
    };
    let planned = api.store.delete(name, mode).await?;
    let mut out = json!({"SecretName": name});
    if let Some(at) = planned {
        out["PlannedDeleteTime"] = format_ms(at).into();
    }
    Ok(out)
}

/// `RestoreSecret`: cancels a scheduled deletion.
pub(super) async fn restore_secret(api: &Api, name: &SecretName) -> Answer {
    api.store.restore(name).await?;
    Ok(json!({"SecretName": name}))
}
