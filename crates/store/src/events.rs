//! The audit log's vocabulary: every kind of event launchway writes, with the data it
//! carries, typed.
//!
//! An event is stored as its kind's dotted name (`step.finished`) and its data as JSON;
//! writers build an [`EventBody`] and readers get one back from [`Event::body`], so
//! nobody spells a kind or a data field twice. Reading never fails: a kind this version
//! does not know (written by a newer one), or data that does not fit its kind, reads as
//! [`EventBody::Other`], as it was written.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Decision, Event, RunKind, RunState, StepOutcome};

/// What an event says.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// `run.created`: a run was decided, for a release.
    RunCreated(RunCreated),
    /// `run.resumed`: a process took over a run another left unfinished.
    RunResumed { attempt: i64, state: RunState },
    /// `run.waiting`: a pending run waits for the runs of the apps it depends on.
    RunWaiting { runs: Vec<i64> },
    /// `run.<state>`: the run entered `state`.
    RunEntered { state: RunState, detail: TransitionDetail },
    /// `step.started`
    StepStarted { step: String },
    /// `step.finished`
    StepFinished(StepFinished),
    /// `approval.granted` / `approval.refused`
    ApprovalDecided(ApprovalDecided),
    /// What a target reported while it acted (`replica.healthy`, `verify.passed`…).
    Target(TargetReport),
    /// `notification.sent` / `notification.failed`
    Notification(NotificationOutcome),
    /// `analysis.measured`: one measurement of a progressive delivery's analysis.
    Measured(Measurement),
    /// `control.promote` / `control.abort`: someone asked a progressing run to move on
    /// now, or to roll back now.
    Control(ControlRequest),
    /// `gate.awaiting`: a progressing run holds a step until someone promotes it (an
    /// approval at an ECS deployment's gate).
    Awaiting(Awaiting),
    /// Events read by people and shown by the API, never interpreted (publications,
    /// tokens, refused callers, promotions), so their data stays as written.
    Audit { kind: AuditKind, data: Value },
    /// A kind this version does not know, or data that does not fit its kind.
    Other { kind: String, data: Value },
}

/// The data of `run.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCreated {
    /// 0 when the release is stored in the same write as the run.
    pub release: i64,
    pub revision: String,
    pub trigger: String,
    pub kind: RunKind,
}

/// What a transition carries beside its message; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransitionDetail {
    /// Why the run is where it is (a failure's cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The plan's changes, one line each, most important first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// When an approval the run waits for expires (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The last log lines of what failed (or of a task that ran).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// A scheduled task's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

impl TransitionDetail {
    pub fn is_empty(&self) -> bool {
        self == &TransitionDetail::default()
    }
}

/// The data of `step.finished`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFinished {
    pub step: String,
    pub outcome: StepOutcome,
    pub elapsed_ms: u64,
    pub detail: String,
}

/// The data of `approval.granted` and `approval.refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub by: String,
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The data of `notification.sent` and `notification.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// What was announced (`failed`, `approval_needed`…).
    pub event: String,
    pub destination: String,
    pub attempts: u32,
    #[serde(default)]
    pub error: Option<String>,
    /// The message posted, where it can be edited later ("CHANNEL TS" for a Slack app):
    /// an approval's message is brought up to date once the run is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The data of `analysis.measured`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The traffic step it was taken at, from 1.
    pub step: u32,
    /// `http` or `prometheus`.
    pub metric: String,
    pub passed: bool,
    /// The number measured: a query's worst value, a request's latency in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// What was seen, for people: `GET /work on 127.0.0.1:49153: 500 in 3 ms`.
    pub detail: String,
}

/// What `launchway promote` and `launchway abort` ask of a progressing run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// End the current pause: go to the next traffic step.
    Promote,
    /// Send all traffic back and roll back now.
    Abort,
}

impl ControlAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Promote => "promote",
            ControlAction::Abort => "abort",
        }
    }
}

/// The data of `control.promote` and `control.abort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub action: ControlAction,
    pub by: String,
}

/// The data of `gate.awaiting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// The step held, from 1.
    pub step: u32,
    /// What is held, for people: `ECS deployment paused at post_test_traffic_shift`.
    pub what: String,
}

