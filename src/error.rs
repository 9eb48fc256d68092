//! The engine's error type. Messages are one line, start lower-case, name what they are about
//! and never contain a secret value; each kind maps to an exit code scripts can rely on.

/// What went wrong, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule (name, tag, value format, bounds, ...).
    #[error("{0}")]
    Invalid(String),
    /// A secret, version, stage or key that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request that contradicts the store's state (existing name, version id reuse, ...);
    /// its [`ConflictKind`] says how.
    #[error("{0}")]
    Conflict(Conflict),
    /// The secret is being rotated by another claim right now (a manual rotation, the API's
    /// `RotateSecret` or a worker): a second rotation is refused, never run beside the first.
    #[error("{0}")]
    InProgress(String),
    /// This worker no longer holds the lease of the secret it was rotating (it expired and may
    /// have passed to another worker): stop, the new holder resumes.
    #[error("{0}")]
    Lease(String),
    /// A target refused or could not be reached (account creation, import checks, target check).
    #[error("{0}")]
    Target(String),
    /// A rotation that did not complete (its reason is on the secret too).
    #[error("{0}")]
    Rotation(String),
    /// A ciphertext that does not open, or a master key that does not fit the store.
    #[error("{0}")]
    Crypto(String),
    /// Setup problems: data directory, key file, store URL.
    #[error("{0}")]
    Config(String),
    /// The database failed.
    #[error("store failed: {0}")]
    Store(#[from] sqlx::Error),
    /// The store's schema could not be brought up to date.
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A refusal because of the store's state: its kind, for callers that answer each differently
/// (the API's KMS codes), and its message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Conflict {
    /// What the conflict is about.
    pub kind: ConflictKind,
    /// The one-line message.
    pub message: String,
}

/// What a [`Conflict`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// A name or version id already taken: a secret, a version id with other data, a key, a
    /// target, an access key.
    Exists,
    /// The secret's deletion state refuses the request: it is scheduled for deletion (in its
    /// recovery window), or, to be restored, it is not.
    DeleteWindow,
    /// Any other state: a stage not on the version named, a secret being rotated, a target
    /// still in use, another worker on the SQLite store, ...
    State,
}

/// Exit codes of the `rotor` binary, by error kind (documented in the README).
pub mod exit {
    /// Any other failure (store, configuration, setup).
    pub const FAILURE: i32 = 1;
    /// Invalid input or usage ([`Error::Invalid`](super::Error::Invalid)).
    pub const INVALID: i32 = 2;
    /// Something that does not exist ([`Error::NotFound`](super::Error::NotFound)).
    pub const NOT_FOUND: i32 = 3;
    /// A refusal because of the store's state, a rotation in progress or a lost lease.
    pub const CONFLICT: i32 = 4;
    /// A ciphertext or master key problem ([`Error::Crypto`](super::Error::Crypto)).
    pub const CRYPTO: i32 = 5;
    /// A rotation that did not complete ([`Error::Rotation`](super::Error::Rotation)).
    pub const ROTATION_FAILED: i32 = 6;
    /// A target that refused or could not be reached ([`Error::Target`](super::Error::Target)).
    pub const TARGET: i32 = 7;
}

/// `Code`s of failures that are not an [`Error`] (see [`Error::code`]).
pub mod code {
    /// Input that breaks a rule (exit 2).
    pub const INVALID: &str = "InvalidInput";
    /// A command line clap refused (exit 2).
    pub const USAGE: &str = "InvalidUsage";
    /// A configuration file or setting that does not parse or validate (exit 2).
    pub const CONFIGURATION: &str = "InvalidConfiguration";
    /// Standard output could not be written (exit 1).
    pub const OUTPUT: &str = "OutputFailed";
}

impl Error {
    /// An [`Error::Invalid`] with this message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// An [`Error::NotFound`] with this message.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    /// A [`ConflictKind::State`] conflict.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::conflict_of(ConflictKind::State, msg)
    }

    /// A [`ConflictKind::Exists`] conflict: `msg` names what is already taken.
    pub fn exists(msg: impl Into<String>) -> Self {
        Error::conflict_of(ConflictKind::Exists, msg)
    }

    /// A [`ConflictKind::DeleteWindow`] conflict.
    pub fn delete_window(msg: impl Into<String>) -> Self {
        Error::conflict_of(ConflictKind::DeleteWindow, msg)
    }

    fn conflict_of(kind: ConflictKind, msg: impl Into<String>) -> Self {
        Error::Conflict(Conflict {
            kind,
            message: msg.into(),
        })
    }

    /// An [`Error::Config`] with this message.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// A stable name for this kind of error, for scripts: `--json` prints it as `Code` (beside
    /// `Message`) when a command fails. Names never change once released.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => code::INVALID,
            Error::NotFound(_) => "NotFound",
            Error::Conflict(_) => "Conflict",
            Error::InProgress(_) => "RotationInProgress",
            Error::Lease(_) => "LeaseLost",
            Error::Target(_) => "TargetFailed",
            Error::Rotation(_) => "RotationFailed",
            Error::Crypto(_) => "DecryptionFailed",
            Error::Config(_) => "SetupFailed",
            Error::Store(_) => "StoreFailed",
            Error::Migrate(_) => "StoreMigrationFailed",
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => exit::INVALID,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Conflict(_) | Error::InProgress(_) | Error::Lease(_) => exit::CONFLICT,
            Error::Crypto(_) => exit::CRYPTO,
            Error::Rotation(_) => exit::ROTATION_FAILED,
            Error::Target(_) => exit::TARGET,
            Error::Config(_) | Error::Store(_) | Error::Migrate(_) => exit::FAILURE,
        }
    }
}

/// The crate's result type, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
