//! `rotor verify NAME | --all` (and `rotor secret verify NAME`): drift checks on demand — does
//! each managed secret's `ACSCurrent` credential still log in on its target? Exit 0 when every
//! one does, 6 when a target refused one (drift), 7 when a target could not be reached.

use clap::Args;
use serde_json::json;

use super::output::{table, Output};
use crate::config::Config;
use crate::engine::Verdict;
use crate::error::{Error, Result};
use crate::model::SecretName;
use crate::store::Store;

/// `rotor verify`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true))]
pub struct VerifyArgs {
    /// The secret to check.
    #[arg(group = "which")]
    pub name: Option<SecretName>,
    /// Check every secret that has a target.
    #[arg(long, group = "which")]
    pub all: bool,
}

/// Runs the checks and prints what each found.
pub async fn run(
    store: &Store,
    registry: rotators::Registry,
    settings: &Config,
    names: Option<Vec<SecretName>>,
    out: &Output,
) -> Result<()> {
    let (engine, dispatcher) = super::rotate::engine(store, registry, settings)?;
    let single = names.as_ref().is_some_and(|n| n.len() == 1);
    let names = match names {
        Some(names) => names,
        None => store
            .list(&[], false)
            .await?
            .into_iter()
            .filter(|s| s.target.is_some())
            .map(|s| s.name)
            .collect(),
    };
    let mut rows = Vec::new();
    for name in &names {
        let verdict = match engine.check_drift(name).await {
            Ok(v) => v,
            Err(e) if single => return Err(e),
            Err(e) => Verdict::Unreachable(e.to_string()),
        };
        rows.push((name.clone(), verdict));
    }
    drop(engine);
    super::rotate::finish_webhooks(dispatcher, super::rotate::WEBHOOK_GRACE).await;
    let drifted = rows
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Drift(_)))
        .count();
    let unreachable = rows
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Unreachable(_)))
        .count();
    let detail = |v: &Verdict| match v {
        Verdict::Works => "the current credential logs in".to_owned(),
        Verdict::Drift(m) | Verdict::Unreachable(m) => m.clone(),
    };
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|(n, v)| json!({"SecretName": n, "Verdict": v.as_str(), "Detail": detail(v)}))
        .collect();
    if single {
        let (name, verdict) = &rows[0];
        out.print(&results[0], || match verdict {
            Verdict::Works => format!("secret '{name}': the current credential logs in"),
            Verdict::Drift(m) => format!("secret '{name}': drift: {m}"),
            Verdict::Unreachable(m) => {
                format!("secret '{name}': the target cannot be reached: {m}")
            }
        });
    } else {
        let summary = json!({
            "Checked": rows.len(),
            "Drifted": drifted,
            "Unreachable": unreachable,
            "Results": results,
        });
        out.print(&summary, || {
            let mut text = String::new();
            if !rows.is_empty() {
                text = table(
                    &["SECRET", "VERDICT", "DETAIL"],
                    rows.iter()
                        .map(|(n, v)| vec![n.to_string(), v.as_str().to_owned(), detail(v)])
                        .collect(),
                );
                text.push('\n');
            }
            text.push_str(&format!(
                "{} checked: {} log in, {drifted} drifted, {unreachable} unreachable",
                rows.len(),
                rows.len() - drifted - unreachable
            ));
            text
        });
    }
    if drifted > 0 {
        return Err(Error::Rotation(format!(
            "{drifted} of {} secrets drifted: their current credential is refused",
            rows.len()
        )));
    }
    if unreachable > 0 {
        return Err(Error::Target(format!(
            "{unreachable} of {} secrets could not be checked: their target cannot be reached",
            rows.len()
        )));
    }
    Ok(())
}
