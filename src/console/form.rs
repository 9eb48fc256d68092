//! The console's form extractor: axum's `Form`, after a check that every field's name and
//! value decode to UTF-8. axum's own decoding replaces invalid bytes with U+FFFD, so a field
//! would silently hold other text than was sent; here such a form is refused (`400`) before
//! any handler reads it, naming the field when its name is readable.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;
use percent_encoding::percent_decode;

use super::layout;

/// A form whose every field is UTF-8 text, deserialised into `T`.
pub(super) struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        // The body was read whole, within its limit, by `read_body` in front of every handler.
        let bytes = axum::body::to_bytes(body, super::MAX_FORM)
            .await
            .map_err(|_| bad("The form is larger than the console takes."))?;
        if let Some(field) = not_utf8(&bytes) {
            return Err(bad(&match field {
                Some(name) => format!(
                    "The field {} is not valid UTF-8 text; nothing was changed.",
                    crate::model::printable(&name)
                ),
                None => "A field's name is not valid UTF-8 text; nothing was changed.".into(),
            }));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(rejection) => Err(bad(&rejection.body_text())),
        }
    }
}

fn bad(text: &str) -> Response {
    layout::message(StatusCode::BAD_REQUEST, "Bad form", text)
}

/// The first field of `body` (`application/x-www-form-urlencoded`) whose name or value is not
/// UTF-8 once decoded: `Some(Some(name))`, or `Some(None)` when the name itself is not.
fn not_utf8(body: &[u8]) -> Option<Option<String>> {
    let decode = |part: &[u8]| -> Result<String, ()> {
        let spaced: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let bytes: Vec<u8> = percent_decode(&spaced).collect();
        String::from_utf8(bytes).map_err(|_| ())
    };
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let mut halves = pair.splitn(2, |&b| b == b'=');
        let name = halves.next().unwrap_or_default();
        let Ok(name) = decode(name) else {
            return Some(None);
        };
        if decode(halves.next().unwrap_or_default()).is_err() {
            return Some(Some(name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_are_not_utf8_are_named() {
        assert_eq!(not_utf8(b"name=app%2Fone&description=caf%C3%A9+ok"), None);
        assert_eq!(
            not_utf8(b"name=app&description=caf%E9"),
            Some(Some("description".into()))
        );
        assert_eq!(not_utf8(b"%FF=x"), Some(None));
        assert_eq!(not_utf8(b"a=\xff"), Some(Some("a".into())));
        assert_eq!(not_utf8(b""), None);
    }
}
