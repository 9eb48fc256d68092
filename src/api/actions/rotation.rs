//! Rotation and stages: `RotateSecret` (a rotation now, through the engine, refused beside one
//! in flight), `UpdateSecretRotationPolicy` (checked against what the secret's family can
//! rotate), `UpdateSecretVersionStage` (moving a stage between versions).

use serde_json::json;

use super::params::Params;
use super::{arn, Answer};
use crate::api::{Api, ApiError};
use crate::engine::Outcome;
use crate::model::{RotationPolicy, RotationSchedule, SecretName, Stage, VersionId};

/// `UpdateSecretVersionStage`: moves a stage to a version, or off one.
pub(super) async fn update_stage(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
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

/// `RotateSecret`: rotates now through the engine and waits for the result.
pub(super) async fn rotate_secret(api: &Api, name: &SecretName) -> Answer {
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

/// `UpdateSecretRotationPolicy`: turns automatic rotation on (with an interval) or off.
pub(super) async fn rotation_policy(api: &Api, p: &Params<'_>, name: &SecretName) -> Answer {
    let enable = p
        .bool("EnableAutomaticRotation")?
        .ok_or_else(|| ApiError::missing("EnableAutomaticRotation"))?;
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
