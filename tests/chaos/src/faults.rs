//! The faults: chosen, timed and aimed by one RNG seeded from `--seed`, so a run is replayed by
//! its seed (what the faults then hit depends on timing, as in any soak). Each fault holds the
//! resource it breaks (a worker, a proxy, a server) until it ends, so two never fight over one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex as AsyncMutex;

use crate::proxy::{Mode, Proxy};
use crate::rotor::{Api, Rotor, LEASE_SECS};
use crate::services::{Maria, PgCluster, RamEmulator, Redis};

/// A fault in force.
#[derive(Clone, Debug)]
pub struct Active {
    pub id: u64,
    pub label: String,
}

#[derive(Default)]
struct Book {
    next_id: u64,
    active: Vec<Active>,
    busy: BTreeSet<String>,
    by_kind: BTreeMap<&'static str, u64>,
    log: Vec<String>,
}

/// What is in force now and what ran, shared with the prober.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<Book>>);

impl Faults {
    pub fn active_labels(&self) -> String {
        let book = self.0.lock().unwrap();
        if book.active.is_empty() {
            return "none".into();
        }
        book.active
            .iter()
            .map(|a| a.label.clone())
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap().by_kind.clone()
    }

    pub fn log(&self) -> Vec<String> {
        self.0.lock().unwrap().log.clone()
    }

    /// Takes `resource` for a fault of `kind`; None when another fault holds it.
    fn begin(&self, kind: &'static str, resource: &str, label: String, t0: Instant) -> Option<u64> {
        let mut book = self.0.lock().unwrap();
        if !book.busy.insert(resource.to_owned()) {
            return None;
        }
        book.next_id += 1;
        let id = book.next_id;
        *book.by_kind.entry(kind).or_default() += 1;
        book.log
            .push(format!("{:>7.1}s  {label}", t0.elapsed().as_secs_f64()));
        book.active.push(Active { id, label });
        Some(id)
    }

    fn end(&self, id: u64, resource: &str) {
        let mut book = self.0.lock().unwrap();
        book.active.retain(|a| a.id != id);
        book.busy.remove(resource);
    }

    /// Counts an event that is not held (a racing rotate call).
    pub fn count(&self, kind: &'static str) {
        *self.0.lock().unwrap().by_kind.entry(kind).or_default() += 1;
    }
}

/// The workers: restarted in place.
pub struct Workers {
    pub rotor: Rotor,
    pub logs: std::path::PathBuf,
    pub children: Vec<Option<tokio::process::Child>>,
    /// `rotor serve` and its address: the prober's way in, kept running too.
    pub api: Option<tokio::process::Child>,
    pub api_addr: String,
}

impl Workers {
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let log = self.logs.join(format!("worker-{i}.log"));
        self.children[i] = Some(self.rotor.spawn_worker(&log)?);
        Ok(())
    }

    pub fn pid(&self, i: usize) -> Option<i32> {
        self.children[i].as_ref()?.id().map(|p| p as i32)
    }

    pub async fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }

    /// Workers that exited on their own (a store outage they gave up on): restarted, counted.
    pub fn restart_exited(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.children.len() {
            let exited = match self.children[i].as_mut() {
                Some(c) => matches!(c.try_wait(), Ok(Some(_))),
                None => false,
            };
            if exited {
                let _ = self.spawn(i);
                n += 1;
            }
        }
        let api_exited = match self.api.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        };
        if api_exited {
            self.api = self
                .rotor
                .spawn_api(&self.api_addr, &self.logs.join("api.log"))
                .ok();
            n += 1;
        }
        n
    }
}

/// Everything a fault may break.
pub struct World {
    pub workers: AsyncMutex<Workers>,
    pub proxies: Vec<(String, Proxy)>,
    pub store: PgCluster,
    pub pg_target: PgCluster,
    pub redis: AsyncMutex<Redis>,
    pub maria: Option<AsyncMutex<Maria>>,
    pub sshd: Option<AsyncMutex<crate::ssh::Sshd>>,
    pub ram: Option<RamEmulator>,
    pub rotor: Rotor,
    pub api: Api,
    pub secrets: Vec<crate::prober::Secret>,
}

