//! One secret's page: its metadata and rotation state, its versions with their stages (a
//! value revealed only after a click on its button, hidden again by the page after
//! [`REVEAL_SECONDS`]), rotate now with its live progress, the rotation settings, rollback,
//! deletion and restore (each shown only when the user's rules allow it), and the rotation
//! history from the audit log. The actions themselves are in [`super::actions`].

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use rotators::SecretType;
use serde::Deserialize;

use super::layout::{self, csrf_field, rotation_badge, time};
use super::session::Active;
use super::{forbidden, session, Console};
use crate::model::{fmt_duration, RotationSchedule, SecretName, Stage};
use crate::policy::Action;
use crate::store::{AuditQuery, SecretInfo, VersionInfo};

/// How long a revealed value stays on the page.
pub const REVEAL_SECONDS: u32 = 30;
/// Rotation history records shown.
const HISTORY: i64 = 50;

/// `?name=…&run=…&notice=…`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct DetailsQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    notice: Option<String>,
}

/// What a page shows beside the secret: a notice after a change, errors by field, a value
/// revealed, a rotation started here.
#[derive(Default)]
pub(super) struct Extras {
    /// A notice made by the server for this answer.
    pub notice: Option<String>,
    /// The change just made, named by a redirect's `notice=` code: its notice is written from
    /// the secret as the store has it now.
    pub done: Option<Done>,
    /// Field name and message.
    pub errors: Vec<(&'static str, String)>,
    /// Version id and the value's text.
    pub revealed: Option<(String, String)>,
    pub run: Option<String>,
    /// Values a refused form sent, by field: shown again in place of the stored ones.
    pub typed: Vec<(&'static str, String)>,
}

impl Extras {
    /// A page with one error next to `field`.
    pub fn error(field: &'static str, message: impl Into<String>) -> Extras {
        Extras {
            errors: vec![(field, message.into())],
            ..Extras::default()
        }
    }

    /// What the refused form held in `field`, else `stored`.
    fn typed_or(&self, field: &str, stored: String) -> String {
        self.typed
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(stored, |(_, v)| v.clone())
    }

    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// The changes a redirect back to the secret's page may announce (`notice=CODE`): a fixed
/// set, so that a link cannot make the console show words of its author's choosing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Done {
    Created,
    Put,
    Stages,
    Rotation,
    RolledBack,
    Restored,
}

impl Done {
    const ALL: [(Done, &'static str); 6] = [
        (Done::Created, "created"),
        (Done::Put, "put"),
        (Done::Stages, "stages"),
        (Done::Rotation, "rotation"),
        (Done::RolledBack, "rolled-back"),
        (Done::Restored, "restored"),
    ];

    /// The code in the URL.
    pub fn code(self) -> &'static str {
        Done::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map_or("", |(_, c)| c)
    }

    fn parse(code: &str) -> Option<Done> {
        Done::ALL.iter().find(|(_, c)| *c == code).map(|(d, _)| *d)
    }

    /// The notice, from the secret as it is now.
    fn text(self, info: &SecretInfo, versions: Option<&[VersionInfo]>) -> String {
        let current = versions
            .and_then(|v| {
                v.iter()
                    .find(|v| v.version_stages.contains(&Stage::Current))
            })
            .map(|v| v.version_id.to_string())
            .unwrap_or_else(|| "—".into());
        match self {
            Done::Created => format!("Created: version {current} is ACSCurrent."),
            Done::Put => format!("New version stored: version {current} is ACSCurrent."),
            Done::Stages => format!("Stages moved: version {current} is ACSCurrent."),
            Done::Rotation => match info.next_rotation_at {
                Some(at) => format!(
                    "Rotation settings saved: {}; next rotation at {}.",
                    info.rotation_summary(),
                    crate::clock::format_ms(at)
                ),
                None => "Automatic rotation turned off.".into(),
            },
            Done::RolledBack => "Rolled back: the ACSPrevious version is ACSCurrent again.".into(),
            Done::Restored => "Restored: the scheduled deletion is cancelled.".into(),
        }
    }
}

/// `GET /console/secret?name=…`.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<DetailsQuery>,
) -> Response {
    let active = match session::require(&console, &headers).await {
        Ok(a) => a,
        Err(login) => return login,
    };
    // Names as the API takes them: a target's admin secret (`acs/…`) is not the console's.
    let Ok(name) = SecretName::parse(&q.name) else {
        return layout::not_found();
    };
    let extras = Extras {
        // Only a notice of the fixed set: the query names one, never its text.
        done: q.notice.as_deref().and_then(Done::parse),
        // Only a run id of this console's form is kept (it goes into an attribute and a URL).
        run: q
            .run
            .filter(|r| r.len() == 32 && r.bytes().all(|b| b.is_ascii_hexdigit())),
        ..Extras::default()
    };
    render(&console, &active, &name, StatusCode::OK, extras).await
}

/// The page of `name` as `active` may see it, with `extras`.
pub(super) async fn render(
    console: &Console,
    active: &Active,
    name: &SecretName,
    status: StatusCode,
    extras: Extras,
) -> Response {
    let allows = |action| active.policy.allows(action, name.as_str());
    if !allows(Action::DescribeSecret) {
        return forbidden(Action::DescribeSecret, name.as_str());
    }
    let info = match console.store.describe(name).await {
        Ok(info) => info,
        Err(crate::Error::NotFound(m)) => {
            return layout::message(StatusCode::NOT_FOUND, "Not found", &m)
        }
        Err(e) => {
            return layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                &e.to_string(),
            )
        }
    };
    let versions = if allows(Action::ListSecretVersionIds) {
        Some(
            console
                .store
                .versions(name)
                .await
                .map_err(|e| e.to_string()),
        )
    } else {
        None
    };
    let history = console
        .store
        .audit_log(&AuditQuery {
            secret: Some(name.as_str().to_owned()),
            action: Some("rotation".into()),
            limit: Some(HISTORY),
            ..AuditQuery::default()
        })
        .await
        .unwrap_or_default();
    let listed = versions.as_ref().and_then(|v| v.as_deref().ok());
    let notice = extras
        .notice
        .clone()
        .or_else(|| extras.done.map(|d| d.text(&info, listed)));
    let body = html! {
        @if let Some(n) = &notice { p.notice role="status" { (n) } }
        @for (field, e) in &extras.errors {
            @if *field == "form" { p.error role="alert" { (e) } }
        }
        (summary(&info))
        (actions(active, &info, listed, &extras))
        section {
            h2 { "Versions" }
            @match &versions {
                Some(Ok(v)) => { (versions_table(active, &info, v, &extras)) }
                Some(Err(e)) => { p.error { (e) } }
                None => { p { "Your rules do not allow listing this secret's versions." } }
            }
        }
        section {
            h2 { "Rotation history" }
            table.history {
                thead { tr { th { "Time" } th { "Who" } th { "Step" } th { "Version" } th { "Outcome" } th { "Detail" } } }
                tbody {
                    @for r in history.iter().rev() {
                        tr data-action=(r.action) data-outcome=(r.outcome) {
                            td { (r.time) } td { (r.actor) } td { (r.action) }
                            td { (r.version.as_deref().unwrap_or("")) }
                            td { (r.outcome) } td { (r.detail.as_deref().unwrap_or("")) }
                        }
                    }
                    @if history.is_empty() { tr { td colspan="6" { "No rotations yet." } } }
                }
            }
        }
    };
    layout::page_with(status, name.as_str(), Some(active), "secrets", body)
}

