//! Alibaba Cloud OpenAPI request signatures, both styles the RAM API accepts:
//!
//! - **V3** (`ACS3-HMAC-SHA256`, the default): a canonical request — method, path, sorted
//!   query, the signed headers (`host`, `x-acs-*`, `content-type`) and the body's SHA-256 — is
//!   hashed, and the hash signed with HMAC-SHA256 under the AccessKey secret; the result travels
//!   in the `Authorization` header.
//! - **V1** (the RPC signature, `HMAC-SHA1`): the sorted, percent-encoded parameters, with the
//!   method and `/`, are signed with HMAC-SHA1 under `SECRET&`; the base64 result travels as the
//!   `Signature` parameter.
//!
//! Both sides use these functions: rotor's RAM client to sign, [`crate::verify`] (for rotor's
//! API and the test emulator) to check. The unit tests reproduce the worked examples in Alibaba
//! Cloud's signature documentation.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The V3 algorithm name.
pub const ACS3: &str = "ACS3-HMAC-SHA256";

/// RFC 3986 encoding: everything but letters, digits and `- _ . ~` (so space is `%20`, `*` is
/// `%2A`), as both signature styles require.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded as both signature styles require (RFC 3986).
pub fn percent(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// The SHA-256 of `bytes`, lower-case hex (a V3 body hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac_sha256_hex(secret: &str, data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `a=1&b=2`, sorted by name (then value), names and values percent-encoded.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent(k), percent(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The headers rotor signs: `host`, `content-type` and every `x-acs-*`. (A verifier signs
/// exactly the headers the request's `SignedHeaders` lists: the SDKs sign more.)
pub fn headers_to_sign(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "host" || k == "content-type" || k.starts_with("x-acs-")
        })
        .cloned()
        .collect()
}

/// The V3 canonical request over `headers` (all of them: lower-cased, values trimmed, sorted).
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body_sha256: &str,
) -> (String, String) {
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let path = path.split('/').map(percent).collect::<Vec<_>>().join("/");
    let request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{names}\n{body_sha256}",
        canonical_query(query)
    );
    (request, names)
}

/// The V3 signature of a request over `headers`, and the `SignedHeaders` it covers.
pub fn v3_signature(
    secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body_sha256: &str,
) -> (String, String) {
    let (request, names) = canonical_request(method, path, query, headers, body_sha256);
    let to_sign = format!("{ACS3}\n{}", sha256_hex(request.as_bytes()));
    (hmac_sha256_hex(secret, &to_sign), names)
}

/// The `Authorization` header value of a V3 request.
pub fn v3_authorization(key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ACS3} Credential={key_id},SignedHeaders={signed_headers},Signature={signature}")
}

/// A V3 request in the RPC style both rotor's clients send: `POST /`, the parameters in the
/// query, an empty body.
pub struct RpcRequest<'a> {
    /// `HOST[:PORT]`, as the HTTP client sends it in `Host`.
    pub host: &'a str,
    /// The action (`GetSecretValue`, `CreateAccessKey`, …).
    pub action: &'a str,
    /// The API version (`2016-01-20`, `2015-05-01`).
    pub version: &'a str,
    /// The parameters, sent as the query ([`canonical_query`]).
    pub query: &'a [(String, String)],
    /// `x-acs-date`: `2026-11-28T10:00:00Z`.
    pub date: &'a str,
    /// `x-acs-signature-nonce`: used once.
    pub nonce: &'a str,
}

