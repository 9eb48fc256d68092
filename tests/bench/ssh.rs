//! SSH (ECS) rotation benchmark on loopback against a throwaway OpenSSH sshd (store on SQLite):
//! median and p95 of one full password rotation (the user's own `passwd` over a PTY, and
//! `chpasswd` as root), of one full key pair rotation (Ed25519, authorized_keys edited by the
//! user), and the password gap: from the moment `set` changed the password (the old one stops
//! working) to the promotion of the new version. Not a test: it asserts nothing about speed.
//! Runs as root (it creates Linux users and starts sshd, like the tests).
//!
//! ```text
//! cargo bench --bench ssh                      # 30 rotations of each
//! cargo bench --bench ssh -- --rotations 100
//! ```

#[path = "common.rs"]
mod common;
#[path = "../testkit/sshd.rs"]
mod sshd;

use std::sync::Arc;

use rotators::family::OptionValue;
use rotators::{Options, Registry, SecretKind, SecretType, SecretValue, Source, SubType};
use rotor::engine::{Engine, EngineConfig};
use rotor::model::SecretName;
use rotor::store::{NewSecret, OpenMode, Store, StoreConfig};

use common::{breakdown, percentiles, rotate_once, GapProbe, StepTimer};
use sshd::{keygen, HostUser, Sshd, Sudo};

async fn import(
    store: &Store,
    registry: &Registry,
    name: &str,
    sub: SubType,
    target: &str,
    value: serde_json::Value,
) {
    let kind = SecretKind::new(SecretType::ECS, Some(sub)).unwrap();
    let new = NewSecret::new(
        SecretName::parse(name).unwrap(),
        kind,
        SecretValue::new(vec![]),
    );
    let value = SecretValue::new(value.to_string().into_bytes());
    rotor::targets::create_secret(
        store,
        registry,
        new,
        target,
        Source::Import(value),
        &Options::new(),
    )
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rotations = args
        .iter()
        .position(|a| a == "--rotations")
        .and_then(|i| args.get(i + 1))
        .map_or(30, |v| v.parse().unwrap());
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    let chpasswd_user = HostUser::new(Sudo::No);
    let root = HostUser::new(Sudo::IsRoot);
    let dir = tempfile::tempdir().unwrap();
    let (public, private) = keygen(dir.path(), &["-t", "ed25519"]);
    user.write_authorized_keys(&format!("{public}\n"));
    let (root_public, root_private) = keygen(dir.path(), &["-t", "ed25519"]);
    root.write_authorized_keys(&format!("{root_public}\n"));

    // The password rotator behind the gap probe, both rotators behind step timers.
    let probe = GapProbe::new(Arc::new(rotators::ssh::rotator::PasswordRotator));
    let mut registry = rotor::builtin_rotators();
    let password_timer = StepTimer::new(probe.clone());
    registry.register(
        SecretKind::new(SecretType::ECS, Some(SubType::Password)).unwrap(),
        password_timer.clone(),
    );
    let key_kind = SecretKind::new(SecretType::ECS, Some(SubType::SSHKey)).unwrap();
    let key_timer = StepTimer::new(registry.get(key_kind).unwrap());
    registry.register(key_kind, key_timer.clone());
    let store = Store::open(&StoreConfig::new(dir.path().join("data")), OpenMode::Init)
        .await
        .unwrap();
    let mut options = Options::new();
    options.insert("host-key", OptionValue::Text(sshd.host_key()));
    rotor::targets::add_target(
        &store,
        &registry,
        "host",
        "ssh",
        Some(&sshd.url()),
        &options,
        true,
    )
    .await
    .unwrap();
    options
        .insert("admin-user", OptionValue::Text(root.name.clone()))
        .insert("admin-key-file", OptionValue::Secret(root_private.into()));
    rotor::targets::add_target(
        &store,
        &registry,
        "as-root",
        "ssh",
        Some(&sshd.url()),
        &options,
        true,
    )
    .await
    .unwrap();
    import(
        &store,
        &registry,
        "host/pw",
        SubType::Password,
        "host",
        serde_json::json!({"UserName": user.name, "Password": user.password}),
    )
    .await;
    import(
        &store,
        &registry,
        "root/pw",
        SubType::Password,
        "as-root",
        serde_json::json!({"UserName": chpasswd_user.name, "Password": chpasswd_user.password}),
    )
    .await;
    import(
        &store,
        &registry,
        "host/key",
        SubType::SSHKey,
        "host",
        serde_json::json!({"UserName": user.name, "PublicKey": public, "PrivateKey": private}),
    )
    .await;
    let engine = Engine::new(
        store.clone(),
        registry,
        EngineConfig {
            owner: "bench".into(),
            ..EngineConfig::default()
        },
    );
    println!("SSH rotation benchmark (release build, loopback OpenSSH sshd, store on SQLite)");
    let mut breakdowns = vec![];
    for (label, secret, timer) in [
        ("password (passwd over a PTY)", "host/pw", &password_timer),
        ("password (chpasswd as root)", "root/pw", &password_timer),
        ("key pair (Ed25519)", "host/key", &key_timer),
    ] {
        rotate_once(&engine, secret).await; // warm-up
        probe.take();
        timer.take();
        let mut samples = vec![];
        for _ in 0..rotations {
            samples.push(rotate_once(&engine, secret).await);
            probe.rotated();
        }
        breakdowns.push(breakdown(label, timer.take(), &samples));
        let (median, p95) = percentiles(samples);
        println!("{label:<29} rotation: median {median:6.1} ms  p95 {p95:6.1} ms  ({rotations} rotations)");
        let gaps = probe.take();
        if !gaps.is_empty() {
            let (median, p95) = percentiles(gaps);
            println!("{:<29} gap (old password refused → new one promoted): median {median:6.1} ms  p95 {p95:6.1} ms", "");
        }
    }
    for line in breakdowns {
        println!("{line}");
    }
}
