//! The API's refusals: [`ApiError`] (HTTP status, KMS `Code`, `Message`), and how the verifier's
//! refusals and rotor's typed [`Error`]s become one. The mapping goes by error kind, never by
//! message text; messages name secrets and reasons, never values.

use axum::http::StatusCode;

use crate::error::{ConflictKind, Error};

/// A refusal as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The KMS error code, e.g. `Forbidden.ResourceNotFound`.
    pub code: &'static str,
    /// The message: names secrets and reasons, never values.
    pub message: String,
}

impl ApiError {
    /// A refusal with this status (400 if it is not one), code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }

    /// `400 InvalidParameter`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, "InvalidParameter", message)
    }

    /// `400 MissingParameter` for the parameter `name`.
    pub fn missing(name: &str) -> Self {
        ApiError::new(
            400,
            "MissingParameter",
            format!("The input parameter {name} that is mandatory for processing this request is not supplied."),
        )
    }

    /// `403 Forbidden.NoPermission`: the key's policy does not allow the call.
    pub fn forbidden() -> Self {
        ApiError::new(
            403,
            "Forbidden.NoPermission",
            "This operation is forbidden by the access key's policy.",
        )
    }
}

impl From<acs_sign::verify::Refused> for ApiError {
    fn from(r: acs_sign::verify::Refused) -> Self {
        ApiError::new(r.status, r.code, r.message)
    }
}

/// Store and engine errors as KMS errors.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound(m) => ApiError::new(404, "Forbidden.ResourceNotFound", m.clone()),
            Error::Invalid(m) => ApiError::invalid(m.clone()),
            Error::Conflict(c) => {
                let code = match c.kind {
                    ConflictKind::Exists => "Rejected.ResourceExist",
                    ConflictKind::DeleteWindow => "Rejected.ResourceInDeleteWindow",
                    ConflictKind::State => "Rejected.ResourceConflict",
                };
                ApiError::new(409, code, c.message.clone())
            }
            Error::InProgress(m) => ApiError::new(409, "Rejected.RotationInProgress", m.clone()),
            Error::Lease(m) => ApiError::new(409, "Rejected.ResourceConflict", m.clone()),
            Error::Rotation(m) | Error::Target(m) => {
                ApiError::new(409, "Rejected.RotationFailed", m.clone())
            }
            _ => {
                tracing::error!(error = %e, "API request failed in the store");
                ApiError::new(
                    500,
                    "InternalFailure",
                    "The request failed inside rotor; see its log.",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_kind() {
        let code = |e: Error| ApiError::from(e).code;
        assert_eq!(code(Error::exists("x")), "Rejected.ResourceExist");
        assert_eq!(
            code(Error::delete_window("x")),
            "Rejected.ResourceInDeleteWindow"
        );
        // The words no longer matter: a plain conflict that says them is still one.
        assert_eq!(
            code(Error::conflict("already exists, scheduled for deletion")),
            "Rejected.ResourceConflict"
        );
        assert_eq!(
            code(Error::InProgress("x".into())),
            "Rejected.RotationInProgress"
        );
        assert_eq!(code(Error::not_found("x")), "Forbidden.ResourceNotFound");
        assert_eq!(code(Error::invalid("x")), "InvalidParameter");
        assert_eq!(code(Error::config("x")), "InternalFailure");
    }
}
