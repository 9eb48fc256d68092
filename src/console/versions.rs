//! What a Generic secret's page does to its versions, each a `POST` through the checks every
//! change passes ([`super::actions::admit`]) and then the store call `rotor secret put` and
//! `rotor secret stage` make, as `console:USER` in the audit log: a new version
//! (`PutSecretValue`: the value from a text area, an optional version id, `ACSCurrent` as the
//! CLI's default) and a stage moved or removed (`UpdateSecretVersionStage`; roll back is
//! `ACSCurrent` moved to the `ACSPrevious` version). Managed secrets change their versions by
//! rotation, import and their family's checked rollback instead ([`super::actions`]).

use super::form::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use rotators::SecretValue;
use serde::Deserialize;

use super::actions::{admit_named, again, done};
use super::details::{Done, Extras};
use super::Console;
use crate::model::{Stage, VersionId};
use crate::policy::Action;
use crate::store::PutValue;

/// The new-version form. No `Debug`: it holds a value.
#[derive(Default, Deserialize)]
pub(super) struct PutForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    version_id: String,
}

/// `POST /console/secret/put`: a new version, `ACSCurrent` (the old current `ACSPrevious`).
pub(super) async fn put(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<PutForm>,
) -> Response {
    let admitted = admit_named(
        &console,
        &headers,
        &form.csrf,
        &form.name,
        Action::PutSecretValue,
    )
    .await;
    let (active, name) = match admitted {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let version_id = match form.version_id.trim() {
        "" => None,
        text => match VersionId::parse(text) {
            Ok(v) => Some(v),
            Err(e) => {
                return again(
                    &console,
                    &active,
                    &name,
                    Extras::error("version_id", e.to_string()),
                )
                .await
            }
        },
    };
    let put = PutValue {
        value: SecretValue::from(form.value.as_str()),
        version_id,
        stages: vec![],
    };
    match console.store_for(&active.user).put_value(&name, put).await {
        Ok(_) => {
            console.changed(&name);
            done(&name, Done::Put)
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error("value", e.to_string()),
            )
            .await
        }
    }
}

/// The stage form: the stage, the version it moves to and/or the one it leaves.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StageForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    move_to: String,
    #[serde(default)]
    remove_from: String,
}

/// `POST /console/secret/stage`: `rotor secret stage NAME --stage S [--move-to V]
/// [--remove-from V]`.
pub(super) async fn stage(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<StageForm>,
) -> Response {
    let admitted = admit_named(
        &console,
        &headers,
        &form.csrf,
        &form.name,
        Action::UpdateSecretVersionStage,
    )
    .await;
    let (active, name) = match admitted {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let mut errors = Vec::new();
    let stage = form
        .stage
        .trim()
        .parse::<Stage>()
        .map_err(|e| errors.push(("stage", e.to_string())))
        .ok();
    let version = |field: &'static str, text: &str, errors: &mut Vec<_>| match text.trim() {
        "" => None,
        text => VersionId::parse(text)
            .map_err(|e| errors.push((field, e.to_string())))
            .ok(),
    };
    let move_to = version("move_to", &form.move_to, &mut errors);
    let remove_from = version("remove_from", &form.remove_from, &mut errors);
    let (Some(stage), true) = (stage, errors.is_empty()) else {
        let extras = Extras {
            errors,
            ..Extras::default()
        };
        return again(&console, &active, &name, extras).await;
    };
    let store = console.store_for(&active.user);
    match store
        .update_stage(&name, &stage, move_to.as_ref(), remove_from.as_ref())
        .await
    {
        Ok(_) => {
            console.changed(&name);
            done(&name, Done::Stages)
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error("stage", e.to_string()),
            )
            .await
        }
    }
}
