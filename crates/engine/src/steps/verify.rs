//! The verify step: the release watched until it settles and stays healthy.

use launchway_store::{PlanAction, Run, RunKind, RunState};
use launchway_target::describe;

use super::{Next, recorded_only};
use crate::run::{RunProgress, rollout};
use crate::{Engine, Result};

impl Engine {
    pub(crate) async fn verify(&self, run: &Run) -> Result<Next> {
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
}

/// Whether the run's plan found nothing to change (it was then only verified).
fn plan_was_no_op(run: &Run) -> bool {
    run.plan.as_ref().is_some_and(|plan| plan.action == PlanAction::NoChange)
}
