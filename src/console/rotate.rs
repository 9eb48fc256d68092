//! Rotate now, with live progress. The button starts the engine's manual rotation — the path
//! the API's `RotateSecret` and `rotor rotate NAME` take: a claim of its own on the secret's
//! lease, kept while any step runs, refused beside a rotation in flight — as `console:USER`,
//! on a task of its own (it stops between steps when the server stops). The page then follows
//! it over server-sent events: every rotation record the engine writes to the audit log for
//! this secret (`rotation.create`, `.set`, `.test`, `.promote`, `.finish`, or a step that
//! failed), as it is committed, then the outcome. The steps shown are those the store
//! recorded, not a guess. The claim is taken before the answer: a request that loses a race
//! to another driver (a worker, the CLI, the API, another console tab) is told so at once, on
//! the secret's page, and starts nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::form::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::actions::{admit, ActionForm};
use super::details::{render, Extras};
use super::layout::{self, secret_url};
use super::{session, Console};
use crate::engine::Outcome;
use crate::model::SecretName;
use crate::policy::Action;
use crate::store::AuditQuery;

/// How often a progress stream looks for new records.
const POLL: Duration = Duration::from_millis(150);
/// How long a progress stream lasts at most.
const MAX_STREAM: Duration = Duration::from_secs(30 * 60);
/// How long a finished run is remembered (its page may be reloaded).
const KEEP: Duration = Duration::from_secs(3600);

/// How a run ended.
#[derive(Clone, Debug)]
enum End {
    Rotated(String),
    Failed(String),
}

/// A rotation started from the console.
struct Run {
    user: String,
    secret: SecretName,
    /// Store time (ms) when it started: its records are those at or after it.
    started_ms: i64,
    started: Instant,
    end: watch::Receiver<Option<End>>,
}

/// The runs started by this process, by id.
#[derive(Default)]
pub(super) struct Runs {
    map: Mutex<HashMap<String, Arc<Run>>>,
}

impl Runs {
    fn add(&self, id: String, run: Run) {
        let mut map = self.map.lock().expect("runs");
        map.retain(|_, r| r.started.elapsed() < KEEP || r.end.borrow().is_none());
        map.insert(id, Arc::new(run));
    }

    fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.map.lock().expect("runs").get(id).cloned()
    }
}

/// `POST /console/secret/rotate`: starts the rotation and shows its page with the progress.
pub(super) async fn start(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let (active, name) = match admit(&console, &headers, &form, Action::RotateSecret).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    // The claim is taken here, before any answer: the loser of a race is told at once that
    // another driver rotates the secret, and never follows (or replays) the winner's steps.
    let actor = format!("console:{}", active.user);
    let held = match console.engine.claim_now_for(&name, &actor).await {
        Ok(held) => held,
        Err(e) => {
            let (status, message) = match &e {
                crate::Error::InProgress(_) => (
                    StatusCode::CONFLICT,
                    format!("secret '{name}' is being rotated by another driver right now; its steps show in the rotation history"),
                ),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            };
            return render(
                &console,
                &active,
                &name,
                status,
                Extras::error("rotate", message),
            )
            .await;
        }
    };
    let id = crate::crypto::random_id();
    let (tell, end) = watch::channel(None);
    console.runs.add(
        id.clone(),
        Run {
            user: active.user.clone(),
            secret: name.clone(),
            started_ms: console.store.clock().now_ms(),
            started: Instant::now(),
            end,
        },
    );
    let (engine, stop, cache) = (
        console.engine.clone(),
        console.shutdown.clone(),
        console.cache.clone(),
    );
    tokio::spawn(async move {
        let ended = match engine.rotate_held(held, &stop).await {
            Ok(Outcome::Rotated { version_id }) => End::Rotated(version_id.as_str().to_owned()),
            Ok(Outcome::Retrying { error, .. } | Outcome::Failed { error, .. }) => {
                End::Failed(format!("the rotation did not complete: {error}"))
            }
            Ok(_) => End::Failed("the rotation did not complete; try again".into()),
            Err(e) => End::Failed(e.to_string()),
        };
        cache.forget(&name);
        let _ = tell.send(Some(ended));
    });
    Redirect::to(&format!("{}&run={id}", secret_url(form.name.as_str()))).into_response()
}

/// `GET /console/runs/ID/events`: the run's steps, then its outcome, as server-sent events
/// (`step`: `{"step","outcome","version","detail","time"}`; `outcome`:
/// `{"result","version","message"}`).
pub(super) async fn events(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(active) = session::current(&console, &headers).await else {
        return layout::message(
            axum::http::StatusCode::FORBIDDEN,
            "Refused",
            "You are not signed in.",
        );
    };
    let Some(run) = console.runs.get(&id).filter(|r| r.user == active.user) else {
        return layout::not_found();
    };
    let (send, receive) = mpsc::channel::<Result<Event, Infallible>>(32);
    tokio::spawn(follow(console, run, send));
    Sse::new(ReceiverStream::new(receive))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Sends the run's records as they appear, then its outcome.
async fn follow(console: Console, run: Arc<Run>, send: mpsc::Sender<Result<Event, Infallible>>) {
    let mut end = run.end.clone();
    let mut last_id = 0;
    let query = AuditQuery {
        secret: Some(run.secret.as_str().to_owned()),
        since: Some(run.started_ms),
        action: Some("rotation".into()),
        limit: Some(500),
        ..AuditQuery::default()
    };
    let opened = Instant::now();
    loop {
        // Read the end first: records committed before it are all seen below.
        let ended = end.borrow_and_update().clone();
        let records = console.store.audit_log(&query).await.unwrap_or_default();
        for r in &records {
            if r.id <= last_id {
                continue;
            }
            last_id = r.id;
            let step = r.action.trim_start_matches("rotation.");
            let data = json!({
                "step": step,
                "outcome": r.outcome,
                "version": r.version,
                "detail": r.detail,
                "time": r.time,
            });
            let event = Event::default().event("step").data(data.to_string());
            if send.send(Ok(event)).await.is_err() {
                return;
            }
        }
        if let Some(ended) = ended {
            let data = match ended {
                End::Rotated(version) => json!({
                    "result": "rotated",
                    "version": version,
                    "message": format!("Rotated: version {version} is ACSCurrent."),
                }),
                End::Failed(message) => json!({"result": "failed", "message": message}),
            };
            let _ = send
                .send(Ok(Event::default().event("outcome").data(data.to_string())))
                .await;
            return;
        }
        if send.is_closed() || opened.elapsed() > MAX_STREAM {
            return;
        }
        tokio::select! {
            _ = console.shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
            changed = end.changed() => {
                if changed.is_err() && end.borrow().is_none() {
                    // The rotation's task ended without a word (it panicked).
                    let data = json!({"result": "failed", "message": "the rotation stopped; see the secret's state"});
                    let _ = send.send(Ok(Event::default().event("outcome").data(data.to_string()))).await;
                    return;
                }
            }
        }
    }
}
