//! Names and labels checked at construction: secret names, version ids, stages, tags, key
//! names, descriptions and other free text.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

const NAME_MAX: usize = 192;
const VERSION_ID_MAX: usize = 64;
const STAGE_MAX: usize = 64;
const TAG_MAX: usize = 128;
const TAGS_PER_SECRET: usize = 20;
const DESCRIPTION_MAX: usize = 1024;
const KEY_NAME_MAX: usize = 128;

/// A secret's unique name: 1–192 of `A-Z a-z 0-9 _ / + = . @ -`; user names may not start with
/// `acs/` (reserved for names rotor generates).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    /// A name given by a user: the `acs/` prefix is refused.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let name = Self::parse_any(s)?;
        if name.0.starts_with("acs/") {
            return Err(Error::invalid(format!(
                "secret name '{s}' starts with 'acs/', which is reserved"
            )));
        }
        Ok(name)
    }

    /// A name as stored, including rotor's own `acs/` names.
    pub fn parse_any(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::invalid("secret name is empty"));
        }
        if s.chars().count() > NAME_MAX {
            return Err(Error::invalid(format!(
                "secret name is {} characters; the limit is {NAME_MAX}",
                s.chars().count()
            )));
        }
        check_chars(
            "secret name",
            s,
            char::is_ascii_alphanumeric,
            "_/+=.@-",
            "letters, digits and _ / + = . @ -",
        )?;
        Ok(SecretName(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretName {
    type Err = Error;
    /// Any stored name ([`parse_any`](Self::parse_any)); user-made names use [`parse`](Self::parse).
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse_any(s)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version id: 1–64 of `A-Z a-z 0-9 _ - .` (`v1` for a secret's first version by default).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(String);

impl FromStr for VersionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        VersionId::parse(s)
    }
}

impl VersionId {
    /// Checks a version id (length and characters).
    pub fn parse(s: &str) -> Result<Self, Error> {
        check_label("version id", s, VERSION_ID_MAX)?;
        Ok(VersionId(s.to_owned()))
    }

    /// The id rotor gives the `n`th version when the caller names none.
    pub fn numbered(n: i64) -> Self {
        VersionId(format!("v{n}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_label(what: &str, s: &str, max: usize) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    if s.len() > max {
        return Err(Error::invalid(format!(
            "{what} is {} characters; the limit is {max}",
            s.chars().count()
        )));
    }
    check_chars(
        what,
        s,
        char::is_ascii_alphanumeric,
        "_-.",
        "letters, digits and _ - .",
    )
}

/// Refuses `s` if it holds a character that is neither a letter or digit (as `letters` says)
/// nor one of `extra`; `allowed` describes the rule for the message.
fn check_chars(
    what: &str,
    s: &str,
    letters: fn(&char) -> bool,
    extra: &str,
    allowed: &str,
) -> Result<(), Error> {
    match s.chars().find(|c| !(letters(c) || extra.contains(*c))) {
        None => Ok(()),
        Some(c) => Err(Error::invalid(format!(
            "{what} '{}' contains '{}'; allowed are {allowed}",
            printable(s),
            printable(c.encode_utf8(&mut [0; 4]))
        ))),
    }
}

/// A version stage label. The three `ACS` stages are rotor's; custom ones belong to users of
/// generic secrets. A stage is on at most one version of a secret at a time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// The version applications get by default; on exactly one version once a value exists.
    Current,
    /// The version that was current before; on at most one version.
    Previous,
    /// A rotation in flight: created but not yet promoted. Managed by the rotation engine.
    Pending,
    /// A user's own label (generic secrets only).
    Custom(String),
}

impl Stage {
    /// The stage's label (`ACSCurrent`, `ACSPrevious`, `ACSPending`, or the custom one).
    pub fn as_str(&self) -> &str {
        match self {
            Stage::Current => "ACSCurrent",
            Stage::Previous => "ACSPrevious",
            Stage::Pending => "ACSPending",
            Stage::Custom(s) => s,
        }
    }

    /// True for a user's own stage, not one of rotor's `ACS` stages.
    pub fn is_custom(&self) -> bool {
        matches!(self, Stage::Custom(_))
    }
}

impl FromStr for Stage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "ACSCurrent" => Stage::Current,
            "ACSPrevious" => Stage::Previous,
            "ACSPending" => Stage::Pending,
            _ => {
                check_label("stage", s, STAGE_MAX)?;
                if s.to_ascii_lowercase().starts_with("acs") {
                    return Err(Error::invalid(format!(
                        "stage '{s}' is reserved: custom stages may not start with 'ACS'"
                    )));
                }
                Stage::Custom(s.to_owned())
            }
        })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tag: key 1–128 and value 0–128 of letters, digits, space and `/ \ _ - . + = : @`; the key
/// may not start with `aliyun` or `acs:`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The tag's key.
    pub tag_key: String,
    /// The tag's value.
    pub tag_value: String,
}

impl Tag {
    /// A tag, if `key` and `value` pass the rules.
    pub fn new(key: &str, value: &str) -> Result<Self, Error> {
        if key.is_empty() {
            return Err(Error::invalid("tag key is empty"));
        }
        check_tag_text("tag key", key)?;
        check_tag_text("tag value", value)?;
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("aliyun") || lower.starts_with("acs:") {
            return Err(Error::invalid(format!(
                "tag key '{key}' starts with a reserved prefix ('aliyun' or 'acs:')"
            )));
        }
        Ok(Tag {
            tag_key: key.to_owned(),
            tag_value: value.to_owned(),
        })
    }

