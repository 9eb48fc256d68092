//! rotor's chaos soak (issue 23): every rotator family rotating for real on servers of its own
//! while workers, targets, the store and the network fail at random — reproducibly from a seed
//! — with an independent prober logging in all along and a checker at the end.
//!
//! ```sh
//! cargo build --release --bin rotor
//! cargo run --release -p rotor-chaos -- --minutes 60 --seed 42
//! ```
//!
//! It drives the real `rotor` binary as processes (the CLI, `rotor worker` ×3, `rotor serve`)
//! and never the engine's internals. Root is needed (initdb as postgres, useradd, sshd).

mod check;
mod faults;
mod prober;
mod proxy;
mod rotor;
mod services;
mod setup;
mod ssh;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "rotor's chaos soak: every family rotating while everything fails")]
struct Args {
    /// How long faults are injected.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// The seed that chooses the faults and their timing (printed; replay with it).
    #[arg(long)]
    seed: Option<u64>,
    /// The rotor binary (default: target/release/rotor beside this one).
    #[arg(long, env = "ROTOR_CHAOS_BIN")]
    rotor: Option<PathBuf>,
    /// Where the servers, the store and the logs live (default: a new directory under /tmp,
    /// removed after a run without violations).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn rotor_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    let bin = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("rotor"))
            .unwrap_or_else(|| PathBuf::from("rotor")),
    };
    if !bin.exists() {
        bail!(
            "the rotor binary ({}) is missing: cargo build --release --bin rotor, or --rotor PATH",
            bin.display()
        );
    }
    Ok(bin)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    match soak(args, seed).await {
        Ok(0) => {}
        Ok(_) => {
            eprintln!("chaos: violations found; replay with --seed {seed}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("chaos: the soak could not run: {e:#} (seed {seed})");
            std::process::exit(2);
        }
    }
}

async fn soak(args: Args, seed: u64) -> Result<usize> {
    let bin = rotor_bin(args.rotor)?;
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("rotor-chaos-{run_id}")));
    std::fs::create_dir_all(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    eprintln!(
        "chaos: seed {seed}, {} minutes, rotor {}, in {}",
        args.minutes,
        bin.display(),
        dir.display()
    );
    let made = setup::build(&bin, &dir, &run_id).await?;
    let world = made.world.clone();
    eprintln!(
        "chaos: {} secrets, {} workers; injecting faults",
        world.secrets.len(),
        setup::WORKERS
    );

    let faults = faults::Faults::default();
    let seen: prober::Shared = Arc::new(Mutex::new(prober::Seen::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let mut probers = tokio::task::JoinSet::new();
    for s in &world.secrets {
        probers.spawn(prober::run(
            s.clone(),
            world.api.clone(),
            world.rotor.clone(),
            faults.clone(),
            seen.clone(),
            stop_rx.clone(),
        ));
    }
    let injector = tokio::spawn(faults::inject(
        world.clone(),
        faults.clone(),
        seed,
        t0,
        stop_rx.clone(),
    ));
    let racer = tokio::spawn(faults::race(
        world.clone(),
        faults.clone(),
        seed,
        stop_rx.clone(),
    ));
    // Workers that exited on their own (a store gone too long) come back, counted.
    let keeper = {
        let world = world.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut restarted = 0;
            while !*stop.borrow() {
                restarted += world.workers.lock().await.restart_exited();
                let _ = tokio::time::timeout(Duration::from_secs(1), stop.changed()).await;
            }
            restarted
        })
    };

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let mut last = Instant::now();
    // Ctrl-C (or SIGTERM) ends the fault phase early: the checks and the teardown still run.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    while t0.elapsed() < total {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("chaos: interrupted; ending the faults now");
                break;
            }
            _ = term.recv() => {
                eprintln!("chaos: terminated; ending the faults now");
                break;
            }
        }
        if last.elapsed() >= Duration::from_secs(30) {
            last = Instant::now();
            let s = seen.lock().unwrap();
            eprintln!(
                "chaos: {:>5.0}s  {} logins, {} refusals, faults now: {}",
                t0.elapsed().as_secs_f64(),
                s.logins,
                s.refusals.len(),
                faults.active_labels()
            );
        }
    }
    eprintln!("chaos: stopping faults and rotations; letting the workers settle");
    stop_tx.send(true)?;
    let _ = racer.await;
    let _ = injector.await;
    while probers.join_next().await.is_some() {}
    let exited = keeper.await.unwrap_or(0);
    world.workers.lock().await.restart_exited();

    let outcome = check::run(&world, &seen).await;
    let (violations, summary) =
        summarise(&seen.lock().unwrap(), &faults, &outcome, seed, t0, exited);
    print!("{summary}");

    // Tear down what this run made.
    {
        let mut w = world.workers.lock().await;
        for i in 0..w.children.len() {
            w.kill(i).await;
        }
        if let Some(mut api) = w.api.take() {
            let _ = api.kill().await;
        }
    }
    for u in &made.users {
        ssh::remove_user(u).await;
    }
    world.redis.lock().await.stop(true).await;
    if let Some(m) = &world.maria {
        m.lock().await.kill().await;
    }
    if let Some(s) = &world.sshd {
        s.lock().await.stop().await;
    }
    // The PostgreSQL clusters stop when the world is dropped.
    drop(made);
    drop(world);
    if violations.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("chaos: logs kept in {}", dir.display());
    }
    Ok(violations.len())
}

