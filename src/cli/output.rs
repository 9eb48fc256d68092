//! How commands print: human text or `--json`, tables, the `describe` layout, and the only
//! place a value is written (`secret get`) or read (`--value`, `--value-file`).
//!
//! Everything goes through [`write_stdout`] and [`note`], never `println!`/`eprintln!` (which
//! panic when the stream is gone): a reader that stops reading (`rotor secret versions X | head
//! -3`) ends the output quietly and the command keeps its exit code.

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use rotators::{SecretValue, MAX_VALUE_BYTES};

use super::secret::ValueSource;
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::model::{printable, Stage};
use crate::store::{SecretInfo, Selector, Store, VersionInfo};

/// Reads `--value` or `--value-file` (`-` for standard input; otherwise a regular file).
/// A file or standard input is read up to the value limit plus one byte, so that a huge
/// input (`/dev/zero`) is refused without being held in memory.
pub fn read_value(source: &ValueSource) -> Result<SecretValue> {
    let bounded = |reader: &mut dyn Read, from: &str| -> Result<SecretValue> {
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        reader
            .take(MAX_VALUE_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::invalid(format!("cannot read the value from {from}: {e}")))?;
        if buf.len() > MAX_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "secret value in {from} is at least {} bytes; the limit is {MAX_VALUE_BYTES}",
                MAX_VALUE_BYTES + 1
            )));
        }
        Ok(SecretValue::new(buf.to_vec()))
    };
    match (&source.value, &source.value_file) {
        (Some(text), _) => Ok(SecretValue::from(text.0.as_str())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            bounded(&mut std::io::stdin().lock(), "standard input")
        }
        (None, Some(path)) => {
            let mut file = crate::files::open_regular(path).map_err(|e| {
                Error::invalid(format!("cannot read value file {}: {e}", path.display()))
            })?;
            bounded(&mut file, &format!("value file {}", path.display()))
        }
        (None, None) => Err(Error::invalid("give --value or --value-file")),
    }
}

/// Writes a value to stdout byte for byte; a newline follows only on a terminal.
pub fn write_value(value: &SecretValue) -> Result<()> {
    let newline: &[u8] = if std::io::stdout().is_terminal() {
        b"\n"
    } else {
        b""
    };
    write_stdout(&[value.expose(), newline])
        .map_err(|e| Error::config(format!("cannot write to standard output: {e}")))
}

/// Set when standard output failed other than by a closed pipe (a full disk): what the command
/// printed is incomplete, so the process exits 1 even if the command itself succeeded.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Set by every write to standard output: a command that printed its own result (a `--due
/// --json` pass's summary) before failing gets no second JSON document.
static STDOUT_USED: AtomicBool = AtomicBool::new(false);

/// Whether anything was written to standard output (see [`STDOUT_USED`]).
pub fn stdout_used() -> bool {
    STDOUT_USED.load(Ordering::Relaxed)
}

/// Whether a write to standard output failed (see [`STDOUT_FAILED`]).
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// Writes `parts` to standard output and flushes. A reader that went away (`EPIPE`: `rotor …
/// | head`) is not an error: it did not want the rest, so the rest is dropped quietly.
pub fn write_stdout(parts: &[&[u8]]) -> std::io::Result<()> {
    STDOUT_USED.store(true, Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    let written = parts
        .iter()
        .try_for_each(|part| out.write_all(part))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes one line to standard output (see [`write_stdout`]); any other failure is reported
/// on stderr once and makes the process exit 1 ([`stdout_failed`]).
pub fn print_line(text: &str) {
    if let Err(e) = write_stdout(&[text.as_bytes(), b"\n"]) {
        if !STDOUT_FAILED.swap(true, Ordering::Relaxed) {
            note(&format!("cannot write to standard output: {e}"));
        }
    }
}

/// Writes `rotor: MESSAGE` on stderr; a closed stderr is ignored (there is no one to tell).
pub fn note(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "rotor: {message}");
}

/// Standard error for log lines: a write that fails (a closed pipe) is dropped as if done.
pub struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Prints JSON or human text.
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn print<T: serde::Serialize>(&self, value: T, human: impl FnOnce() -> String) {
        if self.json {
            print_line(&serde_json::to_string_pretty(&value).expect("serialisable output"));
        } else {
            let text = human();
            if !text.is_empty() {
                print_line(&text);
            }
        }
    }
}

