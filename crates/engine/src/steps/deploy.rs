//! The deploy step: the release rolled out (or, for a task, run once).

use launchway_manifest::AppSpec;
use launchway_store::{Release, Run, RunKind, RunState, TransitionDetail};
use launchway_target::{Target, TaskExecution, describe};

use super::{Next, plural, recorded_only};
use crate::run::{RunProgress, rollout};
use crate::{Engine, Result};

impl Engine {
    pub(crate) async fn deploy(&self, run: &Run) -> Result<Next> {
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
            return Ok(Next::to(RunState::Verifying, target.rolled_out(&release.spec, &release.revision)));
        };
        // A first release has no traffic to take from anyone (Argo Rollouts skips its
        // steps too): it takes everything at once, and verification watches it, where the
        // target says so.
        let gated = run.previous_release_id.is_some() || !target.first_release_skips_steps(&release.spec);
        if run.kind == RunKind::Deploy && gated && !steps.is_empty() {
            let count = format!("{} step{}", steps.len(), plural(steps.len() as u32));
            let what = target.progressive_start(&release.spec, &release.revision, strategy.name(), &count);
            return Ok(Next::to(
                RunState::Progressing,
                format!("{what}: `launchway promote {}` ends a pause, `launchway abort {}` rolls back", run.id, run.id),
            ));
        }
        // Rollbacks and repairs are asked for now: the set that runs takes everything.
        // So does a first release.
        match target.promote(rollout(run, &release), &progress).await {
            Ok(()) => Ok(Next::to(RunState::Verifying, target.rolled_out(&release.spec, &release.revision))),
            Err(error) => self.after_failure(run, &release, target.as_ref(), error).await,
        }
    }

    /// One execution of a task: it ends the run, succeeded or failed; nothing is rolled
    /// back (a scheduled task's definition did not change; what a task run on deploy,
    /// such as a migration, changed is its own to undo). A task run on deploy that exits
    /// 0 makes its release the deployed one, verified: its exit was watched.
    pub(crate) async fn execute_task(&self, run: &Run, release: &Release, target: &dyn Target) -> Result<Next> {
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
}
