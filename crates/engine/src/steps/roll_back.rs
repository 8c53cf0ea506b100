//! After a failure: back to the last verified release, or what was started removed.

use launchway_store::{Release, Run, RunState};
use launchway_target::{RolloutError, Target, describe};

use super::{Next, recorded_only};
use crate::run::{RunProgress, rollout};
use crate::{Engine, Result};

impl Engine {
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

    pub(crate) async fn roll_back(&self, run: &Run) -> Result<Next> {
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
