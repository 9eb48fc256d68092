//! File mode: every `[[template]]` rendered with the values the [`Watcher`] holds, written when
//! its text changed, then each changed file's command run once. A pass runs at start and after
//! every change of a value; a template that cannot be rendered (a secret never read, a field it
//! does not have) leaves its file as it was and says why.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::secrets::{Snapshot, Watcher};
use super::settings::Template;
use super::{reload, template, write};

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Files written.
    pub written: usize,
    /// Templates that could not be rendered or written.
    pub failed: usize,
    /// Commands that failed.
    pub commands_failed: usize,
}

/// Renders every template, writes the files whose text changed, runs their commands.
pub async fn pass(watcher: &Watcher, templates: &[Template]) -> Pass {
    let mut done = Pass::default();
    let mut commands: Vec<&str> = Vec::new();
    let mut snapshot = watcher.snapshot();
    for t in templates {
        let mut rendered = template::render(&t.label, &t.text, &snapshot);
        // A template names what it needs: read the secrets it asked for that the agent does
        // not hold yet, then render again (a branch may ask for more: a few rounds at most).
        for _ in 0..4 {
            let missing: BTreeSet<String> = rendered
                .asked
                .iter()
                .filter(|n| !snapshot.contains_key(*n))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            if let Err(e) = watcher.ensure(&missing).await {
                tracing::debug!("{e}");
                break;
            }
            snapshot = watcher.snapshot();
            rendered = template::render(&t.label, &t.text, &snapshot);
        }
        // Secrets asked for are watched from now on, whatever this render gave.
        watcher.watch(&rendered.asked);
        let text = match rendered.text {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(destination = %t.destination.display(), "{e}; the file is left as it was");
                done.failed += 1;
                continue;
            }
        };
        match write::write_if_changed(&t.destination, text.as_bytes(), t.mode, t.owner.as_deref()) {
            Ok(true) => {
                tracing::info!(destination = %t.destination.display(), "file written");
                done.written += 1;
                if let Some(c) = t.command.as_deref() {
                    if !commands.contains(&c) {
                        commands.push(c);
                    }
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(destination = %t.destination.display(), "{e}");
                done.failed += 1;
            }
        }
    }
    if !commands.is_empty() {
        let secrets = reload::secret_texts(&snapshot);
        for c in commands {
            if !reload::run(c, &secrets).await {
                done.commands_failed += 1;
            }
        }
    }
    done
}

/// Runs a pass now and after every change of a value, until `cancel`.
pub async fn follow(watcher: Arc<Watcher>, templates: Vec<Template>, cancel: CancellationToken) {
    let mut changes = watcher.subscribe();
    let mut seen: Snapshot = changes.borrow_and_update().clone();
    pass(&watcher, &templates).await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let now = changes.borrow_and_update().clone();
        // Only a new version of a secret is a change (a secret first read is one too).
        if now
            .iter()
            .all(|(k, v)| seen.get(k).is_some_and(|s| s.version_id == v.version_id))
        {
            continue;
        }
        seen = now;
        pass(&watcher, &templates).await;
    }
}
