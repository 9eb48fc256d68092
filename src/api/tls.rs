//! The installation's API certificate authority: `rotor init` makes a CA key (0600) and
//! certificate in the data directory; a server signs itself a fresh certificate with it at
//! every start (for `localhost`, `127.0.0.1`, `::1` and each `--api-hostname`). Clients pin the
//! CA certificate (`rotor ca`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::error::{Error, Result};
use crate::files;

/// The CA certificate's file in the data directory (clients pin it).
pub const CA_CERT: &str = "api-ca.crt";
/// The CA key's file in the data directory (mode 0600).
pub const CA_KEY: &str = "api-ca.key";

/// The CA's fixed identity: the same name and key always make the same issuer.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "rotor");
    dn.push(DnType::CommonName, "rotor API CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    params
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CA_KEY), dir.join(CA_CERT))
}

fn tls_error(e: impl std::fmt::Display) -> Error {
    Error::config(format!("API certificate: {e}"))
}

/// Creates the CA in `dir` unless it exists (`rotor init`). Returns whether it was created.
pub fn ensure_ca(dir: &Path) -> Result<bool> {
    let (key_path, cert_path) = paths(dir);
    if key_path.exists() {
        files::check(&key_path, "API CA key", files::Kind::Private)?;
        return Ok(false);
    }
    let key = KeyPair::generate().map_err(tls_error)?;
    let cert = ca_params().self_signed(&key).map_err(tls_error)?;
    let pem = zeroize::Zeroizing::new(key.serialize_pem());
    files::create_private(&key_path, "API CA key", pem.as_bytes())?;
    files::create_private(&cert_path, "API CA certificate", cert.pem().as_bytes())?;
    Ok(true)
}

/// The CA certificate (PEM) clients pin.
pub fn ca_pem(dir: &Path) -> Result<String> {
    let (_, cert_path) = paths(dir);
    std::fs::read_to_string(&cert_path).map_err(|e| {
        Error::config(format!(
            "cannot read the API CA certificate {}: {e} (rotor init creates it)",
            cert_path.display()
        ))
    })
}

/// A rustls server configuration with a certificate for `hostnames` (and the loopback names)
/// signed by the CA in `dir`.
pub fn server_config(dir: &Path, hostnames: &[String]) -> Result<Arc<rustls::ServerConfig>> {
    let (key_path, _) = paths(dir);
    if !key_path.exists() {
        return Err(Error::config(format!(
            "no API certificate authority in {}; run: rotor init",
            dir.display()
        )));
    }
    let pem = files::read_checked(&key_path, "API CA key", files::Kind::Private, 64 * 1024)?;
    let pem = std::str::from_utf8(&pem).map_err(|_| tls_error("the CA key is not PEM text"))?;
    let ca_key = KeyPair::from_pem(pem).map_err(tls_error)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(hostnames.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(tls_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "rotor API");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(397);
    let key = KeyPair::generate().map_err(tls_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls_error)?;
    let ca_der = ca_params()
        .self_signed(issuer.key())
        .map_err(tls_error)?
        .der()
        .clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(tls_error)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_der], key_der)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
