//! What the secret page's buttons do, each a `POST` that passes the session, origin and CSRF
//! checks, then the user's rule for its KMS action on the secret, then the same store, engine
//! or `targets` call the CLI and API make, as `console:USER` in the audit log:
//! reveal (`GetSecretValue`, always audited as `secret.reveal`), rotation settings
//! (`UpdateSecretRotationPolicy`), rollback (`UpdateSecretVersionStage`), delete
//! (`DeleteSecret`) and restore (`RestoreSecret`). A refusal comes back on the page, next to
//! the field it is about.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::Engine as _;
use serde::Deserialize;

use super::details::{render, Extras};
use super::layout::{encode, secret_url};
use super::session::{self, Active};
use super::{forbidden, Console};
use crate::model::{RotationPolicy, RotationSchedule, SecretName, VersionId};
use crate::policy::Action;
use crate::store::{DeleteMode, Selector, RECOVERY_DAYS};

/// Every action's form: the CSRF token, the secret, and what the action reads.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default, rename = "_csrf")]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    force: Option<String>,
}

/// The checks every action passes: session, origin, CSRF, a secret name, the user's rule.
pub(super) async fn admit(
    console: &Console,
    headers: &HeaderMap,
    form: &ActionForm,
    action: Action,
) -> Result<(Active, SecretName), Response> {
    let active = session::require_change(console, headers, &form.csrf).await?;
    let name = SecretName::parse(&form.name).map_err(|_| super::layout::not_found())?;
    if !active.policy.allows(action, name.as_str()) {
        return Err(forbidden(action, name.as_str()));
    }
    Ok((active, name))
}

/// Back to the secret's page with a notice.
fn done(name: &SecretName, notice: &str) -> Response {
    Redirect::to(&format!(
        "{}&notice={}",
        secret_url(name.as_str()),
        encode(notice)
    ))
    .into_response()
}

/// The secret's page again, with `extras` (errors next to their fields).
async fn again(console: &Console, active: &Active, name: &SecretName, extras: Extras) -> Response {
    render(
        console,
        active,
        name,
        StatusCode::UNPROCESSABLE_ENTITY,
        extras,
    )
    .await
}

/// `POST /console/secret/reveal`: one version's value on the page, audited.
pub(super) async fn reveal(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let (active, name) = match admit(&console, &headers, &form, Action::GetSecretValue).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let Ok(version) = VersionId::parse(&form.version) else {
        return again(
            &console,
            &active,
            &name,
            Extras::error("form", "No such version."),
        )
        .await;
    };
    let store = console.store_for(&active.user);
    let opened = match store
        .get_sealed(&name, &Selector::Version(version.clone()))
        .await
    {
        Ok(sealed) => sealed.open(),
        Err(e) => Err(e),
    };
    let value = match opened {
        Ok(v) => v.value,
        Err(e) => {
            return again(
                &console,
                &active,
                &name,
                Extras::error("form", e.to_string()),
            )
            .await
        }
    };
    if let Err(e) = store
        .record_console_event(
            "secret.reveal",
            Some(name.as_str()),
            Some(version.as_str()),
            "ok",
            None,
        )
        .await
    {
        // Never shown unless its showing is on record.
        return again(
            &console,
            &active,
            &name,
            Extras::error("form", e.to_string()),
        )
        .await;
    }
    let text = match value.as_text() {
        Some(t) => t.to_owned(),
        None => format!(
            "(binary, {} bytes, base64) {}",
            value.len(),
            base64::engine::general_purpose::STANDARD.encode(value.expose())
        ),
    };
    let extras = Extras {
        revealed: Some((version.as_str().to_owned(), text)),
        ..Extras::default()
    };
    render(&console, &active, &name, StatusCode::OK, extras).await
}

