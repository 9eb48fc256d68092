//! Logging in and out. A login comes from this origin, names a console user and its password
//! (checked against the argon2id hash on a blocking thread; an unknown name checks a decoy, so
//! both take as long); failures are throttled per name and per address ([`super::throttle`])
//! and every attempt is audited (`console.login`, `ok` or `failed`). A good login opens a
//! session and sets its cookie; logging out ends it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;

use super::form::Form;
use maud::html;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{layout, password, session, Console};

/// The login form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// The logout form.
#[derive(Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

fn form(status: StatusCode, user: &str, error: Option<&str>) -> Response {
    layout::page_with(
        status,
        "Sign in",
        None,
        "",
        html! {
            form.panel.login method="post" action="/console/login" {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                label { "User" input name="user" value=(user) autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /console/login`.
pub(super) async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    if session::current(&console, &headers).await.is_some() {
        return Redirect::to("/console/secrets").into_response();
    }
    form(StatusCode::OK, "", None)
}

/// `POST /console/login`.
pub(super) async fn submit(
    State(console): State<Console>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(login): Form<LoginForm>,
) -> Response {
    if !session::same_origin(&headers, console.tls) {
        return layout::message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This request did not come from a console page.",
        );
    }
    let address = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(c)| c.0.ip());
    let name = login.user.trim().to_owned();
    if let Err(wait) = console.throttle.attempt(&name, address, Instant::now()) {
        return form(
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            Some(&format!(
                "Too many failed sign-ins for this user or from this address: try again in {} s.",
                wait.as_secs().max(1)
            )),
        );
    }
    // A name that could not be a user's is never looked up, nor echoed into the audit log.
    let valid_name = crate::model::check_key_name(&name).is_ok();
    let found = if valid_name {
        match console.store.console_login(&name).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "console: cannot read a user to sign in");
                return layout::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The store did not answer; try again.",
                );
            }
        }
    } else {
        None
    };
    let enabled = found.as_ref().is_some_and(|f| f.enabled);
    let (hash, policy) = match found {
        Some(f) => (Some(f.password_hash), Some(f.policy)),
        None => (None, None),
    };
    let signed_in_with = hash.clone().unwrap_or_default();
    let matched = password::verify(Zeroizing::new(login.password), hash).await;
    let store = console.store_for(if valid_name { name.as_str() } else { "-" });
    match policy {
        Some(policy) if matched && enabled => {
            console.throttle.succeeded(&name, address);
            let _ = store
                .record_console_event(
                    "console.login",
                    None,
                    None,
                    "ok",
                    Some(&address.to_string()),
                )
                .await;
            let token = console
                .sessions
                .open(&name, &signed_in_with, policy, Instant::now());
            let mut response = Redirect::to("/console/secrets").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::cookie(&token));
            response
        }
        _ => {
            // Counted as failed when it was let in.
            let detail = format!("from {address}");
            let _ = store
                .record_console_event("console.login", None, None, "failed", Some(&detail))
                .await;
            form(
                StatusCode::UNAUTHORIZED,
                &name,
                Some("Wrong user or password (or the user is disabled)."),
            )
        }
    }
}

/// `POST /console/logout`.
pub(super) async fn logout(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let active = match session::require_change(&console, &headers, &form.csrf).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    console.sessions.close(&active);
    let _ = console
        .store_for(&active.user)
        .record_console_event("console.logout", None, None, "ok", None)
        .await;
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    response
}
