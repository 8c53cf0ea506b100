//! The validate step: the release must make sense and be runnable; nothing on the
//! target changes.

use launchway_store::{Run, RunState};
use launchway_target::describe;

use super::Next;
use crate::{Engine, EngineError, Result};

impl Engine {
    /// Nothing on the target changes here: the release must make sense and be runnable.
    pub(crate) async fn validate(&self, run: &Run) -> Result<Next> {
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
}
