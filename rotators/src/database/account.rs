//! Database accounts: the `{"AccountName","AccountPassword"}` value, the settings a database
//! secret carries (its two account names, database, privilege, password rules), password
//! generation from the OS random source, and the checks on names that keep SQL injection out.

use std::fmt;

use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::rotator::RotateError;
use crate::value::SecretValue;

/// Characters never used in generated passwords by default: they break connection strings.
pub const ALWAYS_EXCLUDED: &str = ":/@\"'\\ ";
const SYMBOLS: &str = "!#%*+-.=?^_~";
/// The length of generated passwords when `--password-length` is not given.
pub const DEFAULT_PASSWORD_LENGTH: usize = 32;
/// The least entropy a password policy may give.
pub const MIN_ENTROPY_BITS: f64 = 128.0;

/// One account and its password. `Debug` never shows the password.
#[derive(Clone)]
pub struct Account {
    /// The account's name on the database.
    pub name: String,
    /// The account's password.
    pub password: SecretString,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AccountJson {
    #[serde(rename = "AccountName")]
    name: String,
    #[serde(rename = "AccountPassword")]
    password: SecretString,
}

impl Account {
    /// An account named `name` with password `password`.
    pub fn new(name: &str, password: &str) -> Self {
        Account {
            name: name.to_owned(),
            password: SecretString::from(password.to_owned()),
        }
    }

    /// Reads a stored `{"AccountName","AccountPassword"}` value.
    pub fn from_value(value: &SecretValue) -> Result<Self, RotateError> {
        let parsed: AccountJson = serde_json::from_slice(value.expose()).map_err(|_| {
            RotateError::fatal("the stored value is not an account (AccountName, AccountPassword)")
        })?;
        Ok(Account {
            name: parsed.name,
            password: parsed.password,
        })
    }

    /// The value rotor stores for this account.
    pub fn to_value(&self) -> SecretValue {
        let text = Zeroizing::new(
            serde_json::json!({"AccountName": self.name, "AccountPassword": self.password.expose_secret()}).to_string(),
        );
        SecretValue::new(text.as_bytes().to_vec())
    }

    /// The account's password, exposed.
    pub fn password(&self) -> &str {
        self.password.expose_secret()
    }
}

/// What a database account may do in its database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Privilege {
    /// Read and change data, and create objects.
    ReadWrite,
    /// Read data only.
    ReadOnly,
    /// Change the schema (DDL) only.
    DDLOnly,
    /// Read and change data (DML), not the schema.
    DMLOnly,
}

impl std::str::FromStr for Privilege {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "readwrite" => Ok(Privilege::ReadWrite),
            "readonly" => Ok(Privilege::ReadOnly),
            "ddlonly" => Ok(Privilege::DDLOnly),
            "dmlonly" => Ok(Privilege::DMLOnly),
            _ => Err(format!(
                "unknown privilege '{s}' (expected ReadWrite, ReadOnly, DDLOnly or DMLOnly)"
            )),
        }
    }
}

/// How generated passwords look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PasswordPolicy {
    /// How many characters a generated password has (16–128).
    pub length: usize,
    /// Characters to leave out besides [`ALWAYS_EXCLUDED`].
    #[serde(default)]
    pub exclude: String,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            length: DEFAULT_PASSWORD_LENGTH,
            exclude: String::new(),
        }
    }
}

impl PasswordPolicy {
    /// The policy `--password-length` and `--exclude-chars` ask for, checked.
    pub fn from_options(
        options: &crate::family::Options,
    ) -> Result<Self, crate::family::SetupError> {
        let mut policy = PasswordPolicy::default();
        if let Some(length) = options.parse::<usize>("password-length")? {
            policy.length = length;
        }
        if let Some(exclude) = options.text("exclude-chars") {
            policy.exclude = exclude.to_owned();
        }
        policy.check().map_err(crate::family::SetupError::Invalid)?;
        Ok(policy)
    }

    /// Checks the policy: 16–128 characters, and enough of each class left to draw from.
    pub fn check(&self) -> Result<(), String> {
        if !(16..=128).contains(&self.length) {
            return Err(format!(
                "password length must be 16 to 128 (got {})",
                self.length
            ));
        }
        let alphabet = self.alphabet();
        for (class, test) in [
            (
                "lower-case letters",
                char::is_ascii_lowercase as fn(&char) -> bool,
            ),
            ("upper-case letters", char::is_ascii_uppercase),
            ("digits", char::is_ascii_digit),
        ] {
            if !alphabet.iter().any(test) {
                return Err(format!("--exclude-chars leaves no {class} for passwords"));
            }
        }
        let bits = self.entropy_bits();
        if bits < MIN_ENTROPY_BITS {
            return Err(format!(
                "passwords of {} characters from an alphabet of {} give {bits:.0} bits of entropy; at least {MIN_ENTROPY_BITS:.0} are needed (longer passwords or fewer --exclude-chars)",
                self.length,
                alphabet.len()
            ));
        }
        Ok(())
    }

    /// Bits of entropy of a generated password: length × log2(alphabet size).
    pub fn entropy_bits(&self) -> f64 {
        self.length as f64 * (self.alphabet().len() as f64).log2()
    }

    fn alphabet(&self) -> Vec<char> {
        ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain(SYMBOLS.chars())
            .filter(|c| !ALWAYS_EXCLUDED.contains(*c) && !self.exclude.contains(*c))
            .collect()
    }

    /// A new password from the operating system's random source, with at least one lower-case
    /// letter, one upper-case letter and one digit.
    pub fn generate(&self) -> SecretString {
        let alphabet = self.alphabet();
        let mut rng = OsRng.unwrap_err();
        loop {
            let password: Zeroizing<String> = Zeroizing::new(
                (0..self.length)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect(),
            );
            let has = |f: fn(&char) -> bool| password.chars().any(|c| f(&c));
            if has(char::is_ascii_lowercase)
                && has(char::is_ascii_uppercase)
                && has(char::is_ascii_digit)
            {
                return SecretString::from(password.to_string());
            }
        }
    }
}