fn summary(info: &SecretInfo) -> Markup {
    html! {
        dl.summary {
            dt { "Type" } dd #kind { (layout::kind_text(info)) }
            dt { "Description" } dd #description { (info.description) }
            dt { "Key" } dd { (info.key_name) }
            dt { "Target" } dd { (info.target.as_deref().unwrap_or("—")) }
            dt { "Tags" } dd.tags { @for t in &info.tags { span.tag { (t.tag_key) "=" (t.tag_value) } " " } }
            dt { "Created" } dd { (time(Some(info.created_at))) }
            dt { "Updated" } dd { (time(Some(info.updated_at))) }
            dt { "Rotation" } dd #rotation { (rotation_badge(info)) }
            dt { "Next rotation" } dd { (time(info.next_rotation_at)) }
            dt { "Last rotation" } dd { (time(info.last_rotation_at)) }
            dt { "Last result" } dd #last-result { (super::secrets::last_result(info)) }
            @if let Some(step) = &info.rotation_step {
                dt { "Step in flight" } dd { (step) }
            }
            @if info.target_holds_pending {
                dt { "Target holds" } dd.failed { "the ACSPending credential (rotate again, or re-import the credential in use)" }
            }
            @if let Some(at) = info.planned_delete_at {
                dt { "Deleted at" } dd.failed { (time(Some(at))) " (restorable until then)" }
            }
        }
    }
}

