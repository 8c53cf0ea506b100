//! A run's steps, each in its own file, and their vocabulary: what a step decides ([`Next`]: the state the run moves
//! to, and what goes with it), and where a progressing run goes next. The loop in
//! `run.rs` applies it; the steps (`run.rs`, `approval.rs`, `build.rs`,
//! `progressive.rs`) speak it.

use launchway_manifest::AppSpec;
use launchway_store::{AppPlan, ApprovalRequest, DeploymentUpdate, NewRelease, RunState, TransitionDetail};

pub(crate) mod dependencies;
mod deploy;
mod plan;
mod roll_back;
mod validate;
mod verify;

/// What a step decided.
pub(crate) struct Next {
    pub(crate) to: RunState,
    pub(crate) reason: Option<String>,
    pub(crate) plan: Option<AppPlan>,
    pub(crate) message: String,
    pub(crate) detail: TransitionDetail,
    pub(crate) deployment: Option<DeploymentUpdate>,
    pub(crate) approval: Option<ApprovalRequest>,
    pub(crate) release: Option<NewRelease>,
}

impl Next {
    pub(crate) fn to(to: RunState, message: impl Into<String>) -> Next {
        Next {
            to,
            reason: None,
            plan: None,
            message: message.into(),
            detail: TransitionDetail::default(),
            deployment: None,
            approval: None,
            release: None,
        }
    }

    /// Moves the run to a new release (what its build step built).
    pub(crate) fn moving_to(mut self, release: NewRelease) -> Next {
        self.release = Some(release);
        self
    }

    pub(crate) fn because(mut self, reason: impl Into<String>) -> Next {
        self.reason = Some(reason.into());
        self
    }

    pub(crate) fn with_detail(mut self, detail: TransitionDetail) -> Next {
        self.detail = detail;
        self
    }

    pub(crate) fn with_logs(self, logs: impl Into<Vec<String>>) -> Next {
        self.with_detail(TransitionDetail { logs: logs.into(), ..TransitionDetail::default() })
    }

    pub(crate) fn deploying(mut self, release_id: i64, verified: bool) -> Next {
        self.deployment = Some(DeploymentUpdate { current_release_id: release_id, verified });
        self
    }
}

/// The step a progressing run takes next.
pub(crate) enum NextTrafficStep {
    /// The step at this index (from 0), named as the run's step row is.
    Hold(usize, String),
    /// Every step passed: the new release takes everything.
    Promote,
}

impl NextTrafficStep {
    pub(crate) fn name(&self) -> String {
        match self {
            NextTrafficStep::Hold(_, name) => name.clone(),
            NextTrafficStep::Promote => "promote".to_owned(),
        }
    }
}

/// Docker's scheduled tasks have nothing to roll out: the server runs the current
/// release's definition when each run is due.
pub(crate) fn recorded_only(spec: &AppSpec) -> bool {
    matches!(spec, AppSpec::Task(task) if task.schedule.is_some())
}

pub(crate) fn plural(count: u32) -> &'static str {
    if count == 1 { "" } else { "s" }
}
