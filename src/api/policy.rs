//! AccessKey policies: a list of `ACTION:PATTERN` rules. A rule allows one API action (or `*`,
//! every action) on the secrets whose names match its pattern (`*` matches any run of
//! characters, `/` included; every other character itself). No rule, no access.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The API's actions (KMS API version 2016-01-20).
pub const ACTIONS: [&str; 11] = [
    "GetSecretValue",
    "CreateSecret",
    "PutSecretValue",
    "DescribeSecret",
    "ListSecrets",
    "ListSecretVersionIds",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "UpdateSecretRotationPolicy",
    "DeleteSecret",
    "RestoreSecret",
];

/// The longest pattern, and the most rules a key may hold.
const MAX_PATTERN: usize = 256;
const MAX_RULES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    pub action: String,
    pub pattern: String,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.action, self.pattern)
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
        if action != "*" && !ACTIONS.contains(&action) {
            return Err(Error::invalid(format!(
                "--allow: unknown action '{}' (one of {}, or *)",
                action.escape_debug(),
                ACTIONS.join(", ")
            )));
        }
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
            action: action.to_owned(),
            pattern: pattern.to_owned(),
        })
    }
}

/// A key's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy(pub Vec<Rule>);

impl Policy {
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
    pub fn allows(&self, action: &str, secret: &str) -> bool {
        self.0
            .iter()
            .any(|r| (r.action == "*" || r.action == action) && matches(&r.pattern, secret))
    }

    /// Whether `action` is allowed on some secret (ListSecrets then filters by [`allows`]).
    pub fn allows_any(&self, action: &str) -> bool {
        self.0.iter().any(|r| r.action == "*" || r.action == action)
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
        assert!(p.allows("GetSecretValue", "db/x"));
        assert!(!p.allows("PutSecretValue", "db/x"));
        assert!(p.allows("DeleteSecret", "app/one"));
        assert!(!p.allows("GetSecretValue", "app/two"));
        assert!("Nope:x".parse::<Rule>().is_err());
        assert!("GetSecretValue".parse::<Rule>().is_err());
        assert!("GetSecretValue:a b".parse::<Rule>().is_err());
        assert!(Policy::new(vec![]).is_err());
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
