//! Turns the events in the log into chat messages and webhook calls, and step metrics.
//!
//! Follows the event log (every process's events: a CLI deploy on the same database is
//! announced too) from where it last got to, kept in the store, so a message that was
//! due when the server stopped or crashed is sent when it starts again: delivery is at
//! least once. For a run that needs approval, succeeded, failed or was rolled back, it
//! reads the manifest the release came from, and sends to each destination that wants
//! that event for that environment. Sending happens off the run's path: a slow or
//! failing receiver delays and fails nothing but its own message, whose outcome goes to
//! the audit log.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use launchway_manifest::{NotificationSink, NotifyOn};
use launchway_notify::{Destination, Notification, Notifier};
use launchway_store::{Event, EventFilter, NewEvent, RunKind};
use launchway_target_ecs::{SecretRef, resolve_secret_default};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::mpsc;

use crate::controller::Controller;

/// The dispatcher's cursor in the store.
const CURSOR: &str = "notifications";
/// Events read from the log at a time.
const BATCH: u32 = 500;
/// How often the log is read when this process records nothing (other processes'
/// events, and retrying after a store error).
const LOOK_EVERY: Duration = Duration::from_secs(2);

pub struct Dispatcher {
    pub controller: Arc<Controller>,
    pub notifier: Notifier,
    /// Where links in messages point: the server's public URL.
    pub public_url: String,
}

/// Where the dispatcher is in the log.
struct LogPosition {
    /// The last event read.
    read: i64,
    /// Events whose notifications are being sent.
    in_flight: BTreeSet<i64>,
    /// What the store has as the cursor.
    saved: i64,
}

impl LogPosition {
    /// Every event up to here is dealt with: the cursor to save.
    fn done_through(&self) -> i64 {
        self.in_flight.first().map_or(self.read, |first| first - 1)
    }
}

impl Dispatcher {
    /// Where to start reading: the saved cursor, or on a database the dispatcher has
    /// never seen, its last event (a first start announces nothing from its history).
    /// Called before the server records anything, so no event of this start is missed.
    pub async fn starting_point(&self) -> anyhow::Result<i64> {
        let store = self.controller.engine().store();
        if let Some(event_id) = store.cursor(CURSOR).await? {
            return Ok(event_id);
        }
        let last = store.events(&EventFilter { last: Some(1), ..EventFilter::default() }).await?;
        let event_id = last.last().map_or(0, |event| event.id);
        store.set_cursor(CURSOR, event_id).await?;
        Ok(event_id)
    }

