//! Driving one run to its end.
//!
//! The shape is kube-rs's reconcile: each state has one idempotent step, which reads
//! what it needs (the run, its releases, live state) and returns the next transition;
//! the transition is persisted, then the loop runs the next step. The lease is renewed
//! alongside; if it is lost, the step is abandoned and the new holder carries on.

use std::sync::Arc;

use async_trait::async_trait;
use launchway_manifest::AppSpec;
use launchway_store::{
    ApprovalRequest, Event, EventBody, EventFilter, Lease, NewEvent, PlanAction, Release, Run, RunId, RunKind,
    RunState, StepFinished, StepOutcome, StoreError, Transition, TransitionDetail,
};
use launchway_target::{AppRef, Progress, Rollout, RolloutError, Target, TargetEvent, TaskExecution, describe};
use tracing::Instrument;

use crate::plan::Observed;
use crate::step::{Next, NextTrafficStep};
use crate::{Engine, EngineError, Result};

/// What a pending run does about the runs it waits for.
pub(crate) enum DependenciesGate {
    Go,
    /// Why the run fails.
    Stop(String),
    Wait(String),
    /// A run it waits for, directly or through others, waits for an approval: nobody
    /// drives this one until that is decided.
    Park(ParkedBehind),
}

/// Why a pending run is parked: the approval it waits for, somewhere down its chain of
/// dependencies.
#[derive(Debug, Clone)]
pub(crate) struct ParkedBehind {
    /// "api's run 4, which waits for approval", or through others: "api's run 5, which
    /// waits for migrate's run 4, which waits for approval".
    pub(crate) what: String,
    /// The run to approve (or reject) for this one to move.
    pub(crate) approval_run: RunId,
}

/// What claiming a run gives: its lease, or the run already finished by someone else.
pub(crate) enum Claim {
    Held(Lease),
    Finished(Box<Run>),
}

impl Engine {
    /// Drives a run until it finishes, and returns it finished.
    ///
    /// # Errors
    /// [`EngineError::Busy`] when a live process holds the run; [`EngineError::Interrupted`]
    /// when asked to stop (the run resumes where it stopped); store errors, and
    /// [`StoreError::LeaseLost`] when another process took the run over.
    pub async fn drive(&self, run_id: i64) -> Result<Run> {
        let lease = match self.claim(run_id).await? {
            Claim::Held(lease) => lease,
            // Another process drove it to the end between our decision and our claim
            // (two deploys of the same change started together): its outcome is ours.
            Claim::Finished(run) => return Ok(*run),
        };
        let run = self.inner.store.run(run_id).await?;
        let span = tracing::info_span!("run", run_id, app = %run.app, env = %run.env);
        let result = tokio::select! {
            result = self.drive_claimed(&lease).instrument(span) => result,
            lost = self.keep_lease(&lease) => Err(lost),
        };
        match &result {
            Ok(_) | Err(EngineError::Store(StoreError::LeaseLost { .. })) => {}
            // Asked to stop (Ctrl-C, shutdown): expected, and said by whoever asked.
            Err(error) if matches!(error, EngineError::Interrupted { .. }) || self.stopping() => {
                tracing::info!(run_id, %error, "the run stopped, as asked; it can be resumed");
                self.inner.store.release_lease(&lease).await?;
            }
            // Failed mid-step: the run stays where it was, for any process to resume at
            // once rather than after the lease expires.
            Err(error) => {
                tracing::warn!(run_id, %error, "the run stopped before finishing; it can be resumed");
                self.inner.store.release_lease(&lease).await?;
            }
        }
        result
    }

