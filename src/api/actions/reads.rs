//! The reads: `GetSecretValue` (through the read cache), `DescribeSecret`, `ListSecrets`
//! (filtered by the key's policy and the request's `Filters`), `ListSecretVersionIds`. Reads
//! change nothing but the audit log's record of who read what.

use std::time::Duration;

use base64::Engine as _;
use rotators::SecretType;
use serde_json::{json, Value};

use super::params::{printable, Params};
use super::{arn, stages_json, Answer, MAX_PAGE};
use crate::api::{Api, ApiError};
use crate::clock::format_ms;
use crate::model::{RotationSchedule, SecretName, Stage, Tag, VersionId};
use crate::policy::{Action, Policy};
use crate::store::{SecretInfo, Selector};

/// `GetSecretValue`: a version by `VersionId` or `VersionStage` (default `ACSCurrent`), decrypted
/// from the read cache; rotation fields for managed secrets, `ExtendedConfig` when asked.
pub(super) async fn get_secret_value(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let selector = match (p.opt("VersionId"), p.opt("VersionStage")) {
        (Some(id), _) => {
            Selector::Version(VersionId::parse(id).map_err(|e| ApiError::invalid(e.to_string()))?)
        }
        (None, Some(stage)) => Selector::Stage(
            stage
                .parse()
                .map_err(|e: crate::Error| ApiError::invalid(e.to_string()))?,
        ),
        (None, None) => Selector::Stage(Stage::Current),
    };
    let want_stage = p.opt("VersionStage");
    let fetch_extended = p.bool("FetchExtendedConfig")?.unwrap_or(false);
    let version = api
        .cache
        .sealed(&api.store, name, &selector)
        .await?
        .open()?;
    api.store
        .record_read(name.as_str(), version.version_id.as_str())
        .await?;
    if let (Some(stage), Selector::Version(_)) = (want_stage, &selector) {
        if !version.stages.iter().any(|s| s.as_str() == stage) {
            return Err(ApiError::invalid(format!(
                "Version {} of secret {name} does not carry stage {}.",
                version.version_id,
                printable(stage)
            )));
        }
    }
    let (data, data_type) = match version.value.as_text() {
        Some(text) => (text.to_owned(), "text"),
        None => (
            base64::engine::general_purpose::STANDARD.encode(version.value.expose()),
            "binary",
        ),
    };
    let mut out = json!({
        "SecretName": name,
        "SecretType": version.kind.ty.as_str(),
        "SecretData": data,
        "SecretDataType": data_type,
        "VersionId": version.version_id.as_str(),
        "VersionStages": stages_json(&version.stages),
        "CreateTime": format_ms(version.created_at),
    });
    if version.kind.ty != SecretType::Generic || fetch_extended {
        let info = api.store.describe(name).await?;
        rotation_fields(&info, &mut out);
        if fetch_extended {
            out["ExtendedConfig"] = extended_config(&info).to_string().into();
        }
    }
    Ok(out)
}

/// What rotor knows of a managed secret's setup, as `ExtendedConfig` (never a credential).
fn extended_config(info: &SecretInfo) -> Value {
    let mut config = json!({"SecretSubType": info.kind.sub.map(|s| s.as_str())});
    if let Some(target) = &info.target {
        config["Target"] = target.clone().into();
    }
    config
}

/// `AutomaticRotation`, `RotationInterval`, `LastRotationDate`, `NextRotationDate` of a secret.
fn rotation_fields(info: &SecretInfo, out: &mut Value) {
    if info.kind.ty == SecretType::Generic {
        out["AutomaticRotation"] = "Invalid".into();
        return;
    }
    match &info.rotation {
        Some(schedule) => {
            out["AutomaticRotation"] = "Enabled".into();
            if let RotationSchedule::Interval(d) = schedule {
                out["RotationInterval"] = interval_text(*d).into();
            }
        }
        None => out["AutomaticRotation"] = "Disabled".into(),
    }
    if let Some(at) = info.last_rotation_at {
        out["LastRotationDate"] = format_ms(at).into();
    }
    if let Some(at) = info.next_rotation_at {
        out["NextRotationDate"] = format_ms(at).into();
    }
}

