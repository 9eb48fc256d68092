//! The frame of every console page (head, navigation, the signed-in user and the logout
//! button), the small helpers pages share (times, links, the CSRF field, status badges), and
//! the assets compiled into the binary.

use axum::extract::Path;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::session::Active;
use crate::clock::format_ms;
use crate::store::{RotationStatus, SecretInfo};

/// The console's stylesheet and script, compiled in.
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// A whole page: `title`, the navigation with `current` marked, and `body`.
pub(super) fn page(title: &str, active: Option<&Active>, current: &str, body: Markup) -> Response {
    page_with(StatusCode::OK, title, active, current, body)
}

/// [`page`] with another status (a form sent back with its errors: `422`).
pub(super) fn page_with(
    status: StatusCode,
    title: &str,
    active: Option<&Active>,
    current: &str,
    body: Markup,
) -> Response {
    let nav = [
        ("secrets", "/console/secrets", "Secrets"),
        ("create", "/console/create", "Create secret"),
        ("targets", "/console/targets", "Targets"),
        ("audit", "/console/audit", "Audit log"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — rotor console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header {
                    span.brand { "rotor" }
                    @if let Some(a) = active {
                        nav {
                            @for (key, href, label) in nav {
                                a href=(href) class=[(key == current).then_some("current")] { (label) }
                            }
                        }
                        form.logout method="post" action="/console/logout" {
                            (csrf_field(a))
                            span.user { "Signed in as " strong { (a.user) } }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A page that only says something (a refusal, a missing secret).
pub(super) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page_with(
        status,
        title,
        None,
        "",
        html! { p.message { (text) } p { a href="/console/secrets" { "Back to the secrets" } } },
    )
}

/// The answer for a console path that does not exist.
pub(super) fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

/// `/console/assets/FILE`: the stylesheet and the script.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return not_found(),
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    response
}

/// The hidden field that carries the session's CSRF token.
pub(super) fn csrf_field(active: &Active) -> Markup {
    html! { input type="hidden" name="_csrf" value=(active.csrf); }
}

/// A time for people: `2026-11-28T10:00:00Z`, or a dash.
pub(super) fn time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), format_ms)
}

/// A query-string component.
pub(super) fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// The details page of secret `name`.
pub(super) fn secret_url(name: &str) -> String {
    format!("/console/secret?name={}", encode(name))
}

/// A secret's rotation state in a few words, with a class for its colour.
pub(super) fn rotation_badge(info: &SecretInfo) -> Markup {
    let (class, text) = if info.planned_delete_at.is_some() {
        ("badge deleted", "deletion scheduled".to_string())
    } else if info.rotation_failure.is_some() || info.rotation_status == RotationStatus::Failed {
        ("badge failed", "failed".to_string())
    } else {
        match info.rotation_status {
            RotationStatus::Rotating => ("badge busy", "rotating".to_string()),
            RotationStatus::Retrying => (
                "badge failed",
                format!("retrying (attempt {})", info.rotation_attempts + 1),
            ),
            _ if info.rotation.is_some() => ("badge ok", info.rotation_summary()),
            _ => ("badge off", "no automatic rotation".to_string()),
        }
    };
    html! { span class=(class) { (text) } }
}

/// The secret's type and sub-type, as `Rds/DoubleUsers`.
pub(super) fn kind_text(info: &SecretInfo) -> String {
    info.kind.to_string()
}
