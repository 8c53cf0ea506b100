//! The HTTP API's wire types: the bodies `launchway server` reads and the answers it
//! gives, in one place that the server and the CLI (`--server`) share, so that each
//! thing has one JSON shape. Rows the store keeps (runs, releases, approvals, tokens)
//! travel as the store serializes them.

use launchway_engine::{AppHealth, AppStatus, Decision, SyncState};
use launchway_store::{Approval, Event, Pin, Release, Run, RunState, Step, Token};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a reconcile decided for one (app, environment), the same words as
/// `launchway deploy --output json` uses for its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Started,
    Resumed,
    WaitingForApproval,
    Unchanged,
    Skipped,
    Busy,
    Pinned,
    RepairLater,
}

impl DecisionKind {
    /// In words: "waiting for approval".
    pub fn words(self) -> &'static str {
        match self {
            DecisionKind::Started => "started",
            DecisionKind::Resumed => "resumed",
            DecisionKind::WaitingForApproval => "waiting for approval",
            DecisionKind::Unchanged => "unchanged",
            DecisionKind::Skipped => "skipped",
            DecisionKind::Busy => "busy",
            DecisionKind::Pinned => "pinned",
            DecisionKind::RepairLater => "repair later",
        }
    }
}

/// One decision, briefly: which run it started or found, and why not when none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionSummary {
    pub app: String,
    pub env: String,
    pub decision: DecisionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    /// The plan's one line, for a started run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
    /// The revision the repo asks for while a pin holds another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wants: Option<String>,
    /// When a repair that waits will be tried again (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// The run whose approval a waiting run waits for, when that is another run (one
    /// it depends on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_run: Option<i64>,
    /// For a skipped app: how the run that tried this state last ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<RunState>,
}

impl DecisionSummary {
    fn new(app: &str, env: &str, decision: DecisionKind) -> DecisionSummary {
        DecisionSummary {
            app: app.to_owned(),
            env: env.to_owned(),
            decision,
            run: None,
            plan: None,
            revision: None,
            reason: None,
            pin: None,
            wants: None,
            retry_at: None,
            approval_run: None,
            previous_state: None,
        }
    }

    /// In words, for people: "run 7 started: rolling update of 3 replicas", "skipped:
    /// revision … failed in run 5 (…); change the manifest, or pass --retry".
    pub fn describe(&self) -> String {
        let run = self.run.unwrap_or_default();
        match self.decision {
            DecisionKind::Started => format!("run {run} started: {}", self.plan.as_deref().unwrap_or("")),
            DecisionKind::Resumed => format!("run {run} resumed"),
            DecisionKind::WaitingForApproval => {
                let what = self.reason.as_deref().unwrap_or("approval");
                format!("run {run} waits for {what}: `launchway approve {}`", self.approval_run.unwrap_or(run))
            }
            DecisionKind::Unchanged => "unchanged: already runs this".to_owned(),
            DecisionKind::Skipped => format!("skipped: {}", self.reason.as_deref().unwrap_or("no reason given")),
            DecisionKind::Busy => format!("run {run} is under way; the change follows once it ends"),
            DecisionKind::Pinned => {
                let pin = self.pin.as_ref().map(|pin| format!(" to release {} by {}", pin.release_id, pin.by));
                let wants = self.wants.as_ref().map(|revision| format!("; the repo asks for revision {revision}"));
                format!(
                    "pinned{}{}: `launchway unpin --app {} --env {}` deploys it",
                    pin.unwrap_or_default(),
                    wants.unwrap_or_default(),
                    self.app,
                    self.env
                )
            }
            DecisionKind::RepairLater => {
                format!("drifted, repair later: {}", self.reason.as_deref().unwrap_or("repaired recently"))
            }
        }
    }
}