impl RpcRequest<'_> {
    /// The headers to send (every `x-acs-*` and `authorization`; `host` is signed but left to
    /// the HTTP client), signed under `key_id` and `secret`.
    pub fn signed_headers(&self, key_id: &str, secret: &str) -> Vec<(String, String)> {
        let body_sha = sha256_hex(b"");
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.into()),
            ("x-acs-action".into(), self.action.into()),
            ("x-acs-version".into(), self.version.into()),
            ("x-acs-date".into(), self.date.into()),
            ("x-acs-signature-nonce".into(), self.nonce.into()),
            ("x-acs-content-sha256".into(), body_sha.clone()),
        ];
        let (signature, names) = v3_signature(
            secret,
            "POST",
            "/",
            self.query,
            &headers_to_sign(&headers),
            &body_sha,
        );
        headers.retain(|(k, _)| k != "host");
        headers.push((
            "authorization".into(),
            v3_authorization(key_id, &names, &signature),
        ));
        headers
    }
}

/// A parsed V3 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct V3Authorization {
    /// `Credential`: the AccessKeyId.
    pub key_id: String,
    /// `SignedHeaders`: the lower-case names of the headers signed, in order.
    pub signed_headers: Vec<String>,
    /// `Signature`: lower-case hex.
    pub signature: String,
}

/// Reads `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
pub fn parse_v3_authorization(value: &str) -> Option<V3Authorization> {
    let rest = value.strip_prefix(ACS3)?.trim_start();
    let (mut key_id, mut names, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => key_id = Some(v.to_owned()),
            "SignedHeaders" => names = Some(v.split(';').map(str::to_owned).collect()),
            "Signature" => signature = Some(v.to_owned()),
            _ => return None,
        }
    }
    Some(V3Authorization {
        key_id: key_id?,
        signed_headers: names?,
        signature: signature?,
    })
}

/// The V1 (RPC, HMAC-SHA1) signature of `params` (every parameter but `Signature`).
pub fn v1_signature(secret: &str, method: &str, params: &[(String, String)]) -> String {
    let to_sign = format!(
        "{method}&{}&{}",
        percent("/"),
        percent(&canonical_query(params))
    );
    let mut mac =
        Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("HMAC takes any key");
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares two signatures in constant time (for equal lengths; a signature's length is no
/// secret).
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// "Request syntax and signature method V3", the worked example (RunInstances).
    #[test]
    fn v3_reproduces_the_documented_example() {
        let empty = sha256_hex(b"");
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let query = pairs(&[
            ("RegionId", "cn-shanghai"),
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
        ]);
        let headers = pairs(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", &empty),
        ]);
        let (request, names) = canonical_request("POST", "/", &query, &headers, &empty);
        assert_eq!(
            sha256_hex(request.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let (signature, names2) =
            v3_signature("YourAccessKeySecret", "POST", "/", &query, &headers, &empty);
        assert_eq!(names, names2);
        let auth = v3_authorization("YourAccessKeyId", &names, &signature);
        assert_eq!(
            auth,
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        let parsed = parse_v3_authorization(&auth).unwrap();
        assert_eq!(parsed.key_id, "YourAccessKeyId");
        assert_eq!(parsed.signed_headers.len(), 6);
    }

    /// The same example through [`RpcRequest`], as rotor's clients build it.
    #[test]
    fn rpc_requests_sign_as_the_documented_example() {
        let query = pairs(&[
            ("RegionId", "cn-shanghai"),
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
        ]);
        let headers = RpcRequest {
            host: "ecs.cn-shanghai.aliyuncs.com",
            action: "RunInstances",
            version: "2014-05-26",
            query: &query,
            date: "2023-10-26T10:22:32Z",
            nonce: "3156853299f313e23d1673dc12e1703d",
        }
        .signed_headers("YourAccessKeyId", "YourAccessKeySecret");
        assert!(headers.iter().all(|(k, _)| k != "host"));
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.ends_with(
                "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
            ),
            "{auth}"
        );
    }

    /// "Request signatures" (RPC), the worked example (DescribeRegions, secret `testsecret`).
    #[test]
    fn v1_reproduces_the_documented_example() {
        let params = pairs(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]);
        assert_eq!(
            v1_signature("testsecret", "GET", &params),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        // The same request POSTed, as rotor sends it.
        assert_eq!(
            v1_signature("testsecret", "POST", &params),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
