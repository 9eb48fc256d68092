//! The API's actions, with KMS's parameter names and response shapes: `VersionStages:
//! {"VersionStage": [...]}`, `Tags: {"Tag": [...]}`, times as `2026-11-28T10:00:00Z`,
//! `RotationInterval` as `"604800s"`, pages as `PageNumber`/`PageSize`/`TotalCount`.
//!
//! [`run`] takes the call's [`Action`], parsed once from the request, checks the key's policy
//! for the secret it names before touching the store, and dispatches: [`reads`], [`writes`],
//! [`rotation`] (rotation and stages). Parameters are read by [`params`].

mod params;
mod reads;
mod rotation;
mod writes;

use acs_sign::verify::Verified;
use serde_json::{json, Value};

use self::params::{printable, Params};
use super::{Api, ApiError};
use crate::model::Stage;
use crate::policy::{Action, Policy};

type Answer = Result<Value, ApiError>;

/// The most secrets or versions one page holds.
const MAX_PAGE: usize = 100;

/// Runs a verified call of `action` (`None`: the call named no action this server knows).
pub async fn run(api: &Api, call: &Verified, action: Option<Action>, policy: &Policy) -> Answer {
    // The audit log names the AccessKey as the actor of what this call changes or reads.
    let api = &api.acting_as(&format!("api:{}", call.key_id));
    let p = Params::new(call)?;
    let Some(action) = action else {
        return Err(ApiError::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api {} is not found.", printable(&call.action)),
        ));
    };
    if action == Action::ListSecrets {
        if !policy.allows_any(action) {
            return Err(ApiError::forbidden());
        }
        return reads::list_secrets(api, &p, policy).await;
    }
    let name = p.secret_name()?;
    if !policy.allows(action, name.as_str()) {
        return Err(ApiError::forbidden());
    }
    let changed = match action {
        Action::GetSecretValue => return reads::get_secret_value(api, &p, &name).await,
        Action::DescribeSecret => return reads::describe_secret(api, &p, &name).await,
        Action::ListSecretVersionIds => return reads::list_version_ids(api, &p, &name).await,
        Action::ListSecrets => unreachable!("answered above"),
        Action::CreateSecret => writes::create_secret(api, &p, name.clone()).await,
        Action::PutSecretValue => writes::put_secret_value(api, &p, &name).await,
        Action::DeleteSecret => writes::delete_secret(api, &p, &name).await,
        Action::RestoreSecret => writes::restore_secret(api, &name).await,
        Action::UpdateSecretVersionStage => rotation::update_stage(api, &p, &name).await,
        Action::RotateSecret => rotation::rotate_secret(api, &name).await,
        Action::UpdateSecretRotationPolicy => rotation::rotation_policy(api, &p, &name).await,
    };
    // A change: later reads through this server see it at once.
    api.cache.forget(&name);
    changed
}

/// The secret's ARN as KMS shows it.
fn arn(name: &str) -> String {
    format!("acs:kms:rotor:local:secret/{name}")
}

/// `{"VersionStage": [...]}`.
fn stages_json(stages: &[Stage]) -> Value {
    json!({"VersionStage": stages.iter().map(Stage::as_str).collect::<Vec<_>>()})
}
