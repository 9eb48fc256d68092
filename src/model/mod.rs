//! The domain model's validated newtypes: names, version ids, stages, tags, descriptions and
//! rotation policies. Each is checked once, at construction, so the store and the CLI can take a
//! value of these types as proof that the input was good.

mod names;
mod schedule;

pub use names::{
    check_description, check_free_text, check_key_name, check_tags, is_unsafe_char, printable,
    SecretName, Stage, Tag, VersionId,
};
pub use schedule::{
    fmt_bound, fmt_duration, parse_duration, spoken_duration, Planned, RotationPolicy,
    RotationSchedule,
};
