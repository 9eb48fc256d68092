//! Usage errors: clap's message as one line, exit code 2, like every other invalid input —
//! naming the environment variable a refused value came from.

use std::io::IsTerminal;

use clap::CommandFactory;

use super::{fail, output, Cli};
use crate::model::printable;

/// Help and version print as clap prints them; a usage error becomes one line and exit code 2,
/// like every other invalid input.
pub(super) fn usage_error(e: clap::Error, json: bool) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        if e.use_stderr() {
            e.exit()
        }
        // Help and version go to stdout, which may be a pipe closed early (`rotor --help |
        // head`): written here, where that ends quietly.
        let text = if std::io::stdout().is_terminal() {
            e.render().ansi().to_string()
        } else {
            e.render().to_string()
        };
        if let Err(e) = output::write_stdout(&[text.as_bytes()]) {
            output::note(&format!("cannot write to standard output: {e}"));
            std::process::exit(crate::error::exit::FAILURE)
        }
        std::process::exit(0)
    }
    // The value or argument refused is shown escaped: a newline in it would cut this one line
    // short, an escape sequence would drive the terminal.
    let mut e = e;
    let context: Vec<_> = e.context().map(|(k, v)| (k, v.clone())).collect();
    for (kind, value) in context {
        use clap::error::ContextValue;
        let value = match value {
            ContextValue::String(s) => ContextValue::String(printable(&s).into_owned()),
            ContextValue::Strings(v) => {
                ContextValue::Strings(v.iter().map(|s| printable(s).into_owned()).collect())
            }
            other => other,
        };
        e.insert(kind, value);
    }
    let from_env = match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => set_by_environment(&e),
        _ => None,
    };
    let message = format!(
        "{}{} (see: rotor --help)",
        first_paragraph(&e.render().to_string()),
        from_env
            .map(|var| format!("; the value came from {var}"))
            .unwrap_or_default()
    );
    fail(
        json,
        crate::error::code::USAGE,
        &message,
        crate::error::exit::INVALID,
    )
}

/// The first paragraph of clap's message as one line: "the following required arguments were
/// not provided:" keeps the list that follows it (`<NAME|--due>`), the usage and tips go.
fn first_paragraph(text: &str) -> String {
    let mut lines = text.lines().take_while(|l| !l.trim().is_empty());
    let first = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let rest: Vec<&str> = lines.map(str::trim).collect();
    match (first.strip_suffix(':'), rest.is_empty()) {
        (Some(head), false) => format!("{head}: {}", rest.join(", ")),
        _ => first.to_owned(),
    }
}

/// The environment variable a refused value came from: the flag clap names was not on the
/// command line, and the variable that stands for it is set (clap names only the flag).
fn set_by_environment(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?.split('=').next()?;
    let long = flag.strip_prefix("--")?;
    let given = std::env::args_os().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if given {
        return None;
    }
    fn env_of(command: &clap::Command, long: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| command.get_subcommands().find_map(|c| env_of(c, long)))
    }
    let var = env_of(&Cli::command(), long)?;
    std::env::var_os(&var).is_some().then_some(var)
}
