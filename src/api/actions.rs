//! The API's actions, with KMS's parameter names and response shapes: `VersionStages:
//! {"VersionStage": [...]}`, `Tags: {"Tag": [...]}`, times as `2026-11-28T10:00:00Z`,
//! `RotationInterval` as `"604800s"`, pages as `PageNumber`/`PageSize`/`TotalCount`.
//!
//! Parameters come from the query or a form body (already merged); each may appear once;
//! booleans are `true`/`false` in any case. Every action checks the key's policy for the secret
//! it names before touching the store.

use std::ops::RangeInclusive;
use std::time::Duration;

use acs_sign::verify::Verified;
use base64::Engine as _;
use rotators::{SecretKind, SecretType, SecretValue};
use serde_json::{json, Value};

use super::policy::{Policy, ACTIONS};
use super::{Api, ApiError};
use crate::clock::format_ms;
use crate::engine::Outcome;
use crate::model::{RotationPolicy, RotationSchedule, SecretName, Stage, Tag, VersionId};
use crate::store::{
    DeleteMode, NewSecret, PutValue, SecretInfo, Selector, DEFAULT_RECOVERY_DAYS, RECOVERY_DAYS,
};

type Answer = Result<Value, ApiError>;

/// The most secrets or versions one page holds.
const MAX_PAGE: usize = 100;

/// The call's parameters, each once.
struct Params<'a>(&'a [(String, String)]);

