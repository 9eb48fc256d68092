//! Options that rotator families declare: added to the clap command they belong to (so
//! `--help` lists them and clap parses them), then read back into [`rotators::Options`] for the
//! family. The CLI knows their form (value, flag, secret, secret on stdin), never their meaning.

use std::io::Read;

use clap::{Arg, ArgAction, ArgMatches};
use rotators::family::{OptionArg, OptionScope, OptionSpec, OptionValue};
use rotators::{Options, Registry};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{Cli, Command, SecretCommand, TargetCommand};

/// The longest secret read from standard input for an option (an admin password or key).
const MAX_STDIN_SECRET: u64 = 64 * 1024;

/// A secret given on the command line: kept out of `Debug` (the parsed arguments are `Debug`).
#[derive(Clone)]
pub struct Redacted(pub Zeroizing<String>);

impl std::str::FromStr for Redacted {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Redacted(Zeroizing::new(s.to_owned())))
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Every family option of `scope`, once per name (families may share an option).
fn specs(registry: &Registry, scope: OptionScope) -> Vec<&'static OptionSpec> {
    let mut seen: Vec<&'static OptionSpec> = vec![];
    for family in registry.families() {
        for spec in family.options().iter().filter(|s| s.scope == scope) {
            if !seen.iter().any(|s| s.name == spec.name) {
                seen.push(spec);
            }
        }
    }
    seen
}

fn arg(spec: &OptionSpec) -> Arg {
    let arg = Arg::new(spec.name)
        .long(spec.name)
        .help(spec.help)
        .help_heading("Target options (declared by rotator families)");
    match spec.arg {
        OptionArg::Value { value_name }
        | OptionArg::Secret { value_name }
        | OptionArg::SecretFile { value_name } => arg
            .value_name(value_name)
            .action(ArgAction::Set)
            .hide_env_values(true),
        OptionArg::Flag | OptionArg::SecretFromStdin => arg.action(ArgAction::SetTrue),
    }
}

/// Adds the families' options to `target add` and `secret create`.
pub fn add_family_options(command: clap::Command, registry: &Registry) -> clap::Command {
    let target_add = specs(registry, OptionScope::TargetAdd);
    let secret_create = specs(registry, OptionScope::SecretCreate);
    let kinds: Vec<String> = registry
        .families()
        .iter()
        .flat_map(|f| f.target_kinds())
        .map(|k| format!("{} ({})", k.name, k.schemes.join(" ")))
        .collect();
    let kind_help = format!("The target's kind: {}", kinds.join(", "));
    command
        .mut_subcommand("target", |c| {
            c.mut_subcommand("add", |c| {
                c.mut_arg("kind", |a| a.help(kind_help))
                    .args(target_add.iter().map(|s| arg(s)))
            })
            .mut_subcommand("update", |c| c.args(target_add.iter().map(|s| arg(s))))
        })
        .mut_subcommand("secret", |c| {
            c.mut_subcommand("create", |c| c.args(secret_create.iter().map(|s| arg(s))))
        })
}

/// Reads the family options of the command being run into its arguments.
pub fn collect(
    cli: &mut Cli,
    matches: &ArgMatches,
    registry: &Registry,
) -> Result<(), clap::Error> {
    let (scope, group, sub, options) = match &mut cli.command {
        Command::Target(TargetCommand::Add { options, .. }) => {
            (OptionScope::TargetAdd, "target", "add", options)
        }
        Command::Target(TargetCommand::Update { options, .. }) => {
            (OptionScope::TargetAdd, "target", "update", options)
        }
        Command::Secret(SecretCommand::Create(args)) => (
            OptionScope::SecretCreate,
            "secret",
            "create",
            &mut args.options,
        ),
        _ => return Ok(()),
    };
    let Some(m) = matches
        .subcommand_matches(group)
        .and_then(|m| m.subcommand_matches(sub))
    else {
        return Ok(());
    };
    for spec in specs(registry, scope) {
        let value = match spec.arg {
            OptionArg::Value { .. } => m
                .get_one::<String>(spec.name)
                .map(|v| OptionValue::Text(v.clone())),
            OptionArg::Secret { .. } => m
                .get_one::<String>(spec.name)
                .map(|v| OptionValue::Secret(SecretString::from(v.clone()))),
            OptionArg::Flag => m.get_flag(spec.name).then_some(OptionValue::Flag),
            OptionArg::SecretFromStdin if m.get_flag(spec.name) => {
                Some(OptionValue::Secret(read_stdin_secret(spec.name)?))
            }
            OptionArg::SecretFromStdin => None,
            OptionArg::SecretFile { .. } => match m.get_one::<String>(spec.name) {
                Some(path) => Some(OptionValue::Secret(read_secret_file(spec.name, path)?)),
                None => None,
            },
        };
        if let Some(value) = value {
            options.insert(spec.name, value);
        }
    }
    Ok(())
}

/// Reads one secret from standard input, at most [`MAX_STDIN_SECRET`] bytes, without its
/// trailing newline.
fn read_stdin_secret(option: &str) -> Result<SecretString, clap::Error> {
    let mut buf = Zeroizing::new(Vec::new());
    let fail = |msg: String| clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg);
    std::io::stdin()
        .take(MAX_STDIN_SECRET + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(format!("--{option}: cannot read standard input: {e}")))?;
    if buf.len() as u64 > MAX_STDIN_SECRET {
        return Err(fail(format!(
            "--{option}: standard input holds more than {MAX_STDIN_SECRET} bytes"
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| fail(format!("--{option}: standard input is not UTF-8 text")))?;
    Ok(SecretString::from(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Reads a secret file for an option (a private key): refused if others may read or write
/// it (as OpenSSH refuses such a key), at most [`MAX_STDIN_SECRET`] bytes.
fn read_secret_file(option: &str, path: &str) -> Result<SecretString, clap::Error> {
    let fail = |msg: String| clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg);
    let path = std::path::Path::new(path);
    crate::files::check(
        path,
        &format!("--{option} file"),
        crate::files::Kind::Private,
    )
    .map_err(|e| fail(format!("{e}")))?;
    let mut buf = Zeroizing::new(Vec::new());
    crate::files::open_regular(path)
        .and_then(|f| f.take(MAX_STDIN_SECRET + 1).read_to_end(&mut buf))
        .map_err(|e| fail(format!("--{option}: cannot read {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_STDIN_SECRET {
        return Err(fail(format!(
            "--{option}: {} holds more than {MAX_STDIN_SECRET} bytes",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| fail(format!("--{option}: {} is not text", path.display())))?;
    Ok(SecretString::from(text.to_owned()))
}

/// Options used outside their place: family options of `secret create` need `--target`.
pub fn require_target(options: &Options, target: Option<&str>) -> crate::Result<()> {
    match (options.names().next(), target) {
        (Some(name), None) => Err(crate::Error::invalid(format!(
            "--{name} needs --target (it is for secrets whose credentials live on a target)"
        ))),
        _ => Ok(()),
    }
}
