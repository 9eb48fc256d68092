//! Verifying signed Alibaba Cloud OpenAPI requests, both styles (see [`crate::sign`]): the
//! server side of the signatures, shared by rotor's KMS-compatible API and the RAM emulator the
//! tests run.
//!
//! [`prepare`] reads the parameters (query, and a form body) and the signature fields, checks
//! the body hash (V3) and says which AccessKeyId the request claims; [`Prepared::verify`] then
//! checks the signature with that key's secret and the timestamp window, and returns the call.
//! [`verify`] does both with a lookup callback. Remembering nonces is the caller's: it knows how
//! long, and how many, it can keep. Errors carry the cloud's codes and statuses; their messages
//! never include a secret or a signature.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

use crate::sign;

/// A request as the server received it. Header names are lower case.
pub struct Request<'a> {
    /// `POST`, `GET`, ...
    pub method: &'a str,
    /// The path, as sent (`/`).
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    /// Every header, names lower case, in the order received.
    pub headers: &'a [(String, String)],
    /// The body, as sent.
    pub body: &'a [u8],
}

/// A verified call.
#[derive(Debug)]
pub struct Verified {
    /// The AccessKeyId whose secret signed the request.
    pub key_id: String,
    /// The `Action` parameter or `x-acs-action` header, as sent (not checked here).
    pub action: String,
    /// `Version` parameter or `x-acs-version` header.
    pub version: Option<String>,
    /// Every parameter (query, then form body), decoded, without the V1 `Signature`.
    pub params: Vec<(String, String)>,
    /// `SignatureNonce` or `x-acs-signature-nonce`: remembering it is the caller's.
    pub nonce: String,
    /// The request's signed timestamp, Unix seconds.
    pub timestamp: i64,
}

/// A refused request: HTTP status, the cloud's error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The HTTP status: 400 for a malformed or badly signed request.
    pub status: u16,
    /// The cloud's error code, e.g. `SignatureDoesNotMatch`.
    pub code: &'static str,
    /// The cloud's message; never a secret or a signature.
    pub message: String,
}

impl Refused {
    /// A refusal with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Refused::new(400, code, message)
    }
}

/// The most parameters one request may carry.
pub const MAX_PARAMS: usize = 256;

