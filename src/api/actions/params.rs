//! A call's parameters (query and form body, already merged): each may appear once; booleans
//! are `true`/`false` in any case; numbers within their bounds.

use std::ops::RangeInclusive;

use acs_sign::verify::Verified;

use crate::api::ApiError;
use crate::model::SecretName;

/// The call's parameters, each once.
pub(super) struct Params<'a>(&'a [(String, String)]);

impl<'a> Params<'a> {
    pub(super) fn new(call: &'a Verified) -> Result<Self, ApiError> {
        let mut names: Vec<&str> = call.params.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::invalid(format!(
                "The parameter {} is given more than once.",
                printable(w[0])
            )));
        }
        Ok(Params(&call.params))
    }

    pub(super) fn opt(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn req(&self, name: &str) -> Result<&'a str, ApiError> {
        self.opt(name).ok_or_else(|| ApiError::missing(name))
    }

    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(format!("{name} must be true or false."))),
        }
    }

    pub(super) fn number<N>(
        &self,
        name: &str,
        default: N,
        range: RangeInclusive<N>,
    ) -> Result<N, ApiError>
    where
        N: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => match v.parse::<N>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(format!(
                    "{name} must be {} to {}.",
                    range.start(),
                    range.end()
                ))),
            },
        }
    }

    pub(super) fn secret_name(&self) -> Result<SecretName, ApiError> {
        let name = self.req("SecretName")?;
        SecretName::parse(name).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

/// Text from a request, safe to echo in an error.
pub(super) fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}
