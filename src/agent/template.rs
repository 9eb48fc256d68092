//! Templates: Jinja syntax (minijinja), with one function, `secret(NAME)`. Its result has the
//! value's JSON fields (`secret('db/orders').AccountName`), `.VersionId`, and the whole value
//! as text, `.value` (the only field of a `Generic` secret). Undefined names and fields are
//! errors, never empty text, and nothing is HTML-escaped: a password goes in as it is.
//!
//! A render records every secret the template asked for, so the agent learns what to watch
//! from the templates themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use zeroize::Zeroizing;

use super::client::Fetched;
use super::secrets::Snapshot;

/// What one render gave.
pub struct Rendered {
    /// The text, or why there is none (never a value in the message).
    pub text: Result<Zeroizing<String>, String>,
    /// The secrets the template asked for.
    pub asked: BTreeSet<String>,
}

fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // A file's last newline is the file's, not the template's to drop.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters"),
    );
    env
}

/// Checks `text`'s syntax (at start: a broken template stops the agent before it runs).
pub fn check(label: &str, text: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_named_str(label, text)
        .map(|_| ())
        .map_err(|e| format!("template {label}: {e}"))
}

/// Renders `text` with the values in `snapshot`.
pub fn render(label: &str, text: &str, snapshot: &Snapshot) -> Rendered {
    let asked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut env = environment();
    let values = snapshot.clone();
    let record = asked.clone();
    env.add_function(
        "secret",
        move |name: String| -> Result<Value, minijinja::Error> {
            record.lock().expect("asked set").insert(name.clone());
            let fetched = values.get(&name).ok_or_else(|| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "secret '{}' has no value (yet)",
                        crate::model::printable(&name)
                    ),
                )
            })?;
            Ok(secret_value(fetched))
        },
    );
    let text = env
        .template_from_named_str(label, text)
        .and_then(|t| t.render(()))
        .map(Zeroizing::new)
        // The plain message: the template's name, line and what failed. (The alternate form
        // would add the template's variables, values included.)
        .map_err(|e| format!("template {label}: {e}"));
    let asked = std::mem::take(&mut *asked.lock().expect("asked set"));
    Rendered { text, asked }
}

/// `secret(NAME)`'s result: the JSON value's text fields (not for `Generic` secrets),
/// `VersionId` and `value`.
fn secret_value(f: &Fetched) -> Value {
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    if f.secret_type != "Generic" {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&f.data) {
            for (k, v) in map {
                if let serde_json::Value::String(s) = v {
                    fields.insert(k, Value::from(s));
                }
            }
        }
    }
    fields.insert("VersionId".into(), Value::from(f.version_id.clone()));
    fields.insert("value".into(), Value::from(f.data.as_str()));
    Value::from(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut map = BTreeMap::new();
        for (name, ty, data) in [
            (
                "db/orders",
                "Rds",
                r#"{"AccountName":"orders","AccountPassword":"p{{w"}"#,
            ),
            ("app/token", "Generic", r#"{"AccountName":"not-a-field"}"#),
        ] {
            map.insert(
                name.to_owned(),
                Arc::new(Fetched {
                    name: name.into(),
                    secret_type: ty.into(),
                    version_id: "v7".into(),
                    stages: vec!["ACSCurrent".into()],
                    data_type: "text".into(),
                    create_time: String::new(),
                    data: Zeroizing::new(data.into()),
                }),
            );
        }
        Arc::new(map)
    }

    #[test]
    fn secret_gives_fields_version_and_value() {
        let r = render(
            "t",
            "{{ secret('db/orders').AccountName }}:{{ secret('db/orders').AccountPassword }}@{{ secret('db/orders').VersionId }}\n",
            &snapshot(),
        );
        assert_eq!(r.text.unwrap().as_str(), "orders:p{{w@v7\n");
        assert_eq!(r.asked, BTreeSet::from(["db/orders".to_owned()]));
        let r = render("t", "{{ secret('app/token').value }}", &snapshot());
        assert_eq!(r.text.unwrap().as_str(), r#"{"AccountName":"not-a-field"}"#);
    }

    #[test]
    fn what_is_missing_is_an_error_naming_no_value() {
        let r = render("t", "{{ secret('app/token').AccountName }}", &snapshot());
        let e = r.text.unwrap_err();
        assert!(!e.contains("not-a-field"), "{e}");
        let r = render("t", "{{ secret('db/other').value }}", &snapshot());
        assert!(r.text.unwrap_err().contains("db/other"));
        assert!(r.asked.contains("db/other"));
        let r = render("t", "{{ secret('db/orders').Nope }}", &snapshot());
        let e = r.text.unwrap_err();
        assert!(!e.contains("p{{w"), "{e}");
        assert!(check("t", "{{ secret(").is_err());
    }
}
