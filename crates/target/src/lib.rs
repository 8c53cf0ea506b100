//! What a deployment target is to the engine: something that reports live state and
//! moves an app from one revision to another, reporting as it goes.
//!
//! Targets implement [`Target`]; the engine knows only this trait, and no target's
//! setting names: each target plans its own ([`Target::plan`]). The rolling-update
//! arithmetic in [`rolling`] is pure and shared by targets that replace replicas
//! themselves (Docker), while targets with their own deployment controller (ECS) map
//! the same strategy onto it.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod planning;
pub mod rolling;
pub mod settings;

use std::collections::BTreeMap;

use async_trait::async_trait;
use launchway_manifest::{AppSpec, CloudWatchAnalysis, ContainerSpec};
pub use launchway_store::{AppPlan, Change, PlanAction, ReplicaCounts, ReplicaRef, TargetReport};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("could not reach {target}")]
    Unreachable {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{action} failed")]
    Api {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something on this machine that a target needed failed (a file, a thread, a helper
    /// program): `what` was being done, `source` is why it failed.
    #[error("{what}")]
    Local {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TargetError {
    /// A [`TargetError::Local`]: `what` failed, because of `source`.
    pub fn local(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TargetError {
        TargetError::Local { what: what.into(), source: source.into() }
    }
}

/// An error and its causes on one line, `outer: inner: innermost`: what a run records
/// as its reason, so that the engine's own message (Docker's, AWS's) is never lost.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let message = inner.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = inner.source();
    }
    text
}

/// Why a rollout did not reach its revision.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A new replica failed its health check or exited: the release is bad.
    #[error("{reason}")]
    Unhealthy { reason: String, logs: Vec<String> },
    /// The rollout did not finish within the strategy's timeout.
    #[error("{reason}")]
    TimedOut { reason: String, logs: Vec<String> },
    #[error(transparent)]
    Target(#[from] TargetError),
}

impl RolloutError {
    /// The failing replica's last log lines, when there are any.
    pub fn logs(&self) -> &[String] {
        match self {
            RolloutError::Unhealthy { logs, .. } | RolloutError::TimedOut { logs, .. } => logs,
            RolloutError::Target(_) => &[],
        }
    }
}

/// Everything launchway runs in one environment, by app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveEnvironment {
    pub apps: BTreeMap<String, LiveApp>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveApp {
    /// Replicas launchway runs itself (Docker).
    pub replicas: Vec<LiveReplica>,
    /// What runs, for targets that run a definition rather than labelled replicas (ECS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<LiveDefinition>,
    /// The entry point clients reach the app through (Docker's proxy, for a service
    /// with `ingress:`), when it has one: part of what must run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<EntryPoint>,
}

/// An app's entry point, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    /// Whether it answers now.
    pub answering: bool,
    /// What it is, for people: "the proxy on this host (admin 127.0.0.1:8099)".
    pub what: String,
}

/// What a definition-based target (ECS) runs for an app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDefinition {
    /// The target's name for it: a task definition ARN.
    pub reference: String,
    /// The launchway revision it was deployed as, when launchway deployed it.
    pub revision: Option<String>,
    /// Container → image.
    pub images: BTreeMap<String, String>,
    /// Everything else worth comparing, flattened by [`settings::flatten`].
    pub settings: BTreeMap<String, String>,
    /// No deployment is under way or failed: what runs is what was asked for.
    pub steady: bool,
    /// One line on how it is doing: "3 of 3 running", "deployment IN_PROGRESS"…
    pub status: String,
    /// Tasks running and wanted, for targets that count them (ECS services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// The current deployment failed (ECS rolled it back, or its circuit breaker did).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    /// The deployments the target keeps for it (ECS services: the PRIMARY one and the
    /// ACTIVE ones it replaces), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<LiveDeployment>,
    /// Where the target's own blue/green, canary or linear deployment is, while one
    /// moves (ECS's lifecycle stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LiveLifecycle>,
}

/// One deployment of a definition-based target, as it reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDeployment {
    /// PRIMARY (what the service moves to) or ACTIVE (what it moves from).
    pub role: String,
    /// The definition it runs, short (`web:7`).
    pub definition: String,
    /// IN_PROGRESS, COMPLETED or FAILED, when the target says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    pub running: u32,
    pub desired: u32,
    pub pending: u32,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// A native deployment's lifecycle stage and traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveLifecycle {
    /// The target's status of it: IN_PROGRESS, PENDING, STOP_REQUESTED…
    pub status: String,
    /// Its stage, as a manifest writes stages (`post_test_traffic_shift`).
    pub stage: String,
    /// The new revision's share of production traffic, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_weight: Option<f64>,
    /// The definition it deploys, short.
    pub to: String,
    /// A pause it waits at for someone (or launchway) to continue it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl LiveApp {
    /// Revisions present, with how many replicas each has running.
    pub fn running_by_revision(&self) -> BTreeMap<&str, u32> {
        let mut counts = BTreeMap::new();
        for replica in self.replicas.iter().filter(|replica| replica.state == ReplicaState::Running) {
            *counts.entry(replica.revision.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

/// One replica as the target sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveReplica {
    /// The target's id for it (the primary container's id on Docker).
    pub id: String,
    pub name: String,
    pub revision: String,
    pub release_id: Option<i64>,
    pub slot: u32,
    pub state: ReplicaState,
    /// The containers as they were started, from the target's own records.
    pub containers: Vec<ContainerSpec>,
    /// Where its port can be reached, like `127.0.0.1:49153`.
    pub endpoints: Vec<String>,
    /// How many times the target restarted it after it died (Docker's restart policy).
    /// Read only for the apps a caller asks about; 0 for the others.
    #[serde(default)]
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ReplicaState {
    Running,
    /// Created or exited: not serving.
    Stopped {
        exit_code: Option<i64>,
    },
}

/// Asks a target to bring one app to one revision.
#[derive(Debug, Clone, Copy)]
pub struct Rollout<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub release_id: i64,
    pub revision: &'a str,
    pub spec: &'a AppSpec,
}

/// One execution of a scheduled task, run by launchway itself (Docker has no scheduler).
#[derive(Debug, Clone, Copy)]
pub struct TaskExecution<'a> {
    pub app: &'a str,
    pub env: &'a str,
    /// The run recording this execution: names its containers, so a resumed run finds them.
    pub run_id: i64,
    pub release_id: i64,
    pub revision: &'a str,
    /// A Docker task, or an ECS task run on deploy.
    pub spec: &'a AppSpec,
}

/// How an execution that succeeded went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    pub exit_code: i64,
    pub elapsed: std::time::Duration,
    /// Its last log lines.
    pub logs: Vec<String>,
}

/// What one container of a replica wrote last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLogs {
    /// The replica's name, and the container's within it.
    pub replica: String,
    pub container: String,
    pub running: bool,
    pub lines: Vec<String>,
}