    pub async fn run(self: Arc<Self>, start: i64) {
        let mut log = LogPosition { read: start, in_flight: BTreeSet::new(), saved: start };
        let (finished_tx, mut finished) = mpsc::unbounded_channel();
        // This process's events wake the dispatcher at once; the log is the truth.
        let mut recorded = self.controller.engine().subscribe();
        let shutdown = self.controller.shutdown.clone();
        while !shutdown.is_cancelled() {
            let caught_up = self.dispatch_new_events(&mut log, &finished_tx).await;
            self.save(&mut log).await;
            if !caught_up {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                Some(event_id) = finished.recv() => { log.in_flight.remove(&event_id); }
                _ = recorded.recv() => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            while let Ok(event_id) = finished.try_recv() {
                log.in_flight.remove(&event_id);
            }
            while !matches!(recorded.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
        }
        // Messages under way get the shutdown's grace period; those that do not finish
        // are sent again at the next start.
        drop(finished_tx);
        while let Some(event_id) = finished.recv().await {
            log.in_flight.remove(&event_id);
        }
        self.save(&mut log).await;
    }

    /// Reads the next events and starts their notifications; true when nothing more is
    /// waiting in the log.
    async fn dispatch_new_events(
        self: &Arc<Self>,
        log: &mut LogPosition,
        finished: &mpsc::UnboundedSender<i64>,
    ) -> bool {
        let filter = EventFilter { after_id: Some(log.read), limit: Some(BATCH), ..EventFilter::default() };
        let events = match self.controller.engine().store().events(&filter).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "could not read the event log for notifications");
                return true;
            }
        };
        let caught_up = events.len() < BATCH as usize;
        for event in events {
            log.read = event.id;
            if event.kind == "step.finished" {
                let data = &event.data;
                let seconds = data["elapsed_ms"].as_f64().unwrap_or_default() / 1000.0;
                crate::metrics::step_finished(
                    data["step"].as_str().unwrap_or_default(),
                    data["outcome"].as_str().unwrap_or_default(),
                    seconds,
                );
                continue;
            }
            let Some(on) = notify_on(&event.kind) else { continue };
            log.in_flight.insert(event.id);
            let dispatcher = self.clone();
            let finished = finished.clone();
            self.controller.tasks.spawn(async move {
                if let Err(error) = dispatcher.notify(on, &event).await {
                    tracing::warn!(error = format!("{error:#}"), "could not prepare a notification");
                }
                let _ = finished.send(event.id);
            });
        }
        caught_up
    }

    async fn save(&self, log: &mut LogPosition) {
        let done = log.done_through();
        if done == log.saved {
            return;
        }
        match self.controller.engine().store().set_cursor(CURSOR, done).await {
            Ok(()) => log.saved = done,
            Err(error) => tracing::warn!(%error, "could not save how far notifications got"),
        }
    }

    async fn notify(&self, on: NotifyOn, event: &Event) -> anyhow::Result<()> {
        let Some(run_id) = event.run_id else { return Ok(()) };
        let store = self.controller.engine().store();
        let run = store.run(run_id).await?;
        // A scheduled execution that went fine, or a deploy that changed nothing, is noise.
        let noise = on == NotifyOn::Succeeded
            && (run.kind == RunKind::Scheduled || run.reason.as_deref() == Some(launchway_engine::NO_OP_REASON));
        if noise {
            return Ok(());
        }
        let release = store.release(run.release_id).await?;
        let Some(snapshot) = self.controller.snapshot_for_commit(release.source.commit.as_deref()).await else {
            return Ok(());
        };
        let wanted: Vec<&NotificationSink> = snapshot
            .manifest
            .notifications
            .iter()
            .filter(|notification| notification.wants(on, &run.env))
            .map(|notification| &notification.sink)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let plan = run.plan.as_ref();
        let logs = if matches!(on, NotifyOn::Failed | NotifyOn::RolledBack) {
            let events = store.events(&EventFilter { run_id: Some(run.id), ..EventFilter::default() }).await?;
            events
                .iter()
                .rev()
                .find_map(|event| event.data["logs"].as_array().filter(|logs| !logs.is_empty()).cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|line| line.as_str().map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        };
        // The run's web page, where an approver can approve or reject.
        let run_url = format!("{}/runs/{}", self.public_url.trim_end_matches('/'), run.id);
        let approval = if on == NotifyOn::ApprovalNeeded { store.approval(run.id).await? } else { None };
        let notification = Notification {
            event: on,
            app: run.app.clone(),
            env: run.env.clone(),
            run_id: run.id,
            release_id: release.id,
            revision: release.revision.clone(),
            commit: release.source.commit.as_deref().map(|commit| commit[..commit.len().min(10)].to_owned()),
            summary: release.source.summary.clone(),
            author: release.source.author.clone(),
            origin: release.source.origin.clone(),
            plan_summary: plan.and_then(|plan| plan["summary"].as_str()).map(str::to_owned),
            // The event that parks a run lists the plan's changes as lines.
            changes: event.data["changes"]
                .as_array()
                .map(|changes| changes.iter().filter_map(|line| line.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            reason: (on != NotifyOn::ApprovalNeeded).then(|| run.reason.clone()).flatten(),
            logs,
            approve_url: (on == NotifyOn::ApprovalNeeded).then(|| run_url.clone()),
            run_url: Some(run_url),
            expires_at: approval.and_then(|approval| approval.expires_at),
        };
        for sink in wanted {
            let destination = match self.destination(sink).await {
                Ok(destination) => destination,
                Err(error) => {
                    self.record(&run, false, "a notification destination", serde_json::json!({"error": error})).await;
                    continue;
                }
            };
            let delivery = self.notifier.send(&destination, &notification).await;
            crate::metrics::notification(delivery.delivered);
            let data = serde_json::json!({
                "event": on.as_str(), "destination": destination.describe(),
                "attempts": delivery.attempts, "error": delivery.error,
            });
            self.record(&run, delivery.delivered, &destination.describe(), data).await;
        }
        Ok(())
    }

    async fn destination(&self, sink: &NotificationSink) -> Result<Destination, String> {
        let (reference, slack) = match sink {
            NotificationSink::Slack { url } => (url, true),
            NotificationSink::Webhook { url } => (url, false),
        };
        let reference = SecretRef::parse(reference);
        let url = resolve_secret_default(&reference)
            .await
            .map_err(|error| format!("could not resolve {reference:?}: {}", launchway_target::describe(&error)))?
            .expose()
            .to_owned();
        Ok(if slack { Destination::Slack { url } } else { Destination::Webhook { url } })
    }

    async fn record(&self, run: &launchway_store::Run, delivered: bool, to: &str, data: serde_json::Value) {
        let (kind, message) = if delivered {
            ("notification.sent", format!("notified {to}"))
        } else {
            (
                "notification.failed",
                format!("could not notify {to}: {}", data["error"].as_str().unwrap_or("unknown error")),
            )
        };
        if let Err(error) = self.controller.engine().record(NewEvent::for_run(run, kind, message).with_data(data)).await
        {
            tracing::warn!(%error, "could not record a notification's outcome");
        }
    }
}

fn notify_on(kind: &str) -> Option<NotifyOn> {
    Some(match kind {
        "run.awaiting_approval" => NotifyOn::ApprovalNeeded,
        "run.succeeded" => NotifyOn::Succeeded,
        "run.failed" => NotifyOn::Failed,
        "run.rolled_back" => NotifyOn::RolledBack,
        _ => return None,
    })
}