const KINDS: &[&str] = &[
    "worker-kill",
    "worker-pause",
    "net-latency",
    "net-reset",
    "net-stall",
    "net-half-open",
    "pg-target-stop",
    "redis-restart",
    "mariadb-kill",
    "sshd-restart",
    "store-restart",
    "ram-throttle",
    "ram-slow",
];

/// Injects faults until `stop`; returns when every fault it began has ended.
pub async fn inject(
    world: Arc<World>,
    faults: Faults,
    seed: u64,
    t0: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut running = tokio::task::JoinSet::new();
    while !*stop.borrow() {
        let gap = Duration::from_millis(rng.random_range(1000..6000));
        tokio::time::sleep(gap).await;
        if *stop.borrow() {
            break;
        }
        let kind = KINDS[rng.random_range(0..KINDS.len())];
        let pick: u64 = rng.random();
        let hold = Duration::from_millis(rng.random_range(1000..15000));
        let (world, faults) = (world.clone(), faults.clone());
        running.spawn(async move { one(world, faults, kind, pick, hold, t0).await });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn one(
    world: Arc<World>,
    faults: Faults,
    kind: &'static str,
    pick: u64,
    hold: Duration,
    t0: Instant,
) {
    let secs = hold.as_secs_f64();
    match kind {
        "worker-kill" => {
            let n = world.workers.lock().await.children.len();
            let i = (pick as usize) % n;
            let res = format!("worker-{i}");
            let Some(id) = faults.begin(
                kind,
                &res,
                format!("worker {i} SIGKILLed, restarted after {secs:.1}s"),
                t0,
            ) else {
                return;
            };
            world.workers.lock().await.kill(i).await;
            tokio::time::sleep(hold).await;
            let _ = world.workers.lock().await.spawn(i);
            faults.end(id, &res);
        }
        "worker-pause" => {
            let n = world.workers.lock().await.children.len();
            let i = (pick as usize) % n;
            let res = format!("worker-{i}");
            // Beyond its lease: another worker may take its rotation over meanwhile.
            let hold = Duration::from_secs(LEASE_SECS) + hold;
            let label = format!(
                "worker {i} SIGSTOPped for {:.1}s (lease {LEASE_SECS}s)",
                hold.as_secs_f64()
            );
            let Some(id) = faults.begin(kind, &res, label, t0) else {
                return;
            };
            let pid = world.workers.lock().await.pid(i);
            if let Some(pid) = pid {
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                tokio::time::sleep(hold).await;
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
            faults.end(id, &res);
        }
        "net-latency" | "net-reset" | "net-stall" | "net-half-open" => {
            let (target, proxy) = &world.proxies[(pick as usize) % world.proxies.len()];
            let res = format!("proxy-{target}");
            let (mode, what) = match kind {
                "net-latency" => {
                    let ms = 50 + (pick >> 8) % 1500;
                    (Mode::Latency(ms), format!("{ms} ms latency"))
                }
                "net-reset" => (Mode::Reset, "connections reset".to_owned()),
                "net-stall" => (Mode::Stall, "connections stalled".to_owned()),
                _ => (Mode::HalfOpen, "connections half-open".to_owned()),
            };
            let label = format!("network to {target}: {what} for {secs:.1}s");
            let Some(id) = faults.begin(kind, &res, label, t0) else {
                return;
            };
            proxy.set(mode);
            tokio::time::sleep(hold).await;
            proxy.set(Mode::Pass);
            faults.end(id, &res);
        }
        "pg-target-stop" => {
            let mode = if pick.is_multiple_of(2) {
                "fast"
            } else {
                "immediate"
            };
            let label = format!("PostgreSQL target stopped ({mode}) for {secs:.1}s");
            let Some(id) = faults.begin(kind, "pg-target", label, t0) else {
                return;
            };
            if let Err(e) = world.pg_target.stop(mode).await {
                eprintln!("chaos: pg_ctl stop (target): {e:#}");
            }
            tokio::time::sleep(hold).await;
            restart_pg(&world.pg_target, "target").await;
            faults.end(id, "pg-target");
        }
        "store-restart" => {
            let mode = if pick.is_multiple_of(2) {
                "fast"
            } else {
                "immediate"
            };
            let label = format!("the store's PostgreSQL restarted ({mode}), down {secs:.1}s");
            let Some(id) = faults.begin(kind, "store", label, t0) else {
                return;
            };
            if let Err(e) = world.store.stop(mode).await {
                eprintln!("chaos: pg_ctl stop (store): {e:#}");
            }
            tokio::time::sleep(hold.min(Duration::from_secs(8))).await;
            restart_pg(&world.store, "store").await;
            faults.end(id, "store");
        }
        "redis-restart" => {
            let crash = pick.is_multiple_of(2);
            let how = if crash { "SIGKILL" } else { "SIGTERM" };
            let label = format!("Redis stopped ({how}), restarted after {secs:.1}s");
            let Some(id) = faults.begin(kind, "redis", label, t0) else {
                return;
            };
            world.redis.lock().await.stop(crash).await;
            tokio::time::sleep(hold).await;
            if let Err(e) = world.redis.lock().await.resume().await {
                eprintln!("chaos: redis restart: {e:#}");
            }
            faults.end(id, "redis");
        }
        "mariadb-kill" => {
            let Some(maria) = &world.maria else { return };
            let label = format!("MariaDB SIGKILLed, restarted after {secs:.1}s");
            let Some(id) = faults.begin(kind, "mariadb", label, t0) else {
                return;
            };
            maria.lock().await.kill().await;
            tokio::time::sleep(hold).await;
            if let Err(e) = maria.lock().await.resume().await {
                eprintln!("chaos: mariadbd restart: {e:#}");
            }
            faults.end(id, "mariadb");
        }
        "sshd-restart" => {
            let Some(sshd) = &world.sshd else { return };
            let label = format!("sshd stopped with its sessions, restarted after {secs:.1}s");
            let Some(id) = faults.begin(kind, "sshd", label, t0) else {
                return;
            };
            sshd.lock().await.stop().await;
            tokio::time::sleep(hold).await;
            if let Err(e) = sshd.lock().await.resume().await {
                eprintln!("chaos: sshd restart: {e:#}");
            }
            faults.end(id, "sshd");
        }
        "ram-throttle" => {
            let Some(ram) = &world.ram else { return };
            let count = 1 + pick % 20;
            let label = format!("the RAM API throttles its next {count} calls");
            let Some(id) = faults.begin(kind, "ram-control", label, t0) else {
                return;
            };
            let _ = ram.control(&format!("throttle?count={count}")).await;
            tokio::time::sleep(hold).await;
            let _ = ram.control("throttle?count=0").await;
            faults.end(id, "ram-control");
        }
        "ram-slow" => {
            let Some(ram) = &world.ram else { return };
            let ms = 500 + pick % 20_000;
            let label =
                format!("the RAM API's CreateAccessKey answers {ms} ms late, for {secs:.1}s");
            let Some(id) = faults.begin(kind, "ram-control", label, t0) else {
                return;
            };
            let _ = ram.control(&format!("slow-create?ms={ms}")).await;
            tokio::time::sleep(hold).await;
            let _ = ram.control("slow-create?ms=0").await;
            faults.end(id, "ram-control");
        }
        _ => {}
    }
}

/// Starts a stopped cluster again, trying for two minutes: a fault must end.
async fn restart_pg(pg: &PgCluster, what: &str) {
    for _ in 0..120 {
        match pg.start().await {
            Ok(()) => return,
            Err(e) => eprintln!("chaos: pg_ctl start ({what}): {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Rotations racing the workers: secrets made due (`rotation set --rotate-now`, the soak's
/// short interval), `rotor rotate NAME` and the API's `RotateSecret`, at random.
pub async fn race(
    world: Arc<World>,
    faults: Faults,
    seed: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5eed);
    let mut running = tokio::task::JoinSet::new();
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let s = world.secrets[rng.random_range(0..world.secrets.len())].clone();
        let roll: u32 = rng.random_range(0..10);
        let world = world.clone();
        let faults = faults.clone();
        running.spawn(async move {
            if roll < 6 {
                let _ = world
                    .rotor
                    .run(&[
                        "rotation",
                        "set",
                        &s.name,
                        "--interval",
                        s.family.interval(),
                        "--rotate-now",
                    ])
                    .await;
            } else if roll < 8 {
                faults.count("cli-rotate");
                let _ = world.rotor.run(&["rotate", &s.name]).await;
            } else {
                faults.count("api-rotate");
                let _ = world
                    .api
                    .call("RotateSecret", &[("SecretName", &s.name)])
                    .await;
            }
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}
