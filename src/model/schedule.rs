//! Rotation policies and schedules: intervals and cron expressions with their windows, when the
//! next rotation falls, and durations as the CLI reads and prints them.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotators::SecretKind;

use super::names::printable;
use crate::error::Error;

/// A secret's automatic rotation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// When rotations happen.
    pub schedule: RotationSchedule,
    /// Up to this much later than scheduled, at random, so that secrets sharing a target and a
    /// schedule do not all rotate at the same instant.
    pub jitter: Option<Duration>,
    /// Rotate once now instead of waiting for the first scheduled time.
    pub rotate_now: bool,
}

/// When a secret rotates automatically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationSchedule {
    /// Every `interval`, counted from the last rotation (or from when rotation was enabled).
    Interval(Duration),
    /// At the times of a cron expression; a rotation may start up to `window` after a fire time,
    /// and a missed window waits for the next fire time.
    Cron {
        /// The cron expression (minute hour day-of-month month day-of-week, UTC).
        expression: String,
        /// How long after a fire time a rotation may still start; no limit when `None`.
        window: Option<Duration>,
    },
}

impl RotationSchedule {
    /// `every 7 days`, `cron '0 3 * * *' within 1 hour`.
    pub fn summary(&self) -> String {
        match self {
            RotationSchedule::Interval(d) => format!("every {}", spoken_duration(*d)),
            RotationSchedule::Cron {
                expression,
                window: None,
            } => format!("cron '{expression}'"),
            RotationSchedule::Cron {
                expression,
                window: Some(w),
            } => format!("cron '{expression}' within {}", spoken_duration(*w)),
        }
    }

    /// Builds a cron schedule from a standard five-field expression (UTC).
    pub fn cron(expression: &str, window: Option<Duration>) -> Result<Self, Error> {
        let expression = expression.trim().to_owned();
        parse_cron(&expression)?;
        Ok(RotationSchedule::Cron { expression, window })
    }