/// One replica named in a target's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRef {
    pub name: String,
    pub slot: u32,
    pub revision: String,
    /// How long the action on it took (a start, a stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
}

/// What a target reports while it acts, with the data each report carries. Docker
/// reports replicas; ECS reports task definitions, services and deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum TargetReport {
    #[serde(rename = "image.pulling")]
    ImagePulling { image: String },
    /// A container's image is being built (`build:`) as `reference`.
    #[serde(rename = "image.building")]
    ImageBuilding { container: String, reference: String },
    /// Lines the build wrote (a step started, its output), as they came.
    #[serde(rename = "image.build_log")]
    ImageBuildLog { container: String, lines: Vec<String> },
    /// The image was built before (by this run or another, or the same context under
    /// another tag), so it was not built again.
    #[serde(rename = "image.reused")]
    ImageReused { container: String, reference: String, image: String },
    /// The image is in place: `image` is what deploys (a digest once pushed, else the
    /// engine's image id).
    #[serde(rename = "image.built")]
    ImageBuilt { container: String, reference: String, image: String },
    #[serde(rename = "image.pushed")]
    ImagePushed { reference: String, digest: String },
    #[serde(rename = "replica.started")]
    ReplicaStarted(ReplicaRef),
    /// A replica of the wanted revision found running, counted as done.
    #[serde(rename = "replica.adopted")]
    ReplicaAdopted(ReplicaRef),
    #[serde(rename = "replica.replacing")]
    ReplicaReplacing(ReplicaRef),
    #[serde(rename = "replica.healthy")]
    ReplicaHealthy(ReplicaRef),
    /// Stayed healthy through the first batch's settle window.
    #[serde(rename = "replica.settled")]
    ReplicaSettled(ReplicaRef),
    #[serde(rename = "replica.unhealthy")]
    ReplicaUnhealthy(ReplicaRef),
    #[serde(rename = "replica.stopped")]
    ReplicaStopped(ReplicaRef),
    /// The rollout holds its first batch for the settle window.
    #[serde(rename = "rollout.settling")]
    RolloutSettling { window_ms: u64 },
    #[serde(rename = "task.started")]
    TaskStarted { container: String, image: String },
    #[serde(rename = "task_definition.registered")]
    TaskDefinitionRegistered { task_definition: String, revision: String, previous: Option<String> },
    #[serde(rename = "task_definition.reused")]
    TaskDefinitionReused { task_definition: String, revision: String },
    #[serde(rename = "service.updated")]
    ServiceUpdated { service: String, cluster: String, task_definition: String },
    #[serde(rename = "deployment.progress")]
    DeploymentProgress { running: i32, desired: i32, status: String },
    #[serde(rename = "rule.updated")]
    RuleUpdated { rule: String, task_definition: String },
    #[serde(rename = "schedule.updated")]
    ScheduleUpdated { schedule: String, task_definition: String },
    /// Verification started watching `what` (a revision's replicas, a service).
    #[serde(rename = "verify.watching")]
    VerifyWatching { what: String, window_ms: u64 },
    /// Verification saw `what` settle and stay healthy.
    #[serde(rename = "verify.passed")]
    VerifyPassed { what: String, watched_ms: u64 },
    /// The entry point now sends `weight` percent of requests to `revision`'s replicas.
    #[serde(rename = "traffic.shifted")]
    TrafficShifted { revision: String, weight: u8, replicas: u32, others: u32 },
    /// An ECS deployment of a native strategy reached a lifecycle stage.
    #[serde(rename = "deployment.stage")]
    DeploymentStage {
        stage: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        production_weight: Option<f64>,
    },
    /// An ECS deployment waits at a pause hook for launchway to decide.
    #[serde(rename = "deployment.paused")]
    DeploymentPaused { stage: String, hook: String },
    /// launchway told ECS to go on from a pause hook (`CONTINUE`) or to roll back.
    #[serde(rename = "deployment.continued")]
    DeploymentContinued { stage: String, action: String },
}

