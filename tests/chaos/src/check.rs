//! The end of a soak: faults have stopped; the workers settle; then every promise is checked
//! from the outside (the CLI, the API, logins with the soak's own clients).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::World;
use crate::prober::{self, Login, Shared};

/// Words in a failure reason that name a fault the soak injects.
const FAULT_WORDS: &[&str] = &[
    "connect",
    "reset",
    "timed out",
    "timeout",
    "closed",
    "refused",
    "broken pipe",
    "eof",
    "unavailable",
    "shutting down",
    "terminat",
    "lease",
    "unreachable",
    "no answer",
    "i/o",
    "io error",
    "network",
    "starting up",
    "recovery",
    "throttl",
];

/// Waits until no secret is being rotated (every status Idle or Failed), up to `within`.
pub async fn settle(world: &World, within: Duration) -> Vec<(String, String)> {
    let deadline = Instant::now() + within;
    loop {
        let mut busy = Vec::new();
        for s in &world.secrets {
            let st = prober::status(&world.rotor, &s.name).await;
            if !(st.starts_with("Idle") || st.starts_with("Failed")) {
                busy.push((s.name.clone(), st));
            }
        }
        if busy.is_empty() || Instant::now() > deadline {
            return busy;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub struct Outcome {
    pub violations: Vec<String>,
    pub rotations: u64,
    pub notes: Vec<String>,
}

pub async fn run(world: &World, seen: &Shared) -> Outcome {
    let mut out = Outcome {
        violations: Vec::new(),
        rotations: 0,
        notes: Vec::new(),
    };
    let busy = settle(world, Duration::from_secs(120)).await;
    for (name, st) in busy {
        out.violations.push(format!(
            "{name}: still in flight 120 s after the faults stopped ({st})"
        ));
    }
    for s in &world.secrets {
        let name = s.name.as_str();
        // Stuck: Failed must name a fault; and every secret must rotate once faults are gone.
        let st = prober::status(&world.rotor, name).await;
        if st.starts_with("Failed") {
            let lower = st.to_lowercase();
            if FAULT_WORDS.iter().any(|w| lower.contains(w)) {
                out.notes
                    .push(format!("{name}: ended Failed on a fault: {st}"));
            } else {
                out.violations.push(format!(
                    "{name}: Failed for a reason that names no fault: {st}"
                ));
            }
        }
        match world.rotor.run(&["rotate", name]).await {
            Ok(o) if o.status.success() => {}
            Ok(o) => out.violations.push(format!(
                "{name}: does not rotate after the faults stopped: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => out
                .violations
                .push(format!("{name}: rotate after the faults: {e:#}")),
        }

        // Every ACSCurrent (and a dual account's ACSPrevious) logs in.
        let mut stages = vec!["ACSCurrent"];
        if s.family.keeps_previous() {
            stages.push("ACSPrevious");
        }
        for stage in stages {
            match world.api.stage(name, stage).await {
                Ok(Some(v)) => match prober::login(s, &v.data).await {
                    Login::Ok => {}
                    Login::Refused(e) => out
                        .violations
                        .push(format!("{name}: {stage} {} refused at the end: {e}", v.id)),
                    Login::Unreachable(e) => out.violations.push(format!(
                        "{name}: {stage} {}: the target is unreachable at the end: {e}",
                        v.id
                    )),
                },
                Ok(None) => out
                    .violations
                    .push(format!("{name}: no {stage} at the end")),
                Err(e) => out
                    .violations
                    .push(format!("{name}: {stage} unreadable at the end: {e:#}")),
            }
        }

        versions(world, seen, name, &mut out).await;
        audit(world, name, &mut out).await;
    }
    out
}

/// No version lost or duplicated: ids unique, each stage on one version, values distinct,
/// every version the prober saw as ACSCurrent still there (or pruned behind ten newer).
async fn versions(world: &World, seen: &Shared, name: &str, out: &mut Outcome) {
    let list = match world.rotor.json(&["secret", "versions", name]).await {
        Ok(v) => v,
        Err(e) => {
            return out
                .violations
                .push(format!("{name}: versions unreadable: {e:#}"))
        }
    };
    let list: Vec<Value> = match list {
        Value::Array(a) => a,
        Value::Object(ref o) => o
            .get("Versions")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut ids = HashSet::new();
    let mut stages: BTreeMap<String, u32> = BTreeMap::new();
    let mut values = HashSet::new();
    for v in &list {
        let id = v["VersionId"].as_str().unwrap_or_default().to_owned();
        if !ids.insert(id.clone()) {
            out.violations
                .push(format!("{name}: version {id} listed twice"));
        }
        for st in v["VersionStages"].as_array().into_iter().flatten() {
            *stages
                .entry(st.as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        if let Ok(answer) = world
            .api
            .call(
                "GetSecretValue",
                &[("SecretName", name), ("VersionId", &id)],
            )
            .await
        {
            let data: Value = serde_json::from_str(answer["SecretData"].as_str().unwrap_or("{}"))
                .unwrap_or_default();
            let credential = [
                "AccountPassword",
                "Password",
                "PrivateKey",
                "AccessKeySecret",
            ]
            .iter()
            .find_map(|k| data[*k].as_str().map(str::to_owned))
            .unwrap_or_default();
            if !credential.is_empty() && !values.insert(credential) {
                out.violations.push(format!(
                    "{name}: version {id} holds the same credential as another version"
                ));
            }
        }
    }
    for (stage, n) in &stages {
        if *n > 1 {
            out.violations
                .push(format!("{name}: {stage} on {n} versions"));
        }
    }
    if stages.get("ACSCurrent").copied().unwrap_or(0) != 1 {
        out.violations
            .push(format!("{name}: no ACSCurrent version"));
    }
    let unstaged = list
        .iter()
        .filter(|v| v["VersionStages"].as_array().is_none_or(|a| a.is_empty()))
        .count();
    let currents = seen
        .lock()
        .unwrap()
        .currents
        .get(name)
        .cloned()
        .unwrap_or_default();
    if unstaged < 10 {
        for id in currents {
            if !ids.contains(&id) {
                out.violations.push(format!("{name}: version {id}, once ACSCurrent, is gone (only {unstaged} unstaged versions kept)"));
            }
        }
    }
}

/// At most one driver per attempt: each version is created once and promoted once.
async fn audit(world: &World, name: &str, out: &mut Outcome) {
    let records = match world
        .rotor
        .json(&[
            "audit", "--secret", name, "--action", "rotation", "--limit", "10000",
        ])
        .await
    {
        Ok(Value::Array(a)) => a,
        Ok(other) => {
            return out
                .violations
                .push(format!("{name}: audit answer not a list: {other}"))
        }
        Err(e) => {
            return out
                .violations
                .push(format!("{name}: audit unreadable: {e:#}"))
        }
    };
    let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut promoted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &records {
        // A failed create names no version (none was stored).
        let Some(version) = r["VersionId"].as_str().filter(|v| !v.is_empty()) else {
            continue;
        };
        let version = version.to_owned();
        let actor = r["Actor"].as_str().unwrap_or_default().to_owned();
        match r["Action"].as_str() {
            Some("rotation.create") => created.entry(version).or_default().push(actor),
            Some("rotation.promote") => promoted.entry(version).or_default().push(actor),
            _ => {}
        }
    }
    // A create step may run again for the same version after a failed attempt; a promotion
    // happens once or the version had two drivers.
    for (version, actors) in &created {
        if actors.len() > 1 {
            out.notes.push(format!(
                "{name}: version {version} created {} times (by {})",
                actors.len(),
                actors.join(", ")
            ));
        }
    }
    for (version, actors) in &promoted {
        if actors.len() > 1 {
            out.violations.push(format!(
                "{name}: version {version} promoted {} times (by {})",
                actors.len(),
                actors.join(", ")
            ));
        }
    }
    out.rotations += promoted.len() as u64;
}
