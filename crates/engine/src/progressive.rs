//! Progressive delivery (blue/green, canary): once the new set runs beside the old one,
//! the run stays `progressing` while traffic moves to it step by step. Each traffic step
//! is a step of the run (`traffic 1`, `traffic 2`…): it sets the new release's share,
//! holds it for the step's pause while the analysis measures, and passes or sends the
//! run to roll back. After the last one, `promote` gives the new release everything and
//! removes the old set.
//!
//! Durable like every step: how many traffic steps passed is read from the run's step
//! rows, and a pause interrupted by a restart resumes with only what was left of it
//! (timed from the step's first attempt). `launchway promote` and `launchway abort`
//! reach the process driving the run through the event log, so they work from any
//! process.

use std::time::Duration;

use launchway_manifest::{AppSpec, CanaryStep, Strategy, format_duration};
use launchway_store::{
    ControlAction, ControlRequest, Event, EventBody, EventFilter, Measurement, NewEvent, Release, Run, RunState,
    StepOutcome, now_ms,
};
use launchway_target::{RolloutError, Target};

use crate::run::{Next, RunProgress, rollout};
use crate::{Engine, EngineError, Result, analysis};

/// How often a pause looks for `promote` or `abort` sent by another process.
const CONTROL_POLL: Duration = Duration::from_millis(250);

/// The step a progressing run takes next.
pub(crate) enum NextTrafficStep {
    /// The traffic step at this index (from 0).
    Shift(usize),
    /// Every traffic step passed: the new release takes everything.
    Promote,
}

impl NextTrafficStep {
    pub(crate) fn name(&self) -> String {
        match self {
            NextTrafficStep::Shift(index) => format!("traffic {}", index + 1),
            NextTrafficStep::Promote => "promote".to_owned(),
        }
    }
}

/// A release's progressive strategy, when it has one.
pub(crate) fn progressive_strategy(spec: &AppSpec) -> Option<&Strategy> {
    match spec {
        AppSpec::Service(service) if service.strategy.is_progressive() => Some(&service.strategy),
        _ => None,
    }
}

impl Engine {
    /// Which step a progressing run is at: traffic steps that passed are not taken again.
    pub(crate) async fn next_traffic_step(&self, run: &Run) -> Result<NextTrafficStep> {
        let release = self.inner.store.release(run.release_id).await?;
        let total = progressive_strategy(&release.spec).map_or(0, |strategy| strategy.traffic_steps().len());
        let steps = self.inner.store.steps(run.id).await?;
        let passed = (0..total)
            .take_while(|index| {
                let name = NextTrafficStep::Shift(*index).name();
                steps.iter().any(|step| step.name == name && step.outcome == Some(StepOutcome::Succeeded))
            })
            .count();
        Ok(if passed < total { NextTrafficStep::Shift(passed) } else { NextTrafficStep::Promote })
    }

    /// One traffic step: the new release's share set, then held for the pause while
    /// the analysis measures (at least once), unless someone promotes or aborts.
    pub(crate) async fn traffic_step(&self, run: &Run, index: usize) -> Result<Next> {
        let (release, target) = self.release_and_target(run.release_id).await?;
        let Some(strategy) = progressive_strategy(&release.spec) else {
            return Err(EngineError::Invalid(format!("release {} moves no traffic in steps", release.id)));
        };
        let steps = strategy.traffic_steps();
        let step = steps[index];
        let number = index as u32 + 1;
        let progress = RunProgress { engine: self, run };
        if let Err(error) = target.shift_traffic(rollout(run, &release), step.weight, &progress).await {
            return self.after_failure(run, &release, target.as_ref(), error).await;
        }
        // Timed from the step's first attempt: a restart does not lengthen the pause.
        let name = NextTrafficStep::Shift(index).name();
        let began =
            self.inner.store.steps(run.id).await?.iter().find(|s| s.name == name).map_or_else(now_ms, |s| s.started_at);
        let held = match self.hold(run, &release, target.as_ref(), strategy, step, number, began).await? {
            Held::Passed(how) => how,
            Held::Failed(reason) => return self.give_up(run, &release, target.as_ref(), reason).await,
        };
        let share = match step.weight {
            100 => "all traffic".to_owned(),
            weight => format!("{weight}% of traffic"),
        };
        Ok(Next::to(
            RunState::Progressing,
            format!("step {number} of {}: {share} on release {} {held}", steps.len(), release.id),
        ))
    }