impl TargetReport {
    /// The dotted name it is stored under.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetReport::ImagePulling { .. } => "image.pulling",
            TargetReport::ImageBuilding { .. } => "image.building",
            TargetReport::ImageBuildLog { .. } => "image.build_log",
            TargetReport::ImageReused { .. } => "image.reused",
            TargetReport::ImageBuilt { .. } => "image.built",
            TargetReport::ImagePushed { .. } => "image.pushed",
            TargetReport::ReplicaStarted(_) => "replica.started",
            TargetReport::ReplicaAdopted(_) => "replica.adopted",
            TargetReport::ReplicaReplacing(_) => "replica.replacing",
            TargetReport::ReplicaHealthy(_) => "replica.healthy",
            TargetReport::ReplicaSettled(_) => "replica.settled",
            TargetReport::ReplicaUnhealthy(_) => "replica.unhealthy",
            TargetReport::ReplicaStopped(_) => "replica.stopped",
            TargetReport::RolloutSettling { .. } => "rollout.settling",
            TargetReport::TaskStarted { .. } => "task.started",
            TargetReport::TaskDefinitionRegistered { .. } => "task_definition.registered",
            TargetReport::TaskDefinitionReused { .. } => "task_definition.reused",
            TargetReport::ServiceUpdated { .. } => "service.updated",
            TargetReport::DeploymentProgress { .. } => "deployment.progress",
            TargetReport::RuleUpdated { .. } => "rule.updated",
            TargetReport::ScheduleUpdated { .. } => "schedule.updated",
            TargetReport::VerifyWatching { .. } => "verify.watching",
            TargetReport::VerifyPassed { .. } => "verify.passed",
            TargetReport::TrafficShifted { .. } => "traffic.shifted",
            TargetReport::DeploymentStage { .. } => "deployment.stage",
            TargetReport::DeploymentPaused { .. } => "deployment.paused",
            TargetReport::DeploymentContinued { .. } => "deployment.continued",
        }
    }
}

/// Kinds of events written for the audit trail and read by people: about no run
/// (publications, tokens, refused callers) or about one's consequences (promotions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    ReleasePublished,
    DeploymentUnpinned,
    TokenCreated,
    TokenRevoked,
    /// An API call with a wrong token.
    TokenRefused,
    /// How many more wrong-token calls from one source were refused past the limit.
    TokenRefusedSummary,
    /// A push webhook that was read and acted on.
    WebhookAccepted,
    /// A redelivery of a webhook already acted on.
    WebhookDuplicate,
    WebhookRefused,
    /// How many more refused webhooks from one source past the limit.
    WebhookRefusedSummary,
    /// A commit whose manifest does not validate: nothing deploys from it.
    SourceInvalid,
    ScheduleSkipped,
    /// A release verified in one environment started runs in those promoting from it.
    PromotionStarted,
    PromotionFailed,
}

