//! `rotor audit`: the audit log, filtered, oldest first. Read-only: no rotor command edits or
//! deletes records (the worker prunes those past the retention setting).

use clap::Args;

use super::output::{table, Output};
use crate::error::{Error, Result};
use crate::model::parse_duration;
use crate::store::{AuditQuery, Store};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records about this secret.
    #[arg(long)]
    pub secret: Option<String>,
    /// Only records from the last DURATION (e.g. 1h, 7d).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub since: Option<std::time::Duration>,
    /// Only this action (`rotation.set`), or a group of them (`rotation`, `secret`, `target`).
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many records (the newest).
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

pub async fn run(store: &Store, args: &AuditArgs, out: &Output) -> Result<()> {
    if let Some(action) = &args.action {
        let ok = !action.is_empty()
            && action.len() <= 64
            && action
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
        if !ok {
            return Err(Error::invalid(format!(
                "--action '{}' is not an action name (e.g. rotation, rotation.set, secret.read)",
                action.escape_debug()
            )));
        }
    }
    if !(1..=crate::store::MAX_AUDIT_RECORDS).contains(&args.limit) {
        return Err(Error::invalid(format!(
            "--limit must be 1 to {}",
            crate::store::MAX_AUDIT_RECORDS
        )));
    }
    let since = args
        .since
        .map(|d| store.clock().now_ms() - d.as_millis().min(i64::MAX as u128) as i64);
    let records = store
        .audit_log(&AuditQuery {
            secret: args.secret.clone(),
            since,
            action: args.action.clone(),
            limit: Some(args.limit),
            ..AuditQuery::default()
        })
        .await?;
    out.print(&records, || {
        if records.is_empty() {
            return "no audit records match".to_string();
        }
        table(
            &[
                "TIME", "ACTOR", "ACTION", "SECRET", "VERSION", "OUTCOME", "DETAIL",
            ],
            records
                .iter()
                .map(|r| {
                    vec![
                        r.time.clone(),
                        r.actor.clone(),
                        r.action.clone(),
                        r.secret.clone().unwrap_or_else(|| "-".into()),
                        r.version.clone().unwrap_or_else(|| "-".into()),
                        r.outcome.clone(),
                        r.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}
