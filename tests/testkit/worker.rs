//! `rotor-testkit`: the `rotor` CLI with the test rotator registered for `ECS`/`Password`
//! secrets, so integration tests can run real worker processes and kill them mid-rotation.

#[path = "rotator.rs"]
mod rotator;

use rotators::{SecretKind, SecretType, SubType};

fn main() {
    let mut registry = rotor::builtin_rotators();
    let kind = SecretKind::new(SecretType::ECS, Some(SubType::Password)).expect("ECS/Password");
    registry.register(kind, rotator::FileRotator::from_env());
    rotor::cli::main_with(registry);
}
