//! The README says what rotor does: its short session runs as printed and prints what it shows,
//! and every command and flag of its command table exists.
//!
//! The session (the first ```console block after "## A short session") runs line by line in
//! `bash`, in a fresh directory (so `./rotor-data` is a fresh SQLite store), with `rotor` on the
//! PATH. What must differ here is substituted, and only that:
//! - `db.internal:5432` is the test PostgreSQL that checks passwords (`ROTOR_TEST_PG_SCRAM`);
//! - the server-side names `rotor_admin`, `orders` (account and database) get a suffix of this
//!   run (the server is shared; the secret names stay as printed);
//! - `$ADMIN_PASSWORD` is set.
//!
//! and what rotor prints with those names is read with the README's names again.
//!
//! Output is compared line by line, after two placeholders: a time (`2026-11-28T22:24:19Z`)
//! matches any time, and `…` matches any text within its line. Nothing else may differ, and
//! nothing may appear on stderr.

use std::process::Command;

use sqlx::Executor;

use crate::databases::{admin, scram_port};

/// One `$ command` of the session and the lines shown after it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The steps of the README's short session.
fn session(readme: &str) -> Vec<Step> {
    let start = readme
        .find("## A short session")
        .expect("README has a short session");
    let block = &readme[start..];
    let block = &block[block.find("```console\n").expect("a console block") + 11..];
    let block = &block[..block.find("```").expect("the block ends")];
    let mut steps: Vec<Step> = Vec::new();
    let mut continued = false;
    for line in block.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                expected: vec![],
            });
        } else if continued {
            let step = steps.last_mut().unwrap();
            step.command.push('\n');
            step.command.push_str(line);
        } else {
            steps
                .last_mut()
                .expect("the session starts with a command")
                .expected
                .push(line.to_owned());
        }
        continued = line.ends_with('\\');
    }
    steps
}

/// Replaces every UTC time (`2026-11-28T22:24:19Z`, with or without milliseconds) by `<time>`.
fn times_blanked(text: &str) -> String {
    let shape = |b: &[u8]| {
        b.len() >= 20
            && b.iter().zip(b"dddd-dd-ddTdd:dd:dd").all(|(c, s)| match s {
                b'd' => c.is_ascii_digit(),
                s => c == s,
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if shape(&bytes[i..]) {
            let mut end = i + 19;
            if bytes.get(end) == Some(&b'.') {
                end += 1;
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
            }
            if bytes.get(end) == Some(&b'Z') {
                out.push_str("<time>");
                i = end + 1;
                continue;
            }
        }
        let c = text[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether `actual` is `expected`, where `…` stands for any text.
fn matches(expected: &str, actual: &str) -> bool {
    let mut parts = expected.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The `--flags` in `text`.
fn flags(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let tail = &rest[at + 2..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(tail.len());
        if len > 0 && tail.starts_with(|c: char| c.is_ascii_lowercase()) {
            found.push(&rest[at..at + 2 + len]);
        }
        rest = &tail[len..];
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_session_runs_as_printed() {
    let readme = readme();
    let steps = session(&readme);
    assert!(steps.len() >= 10, "{steps:#?}");

    let suffix = rotor::crypto::random_id()[..8].to_owned();
    let admin_user = format!("rotor_admin_{suffix}");
    let orders = format!("orders_{suffix}");
    let password = format!("Admin-{suffix}-pw");
    let mut conn = admin().await;
    conn.execute(
        format!("CREATE ROLE {admin_user} LOGIN CREATEROLE PASSWORD '{password}'").as_str(),
    )
    .await
    .unwrap();
    conn.execute(format!("CREATE DATABASE {orders} OWNER {admin_user}").as_str())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rotor"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let mut failures = Vec::new();
    for step in &steps {
        let command = step
            .command
            .replace("db.internal:5432", &format!("127.0.0.1:{}", scram_port()))
            .replace("rotor_admin", &admin_user)
            .replace("--account orders", &format!("--account {orders}"))
            .replace("--database orders", &format!("--database {orders}"));
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &command])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("ADMIN_PASSWORD", &password);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("ROTOR_") {
                cmd.env_remove(var);
            }
        }
        let out = cmd.output().unwrap();
        // What rotor prints names the server-side names as substituted: name them as printed.
        let stdout = times_blanked(&String::from_utf8_lossy(&out.stdout))
            .replace(&admin_user, "rotor_admin")
            .replace(&orders, "orders");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let actual: Vec<&str> = stdout.lines().collect();
        let expected: Vec<String> = step.expected.iter().map(|l| times_blanked(l)).collect();
        let same = actual.len() == expected.len()
            && expected.iter().zip(&actual).all(|(e, a)| matches(e, a));
        if !out.status.success() || !same || !stderr.is_empty() {
            failures.push(format!(
                "$ {}\n  exit: {}\n  README shows:\n{}\n  rotor printed:\n{}\n  stderr: {stderr}",
                step.command,
                out.status,
                expected.join("\n"),
                actual.join("\n"),
            ));
        }
    }

    for role in [
        orders.clone(),
        format!("{orders}_clone"),
        format!("{orders}_group"),
    ] {
        let _ = conn
            .execute(format!("DROP OWNED BY {role} CASCADE").as_str())
            .await;
    }
    let _ = conn
        .execute(format!("DROP DATABASE IF EXISTS {orders} WITH (FORCE)").as_str())
        .await;
    for role in [
        format!("{orders}_clone"),
        orders.clone(),
        format!("{orders}_group"),
        admin_user.clone(),
    ] {
        let _ = conn
            .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
            .await;
    }
    assert!(
        failures.is_empty(),
        "the README's short session differs from what rotor does:\n\n{}",
        failures.join("\n\n")
    );
}

/// The command table's first column: every `rotor …` span of it.
fn table_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find("## Commands")
        .expect("README has a command table");
    let end = start
        + readme[start..]
            .find("\n## ")
            .unwrap_or(readme.len() - start);
    let mut commands = Vec::new();
    for row in readme[start..end].lines().filter(|l| l.starts_with("| `")) {
        let first = row[2..].split(" | ").next().unwrap_or_default();
        for span in first.split('`').skip(1).step_by(2) {
            if span.starts_with("rotor ") {
                commands.push(span.replace("\\|", "|"));
            }
        }
    }
    commands
}

#[test]
fn every_command_and_flag_of_the_command_table_exists() {
    let commands = table_commands(&readme());
    assert!(commands.len() >= 30, "{commands:#?}");
    let mut missing = Vec::new();
    for command in &commands {
        // The subcommand path: the words after `rotor` up to the first argument or option.
        let path: Vec<&str> = command
            .split_whitespace()
            .skip(1)
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_rotor"))
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            missing.push(format!(
                "`{command}`: rotor {} --help fails",
                path.join(" ")
            ));
            continue;
        }
        let offered = flags(&help);
        for f in flags(command) {
            if !offered.contains(&f) {
                missing.push(format!(
                    "`{command}`: {f} is not an option of rotor {}",
                    path.join(" ")
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
