//! The rows a store keeps, as the engine and the CLI see them.

use std::time::{SystemTime, UNIX_EPOCH};

use launchway_manifest::{AppBuild, AppSpec, ApprovalPolicy, TargetSpec};
use serde::{Deserialize, Serialize};

use crate::events::{AuditKind, EventBody};
use crate::plan::AppPlan;

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
    /// When the change was committed (Unix ms): where lead time starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<i64>,
    /// What made the release besides a commit: "published by ci-web",
    /// "promoted from stg (run 12)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl ReleaseSource {
    const PROMOTED_FROM: &'static str = "promoted from ";

    /// The origin of a release promoted from `env`, where run `run` verified it.
    pub fn promoted_origin(env: &str, run: RunId) -> String {
        format!("{}{env} (run {run})", Self::PROMOTED_FROM)
    }

    /// Whether the release was promoted from another environment.
    pub fn is_promotion(&self) -> bool {
        self.origin.as_deref().is_some_and(|origin| origin.starts_with(Self::PROMOTED_FROM))
    }
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
    /// How its images are built (the app's `build:` at that commit), when it has
    /// images still to build: the run's build step builds them and moves the run to a
    /// release with what it built.
    pub build: Option<AppBuild>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewRelease {
    pub app: String,
    pub env: String,
    pub spec: AppSpec,
    pub target: TargetSpec,
    pub source: ReleaseSource,
    pub build: Option<AppBuild>,
}

/// An image launchway built: what it deploys for the reference it was built as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// `repo:tag`, as the build step was asked for it.
    pub reference: String,
    /// What deploys: `repo@sha256:…` once pushed, else the engine's image id.
    pub image: String,
    pub app: String,
    pub container: String,
    pub run_id: RunId,
    pub built_at: i64,
}

/// Where a run is. A run moves forward through these; every move is persisted before
/// the step it starts acts on anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Validating,
    /// Building the images the release builds (`build:`), before anything is planned.
    Building,
    Planning,
    /// Waiting for someone to approve the plan (parked: nobody drives it meanwhile).
    AwaitingApproval,
    Deploying,
    /// A progressive delivery moving traffic to the new release step by step.
    Progressing,
    Verifying,
    RollingBack,
    Succeeded,
    RolledBack,
    Failed,
    /// Refused by an approver, or not approved in time. Nothing was changed.
    Rejected,
}

impl RunState {
    pub const ALL: [RunState; 13] = [
        RunState::Pending,
        RunState::Validating,
        RunState::Building,
        RunState::Planning,
        RunState::AwaitingApproval,
        RunState::Deploying,
        RunState::Progressing,
        RunState::Verifying,
        RunState::RollingBack,
        RunState::Succeeded,
        RunState::RolledBack,
        RunState::Failed,
        RunState::Rejected,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::RolledBack | RunState::Failed | RunState::Rejected)
    }

    /// Finished without bringing its release in: failed, rolled back or rejected.
    pub fn is_unsuccessful(self) -> bool {
        self.is_terminal() && self != RunState::Succeeded
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Validating => "validating",
            RunState::Building => "building",
            RunState::Planning => "planning",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::Deploying => "deploying",
            RunState::Progressing => "progressing",
            RunState::Verifying => "verifying",
            RunState::RollingBack => "rolling_back",
            RunState::Succeeded => "succeeded",
            RunState::RolledBack => "rolled_back",
            RunState::Failed => "failed",
            RunState::Rejected => "rejected",
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
    /// One execution of a scheduled task, run to completion.
    Scheduled,
    /// Bring back what drifted (replicas that died, restarted or were removed) to the
    /// last verified release, which is already current.
    Repair,
}

impl RunKind {
    /// What a run of `release` is, in the words people read everywhere (chat, webhooks,
    /// history, the page): a deploy of a promoted release is a "promotion".
    pub fn words(self, release: &Release) -> &'static str {
        match self {
            RunKind::Deploy if release.source.is_promotion() => "promotion",
            RunKind::Deploy => "deploy",
            RunKind::Rollback => "rollback",
            RunKind::Repair => "drift repair",
            RunKind::Scheduled => "scheduled task",
        }
    }

    pub const ALL: [RunKind; 4] = [RunKind::Deploy, RunKind::Rollback, RunKind::Scheduled, RunKind::Repair];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Deploy => "deploy",
            RunKind::Rollback => "rollback",
            RunKind::Scheduled => "scheduled",
            RunKind::Repair => "repair",
        }
    }

    pub fn parse(text: &str) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|kind| kind.as_str() == text)
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
    /// The plan computed by the plan step.
    pub plan: Option<AppPlan>,
    /// Who or what started the run ("cli deploy by alice@laptop").
    pub trigger: String,
    /// Whether, and how, the run waits for approval before deploying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<ApprovalPolicy>,
    /// Runs of the apps it depends on, created with it: it starts once they succeed,
    /// and fails without changing anything when one does not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits_for: Vec<RunId>,
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
    pub approval_policy: Option<ApprovalPolicy>,
    /// Pins (app, environment) to the run's release, in the same transaction (a manual
    /// rollback). The app must have been deployed there before.
    pub pin: Option<NewPin>,
    /// Create the run only if the newest run of (app, environment) is still this one
    /// (0: none): the decision to create it was made from what that run left.
    pub decided_after: Option<RunId>,
    /// See [`Run::waits_for`].
    pub waits_for: Vec<RunId>,
}

