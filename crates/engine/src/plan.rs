//! Plans, as the engine asks for them: the target of an environment compares each app's
//! desired spec with what it observed there. The engine knows no target's settings.

use std::sync::Arc;

use launchway_manifest::AppSpec;
use launchway_store::{AppPlan, Release};
use launchway_target::planning::{Deployed, PlanRequest};
use launchway_target::{LiveEnvironment, Target};

/// An environment as observed once: its target and what runs there.
pub(crate) struct Observed {
    pub(crate) target: Arc<dyn Target>,
    pub(crate) live: LiveEnvironment,
}

impl Observed {
    /// What deploying `desired` for `app` would change; `current` is the release the
    /// store says is deployed.
    pub(crate) fn plan(&self, app: &str, env: &str, desired: &AppSpec, current: Option<&Release>) -> AppPlan {
        self.target.plan(PlanRequest {
            app,
            env,
            desired,
            live: self.live.apps.get(app),
            current: current.map(|release| Deployed { revision: &release.revision, spec: &release.spec }),
        })
    }
}