/// A database secret's settings, stored beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DbSettings {
    /// The two accounts a dual-account secret alternates between (`name`, `name_clone` when
    /// rotor created them; any two when imported). Empty for a single account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// The database the accounts work in (`--database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What rotor grants the accounts it creates (`--privilege`; `ReadWrite` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege: Option<Privilege>,
    /// How generated passwords look.
    #[serde(default)]
    pub password: PasswordPolicy,
    /// rotor created the accounts (create mode: `true`), so it may remove them again
    /// (`secret delete --drop-accounts`); imported accounts (`false`) are never removed, nor
    /// those of secrets made before this was recorded (`None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

impl DbSettings {
    /// Reads the settings stored with a secret (`Null` gives the defaults).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, RotateError> {
        if value.is_null() {
            return Ok(DbSettings::default());
        }
        serde_json::from_value(value.clone())
            .map_err(|e| RotateError::fatal(format!("malformed secret settings: {e}")))
    }

    /// The account a rotation moves to from `current`: the other of the pair.
    pub fn partner(&self, current: &str) -> Result<String, RotateError> {
        match self.accounts.as_slice() {
            [a, b] if a == current => Ok(b.clone()),
            [a, b] if b == current => Ok(a.clone()),
            [a, b] => Err(RotateError::fatal(format!(
                "the current account '{current}' is neither '{a}' nor '{b}', the secret's pair"
            ))),
            _ => Err(RotateError::fatal(
                "the secret does not name its two accounts",
            )),
        }
    }
}

/// The clone account's name for a base account name.
pub fn clone_name(base: &str) -> String {
    format!("{base}_clone")
}

/// Checks an account or database name: 1..=`max` of letters, digits and `_`, not starting with a
/// digit. Anything else (quotes, semicolons, spaces) is refused, so names are safe to quote.
pub fn check_identifier(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!(
            "{what} '{}' must be 1 to {max} characters",
            name.escape_debug()
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{what} '{}' may not start with a digit",
            name.escape_debug()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "{what} '{}' contains '{}'; allowed are letters, digits and _",
            name.escape_debug(),
            c.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_the_policy() {
        let p = PasswordPolicy::default().generate();
        let p = p.expose_secret();
        assert_eq!(p.len(), 32);
        assert!(!p.chars().any(|c| ALWAYS_EXCLUDED.contains(c)));
        let strict = PasswordPolicy {
            length: 16,
            exclude: SYMBOLS.into(),
        };
        let q = strict.generate();
        assert!(q.expose_secret().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(PasswordPolicy::default().generate().expose_secret(), p);
        assert!(PasswordPolicy {
            length: 15,
            exclude: String::new()
        }
        .check()
        .is_err());
        assert!(PasswordPolicy {
            length: 129,
            exclude: String::new()
        }
        .check()
        .is_err());
        assert!(PasswordPolicy {
            length: 20,
            exclude: "0123456789".into()
        }
        .check()
        .is_err());
    }

    #[test]
    fn policies_below_128_bits_are_refused_with_the_figure() {
        assert!(PasswordPolicy::default().check().is_ok());
        assert!(PasswordPolicy::default().entropy_bits() > 190.0);
        // 16 characters of the full alphabet: about 99 bits.
        let short = PasswordPolicy {
            length: 16,
            exclude: String::new(),
        };
        let err = short.check().unwrap_err();
        assert!(err.contains("99 bits"), "{err}");
        // Five characters left at the default length: about 74 bits.
        let tiny = PasswordPolicy {
            length: 32,
            exclude: ('d'..='z')
                .chain('B'..='Z')
                .chain('1'..='9')
                .chain(SYMBOLS.chars())
                .collect(),
        };
        assert!(
            tiny.check()
                .unwrap_err()
                .contains("alphabet of 5 give 74 bits"),
            "{:?}",
            tiny.check()
        );
    }

    #[test]
    fn identifiers_refuse_injection() {
        assert!(check_identifier("account", "app_1", 63).is_ok());
        for bad in ["", "a\"b", "a;drop", "a b", "a'b", "1app", "app-x", "ąpp"] {
            assert!(check_identifier("account", bad, 63).is_err(), "{bad}");
        }
        assert!(check_identifier("account", &"a".repeat(27), 26).is_err());
    }

    #[test]
    fn settings_say_who_created_the_accounts_and_older_ones_do_not_know() {
        let old = serde_json::json!({"Accounts": ["app", "app_clone"], "Database": "d"});
        assert_eq!(DbSettings::from_json(&old).unwrap().created, None);
        let made = DbSettings {
            created: Some(true),
            ..Default::default()
        };
        let json = serde_json::to_value(&made).unwrap();
        assert_eq!(json["Created"], true);
        assert_eq!(DbSettings::from_json(&json).unwrap(), made);
    }

    #[test]
    fn partners_and_values() {
        let s = DbSettings {
            accounts: vec!["app".into(), "app_clone".into()],
            ..Default::default()
        };
        assert_eq!(s.partner("app").unwrap(), "app_clone");
        assert_eq!(s.partner("app_clone").unwrap(), "app");
        assert!(s.partner("other").is_err());
        let a = Account::new("app", "s3cret-Value");
        assert!(!format!("{a:?}").contains("s3cret"));
        let back = Account::from_value(&a.to_value()).unwrap();
        assert_eq!(
            (back.name.as_str(), back.password()),
            ("app", "s3cret-Value")
        );
    }
}