    /// Parses the CLI form `KEY=VALUE` (split at the first `=`); also its `FromStr`.
    pub fn parse_pair(s: &str) -> Result<Self, Error> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "tag '{}' is not of the form KEY=VALUE",
                printable(s)
            ))
        })?;
        Tag::new(k, v)
    }
}

impl FromStr for Tag {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Tag::parse_pair(s)
    }
}

fn check_tag_text(what: &str, s: &str) -> Result<(), Error> {
    let n = s.chars().count();
    if n > TAG_MAX {
        return Err(Error::invalid(format!(
            "{what} is {n} characters; the limit is {TAG_MAX}"
        )));
    }
    check_chars(
        what,
        s,
        |c| c.is_alphanumeric(),
        " /\\_-.+=:@",
        "letters, digits, space and / \\ _ - . + = : @",
    )
}

/// Checks a secret's full tag set: at most 20, keys unique.
pub fn check_tags(tags: &[Tag]) -> Result<(), Error> {
    if tags.len() > TAGS_PER_SECRET {
        return Err(Error::invalid(format!(
            "{} tags given; a secret may have at most {TAGS_PER_SECRET}",
            tags.len()
        )));
    }
    let mut keys: Vec<&str> = tags.iter().map(|t| t.tag_key.as_str()).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::invalid(format!("tag key '{}' is given twice", w[0])));
    }
    Ok(())
}

/// Checks a description: at most 1,024 characters.
pub fn check_description(s: &str) -> Result<(), Error> {
    let n = s.chars().count();
    if n > DESCRIPTION_MAX {
        return Err(Error::invalid(format!(
            "description is {n} characters; the limit is {DESCRIPTION_MAX}"
        )));
    }
    check_free_text("description", s)
}

/// True for characters that can rewrite a terminal or reorder or hide what it (or a page)
/// shows: C0 and C1 controls, DEL, the line and paragraph separators (U+2028, U+2029: line
/// breaks to JavaScript and some terminals), and the Unicode format characters (category Cf:
/// the bidirectional marks, embeddings, overrides and isolates, zero-width characters, the
/// byte-order mark, soft hyphen, interlinear annotations, tag characters…).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
            | '\u{0890}'..='\u{0891}' | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Refuses control characters and bidi overrides in free text (descriptions, URLs): stored,
/// they would reach an operator's terminal.
pub fn check_free_text(what: &str, s: &str) -> Result<(), Error> {
    match s.chars().find(|c| is_unsafe_char(*c)) {
        Some(c) => Err(Error::invalid(format!(
            "{what} contains the control character U+{:04X}; control, format and line-separator characters are not allowed",
            c as u32
        ))),
        None => Ok(()),
    }
}

/// `s` on one line, every control character and bidi override escaped (`\n`, `\r`, `\t`,
/// otherwise `\u{…}`): for human output of text an older store may hold, and for errors that
/// show a refused value.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| match c {
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                c if is_unsafe_char(c) => format!("\\u{{{:x}}}", c as u32),
                c => c.to_string(),
            })
            .collect(),
    )
}

/// Checks a master key (CMK) name: 1–128 of letters, digits and `_ - . /`.
pub fn check_key_name(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > KEY_NAME_MAX {
        return Err(Error::invalid(format!(
            "key name must be 1 to {KEY_NAME_MAX} characters"
        )));
    }
    check_chars(
        "key name",
        s,
        char::is_ascii_alphanumeric,
        "_-./",
        "letters, digits and _ - . /",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_refuse_separators_and_format_characters() {
        assert!(check_description("a plain description, café ✓").is_ok());
        for c in [
            '\u{2028}',
            '\u{2029}',
            '\u{200B}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2060}',
            '\u{E0041}',
            '\u{202E}',
            '\u{7}',
            '\u{85}',
        ] {
            let text = format!("before{c}after");
            let refused = check_description(&text).unwrap_err().to_string();
            assert!(
                refused.contains(&format!("U+{:04X}", c as u32)),
                "{refused}"
            );
            assert!(!printable(&text).contains(c), "{c:?} is escaped in output");
        }
    }

    #[test]
    fn secret_names() {
        assert!(SecretName::parse("db/prod-app_1+x=y.z@w").is_ok());
        assert!(SecretName::parse(&"a".repeat(192)).is_ok());
        assert!(SecretName::parse(&"a".repeat(193)).is_err());
        assert!(SecretName::parse("has space").is_err());
        assert!(SecretName::parse("acs/ram/user").is_err());
        assert!(SecretName::parse_any("acs/ram/user").is_ok());
        assert!(SecretName::parse("").is_err());
    }

    #[test]
    fn stages() {
        assert_eq!("ACSCurrent".parse::<Stage>().unwrap(), Stage::Current);
        assert_eq!(
            "blue".parse::<Stage>().unwrap(),
            Stage::Custom("blue".into())
        );
        assert!("ACSOther".parse::<Stage>().is_err());
        assert!("with space".parse::<Stage>().is_err());
    }

    #[test]
    fn tags() {
        assert!(Tag::parse_pair("team=platform / core:x@y").is_ok());
        assert!(Tag::parse_pair("aliyunx=1").is_err());
        assert!(Tag::parse_pair("acs:x=1").is_err());
        assert!(Tag::parse_pair(&format!("{}=v", "k".repeat(129))).is_err());
        assert!(Tag::parse_pair(&format!("k={}", "v".repeat(129))).is_err());
        assert!(Tag::parse_pair("novalue").is_err());
        let many: Vec<Tag> = (0..21)
            .map(|i| Tag::new(&format!("k{i}"), "v").unwrap())
            .collect();
        assert!(check_tags(&many[..20]).is_ok());
        assert!(check_tags(&many).is_err());
    }
}