fn field_error(extras: &Extras, field: &str) -> Markup {
    html! {
        @if let Some(e) = extras.error_for(field) { span.field-error role="alert" data-field=(field) { (e) } }
    }
}

fn actions(
    active: &Active,
    info: &SecretInfo,
    versions: Option<&[VersionInfo]>,
    extras: &Extras,
) -> Markup {
    let name = info.name.as_str();
    let allows = |action| active.policy.allows(action, name);
    let managed = info.kind.ty != SecretType::Generic;
    let live = info.planned_delete_at.is_none();
    let (interval, cron, window) = match &info.rotation {
        Some(RotationSchedule::Interval(d)) => (fmt_duration(*d), String::new(), String::new()),
        Some(RotationSchedule::Cron { expression, window }) => (
            String::new(),
            expression.clone(),
            window.map(fmt_duration).unwrap_or_default(),
        ),
        None => Default::default(),
    };
    let jitter = info.rotation_jitter.map(fmt_duration).unwrap_or_default();
    let mode = match &info.rotation {
        Some(RotationSchedule::Interval(_)) => "interval",
        Some(RotationSchedule::Cron { .. }) => "cron",
        None => "disable",
    };
    let [mode, interval, cron, window, jitter] = [
        ("mode", mode.to_owned()),
        ("interval", interval),
        ("cron", cron),
        ("window", window),
        ("jitter", jitter),
    ]
    .map(|(field, stored)| extras.typed_or(field, stored));
    html! {
        section.actions {
            h2 { "Actions" }
            @if managed && live && allows(Action::RotateSecret) {
                form.inline method="post" action="/console/secret/rotate" {
                    (csrf_field(active))
                    input type="hidden" name="name" value=(name);
                    button #rotate-now type="submit" { "Rotate now" }
                    (field_error(extras, "rotate"))
                }
            }
            @if let Some(run) = &extras.run {
                div #progress data-events=(format!("/console/runs/{run}/events")) data-state="running" {
                    ol.steps {
                        @for step in ["create", "set", "test", "finish"] {
                            li data-step=(step) class="pending" { (step) }
                        }
                    }
                    p.outcome role="status" { "Rotating…" }
                    a.reload href=(layout::secret_url(name)) hidden { "Show the new versions" }
                }
            }
            @if managed && live && allows(Action::UpdateSecretRotationPolicy) {
                form.panel method="post" action="/console/secret/rotation" {
                    (csrf_field(active))
                    input type="hidden" name="name" value=(name);
                    h3 { "Automatic rotation" }
                    (field_error(extras, "mode"))
                    label.check { input type="radio" name="mode" value="interval" checked[mode == "interval"]; "Every" }
                    label { "Interval (e.g. 7d, 12h)" input name="interval" value=(interval) maxlength="40"; (field_error(extras, "interval")) }
                    label.check { input type="radio" name="mode" value="cron" checked[mode == "cron"]; "At cron times (UTC)" }
                    label { "Cron (minute hour day month weekday)" input name="cron" value=(cron) maxlength="120"; (field_error(extras, "cron")) }
                    label { "Window (how long after a fire time a rotation may start, e.g. 1h)" input name="window" value=(window) maxlength="40"; (field_error(extras, "window")) }
                    label.check { input type="radio" name="mode" value="disable" checked[mode == "disable"]; "Off" }
                    label { "Jitter (start up to this much later, e.g. 10m)" input name="jitter" value=(jitter) maxlength="40"; (field_error(extras, "jitter")) }
                    button type="submit" { "Save rotation settings" }
                }
            }
            @if managed && live && allows(Action::UpdateSecretVersionStage) {
                form.inline method="post" action="/console/secret/rollback" data-confirm="Move ACSCurrent back to the ACSPrevious version?" {
                    (csrf_field(active))
                    input type="hidden" name="name" value=(name);
                    button type="submit" { "Roll back to ACSPrevious" }
                    (field_error(extras, "rollback"))
                }
            }
            @if !managed && live {
                (generic_versions(active, info, versions.unwrap_or_default(), extras))
            }
            @if live && allows(Action::DeleteSecret) {
                form.panel method="post" action="/console/secret/delete" data-confirm="Delete this secret?" {
                    (csrf_field(active))
                    input type="hidden" name="name" value=(name);
                    h3 { "Delete" }
                    label { "Recovery window (days, 7–30)" input name="days" type="number" min="7" max="30" value="30"; (field_error(extras, "days")) }
                    label.check { input type="checkbox" name="force"; "Delete now, with every version (cannot be undone)" }
                    button.danger type="submit" { "Delete secret" }
                }
            }
            @if !live && allows(Action::RestoreSecret) {
                form.inline method="post" action="/console/secret/restore" {
                    (csrf_field(active))
                    input type="hidden" name="name" value=(name);
                    button #restore type="submit" { "Restore" }
                }
            }
        }
    }
}

