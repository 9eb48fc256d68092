//! Secret types and sub-types, and the rotation bounds that go with each.
//!
//! The names follow the cloud KMS the product is modelled on (`Rds`, `RAMCredentials`, ...), so
//! SDK users see the strings they know. Parsing is case-insensitive; display is canonical.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// What a secret holds, which decides its value format and how it rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretType {
    /// Free text or binary put by users; never rotated automatically.
    Generic,
    /// A MySQL or PostgreSQL account.
    Rds,
    /// A PolarDB (MySQL or PostgreSQL flavour) account pair.
    PolarDB,
    /// A Redis ACL user pair.
    Redis,
    /// A cloud RAM user's AccessKey pair.
    RAMCredentials,
    /// A host user's password or SSH key pair.
    ECS,
}

/// How a secret of a given type is managed on its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubType {
    /// Two accounts, `name` and `name_clone`, alternated on each rotation.
    DoubleUsers,
    /// One account whose password changes in place.
    SingleUser,
    /// A host user's password.
    Password,
    /// A host user's SSH key pair.
    SSHKey,
}

/// Bad type or sub-type input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindError {
    /// The secret type is not one rotor knows.
    #[error(
        "unknown secret type '{0}' (expected Generic, Rds, PolarDB, Redis, RAMCredentials or ECS)"
    )]
    UnknownType(String),
    /// The sub-type is not one rotor knows.
    #[error("unknown sub-type '{0}' (expected DoubleUsers, SingleUser, Password or SSHKey)")]
    UnknownSubType(String),
    /// The type takes no sub-type, but one was given.
    #[error("secret type {ty} does not take a sub-type (got {sub})")]
    NoSubType {
        /// The secret type.
        ty: SecretType,
        /// The sub-type given.
        sub: SubType,
    },
    /// The type does not accept this sub-type.
    #[error("secret type {ty} does not support sub-type {sub} (expected {expected})")]
    WrongSubType {
        /// The secret type.
        ty: SecretType,
        /// The sub-type given.
        sub: SubType,
        /// The sub-types the type accepts, in words.
        expected: &'static str,
    },
}

impl SecretType {
    /// Every secret type, in the order help lists them.
    pub const ALL: [SecretType; 6] = [
        SecretType::Generic,
        SecretType::Rds,
        SecretType::PolarDB,
        SecretType::Redis,
        SecretType::RAMCredentials,
        SecretType::ECS,
    ];

    /// The canonical name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Generic => "Generic",
            SecretType::Rds => "Rds",
            SecretType::PolarDB => "PolarDB",
            SecretType::Redis => "Redis",
            SecretType::RAMCredentials => "RAMCredentials",
            SecretType::ECS => "ECS",
        }
    }

    /// Sub-types this type accepts, the first being the default; empty when it takes none.
    pub fn sub_types(self) -> &'static [SubType] {
        match self {
            SecretType::Generic | SecretType::RAMCredentials => &[],
            SecretType::Rds => &[SubType::DoubleUsers, SubType::SingleUser],
            SecretType::PolarDB => &[SubType::DoubleUsers],
            // SingleUser holds a Redis target's admin account (often the default user).
            SecretType::Redis => &[SubType::DoubleUsers, SubType::SingleUser],
            SecretType::ECS => &[SubType::Password, SubType::SSHKey],
        }
    }

    /// Allowed automatic rotation intervals, or `None` when the type never rotates automatically.
    pub fn rotation_bounds(self) -> Option<(Duration, Duration)> {
        let (min, max) = match self {
            SecretType::Generic => return None,
            SecretType::Rds | SecretType::PolarDB | SecretType::Redis => (6 * HOUR, 365 * DAY),
            SecretType::RAMCredentials => (7 * DAY, 365 * DAY),
            SecretType::ECS => (HOUR, 365 * DAY),
        };
        Some((Duration::from_secs(min), Duration::from_secs(max)))
    }
}

impl SubType {
    /// The canonical name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SubType::DoubleUsers => "DoubleUsers",
            SubType::SingleUser => "SingleUser",
            SubType::Password => "Password",
            SubType::SSHKey => "SSHKey",
        }
    }
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SubType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecretType {
    type Err = KindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| KindError::UnknownType(s.to_owned()))
    }
}

impl FromStr for SubType {
    type Err = KindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            SubType::DoubleUsers,
            SubType::SingleUser,
            SubType::Password,
            SubType::SSHKey,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| KindError::UnknownSubType(s.to_owned()))
    }
}

/// A type with its (resolved) sub-type: the pair that picks a value format and a rotator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecretKind {
    /// The secret type.
    pub ty: SecretType,
    /// The sub-type, once resolved; `None` for a type that takes none.
    pub sub: Option<SubType>,
}

impl SecretKind {
    /// Checks `sub` against `ty`, filling in the type's default sub-type when none is given.
    pub fn new(ty: SecretType, sub: Option<SubType>) -> Result<Self, KindError> {
        let allowed = ty.sub_types();
        let sub = match (sub, allowed.first()) {
            (None, default) => default.copied(),
            (Some(sub), None) => return Err(KindError::NoSubType { ty, sub }),
            (Some(sub), Some(_)) if allowed.contains(&sub) => Some(sub),
            (Some(sub), Some(_)) => {
                let expected = match ty {
                    SecretType::Rds | SecretType::Redis => "DoubleUsers or SingleUser",
                    SecretType::ECS => "Password or SSHKey",
                    _ => "DoubleUsers",
                };
                return Err(KindError::WrongSubType { ty, sub, expected });
            }
        };
        Ok(SecretKind { ty, sub })
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub {
            Some(sub) => write!(f, "{}/{}", self.ty, sub),
            None => write!(f, "{}", self.ty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_defaults_sub_types() {
        assert_eq!("rds".parse::<SecretType>().unwrap(), SecretType::Rds);
        assert_eq!(
            "ramcredentials".parse::<SecretType>().unwrap(),
            SecretType::RAMCredentials
        );
        let k = SecretKind::new(SecretType::Rds, None).unwrap();
        assert_eq!(k.sub, Some(SubType::DoubleUsers));
        let k = SecretKind::new(SecretType::ECS, Some(SubType::SSHKey)).unwrap();
        assert_eq!(k.to_string(), "ECS/SSHKey");
        assert_eq!(
            SecretKind::new(SecretType::Generic, None).unwrap().sub,
            None
        );
    }

    #[test]
    fn refuses_sub_types_that_do_not_fit() {
        assert!(matches!(
            SecretKind::new(SecretType::Generic, Some(SubType::SingleUser)),
            Err(KindError::NoSubType { .. })
        ));
        assert!(matches!(
            SecretKind::new(SecretType::PolarDB, Some(SubType::SingleUser)),
            Err(KindError::WrongSubType { .. })
        ));
        assert!("Vault".parse::<SecretType>().is_err());
    }

    #[test]
    fn rotation_bounds_follow_the_brief() {
        assert_eq!(SecretType::Generic.rotation_bounds(), None);
        let (min, max) = SecretType::ECS.rotation_bounds().unwrap();
        assert_eq!((min.as_secs(), max.as_secs()), (3600, 365 * 86400));
        let (min, _) = SecretType::RAMCredentials.rotation_bounds().unwrap();
        assert_eq!(min.as_secs(), 7 * 86400);
    }
}