    pub(crate) async fn claim(&self, run_id: i64) -> Result<Claim> {
        let store = &self.inner.store;
        let run = store.run(run_id).await?;
        let ttl = self.inner.config.lease_ttl.as_millis() as i64;
        let dead_holder = run.lease_owner.as_deref().filter(|holder| self.inner.owner.sees_dead(holder));
        match store.claim_run(run_id, &self.inner.owner.id, ttl, dead_holder).await? {
            Some(lease) => {
                if lease.attempt > 1 {
                    let previous = match (&run.lease_owner, dead_holder) {
                        (Some(holder), Some(_)) => format!(" (its previous driver, {holder}, is gone)"),
                        (Some(holder), None) if holder != &self.inner.owner.id => {
                            format!(" (the lease of {holder} expired)")
                        }
                        _ => String::new(),
                    };
                    self.record(NewEvent::for_run(
                        &run,
                        EventBody::RunResumed { attempt: lease.attempt, state: run.state },
                        format!("resuming run {run_id} at {}{previous}", run.state),
                    ))
                    .await?;
                }
                Ok(Claim::Held(lease))
            }
            None => {
                let run = store.run(run_id).await?;
                if run.state.is_terminal() {
                    return Ok(Claim::Finished(Box::new(run)));
                }
                Err(EngineError::Busy {
                    run_id,
                    owner: run.lease_owner.unwrap_or_default(),
                    expires_in_ms: run.lease_expires_at.map_or(0, |at| at - self.now_ms()),
                })
            }
        }
    }

