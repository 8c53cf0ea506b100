//! A run's audit trail as it is written, over server-sent events
//! (`GET /api/v1/runs/{id}/events`): the web page updates a run's graph and logs in
//! place from it, and anything else may follow a run the same way.
//!
//! Events come from the store, not from this process's memory: a run driven by a CLI
//! on the same database streams too (looked for every second), one driven here at
//! once. A reconnecting browser sends `Last-Event-ID` and misses nothing. The stream
//! ends with an `end` event once the run has finished and everything it wrote is sent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use launchway_store::{Event, EventFilter, RunId, Store};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::http::{ApiResult, AppState, Caller, authorize};
use launchway_engine::access::Permission;

/// How often the store is looked at when this process records nothing for the run.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Events sent at a time.
const BATCH: u32 = 500;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events after this one (what the page already has).
    after: Option<i64>,
}

pub async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<RunId>,
    Query(query): Query<EventsQuery>,
) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let engine = state.runtime.engine();
    engine.store().run(run_id).await?;
    let reconnected_after = caller
        .headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok());
    let follow = Follow {
        store: engine.store().clone(),
        run_id,
        after: reconnected_after.or(query.after).unwrap_or(0),
        pending: VecDeque::new(),
        recorded: engine.subscribe(),
        stop: state.runtime.stop().clone(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        follow.next().await.map(|event| (Ok::<_, Infallible>(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Where one stream is in its run's events.
struct Follow {
    store: Arc<dyn Store>,
    run_id: RunId,
    /// The last event sent.
    after: i64,
    pending: VecDeque<SseEvent>,
    /// What this process records, to look again at once.
    recorded: broadcast::Receiver<Event>,
    stop: CancellationToken,
    ended: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended || self.stop.is_cancelled() {
                return None;
            }
            // The state first: a run's last transition is written with its event, so a
            // run seen finished here has every event it will ever have in the read below.
            let run = match self.store.run(self.run_id).await {
                Ok(run) => run,
                Err(error) => {
                    tracing::warn!(%error, run = self.run_id, "could not read a followed run");
                    return None;
                }
            };
            let filter = EventFilter {
                run_id: Some(self.run_id),
                after_id: Some(self.after),
                limit: Some(BATCH),
                ..EventFilter::default()
            };
            let events = match self.store.events(&filter).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, run = self.run_id, "could not read a followed run's events");
                    return None;
                }
            };
            if !events.is_empty() {
                for event in events {
                    self.after = event.id;
                    if let Ok(sse) = SseEvent::default().id(event.id.to_string()).event("event").json_data(&event) {
                        self.pending.push_back(sse);
                    }
                }
                continue;
            }
            if run.state.is_terminal() {
                self.ended = true;
                self.pending.push_back(SseEvent::default().event("end").data(run.state.as_str()));
                continue;
            }
            self.wait().await;
        }
    }

    /// Until this process records something for the run, a second passes, or the
    /// server stops.
    async fn wait(&mut self) {
        let run_id = self.run_id;
        let recorded = &mut self.recorded;
        let ours = async {
            loop {
                match recorded.recv().await {
                    Ok(event) if event.run_id == Some(run_id) => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = ours => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = self.stop.cancelled() => {}
        }
    }
}
