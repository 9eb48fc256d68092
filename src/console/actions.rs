//! What the secret page's buttons do, each a `POST` that passes the session, origin and CSRF
//! checks, then the user's rule for its KMS action on the secret, then the same store, engine
//! or `targets` call the CLI and API make, as `console:USER` in the audit log:
//! reveal (`GetSecretValue`, always audited as `secret.reveal`), rotation settings
//! (`UpdateSecretRotationPolicy`), rollback (`UpdateSecretVersionStage`), delete
//! (`DeleteSecret`) and restore (`RestoreSecret`). A refusal comes back on the page, next to
//! the field it is about.

use super::form::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::Deserialize;

use super::details::{render, Done, Extras};
use super::layout::secret_url;
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
    cron: String,
    #[serde(default)]
    window: String,
    #[serde(default)]
    jitter: String,
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
    admit_named(console, headers, &form.csrf, &form.name, action).await
}

/// [`admit`] for a form of another shape: its CSRF token and secret name.
pub(super) async fn admit_named(
    console: &Console,
    headers: &HeaderMap,
    csrf: &str,
    name: &str,
    action: Action,
) -> Result<(Active, SecretName), Response> {
    let active = session::require_change(console, headers, csrf).await?;
    let name = SecretName::parse(name).map_err(|_| super::layout::not_found())?;
    if !active.policy.allows(action, name.as_str()) {
        return Err(forbidden(action, name.as_str()));
    }
    Ok((active, name))
}

/// Back to the secret's page, announcing what was `done`.
pub(super) fn done(name: &SecretName, done: Done) -> Response {
    Redirect::to(&format!(
        "{}&notice={}",
        secret_url(name.as_str()),
        done.code()
    ))
    .into_response()
}

/// The secret's page again, with `extras` (errors next to their fields).
pub(super) async fn again(
    console: &Console,
    active: &Active,
    name: &SecretName,
    extras: Extras,
) -> Response {
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

/// `POST /console/secret/rotation`: an interval, a cron schedule with its window, or off, and a
/// jitter; each field read by the CLI's parsers (`rotor rotation set`'s `--interval`, `--cron`,
/// `--window`, `--jitter`) and checked against the type's bounds as the CLI checks them, a
/// refusal shown next to its field.
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
    let store = console.store_for(&active.user);
    let policy = match rotation_policy(&console, &store, &name, &form).await {
        Ok(policy) => policy,
        Err(errors) => {
            let extras = Extras {
                errors,
                typed: vec![
                    ("mode", form.mode.clone()),
                    ("interval", form.interval.clone()),
                    ("cron", form.cron.clone()),
                    ("window", form.window.clone()),
                    ("jitter", form.jitter.clone()),
                ],
                ..Extras::default()
            };
            return again(&console, &active, &name, extras).await;
        }
    };
    let field = schedule_field(&form.mode);
    match store.set_rotation(&name, policy).await {
        Ok(_) => {
            console.changed(&name);
            done(&name, Done::Rotation)
        }
        Err(e) => {
            again(
                &console,
                &active,
                &name,
                Extras::error(field, e.to_string()),
            )
            .await
        }
    }
}

/// The field a schedule's refusal is shown next to.
fn schedule_field(mode: &str) -> &'static str {
    match mode {
        "cron" => "cron",
        _ => "interval",
    }
}

/// The policy the rotation form asks for (`None`: off), or each refusal by field.
async fn rotation_policy(
    console: &Console,
    store: &crate::store::Store,
    name: &SecretName,
    form: &ActionForm,
) -> Result<Option<RotationPolicy>, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let duration = |field: &'static str, text: &str, errors: &mut Vec<_>| match text.trim() {
        "" => None,
        text => crate::model::parse_duration(text)
            .map_err(|e| errors.push((field, e.to_string())))
            .ok(),
    };
    let jitter = duration("jitter", &form.jitter, &mut errors);
    let schedule = match form.mode.as_str() {
        "disable" => return Ok(None),
        "interval" => {
            if !form.window.trim().is_empty() {
                errors.push((
                    "window",
                    "a window belongs to a cron schedule: an interval has no fire times to start within"
                        .to_owned(),
                ));
            }
            match form.interval.trim() {
                "" => {
                    errors.push(("interval", "give an interval, such as 7d".to_owned()));
                    None
                }
                text => duration("interval", text, &mut errors).map(RotationSchedule::Interval),
            }
        }
        "cron" => {
            let window = duration("window", &form.window, &mut errors);
            match RotationSchedule::cron(&form.cron, None) {
                Ok(RotationSchedule::Cron { expression, .. }) => {
                    Some(RotationSchedule::Cron { expression, window })
                }
                Ok(other) => Some(other),
                Err(e) => {
                    errors.push(("cron", e.to_string()));
                    None
                }
            }
        }
        _ => {
            errors.push((
                "mode",
                "choose an interval, a cron schedule or off".to_owned(),
            ));
            None
        }
    };
    let Some(schedule) = schedule.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let field = schedule_field(&form.mode);
    let info = store
        .describe(name)
        .await
        .map_err(|e| vec![("form", e.to_string())])?;
    // The schedule's bounds first (a cron expression without its window), then the window, then
    // the jitter: each refusal next to the field it is about; the store checks all again.
    let now = chrono::Utc::now();
    let bare = match &schedule {
        RotationSchedule::Cron { expression, .. } => RotationSchedule::Cron {
            expression: expression.clone(),
            window: None,
        },
        interval => interval.clone(),
    };
    bare.check_for(info.kind, now)
        .map_err(|e| vec![(field, e.to_string())])?;
    schedule
        .check_for(info.kind, now)
        .map_err(|e| vec![("window", e.to_string())])?;
    if let Some(j) = jitter {
        schedule
            .check_jitter(j)
            .map_err(|e| vec![("jitter", e.to_string())])?;
    }
    crate::engine::check_can_rotate(
        console.engine.registry(),
        name,
        info.kind,
        info.target.as_deref(),
    )
    .map_err(|e| vec![(field, e.to_string())])?;
    Ok(Some(RotationPolicy {
        schedule,
        jitter,
        rotate_now: false,
    }))
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
            done(&name, Done::RolledBack)
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
                // Said on this answer (what stays on the target is known only now).
                Some(at) => {
                    let extras = Extras {
                        notice: Some(format!(
                            "Deletion scheduled for {}; restore it until then.{left}",
                            crate::clock::format_ms(at)
                        )),
                        ..Extras::default()
                    };
                    render(&console, &active, &name, StatusCode::OK, extras).await
                }
                None => super::layout::page(
                    "Secret deleted",
                    Some(&active),
                    "secrets",
                    maud::html! {
                        p.notice role="status" { "Secret " (name.as_str()) " deleted, with every version." (left) }
                        p { a href="/console/secrets" { "Back to the secrets" } }
                    },
                ),
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
            done(&name, Done::Restored)
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