/// An app a target is asked about, with the spec that says where to look.
#[derive(Debug, Clone, Copy)]
pub struct AppRef<'a> {
    pub app: &'a str,
    pub spec: &'a AppSpec,
}

/// Where a progressive rollout stands after [`Target::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The step is in place: the run holds it.
    Reached,
    /// The target is still getting there (an ECS deployment between two gates).
    Moving,
}

/// Something that happened on the target during a rollout, for the audit log and the
/// progress display: a line for people and the typed report it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetEvent {
    pub report: TargetReport,
    pub message: String,
}

impl TargetEvent {
    pub fn new(report: TargetReport, message: impl Into<String>) -> TargetEvent {
        TargetEvent { report, message: message.into() }
    }
}

/// Receives [`TargetEvent`]s as they happen; the engine persists them.
#[async_trait]
pub trait Progress: Send + Sync {
    async fn report(&self, event: TargetEvent);
}

/// A deployment target.
///
/// # Guarantees asked of implementations
/// - Every method is idempotent: called again after a crash, it picks up from what is
///   live, never duplicating replicas.
/// - `rollout` never takes availability below what the strategy allows.
#[async_trait]
pub trait Target: Send + Sync {
    /// How the target names itself in messages: "docker at unix:///var/run/docker.sock".
    fn describe(&self) -> String;

    /// Checks that `spec` can run here without changing anything (the target answers,
    /// images exist…). Returns notes worth showing.
    async fn check(&self, app: &str, env: &str, spec: &AppSpec) -> Result<Vec<String>, TargetError>;