    /// Checks the schedule against the bounds of `kind`: generic secrets never rotate; an
    /// interval, or the gap between cron fire times, must lie within the type's bounds.
    pub fn check_for(&self, kind: SecretKind, now: DateTime<Utc>) -> Result<(), Error> {
        let Some((min, max)) = kind.ty.rotation_bounds() else {
            return Err(Error::invalid(format!(
                "{} secrets do not rotate automatically; put new versions instead",
                kind.ty
            )));
        };
        let bounds = || {
            format!(
                "{} secrets rotate every {} to {}",
                kind.ty,
                fmt_bound(min),
                fmt_bound(max)
            )
        };
        match self {
            RotationSchedule::Interval(interval) => {
                if *interval < min || *interval > max {
                    return Err(Error::invalid(format!(
                        "rotation interval {} is out of bounds: {}",
                        fmt_duration(*interval),
                        bounds()
                    )));
                }
            }
            RotationSchedule::Cron { expression, window } => {
                let schedule = parse_cron(expression)?;
                // Fire times over the next two years: every gap must respect the bounds.
                let horizon = now + chrono::Duration::days(2 * 365);
                let mut times = schedule.after(&now).take_while(|t| *t < horizon);
                let Some(first) = times.next() else {
                    return Err(Error::invalid(format!(
                        "cron expression '{expression}' never fires in the next two years"
                    )));
                };
                let mut last = first;
                let mut min_gap: Option<Duration> = None;
                for t in times.take(1000) {
                    let gap = (t - last).to_std().unwrap_or_default();
                    min_gap = Some(min_gap.map_or(gap, |g| g.min(gap)));
                    last = t;
                }
                match min_gap {
                    Some(gap) if gap < min => {
                        return Err(Error::invalid(format!(
                            "cron expression '{expression}' fires every {}, too often: {}",
                            fmt_duration(gap),
                            bounds()
                        )))
                    }
                    None if (first - now).to_std().unwrap_or_default() > max => {
                        return Err(Error::invalid(format!(
                            "cron expression '{expression}' fires less often than every {}",
                            fmt_bound(max)
                        )))
                    }
                    _ => {}
                }
                if let Some(window) = window {
                    if window.is_zero() {
                        return Err(Error::invalid("rotation window must be longer than zero"));
                    }
                    if let Some(gap) = min_gap.filter(|gap| window > gap) {
                        return Err(Error::invalid(format!(
                            "rotation window {} is longer than the {} between fire times",
                            fmt_duration(*window),
                            fmt_duration(gap)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Plans the next rotation after `now`: its time, pushed later by a random share of
    /// `jitter` so that secrets on one schedule spread out, and for a cron window the deadline
    /// after which that rotation is missed and waits for the next fire time.
    pub fn plan(&self, jitter: Option<Duration>, now: DateTime<Utc>) -> Option<Planned> {
        let base = self.next_after(now)?;
        let spread = match jitter {
            Some(j) if !j.is_zero() => {
                Duration::from_millis(rand::random_range(0..j.as_millis().max(1) as u64))
            }
            _ => Duration::ZERO,
        };
        let deadline = match self {
            RotationSchedule::Cron {
                window: Some(w), ..
            } => Some(base + chrono::Duration::from_std(*w).ok()?),
            _ => None,
        };
        Some(Planned {
            at: base + chrono::Duration::from_std(spread).ok()?,
            deadline,
        })
    }

    /// Checks a jitter against the schedule: it must leave the rotation inside a cron window,
    /// be shorter than an interval, and (a cron schedule without a window) shorter than the
    /// shortest time between its fire times, so that no rotation slides past the next one.
    pub fn check_jitter(&self, jitter: Duration) -> Result<(), Error> {
        let limit = match self {
            RotationSchedule::Interval(d) => Some((*d, "the interval it spreads rotations over")),
            RotationSchedule::Cron {
                window: Some(w), ..
            } => Some((*w, "the window it spreads rotations over")),
            RotationSchedule::Cron {
                expression,
                window: None,
            } => {
                shortest_gap(expression).map(|g| (g, "the time between the schedule's fire times"))
            }
        };
        match limit {
            Some((limit, what)) if jitter >= limit => Err(Error::invalid(format!(
                "jitter {} must be shorter than {what} ({})",
                fmt_duration(jitter),
                fmt_duration(limit)
            ))),
            _ => Ok(()),
        }
    }

    /// The first time after `now` that the schedule asks for a rotation.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            RotationSchedule::Interval(interval) => {
                Some(now + chrono::Duration::from_std(*interval).ok()?)
            }
            RotationSchedule::Cron { expression, .. } => {
                parse_cron(expression).ok()?.after(&now).next()
            }
        }
    }
}

/// The shortest time between the next fire times of a cron expression (a year of them at
/// most, by the first few hundred), if it fires twice.
fn shortest_gap(expression: &str) -> Option<Duration> {
    let fires: Vec<DateTime<Utc>> = parse_cron(expression)
        .ok()?
        .after(&Utc::now())
        .take(400)
        .collect();
    fires
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_std().ok())
        .min()
}

/// Parses a standard five-field cron expression (minute hour day-of-month month day-of-week,
/// Sunday = 0 or 7) into the `cron` crate's form, which has a seconds field and counts weekdays
/// from Sunday = 1.
/// When the next rotation is planned, and (cron windows) when it is missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// When the rotation is due (jitter included).
    pub at: DateTime<Utc>,
    /// The end of its cron window, after which it is missed (`None` without a window).
    pub deadline: Option<DateTime<Utc>>,
}

fn parse_cron(expression: &str) -> Result<cron::Schedule, Error> {
    let malformed = |why: &str| {
        Error::invalid(format!(
            "malformed cron expression '{}': {why} (expected 5 fields: minute hour day-of-month month day-of-week)",
            printable(expression)
        ))
    };
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(malformed(&format!("{} fields", fields.len())));
    }
    let full = format!(
        "0 {} {} {} {} {}",
        fields[0],
        fields[1],
        fields[2],
        fields[3],
        standard_weekdays(fields[4])
    );
    cron::Schedule::from_str(&full).map_err(|e| {
        // The crate's message spans lines (expression, caret, reason): keep the reason.
        let text = e.to_string();
        malformed(text.lines().last().unwrap_or_default().trim())
    })
}

/// Rewrites numeric weekdays (0–7, Sunday twice) as names, which the `cron` crate reads the
/// same way standard cron does.
fn standard_weekdays(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let day = |s: &str| s.parse::<usize>().ok().filter(|n| *n <= 7);
    field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let range = match range.split_once('-') {
                // A range ending on Sunday-as-7 becomes "...-SAT" plus Sunday.
                Some((a, b)) => match (day(a), day(b)) {
                    (Some(a), Some(7)) if a > 0 && step.is_none() => {
                        format!("{}-SAT,SUN", NAMES[a])
                    }
                    (Some(a), Some(b)) => format!("{}-{}", NAMES[a], NAMES[b.min(6)]),
                    _ => range.to_owned(),
                },
                None => day(range).map_or_else(|| range.to_owned(), |n| NAMES[n].to_owned()),
            };
            match step {
                Some(step) => format!("{range}/{step}"),
                None => range,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a duration such as `7d`, `6h`, `90m` or `1d 12h`.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        Error::invalid(format!(
            "malformed duration '{}': {e} (examples: 7d, 6h, 90m)",
            printable(s)
        ))
    })
}

/// A duration in words, for people: `7 days`, `1 day 12 hours`, `90 seconds` becomes `1
/// minute 30 seconds`; days are the largest unit (a rotation interval reads `365 days`).
pub fn spoken_duration(d: Duration) -> String {
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (unit, secs) in [
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ] {
        let n = left / secs;
        left %= secs;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if parts.is_empty() {
        return "0 seconds".into();
    }
    parts.join(" ")
}

/// A rotation bound as the README states it: `6 hours`, `7 days`, `365 days` (never in months,
/// which `humantime` counts as 30.44 days).
pub fn fmt_bound(d: Duration) -> String {
    let secs = d.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs > 0 && secs.is_multiple_of(86_400) {
        plural(secs / 86_400, "day")
    } else if secs > 0 && secs.is_multiple_of(3600) {
        plural(secs / 3600, "hour")
    } else {
        fmt_duration(d)
    }
}

/// Formats a duration the way users type it (`7d`, `6h`, `1d 12h`).
pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotators::{SecretType, SubType};

    #[test]
    fn spoken_durations() {
        let d = |s| spoken_duration(Duration::from_secs(s));
        assert_eq!(d(7 * 86_400), "7 days");
        assert_eq!(d(365 * 86_400), "365 days");
        assert_eq!(d(86_400 + 12 * 3_600), "1 day 12 hours");
        assert_eq!(d(3_600), "1 hour");
        assert_eq!(d(90), "1 minute 30 seconds");
        assert_eq!(d(0), "0 seconds");
    }

    #[test]
    fn a_cron_jitter_is_shorter_than_the_time_between_fire_times() {
        let daily = RotationSchedule::Cron {
            expression: "0 3 * * *".into(),
            window: None,
        };
        let err = daily
            .check_jitter(parse_duration("2d").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shorter than the time between the schedule's fire times (1day)"),
            "{err}"
        );
        assert!(daily.check_jitter(parse_duration("1d").unwrap()).is_err());
        assert!(daily.check_jitter(parse_duration("6h").unwrap()).is_ok());
        // Weekdays only: the shortest gap is a day, not the weekend's three.
        let weekdays = RotationSchedule::Cron {
            expression: "0 3 * * 1-5".into(),
            window: None,
        };
        assert!(weekdays
            .check_jitter(parse_duration("2d").unwrap())
            .is_err());
        assert!(weekdays
            .check_jitter(parse_duration("23h").unwrap())
            .is_ok());
    }

    #[test]
    fn rotation_bounds() {
        let now = Utc::now();
        let rds = SecretKind::new(SecretType::Rds, None).unwrap();
        let generic = SecretKind::new(SecretType::Generic, None).unwrap();
        let ecs = SecretKind::new(SecretType::ECS, Some(SubType::Password)).unwrap();
        let interval = |s| RotationSchedule::Interval(parse_duration(s).unwrap());
        assert!(interval("7d").check_for(rds, now).is_ok());
        assert!(interval("6h").check_for(rds, now).is_ok());
        assert!(interval("5h").check_for(rds, now).is_err());
        let too_long = interval("366d")
            .check_for(rds, now)
            .unwrap_err()
            .to_string();
        assert!(
            too_long.ends_with("Rds secrets rotate every 6 hours to 365 days"),
            "{too_long}"
        );
        assert!(interval("1h").check_for(ecs, now).is_ok());
        assert!(interval("7d").check_for(generic, now).is_err());
        let daily =
            RotationSchedule::cron("0 3 * * *", Some(parse_duration("2h").unwrap())).unwrap();
        assert!(daily.check_for(rds, now).is_ok());
        let often = RotationSchedule::cron("*/5 * * * *", None).unwrap();
        assert!(often.check_for(rds, now).is_err());
        let wide =
            RotationSchedule::cron("0 3 * * *", Some(parse_duration("25h").unwrap())).unwrap();
        assert!(wide.check_for(rds, now).is_err());
        assert!(RotationSchedule::cron("not a cron", None).is_err());
        assert!(RotationSchedule::cron("61 * * * *", None).is_err());
        assert!(
            RotationSchedule::cron("0 0 3 * * *", None).is_err(),
            "five fields only"
        );
    }

    #[test]
    fn cron_weekdays_count_like_standard_cron() {
        // 2026-11-28 is a Saturday.
        let now = DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = |expr: &str| {
            let t = RotationSchedule::cron(expr, None)
                .unwrap()
                .next_after(now)
                .unwrap();
            t.format("%a %d %H:%M").to_string()
        };
        assert_eq!(next("0 3 * * 0"), "Sun 29 03:00");
        assert_eq!(next("0 3 * * 7"), "Sun 29 03:00");
        assert_eq!(next("0 3 * * 1-5"), "Mon 30 03:00");
        assert_eq!(next("0 3 * * 5-7"), "Sun 29 03:00");
        assert_eq!(next("0 3 * * MON"), "Mon 30 03:00");
        assert_eq!(next("30 2 1 * *"), "Tue 01 02:30");
        let err = RotationSchedule::cron("0 3 * * 9", None)
            .unwrap_err()
            .to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
