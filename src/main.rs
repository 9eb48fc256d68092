//! The `rotor` binary: parses the command line, sets up logging, runs the command and turns its
//! error into a one-line message and an exit code.

use clap::error::ErrorKind;
use clap::Parser;
use rotor::cli::{Cli, LogFormat};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Err(e) = runtime.block_on(rotor::cli::run(cli)) {
        eprintln!("rotor: {e}");
        std::process::exit(e.exit_code());
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Help and version print as clap prints them; a usage error becomes one line and exit code 2,
/// like every other invalid input.
fn usage_error(e: clap::Error) -> ! {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    eprintln!(
        "rotor: {} (see: rotor --help)",
        first.trim_start_matches("error: ")
    );
    std::process::exit(rotor::error::exit::INVALID)
}
