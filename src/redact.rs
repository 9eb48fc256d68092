//! The one way rotor shows a URL that may carry credentials, for the store, targets and
//! webhooks alike. URLs are read with the `url` crate — the parser sqlx and reqwest use, so what
//! is hidden is what they would send. A password in the user-info and every query parameter
//! whose name says it is a credential (`password`, `sslpassword`, `token`, …) become `***`; a
//! webhook shows only where it goes, since many carry a token in the path. A URL that does not
//! parse is never echoed: only its scheme is shown.

use std::borrow::Cow;

use url::Url;

/// The mask put where a credential was.
const MASK: &str = "***";

/// Words that make a query parameter a credential wherever they appear in its name
/// (`password`, `sslpassword`, `db_pass`, `pwd`, `client_secret`, `access_token`, `auth`).
const CREDENTIAL_WORDS: [&str; 6] = ["pass", "pwd", "secret", "token", "auth", "credential"];

/// Names that are credentials as a whole: key parameters that hold a key, not a key file's path
/// (`sslkey`, `ssl-key` name a file and stay visible).
const CREDENTIAL_NAMES: [&str; 6] = [
    "key",
    "apikey",
    "accesskey",
    "privatekey",
    "sig",
    "signature",
];

/// True if a query parameter named `name` carries a credential.
pub fn is_credential_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let bare: String = name.chars().filter(|c| !matches!(c, '_' | '-')).collect();
    CREDENTIAL_WORDS.iter().any(|w| name.contains(w)) || CREDENTIAL_NAMES.contains(&bare.as_str())
}

/// The names of `url`'s query parameters that carry a credential, percent-decoded (so
/// `pass%77ord` is found as `password`).
pub fn credential_params(url: &str) -> Vec<String> {
    let query = url
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or_default())
        .unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(name, _)| name.into_owned())
        .filter(|name| is_credential_param(name))
        .collect()
}

/// A store URL for messages and `config check`: the account stays, its password and any
/// credential in the query are masked (`postgres://app@db/rotor?sslpassword=***`).
pub fn store_url(url: &str) -> String {
    masked(url, |u| {
        let _ = u.set_password(None);
    })
}

/// `host:port` of a store URL, for messages about reaching it (never its account).
pub fn store_host(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}", u.host_str().unwrap_or_default())
        }
        Ok(_) => store_url(url),
        Err(_) => unparseable(url),
    }
}

/// A target URL as `target list` shows it: an account or password a URL from an older store
/// may still carry becomes `***@`, credentials in the query `***`.
pub fn target_url(url: &str) -> String {
    masked(url, |u| {
        let _ = u.set_password(None);
        let _ = u.set_username(MASK);
    })
}

/// A webhook URL for logs and `config check`: scheme, host and port, and `/…` if there is a
/// path or query — many webhook URLs carry a token there.
pub fn webhook_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!(
                "{}://{}{port}{rest}",
                u.scheme(),
                u.host_str().unwrap_or_default()
            )
        }
        Err(_) => unparseable(url),
    }
}

/// `url` with `hide_account` applied if it has an account, and credential query values masked.
/// A URL with nothing to hide is shown as given (if printable), so displays do not change
/// merely by being parsed (`https://host` stays without the `/` the parser adds).
fn masked(url: &str, hide_account: impl FnOnce(&mut Url)) -> String {
    let Ok(mut u) = Url::parse(url) else {
        return unparseable(url);
    };
    let mut hidden = false;
    if !u.username().is_empty() || u.password().is_some() {
        let before = u.as_str().to_owned();
        hide_account(&mut u);
        hidden = u.as_str() != before;
    }
    if let Some(Cow::Owned(query)) = u.query().map(mask_query) {
        u.set_query(Some(&query));
        hidden = true;
    }
    if !hidden && !url.chars().any(crate::model::is_unsafe_char) {
        return url.to_owned();
    }
    u.to_string()
}

/// `query` with the value of each credential parameter replaced by `***`; the rest as given.
fn mask_query(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default();
        let decoded = url::form_urlencoded::parse(name.as_bytes())
            .next()
            .map(|(n, _)| n.into_owned())
            .unwrap_or_default();
        is_credential_param(&decoded)
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            if secret(pair) {
                format!("{}={MASK}", pair.split('=').next().unwrap_or_default())
            } else {
                pair.to_owned()
            }
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// What is shown of a URL that does not parse: its scheme, if it has a plain one.
fn unparseable(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{scheme}://… (not a URL)")
        }
        _ => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_keep_the_account_and_hide_every_password() {
        assert_eq!(
            store_url("postgres://app:Pw1@db.example.com/rotor"),
            "postgres://app@db.example.com/rotor"
        );
        assert_eq!(
            store_url("postgres://app@db:5432/r?sslmode=require&password=Pw2&sslpassword=Pw3"),
            "postgres://app@db:5432/r?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            store_url("postgres://db/r?pass%77ord=Pw4"),
            "postgres://db/r?pass%77ord=***"
        );
        assert_eq!(store_url("postgres://db/r"), "postgres://db/r");
        assert_eq!(
            store_host("postgres://u:Pw@127.0.0.1:1/r?password=x"),
            "127.0.0.1:1"
        );
        assert_eq!(store_host("postgres://[::1]/r"), "[::1]");
    }

    #[test]
    fn target_urls_mask_the_account_and_query_credentials() {
        assert_eq!(
            target_url("postgres://admin:Hunter2@db:5432/app?sslmode=require&sslpassword=Hunter2"),
            "postgres://***@db:5432/app?sslmode=require&sslpassword=***"
        );
        assert_eq!(target_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            target_url("https://ram.aliyuncs.com"),
            "https://ram.aliyuncs.com"
        );
        assert_eq!(
            target_url("mysql://h/db?ssl-key=/k.pem&api_key=K&sslkey=/k"),
            "mysql://h/db?ssl-key=/k.pem&api_key=***&sslkey=/k"
        );
        assert_eq!(
            credential_params("mysql://h/db?ssl-mode=VERIFY_CA&password=x&pwd=y&token=z"),
            ["password", "pwd", "token"]
        );
    }

    #[test]
    fn webhooks_show_only_where_they_go() {
        assert_eq!(
            webhook_url("https://u:p@hooks.example.com:8443/T0k3n?sig=x"),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(
            webhook_url("https://hooks.example.com"),
            "https://hooks.example.com"
        );
    }

    #[test]
    fn what_does_not_parse_is_never_echoed() {
        for (url, shown) in [
            ("postgres://u:Secret@[nope/db", "postgres://… (not a URL)"),
            ("Secret-only", "(not a URL)"),
            ("ev il://Secret@h", "(not a URL)"),
        ] {
            assert_eq!(store_url(url), shown);
            assert_eq!(target_url(url), shown);
            assert_eq!(webhook_url(url), shown);
            assert!(!store_host(url).contains("Secret"));
        }
    }
}
