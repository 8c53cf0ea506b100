//! Turns the events in the log into chat messages and webhook calls, and step metrics.
//!
//! Follows the event log (every process's events) from where it last got to, kept in
//! the store, so a message that was due when its sender stopped or crashed is sent when
//! one starts again: delivery is at least once. One process at a time sends: the
//! dispatcher holds the store's `notifications` reader lease while it reads. The server
//! holds it for as long as it runs; a CLI command that drove runs (`deploy`, `rollback`,
//! `approve`…) takes it once its runs are done, sends what is due and gives it up — and
//! when a server holds it, leaves the sending to the server. So a deploy from the CLI
//! notifies as one from the server does, and nothing is sent twice when both share a
//! database.
//!
//! For a run that needs approval, succeeded, failed, was rolled back or rejected, it
//! reads the config's notifications as they are now ([`NotificationRules`]), and sends
//! to each destination that wants that event for that environment. A run that changed
//! nothing, or a scheduled run that went fine, is announced only to those who heard it
//! start: every run someone saw start, they see end. Sending happens off the run's path: a
//! slow or failing receiver delays and fails nothing but its own message, whose outcome
//! goes to the audit log.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Destination, Notification, Notifier};
use launchway_engine::Engine;
use launchway_manifest::{NotificationSink, NotifyOn};
use launchway_secrets::{SecretRef, Secrets};
use launchway_store::{
    AppPlan, ApprovalDecided, Change, Event, EventBody, EventFilter, NewEvent, NotificationOutcome, RunKind, RunState,
    Store, StoreError,
};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What can go wrong: reading or writing the store.
type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The dispatcher's cursor, and its lease, in the store.
const CURSOR: &str = "notifications";
/// Events read from the log at a time.
const BATCH: u32 = 500;
/// How often the log is read when this process records nothing (other processes'
/// events, and retrying after a store error); how often a dispatcher without the
/// lease tries for it.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How long the lease lasts unless renewed, and how often its holder renews it.
const LEASE_TTL: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The notifications the config asks for as it is now: who hears about a run is the
/// team's current choice, not what a release's (perhaps old) commit said.
#[async_trait::async_trait]
pub trait NotificationRules: Send + Sync {
    /// The manifest's `notifications:` as the config repo has it now; `None` when no
    /// manifest can be read.
    async fn current_notifications(&self) -> Option<Vec<launchway_manifest::Notification>>;
}

/// What the dispatcher reports as it goes, for metrics (the server's Prometheus
/// counters); nothing by default.
pub trait DispatchObserver: Send + Sync {
    /// A run's step finished, in `seconds`.
    fn step_finished(&self, _step: &str, _outcome: &str, _seconds: f64) {}
    /// A message was sent, or given up on.
    fn notification(&self, _delivered: bool) {}
}

/// Observes nothing.
pub struct Unobserved;

impl DispatchObserver for Unobserved {}

pub struct Dispatcher {
    pub engine: Engine,
    pub rules: Arc<dyn NotificationRules>,
    pub notifier: Notifier,
    /// Where links in messages point: the server's public URL (none: no links).
    pub public_url: Option<String>,
    pub secrets: Secrets,
    /// Slack messages carry buttons that act (the server verifies what Slack sends).
    pub interactive_slack: bool,
    /// Messages under way.
    pub sending: TaskTracker,
    /// A run's messages and commit statuses go out to each destination in the order
    /// they happened (a late "pending" must not overwrite "success"), and a destination
    /// that is slow or hangs delays only its own. `Default::default()` to start.
    pub in_order: RunOrder,
    /// Told of finished steps and sent messages.
    pub observer: Arc<dyn DispatchObserver>,
}

/// See [`Dispatcher::in_order`]: a run's events are prepared one after the other (each
/// takes its places in the destinations' queues in turn), and each destination's
/// messages about the run are sent one after the other, apart from other destinations'.
#[derive(Default)]
pub struct RunOrder {
    /// Per run, the end of its last event's preparation.
    prepared: std::sync::Mutex<HashMap<i64, oneshot::Receiver<()>>>,
    /// Per run and destination, the end of its last message's sending.
    sent: std::sync::Mutex<HashMap<(i64, String), oneshot::Receiver<()>>>,
}

