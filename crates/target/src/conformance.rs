//! The behaviour every target must show, as async functions each target's tests call
//! against the real thing: the Docker target against a Docker engine, the ECS target
//! against moto with launchway's rollout model (moto runs no tasks). Like the store's
//! conformance, the engine relies on exactly this and nothing target-specific.
//!
//! Each function wants a fresh [`Subject`]: an app running neither of its two desired
//! states yet (on Docker nothing runs; ECS updates only services that exist, so there
//! the service runs something else).

use std::sync::Mutex;

use async_trait::async_trait;
use launchway_manifest::AppSpec;

use crate::planning::PlanRequest;
use crate::{AppPlan, AppRef, PlanAction, Progress, Rollout, Target, TargetEvent, TargetReport};

/// An app on a target, and two desired states of it that differ.
pub struct Subject<'a> {
    pub target: &'a dyn Target,
    pub env: &'a str,
    pub app: &'a str,
    pub v1: &'a AppSpec,
    pub v2: &'a AppSpec,
}

impl Subject<'_> {
    /// What the target says deploying `spec` would do, from what it observes now.
    async fn plan(&self, spec: &AppSpec) -> AppPlan {
        let live = self
            .target
            .observe(self.env, &[AppRef { app: self.app, spec }])
            .await
            .unwrap_or_else(|error| panic!("{} could not observe {}: {error}", self.target.describe(), self.app));
        self.target.plan(PlanRequest {
            app: self.app,
            env: self.env,
            desired: spec,
            live: live.apps.get(self.app),
            current: None,
        })
    }

    fn rollout<'s>(&'s self, spec: &'s AppSpec, revision: &'s str) -> Rollout<'s> {
        Rollout { app: self.app, env: self.env, release_id: 1, revision, spec }
    }
}

/// Collects what a target reports.
#[derive(Default)]
pub struct Reports(Mutex<Vec<TargetEvent>>);

impl Reports {
    pub fn kinds(&self) -> Vec<&'static str> {
        self.0.lock().expect("not poisoned").iter().map(|event| event.report.kind()).collect()
    }

    /// Reports of something changed on the target (started, stopped, registered,
    /// updated), as opposed to something looked at.
    pub fn actions(&self) -> Vec<&'static str> {
        let acted = |report: &TargetReport| {
            matches!(
                report,
                TargetReport::ImagePulling { .. }
                    | TargetReport::ReplicaStarted(_)
                    | TargetReport::ReplicaReplacing(_)
                    | TargetReport::ReplicaStopped(_)
                    | TargetReport::TaskDefinitionRegistered { .. }
                    | TargetReport::ServiceUpdated { .. }
                    | TargetReport::RuleUpdated { .. }
                    | TargetReport::ScheduleUpdated { .. }
            )
        };
        let reports = self.0.lock().expect("not poisoned");
        reports.iter().filter(|event| acted(&event.report)).map(|event| event.report.kind()).collect()
    }
}

#[async_trait]
impl Progress for Reports {
    async fn report(&self, event: TargetEvent) {
        self.0.lock().expect("not poisoned").push(event);
    }
}

/// A rollout brings the app to the revision: afterwards the target plans no change for
/// it, verifies it, and plans a different desired state as an update it then rolls out.
/// Verification refuses a revision that does not run.
pub async fn rollouts_are_observed_planned_and_verified(subject: &Subject<'_>) {
    let (v1, v2) = (subject.v1.revision().0, subject.v2.revision().0);
    let before = subject.plan(subject.v1).await;
    assert!(before.would_change(), "v1 does not run yet: {before:?}");

    subject.target.rollout(subject.rollout(subject.v1, &v1), &Reports::default()).await.expect("v1 rolls out");
    let planned = subject.plan(subject.v1).await;
    assert_eq!(planned.action, PlanAction::NoChange, "v1 runs as desired: {planned:?}");
    subject.target.verify(subject.rollout(subject.v1, &v1), &Reports::default()).await.expect("v1 verifies");

    let update = subject.plan(subject.v2).await;
    assert_eq!(update.action, PlanAction::Update, "v2 differs from what runs: {update:?}");
    assert!(!update.changes.is_empty(), "an update names what changes: {update:?}");
    subject.target.rollout(subject.rollout(subject.v2, &v2), &Reports::default()).await.expect("v2 rolls out");
    let planned = subject.plan(subject.v2).await;
    assert_eq!(planned.action, PlanAction::NoChange, "v2 runs as desired: {planned:?}");
    subject.target.verify(subject.rollout(subject.v2, &v2), &Reports::default()).await.expect("v2 verifies");

    let refused = subject.target.verify(subject.rollout(subject.v1, &v1), &Reports::default()).await;
    assert!(refused.is_err(), "v1 no longer runs, so it cannot verify");
}

/// Rolling out what already runs changes nothing on the target (what makes a run
/// resumed after a crash safe).
pub async fn rolling_out_what_runs_changes_nothing(subject: &Subject<'_>) {
    let v1 = subject.v1.revision().0;
    subject.target.rollout(subject.rollout(subject.v1, &v1), &Reports::default()).await.expect("v1 rolls out");
    let again = Reports::default();
    subject.target.rollout(subject.rollout(subject.v1, &v1), &again).await.expect("v1 rolls out again");
    assert!(again.actions().is_empty(), "nothing changed, but the target reported {:?}", again.actions());
    let planned = subject.plan(subject.v1).await;
    assert_eq!(planned.action, PlanAction::NoChange, "{planned:?}");
}

/// Retiring a revision (what a failed first deploy, or one with nothing to roll back
/// to, asks for) leaves it no longer running.
pub async fn retiring_a_revision_stops_it(subject: &Subject<'_>) {
    let (v1, v2) = (subject.v1.revision().0, subject.v2.revision().0);
    subject.target.rollout(subject.rollout(subject.v1, &v1), &Reports::default()).await.expect("v1 rolls out");
    subject.target.rollout(subject.rollout(subject.v2, &v2), &Reports::default()).await.expect("v2 rolls out");
    subject.target.retire(subject.rollout(subject.v2, &v2), &Reports::default()).await.expect("v2 retires");
    let planned = subject.plan(subject.v2).await;
    assert_ne!(planned.action, PlanAction::NoChange, "v2 no longer runs: {planned:?}");
}