/// A Generic secret's own version changes: a new version, stages moved, roll back.
fn generic_versions(
    active: &Active,
    info: &SecretInfo,
    versions: &[VersionInfo],
    extras: &Extras,
) -> Markup {
    let name = info.name.as_str();
    let allows = |action| active.policy.allows(action, name);
    let previous = versions
        .iter()
        .find(|v| v.version_stages.contains(&Stage::Previous));
    html! {
        @if allows(Action::PutSecretValue) {
            form.panel #put-value method="post" action="/console/secret/put" {
                (csrf_field(active))
                input type="hidden" name="name" value=(name);
                h3 { "New version" }
                label { "Value" textarea name="value" rows="3" maxlength="65536" autocomplete="off" {} (field_error(extras, "value")) }
                label { "Version id (optional)" input name="version_id" maxlength="64"; (field_error(extras, "version_id")) }
                button type="submit" { "Store new version" }
            }
        }
        @if allows(Action::UpdateSecretVersionStage) {
            @if let Some(previous) = previous {
                form.inline method="post" action="/console/secret/stage" data-confirm="Move ACSCurrent back to the ACSPrevious version?" {
                    (csrf_field(active))
                    input type="hidden" name="name" value=(name);
                    input type="hidden" name="stage" value="ACSCurrent";
                    input type="hidden" name="move_to" value=(previous.version_id.as_str());
                    button #generic-rollback type="submit" { "Roll back to ACSPrevious" }
                }
            }
            form.panel #move-stage method="post" action="/console/secret/stage" {
                (csrf_field(active))
                input type="hidden" name="name" value=(name);
                h3 { "Stages" }
                label { "Stage (ACSCurrent, or a custom one)" input name="stage" value="ACSCurrent" maxlength="64"; (field_error(extras, "stage")) }
                label { "Move to version"
                    select name="move_to" {
                        option value="" { "—" }
                        @for v in versions { option value=(v.version_id.as_str()) { (v.version_id.as_str()) } }
                    }
                    (field_error(extras, "move_to"))
                }
                label { "Remove from version"
                    select name="remove_from" {
                        option value="" { "—" }
                        @for v in versions { option value=(v.version_id.as_str()) { (v.version_id.as_str()) } }
                    }
                    (field_error(extras, "remove_from"))
                }
                button type="submit" { "Move stage" }
            }
        }
    }
}

fn versions_table(
    active: &Active,
    info: &SecretInfo,
    versions: &[VersionInfo],
    extras: &Extras,
) -> Markup {
    let reveal = active
        .policy
        .allows(Action::GetSecretValue, info.name.as_str())
        && info.planned_delete_at.is_none();
    html! {
        table.versions {
            thead { tr { th { "Version" } th { "Stages" } th { "Created" } th { "Value" } } }
            tbody {
                @for v in versions {
                    tr data-version=(v.version_id.as_str()) {
                        td { (v.version_id.as_str()) }
                        td.stages { @for s in &v.version_stages { span.stage { (s.as_str()) } " " } }
                        td { (time(Some(v.create_time))) }
                        td {
                            @match &extras.revealed {
                                Some((id, text)) if id == v.version_id.as_str() => {
                                    pre.revealed data-hide-after=(REVEAL_SECONDS) { (text) }
                                }
                                _ => {
                                    @if reveal {
                                        form.inline method="post" action="/console/secret/reveal" {
                                            (csrf_field(active))
                                            input type="hidden" name="name" value=(info.name.as_str());
                                            input type="hidden" name="version" value=(v.version_id.as_str());
                                            button.reveal type="submit" { "Reveal" }
                                        }
                                    } @else { "hidden" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