pub fn join_stages(stages: &[Stage]) -> String {
    if stages.is_empty() {
        "no stages".into()
    } else {
        stages
            .iter()
            .map(Stage::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn versions_table(versions: &[VersionInfo]) -> String {
    table(
        &["VERSION", "STAGES", "CREATED"],
        versions
            .iter()
            .map(|v| {
                vec![
                    v.version_id.to_string(),
                    join_stages(&v.version_stages),
                    format_ms(v.create_time),
                ]
            })
            .collect(),
    )
}

/// The fields of a managed secret's value that say who it logs in as — never a password or a
/// key — with the label `describe` gives them.
const IDENTITY_FIELDS: [(&str, &str); 3] = [
    ("AccountName", "Accounts"),
    ("UserName", "User"),
    ("AccessKeyId", "AccessKeys"),
];

/// What `describe` shows about who a managed secret is, below its target: the account names of
/// its values ([`accounts`]), then what its target's family tells from its settings (the RAM
/// user, the database and privilege).
pub async fn who(
    store: &Store,
    registry: &rotators::Registry,
    info: &SecretInfo,
) -> Vec<(&'static str, String)> {
    let mut lines: Vec<_> = accounts(store, info).await.into_iter().collect();
    let (Some(target), Some(settings)) = (&info.target, &info.settings) else {
        return lines;
    };
    let Ok(target) = store.target(target).await else {
        return lines;
    };
    if let Some((family, _)) = registry.target_kind(&target.kind) {
        lines.extend(family.describe_secret(info.kind, settings));
    }
    lines
}

/// Who a managed secret's `ACSCurrent` and `ACSPrevious` versions log in as, for `describe`:
/// the label and each distinct name with its stage (`orders_clone (ACSCurrent), orders
/// (ACSPrevious)`). The values are opened here and only the identity field is kept; this is
/// no read of the secret (no audit record). Nothing when the type has no such field or the
/// versions cannot be read.
async fn accounts(store: &Store, info: &SecretInfo) -> Option<(&'static str, String)> {
    let fields = rotators::value::required_fields(info.kind)?;
    let (field, label) = IDENTITY_FIELDS
        .iter()
        .find(|(field, _)| fields.contains(field))?;
    let mut names: Vec<(String, Stage)> = Vec::new();
    for stage in [Stage::Current, Stage::Previous] {
        let Ok(sealed) = store
            .get_sealed(&info.name, &Selector::Stage(stage.clone()))
            .await
        else {
            continue;
        };
        let Ok(version) = sealed.open() else { continue };
        let name = serde_json::from_slice::<serde_json::Value>(version.value.expose())
            .ok()
            .and_then(|v| v.get(field)?.as_str().map(str::to_owned));
        if let Some(name) = name.filter(|n| !names.iter().any(|(m, _)| m == n)) {
            names.push((name, stage));
        }
    }
    let text = match names.as_slice() {
        [] => return None,
        [(name, _)] => name.clone(),
        _ => names
            .iter()
            .map(|(name, stage)| format!("{name} ({stage})"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Some((label, text))
}

/// `secret describe` for people; `who` as [`who`] found it.
pub fn describe_text(info: &SecretInfo, who: Vec<(&str, String)>) -> String {
    let mut lines = vec![
        ("Name", info.name.to_string()),
        ("Type", info.kind.to_string()),
        ("Description", info.description.clone()),
        ("Key", info.key_name.clone()),
    ];
    if let Some(target) = &info.target {
        lines.push(("Target", target.clone()));
    }
    lines.extend(who);
    lines.extend([
        ("Created", format_ms(info.created_at)),
        ("Updated", format_ms(info.updated_at)),
        ("Rotation", info.rotation_summary()),
    ]);
    if let Some(next) = info.next_rotation_at {
        lines.push(("Next rotation", format_ms(next)));
    }
    if let Some(last) = info.last_rotation_at {
        lines.push(("Last rotation", format_ms(last)));
    }
    let status = match (&info.rotation_failure, &info.rotation_error) {
        (Some(f), _) => format!(
            "{:?} after {} attempt(s): {}",
            info.rotation_status, f.attempts, f.reason
        ),
        (None, Some(e)) => format!(
            "{:?} (attempt {}): {e}",
            info.rotation_status, info.rotation_attempts
        ),
        (None, None) => format!("{:?}", info.rotation_status),
    };
    lines.push(("Status", status));
    if info.target_holds_pending {
        lines.push((
            "Target holds",
            format!(
                "the ACSPending credential, not ACSCurrent: recover with rotor rotate {} (or a checked rotor secret import)",
                info.name
            ),
        ));
    }
    if let Some(step) = &info.rotation_step {
        lines.push(("Next step", step.clone()));
    }
    if let Some(at) = info.planned_delete_at {
        lines.push(("Deletion", format!("scheduled at {}", format_ms(at))));
    }
    let tags = info
        .tags
        .iter()
        .map(|t| format!("{}={}", t.tag_key, t.tag_value))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(("Tags", tags));
    lines
        .iter()
        .map(|(k, v)| {
            format!("{:<15}{}", format!("{k}:"), printable(v))
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plain text table with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    // Cells may hold text an older store kept raw: never let it drive the terminal.
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    std::iter::once(line(header.iter().map(|h| h.to_string()).collect()))
        .chain(rows.into_iter().map(line))
        .collect::<Vec<_>>()
        .join("\n")
}
