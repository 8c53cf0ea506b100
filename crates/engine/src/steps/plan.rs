//! The plan step: what deploying the release would change, and whether it waits for an
//! approval first.

use launchway_store::{ApprovalRequest, Run, RunKind, RunState, TransitionDetail};
use launchway_target::AppRef;

use super::Next;
use crate::decide::{AfterPlan, after_plan};
use crate::plan::Observed;
use crate::{Engine, Result};

impl Engine {
    pub(crate) async fn plan_step(&self, run: &Run) -> Result<Next> {
        if run.kind == RunKind::Scheduled {
            // One execution of the current release: nothing to compare, nothing to approve.
            return Ok(Next::to(RunState::Deploying, "running the scheduled task"));
        }
        let (release, target) = self.release_and_target(run.release_id).await?;
        let live = target.observe(&run.env, &[AppRef { app: &run.app, spec: &release.spec }]).await?;
        let recorded = self.recorded_releases(&run.app, &run.env).await?;
        let observed = Observed { target, live };
        let plan = observed.plan(&run.app, &run.env, &release.spec, recorded.current.as_ref());
        let verified = recorded.good.as_ref().is_some_and(|good| good.revision == release.revision);
        let approval = run.approval_policy.filter(|_| run.kind == RunKind::Deploy);
        let mut next = match after_plan(&plan, verified, approval.is_some()) {
            AfterPlan::AlreadyVerified => {
                Next::to(RunState::Succeeded, "nothing to change: the target already runs this release")
                    .because(crate::dora::NO_OP_REASON)
                    .deploying(release.id, true)
            }
            // What runs matches, but launchway never watched it settle: it becomes the
            // last good release only once verification has.
            AfterPlan::VerifyOnly => {
                Next::to(RunState::Verifying, "nothing to change: the target already runs this release; verifying it")
            }
            AfterPlan::AwaitApproval => {
                let expires = approval.and_then(|policy| policy.expires);
                let expires_at = expires.map(|expires| self.now_ms() + expires.as_millis() as i64);
                let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
                let mut next = Next::to(RunState::AwaitingApproval, format!("waiting for approval: {}", plan.summary))
                    .because("waiting for approval")
                    .with_detail(TransitionDetail { changes, expires_at, ..TransitionDetail::default() });
                next.approval = Some(ApprovalRequest { expires_at });
                next
            }
            AfterPlan::Deploy => {
                let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
                Next::to(RunState::Deploying, plan.summary.clone())
                    .with_detail(TransitionDetail { changes, ..TransitionDetail::default() })
            }
        };
        next.plan = Some(plan);
        Ok(next)
    }
}