/// `POST /console/secret/rotation`: an interval, or off; the type's bounds as the CLI's.
pub(super) async fn rotation_settings(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let (active, name) = match admit(
        &console,
        &headers,
        &form,
        Action::UpdateSecretRotationPolicy,
    )
    .await
    {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let policy = if form.mode == "disable" {
        None
    } else if form.mode != "interval" {
        return again(
            &console,
            &active,
            &name,
            Extras::error("mode", "choose Every (an interval) or Off"),
        )
        .await;
    } else {
        let interval = match crate::model::parse_duration(&form.interval) {
            Ok(d) => d,
            Err(e) => {
                return again(
                    &console,
                    &active,
                    &name,
                    Extras::error("interval", e.to_string()),
                )
                .await
            }
        };
        Some(RotationPolicy {
            schedule: RotationSchedule::Interval(interval),
            jitter: None,
            rotate_now: false,
        })
    };
    let store = console.store_for(&active.user);
    if policy.is_some() {
        let checked = match store.describe(&name).await {
            Ok(info) => crate::engine::check_can_rotate(
                console.engine.registry(),
                &name,
                info.kind,
                info.target.as_deref(),
            ),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            return again(
                &console,
                &active,
                &name,
                Extras::error("interval", e.to_string()),
            )
            .await;
        }
    }
    match store.set_rotation(&name, policy).await {
        Ok(info) => {
            console.changed(&name);
            let notice = match info.next_rotation_at {
                Some(at) => format!(
                    "Rotation settings saved: {}; next rotation at {}.",
                    info.rotation_summary(),
                    crate::clock::format_ms(at)
                ),
                None => "Automatic rotation turned off.".into(),
            };
            done(&name, &notice)
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error("interval", e.to_string()),
            )
            .await
        }
    }
}

/// `POST /console/secret/rollback`: `ACSCurrent` back to `ACSPrevious`, checked by the family.
pub(super) async fn rollback(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let (active, name) =
        match admit(&console, &headers, &form, Action::UpdateSecretVersionStage).await {
            Ok(ok) => ok,
            Err(refused) => return refused,
        };
    let store = console.store_for(&active.user);
    match crate::targets::rollback(&store, console.engine.registry(), &name).await {
        Ok(_) => {
            console.changed(&name);
            done(
                &name,
                "Rolled back: the ACSPrevious version is ACSCurrent again.",
            )
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error("rollback", e.to_string()),
            )
            .await
        }
    }
}

/// `POST /console/secret/delete`: after a recovery window (7–30 days), or now.
pub(super) async fn delete(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let (active, name) = match admit(&console, &headers, &form, Action::DeleteSecret).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let mode = if form.force.is_some() {
        DeleteMode::Force
    } else {
        match form.days.trim().parse::<u32>() {
            Ok(days) if RECOVERY_DAYS.contains(&days) => DeleteMode::RecoveryWindow(days),
            _ => {
                let message = "the recovery window is 7 to 30 days";
                return again(&console, &active, &name, Extras::error("days", message)).await;
            }
        }
    };
    let store = console.store_for(&active.user);
    match crate::targets::delete_secret(&store, console.engine.registry(), &name, mode, false).await
    {
        Ok(deletion) => {
            console.changed(&name);
            let left = if deletion.left.is_empty() {
                String::new()
            } else {
                format!(" Left on its target: {}.", deletion.left.join(", "))
            };
            match deletion.planned {
                Some(at) => done(
                    &name,
                    &format!(
                        "Deletion scheduled for {}; restore it until then.{left}",
                        crate::clock::format_ms(at)
                    ),
                ),
                None => Redirect::to(&format!(
                    "/console/secrets?notice={}",
                    encode(&format!("Secret {name} deleted.{left}"))
                ))
                .into_response(),
            }
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error("days", e.to_string()),
            )
            .await
        }
    }
}

/// `POST /console/secret/restore`: cancels a scheduled deletion.
pub(super) async fn restore(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let (active, name) = match admit(&console, &headers, &form, Action::RestoreSecret).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    match console.store_for(&active.user).restore(&name).await {
        Ok(_) => {
            console.changed(&name);
            done(&name, "Restored: the scheduled deletion is cancelled.")
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error("form", e.to_string()),
            )
            .await
        }
    }
}
