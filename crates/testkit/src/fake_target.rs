//! One fake [`Target`] for the engine's and the server's tests: what it "runs" is a map
//! app → revision in memory, it records every call, and each test scripts its answers
//! (a refused check, revisions that fail, rollouts held until the test lets them go).
//!
//! It plans as the Docker target does ([`planning::native_plan`]), so decisions made
//! from its plans are the ones a real run makes; what a real target does to containers
//! is covered by the target conformance tests and end to end against Docker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use launchway_manifest::AppSpec;
use launchway_target::planning::{self, PlanRequest};
use launchway_target::{
    Advance, AppPlan, AppRef, LiveApp, LiveEnvironment, LiveReplica, Progress, ReplicaState, Rollout, RolloutError,
    Target, TargetError, TaskExecution, TaskOutcome,
};
use tokio::sync::Notify;

#[derive(Default)]
pub struct FakeTarget {
    calls: Mutex<Vec<String>>,
    live: Mutex<BTreeMap<String, String>>,
    refuse_check: Mutex<Option<String>>,
    failing_revisions: Mutex<Vec<String>>,
    hold_rollouts: Mutex<Option<Arc<Notify>>>,
    observed: Mutex<Vec<Vec<String>>>,
    executions: Mutex<Vec<i64>>,
    endpoints: Mutex<Vec<String>>,
    /// (revision, step) → looks left before `advance` reaches it.
    moving_looks: Mutex<BTreeMap<(String, usize), u32>>,
    looks_per_step: Mutex<u32>,
}

impl FakeTarget {
    /// Every call so far, as `check web`, `rollout web <revision>`, `shift web
    /// <revision> <weight or gate N>`, `verify …`, `retire …`, `run_task <run id>`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The apps each `observe` asked about.
    pub fn observed(&self) -> Vec<Vec<String>> {
        self.observed.lock().unwrap().clone()
    }

    /// The runs whose task it ran.
    pub fn executions(&self) -> Vec<i64> {
        self.executions.lock().unwrap().clone()
    }

    /// `check` refuses every app from now on, with this reason.
    pub fn refuse_checks(&self, reason: &str) {
        *self.refuse_check.lock().unwrap() = Some(reason.to_owned());
    }

    /// Rollouts of this revision fail their health check (after starting nothing).
    pub fn fail_revision(&self, revision: &str) {
        self.failing_revisions.lock().unwrap().push(revision.to_owned());
    }

    /// Rollouts wait until the returned handle is notified: lets a test act while a
    /// step is under way.
    pub fn hold_rollouts(&self) -> Arc<Notify> {
        let hold = Arc::new(Notify::new());
        *self.hold_rollouts.lock().unwrap() = Some(hold.clone());
        hold
    }

    /// `advance` answers `Moving` this many times at each step before reaching it, as
    /// an ECS deployment does between its gates.
    pub fn set_looks_per_step(&self, looks: u32) {
        *self.looks_per_step.lock().unwrap() = looks;
    }

