//! The Targets page (each target the user may see — its admin secret may be described — with
//! a button that runs `rotor target check` and shows its one-line result) and the Audit page
//! (the filters of `rotor audit`: secret, since, action, and a page size of at most
//! [`AUDIT_PAGE_MAX`]; older and newer pages by record id; the records about secrets the user
//! may describe, and, for a `*:*` user, every record).

use super::form::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{self, csrf_field};
use super::session::{self, Active};
use super::{is_admin, sees_target, Console};
use crate::policy::Action;
use crate::store::AuditQuery;

/// `GET /console/targets`.
pub(super) async fn targets(State(console): State<Console>, headers: HeaderMap) -> Response {
    let active = match session::require(&console, &headers).await {
        Ok(a) => a,
        Err(login) => return login,
    };
    targets_page(&console, &active, None).await
}

/// The check form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CheckForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /console/targets/check`: the family logs in as the target's admin.
pub(super) async fn check_target(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<CheckForm>,
) -> Response {
    let active = match session::require_change(&console, &headers, &form.csrf).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    if !sees_target(&active.policy, &form.name) {
        return super::forbidden(
            Action::DescribeSecret,
            &crate::store::admin_secret_name(&form.name),
        );
    }
    let result =
        crate::targets::check_target(&console.store, console.engine.registry(), &form.name).await;
    targets_page(&console, &active, Some((form.name, result))).await
}

async fn targets_page(
    console: &Console,
    active: &Active,
    checked: Option<(String, crate::Result<String>)>,
) -> Response {
    let targets = match console.store.list_targets().await {
        Ok(t) => t,
        Err(e) => {
            return layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                &e.to_string(),
            )
        }
    };
    let body = html! {
        table.targets {
            thead { tr { th { "Name" } th { "Kind" } th { "Address" } th { "Admin secret" } th { "Check" } } }
            tbody {
                @for t in targets.iter().filter(|t| sees_target(&active.policy, &t.name)) {
                    tr data-target=(t.name) {
                        td { (t.name) }
                        td { (t.kind) }
                        td { (crate::redact::target_url(&t.url)) }
                        td { (t.admin_secret.as_deref().unwrap_or("—")) }
                        td {
                            form.inline method="post" action="/console/targets/check" {
                                (csrf_field(active))
                                input type="hidden" name="name" value=(t.name);
                                button type="submit" { "Check" }
                            }
                            @if let Some((name, result)) = &checked {
                                @if *name == t.name {
                                    @match result {
                                        Ok(line) => { p.ok.check-result { (line) } }
                                        Err(e) => { p.failed.check-result { (e.to_string()) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page("Targets", Some(active), "targets", body)
}

/// The audit page's filters, as `rotor audit`'s.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditFilters {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    limit: Option<i64>,
    /// The next page back: records older than this id.
    #[serde(default)]
    before: Option<i64>,
    /// The page before, towards the present: records newer than this id.
    #[serde(default)]
    after: Option<i64>,
}

/// The most records the audit page shows at once; older ones are a page back.
pub const AUDIT_PAGE_MAX: i64 = 500;

/// `GET /console/audit`.
pub(super) async fn audit(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(f): Query<AuditFilters>,
) -> Response {
    let active = match session::require(&console, &headers).await {
        Ok(a) => a,
        Err(login) => return login,
    };
    let mut errors: Vec<(&str, String)> = vec![];
    let since = match f.since.trim() {
        "" => None,
        text => match crate::model::parse_duration(text) {
            Ok(d) => {
                Some(console.store.clock().now_ms() - d.as_millis().min(i64::MAX as u128) as i64)
            }
            Err(e) => {
                errors.push(("since", e.to_string()));
                None
            }
        },
    };
    let action = f.action.trim();
    let action_ok = action.is_empty()
        || (action.len() <= 64
            && action
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'));
    if !action_ok {
        errors.push((
            "action",
            "an action is like rotation, rotation.set or secret.reveal".into(),
        ));
    }
    let limit = f.limit.unwrap_or(200).clamp(1, AUDIT_PAGE_MAX);
    // One direction at a time; ids are positive.
    let before = f.before.filter(|id| *id > 0);
    let after = f.after.filter(|id| *id >= 0 && before.is_none());
    let secret = f.secret.trim();
    let records = if errors.is_empty() {
        console
            .store
            .audit_log(&AuditQuery {
                secret: Some(secret.to_owned()).filter(|s| !s.is_empty()),
                since,
                action: Some(action.to_owned()).filter(|a| !a.is_empty()),
                limit: Some(limit),
                before,
                after,
            })
            .await
            .unwrap_or_default()
    } else {
        vec![]
    };
    // Paging by record id, so that records written meanwhile do not shift the pages: older
    // records exist past a full page; newer ones whenever this is not the first page.
    let full = records.len() as i64 == limit;
    let oldest = records.first().map(|r| r.id);
    let newest = records.last().map(|r| r.id);
    let first_page = before.is_none() && (after.is_none() || !full);
    let older = match (after, oldest) {
        (None, Some(id)) if full => Some(id),
        (Some(_), Some(id)) => Some(id),
        _ => None,
    };
    let newer = if first_page {
        None
    } else {
        newest.or(before.map(|b| b - 1))
    };
    let link = |key: &str, id: i64| {
        format!(
            "/console/audit?secret={}&since={}&action={}&limit={limit}&{key}={id}",
            layout::encode(secret),
            layout::encode(f.since.trim()),
            layout::encode(action)
        )
    };
    let admin = is_admin(&active.policy);
    let shown = records.iter().rev().filter(|r| match &r.secret {
        Some(s) => active.policy.allows(Action::DescribeSecret, s),
        None => admin,
    });
    let error_for = |field: &str| {
        errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.clone())
    };
    let body = html! {
        form.filters method="get" action="/console/audit" {
            label { "Secret" input name="secret" value=(secret) maxlength="192"; }
            label { "Since (e.g. 1h, 7d)" input name="since" value=(f.since) maxlength="40";
                @if let Some(e) = error_for("since") { span.field-error role="alert" { (e) } } }
            label { "Action (e.g. rotation, secret.reveal)" input name="action" value=(action) maxlength="64";
                @if let Some(e) = error_for("action") { span.field-error role="alert" { (e) } } }
            label { "Per page" input name="limit" type="number" min="1" max=(AUDIT_PAGE_MAX) value=(limit); }
            button type="submit" { "Filter" }
        }
        table.audit {
            thead { tr { th { "Time" } th { "Who" } th { "Action" } th { "Secret" } th { "Version" } th { "Outcome" } th { "Detail" } } }
            tbody {
                @for r in shown {
                    tr data-id=(r.id) {
                        td { (r.time) } td { (r.actor) } td { (r.action) }
                        td { (r.secret.as_deref().unwrap_or("—")) }
                        td { (r.version.as_deref().unwrap_or("")) }
                        td { (r.outcome) } td { (r.detail.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        nav.pager {
            @if let Some(id) = newer { a href=(link("after", id)) rel="prev" { "← Newer" } }
            @if let Some(id) = older { a href=(link("before", id)) rel="next" { "Older →" } }
        }
    };
    layout::page("Audit log", Some(&active), "audit", body)
}