impl AuditKind {
    pub const ALL: [AuditKind; 14] = [
        AuditKind::ReleasePublished,
        AuditKind::DeploymentUnpinned,
        AuditKind::TokenCreated,
        AuditKind::TokenRevoked,
        AuditKind::TokenRefused,
        AuditKind::TokenRefusedSummary,
        AuditKind::WebhookAccepted,
        AuditKind::WebhookDuplicate,
        AuditKind::WebhookRefused,
        AuditKind::WebhookRefusedSummary,
        AuditKind::SourceInvalid,
        AuditKind::ScheduleSkipped,
        AuditKind::PromotionStarted,
        AuditKind::PromotionFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ReleasePublished => "release.published",
            AuditKind::DeploymentUnpinned => "deployment.unpinned",
            AuditKind::TokenCreated => "token.created",
            AuditKind::TokenRevoked => "token.revoked",
            AuditKind::TokenRefused => "token.refused",
            AuditKind::TokenRefusedSummary => "token.refused.summary",
            AuditKind::WebhookAccepted => "webhook.accepted",
            AuditKind::WebhookDuplicate => "webhook.duplicate",
            AuditKind::WebhookRefused => "webhook.refused",
            AuditKind::WebhookRefusedSummary => "webhook.refused.summary",
            AuditKind::SourceInvalid => "source.invalid",
            AuditKind::ScheduleSkipped => "schedule.skipped",
            AuditKind::PromotionStarted => "promotion.started",
            AuditKind::PromotionFailed => "promotion.failed",
        }
    }

    pub fn parse(text: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl EventBody {
    /// The dotted name the event is stored under.
    pub fn kind(&self) -> Cow<'static, str> {
        match self {
            EventBody::RunCreated(_) => "run.created".into(),
            EventBody::RunResumed { .. } => "run.resumed".into(),
            EventBody::RunWaiting { .. } => "run.waiting".into(),
            EventBody::RunEntered { state, .. } => format!("run.{state}").into(),
            EventBody::StepStarted { .. } => "step.started".into(),
            EventBody::StepFinished(_) => "step.finished".into(),
            EventBody::ApprovalDecided(decided) if decided.decision == Decision::Approved => "approval.granted".into(),
            EventBody::ApprovalDecided(_) => "approval.refused".into(),
            EventBody::Target(report) => report.kind().into(),
            EventBody::Notification(outcome) if outcome.error.is_none() => "notification.sent".into(),
            EventBody::Notification(_) => "notification.failed".into(),
            EventBody::Measured(_) => "analysis.measured".into(),
            EventBody::Control(request) => format!("control.{}", request.action.as_str()).into(),
            EventBody::Awaiting(_) => "gate.awaiting".into(),
            EventBody::Audit { kind, .. } => kind.as_str().into(),
            EventBody::Other { kind, .. } => kind.clone().into(),
        }
    }

    /// The data it is stored with (`null` when there is none).
    pub fn data(&self) -> Value {
        let value = match self {
            EventBody::RunCreated(created) => serde_json::to_value(created),
            EventBody::RunResumed { attempt, state } => Ok(serde_json::json!({"attempt": attempt, "state": state})),
            EventBody::RunWaiting { runs } => Ok(serde_json::json!({"runs": runs})),
            EventBody::RunEntered { detail, .. } if detail.is_empty() => Ok(Value::Null),
            EventBody::RunEntered { detail, .. } => serde_json::to_value(detail),
            EventBody::StepStarted { step } => Ok(serde_json::json!({"step": step})),
            EventBody::StepFinished(finished) => serde_json::to_value(finished),
            EventBody::ApprovalDecided(decided) => serde_json::to_value(decided),
            EventBody::Notification(outcome) => serde_json::to_value(outcome),
            EventBody::Measured(measurement) => serde_json::to_value(measurement),
            EventBody::Control(request) => serde_json::to_value(request),
            EventBody::Awaiting(awaiting) => serde_json::to_value(awaiting),
            EventBody::Target(report) => serde_json::to_value(report)
                .map(|mut tagged| tagged.get_mut("data").map(Value::take).unwrap_or_default()),
            EventBody::Audit { data, .. } | EventBody::Other { data, .. } => Ok(data.clone()),
        };
        value.expect("event data serializes")
    }

    /// Reads a stored kind and its data back.
    pub fn read(kind: &str, data: &Value) -> EventBody {
        let typed = |body: Option<EventBody>| {
            body.unwrap_or_else(|| EventBody::Other { kind: kind.to_owned(), data: data.clone() })
        };
        typed(match kind {
            "run.created" => parse(data).map(EventBody::RunCreated),
            "run.resumed" => parse::<Resumed>(data)
                .map(|resumed| EventBody::RunResumed { attempt: resumed.attempt, state: resumed.state }),
            "run.waiting" => parse::<Waiting>(data).map(|waiting| EventBody::RunWaiting { runs: waiting.runs }),
            "step.started" => parse::<StepStarted>(data).map(|started| EventBody::StepStarted { step: started.step }),
            "step.finished" => parse(data).map(EventBody::StepFinished),
            "approval.granted" | "approval.refused" => parse(data).map(EventBody::ApprovalDecided),
            "notification.sent" | "notification.failed" => parse(data).map(EventBody::Notification),
            "analysis.measured" => parse(data).map(EventBody::Measured),
            "control.promote" | "control.abort" => parse(data).map(EventBody::Control),
            "gate.awaiting" => parse(data).map(EventBody::Awaiting),
            _ => {
                if let Some(state) = kind.strip_prefix("run.").and_then(RunState::parse) {
                    let detail = if data.is_null() { Some(TransitionDetail::default()) } else { parse(data) };
                    detail.map(|detail| EventBody::RunEntered { state, detail })
                } else if let Some(audit) = AuditKind::parse(kind) {
                    Some(EventBody::Audit { kind: audit, data: data.clone() })
                } else {
                    parse(&serde_json::json!({"kind": kind, "data": data})).map(EventBody::Target)
                }
            }
        })
    }
}