    /// Where analyses find the new release's replicas (`127.0.0.1:port`).
    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        *self.endpoints.lock().unwrap() = endpoints;
    }

    /// The revision it runs for `app`, if any.
    pub fn running(&self, app: &str) -> Option<String> {
        self.live.lock().unwrap().get(app).cloned()
    }

    fn call(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Target for FakeTarget {
    fn first_release_skips_steps(&self, spec: &AppSpec) -> bool {
        // As each real target says: an ECS service's deployment pauses at its gates even
        // the first time.
        !matches!(spec, AppSpec::EcsService(_))
    }

    fn describe(&self) -> String {
        "a fake target".into()
    }

    fn plan(&self, request: PlanRequest<'_>) -> AppPlan {
        planning::native_plan(request)
    }

    async fn check(&self, app: &str, _env: &str, _spec: &AppSpec) -> Result<Vec<String>, TargetError> {
        self.call(format!("check {app}"));
        match self.refuse_check.lock().unwrap().clone() {
            Some(reason) => Err(TargetError::Invalid(reason)),
            None => Ok(Vec::new()),
        }
    }

    async fn observe(&self, _env: &str, apps: &[AppRef<'_>]) -> Result<LiveEnvironment, TargetError> {
        self.observed.lock().unwrap().push(apps.iter().map(|app| app.app.to_owned()).collect());
        let live = self.live.lock().unwrap().clone();
        let containers = |app: &str| match apps.iter().find(|wanted| wanted.app == app).map(|wanted| wanted.spec) {
            Some(AppSpec::Service(service)) => service.containers.clone(),
            _ => Vec::new(),
        };
        Ok(LiveEnvironment {
            apps: live
                .into_iter()
                .map(|(app, revision)| {
                    let replicas = vec![LiveReplica {
                        id: format!("{app}-{revision}"),
                        name: app.clone(),
                        revision,
                        release_id: None,
                        slot: 0,
                        state: ReplicaState::Running,
                        containers: containers(&app),
                        endpoints: Vec::new(),
                        restarts: 0,
                    }];
                    (app, LiveApp { replicas, definition: None, entry_point: None })
                })
                .collect(),
        })
    }

    async fn rollout(&self, rollout: Rollout<'_>, _progress: &dyn Progress) -> Result<(), RolloutError> {
        self.call(format!("rollout {} {}", rollout.app, rollout.revision));
        let hold = self.hold_rollouts.lock().unwrap().clone();
        if let Some(hold) = hold {
            hold.notified().await;
        }
        if self.failing_revisions.lock().unwrap().iter().any(|failing| failing == rollout.revision) {
            return Err(RolloutError::Unhealthy {
                reason: format!("replica of {} failed its health check", rollout.revision),
                logs: vec!["boom".into()],
            });
        }
        self.live.lock().unwrap().insert(rollout.app.to_owned(), rollout.revision.to_owned());
        Ok(())
    }

    async fn advance(
        &self,
        rollout: Rollout<'_>,
        step: usize,
        _progress: &dyn Progress,
    ) -> Result<Advance, RolloutError> {
        // Like ECS between two gates: still moving for the first looks at a step.
        {
            let mut moving = self.moving_looks.lock().unwrap();
            let left =
                moving.entry((rollout.revision.to_owned(), step)).or_insert(*self.looks_per_step.lock().unwrap());
            if *left > 0 {
                *left -= 1;
                return Ok(Advance::Moving);
            }
        }
        let what = match rollout.spec {
            AppSpec::Service(service) => service.strategy.traffic_steps()[step].weight.to_string(),
            _ => format!("gate {}", step + 1),
        };
        self.call(format!("shift {} {} {what}", rollout.app, rollout.revision));
        Ok(Advance::Reached)
    }

    async fn analysis_endpoints(&self, _rollout: Rollout<'_>, _port: Option<u16>) -> Result<Vec<String>, TargetError> {
        Ok(self.endpoints.lock().unwrap().clone())
    }

    async fn verify(&self, rollout: Rollout<'_>, _progress: &dyn Progress) -> Result<(), RolloutError> {
        self.call(format!("verify {} {}", rollout.app, rollout.revision));
        Ok(())
    }

    async fn run_task(&self, task: TaskExecution<'_>, _progress: &dyn Progress) -> Result<TaskOutcome, RolloutError> {
        self.call(format!("run_task {}", task.run_id));
        self.executions.lock().unwrap().push(task.run_id);
        Ok(TaskOutcome { exit_code: 0, elapsed: Duration::from_millis(5), logs: vec!["done".to_owned()] })
    }

    async fn retire(&self, rollout: Rollout<'_>, _progress: &dyn Progress) -> Result<(), TargetError> {
        self.call(format!("retire {} {}", rollout.app, rollout.revision));
        self.live.lock().unwrap().remove(rollout.app);
        Ok(())
    }
}