/// The report: faults in order, refusals by cause, the longest recovery, every violation (a
/// refusal repeated while it lasts is one, with its count), then the one-line summary.
fn summarise(
    seen: &prober::Seen,
    faults: &faults::Faults,
    outcome: &check::Outcome,
    seed: u64,
    t0: Instant,
    exited: usize,
) -> (Vec<String>, String) {
    use std::fmt::Write;
    let mut out = String::new();
    let mut violations: Vec<String> = seen.violations.clone();
    violations.extend(outcome.violations.iter().cloned());
    let mut repeated: Vec<(String, u32)> = Vec::new();
    for r in seen.refusals.iter().filter(|r| r.violation) {
        let key = format!(
            "{} {} {} refused ({})",
            r.secret, r.stage, r.version, r.cause
        );
        match repeated.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => {
                repeated.push((key.clone(), 1));
                violations.push(format!(
                    "{key} first at {:.1}s; after: {}; status {}; faults: {}",
                    (r.at - t0).as_secs_f64(),
                    r.after,
                    r.status,
                    r.faults
                ));
            }
        }
    }
    let by_kind = faults.by_kind();
    let fault_total: u64 = by_kind.values().sum();
    let _ = writeln!(out, "chaos: faults, in order:");
    for line in faults.log() {
        let _ = writeln!(out, "  {line}");
    }
    let mut causes: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in &seen.refusals {
        *causes.entry(r.cause).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "chaos: {} logins, {} refusals, {} unreachable, {} failed reads; workers that exited on their own: {exited}",
        seen.logins,
        seen.refusals.len(),
        seen.unreachable,
        seen.read_failures
    );
    for (cause, n) in &causes {
        let _ = writeln!(out, "  refusals: {n} × {cause}");
    }
    if let Some((name, d)) = seen.longest_down.iter().max_by_key(|(_, d)| **d) {
        let _ = writeln!(
            out,
            "chaos: longest recovery: {name}, ACSCurrent did not log in for {:.1}s",
            d.as_secs_f64()
        );
    }
    for note in &outcome.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    for v in &violations {
        let _ = writeln!(out, "VIOLATION: {v}");
    }
    for (key, n) in repeated.iter().filter(|(_, n)| *n > 1) {
        let _ = writeln!(out, "  ({key}: seen {n} times)");
    }
    let kinds = by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "chaos: seed {seed}, {} rotations, {fault_total} faults ({kinds}), {} violations",
        outcome.rotations,
        violations.len()
    );
    (violations, out)
}
