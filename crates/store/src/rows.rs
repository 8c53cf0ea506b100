//! The rows a store keeps, as the engine and the CLI see them.

use std::time::{SystemTime, UNIX_EPOCH};

use launchway_manifest::{AppSpec, TargetSpec};
use serde::{Deserialize, Serialize};

pub type RunId = i64;
pub type ReleaseId = i64;

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Where a release came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSource {
    /// The config commit (full hex id), when the release came from the config repo.
    pub commit: Option<String>,
    /// The commit's first line.
    pub summary: Option<String>,
    pub author: Option<String>,
}

/// An immutable desired state for one app in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    pub app: String,
    pub env: String,
    pub revision: String,
    pub spec: AppSpec,
    /// Where the environment ran when the release was made: enough to resume or roll
    /// back without the config repo.
    pub target: TargetSpec,
    pub source: ReleaseSource,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewRelease {
    pub app: String,
    pub env: String,
    pub spec: AppSpec,
    pub target: TargetSpec,
    pub source: ReleaseSource,
}

/// Where a run is. A run moves forward through these; every move is persisted before
/// the step it starts acts on anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Validating,
    Planning,
    Deploying,
    Verifying,
    RollingBack,
    Succeeded,
    RolledBack,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 9] = [
        RunState::Pending,
        RunState::Validating,
        RunState::Planning,
        RunState::Deploying,
        RunState::Verifying,
        RunState::RollingBack,
        RunState::Succeeded,
        RunState::RolledBack,
        RunState::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::RolledBack | RunState::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Validating => "validating",
            RunState::Planning => "planning",
            RunState::Deploying => "deploying",
            RunState::Verifying => "verifying",
            RunState::RollingBack => "rolling_back",
            RunState::Succeeded => "succeeded",
            RunState::RolledBack => "rolled_back",
            RunState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Bring the environment to a release from the config repo.
    Deploy,
    /// Return to an earlier release on request.
    Rollback,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Deploy => "deploy",
            RunKind::Rollback => "rollback",
        }
    }

    pub fn parse(text: &str) -> Option<RunKind> {
        [RunKind::Deploy, RunKind::Rollback].into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One pipeline execution for one app in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub app: String,
    pub env: String,
    pub kind: RunKind,
    pub state: RunState,
    pub release_id: ReleaseId,
    /// The last good release when the run was created: what a failure rolls back to.
    pub previous_release_id: Option<ReleaseId>,
    /// Why the run ended as it did, or what it is waiting for.
    pub reason: Option<String>,
    /// The plan computed by the plan step, as JSON.
    pub plan: Option<serde_json::Value>,
    /// Who or what started the run ("cli deploy by alice@laptop").
    pub trigger: String,
    /// How many times the run has been claimed; the fencing token of its lease.
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub app: String,
    pub env: String,
    pub kind: RunKind,
    pub release_id: ReleaseId,
    pub previous_release_id: Option<ReleaseId>,
    pub trigger: String,
}

/// The right to act on one run, held by one process until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: RunId,
    pub owner: String,
    pub attempt: i64,
}

/// A state change and what it records.
#[derive(Debug, Clone)]
pub struct Transition {
    pub to: RunState,
    pub reason: Option<String>,
    /// Set when the plan step has computed a plan.
    pub plan: Option<serde_json::Value>,
    pub event: NewEvent,
    /// Applied with the transition when the run finishes.
    pub deployment: Option<DeploymentUpdate>,
}

/// What a finished run leaves deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentUpdate {
    /// The release now running.
    pub current_release_id: ReleaseId,
    /// Whether that release was verified, making it the new rollback target.
    pub verified: bool,
}

/// What is deployed for one (app, environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub app: String,
    pub env: String,
    pub current_release_id: ReleaseId,
    /// The last release that was verified there: the rollback target.
    pub good_release_id: Option<ReleaseId>,
    /// The config commit the current release came from.
    pub commit: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    Failed,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Succeeded => "succeeded",
            StepOutcome::Failed => "failed",
        }
    }
}

/// One execution of one step of a run. A step resumed after a crash has a row per attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub run_id: RunId,
    pub name: String,
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<StepOutcome>,
    pub detail: Option<String>,
}

/// An entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub run_id: Option<RunId>,
    pub app: Option<String>,
    pub env: Option<String>,
    /// Dotted name: `run.created`, `step.started`, `replica.healthy`…
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub run_id: Option<RunId>,
    pub app: Option<String>,
    pub env: Option<String>,
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event about a run, with no extra data.
    pub fn for_run(run: &Run, kind: &str, message: impl Into<String>) -> NewEvent {
        NewEvent {
            run_id: Some(run.id),
            app: Some(run.app.clone()),
            env: Some(run.env.clone()),
            kind: kind.to_owned(),
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> NewEvent {
        self.data = data;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub app: Option<String>,
    pub env: Option<String>,
    pub unfinished_only: bool,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub run_id: Option<RunId>,
    pub app: Option<String>,
    pub env: Option<String>,
    /// Only events with a larger id: lets a follower read what is new.
    pub after_id: Option<i64>,
    pub limit: Option<u32>,
}
