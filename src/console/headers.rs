//! The security headers on every console answer: a Content-Security-Policy that allows
//! scripts, styles and connections from this origin only (no inline script, no `eval`, no
//! plugins) and refuses framing (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for
//! older browsers); no MIME sniffing; the referrer only to this origin (`no-referrer` would make
//! browsers send `Origin: null` on form posts, which the CSRF check refuses); nothing cached
//! (pages may show a value); over TLS, `Strict-Transport-Security`.

use axum::http::header::{self, HeaderValue};
use axum::response::Response;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What browsers are told over TLS: this origin only over HTTPS for a year.
pub const HSTS: &str = "max-age=31536000";

/// Adds the security headers to `response`; `tls` when it goes out over HTTPS (HSTS is
/// ignored by browsers over plain HTTP, and a loopback plain-HTTP console must not pin it).
pub(super) async fn secure(mut response: Response, tls: bool) -> Response {
    let h = response.headers_mut();
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