    /// Holds a step for its pause: measures every interval, and listens for promote and
    /// abort. Says how the hold ended.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        run: &Run,
        release: &Release,
        target: &dyn Target,
        strategy: &Strategy,
        step: CanaryStep,
        number: u32,
        began: i64,
    ) -> Result<Held> {
        let deadline = began + step.pause.as_millis() as i64;
        let analysis = strategy.analysis();
        let (mut measured, mut failed) = (0u32, 0u32);
        let mut next_measurement = now_ms();
        loop {
            match self.control_since(run, began).await? {
                Some(ControlRequest { action: ControlAction::Abort, by }) => {
                    return Ok(Held::Failed(format!("aborted by {by} at step {number}")));
                }
                Some(ControlRequest { action: ControlAction::Promote, by }) => {
                    return Ok(Held::Passed(format!("(promoted by {by} before the pause ended)")));
                }
                None => {}
            }
            if self.stopping() {
                return Err(EngineError::Interrupted { run_id: run.id });
            }
            let now = now_ms();
            if let Some(analysis) = analysis
                && now >= next_measurement
            {
                for measurement in self.measure(run, release, target, analysis, number).await {
                    measured += 1;
                    failed += u32::from(!measurement.passed);
                    let message = format!(
                        "analysis at step {number}: {} {} — {}",
                        measurement.metric,
                        if measurement.passed { "passed" } else { "failed" },
                        measurement.detail
                    );
                    self.record(NewEvent::for_run(run, EventBody::Measured(measurement), message)).await?;
                }
                if failed > analysis.failure_limit {
                    return Ok(Held::Failed(format!(
                        "the analysis failed at step {number}: {failed} of {measured} measurements failed (limit {})",
                        analysis.failure_limit
                    )));
                }
                next_measurement = now + analysis.interval.as_millis() as i64;
            }
            if now >= deadline && (analysis.is_none() || measured > 0) {
                let pause = match step.pause.is_zero() {
                    true => String::new(),
                    false => format!("for {}", format_duration(step.pause)),
                };
                let analysis = match analysis {
                    Some(_) => format!(" ({measured} measurements, {failed} failed)"),
                    None => String::new(),
                };
                return Ok(Held::Passed(format!("{pause}{analysis}").trim().to_owned()));
            }
            let wake = match analysis {
                Some(_) => deadline.min(next_measurement),
                None => deadline,
            };
            let wait = Duration::from_millis((wake - now).max(0) as u64).min(CONTROL_POLL);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.config.stop.cancelled() => {}
            }
        }
    }

    /// One measurement per metric of the analysis.
    async fn measure(
        &self,
        run: &Run,
        release: &Release,
        target: &dyn Target,
        analysis: &launchway_manifest::Analysis,
        number: u32,
    ) -> Vec<Measurement> {
        let http = &self.inner.http;
        let mut measurements = Vec::new();
        if let Some(check) = &analysis.http {
            let measurement = match target.analysis_endpoints(rollout(run, release), check.port).await {
                Ok(endpoints) => analysis::http(http, number, check, &endpoints).await,
                Err(error) => Measurement {
                    step: number,
                    metric: "http".to_owned(),
                    passed: false,
                    value: None,
                    detail: launchway_target::describe(&error),
                },
            };
            measurements.push(measurement);
        }
        if let Some(check) = &analysis.prometheus {
            measurements.push(analysis::prometheus(http, number, check).await);
        }
        measurements
    }

    /// After the last traffic step: the new release takes everything, the old set goes.
    pub(crate) async fn promote_step(&self, run: &Run) -> Result<Next> {
        let (release, target) = self.release_and_target(run.release_id).await?;
        let progress = RunProgress { engine: self, run };
        match target.promote(rollout(run, &release), &progress).await {
            Ok(()) => Ok(Next::to(
                RunState::Verifying,
                format!("release {} takes all traffic; the set that served before was removed", release.id),
            )),
            Err(error) => self.after_failure(run, &release, target.as_ref(), error).await,
        }
    }

    /// Ends a progressive delivery that must not go on: traffic goes back, through a
    /// rollback (or, with nothing to go back to, the new set is removed).
    async fn give_up(&self, run: &Run, release: &Release, target: &dyn Target, reason: String) -> Result<Next> {
        self.after_failure(run, release, target, RolloutError::Unhealthy { reason, logs: Vec::new() }).await
    }

    /// The first promote or abort asked since `since` (Unix ms), if any.
    async fn control_since(&self, run: &Run, since: i64) -> Result<Option<ControlRequest>> {
        let filter = EventFilter { run_id: Some(run.id), ..EventFilter::default() };
        let events = self.inner.store.events(&filter).await?;
        Ok(events.iter().filter(|event| event.at >= since).find_map(|event| match event.body() {
            EventBody::Control(request) => Some(request),
            _ => None,
        }))
    }

    /// Asks a progressing run to move on now (`promote`: end the current pause) or to
    /// roll back now (`abort`). Whichever process drives the run acts on it within a
    /// moment; the request is in the audit log.
    ///
    /// # Errors
    /// [`EngineError::Invalid`] when the run is not progressing.
    pub async fn control(&self, run_id: i64, action: ControlAction, by: &str) -> Result<Event> {
        let run = self.inner.store.run(run_id).await?;
        if run.state != RunState::Progressing {
            let (verb, what) = match action {
                ControlAction::Promote => ("promoted", "moves on to its next step"),
                ControlAction::Abort => ("aborted", "sends its traffic back"),
            };
            return Err(EngineError::Invalid(format!(
                "run {run_id} is {}: only a run moving traffic step by step (blue/green, canary) can be {verb}; it then {what}",
                run.state
            )));
        }
        let message = format!("{} asked by {by}", action.as_str());
        self.record(NewEvent::for_run(&run, EventBody::Control(ControlRequest { action, by: by.to_owned() }), message))
            .await
    }
}

/// How holding a traffic step ended.
enum Held {
    /// Passed, with a few words on how.
    Passed(String),
    /// Must roll back, because of this.
    Failed(String),
}