    /// Renews the lease until it cannot; returns why.
    async fn keep_lease(&self, lease: &Lease) -> EngineError {
        let ttl = self.inner.config.lease_ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            if let Err(error) = self.inner.store.renew_lease(lease, ttl.as_millis() as i64).await {
                // The run's own last transition (or its parking for an approval) gives
                // the lease up: a renewal at that moment finds it gone, but nobody took
                // it, and the driver is about to return. Only a lease someone else holds
                // is lost.
                let released = self
                    .inner
                    .store
                    .run(lease.run_id)
                    .await
                    .is_ok_and(|run| run.lease_owner.is_none() || run.state.is_terminal());
                if released {
                    std::future::pending::<()>().await;
                }
                return error.into();
            }
        }
    }

    async fn drive_claimed(&self, lease: &Lease) -> Result<Run> {
        let mut waiting_said = false;
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            let run = self.inner.store.run(lease.run_id).await?;
            if run.state.is_terminal() {
                return Ok(run);
            }
            if self.stopping() {
                return Err(EngineError::Interrupted { run_id: run.id });
            }
            let next = match run.state {
                RunState::Pending => match self.dependencies_gate(&run).await? {
                    DependenciesGate::Go => Next::to(RunState::Validating, "validating"),
                    DependenciesGate::Stop(reason) => {
                        Next::to(RunState::Failed, format!("{reason}; nothing was changed")).because(reason)
                    }
                    DependenciesGate::Wait(what) => {
                        if !waiting_said {
                            waiting_said = true;
                            self.say_waiting(&run, &what).await?;
                        }
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = self.inner.config.stop.cancelled() => {}
                        }
                        wait = (wait * 2).min(std::time::Duration::from_secs(1));
                        continue;
                    }
                    DependenciesGate::Park(behind) => {
                        // Nobody should hold a run for as long as an approval may take:
                        // whoever resumes runs (the server's sweep, the next deploy)
                        // starts it once the approval is decided.
                        self.say_waiting(&run, &behind.what).await?;
                        self.inner.store.release_lease(lease).await?;
                        return Ok(self.inner.store.run(run.id).await?);
                    }
                },
                RunState::Validating => self.step(lease, &run, "validate", self.validate(&run)).await?,
                RunState::Building => self.step(lease, &run, "build", self.build_step(&run)).await?,
                RunState::Planning => self.step(lease, &run, "plan", self.plan_step(&run)).await?,
                RunState::AwaitingApproval => match self.approval_gate(&run).await? {
                    Some(next) => next,
                    None => {
                        // Parked: nobody drives it until a decision comes (or it expires).
                        self.inner.store.release_lease(lease).await?;
                        return Ok(self.inner.store.run(run.id).await?);
                    }
                },
                RunState::Deploying => self.step(lease, &run, "deploy", self.deploy(&run)).await?,
                RunState::Progressing => match self.next_traffic_step(&run).await? {
                    NextTrafficStep::Hold(index, name) => {
                        self.step(lease, &run, &name, self.traffic_step(&run, index)).await?
                    }
                    step @ NextTrafficStep::Promote => {
                        self.step(lease, &run, &step.name(), self.promote_step(&run)).await?
                    }
                },
                RunState::Verifying => self.step(lease, &run, "verify", self.verify(&run)).await?,
                RunState::RollingBack => self.step(lease, &run, "rollback", self.roll_back(&run)).await?,
                RunState::Succeeded | RunState::RolledBack | RunState::Failed | RunState::Rejected => {
                    unreachable!("checked above")
                }
            };
            let mut detail = next.detail;
            detail.reason = detail.reason.or_else(|| next.reason.clone());
            let event = NewEvent::for_run(&run, EventBody::RunEntered { state: next.to, detail }, next.message);
            let (_, event) = self
                .inner
                .store
                .transition(
                    lease,
                    Transition {
                        to: next.to,
                        reason: next.reason,
                        plan: next.plan,
                        event,
                        deployment: next.deployment,
                        approval: next.approval,
                        release: next.release,
                    },
                )
                .await?;
            self.announce(&event);
        }
    }

    /// Whether the runs of the apps this one depends on let it start: all succeeded
    /// (go), one did not (the run fails, having changed nothing), some still going (wait),
    /// or one waits for an approval, itself or through the runs it waits for (park).
    pub(crate) async fn dependencies_gate(&self, run: &Run) -> Result<DependenciesGate> {
        let mut going = Vec::new();
        for id in &run.waits_for {
            let dependency = self.inner.store.run(*id).await?;
            let named = format!("{}'s run {}", dependency.app, dependency.id);
            match dependency.state {
                RunState::Succeeded => {}
                RunState::Failed | RunState::RolledBack | RunState::Rejected => {
                    let reason = format!(
                        "not deployed: {} depends on {}, whose run {} {}{}",
                        run.app,
                        dependency.app,
                        dependency.id,
                        match dependency.state {
                            RunState::RolledBack => "was rolled back",
                            RunState::Rejected => "was rejected",
                            _ => "failed",
                        },
                        dependency.reason.as_deref().map(|why| format!(" ({why})")).unwrap_or_default()
                    );
                    return Ok(DependenciesGate::Stop(reason));
                }
                RunState::AwaitingApproval => {
                    return Ok(DependenciesGate::Park(ParkedBehind {
                        what: format!("{named}, which waits for approval"),
                        approval_run: dependency.id,
                    }));
                }
                RunState::Pending => {
                    // A dependency parked behind an approval further down the chain
                    // parks this run too: waiting for it would wait for a person. (Runs
                    // wait only for runs created before them, so this ends.)
                    if let DependenciesGate::Park(behind) = Box::pin(self.dependencies_gate(&dependency)).await? {
                        return Ok(DependenciesGate::Park(ParkedBehind {
                            what: format!("{named}, which waits for {}", behind.what),
                            approval_run: behind.approval_run,
                        }));
                    }
                    going.push(format!("{named} ({})", dependency.state));
                }
                state => going.push(format!("{named} ({state})")),
            }
        }
        Ok(match going.is_empty() {
            true => DependenciesGate::Go,
            false => DependenciesGate::Wait(going.join(", ")),
        })
    }

    /// What a run waits for when nobody should drive it until a person decides: its own
    /// approval, or (pending) one down its chain of dependencies. `None`: it can move.
    pub(crate) async fn parked_behind(&self, run: &Run) -> Result<Option<ParkedBehind>> {
        match run.state {
            RunState::AwaitingApproval => {
                // Decided, or out of time: driving it now applies that.
                let due = self.inner.store.approval(run.id).await?.is_some_and(|approval| {
                    approval.decision.is_some() || approval.expires_at.is_some_and(|expires| expires <= self.now_ms())
                });
                Ok((!due).then(|| ParkedBehind { what: "approval".to_owned(), approval_run: run.id }))
            }
            RunState::Pending if !run.waits_for.is_empty() => Ok(match self.dependencies_gate(run).await? {
                DependenciesGate::Park(behind) => Some(behind),
                _ => None,
            }),
            _ => Ok(None),
        }
    }

    /// Records what a pending run waits for, unless its last event says so already (a
    /// parked run is looked at again by every sweep of the server).
    async fn say_waiting(&self, run: &Run, what: &str) -> Result<()> {
        let message = format!("waits for {what}");
        let filter = EventFilter { run_id: Some(run.id), last: Some(1), ..EventFilter::default() };
        let events = self.inner.store.events(&filter).await?;
        let said = |last: &&Event| matches!(last.body(), EventBody::RunWaiting { .. }) && last.message == message;
        if events.last().is_some_and(|last| said(&last)) {
            return Ok(());
        }
        let body = EventBody::RunWaiting { runs: run.waits_for.clone() };
        self.record(NewEvent::for_run(run, body, message)).await?;
        Ok(())
    }

    /// Runs one step with its start and finish recorded.
    async fn step(
        &self,
        lease: &Lease,
        run: &Run,
        name: &str,
        body: impl Future<Output = Result<Next>>,
    ) -> Result<Next> {
        let store = &self.inner.store;
        tracing::info!(step = name, "step started");
        let started =
            NewEvent::for_run(run, EventBody::StepStarted { step: name.to_owned() }, format!("{name} started"));
        self.announce(&store.start_step(lease, name, started).await?);
        let started = std::time::Instant::now();
        let next = body.await;
        let (outcome, detail) = match &next {
            Ok(next) if matches!(next.to, RunState::Failed | RunState::RollingBack) => {
                (StepOutcome::Failed, next.reason.clone().unwrap_or_else(|| next.message.clone()))
            }
            Ok(next) => (StepOutcome::Succeeded, next.message.clone()),
            Err(error) => (StepOutcome::Failed, error.to_string()),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(step = name, outcome = outcome.as_str(), elapsed_ms, "step finished");
        let message = format!("{name} {} in {elapsed_ms} ms: {detail}", outcome.as_str());
        let finished = StepFinished { step: name.to_owned(), outcome, elapsed_ms, detail: detail.clone() };
        let finished = NewEvent::for_run(run, EventBody::StepFinished(finished), message);
        self.announce(&store.finish_step(lease, name, outcome, Some(detail), finished).await?);
        next
    }

    pub(crate) async fn release_and_target(&self, release_id: i64) -> Result<(Release, Arc<dyn Target>)> {
        let release = self.inner.store.release(release_id).await?;
        let target = self.target(&release.target).await?;
        Ok((release, target))
    }

    /// Nothing on the target changes here: the release must make sense and be runnable.
    async fn validate(&self, run: &Run) -> Result<Next> {
        let (release, target) = match self.release_and_target(run.release_id).await {
            Ok(found) => found,
            Err(EngineError::Target(error)) => {
                let reason = describe(&error);
                return Ok(Next::to(RunState::Failed, format!("validation failed: {reason}")).because(reason));
            }
            Err(other) => return Err(other),
        };
        if let Some(build) = &release.build {
            // The target checks images once they are built.
            let containers: Vec<&str> = build.images.keys().map(String::as_str).collect();
            return Ok(Next::to(RunState::Building, format!("building {}", containers.join(", "))));
        }
        match target.check(&run.app, &run.env, &release.spec).await {
            Ok(notes) => {
                let mut message =
                    format!("release {} (revision {}) can run on {}", release.id, release.revision, target.describe());
                for note in notes {
                    message.push_str(&format!("; {note}"));
                }
                Ok(Next::to(RunState::Planning, message))
            }
            Err(error) => {
                let reason = describe(&error);
                Ok(Next::to(RunState::Failed, format!("validation failed, nothing was changed: {reason}"))
                    .because(reason))
            }
        }
    }

    async fn plan_step(&self, run: &Run) -> Result<Next> {
        if run.kind == RunKind::Scheduled {
            // One execution of the current release: nothing to compare, nothing to approve.
            return Ok(Next::to(RunState::Deploying, "running the scheduled task"));
        }
        let (release, target) = self.release_and_target(run.release_id).await?;
        let live = target.observe(&run.env, &[AppRef { app: &run.app, spec: &release.spec }]).await?;
        let record = self.inner.store.deployment(&run.app, &run.env).await?;
        let current = self.release_if_any(record.as_ref().map(|record| record.current_release_id)).await?;
        let good = self.release_if_any(record.as_ref().and_then(|record| record.good_release_id)).await?;
        let verified_before = good.is_some_and(|good| good.revision == release.revision);
        let observed = Observed { target, live };
        let plan = observed.plan(&run.app, &run.env, &release.spec, current.as_ref());
        let mut next = if plan.is_no_op() && verified_before {
            Next::to(RunState::Succeeded, "nothing to change: the target already runs this release")
                .because(crate::dora::NO_OP_REASON)
                .deploying(release.id, true)
        } else if plan.is_no_op() {
            // What runs matches, but launchway never watched it settle: it becomes the
            // last good release only once verification has.
            Next::to(RunState::Verifying, "nothing to change: the target already runs this release; verifying it")
        } else if let Some(policy) = run.approval_policy.filter(|_| run.kind == RunKind::Deploy) {
            // Rollbacks are someone's explicit request and do not wait.
            let expires_at = policy.expires.map(|expires| self.now_ms() + expires.as_millis() as i64);
            let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
            let mut next = Next::to(RunState::AwaitingApproval, format!("waiting for approval: {}", plan.summary))
                .because("waiting for approval")
                .with_detail(TransitionDetail { changes, expires_at, ..TransitionDetail::default() });
            next.approval = Some(ApprovalRequest { expires_at });
            next
        } else {
            let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
            Next::to(RunState::Deploying, plan.summary.clone())
                .with_detail(TransitionDetail { changes, ..TransitionDetail::default() })
        };
        next.plan = Some(plan);
        Ok(next)
    }

    async fn deploy(&self, run: &Run) -> Result<Next> {
        let (release, target) = self.release_and_target(run.release_id).await?;
        if run.kind == RunKind::Scheduled || release.spec.runs_on_deploy() {
            return self.execute_task(run, &release, target.as_ref()).await;
        }
        if recorded_only(&release.spec) {
            // Docker runs scheduled tasks from `launchway server`, which reads the
            // current release when each run is due: recording it is the deploy.
            return Ok(Next::to(RunState::Verifying, "the task definition takes effect at its next scheduled run"));
        }
        let progress = RunProgress { engine: self, run };
        if let Err(error) = target.rollout(rollout(run, &release), &progress).await {
            return self.after_failure(run, &release, target.as_ref(), error).await;
        }
        let Some((strategy, steps)) = release.spec.progressive() else {
            return Ok(Next::to(RunState::Verifying, rolled_out(&release)));
        };
        // A first release has no traffic to take from anyone (Argo Rollouts skips its
        // steps too): it takes everything at once, and verification watches it. Not on
        // ECS, whose service served something before launchway's first release, and
        // whose deployment pauses at its gates either way.
        let gated = run.previous_release_id.is_some() || matches!(release.spec, AppSpec::EcsService(_));
        if run.kind == RunKind::Deploy && gated && !steps.is_empty() {
            let count = format!("{} step{}", steps.len(), plural(steps.len() as u32));
            let what = match &release.spec {
                AppSpec::EcsService(_) => format!(
                    "revision {} is being deployed by ECS ({}), pausing at {count} where launchway decides",
                    release.revision,
                    strategy.name()
                ),
                _ => format!(
                    "revision {} runs beside the release that serves; moving traffic to it in {count} ({})",
                    release.revision,
                    strategy.name()
                ),
            };
            return Ok(Next::to(
                RunState::Progressing,
                format!("{what}: `launchway promote {}` ends a pause, `launchway abort {}` rolls back", run.id, run.id),
            ));
        }
        // Rollbacks and repairs are asked for now: the set that runs takes everything.
        // So does a first release.
        match target.promote(rollout(run, &release), &progress).await {
            Ok(()) => Ok(Next::to(RunState::Verifying, rolled_out(&release))),
            Err(error) => self.after_failure(run, &release, target.as_ref(), error).await,
        }
    }

    async fn verify(&self, run: &Run) -> Result<Next> {
        let (release, target) = self.release_and_target(run.release_id).await?;
        if recorded_only(&release.spec) {
            return Ok(Next::to(RunState::Succeeded, format!("task definition {} recorded", release.revision))
                .because("recorded")
                .deploying(release.id, true));
        }
        let progress = RunProgress { engine: self, run };
        match target.verify(rollout(run, &release), &progress).await {
            Ok(()) if plan_was_no_op(run) => {
                Ok(Next::to(RunState::Succeeded, format!("verified release {} as it runs", release.id))
                    .because(crate::dora::NO_OP_REASON)
                    .deploying(release.id, true))
            }
            Ok(()) => {
                let what = match run.kind {
                    RunKind::Deploy => "deployed",
                    RunKind::Rollback => "rolled back to",
                    RunKind::Repair => "repaired",
                    RunKind::Scheduled => "ran",
                };
                Ok(Next::to(
                    RunState::Succeeded,
                    format!("{what} release {} (revision {})", release.id, release.revision),
                )
                .because(format!("{what} revision {}", release.revision))
                .deploying(release.id, true))
            }
            Err(error) if plan_was_no_op(run) => {
                // launchway changed nothing, so it has nothing to undo: what runs was
                // there before this run, and stays for someone to look at.
                let reason = describe(&error);
                Ok(Next::to(
                    RunState::Failed,
                    format!(
                        "what runs is not healthy ({reason}); launchway changed nothing, so nothing was rolled back"
                    ),
                )
                .because(reason)
                .with_logs(error.logs()))
            }
            Err(error) => self.after_failure(run, &release, target.as_ref(), error).await,
        }
    }

    /// One execution of a task: it ends the run, succeeded or failed; nothing is rolled
    /// back (a scheduled task's definition did not change; what a task run on deploy,
    /// such as a migration, changed is its own to undo). A task run on deploy that exits
    /// 0 makes its release the deployed one, verified: its exit was watched.
    async fn execute_task(&self, run: &Run, release: &Release, target: &dyn Target) -> Result<Next> {
        if !matches!(release.spec, AppSpec::Task(_) | AppSpec::EcsTask(_)) {
            return Ok(Next::to(RunState::Failed, "only tasks can be run once").because("not a task"));
        }
        let execution = TaskExecution {
            app: &run.app,
            env: &run.env,
            run_id: run.id,
            release_id: release.id,
            revision: &release.revision,
            spec: &release.spec,
        };
        let progress = RunProgress { engine: self, run };
        match target.run_task(execution, &progress).await {
            Ok(outcome) => {
                let took = format!("{:.1}s", outcome.elapsed.as_secs_f64());
                let next = Next::to(RunState::Succeeded, format!("task exited with code 0 after {took}"))
                    .because(format!("exited 0 after {took}"))
                    .with_detail(TransitionDetail {
                        exit_code: Some(outcome.exit_code),
                        logs: outcome.logs,
                        ..TransitionDetail::default()
                    });
                Ok(match run.kind {
                    RunKind::Scheduled => next,
                    _ => next.deploying(release.id, true),
                })
            }
            Err(error) => {
                let reason = describe(&error);
                Ok(Next::to(RunState::Failed, reason.clone()).because(reason).with_logs(error.logs()))
            }
        }
    }

    /// A release that failed to roll out or verify: roll back to the last good one, or,
    /// when there is none, remove what was started so nothing half-deployed is left.
    pub(crate) async fn after_failure(
        &self,
        run: &Run,
        release: &Release,
        target: &dyn Target,
        error: RolloutError,
    ) -> Result<Next> {
        if let RolloutError::Target(inner) = &error {
            tracing::warn!(run_id = run.id, error = %inner, "target error during rollout");
        }
        let reason = describe(&error);
        let logs = error.logs();
        match run.previous_release_id {
            Some(previous) if previous != release.id => {
                Ok(Next::to(RunState::RollingBack, format!("{reason}; rolling back to release {previous}"))
                    .because(reason)
                    .with_logs(logs))
            }
            _ => {
                let progress = RunProgress { engine: self, run };
                let cleanup = target.retire(rollout(run, release), &progress).await;
                let message = match cleanup {
                    Ok(()) => {
                        format!("{reason}; there is no earlier release to roll back to, so its replicas were removed")
                    }
                    Err(cleanup_error) => {
                        format!("{reason}; removing its replicas failed too: {}", describe(&cleanup_error))
                    }
                };
                Ok(Next::to(RunState::Failed, message).because(reason).with_logs(logs))
            }
        }
    }

    async fn roll_back(&self, run: &Run) -> Result<Next> {
        let Some(previous_id) = run.previous_release_id else {
            return Ok(Next::to(RunState::Failed, "nothing to roll back to"));
        };
        let (previous, target) = self.release_and_target(previous_id).await?;
        if recorded_only(&previous.spec) {
            return Ok(Next::to(
                RunState::RolledBack,
                format!("task definition {} is current again", previous.revision),
            )
            .deploying(previous.id, true));
        }
        let progress = RunProgress { engine: self, run };
        let rollout = rollout(run, &previous);
        // Straight back to the set that served (still running during a blue/green's
        // bake or a canary), starting what is missing of it.
        let result = match target.promote(rollout, &progress).await {
            Ok(()) => target.verify(rollout, &progress).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => Ok(Next::to(
                RunState::RolledBack,
                format!("rolled back to release {} (revision {})", previous.id, previous.revision),
            )
            .deploying(previous.id, true)),
            Err(error) => {
                let cause = describe(&error);
                Ok(Next::to(RunState::Failed, format!("the rollback failed too: {cause}"))
                    .because(format!(
                        "{}; then the rollback to release {} failed: {cause}",
                        run.reason.as_deref().unwrap_or("the release failed"),
                        previous.id
                    ))
                    .with_logs(error.logs()))
            }
        }
    }
}

