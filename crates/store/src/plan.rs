//! Plans: the difference between what runs and what the manifest asks for, shown before
//! anything changes (what a CloudFormation change set is to ECS teams). Targets compute
//! them (each knows its own settings); runs keep the one their plan step made.

use serde::{Deserialize, Serialize};

use crate::Pin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// Nothing of the app runs yet.
    Create,
    /// A new revision replaces what runs.
    Update,
    /// The revision is right but the replicas are not (some stopped, some missing, an
    /// extra one left over): the rollout puts them right.
    Converge,
    NoChange,
    /// It runs there but the manifest no longer deploys it there. launchway leaves it
    /// running (there is no pruning yet) and says so.
    Unmanaged,
}

/// One changed setting, as `path: from → to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => write!(f, "~ {}: {from} → {to}", self.path),
            (None, Some(to)) => write!(f, "+ {}: {to}", self.path),
            (Some(from), None) => write!(f, "- {}: {from}", self.path),
            (None, None) => write!(f, "  {}", self.path),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounts {
    /// Replicas running now, of any revision.
    pub running: u32,
    /// Replicas there that are not running (exited, never started).
    pub stopped: u32,
    /// Running replicas that the target had to restart after they died.
    #[serde(default)]
    pub restarted: u32,
    pub desired: u32,
}

/// What deploying one app in one environment would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlan {
    pub app: String,
    pub env: String,
    /// `service` or `task`.
    pub kind: String,
    pub action: PlanAction,
    pub from_revision: Option<String>,
    pub to_revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
    pub changes: Vec<Change>,
    /// The paths of `changes` that set a setting the manifest left out to its default:
    /// listed whole in `changes`, folded where people read plans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<String>,
    /// One line saying what deploying would do.
    pub summary: String,
    /// A manual rollback holds the app where it is: deploying changes nothing there
    /// until the pin is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Pin>,
}

impl AppPlan {
    /// A plan with no changes listed yet, which its target fills in.
    pub fn new(app: &str, env: &str, kind: &str, action: PlanAction, to_revision: String) -> AppPlan {
        AppPlan {
            app: app.to_owned(),
            env: env.to_owned(),
            kind: kind.to_owned(),
            action,
            from_revision: None,
            to_revision,
            replicas: None,
            changes: Vec::new(),
            defaults: Vec::new(),
            summary: String::new(),
            pinned: None,
        }
    }

    /// The revision already runs as it should.
    pub fn no_change(app: &str, env: &str, kind: &str, revision: String) -> AppPlan {
        AppPlan {
            from_revision: Some(revision.clone()),
            summary: "nothing to change".to_owned(),
            ..AppPlan::new(app, env, kind, PlanAction::NoChange, revision)
        }
    }

    /// The changes to show first and whole: those not at their default.
    pub fn written_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|change| !self.defaults.contains(&change.path))
    }

    /// The changes that only set defaults, to show folded.
    pub fn default_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|change| self.defaults.contains(&change.path))
    }

    pub fn is_no_op(&self) -> bool {
        matches!(self.action, PlanAction::NoChange | PlanAction::Unmanaged)
    }

    /// Whether deploying would change what runs: something differs and no pin holds it.
    pub fn would_change(&self) -> bool {
        !self.is_no_op() && self.pinned.is_none()
    }
}
