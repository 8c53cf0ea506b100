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
use launchway_secrets::{SecretRef, Secrets};
use launchway_store::{
    AppPlan, Change, Event, EventBody, EventFilter, NewEvent, NotificationOutcome, RunKind, RunState,
};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::mpsc;

use crate::reconciler::Reconciler;
use crate::runtime::Runtime;

/// The dispatcher's cursor in the store.
const CURSOR: &str = "notifications";
/// Events read from the log at a time.
const BATCH: u32 = 500;
/// How often the log is read when this process records nothing (other processes'
/// events, and retrying after a store error).
const LOOK_EVERY: Duration = Duration::from_secs(2);

pub struct Dispatcher {
    pub runtime: Arc<Runtime>,
    pub reconciler: Arc<Reconciler>,
    pub notifier: Notifier,
    /// Where links in messages point: the server's public URL.
    pub public_url: String,
    pub secrets: Secrets,
    /// Slack messages carry buttons that act (the server verifies what Slack sends).
    pub interactive_slack: bool,
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
        let store = self.runtime.engine().store();
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
        let mut recorded = self.runtime.engine().subscribe();
        let shutdown = self.runtime.stop().clone();
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
        let events = match self.runtime.engine().store().events(&filter).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "could not read the event log for notifications");
                return true;
            }
        };
        let caught_up = events.len() < BATCH as usize;
        for event in events {
            log.read = event.id;
            let body = event.body();
            if let EventBody::StepFinished(finished) = &body {
                let seconds = finished.elapsed_ms as f64 / 1000.0;
                crate::metrics::step_finished(&finished.step, finished.outcome.as_str(), seconds);
                continue;
            }
            let Some(on) = notify_on(&body) else { continue };
            log.in_flight.insert(event.id);
            let dispatcher = self.clone();
            let finished = finished.clone();
            self.runtime.spawn(async move {
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
        match self.runtime.engine().store().set_cursor(CURSOR, done).await {
            Ok(()) => log.saved = done,
            Err(error) => tracing::warn!(%error, "could not save how far notifications got"),
        }
    }

    async fn notify(&self, on: NotifyOn, event: &Event) -> anyhow::Result<()> {
        let Some(run_id) = event.run_id else { return Ok(()) };
        let store = self.runtime.engine().store();
        let run = store.run(run_id).await?;
        // A scheduled execution that went fine, or a deploy that changed nothing, is noise.
        let noise = on == NotifyOn::Succeeded
            && (run.kind == RunKind::Scheduled || run.reason.as_deref() == Some(launchway_engine::NO_OP_REASON));
        if noise {
            return Ok(());
        }
        let release = store.release(run.release_id).await?;
        let Some(snapshot) = self.reconciler.snapshot_for_commit(release.source.commit.as_deref()).await else {
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
        let logs = if matches!(on, NotifyOn::Failed | NotifyOn::RolledBack) {
            let events = store.events(&EventFilter { run_id: Some(run.id), ..EventFilter::default() }).await?;
            events.iter().rev().map(Event::logs).find(|logs| !logs.is_empty()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let approval = store.approval(run.id).await?;
        // The run's web page; approving and rejecting have links of their own.
        let run_url = format!("{}/runs/{}", self.public_url.trim_end_matches('/'), run.id);
        let asking = on == NotifyOn::ApprovalNeeded;
        let kind = match (run.kind, release.source.origin.as_deref()) {
            (RunKind::Deploy, Some(origin)) if origin.starts_with("promoted") => "promotion",
            (RunKind::Deploy, _) => "deploy",
            (RunKind::Rollback, _) => "rollback",
            (RunKind::Repair, _) => "drift repair",
            (RunKind::Scheduled, _) => "scheduled task",
        };
        let actor = match run.kind {
            RunKind::Rollback => actor_of(&run.trigger),
            _ => approval
                .as_ref()
                .filter(|approval| approval.decision.is_some())
                .and_then(|approval| approval.decided_by.clone()),
        };
        let changes = match run.plan.as_ref() {
            Some(plan) => change_lines(plan),
            None => match event.body() {
                EventBody::RunEntered { detail, .. } => detail.changes,
                _ => Vec::new(),
            },
        };
        let notification = Notification {
            event: on,
            kind: kind.to_owned(),
            trigger: run.trigger.clone(),
            actor,
            at: event.at,
            app: run.app.clone(),
            env: run.env.clone(),
            run_id: run.id,
            release_id: release.id,
            revision: release.revision.clone(),
            commit: release.source.commit.as_deref().map(|commit| commit[..commit.len().min(10)].to_owned()),
            summary: release.source.summary.clone(),
            author: release.source.author.clone(),
            origin: release.source.origin.clone(),
            plan_summary: run.plan.as_ref().map(|plan| plan.summary.clone()),
            changes,
            reason: match event.body() {
                // What the gate holds, and how to go on.
                EventBody::Awaiting(_) => Some(event.message.clone()),
                _ => (!asking).then(|| run.reason.clone()).flatten(),
            },
            logs,
            approve_url: asking.then(|| format!("{run_url}#approve")),
            reject_url: asking.then(|| format!("{run_url}#reject")),
            run_url: Some(run_url),
            expires_at: if asking { approval.and_then(|approval| approval.expires_at) } else { None },
            interactive: self.interactive_slack,
        };
        for sink in wanted {
            let destination = match self.destination(sink).await {
                Ok(destination) => destination,
                Err(error) => {
                    let outcome = NotificationOutcome {
                        event: on.as_str().to_owned(),
                        destination: "a notification destination".to_owned(),
                        attempts: 0,
                        error: Some(error),
                    };
                    self.record(&run, outcome).await;
                    continue;
                }
            };
            let delivery = self.notifier.send(&destination, &notification).await;
            crate::metrics::notification(delivery.delivered);
            let outcome = NotificationOutcome {
                event: on.as_str().to_owned(),
                destination: destination.describe(),
                attempts: delivery.attempts,
                error: (!delivery.delivered).then(|| delivery.error.unwrap_or_else(|| "unknown error".into())),
            };
            self.record(&run, outcome).await;
        }
        Ok(())
    }

    async fn destination(&self, sink: &NotificationSink) -> Result<Destination, String> {
        let reference = match sink {
            NotificationSink::Slack { url } | NotificationSink::Discord { url } | NotificationSink::Webhook { url } => {
                url
            }
        };
        let reference = SecretRef::parse(reference);
        let url = self
            .secrets
            .resolve(&reference)
            .await
            .map_err(|error| format!("could not resolve {reference:?}: {error}"))?
            .expose()
            .to_owned();
        Ok(match sink {
            NotificationSink::Slack { .. } => Destination::Slack { url },
            NotificationSink::Discord { .. } => Destination::Discord { url },
            NotificationSink::Webhook { .. } => Destination::Webhook { url },
        })
    }

    async fn record(&self, run: &launchway_store::Run, outcome: NotificationOutcome) {
        let message = match &outcome.error {
            None => format!("notified {}", outcome.destination),
            Some(error) => format!("could not notify {}: {error}", outcome.destination),
        };
        let event = NewEvent::for_run(run, EventBody::Notification(outcome), message);
        if let Err(error) = self.runtime.engine().record(event).await {
            tracing::warn!(%error, "could not record a notification's outcome");
        }
    }
}

/// Who a trigger names, outside its parenthesis: the API's "api rollback by
/// alice@example.com (token 3f9a)" and the CLI's "alice@example.com (cli rollback by
/// root@host)" both name alice.
fn actor_of(trigger: &str) -> Option<String> {
    let head = trigger.split(" (").next().unwrap_or(trigger).trim();
    let actor = match head.split_once(" by ") {
        Some((_, actor)) => actor.trim(),
        None if !head.contains(' ') => head,
        None => return None,
    };
    (!actor.is_empty()).then(|| actor.to_owned())
}

/// A plan's changes as lines, what matters first: images, then the environment, then
/// the rest; settings at their defaults left out.
fn change_lines(plan: &AppPlan) -> Vec<String> {
    let rank = |path: &str| {
        if path.ends_with(".image") || path == "image" || path.contains(".images.") {
            0
        } else if path.contains(".env.") {
            1
        } else {
            2
        }
    };
    let mut changes: Vec<&Change> = plan.written_changes().collect();
    changes.sort_by_key(|change| rank(&change.path));
    changes.into_iter().map(ToString::to_string).collect()
}

fn notify_on(body: &EventBody) -> Option<NotifyOn> {
    // A progressing run held at an approval gate needs someone as a parked one does.
    if let EventBody::Awaiting(_) = body {
        return Some(NotifyOn::ApprovalNeeded);
    }
    let EventBody::RunEntered { state, .. } = body else { return None };
    Some(match state {
        RunState::AwaitingApproval => NotifyOn::ApprovalNeeded,
        RunState::Succeeded => NotifyOn::Succeeded,
        RunState::Failed => NotifyOn::Failed,
        RunState::RolledBack => NotifyOn::RolledBack,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use launchway_manifest::NotifyOn;
    use launchway_store::{Awaiting, EventBody, RunState, TransitionDetail};

    use super::{actor_of, notify_on};

    #[test]
    fn a_step_held_for_approval_is_announced_as_a_parked_run_is() {
        let held = EventBody::Awaiting(Awaiting {
            step: 1,
            what: "the ECS deployment paused at post_test_traffic_shift".into(),
        });
        assert_eq!(notify_on(&held), Some(NotifyOn::ApprovalNeeded));
        let parked = EventBody::RunEntered { state: RunState::AwaitingApproval, detail: TransitionDetail::default() };
        assert_eq!(notify_on(&parked), Some(NotifyOn::ApprovalNeeded));
        let progressing = EventBody::RunEntered { state: RunState::Progressing, detail: TransitionDetail::default() };
        assert_eq!(notify_on(&progressing), None, "moving traffic is not news for chat; a held step is");
    }

    #[test]
    fn the_actor_is_who_the_trigger_names() {
        assert_eq!(actor_of("api rollback by alice@example.com (token 3f9a)").as_deref(), Some("alice@example.com"));
        assert_eq!(actor_of("carol@example.com (cli rollback by root@box)").as_deref(), Some("carol@example.com"));
        assert_eq!(actor_of("server start"), None);
    }
}