impl From<&Decision> for DecisionSummary {
    fn from(decision: &Decision) -> DecisionSummary {
        match decision {
            Decision::Started { run, plan } => DecisionSummary {
                run: Some(run.id),
                plan: Some(plan.summary.clone()),
                ..DecisionSummary::new(&run.app, &run.env, DecisionKind::Started)
            },
            Decision::Resume { run } => {
                DecisionSummary { run: Some(run.id), ..DecisionSummary::new(&run.app, &run.env, DecisionKind::Resumed) }
            }
            Decision::Waiting { run, approval_run, behind } => DecisionSummary {
                run: Some(run.id),
                reason: behind.clone(),
                approval_run: (approval_run != &run.id).then_some(*approval_run),
                ..DecisionSummary::new(&run.app, &run.env, DecisionKind::WaitingForApproval)
            },
            Decision::Unchanged { app, env, revision } => DecisionSummary {
                revision: Some(revision.clone()),
                ..DecisionSummary::new(app, env, DecisionKind::Unchanged)
            },
            Decision::Skipped { app, env, reason, previous_state } => DecisionSummary {
                reason: Some(reason.clone()),
                previous_state: Some(*previous_state),
                ..DecisionSummary::new(app, env, DecisionKind::Skipped)
            },
            Decision::Busy { app, env, run_id, .. } => {
                DecisionSummary { run: Some(*run_id), ..DecisionSummary::new(app, env, DecisionKind::Busy) }
            }
            Decision::Pinned { app, env, pin, wants } => DecisionSummary {
                pin: Some(pin.clone()),
                wants: wants.clone(),
                ..DecisionSummary::new(app, env, DecisionKind::Pinned)
            },
            Decision::RepairLater { app, env, reason, retry_at } => DecisionSummary {
                reason: Some(reason.clone()),
                retry_at: Some(*retry_at),
                ..DecisionSummary::new(app, env, DecisionKind::RepairLater)
            },
        }
    }
}

/// Whether a reconcile finished within the answer's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileStatus {
    /// Finished: `runs` says what it decided.
    Reconciled,
    /// Still going when the answer was due (202): runs show up in the runs list.
    Accepted,
}

/// The answer of `POST /api/v1/sync`, `/releases` and `/unpin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileAnswer {
    pub status: ReconcileStatus,
    #[serde(default)]
    pub runs: Vec<DecisionSummary>,
    /// The pin `/unpin` lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpinned: Option<Pin>,
}

/// `POST /api/v1/sync`: reconcile now (an empty body: everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub env: Option<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    /// Deploy again what failed, was rolled back or rejected (`deploy --retry`).
    #[serde(default)]
    pub retry: bool,
}

/// `POST /api/v1/rollback`: back to a verified release (the last one, or `to`), pinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub app: String,
    pub env: String,
    pub to: Option<i64>,
    pub reason: Option<String>,
    /// The release to roll back from: once another runs, a replay of the request does
    /// nothing (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
}

/// `POST /api/v1/unpin`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnpinRequest {
    pub app: String,
    pub env: String,
}

/// `POST /api/v1/runs/{id}/approve` and `/reject` (an empty body: no comment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecideRequest {
    pub comment: Option<String>,
}

/// The answer of a decision: the approval as recorded, and the token that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecideAnswer {
    pub approval: Approval,
    pub token: String,
}

/// The answer of `POST /api/v1/runs/{id}/promote` and `/abort`: the request as the audit
/// log holds it; the process driving the run acts on it within a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlAnswer {
    pub event: Event,
    pub token: String,
}

/// `POST /api/v1/releases`: images CI published for an app in an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub app: String,
    pub env: String,
    /// The contents of `imagedefinitions.json` or `imageDetail.json`, as JSON.
    pub file: Value,
    /// The application commit the images were built from, and its author (whom the
    /// approval author rule is about).
    pub commit: Option<String>,
    pub author: Option<String>,
    /// Deploy these images even though they failed before.
    #[serde(default)]
    pub retry: bool,
}

/// `POST /api/v1/tokens`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    pub subject: String,
    /// viewer, deployer, approver, admin or ci-publisher.
    pub role: String,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
}

/// A token just issued: its secret is shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub token: Token,
    pub secret: String,
}

