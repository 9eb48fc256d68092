//! Who may do what through the API: the KMS actions ([`Action`]) and the policies AccessKeys
//! carry, lists of `ACTION:PATTERN` rules. A rule allows one action (or `*`, every action) on
//! the secrets whose names match its pattern (`*` matches any run of characters, `/` included;
//! every other character itself). No rule, no access.
//!
//! The store keeps each key's policy and the API checks requests against it: both use this
//! module, which uses neither.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An action of the KMS API (version 2016-01-20), named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Reads a version's value.
    GetSecretValue,
    /// Creates a Generic secret.
    CreateSecret,
    /// Puts a new version.
    PutSecretValue,
    /// Reads a secret's metadata.
    DescribeSecret,
    /// Lists secrets.
    ListSecrets,
    /// Lists a secret's versions.
    ListSecretVersionIds,
    /// Moves a stage between versions.
    UpdateSecretVersionStage,
    /// Rotates a secret now.
    RotateSecret,
    /// Turns automatic rotation on or off.
    UpdateSecretRotationPolicy,
    /// Deletes a secret, after a recovery window or at once.
    DeleteSecret,
    /// Cancels a scheduled deletion.
    RestoreSecret,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 11] = [
        Action::GetSecretValue,
        Action::CreateSecret,
        Action::PutSecretValue,
        Action::DescribeSecret,
        Action::ListSecrets,
        Action::ListSecretVersionIds,
        Action::UpdateSecretVersionStage,
        Action::RotateSecret,
        Action::UpdateSecretRotationPolicy,
        Action::DeleteSecret,
        Action::RestoreSecret,
    ];

    /// The action's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::GetSecretValue => "GetSecretValue",
            Action::CreateSecret => "CreateSecret",
            Action::PutSecretValue => "PutSecretValue",
            Action::DescribeSecret => "DescribeSecret",
            Action::ListSecrets => "ListSecrets",
            Action::ListSecretVersionIds => "ListSecretVersionIds",
            Action::UpdateSecretVersionStage => "UpdateSecretVersionStage",
            Action::RotateSecret => "RotateSecret",
            Action::UpdateSecretRotationPolicy => "UpdateSecretRotationPolicy",
            Action::DeleteSecret => "DeleteSecret",
            Action::RestoreSecret => "RestoreSecret",
        }
    }

    /// The action named `name` exactly (case matters, as on the wire), if any.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Every action's wire name.
    pub fn names() -> [&'static str; 11] {
        Action::ALL.map(Action::as_str)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest pattern, and the most rules a key may hold.
const MAX_PATTERN: usize = 256;
const MAX_RULES: usize = 64;

/// One `ACTION:PATTERN` rule. Stored as `{"Action","Pattern"}`, the action `*` for every one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StoredRule", try_from = "StoredRule")]
pub struct Rule {
    /// The action allowed; `None` for every action (`*`).
    pub action: Option<Action>,
    /// The secret names it covers: a glob where `*` matches any run of characters.
    pub pattern: String,
}

impl Rule {
    fn covers(&self, action: Action) -> bool {
        self.action.is_none_or(|a| a == action)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.action {
            Some(a) => write!(f, "{a}:{}", self.pattern),
            None => write!(f, "*:{}", self.pattern),
        }
    }
}

/// A rule as the store keeps it (JSON).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoredRule {
    action: String,
    pattern: String,
}

impl From<Rule> for StoredRule {
    fn from(rule: Rule) -> StoredRule {
        StoredRule {
            action: rule.action.map_or("*", Action::as_str).to_owned(),
            pattern: rule.pattern,
        }
    }
}

impl TryFrom<StoredRule> for Rule {
    type Error = String;

    fn try_from(stored: StoredRule) -> std::result::Result<Rule, String> {
        let action = match stored.action.as_str() {
            "*" => None,
            name => Some(
                Action::from_name(name)
                    .ok_or_else(|| format!("unknown action '{}'", name.escape_debug()))?,
            ),
        };
        Ok(Rule {
            action,
            pattern: stored.pattern,
        })
    }
}

impl std::str::FromStr for Rule {
    type Err = Error;

