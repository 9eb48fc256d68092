//! The Secrets page: a tab per family of types (Generic, Database — Rds, PolarDB, Redis —, RAM,
//! ECS), a search by name, tag filters, and the rotation state of each secret, a page at a
//! time ([`PAGE_SIZE`]). Only the secrets the user's rules allow `ListSecrets` on are counted
//! or shown, and, as through the API, no target's admin secret (`acs/…`): the store filters
//! names before it reads a page's rows
//! ([`crate::store::Store::list_page`]).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use rotators::SecretType;
use serde::Deserialize;

use super::layout::{self, encode, rotation_badge, secret_url, time};
use super::{session, Console};
use crate::model::Tag;
use crate::policy::Action;
use crate::store::{PageQuery, SecretInfo};

/// Secrets on one page.
pub const PAGE_SIZE: usize = 50;

/// The tabs: key, label, the types shown.
const TABS: [(&str, &str, &[SecretType]); 5] = [
    ("all", "All", &[]),
    ("generic", "Generic", &[SecretType::Generic]),
    (
        "database",
        "Database",
        &[SecretType::Rds, SecretType::PolarDB, SecretType::Redis],
    ),
    ("ram", "RAM", &[SecretType::RAMCredentials]),
    ("ecs", "ECS", &[SecretType::ECS]),
];

/// The page's query: `?tab=database&q=orders&tags=team=platform,env=prod&page=2&deleted=on`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    tab: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    deleted: Option<String>,
}

/// `k=v,k2=v2` as tags (commas never occur in a tag).
fn parse_tags(text: &str) -> Result<Vec<Tag>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Tag::parse_pair(t).map_err(|e| e.to_string()))
        .collect()
}

/// `GET /console/secrets`.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let active = match session::require(&console, &headers).await {
        Ok(a) => a,
        Err(login) => return login,
    };
    let tab = TABS
        .iter()
        .find(|(key, _, _)| *key == q.tab)
        .unwrap_or(&TABS[0]);
    let (tags, tag_error) = match parse_tags(&q.tags) {
        Ok(tags) => (tags, None),
        Err(e) => (vec![], Some(e)),
    };
    let search: String = q.q.chars().filter(|c| !c.is_control()).take(192).collect();
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let query = PageQuery {
        types: tab.2.to_vec(),
        search: search.clone(),
        tags,
        include_deleted: q.deleted.is_some(),
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let started = std::time::Instant::now();
    let listed = console
        .store
        .list_page(&query, |name| {
            // A target's admin secret belongs to its target, not to the API or the console.
            !name.starts_with("acs/") && active.policy.allows(Action::ListSecrets, name)
        })
        .await;
    let (secrets, total) = match listed {
        Ok(found) => found,
        Err(e) => {
            return layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                &format!("The secrets could not be read: {e}"),
            )
        }
    };
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let link = |tab: &str, page: usize| {
        let mut url = format!(
            "/console/secrets?tab={tab}&q={}&tags={}&page={page}",
            encode(&search),
            encode(&q.tags)
        );
        if q.deleted.is_some() {
            url.push_str("&deleted=on");
        }
        url
    };
    if page > pages {
        // Past the last page (the list shrank, or a hand-made link): the last page instead,
        // never "page 2 of 1".
        return axum::response::Redirect::to(&link(tab.0, pages)).into_response();
    }
    let body = html! {
        nav.tabs {
            @for (key, label, _) in TABS {
                a href=(link(key, 1)) class=[(key == tab.0).then_some("current")] data-tab=(key) { (label) }
            }
        }
        form.filters method="get" action="/console/secrets" {
            input type="hidden" name="tab" value=(tab.0);
            label { "Name contains" input name="q" value=(search) maxlength="192"; }
            label {
                "Tags (key=value, comma-separated)"
                input name="tags" value=(q.tags) maxlength="2000" aria-invalid=[tag_error.as_ref().map(|_| "true")];
                @if let Some(e) = &tag_error { span.field-error role="alert" { (e) } }
            }
            label.check { input type="checkbox" name="deleted" checked[q.deleted.is_some()]; "Include those scheduled for deletion" }
            button type="submit" { "Filter" }
        }
        p.count { (total) " secret" @if total != 1 { "s" } " — page " (page) " of " (pages) }
        (table(&secrets))
        nav.pager {
            @if page > 1 { a href=(link(tab.0, page - 1)) rel="prev" { "← Previous" } }
            @if page < pages { a href=(link(tab.0, page + 1)) rel="next" { "Next →" } }
        }
    };
    let mut response = layout::page("Secrets", Some(&active), "secrets", body);
    // The server's time to list and render, for the benchmark and the curious.
    let took = format!("app;dur={:.1}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = took.parse() {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

fn table(secrets: &[SecretInfo]) -> Markup {
    html! {
        table.secrets {
            thead { tr {
                th { "Name" } th { "Type" } th { "Target" } th { "Rotation" }
                th { "Next rotation" } th { "Last rotation" } th { "Last result" } th { "Tags" }
            } }
            tbody {
                @for s in secrets {
                    tr data-secret=(s.name.as_str()) {
                        td { a href=(secret_url(s.name.as_str())) { (s.name.as_str()) } }
                        td { (layout::kind_text(s)) }
                        td { (s.target.as_deref().unwrap_or("—")) }
                        td { (rotation_badge(s)) }
                        td { (time(s.next_rotation_at)) }
                        td { (time(s.last_rotation_at)) }
                        td { (last_result(s)) }
                        td.tags { @for t in &s.tags { span.tag { (t.tag_key) "=" (t.tag_value) } " " } }
                    }
                }
                @if secrets.is_empty() {
                    tr { td colspan="8" { "No secrets here." } }
                }
            }
        }
    }
}

/// The last rotation's result: the failure (reason and attempts), the error of a retrying
/// attempt, or ok.
pub(super) fn last_result(s: &SecretInfo) -> Markup {
    html! {
        @if let Some(f) = &s.rotation_failure {
            span.failed { "failed after " (f.attempts) " attempt" @if f.attempts != 1 { "s" } ": " (f.reason) }
        } @else if let Some(e) = &s.rotation_error {
            span.failed { "attempt " (s.rotation_attempts) " failed: " (e) }
        } @else if s.last_rotation_at.is_some() {
            span.ok { "ok" }
        } @else {
            "—"
        }
    }
}
