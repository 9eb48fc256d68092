//! `rotor verify NAME | --all` (and `rotor secret verify NAME`): drift checks on demand — does
//! each managed secret's `ACSCurrent` credential still log in on its target, and its
//! `ACSPrevious` one where it must (dual accounts)? Exit 0 when every one does, 6 when a target
//! refused one (drift), 7 when a target could not be reached.

use clap::Args;
use serde_json::json;

use super::output::{table, Output};
use crate::config::Config;
use crate::engine::{Findings, Verdict};
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
            Ok(findings) => findings,
            Err(e) if single => return Err(e),
            Err(e) => Findings {
                current: Verdict::Unreachable(e.to_string()),
                previous: None,
            },
        };
        rows.push((name.clone(), verdict));
    }
    drop(engine);
    super::rotate::finish_webhooks(dispatcher, super::rotate::WEBHOOK_GRACE).await;
    let count = |verdict: &str| rows.iter().filter(|(_, f)| f.verdict() == verdict).count();
    let (drifted, unreachable) = (count("Drift"), count("Unreachable"));
    let results: Vec<serde_json::Value> = rows.iter().map(|(n, f)| result(n, f)).collect();
    if single {
        let (name, findings) = &rows[0];
        out.print(&results[0], || match findings.verdict() {
            "Drift" => format!("secret '{name}': drift: {}", findings.detail()),
            "Unreachable" => format!(
                "secret '{name}': the target cannot be reached: {}",
                findings.detail()
            ),
            _ => format!("secret '{name}': {}", findings.detail()),
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
                        .map(|(n, f)| vec![n.to_string(), f.verdict().to_owned(), f.detail()])
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
            "{drifted} of {} secrets drifted: a credential they must take is refused",
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

/// One secret's result for `--json`: the verdict, one line of detail, and each stage checked
/// with its own verdict (`Stages`: `{"ACSCurrent": "Works", "ACSPrevious": "Drift"}`).
fn result(name: &SecretName, findings: &Findings) -> serde_json::Value {
    let stages: serde_json::Map<String, serde_json::Value> = findings
        .stages()
        .into_iter()
        .map(|(stage, v)| (stage.to_owned(), json!(v.as_str())))
        .collect();
    json!({
        "SecretName": name,
        "Verdict": findings.verdict(),
        "Detail": findings.detail(),
        "Stages": stages,
    })
}
