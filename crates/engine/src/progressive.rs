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

use launchway_manifest::{ProgressStep, Strategy, format_duration};
use launchway_store::{
    Awaiting, ControlAction, ControlRequest, Event, EventBody, EventFilter, Measurement, NewEvent, Release, Run,
    RunState, StepOutcome, now_ms,
};
use launchway_target::{Advance, RolloutError, Target};

use crate::run::{RunProgress, rollout};
use crate::steps::{Next, NextTrafficStep};
use crate::{Engine, EngineError, Result, analysis};

/// How often a pause looks for `promote` or `abort` sent by another process.
const CONTROL_POLL: Duration = Duration::from_millis(250);

/// How often a step being reached is looked at (an ECS deployment on its way to a
/// gate): soon, then less often, so a long wait stays well inside ECS's API rate limits
/// (each look is a few Describe calls).
const ADVANCE_POLL_FIRST: Duration = Duration::from_millis(100);
const ADVANCE_POLL_MAX: Duration = Duration::from_secs(1);

impl Engine {
    /// Which step a progressing run is at: steps that passed are not taken again.
    pub(crate) async fn next_traffic_step(&self, run: &Run) -> Result<NextTrafficStep> {
        let release = self.inner.store.release(run.release_id).await?;
        let steps = release.spec.progressive().map(|(_, steps)| steps).unwrap_or_default();
        let rows = self.inner.store.steps(run.id).await?;
        let passed = steps
            .iter()
            .take_while(|step| {
                rows.iter().any(|row| row.name == step.name && row.outcome == Some(StepOutcome::Succeeded))
            })
            .count();
        Ok(match steps.get(passed) {
            Some(step) => NextTrafficStep::Hold(passed, step.name.clone()),
            None => NextTrafficStep::Promote,
        })
    }

    /// One step: reached (traffic set on Docker; on ECS, the deployment waiting at the
    /// step's gate), then held for the pause while the analysis measures (at least
    /// once) and, at an approval gate, until someone promotes, unless someone aborts.
    pub(crate) async fn traffic_step(&self, run: &Run, index: usize) -> Result<Next> {
        let (release, target) = self.release_and_target(run.release_id).await?;
        let Some((strategy, steps)) = release.spec.progressive() else {
            return Err(EngineError::Invalid(format!("release {} moves no traffic in steps", release.id)));
        };
        let step = &steps[index];
        let number = index as u32 + 1;
        // Timed from the step's first attempt: a restart does not lengthen the pause.
        let began = self
            .inner
            .store
            .steps(run.id)
            .await?
            .iter()
            .find(|row| row.name == step.name)
            .map_or_else(now_ms, |row| row.started_at);
        match self.reach(run, &release, target.as_ref(), strategy, index, began).await? {
            Reach::Reached => {}
            Reach::Failed(reason) => return self.give_up(run, &release, target.as_ref(), reason).await,
            Reach::Error(error) => return self.after_failure(run, &release, target.as_ref(), error).await,
        }
        let held = match self.hold(run, &release, target.as_ref(), strategy, step, number, began).await? {
            Held::Passed(how) => how,
            Held::Failed(reason) => return self.give_up(run, &release, target.as_ref(), reason).await,
        };
        Ok(Next::to(
            RunState::Progressing,
            format!("step {number} of {}: {} on release {} {held}", steps.len(), step.what, release.id)
                .trim_end()
                .to_owned(),
        ))
    }