/// `a=1&b=%20+x` → pairs, decoded as `application/x-www-form-urlencoded` (`+` is a space: the
/// SDKs' HTTP layers send spaces so, while signing them as `%20`; a literal `+` arrives as
/// `%2B`). Refuses text that is not UTF-8 once decoded, and more than [`MAX_PARAMS`] pairs.
pub fn pairs(text: &str) -> Result<Vec<(String, String)>, Refused> {
    let mut out = Vec::new();
    for p in text.split('&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_PARAMS {
            return Err(Refused::bad(
                "InvalidParameter",
                format!("A request carries at most {MAX_PARAMS} parameters."),
            ));
        }
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let d = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode_str(&s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| Refused::bad("InvalidParameter", "A parameter is not UTF-8 text."))
        };
        out.push((d(k)?, d(v)?));
    }
    Ok(out)
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Checks an ISO 8601 UTC timestamp lies within `window` of `now`.
fn within(
    stamp: &str,
    now: chrono::DateTime<chrono::Utc>,
    window: Duration,
) -> Result<i64, Refused> {
    let at = chrono::DateTime::parse_from_rfc3339(stamp).map_err(|_| {
        Refused::bad(
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    let skew = (now - at.with_timezone(&chrono::Utc))
        .num_seconds()
        .unsigned_abs();
    if skew > window.as_secs() {
        return Err(Refused::bad(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(at.timestamp())
}

/// Verifies `req`: `secret_of` gives the secret of an AccessKeyId (or the refusal: unknown,
/// disabled). [`prepare`] then [`Prepared::verify`], for callers whose lookup is synchronous.
pub fn verify(
    req: &Request,
    now: chrono::DateTime<chrono::Utc>,
    window: Duration,
    secret_of: &mut dyn FnMut(&str) -> Result<Zeroizing<String>, Refused>,
) -> Result<Verified, Refused> {
    let prepared = prepare(req)?;
    let secret = secret_of(&prepared.key_id)?;
    prepared.verify(&secret, now, window)
}

/// A request read and checked for everything but its signature: its parameters and the
/// AccessKeyId it claims, whose secret the caller now looks up (perhaps asynchronously).
pub struct Prepared<'a> {
    req: &'a Request<'a>,
    /// Query parameters (the V3 canonical query), then form-body ones.
    query: Vec<(String, String)>,
    body_params: Vec<(String, String)>,
    style: Style,
    /// The AccessKeyId the request claims; not verified yet.
    pub key_id: String,
}

enum Style {
    V3 {
        signed_headers: Vec<String>,
        signature: String,
        body_sha: String,
    },
    V1 {
        signature: String,
    },
}

/// Reads `req`'s parameters and signature fields; refuses what no secret could make valid
/// (malformed parameters, incomplete signatures, a body that is not the one signed).
pub fn prepare<'a>(req: &'a Request<'a>) -> Result<Prepared<'a>, Refused> {
    let query = pairs(req.query)?;
    let form = header(req, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body_params = if form {
        let text = std::str::from_utf8(req.body)
            .map_err(|_| Refused::bad("InvalidParameter", "The form body is not UTF-8 text."))?;
        pairs(text)?
    } else {
        vec![]
    };
    if query.len() + body_params.len() > MAX_PARAMS {
        return Err(Refused::bad(
            "InvalidParameter",
            format!("A request carries at most {MAX_PARAMS} parameters."),
        ));
    }
    let (style, key_id) = match header(req, "authorization") {
        Some(auth) => prepare_v3(req, auth)?,
        None => prepare_v1(&query, &body_params)?,
    };
    Ok(Prepared {
        req,
        query,
        body_params,
        style,
        key_id,
    })
}

fn prepare_v3(req: &Request, auth: &str) -> Result<(Style, String), Refused> {
    let auth = sign::parse_v3_authorization(auth).ok_or_else(|| {
        Refused::bad(
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    })?;
    for required in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if !auth.signed_headers.iter().any(|n| n == required) {
            return Err(Refused::bad(
                "IncompleteSignature",
                format!("The header {required} must be signed."),
            ));
        }
    }
    if auth
        .signed_headers
        .iter()
        .any(|name| header(req, name).is_none())
    {
        return Err(Refused::bad(
            "IncompleteSignature",
            "A signed header is missing from the request.",
        ));
    }
    let body_sha = sign::sha256_hex(req.body);
    if header(req, "x-acs-content-sha256") != Some(body_sha.as_str()) {
        return Err(Refused::bad(
            "ContentSHA256NotMatched",
            "The x-acs-content-sha256 header does not match the body.",
        ));
    }
    let style = Style::V3 {
        signed_headers: auth.signed_headers,
        signature: auth.signature,
        body_sha,
    };
    Ok((style, auth.key_id))
}

fn prepare_v1(
    query: &[(String, String)],
    body_params: &[(String, String)],
) -> Result<(Style, String), Refused> {
    let get = |k: &str| {
        query
            .iter()
            .chain(body_params)
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let signature = get("Signature").ok_or_else(|| {
        Refused::bad(
            "MissingSignature",
            "Signature is mandatory for this action.",
        )
    })?;
    let key_id = get("AccessKeyId").ok_or_else(|| {
        Refused::bad(
            "MissingAccessKeyId",
            "AccessKeyId is mandatory for this action.",
        )
    })?;
    if get("SignatureMethod").as_deref() != Some("HMAC-SHA1")
        || get("SignatureVersion").as_deref() != Some("1.0")
    {
        return Err(Refused::bad(
            "IncompleteSignature",
            "SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.",
        ));
    }
    Ok((Style::V1 { signature }, key_id))
}

impl Prepared<'_> {
    /// Checks the signature with the claimed key's `secret`, then the timestamp window.
    pub fn verify(
        self,
        secret: &str,
        now: chrono::DateTime<chrono::Utc>,
        window: Duration,
    ) -> Result<Verified, Refused> {
        let mismatch = || {
            Refused::bad(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        };
        let req = self.req;
        let mut params = self.query;
        match self.style {
            Style::V3 {
                signed_headers,
                signature,
                body_sha,
            } => {
                let signed: Vec<(String, String)> = signed_headers
                    .into_iter()
                    .map(|name| {
                        let mut values: Vec<&str> = req
                            .headers
                            .iter()
                            .filter(|(n, _)| *n == name)
                            .map(|(_, v)| v.trim())
                            .collect();
                        values.sort_unstable();
                        let joined = values.join(",");
                        (name, joined)
                    })
                    .collect();
                let (expected, _) =
                    sign::v3_signature(secret, req.method, req.path, &params, &signed, &body_sha);
                if !sign::same(&expected, &signature) {
                    return Err(mismatch());
                }
                let timestamp = within(header(req, "x-acs-date").unwrap_or_default(), now, window)?;
                params.extend(self.body_params);
                Ok(Verified {
                    key_id: self.key_id,
                    action: header(req, "x-acs-action").unwrap_or_default().to_owned(),
                    version: header(req, "x-acs-version").map(str::to_owned),
                    params,
                    nonce: header(req, "x-acs-signature-nonce")
                        .unwrap_or_default()
                        .to_owned(),
                    timestamp,
                })
            }
            Style::V1 { signature } => {
                params.extend(self.body_params);
                params.retain(|(k, _)| k != "Signature");
                if !sign::same(&sign::v1_signature(secret, req.method, &params), &signature) {
                    return Err(mismatch());
                }
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let timestamp = within(&get("Timestamp").unwrap_or_default(), now, window)?;
                Ok(Verified {
                    key_id: self.key_id,
                    action: get("Action").unwrap_or_default(),
                    version: get("Version"),
                    nonce: get("SignatureNonce").unwrap_or_default(),
                    params,
                    timestamp,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str) -> Result<Zeroizing<String>, Refused> {
        match id {
            "AK1" => Ok(Zeroizing::new("s3cret".into())),
            _ => Err(Refused::new(404, "InvalidAccessKeyId.NotFound", "no")),
        }
    }

    fn v1_request(now: chrono::DateTime<chrono::Utc>, secret_text: &str) -> String {
        let mut params: Vec<(String, String)> = [
            ("Action", "GetSecretValue"),
            ("Version", "2016-01-20"),
            ("AccessKeyId", "AK1"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "n-1"),
            ("SecretName", "db/a b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.push((
            "Timestamp".into(),
            now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ));
        let sig = sign::v1_signature(secret_text, "POST", &params);
        params.push(("Signature".into(), sig));
        sign::canonical_query(&params)
    }

    #[test]
    fn v1_requests_verify_and_tampering_fails() {
        let now = chrono::Utc::now();
        let body = v1_request(now, "s3cret");
        let headers = vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )];
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let window = Duration::from_secs(900);
        let ok = verify(&req, now, window, &mut secret).unwrap();
        assert_eq!(ok.action, "GetSecretValue");
        assert!(ok.params.contains(&("SecretName".into(), "db/a b".into())));
        let wrong = v1_request(now, "other");
        let req = Request {
            body: wrong.as_bytes(),
            ..req
        };
        assert_eq!(
            verify(&req, now, window, &mut secret).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        let late = now + chrono::Duration::minutes(16);
        let body = v1_request(now, "s3cret");
        let req = Request {
            body: body.as_bytes(),
            ..req
        };
        assert_eq!(
            verify(&req, late, window, &mut secret).unwrap_err().code,
            "InvalidTimeStamp.Expired"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let now = chrono::Utc::now();
        let headers = vec![
            (
                "authorization".to_string(),
                "ACS3-HMAC-SHA256 x".to_string(),
            ),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        for body in [
            &b"%ff%fe=1"[..],
            b"&&&=",
            b"a=%",
            b"\xff\xfe",
            b"=",
            b"a==b&c",
        ] {
            let req = Request {
                method: "POST",
                path: "/",
                query: "x=%zz&y",
                headers: &headers,
                body,
            };
            assert!(verify(&req, now, Duration::from_secs(900), &mut secret).is_err());
        }
    }
}

/// Property tests: whatever arrives, the verifier answers (no panic, no hang), and what a
/// correct signer signs always verifies while any change to it does not.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn secret_of(id: &str) -> Result<Zeroizing<String>, Refused> {
        if id == "AKPROP" {
            Ok(Zeroizing::new("prop-secret".into()))
        } else {
            Err(Refused::new(404, "InvalidAccessKeyId.NotFound", "no"))
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn stamp() -> String {
        now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Parameter names and values: any text, including `&`, `=`, `%`, `+`, spaces and
    /// non-ASCII.
    fn params() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9]{0,12}", ".{0,40}"), 0..8)
    }

    fn v1_body(extra: &[(String, String)], secret: &str) -> String {
        let mut all: Vec<(String, String)> = [
            ("Action", "GetSecretValue"),
            ("Version", "2016-01-20"),
            ("AccessKeyId", "AKPROP"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "n"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.push(("Timestamp".into(), stamp()));
        all.extend(
            extra
                .iter()
                .filter(|(k, _)| !all.iter().any(|(n, _)| n == k))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let signature = sign::v1_signature(secret, "POST", &all);
        all.push(("Signature".into(), signature));
        sign::canonical_query(&all)
    }

    fn form() -> Vec<(String, String)> {
        vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn anything_gets_an_answer(
            method in "[A-Z]{0,7}",
            query in ".{0,200}",
            body in proptest::collection::vec(any::<u8>(), 0..400),
            auth in proptest::option::of(".{0,200}"),
            extra in proptest::collection::vec(("[a-z-]{1,20}", "[ -~]{0,60}"), 0..6),
        ) {
            let mut headers = form();
            if let Some(a) = auth {
                headers.push(("authorization".into(), a));
            }
            headers.extend(extra);
            let req = Request { method: &method, path: "/", query: &query, headers: &headers, body: &body };
            let _ = verify(&req, now(), Duration::from_secs(900), &mut secret_of);
        }

        #[test]
        fn signed_v1_requests_verify_and_any_change_is_refused(
            extra in params(),
            flip in any::<prop::sample::Index>(),
        ) {
            let body = v1_body(&extra, "prop-secret");
            let headers = form();
            let req = Request { method: "POST", path: "/", query: "", headers: &headers, body: body.as_bytes() };
            let call = verify(&req, now(), Duration::from_secs(900), &mut secret_of).unwrap();
            for (k, v) in &extra {
                if !["Action","Version","AccessKeyId","SignatureMethod","SignatureVersion","SignatureNonce","Timestamp"].contains(&k.as_str()) {
                    prop_assert!(call.params.iter().any(|(n, w)| n == k && w == v), "{k}={v} lost");
                }
            }
            // Another secret's signature, or one changed byte of the body, fails.
            let other = v1_body(&extra, "other-secret");
            let req2 = Request { body: other.as_bytes(), ..req };
            prop_assert!(verify(&req2, now(), Duration::from_secs(900), &mut secret_of).is_err());
            let mut bytes = body.clone().into_bytes();
            let i = flip.index(bytes.len());
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let req3 = Request { body: &bytes, ..req };
            if bytes != body.as_bytes() {
                let changed = verify(&req3, now(), Duration::from_secs(900), &mut secret_of);
                // A change that decodes to the same parameters (e.g. %41 → A) is the same
                // request; anything else must be refused.
                if let Ok(c) = changed {
                    let mut a = c.params.clone();
                    let mut b = call.params.clone();
                    a.sort();
                    b.sort();
                    prop_assert_eq!(a, b);
                }
            }
        }

        #[test]
        fn signed_v3_requests_verify_and_a_changed_query_is_refused(
            query in params(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let body_sha = sign::sha256_hex(&body);
            let headers = vec![
                ("host".to_string(), "kms.example".to_string()),
                ("x-acs-action".into(), "GetSecretValue".into()),
                ("x-acs-content-sha256".into(), body_sha.clone()),
                ("x-acs-date".into(), stamp()),
                ("x-acs-signature-nonce".into(), "n".into()),
                ("x-acs-version".into(), "2016-01-20".into()),
            ];
            let (signature, names) = sign::v3_signature("prop-secret", "POST", "/", &query, &headers, &body_sha);
            let mut all = headers.clone();
            all.push(("authorization".into(), sign::v3_authorization("AKPROP", &names, &signature)));
            let text = sign::canonical_query(&query);
            let req = Request { method: "POST", path: "/", query: &text, headers: &all, body: &body };
            prop_assert!(verify(&req, now(), Duration::from_secs(900), &mut secret_of).is_ok());
            let changed = format!("{text}&Injected=1");
            let req2 = Request { query: &changed, ..req };
            prop_assert_eq!(verify(&req2, now(), Duration::from_secs(900), &mut secret_of).unwrap_err().code, "SignatureDoesNotMatch");
        }
    }
}