impl RunOrder {
    /// Takes the place after the run's last event for preparing this one: what to wait
    /// for first, and what to say when prepared. A run's last event leaves nothing behind.
    fn prepare(&self, run_id: Option<i64>, last: bool) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, after) = oneshot::channel();
        let Some(run_id) = run_id else { return (None, done) };
        let mut order = self.prepared.lock().expect("not poisoned");
        let previous = order.remove(&run_id);
        if !last {
            order.insert(run_id, after);
        }
        (previous, done)
    }

    /// Takes the place after the run's last message to `destination`.
    fn send(&self, run_id: i64, destination: &str) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, after) = oneshot::channel();
        let mut order = self.sent.lock().expect("not poisoned");
        let previous = order.insert((run_id, destination.to_owned()), after);
        (previous, done)
    }

    /// The run has ended and its last event has its places: nothing more will wait.
    fn forget(&self, run_id: i64) {
        self.sent.lock().expect("not poisoned").retain(|(run, _), _| *run != run_id);
    }
}

/// What [`Dispatcher::send_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything due was sent (or tried and recorded as failed).
    Caught,
    /// Another process holds the lease (a server): it sends them.
    LeftTo,
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
    /// Where to start reading (see [`starting_point`]).
    pub async fn starting_point(&self) -> Result<i64> {
        starting_point(self.engine.store().as_ref()).await
    }

    /// Takes or renews the lease; whether this process holds it.
    async fn lease(&self) -> Result<bool> {
        let store = self.engine.store();
        let owner = &self.engine.owner().id;
        let ttl = LEASE_TTL.as_millis() as i64;
        let holder = store.lease_reader(CURSOR, owner, ttl, None).await?;
        if holder == *owner {
            return Ok(true);
        }
        // A holder that died (a CLI killed mid-send) is not waited for.
        if self.engine.owner().sees_dead(&holder) {
            return Ok(store.lease_reader(CURSOR, owner, ttl, Some(&holder)).await? == *owner);
        }
        Ok(false)
    }

    async fn give_up_lease(&self) {
        if let Err(error) = self.engine.store().release_reader(CURSOR, &self.engine.owner().id).await {
            tracing::warn!(%error, "could not give up the notifications lease");
        }
    }

    /// The server's loop: sends what is due while it holds the lease (and tries for it
    /// while another process does), until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let (finished_tx, mut finished) = mpsc::unbounded_channel();
        // This process's events wake the dispatcher at once; the log is the truth.
        let mut recorded = self.engine.subscribe();
        let mut log: Option<LogPosition> = None;
        let mut renewed = Instant::now();
        while !stop.is_cancelled() {
            if log.is_none() || renewed.elapsed() >= RENEW_EVERY {
                match self.lease().await {
                    Ok(true) if log.is_none() => match self.starting_point().await {
                        // Another process may have moved the cursor while it held the lease.
                        Ok(start) => {
                            log = Some(LogPosition { read: start, in_flight: BTreeSet::new(), saved: start });
                            renewed = Instant::now();
                        }
                        Err(error) => {
                            tracing::warn!(error = format!("{error:#}"), "could not read where notifications got to")
                        }
                    },
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        if log.take().is_some() {
                            tracing::warn!("another process took over sending notifications");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "could not take the notifications lease")
                    }
                }
            }
            let caught_up = match log.as_mut() {
                Some(position) => {
                    let caught_up = self.dispatch_new_events(position, &finished_tx).await;
                    self.save(position).await;
                    caught_up
                }
                None => true,
            };
            if !caught_up {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => {}
                Some(event_id) = finished.recv() => forget(&mut log, event_id),
                _ = recorded.recv() => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            while let Ok(event_id) = finished.try_recv() {
                forget(&mut log, event_id);
            }
            while !matches!(recorded.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
        }
        // Messages under way get the shutdown's grace period; those that do not finish
        // are sent again by the next process to hold the lease.
        drop(finished_tx);
        while let Some(event_id) = finished.recv().await {
            forget(&mut log, event_id);
        }
        if let Some(position) = log.as_mut() {
            self.save(position).await;
            self.give_up_lease().await;
        }
    }

    /// A CLI command's turn, once its runs are done: unless a server holds the lease
    /// (it sends them), sends everything due in the log, waits for the messages, and
    /// gives the lease up.
    pub async fn send_due(self: Arc<Self>) -> Result<Sent> {
        if !self.lease().await? {
            return Ok(Sent::LeftTo);
        }
        let start = self.starting_point().await?;
        let mut log = LogPosition { read: start, in_flight: BTreeSet::new(), saved: start };
        let (finished_tx, mut finished) = mpsc::unbounded_channel();
        while !self.dispatch_new_events(&mut log, &finished_tx).await {}
        drop(finished_tx);
        while let Some(event_id) = finished.recv().await {
            log.in_flight.remove(&event_id);
        }
        self.save(&mut log).await;
        self.give_up_lease().await;
        Ok(Sent::Caught)
    }

    /// Reads the next events and starts their notifications; true when nothing more is
    /// waiting in the log.
    async fn dispatch_new_events(
        self: &Arc<Self>,
        log: &mut LogPosition,
        finished: &mpsc::UnboundedSender<i64>,
    ) -> bool {
        let filter = EventFilter { after_id: Some(log.read), limit: Some(BATCH), ..EventFilter::default() };
        let events = match self.engine.store().events(&filter).await {
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
                self.observer.step_finished(&finished.step, finished.outcome.as_str(), seconds);
                continue;
            }
            // A decision edits the messages that asked for it; other events are
            // announced. Either way in the run's order: an edit after its message.
            let work = match body {
                EventBody::ApprovalDecided(decided) => Work::Decided(decided),
                body => match notify_on(&body) {
                    Some(on) => Work::Announce(on),
                    None => continue,
                },
            };
            log.in_flight.insert(event.id);
            let dispatcher = self.clone();
            let finished = finished.clone();
            let last = matches!(work, Work::Announce(on) if on.ends_run());
            let (previous, prepared) = self.in_order.prepare(event.run_id, last);
            self.sending.spawn(async move {
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                let prepared = Prepared(Some(prepared));
                let done = match &work {
                    Work::Announce(on) => dispatcher.notify(*on, &event, prepared).await,
                    Work::Decided(decided) => dispatcher.approval_decided(&event, decided, prepared).await,
                };
                if let Err(error) = done {
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
        match self.engine.store().set_cursor(CURSOR, done).await {
            Ok(()) => log.saved = done,
            Err(error) => tracing::warn!(%error, "could not save how far notifications got"),
        }
    }

    /// Announces `event` as `on` to each destination that wants it, each in its own
    /// queue; `prepared` is said once every destination's place is taken.
    async fn notify(&self, on: NotifyOn, event: &Event, prepared: Prepared) -> Result<()> {
        let Some(run_id) = event.run_id else { return Ok(()) };
        let store = self.engine.store();
        let run = store.run(run_id).await?;
        // A scheduled execution that went fine, or a deploy that changed nothing, is
        // noise, except to those who heard it start: every run they saw start ends.
        let nothing_changed = run.reason.as_deref() == Some(launchway_engine::NO_OP_REASON);
        let noise = on == NotifyOn::Succeeded && (run.kind == RunKind::Scheduled || nothing_changed);
        let Some(rules) = self.rules.current_notifications().await else {
            return Ok(());
        };
        // Commit statuses are about deploying a commit: not rollbacks to an older one,
        // repairs or scheduled executions.
        let wanted: Vec<&NotificationSink> = rules
            .iter()
            .filter(|notification| notification.wants(on, &run.env))
            .filter(|notification| !noise || notification.wants(NotifyOn::Started, &run.env))
            .map(|notification| &notification.sink)
            .filter(|sink| !sink.is_commit_status() || run.kind == RunKind::Deploy)
            .collect();
        let mut notification = self.notification(on, event, &run).await?;
        notification.nothing_changed = nothing_changed && on == NotifyOn::Succeeded;
        let places: Vec<_> = wanted.iter().map(|sink| self.in_order.send(run.id, &sink_key(sink))).collect();
        let edits = if on == NotifyOn::Rejected {
            // Expired or superseded, nobody decided: its approval messages say so now.
            let undecided = store.approval(run.id).await?.is_some_and(|approval| approval.decision.is_none());
            let why = run.reason.clone().unwrap_or_else(|| "it ended before anyone decided".to_owned());
            undecided.then(|| self.approval_edits(&run, &rules, format!("🚫 Not deployed: {why}")))
        } else {
            None
        };
        let edits = match edits {
            Some(edits) => edits.await?,
            None => Vec::new(),
        };
        if on.ends_run() {
            self.in_order.forget(run.id);
        }
        drop(prepared);
        let sends = wanted.into_iter().zip(places).map(|(sink, (previous, done))| {
            let (run, notification) = (&run, &notification);
            async move {
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                match destination(&self.secrets, sink).await {
                    Ok(destination) => {
                        let delivery = self.notifier.send(&destination, notification).await;
                        self.observer.notification(delivery.delivered);
                        self.record(run, outcome(on.as_str(), &destination, delivery)).await;
                    }
                    Err(error) => {
                        let outcome = NotificationOutcome {
                            event: on.as_str().to_owned(),
                            destination: "a notification destination".to_owned(),
                            attempts: 0,
                            error: Some(error.to_string()),
                            message: None,
                        };
                        self.record(run, outcome).await;
                    }
                }
                let _ = done.send(());
            }
        });
        futures_util::future::join_all(sends).await;
        self.edit_approval_messages(&run, event, edits).await
    }

    /// An approval was decided (anywhere: the CLI, the page, a button): the messages
    /// that asked for it, where they can be edited (a Slack app's), lose their buttons
    /// and say who decided.
    async fn approval_decided(&self, event: &Event, decided: &ApprovalDecided, prepared: Prepared) -> Result<()> {
        let Some(run_id) = event.run_id else { return Ok(()) };
        let run = self.engine.store().run(run_id).await?;
        let Some(rules) = self.rules.current_notifications().await else { return Ok(()) };
        let comment = decided.comment.as_deref().map(|comment| format!(": “{comment}”")).unwrap_or_default();
        let line = match decided.decision {
            launchway_store::Decision::Approved => format!("✅ Approved by {}{comment}", decided.by),
            launchway_store::Decision::Rejected => {
                format!("🚫 Rejected by {}{comment}: nothing was changed", decided.by)
            }
        };
        let edits = self.approval_edits(&run, &rules, line).await?;
        drop(prepared);
        self.edit_approval_messages(&run, event, edits).await
    }

    /// The edits that turn each message posted to ask for the run's approval into one
    /// that says `decided` and offers no buttons, each with its place in its
    /// destination's queue (after the message it edits).
    async fn approval_edits(
        &self,
        run: &launchway_store::Run,
        rules: &[launchway_manifest::Notification],
        decided: String,
    ) -> Result<Vec<Edit>> {
        let store = self.engine.store();
        let events = store.events(&EventFilter { run_id: Some(run.id), ..EventFilter::default() }).await?;
        let asked: Vec<(String, String)> = events
            .iter()
            .filter_map(|event| match event.body() {
                EventBody::Notification(outcome) if outcome.event == NotifyOn::ApprovalNeeded.as_str() => {
                    Some((outcome.destination, outcome.message?))
                }
                _ => None,
            })
            .collect();
        let mut edits = Vec::new();
        if asked.is_empty() {
            return Ok(edits);
        }
        for rule in rules.iter().filter(|rule| matches!(rule.sink, NotificationSink::SlackApp(_))) {
            let Ok(destination) = destination(&self.secrets, &rule.sink).await else { continue };
            let described = destination.describe();
            for (_, message) in asked.iter().filter(|(posted_to, _)| *posted_to == described) {
                let (previous, done) = self.in_order.send(run.id, &sink_key(&rule.sink));
                let (destination, message, decided) = (destination.clone(), message.clone(), decided.clone());
                edits.push(Edit { destination, message, decided, previous, done });
            }
        }
        Ok(edits)
    }

    /// Makes `edits`, each after what its destination had to send before.
    async fn edit_approval_messages(&self, run: &launchway_store::Run, event: &Event, edits: Vec<Edit>) -> Result<()> {
        if edits.is_empty() {
            return Ok(());
        }
        let asking = self.notification(NotifyOn::ApprovalNeeded, event, run).await?;
        let made = edits.into_iter().map(|edit| {
            let mut notification = asking.clone();
            async move {
                if let Some(previous) = edit.previous {
                    let _ = previous.await;
                }
                notification.decided = Some(edit.decided);
                let delivery = self.notifier.update(&edit.destination, &edit.message, &notification).await;
                self.record(run, outcome("approval_decided", &edit.destination, delivery)).await;
                let _ = edit.done.send(());
            }
        });
        futures_util::future::join_all(made).await;
        Ok(())
    }

    /// What a message about `run` says when `event` is announced as `on`.
    async fn notification(&self, on: NotifyOn, event: &Event, run: &launchway_store::Run) -> Result<Notification> {
        let store = self.engine.store();
        let release = store.release(run.release_id).await?;
        let logs = if matches!(on, NotifyOn::Failed | NotifyOn::RolledBack) {
            let events = store.events(&EventFilter { run_id: Some(run.id), ..EventFilter::default() }).await?;
            events.iter().rev().map(Event::logs).find(|logs| !logs.is_empty()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let approval = store.approval(run.id).await?;
        // The run's web page; approving and rejecting have links of their own.
        let run_url = self.public_url.as_deref().map(|base| format!("{}/runs/{}", base.trim_end_matches('/'), run.id));
        let asking = on == NotifyOn::ApprovalNeeded;
        let kind = run.kind.words(&release);
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
        Ok(Notification {
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
            commit_id: release.source.commit.clone(),
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
            approve_url: run_url.as_ref().filter(|_| asking).map(|url| format!("{url}#approve")),
            reject_url: run_url.as_ref().filter(|_| asking).map(|url| format!("{url}#reject")),
            run_url,
            expires_at: if asking { approval.and_then(|approval| approval.expires_at) } else { None },
            interactive: self.interactive_slack,
            nothing_changed: false,
            decided: None,
        })
    }

    async fn record(&self, run: &launchway_store::Run, outcome: NotificationOutcome) {
        let message = match &outcome.error {
            None => format!("notified {}", outcome.destination),
            Some(error) => format!("could not notify {}: {error}", outcome.destination),
        };
        let event = NewEvent::for_run(run, EventBody::Notification(outcome), message);
        if let Err(error) = self.engine.record(event).await {
            tracing::warn!(%error, "could not record a notification's outcome");
        }
    }
}

/// What the dispatcher does with an event.
enum Work {
    Announce(NotifyOn),
    /// Bring the messages that asked for the approval up to date.
    Decided(ApprovalDecided),
}

/// An edit of a message posted before, waiting for its place in its destination's queue.
struct Edit {
    destination: Destination,
    /// Where the message is ("CHANNEL TS").
    message: String,
    decided: String,
    previous: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

/// Said once an event's places in its destinations' queues are taken (or when it turns
/// out to have none): the run's next event may then take its own.
struct Prepared(Option<oneshot::Sender<()>>);

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(prepared) = self.0.take() {
            let _ = prepared.send(());
        }
    }
}

/// What tells a destination's queue apart: its sink as the manifest writes it (secrets
/// stay references).
fn sink_key(sink: &NotificationSink) -> String {
    format!("{sink:?}")
}

/// A delivery's outcome, for the audit log: where (never the secret URL), how many
/// tries, and the message posted when it can be edited later.
fn outcome(event: &str, destination: &Destination, delivery: crate::Delivery) -> NotificationOutcome {
    NotificationOutcome {
        event: event.to_owned(),
        destination: destination.describe(),
        attempts: delivery.attempts,
        error: (!delivery.delivered).then(|| delivery.error.unwrap_or_else(|| "unknown error".into())),
        message: delivery.message,
    }
}

/// A destination whose secret (a chat URL, a forge's token) could not be had.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {reference}: {source}")]
pub struct UnresolvedDestination {
    /// The reference, as the manifest wrote it (`ssm:…`, `env:…`); never a secret.
    pub reference: String,
    #[source]
    pub source: launchway_secrets::SecretError,
}

/// Where a sink sends, its secret (a chat URL, a forge's token) resolved.
pub async fn destination(secrets: &Secrets, sink: &NotificationSink) -> Result<Destination, UnresolvedDestination> {
    let reference = match sink {
        NotificationSink::Slack { url } | NotificationSink::Discord { url } | NotificationSink::Webhook { url } => url,
        NotificationSink::SlackApp(app) => &app.token,
        NotificationSink::GitHub(forge) | NotificationSink::GitLab(forge) => &forge.token,
    };
    let reference = SecretRef::parse(reference);
    let secret = secrets
        .resolve(&reference)
        .await
        .map_err(|source| UnresolvedDestination { reference: format!("{reference:?}"), source })?
        .expose()
        .to_owned();
    Ok(match sink {
        NotificationSink::Slack { .. } => Destination::Slack { url: secret },
        NotificationSink::SlackApp(app) => {
            Destination::SlackApp { api_url: app.api_url.clone(), token: secret, channel: app.channel.clone() }
        }
        NotificationSink::Discord { .. } => Destination::Discord { url: secret },
        NotificationSink::Webhook { .. } => Destination::Webhook { url: secret },
        NotificationSink::GitHub(forge) => {
            Destination::GitHubStatus { api_url: forge.api_url.clone(), repo: forge.repo.clone(), token: secret }
        }
        NotificationSink::GitLab(forge) => {
            Destination::GitLabStatus { api_url: forge.api_url.clone(), repo: forge.repo.clone(), token: secret }
        }
    })
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

/// Where a dispatcher starts reading: the saved cursor, or on a database no dispatcher
/// has read yet, its last event (a first start announces nothing from its history).
/// Called before a process records anything, so none of its events is missed.
pub async fn starting_point(store: &dyn Store) -> Result<i64> {
    if let Some(event_id) = store.cursor(CURSOR).await? {
        return Ok(event_id);
    }
    let last = store.events(&EventFilter { last: Some(1), ..EventFilter::default() }).await?;
    let event_id = last.last().map_or(0, |event| event.id);
    store.set_cursor(CURSOR, event_id).await?;
    Ok(event_id)
}

/// The event's notifications are done.
fn forget(log: &mut Option<LogPosition>, event_id: i64) {
    if let Some(position) = log.as_mut() {
        position.in_flight.remove(&event_id);
    }
}

fn notify_on(body: &EventBody) -> Option<NotifyOn> {
    // A progressing run held at an approval gate needs someone as a parked one does.
    if let EventBody::Awaiting(_) = body {
        return Some(NotifyOn::ApprovalNeeded);
    }
    if let EventBody::RunCreated(_) = body {
        return Some(NotifyOn::Started);
    }
    let EventBody::RunEntered { state, .. } = body else { return None };
    Some(match state {
        RunState::AwaitingApproval => NotifyOn::ApprovalNeeded,
        RunState::Succeeded => NotifyOn::Succeeded,
        RunState::Failed => NotifyOn::Failed,
        RunState::RolledBack => NotifyOn::RolledBack,
        RunState::Rejected => NotifyOn::Rejected,
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