    /// `GetSecretValue:db/*`, `*:app/*`.
    fn from_str(text: &str) -> Result<Rule> {
        let (action, pattern) = text.split_once(':').ok_or_else(|| {
            Error::invalid(format!(
                "--allow '{}' is not ACTION:PATTERN (e.g. GetSecretValue:db/*)",
                text.escape_debug()
            ))
        })?;
        let action = match action {
            "*" => None,
            name => Some(Action::from_name(name).ok_or_else(|| {
                Error::invalid(format!(
                    "--allow: unknown action '{}' (one of {}, or *)",
                    name.escape_debug(),
                    Action::names().join(", ")
                ))
            })?),
        };
        if pattern.is_empty()
            || pattern.len() > MAX_PATTERN
            || pattern.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(Error::invalid(format!(
                "--allow: the pattern of '{}' must be 1 to {MAX_PATTERN} characters without spaces or control characters",
                text.escape_debug()
            )));
        }
        Ok(Rule {
            action,
            pattern: pattern.to_owned(),
        })
    }
}

/// A key's rules: an action on a secret is allowed when some rule covers both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy(pub Vec<Rule>);

impl Policy {
    /// A policy of 1 to 64 rules.
    pub fn new(rules: Vec<Rule>) -> Result<Policy> {
        if rules.is_empty() {
            return Err(Error::invalid(
                "an access key needs at least one --allow ACTION:PATTERN rule",
            ));
        }
        if rules.len() > MAX_RULES {
            return Err(Error::invalid(format!(
                "an access key holds at most {MAX_RULES} rules"
            )));
        }
        Ok(Policy(rules))
    }

    /// Whether `action` is allowed on `secret`.
    pub fn allows(&self, action: Action, secret: &str) -> bool {
        self.0
            .iter()
            .any(|r| r.covers(action) && matches(&r.pattern, secret))
    }

    /// Whether `action` is allowed on some secret (ListSecrets then filters by
    /// [`Policy::allows`]).
    pub fn allows_any(&self, action: Action) -> bool {
        self.0.iter().any(|r| r.covers(action))
    }
}

/// Glob match with `*` only, iteratively (no backtracking blow-up: linear in practice,
/// O(n·m) at worst).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("db/*", "db/app"));
        assert!(matches("db/*", "db/a/b"));
        assert!(!matches("db/*", "dbx/app"));
        assert!(matches("*", ""));
        assert!(matches("*app*", "db/app/x"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
        // Pathological patterns stay fast.
        let long = "a".repeat(200);
        assert!(!matches(&"*a".repeat(100), &format!("{long}b")));
    }

    #[test]
    fn rules_parse_and_allow() {
        let p = Policy::new(vec![
            "GetSecretValue:db/*".parse().unwrap(),
            "*:app/one".parse().unwrap(),
        ])
        .unwrap();
        assert!(p.allows(Action::GetSecretValue, "db/x"));
        assert!(!p.allows(Action::PutSecretValue, "db/x"));
        assert!(p.allows(Action::DeleteSecret, "app/one"));
        assert!(!p.allows(Action::GetSecretValue, "app/two"));
        assert!("Nope:x".parse::<Rule>().is_err());
        assert!("GetSecretValue".parse::<Rule>().is_err());
        assert!("GetSecretValue:a b".parse::<Rule>().is_err());
        assert!(Policy::new(vec![]).is_err());
    }

    #[test]
    fn actions_parse_by_their_exact_wire_names() {
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_name("getsecretvalue"), None);
        assert_eq!(Action::from_name("*"), None);
        assert_eq!(Action::names().len(), 11);
    }

    /// The JSON the store keeps is the one it always kept.
    #[test]
    fn rules_keep_their_stored_form() {
        let p = Policy::new(vec![
            "GetSecretValue:db/*".parse().unwrap(),
            "*:app/*".parse().unwrap(),
        ])
        .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"[{"Action":"GetSecretValue","Pattern":"db/*"},{"Action":"*","Pattern":"app/*"}]"#
        );
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
        assert_eq!(p.0[1].to_string(), "*:app/*");
    }

    /// The obvious recursive matcher, for comparison on short inputs.
    fn reference(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_matches_like_the_obvious_matcher(p in "[ab*/]{0,8}", n in "[ab/]{0,10}") {
            let (pc, nc): (Vec<char>, Vec<char>) = (p.chars().collect(), n.chars().collect());
            proptest::prop_assert_eq!(matches(&p, &n), reference(&pc, &nc));
        }

        #[test]
        fn any_rule_text_parses_or_is_refused(text in ".{0,300}") {
            let _ = text.parse::<Rule>();
        }
    }
}
