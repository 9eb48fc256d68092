//! The records the store keeps for rotations: the [`Lease`] a claim holds on a secret, the
//! [`JobRecord`] of a rotation in flight, and the lease owner names. The engine owns what they
//! mean (its `Lease`, `Job` and `Step`); the store persists them and guards their writes.

use crate::model::{SecretName, VersionId};

/// One lease on one secret, as the store grants it, held under a token of its own (not the process's), so
/// that every job write names the claim it belongs to. A claim that lost its lease fails its
/// next write; a second claim of the same secret, in this process or another, is never granted
/// while the lease lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The secret's row id in the store.
    pub secret_id: i64,
    /// The secret's name.
    pub name: SecretName,
    /// The target it rotates on, for per-target concurrency limits.
    pub target: Option<String>,
    /// The process holding it (`host-pid-random`), as the audit log and takeovers name it.
    pub owner: String,
    /// This claim's lease token (empty for a read-only look, which holds no lease).
    pub token: String,
    /// The previous holder, when this claim took over a lease its holder stopped renewing (or
    /// held by a process on this host that is gone): its last target write may still land.
    pub taken_from: Option<String>,
    /// Who asked for this rotation (`cli:USER`, `api:KEY`), for a claim taken on request
    /// ([`claim_now`](super::Store::claim_now)); `None` for a worker's. The audit log names
    /// them, with the lease holder in the detail.
    pub requested_by: Option<String>,
    /// When the claim was asked for, on this process's monotonic clock. The store computes the
    /// lease's expiry from its clock read at that moment, so the lease runs from here — not
    /// from when the answer arrived, which may be much later (a store restarting, a lock, a
    /// full pool): a claim that waited longer than its lease is granted already expired.
    pub asked_at: tokio::time::Instant,
}

/// A rotation job as stored: the engine reads its step (the column's text) into its own state
/// machine; the store only guards, in SQL, that each write finds the step the engine expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// The step to run next, as stored (`create`, `set`, `test`, `finish`).
    pub step: String,
    /// The `ACSPending` version, once `create` has stored it.
    pub version_id: Option<VersionId>,
    /// Failed attempts in this cycle.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the job first began creating a credential on its target (ms since the epoch).
    pub create_mark: Option<i64>,
    /// A failed attempt left the `ACSPending` credential on the target and `ACSCurrent` could
    /// not be put back.
    pub pending_on_target: bool,
}

/// This machine's name, as lease owners carry it.
pub fn this_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "rotor".into())
}

/// A lease owner name for this process: `host-pid-random`, unique per process, readable in
/// `describe` and logs.
pub fn owner_name() -> String {
    format!(
        "{}-{}-{}",
        this_host(),
        std::process::id(),
        &crate::crypto::random_id()[..6]
    )
}

/// True when lease `owner` names a process on this host that no longer runs, so its lease can
/// be taken over at once. Owners on other hosts (or a process that still runs, even under a
/// reused pid) are never judged dead: their leases expire as usual.
pub fn owner_is_dead_here(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '-');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if host != this_host() || pid == std::process::id() {
        return false;
    }
    // Linux: a running process has /proc/PID; elsewhere nothing is judged dead. A zombie (a
    // process that ended, not yet reaped by its parent: one just SIGKILLed, say) keeps its
    // /proc entry, and its pid, but runs nothing more: every one of its threads is a zombie
    // (a main thread that ended alone shows `Z` while the others still run).
    if !cfg!(target_os = "linux") || !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
        Ok(tasks) => tasks,
    };
    let mut ended = true;
    for task in tasks {
        let Ok(task) = task else { return false };
        let stat = match std::fs::read_to_string(task.path().join("stat")) {
            Ok(stat) => stat,
            // A thread that went between the listing and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return false,
        };
        ended &= stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X");
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_ended_is_dead_here_even_before_it_is_reaped() {
        let alive = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let owner = |pid: u32| format!("{}-{pid}-abcdef", this_host());
        assert!(!owner_is_dead_here(&owner(alive.id())), "sleep runs");
        // `true` has exited; not waited for, it stays a zombie with its /proc entry.
        let zombie = std::time::Instant::now();
        while !std::fs::read_to_string(format!("/proc/{}/stat", ended.id()))
            .unwrap()
            .contains(") Z")
        {
            assert!(zombie.elapsed().as_secs() < 10, "true did not end");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            owner_is_dead_here(&owner(ended.id())),
            "a zombie runs nothing"
        );
        let pid = ended.id();
        ended.wait().unwrap();
        assert!(owner_is_dead_here(&owner(pid)), "reaped: no /proc entry");
        assert!(!owner_is_dead_here(&format!("elsewhere-{pid}-abcdef")));
        let mut alive = alive;
        alive.kill().unwrap();
        alive.wait().unwrap();
    }
}