fn parse<T: DeserializeOwned>(data: &Value) -> Option<T> {
    T::deserialize(data).ok()
}

#[derive(Deserialize)]
struct Resumed {
    attempt: i64,
    state: RunState,
}

#[derive(Deserialize)]
struct Waiting {
    runs: Vec<i64>,
}

#[derive(Deserialize)]
struct StepStarted {
    step: String,
}

impl Event {
    /// What the event says, typed.
    pub fn body(&self) -> EventBody {
        EventBody::read(&self.kind, &self.data)
    }

    /// The log lines it carries: a failure's or a task's.
    pub fn logs(&self) -> Vec<String> {
        match self.body() {
            EventBody::RunEntered { detail, .. } => detail.logs,
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: EventBody) {
        let (kind, data) = (body.kind(), body.data());
        assert_eq!(EventBody::read(&kind, &data), body, "{kind} {data}");
    }

    #[test]
    fn every_body_reads_back_as_it_was_written() {
        round_trip(EventBody::RunCreated(RunCreated {
            release: 3,
            revision: "abc".into(),
            trigger: "push".into(),
            kind: RunKind::Deploy,
        }));
        round_trip(EventBody::RunResumed { attempt: 2, state: RunState::Deploying });
        round_trip(EventBody::RunWaiting { runs: vec![4, 5] });
        round_trip(EventBody::RunEntered { state: RunState::Deploying, detail: TransitionDetail::default() });
        round_trip(EventBody::RunEntered {
            state: RunState::RollingBack,
            detail: TransitionDetail {
                reason: Some("crashed".into()),
                logs: vec!["panic".into()],
                ..TransitionDetail::default()
            },
        });
        round_trip(EventBody::StepStarted { step: "deploy".into() });
        round_trip(EventBody::StepFinished(StepFinished {
            step: "plan".into(),
            outcome: StepOutcome::Succeeded,
            elapsed_ms: 12,
            detail: "1 change".into(),
        }));
        round_trip(EventBody::ApprovalDecided(ApprovalDecided {
            by: "ann".into(),
            decision: Decision::Rejected,
            comment: None,
        }));
        round_trip(EventBody::Target(TargetReport::ReplicaHealthy(ReplicaRef {
            name: "web-1".into(),
            slot: 0,
            revision: "abc".into(),
            took_ms: None,
        })));
        round_trip(EventBody::Target(TargetReport::VerifyPassed { what: "web".into(), watched_ms: 10_000 }));
        round_trip(EventBody::Target(TargetReport::TrafficShifted {
            revision: "abc".into(),
            weight: 20,
            replicas: 2,
            others: 2,
        }));
        round_trip(EventBody::Measured(Measurement {
            step: 1,
            metric: "prometheus".into(),
            passed: false,
            value: Some(1.5),
            detail: "max(errors) = 1.5, above 0".into(),
        }));
        round_trip(EventBody::Control(ControlRequest { action: ControlAction::Abort, by: "ann".into() }));
        round_trip(EventBody::Audit { kind: AuditKind::TokenRefused, data: serde_json::json!({"source": "1.2.3.4"}) });
    }

    #[test]
    fn kinds_are_the_dotted_names_readers_and_old_rows_know() {
        let entered = EventBody::RunEntered { state: RunState::AwaitingApproval, detail: TransitionDetail::default() };
        assert_eq!(entered.kind(), "run.awaiting_approval");
        assert_eq!(entered.data(), Value::Null);
        let report = EventBody::Target(TargetReport::RolloutSettling { window_ms: 5 });
        assert_eq!((report.kind().as_ref(), report.data()), ("rollout.settling", serde_json::json!({"window_ms": 5})));
    }

    #[test]
    fn unknown_kinds_and_data_that_does_not_fit_read_as_written() {
        let future = EventBody::read("canary.step", &serde_json::json!({"weight": 20}));
        assert_eq!(future, EventBody::Other { kind: "canary.step".into(), data: serde_json::json!({"weight": 20}) });
        let odd = EventBody::read("step.finished", &serde_json::json!({"step": 3}));
        assert!(matches!(odd, EventBody::Other { .. }), "{odd:?}");
    }
}