/// `GET /api/v1/runs/{id}`: a run with everything that explains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: Run,
    /// What the run is, in the words chat and webhooks use ("promotion", "drift
    /// repair"…; `run.kind` is the stored kind).
    #[serde(default)]
    pub kind: String,
    pub release: Release,
    pub approval: Option<Approval>,
    pub steps: Vec<Step>,
    pub events: Vec<Event>,
}

impl RunDetail {
    pub fn new(run: Run, release: Release, approval: Option<Approval>, steps: Vec<Step>, events: Vec<Event>) -> Self {
        let kind = run.kind.words(&release).to_owned();
        RunDetail { run, kind, release, approval, steps, events }
    }
}

/// `GET /api/v1/status?brief=true`: an (app, environment) as the web page's board
/// shows it, without the release's spec, the live replicas and the last run whole
/// (a board of a thousand apps is a few hundred kilobytes, not megabytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusBrief {
    pub app: String,
    pub env: String,
    pub health: AppHealth,
    pub sync: SyncState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_error: Option<String>,
    /// The release that runs there.
    pub release: Option<i64>,
    /// The release a manual rollback holds it at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_to: Option<i64>,
    /// The run changing it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunBrief>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBrief {
    pub id: i64,
    pub state: RunState,
}

impl From<&AppStatus> for StatusBrief {
    fn from(status: &AppStatus) -> StatusBrief {
        StatusBrief {
            app: status.app.clone(),
            env: status.env.clone(),
            health: status.health.clone(),
            sync: status.sync,
            live_error: status.live_error.clone(),
            release: status.current_release.as_ref().map(|release| release.id),
            pinned_to: status.deployment.as_ref().and_then(|record| record.pin.as_ref()).map(|pin| pin.release_id),
            run: status
                .last_run
                .as_ref()
                .filter(|run| !run.state.is_terminal())
                .map(|run| RunBrief { id: run.id, state: run.state }),
        }
    }
}

/// Why a webhook was answered without acting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Not a push (a ping, a pull request…).
    Ignored,
    /// A redelivery of a push already acted on.
    Duplicate,
}

/// The answer to a webhook not acted on (one acted on answers a [`ReconcileAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSkipped {
    pub status: WebhookStatus,
    /// The provider's name for what was sent (`ping`, `pull_request`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

/// `GET /healthz`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// Every answer that is not a success: what went wrong, in words (for a 500, an id to
/// find the details in the server's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

/// `DELETE /api/v1/tokens/{id}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    pub id: String,
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use launchway_engine::Decision;

    use super::*;

    /// The API's brief decisions and `deploy --output json` name decisions alike.
    fn run() -> Box<launchway_store::Run> {
        let run = serde_json::json!({
            "id": 7, "app": "web", "env": "prod", "kind": "deploy", "state": "awaiting_approval",
            "release_id": 2, "previous_release_id": null, "reason": null, "plan": null,
            "trigger": "test", "attempt": 1, "lease_owner": null, "lease_expires_at": null,
            "created_at": 0, "updated_at": 0, "finished_at": null,
        });
        Box::new(serde_json::from_value(run).unwrap())
    }

    #[test]
    fn a_decision_has_one_name_in_every_answer() {
        let decisions = [
            Decision::Resume { run: run() },
            Decision::Waiting { run: run(), approval_run: 7, behind: None },
            Decision::Unchanged { app: "web".into(), env: "dev".into(), revision: "r1".into() },
            Decision::Busy { app: "web".into(), env: "dev".into(), run_id: 3, owner: "host:1".into() },
            Decision::RepairLater { app: "web".into(), env: "dev".into(), reason: "drift".into(), retry_at: 9 },
        ];
        for decision in &decisions {
            let summary = serde_json::to_value(DecisionSummary::from(decision)).unwrap();
            let full = serde_json::to_value(decision).unwrap();
            assert_eq!(summary["decision"], full["decision"], "{full}");
        }
        let waiting = DecisionSummary::from(&Decision::Waiting { run: run(), approval_run: 7, behind: None });
        assert_eq!(serde_json::to_value(waiting).unwrap()["decision"], "waiting_for_approval");
    }
}