impl<'a> Params<'a> {
    fn new(call: &'a Verified) -> Result<Self, ApiError> {
        let mut names: Vec<&str> = call.params.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::invalid(format!(
                "The parameter {} is given more than once.",
                printable(w[0])
            )));
        }
        Ok(Params(&call.params))
    }

    fn opt(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn req(&self, name: &str) -> Result<&'a str, ApiError> {
        self.opt(name).ok_or_else(|| {
            ApiError::new(
                400,
                "MissingParameter",
                format!("The input parameter {name} that is mandatory for processing this request is not supplied."),
            )
        })
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(format!("{name} must be true or false."))),
        }
    }

    fn number<N>(&self, name: &str, default: N, range: RangeInclusive<N>) -> Result<N, ApiError>
    where
        N: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => match v.parse::<N>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(format!(
                    "{name} must be {} to {}.",
                    range.start(),
                    range.end()
                ))),
            },
        }
    }

    fn secret_name(&self) -> Result<SecretName, ApiError> {
        let name = self.req("SecretName")?;
        SecretName::parse(name).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

/// Text from a request, safe to echo in an error.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

fn arn(name: &str) -> String {
    format!("acs:kms:rotor:local:secret/{name}")
}

fn stages_json(stages: &[Stage]) -> Value {
    json!({"VersionStage": stages.iter().map(Stage::as_str).collect::<Vec<_>>()})
}

fn tags_json(tags: &[Tag]) -> Value {
    json!({"Tag": tags.iter().map(|t| json!({"TagKey": t.tag_key, "TagValue": t.tag_value})).collect::<Vec<_>>()})
}

fn interval_text(d: Duration) -> String {
    format!("{}s", d.as_secs())
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

fn allow(policy: &Policy, action: &str, secret: &str) -> Result<(), ApiError> {
    if policy.allows(action, secret) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// Runs a verified call.
pub async fn run(api: &Api, call: &Verified, policy: &Policy) -> Answer {
    // The audit log names the AccessKey as the actor of what this call changes or reads.
    let api = &api.acting_as(&format!("api:{}", call.key_id));
    let p = Params::new(call)?;
    let action = call.action.as_str();
    if !ACTIONS.contains(&action) {
        return Err(ApiError::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api {} is not found.", printable(action)),
        ));
    }
    if action == "ListSecrets" {
        if !policy.allows_any(action) {
            return Err(ApiError::forbidden());
        }
        return list_secrets(api, &p, policy).await;
    }
    let name = p.secret_name()?;
    allow(policy, action, name.as_str())?;
    if action != "GetSecretValue" && action != "DescribeSecret" && action != "ListSecretVersionIds"
    {
        // A change: later reads through this server see it at once.
        let result = change(api, action, &p, &name).await;
        api.forget(&name);
        return result;
    }
    match action {
        "GetSecretValue" => get_secret_value(api, &p, &name).await,
        "DescribeSecret" => describe_secret(api, &p, &name).await,
        _ => list_version_ids(api, &p, &name).await,
    }
}

async fn change(api: &Api, action: &str, p: &Params<'_>, name: &SecretName) -> Answer {
    let name = name.clone();
    match action {
        "CreateSecret" => create_secret(api, p, name).await,
        "PutSecretValue" => put_secret_value(api, p, &name).await,
        "UpdateSecretVersionStage" => update_stage(api, p, &name).await,
        "RotateSecret" => rotate_secret(api, &name).await,
        "UpdateSecretRotationPolicy" => rotation_policy(api, p, &name).await,
        "DeleteSecret" => delete_secret(api, p, &name).await,
        "RestoreSecret" => {
            api.store.restore(&name).await?;
            Ok(json!({"SecretName": name}))
        }
        _ => unreachable!("every action is listed"),
    }
}

async fn get_secret_value(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
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
    let version = api.sealed(name, &selector).await?.open()?;
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

async fn create_secret(api: &Api, p: &Params<'_>, name: SecretName) -> Answer {
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

async fn put_secret_value(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
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

async fn describe_secret(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
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

async fn list_secrets(api: &Api, p: &Params<'_>, policy: &Policy) -> Answer {
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
        .filter(|s| policy.allows("ListSecrets", s.name.as_str()))
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

async fn list_version_ids(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
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

async fn update_stage(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let stage: Stage = p
        .req("VersionStage")?
        .parse()
        .map_err(|e: crate::Error| ApiError::invalid(e.to_string()))?;
    let parse = |v: Option<&str>| {
        v.map(|v| VersionId::parse(v).map_err(|e| ApiError::invalid(e.to_string())))
            .transpose()
    };
    let to = parse(p.opt("MoveToVersion"))?;
    let from = parse(p.opt("RemoveFromVersion"))?;
    api.store
        .update_stage(name, &stage, to.as_ref(), from.as_ref())
        .await?;
    Ok(json!({"SecretName": name}))
}

async fn rotate_secret(api: &Api, name: &SecretName) -> Answer {
    match api
        .engine
        .rotate_now_for(name, api.store.actor(), &api.shutdown)
        .await?
    {
        Outcome::Rotated { version_id } => Ok(json!({
            "Arn": arn(name.as_str()),
            "SecretName": name,
            "VersionId": version_id.as_str(),
        })),
        Outcome::Retrying { error, .. } | Outcome::Failed { error, .. } => Err(ApiError::new(
            409,
            "Rejected.RotationFailed",
            format!("The rotation of secret {name} did not complete: {error}"),
        )),
        _ => Err(ApiError::new(
            409,
            "Rejected.ResourceConflict",
            format!("The rotation of secret {name} did not complete; try again."),
        )),
    }
}

async fn rotation_policy(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let enable = p.bool("EnableAutomaticRotation")?.ok_or_else(|| {
        ApiError::new(
            400,
            "MissingParameter",
            "The input parameter EnableAutomaticRotation that is mandatory for processing this request is not supplied.",
        )
    })?;
    let policy = if enable {
        let text = p.req("RotationInterval")?;
        let interval = humantime::parse_duration(text)
            .map_err(|_| ApiError::invalid("RotationInterval must be like 7d or 604800s."))?;
        Some(RotationPolicy {
            schedule: RotationSchedule::Interval(interval),
            jitter: None,
            rotate_now: false,
        })
    } else {
        None
    };
    if policy.is_some() {
        let info = api.store.describe(name).await?;
        crate::engine::check_can_rotate(
            api.engine.registry(),
            name,
            info.kind,
            info.target.as_deref(),
        )?;
    }
    api.store.set_rotation(name, policy).await?;
    Ok(json!({"SecretName": name}))
}

async fn delete_secret(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
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
