//! Driving one run to its end.
//!
//! The shape is kube-rs's reconcile: each state has one idempotent step, which reads
//! what it needs (the run, its releases, live state) and returns the next transition;
//! the transition is persisted, then the loop runs the next step. The lease is renewed
//! alongside; if it is lost, the step is abandoned and the new holder carries on.

use std::sync::Arc;

use async_trait::async_trait;
use launchway_store::{
    EventBody, Lease, NewEvent, Release, Run, RunState, StepFinished, StepOutcome, StoreError, Transition,
};
use launchway_target::{Progress, Rollout, Target, TargetEvent};
use tracing::Instrument;

use crate::steps::dependencies::DependenciesGate;
use crate::steps::{Next, NextTrafficStep};
use crate::{Engine, EngineError, Result};

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
}

pub(crate) fn rollout<'a>(run: &'a Run, release: &'a Release) -> Rollout<'a> {
    Rollout { app: &run.app, env: &run.env, release_id: release.id, revision: &release.revision, spec: &release.spec }
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
