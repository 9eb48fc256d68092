//! How commands print: human text or `--json`, tables, the `describe` layout, and the only
//! place a value is written (`secret get`) or read (`--value`, `--value-file`).

use std::io::{IsTerminal, Read, Write};

use rotators::{SecretValue, MAX_VALUE_BYTES};

use super::secret::ValueSource;
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::model::{printable, Stage};
use crate::store::{SecretInfo, VersionInfo};

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
    let mut stdout = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
        out.write_all(value.expose())?;
        if out.is_terminal() {
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    write(&mut stdout).map_err(|e| Error::config(format!("cannot write to standard output: {e}")))
}

/// Prints JSON or human text.
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn print<T: serde::Serialize>(&self, value: T, human: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).expect("serialisable output")
            );
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
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

pub fn describe_text(info: &SecretInfo) -> String {
    let mut lines = vec![
        ("Name", info.name.to_string()),
        ("Type", info.kind.to_string()),
        ("Description", info.description.clone()),
        ("Key", info.key_name.clone()),
        ("Created", format_ms(info.created_at)),
        ("Updated", format_ms(info.updated_at)),
        ("Rotation", info.rotation_summary()),
    ];
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
    if let Some(step) = info.rotation_step {
        lines.push(("Next step", step.to_string()));
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
        .map(|(k, v)| format!("{:<15}{}", format!("{k}:"), printable(v)))
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