    /// What deploying `request.desired` would change, from what [`Target::observe`] saw.
    /// Pure: each target compares the settings it knows by its own names.
    fn plan(&self, request: planning::PlanRequest<'_>) -> AppPlan;

    /// What runs in `env`: at least the apps named (a target that labels what it runs
    /// may report others, which the manifest no longer declares).
    async fn observe(&self, env: &str, apps: &[AppRef<'_>]) -> Result<LiveEnvironment, TargetError>;

    /// Replaces whatever runs for the app with `rollout.revision`, per its strategy, and
    /// returns once every replica of it is healthy and no other is left.
    ///
    /// With a progressive strategy (blue/green, canary) it only brings the revision's
    /// whole set up, healthy, beside what serves, and gives it no traffic (all of it when
    /// nothing else serves); [`Target::advance`] and [`Target::promote`] go on.
    async fn rollout(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError>;

    /// Moves a progressive rollout on to its step `step` (from 0, in the order of
    /// [`AppSpec::progressive`]): on Docker, sends that step's share of requests to
    /// `rollout.revision`'s replicas and the rest to those that served before (at 100%
    /// the others are kept, idle, for an instant way back) and answers `Reached`; on
    /// ECS, lets the deployment go on from the gate before and answers `Reached` once
    /// it waits at this step's gate (or has finished), `Moving` meanwhile. Returns
    /// promptly either way: the caller asks again.
    async fn advance(
        &self,
        rollout: Rollout<'_>,
        step: usize,
        _progress: &dyn Progress,
    ) -> Result<Advance, RolloutError> {
        Err(RolloutError::Target(TargetError::Invalid(format!(
            "{} cannot move {}'s traffic in steps (asked for step {})",
            self.describe(),
            rollout.app,
            step + 1
        ))))
    }

    /// Ends a rollout: `rollout.revision` takes all the traffic and no other replica is
    /// left, starting whatever of it is missing first. For a rolling update this is
    /// [`Target::rollout`] again (which has nothing left to do); a rollback uses it to
    /// go back to the set that served, at once.
    async fn promote(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        self.rollout(rollout, progress).await
    }

    /// The latest value of a CloudWatch metric (`None`: no datapoint in its period), read
    /// with the environment's credentials.
    async fn cloudwatch_metric(&self, query: &CloudWatchAnalysis) -> Result<Option<f64>, TargetError> {
        Err(TargetError::Invalid(format!(
            "{} cannot read CloudWatch metric {}/{}",
            self.describe(),
            query.namespace,
            query.metric
        )))
    }

    /// Which of these CloudWatch alarms are in ALARM (an alarm that does not exist is an
    /// error: nothing would ever be seen).
    async fn firing_alarms(&self, names: &[String]) -> Result<Vec<String>, TargetError> {
        Err(TargetError::Invalid(format!("{} cannot read CloudWatch alarms {}", self.describe(), names.join(", "))))
    }

    /// Where an analysis reaches each running replica of `rollout.revision` on `port`
    /// (the primary container's when `None`): `127.0.0.1:49153`…
    async fn analysis_endpoints(&self, rollout: Rollout<'_>, port: Option<u16>) -> Result<Vec<String>, TargetError> {
        let _ = port;
        Err(TargetError::Invalid(format!(
            "{} cannot say where {}'s replicas answer for an analysis",
            self.describe(),
            rollout.app
        )))
    }

    /// The last `lines` lines each container of the app's replicas wrote, for people
    /// (the web page's app view). Targets whose logs launchway cannot read say so.
    async fn recent_logs(&self, env: &str, app: AppRef<'_>, lines: usize) -> Result<Vec<ContainerLogs>, TargetError> {
        let _ = (env, lines);
        Err(TargetError::Invalid(format!("{} keeps no logs launchway can read for {}", self.describe(), app.app)))
    }

    /// What a finished rollout of `revision` is called, in the target's words ("3 replicas
    /// of revision … rolled out").
    fn rolled_out(&self, spec: &AppSpec, revision: &str) -> String {
        let _ = spec;
        format!("revision {revision} rolled out")
    }

    /// What the start of a progressive rollout is called: where the new revision runs and
    /// how the run goes on (`steps`: "2 steps"; `strategy`: "canary").
    fn progressive_start(&self, spec: &AppSpec, revision: &str, strategy: &str, steps: &str) -> String {
        let _ = spec;
        format!("revision {revision} runs beside the release that serves; moving traffic to it in {steps} ({strategy})")
    }

    /// Whether an app's first release takes everything at once, skipping its traffic
    /// steps (nothing serves yet to take traffic from). Not where something served before
    /// launchway's first release (an ECS service), or where the target pauses at its gates
    /// whatever launchway does.
    fn first_release_skips_steps(&self, spec: &AppSpec) -> bool {
        let _ = spec;
        true
    }

    /// Checks that the app runs exactly `rollout.revision`, healthy, right now.
    async fn verify(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError>;

    /// Runs one execution of a scheduled task to completion. A non-zero exit is
    /// [`RolloutError::Unhealthy`], with the task's last log lines.
    ///
    /// Targets with a scheduler of their own (ECS with EventBridge) do not need this.
    async fn run_task(&self, task: TaskExecution<'_>, _progress: &dyn Progress) -> Result<TaskOutcome, RolloutError> {
        Err(RolloutError::Target(TargetError::Invalid(format!(
            "{} runs scheduled tasks on its own schedule; launchway does not run {} itself",
            self.describe(),
            task.app
        ))))
    }

    /// Undoes one revision of an app when there is no earlier release to roll back to:
    /// Docker removes its replicas; ECS puts the service back on the task definition
    /// it ran before.
    async fn retire(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), TargetError>;
}