/// Who pins an app to a release, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPin {
    pub by: String,
    pub reason: Option<String>,
}

/// An (app, environment) held at one release: the server and `deploy` leave it there
/// until the pin is lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub release_id: ReleaseId,
    pub by: String,
    pub at: i64,
    pub reason: Option<String>,
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
    pub plan: Option<AppPlan>,
    pub event: NewEvent,
    /// Applied with the transition when the run finishes.
    pub deployment: Option<DeploymentUpdate>,
    /// Opens the run's approval request, when it starts waiting for one.
    pub approval: Option<ApprovalRequest>,
    /// Moves the run to this new release: the one with the images its build step built.
    pub release: Option<NewRelease>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub expires_at: Option<i64>,
}

/// A run's approval: requested, then decided once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub run_id: RunId,
    pub requested_at: i64,
    pub expires_at: Option<i64>,
    pub decision: Option<Decision>,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        }
    }
}

/// What a token may do. Each role includes the ones before it, except `ci_publisher`,
/// which may only publish releases for its apps and environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    CiPublisher,
    Viewer,
    Deployer,
    Approver,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::CiPublisher, Role::Viewer, Role::Deployer, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CiPublisher => "ci-publisher",
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// An API token. The secret itself is shown once, at creation, and kept only hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The public part: `lw_<id>_<secret>` is what clients send.
    pub id: String,
    pub name: String,
    /// Who the token acts for (an email, a CI job): the identity approvals compare.
    pub subject: String,
    pub role: Role,
    /// For `ci_publisher`: the apps and environments it may publish to (empty: none).
    pub apps: Vec<String>,
    pub envs: Vec<String>,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub subject: String,
    pub role: Role,
    pub apps: Vec<String>,
    pub envs: Vec<String>,
    pub secret_hash: String,
}

/// Images CI published for an app in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub app: String,
    pub env: String,
    pub images: std::collections::BTreeMap<String, String>,
    pub published_by: String,
    pub published_at: i64,
    /// The application commit the images were built from, when CI said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// That commit's author, when CI said: the release's author for approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
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
    /// Set by a manual rollback, lifted by `unpin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    Failed,
    /// Its driver stopped or died before it finished: a later attempt ran it again, or
    /// the run ended without it.
    Interrupted,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Succeeded => "succeeded",
            StepOutcome::Failed => "failed",
            StepOutcome::Interrupted => "interrupted",
        }
    }
}

/// One execution of one step of a run. A step resumed after a crash has a row per attempt
/// (`attempt` is the run's lease attempt that ran it, not a count of the step's tries);
/// a row left unfinished by a driver that stopped is `Interrupted` once the run goes on
/// under a new attempt or ends.
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
    /// Dotted name: `run.created`, `step.started`, `replica.healthy`… ([`Event::body`]
    /// reads it with `data`, typed.)
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
}

/// An event to append: what it is about, a line for people, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub run_id: Option<RunId>,
    pub app: Option<String>,
    pub env: Option<String>,
    pub message: String,
    pub body: EventBody,
}

impl NewEvent {
    /// An event about a run.
    pub fn for_run(run: &Run, body: EventBody, message: impl Into<String>) -> NewEvent {
        NewEvent {
            run_id: Some(run.id),
            app: Some(run.app.clone()),
            env: Some(run.env.clone()),
            message: message.into(),
            body,
        }
    }

    /// An event about an app in an environment, outside any run.
    pub fn for_app(app: &str, env: &str, body: EventBody, message: impl Into<String>) -> NewEvent {
        NewEvent { run_id: None, app: Some(app.to_owned()), env: Some(env.to_owned()), message: message.into(), body }
    }

    /// An audit event about no app: a token, a caller, the config repo.
    pub fn audit(kind: AuditKind, message: impl Into<String>, data: serde_json::Value) -> NewEvent {
        NewEvent { run_id: None, app: None, env: None, message: message.into(), body: EventBody::Audit { kind, data } }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub app: Option<String>,
    pub env: Option<String>,
    pub unfinished_only: bool,
    /// Leave out runs parked for approval (nobody drives them until a decision).
    pub exclude_parked: bool,
    pub state: Option<RunState>,
    pub kind: Option<RunKind>,
    /// Only runs created at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only runs older than this one (the next page after a page ending with it).
    pub before_id: Option<RunId>,
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
    /// Only the most recent this many (still returned oldest first).
    pub last: Option<u32>,
}