fn interval_text(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn secret_json(info: &SecretInfo, tags: bool) -> Value {
    let mut out = json!({
        "SecretName": info.name,
        "SecretType": info.kind.ty.as_str(),
        "CreateTime": format_ms(info.created_at),
        "UpdateTime": format_ms(info.updated_at),
    });
    if let Some(at) = info.planned_delete_at {
        out["PlannedDeleteTime"] = format_ms(at).into();
    }
    if tags {
        out["Tags"] = tags_json(&info.tags);
    }
    out
}

fn tags_json(tags: &[Tag]) -> Value {
    json!({"Tag": tags.iter().map(|t| json!({"TagKey": t.tag_key, "TagValue": t.tag_value})).collect::<Vec<_>>()})
}

/// `DescribeSecret`: a secret's metadata (tags when `FetchTags`), never its value.
pub(super) async fn describe_secret(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let info = api.store.describe(name).await?;
    let mut out = secret_json(&info, p.bool("FetchTags")?.unwrap_or(false));
    out["Arn"] = arn(name.as_str()).into();
    out["Description"] = info.description.clone().into();
    out["EncryptionKeyId"] = info.key_name.clone().into();
    rotation_fields(&info, &mut out);
    if info.kind.ty != SecretType::Generic {
        out["ExtendedConfig"] = extended_config(&info).to_string().into();
    }
    Ok(out)
}

/// One `Filters` entry: `{"Key": "SecretName", "Values": ["db"]}`.
struct Filter {
    key: String,
    values: Vec<String>,
}

fn parse_filters(text: &str) -> Result<Vec<Filter>, ApiError> {
    let bad = || {
        ApiError::invalid(
            r#"Filters must be a JSON list of {"Key","Values"} with Key SecretName, Description, TagKey, TagValue or SecretType."#,
        )
    };
    let list: Vec<Value> = serde_json::from_str(text).map_err(|_| bad())?;
    if list.len() > 10 {
        return Err(bad());
    }
    list.iter()
        .map(|f| {
            let key = f["Key"].as_str().ok_or_else(bad)?;
            if ![
                "SecretName",
                "Description",
                "TagKey",
                "TagValue",
                "SecretType",
            ]
            .contains(&key)
            {
                return Err(bad());
            }
            let values: Vec<String> = f["Values"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                .collect::<Result<_, _>>()?;
            if values.is_empty() || values.len() > 10 {
                return Err(bad());
            }
            Ok(Filter {
                key: key.to_owned(),
                values,
            })
        })
        .collect()
}

fn passes(info: &SecretInfo, filter: &Filter) -> bool {
    filter.values.iter().any(|v| match filter.key.as_str() {
        "SecretName" => info.name.as_str().contains(v.as_str()),
        "Description" => info.description.contains(v.as_str()),
        "TagKey" => info.tags.iter().any(|t| &t.tag_key == v),
        "TagValue" => info.tags.iter().any(|t| &t.tag_value == v),
        _ => info.kind.ty.as_str() == v,
    })
}

/// `ListSecrets`: the secrets the key's policy allows and the `Filters` pass, a page at a time.
pub(super) async fn list_secrets(api: &Api, p: &Params<'_>, policy: &Policy) -> Answer {
    let page = p.number("PageNumber", 1usize, 1..=1_000_000)?;
    let size = p.number("PageSize", 10, 1..=MAX_PAGE)?;
    let tags = p.bool("FetchTags")?.unwrap_or(false);
    let filters = p
        .opt("Filters")
        .map(parse_filters)
        .transpose()?
        .unwrap_or_default();
    let all = api.store.list(&[], false).await?;
    let visible: Vec<&SecretInfo> = all
        .iter()
        // Internal secrets (a target's admin credential, `acs/…`) are never the API's.
        .filter(|s| SecretName::parse(s.name.as_str()).is_ok())
        .filter(|s| policy.allows(Action::ListSecrets, s.name.as_str()))
        .filter(|s| filters.iter().all(|f| passes(s, f)))
        .collect();
    let shown: Vec<Value> = visible
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|s| secret_json(s, tags))
        .collect();
    Ok(json!({
        "PageNumber": page,
        "PageSize": size,
        "TotalCount": visible.len(),
        "SecretList": {"Secret": shown},
    }))
}

/// `ListSecretVersionIds`: versions with stages (all with `IncludeDeprecated`), a page at a time.
pub(super) async fn list_version_ids(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let page = p.number("PageNumber", 1usize, 1..=1_000_000)?;
    let size = p.number("PageSize", 10, 1..=MAX_PAGE)?;
    let deprecated = p.bool("IncludeDeprecated")?.unwrap_or(false);
    let versions = api.store.versions(name).await?;
    let listed: Vec<Value> = versions
        .iter()
        .filter(|v| deprecated || !v.version_stages.is_empty())
        .map(|v| {
            json!({
                "VersionId": v.version_id.as_str(),
                "CreateTime": format_ms(v.create_time),
                "VersionStages": stages_json(&v.version_stages),
            })
        })
        .collect();
    let total = listed.len();
    let shown: Vec<Value> = listed
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Ok(json!({
        "SecretName": name,
        "PageNumber": page,
        "PageSize": size,
        "TotalCount": total,
        "VersionIds": {"VersionId": shown},
    }))
}