    /// Asks the target to move on to step `index` until it is there, within the
    /// strategy's timeout from the step's first attempt; `abort` stops the wait.
    async fn reach(
        &self,
        run: &Run,
        release: &Release,
        target: &dyn Target,
        strategy: &Strategy,
        index: usize,
        began: i64,
    ) -> Result<Reach> {
        let progress = RunProgress { engine: self, run };
        let deadline = began + strategy.timeout().as_millis() as i64;
        let mut wait = ADVANCE_POLL_FIRST;
        loop {
            match target.advance(rollout(run, release), index, &progress).await {
                Ok(Advance::Reached) => return Ok(Reach::Reached),
                Ok(Advance::Moving) => {}
                Err(error) => return Ok(Reach::Error(error)),
            }
            if let Some(ControlRequest { action: ControlAction::Abort, by }) = self.control_since(run, began).await? {
                return Ok(Reach::Failed(format!("aborted by {by} before step {} was reached", index + 1)));
            }
            if self.stopping() {
                return Err(EngineError::Interrupted { run_id: run.id });
            }
            if now_ms() >= deadline {
                return Ok(Reach::Failed(format!(
                    "step {} was not reached within {} (the strategy's timeout)",
                    index + 1,
                    format_duration(strategy.timeout())
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.config.stop.cancelled() => {}
            }
            wait = (wait * 2).min(ADVANCE_POLL_MAX);
        }
    }

    /// Holds a step for its pause: measures every interval, and listens for promote and
    /// abort. At an approval gate, the pause over, it waits for a promote. Says how
    /// the hold ended.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        run: &Run,
        release: &Release,
        target: &dyn Target,
        strategy: &Strategy,
        step: &ProgressStep,
        number: u32,
        began: i64,
    ) -> Result<Held> {
        let deadline = began + step.pause.as_millis() as i64;
        let analysis = strategy.analysis();
        let (mut measured, mut failed) = (0u32, 0u32);
        let mut last_failure: Option<String> = None;
        let mut next_measurement = now_ms();
        let mut announced = false;
        loop {
            match self.control_since(run, began).await? {
                Some(ControlRequest { action: ControlAction::Abort, by }) => {
                    return Ok(Held::Failed(format!("aborted by {by} at step {number}")));
                }
                Some(ControlRequest { action: ControlAction::Promote, by }) if step.approval => {
                    return Ok(Held::Passed(format!("(approved by {by})")));
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
                    if !measurement.passed {
                        last_failure = Some(format!("{} {}", measurement.metric, measurement.detail));
                    }
                    let message = format!(
                        "analysis at step {number}: {} {} — {}",
                        measurement.metric,
                        if measurement.passed { "passed" } else { "failed" },
                        measurement.detail
                    );
                    self.record(NewEvent::for_run(run, EventBody::Measured(measurement), message)).await?;
                }
                if failed > analysis.failure_limit {
                    // The last failure says what was seen: the line chat and the run show.
                    let seen = last_failure.map(|detail| format!(": {detail}")).unwrap_or_default();
                    return Ok(Held::Failed(format!(
                        "the analysis failed at step {number}: {failed} of {measured} measurements failed (limit {}){seen}",
                        analysis.failure_limit
                    )));
                }
                next_measurement = now + analysis.interval.as_millis() as i64;
            }
            let enough = analysis.is_none_or(|analysis| measured >= analysis.count.unwrap_or(1).max(1));
            let paused = now >= deadline && enough;
            if paused && !step.approval {
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
            if paused && !announced {
                // Once per step, whoever drives it: chat hears of it once.
                announced = true;
                if self.awaiting_announced(run, number, began).await? {
                    continue;
                }
                let awaiting = Awaiting { step: number, what: step.what.clone() };
                let message = format!(
                    "step {number} waits for approval ({}): `launchway promote {}` goes on, `launchway abort {}` rolls back",
                    step.what, run.id, run.id
                );
                self.record(NewEvent::for_run(run, EventBody::Awaiting(awaiting), message)).await?;
            }
            // Once paused, an approval gate measures on, and nothing else wakes it.
            let wake = match (analysis, paused) {
                (Some(_), true) => next_measurement,
                (Some(_), false) => deadline.min(next_measurement),
                (None, true) => now + CONTROL_POLL.as_millis() as i64,
                (None, false) => deadline,
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
            let urls = match &check.url {
                Some(url) => Ok(vec![url.clone()]),
                None => target.analysis_endpoints(rollout(run, release), check.port).await.map(|endpoints| {
                    endpoints.iter().map(|endpoint| format!("http://{endpoint}{}", check.path)).collect()
                }),
            };
            let measurement = match urls {
                Ok(urls) => analysis::http(http, number, check, &urls).await,
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
        if let Some(check) = &analysis.cloudwatch {
            let value = target.cloudwatch_metric(check).await;
            measurements.push(analysis::cloudwatch(number, check, value));
        }
        if !analysis.alarms.is_empty() {
            let firing = target.firing_alarms(&analysis.alarms).await;
            measurements.push(analysis::alarms(number, &analysis.alarms, firing));
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

    /// Whether the run already said that step `number` (begun at `since`) waits.
    async fn awaiting_announced(&self, run: &Run, number: u32, since: i64) -> Result<bool> {
        let filter = EventFilter { run_id: Some(run.id), ..EventFilter::default() };
        let events = self.inner.store.events(&filter).await?;
        Ok(events
            .iter()
            .filter(|event| event.at >= since)
            .any(|event| matches!(event.body(), EventBody::Awaiting(awaiting) if awaiting.step == number)))
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

/// How reaching a step ended.
enum Reach {
    Reached,
    /// Must roll back, because of this.
    Failed(String),
    /// The target failed (an ECS deployment that failed or was rolled back).
    Error(RolloutError),
}

/// How holding a traffic step ended.
enum Held {
    /// Passed, with a few words on how.
    Passed(String),
    /// Must roll back, because of this.
    Failed(String),
}
