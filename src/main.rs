//! The `rotor` binary: the CLI with the rotators built into this release.

fn main() {
    rotor::cli::main_with(rotor::builtin_rotators());
}