/// Whether the run's plan found nothing to change (it was then only verified).
fn plan_was_no_op(run: &Run) -> bool {
    run.plan.as_ref().is_some_and(|plan| plan.action == PlanAction::NoChange)
}

pub(crate) fn rollout<'a>(run: &'a Run, release: &'a Release) -> Rollout<'a> {
    Rollout { app: &run.app, env: &run.env, release_id: release.id, revision: &release.revision, spec: &release.spec }
}

/// Docker's scheduled tasks have nothing to roll out: the server runs the current
/// release's definition when each run is due.
fn recorded_only(spec: &AppSpec) -> bool {
    matches!(spec, AppSpec::Task(task) if task.schedule.is_some())
}

fn rolled_out(release: &Release) -> String {
    match &release.spec {
        AppSpec::Service(service) => format!(
            "{} replica{} of revision {} rolled out",
            service.replicas,
            plural(service.replicas),
            release.revision
        ),
        AppSpec::EcsService(service) => {
            format!("ECS service {} moved to revision {}", service.service, release.revision)
        }
        AppSpec::EcsTask(_) => format!("the schedule's target moved to revision {}", release.revision),
        AppSpec::Task(_) => format!("revision {} recorded", release.revision),
    }
}

fn plural(count: u32) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Records what a target reports during a step as events of the run.
pub(crate) struct RunProgress<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) run: &'a Run,
}

#[async_trait]
impl Progress for RunProgress<'_> {
    async fn report(&self, event: TargetEvent) {
        let event = NewEvent::for_run(self.run, EventBody::Target(event.report), event.message);
        if let Err(error) = self.engine.record(event).await {
            // The step's own transition will hit the same store problem and stop the run.
            tracing::warn!(run_id = self.run.id, %error, "could not record a target event");
        }
    }
}
