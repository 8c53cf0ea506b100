//! From desired state to runs: which (app, environment) pairs need one.
//!
//! Only apps whose desired state differs from what runs get a run; an unfinished run is
//! resumed before anything new starts for its app; a revision that just failed is not
//! retried unless asked, so a broken commit does not redeploy in a loop.

use std::collections::BTreeMap;

use launchway_manifest::{ApprovalPolicy, Manifest, TargetSpec};
use launchway_store::{
    DeploymentRecord, NewEvent, NewRelease, NewRun, Release, ReleaseId, ReleaseSource, Run, RunFilter, RunKind,
    RunState, now_ms,
};
use launchway_target::{AppRef, LiveApp, LiveEnvironment};
use serde::Serialize;
use serde_json::json;

use crate::plan::{self, AppPlan};
use crate::{Engine, EngineError, Result};

/// Which apps and environments a command is about; empty means all.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub env: Option<String>,
    pub apps: Vec<String>,
}

impl Selection {
    pub fn includes(&self, app: &str, env: &str) -> bool {
        self.env.as_deref().is_none_or(|selected| selected == env)
            && (self.apps.is_empty() || self.apps.iter().any(|selected| selected == app))
    }
}

/// Images to set over the manifest's, by (app, environment): what CI published, or
/// what a promotion carries from the environment before.
pub type ImageOverrides = BTreeMap<(String, String), BTreeMap<String, String>>;

pub struct DeployRequest<'a> {
    pub manifest: &'a Manifest,
    /// The commit the manifest was read from.
    pub source: ReleaseSource,
    pub images: ImageOverrides,
    pub selection: &'a Selection,
    /// Deploy a revision again even though its last run failed or was rolled back.
    pub retry_failed: bool,
    /// Who asks, for the audit log.
    pub trigger: String,
}

/// What `deploy` does for one (app, environment).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A run was created.
    Started {
        run: Box<Run>,
        plan: Box<AppPlan>,
    },
    /// A run interrupted earlier is resumed first.
    Resume {
        run: Box<Run>,
    },
    Unchanged {
        app: String,
        env: String,
        revision: String,
    },
    Skipped {
        app: String,
        env: String,
        reason: String,
        /// How the revision's last run ended.
        previous_state: RunState,
    },
    /// A run for the same desired state waits for approval.
    Waiting {
        run: Box<Run>,
    },
    /// A run for the app is being driven by another live process.
    Busy {
        app: String,
        env: String,
        run_id: i64,
        owner: String,
    },
}

/// One (app, environment) as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    pub app: String,
    pub env: String,
    pub deployment: Option<DeploymentRecord>,
    pub current_release: Option<Release>,
    pub live: Option<LiveApp>,
    pub last_run: Option<Run>,
    /// The desired revision, when the config repo was read.
    pub desired_revision: Option<String>,
}

impl Engine {
    /// Plans for every selected (app, environment), reading live state once per
    /// environment. Changes nothing.
    pub async fn plan(&self, manifest: &Manifest, selection: &Selection) -> Result<Vec<AppPlan>> {
        let mut live_by_env: BTreeMap<String, LiveEnvironment> = BTreeMap::new();
        let mut plans = Vec::new();
        for deployment in manifest.deployments().filter(|d| selection.includes(d.app, d.environment)) {
            let live = self.live(manifest, deployment.environment, selection, &mut live_by_env).await?;
            let current = self.current_release(deployment.app, deployment.environment).await?;
            plans.push(plan::compute(
                deployment.app,
                deployment.environment,
                deployment.spec,
                live.apps.get(deployment.app),
                current.as_ref(),
            ));
        }
        for (env, live) in &live_by_env {
            for (app, live_app) in &live.apps {
                let declared = manifest.apps.get(app).is_some_and(|declared| declared.specs.contains_key(env));
                if !declared && selection.includes(app, env) && !live_app.replicas.is_empty() {
                    plans.push(AppPlan::unmanaged(app, env, live_app));
                }
            }
        }
        Ok(plans)
    }

    /// Decides, for each selected (app, environment), whether it needs a run, and
    /// creates the release and the run where it does.
    pub async fn prepare_deploys(&self, request: &DeployRequest<'_>) -> Result<Vec<Decision>> {
        let store = &self.inner.store;
        let mut live_by_env: BTreeMap<String, LiveEnvironment> = BTreeMap::new();
        let mut decisions = Vec::new();
        let selected = request.manifest.deployments().filter(|d| request.selection.includes(d.app, d.environment));
        for deployment in selected {
            let (app, env) = (deployment.app, deployment.environment);
            let overridden =
                request.images.get(&(app.to_owned(), env.to_owned())).map(|images| deployment.spec.with_images(images));
            let spec = overridden.as_ref().unwrap_or(deployment.spec);
            let revision = spec.revision().0;
            let latest = self.latest_run(app, env).await?;
            if let Some(run) = latest.as_ref().filter(|run| !run.state.is_terminal()) {
                if run.state != RunState::AwaitingApproval
                    || store.approval(run.id).await?.is_some_and(|a| a.decision.is_some())
                {
                    decisions.push(self.unfinished(run));
                    continue;
                }
                if store.release(run.release_id).await?.revision == revision {
                    decisions.push(Decision::Waiting { run: Box::new(run.clone()) });
                    continue;
                }
                // A newer change replaces one still waiting: approving the old one later
                // would deploy a state nobody wants any more.
                self.supersede(run, &revision).await?;
            }
            let live = self.live(request.manifest, env, request.selection, &mut live_by_env).await?;
            let current = self.current_release(app, env).await?;
            let plan = plan::compute(app, env, spec, live.apps.get(app), current.as_ref());
            if plan.is_no_op() && current.as_ref().is_some_and(|release| release.revision == revision) {
                decisions.push(Decision::Unchanged { app: app.to_owned(), env: env.to_owned(), revision });
                continue;
            }
            if let Some(failed) =
                latest.filter(|run| matches!(run.state, RunState::Failed | RunState::RolledBack | RunState::Rejected))
                && !request.retry_failed
                && store.release(failed.release_id).await?.revision == revision
            {
                decisions.push(Decision::Skipped {
                    app: app.to_owned(),
                    env: env.to_owned(),
                    previous_state: failed.state,
                    reason: format!(
                        "revision {revision} {} in run {}{}; change the manifest, or pass --retry to deploy it again",
                        match failed.state {
                            RunState::RolledBack => "was rolled back",
                            RunState::Rejected => "was rejected",
                            _ => "failed",
                        },
                        failed.id,
                        failed.reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default()
                    ),
                });
                continue;
            }
            let target = self.environment_target(request.manifest, env)?;
            let release = store
                .create_release(NewRelease {
                    app: app.to_owned(),
                    env: env.to_owned(),
                    spec: spec.clone(),
                    target: target.clone(),
                    source: request.source.clone(),
                })
                .await?;
            let deployment_record = store.deployment(app, env).await?;
            let approval = request.manifest.environments.get(env).and_then(|environment| environment.approval);
            let run = self
                .create_run(
                    &release,
                    RunKind::Deploy,
                    deployment_record.as_ref(),
                    &request.trigger,
                    &plan.summary,
                    approval,
                )
                .await?;
            decisions.push(Decision::Started { run: Box::new(run), plan: Box::new(plan) });
        }
        Ok(decisions)
    }

    /// Creates a run that returns an app to an earlier release: `to`, or else the last
    /// release that succeeded there before the current one.
    pub async fn prepare_rollback(&self, app: &str, env: &str, to: Option<ReleaseId>, trigger: &str) -> Result<Run> {
        let store = &self.inner.store;
        let Some(record) = store.deployment(app, env).await? else {
            return Err(EngineError::Invalid(format!("nothing has been deployed for {app} in {env}")));
        };
        let current = store.release(record.current_release_id).await?;
        let target = match to {
            Some(id) => {
                let release = store.release(id).await?;
                if release.app != app || release.env != env {
                    return Err(EngineError::Invalid(format!(
                        "release {id} is for {} in {}, not {app} in {env}",
                        release.app, release.env
                    )));
                }
                release
            }
            None => self.last_good_before(app, env, &current).await?,
        };
        if target.revision == current.revision {
            return Err(EngineError::Invalid(format!(
                "{app} in {env} already runs revision {} (release {})",
                current.revision, current.id
            )));
        }
        self.create_run(&target, RunKind::Rollback, Some(&record), trigger, "roll back", None).await
    }

    /// Creates a run for one execution of a scheduled task's current release (Docker,
    /// where launchway is the scheduler).
    ///
    /// # Errors
    /// [`EngineError::Invalid`] when nothing is deployed or the app is not a task;
    /// [`launchway_store::StoreError::RunInProgress`] while another run has the app.
    pub async fn start_scheduled(&self, app: &str, env: &str, trigger: &str) -> Result<Run> {
        let store = &self.inner.store;
        let Some(record) = store.deployment(app, env).await? else {
            return Err(EngineError::Invalid(format!("nothing has been deployed for {app} in {env}")));
        };
        let release = store.release(record.current_release_id).await?;
        if !matches!(release.spec, launchway_manifest::AppSpec::Task(_)) {
            return Err(EngineError::Invalid(format!("{app} in {env} is not a scheduled task")));
        }
        self.create_run(&release, RunKind::Scheduled, Some(&record), trigger, "scheduled run", None).await
    }

    async fn last_good_before(&self, app: &str, env: &str, current: &Release) -> Result<Release> {
        let runs = self
            .inner
            .store
            .runs(&RunFilter { app: Some(app.to_owned()), env: Some(env.to_owned()), ..RunFilter::default() })
            .await?;
        for run in runs.iter().filter(|run| run.state == RunState::Succeeded) {
            let release = self.inner.store.release(run.release_id).await?;
            if release.revision != current.revision {
                return Ok(release);
            }
        }
        Err(EngineError::Invalid(format!(
            "no earlier release of {app} in {env} succeeded, so there is nothing to roll back to"
        )))
    }

    async fn create_run(
        &self,
        release: &Release,
        kind: RunKind,
        record: Option<&DeploymentRecord>,
        trigger: &str,
        summary: &str,
        approval_policy: Option<ApprovalPolicy>,
    ) -> Result<Run> {
        let commit = release
            .source
            .commit
            .as_deref()
            .map(|commit| format!(" from commit {}", &commit[..commit.len().min(10)]))
            .unwrap_or_default();
        let event = NewEvent {
            run_id: None,
            app: Some(release.app.clone()),
            env: Some(release.env.clone()),
            kind: "run.created".to_owned(),
            message: format!(
                "{} release {} (revision {}){commit}: {summary}",
                kind.as_str(),
                release.id,
                release.revision
            ),
            data: json!({"release": release.id, "revision": release.revision, "trigger": trigger, "kind": kind}),
        };
        let (run, event) = self
            .inner
            .store
            .create_run(
                NewRun {
                    app: release.app.clone(),
                    env: release.env.clone(),
                    kind,
                    release_id: release.id,
                    previous_release_id: record.and_then(|record| record.good_release_id),
                    trigger: trigger.to_owned(),
                    approval_policy,
                },
                event,
            )
            .await?;
        self.announce(&event);
        Ok(run)
    }

    fn unfinished(&self, run: &Run) -> Decision {
        let holder_alive = run.lease_owner.as_deref().is_some_and(|holder| {
            holder != self.inner.owner.id
                && !self.inner.owner.sees_dead(holder)
                && run.lease_expires_at.is_some_and(|expires| expires > now_ms())
        });
        if holder_alive {
            Decision::Busy {
                app: run.app.clone(),
                env: run.env.clone(),
                run_id: run.id,
                owner: run.lease_owner.clone().unwrap_or_default(),
            }
        } else {
            Decision::Resume { run: Box::new(run.clone()) }
        }
    }

    /// Unfinished runs nobody alive is driving: what a restarted controller resumes.
    /// Runs parked for approval are not among them: they wait for a decision.
    pub async fn orphaned_runs(&self) -> Result<Vec<Run>> {
        let runs = self
            .inner
            .store
            .runs(&RunFilter { unfinished_only: true, exclude_parked: true, ..RunFilter::default() })
            .await?;
        Ok(runs
            .iter()
            .filter_map(|run| match self.unfinished(run) {
                Decision::Resume { run } => Some(*run),
                _ => None,
            })
            .collect())
    }

    /// Status of every (app, environment) deployed or, with a manifest, declared.
    pub async fn status(&self, manifest: Option<&Manifest>, selection: &Selection) -> Result<Vec<AppStatus>> {
        let store = &self.inner.store;
        let mut pairs: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
        for record in store.deployments().await? {
            pairs.insert((record.app, record.env), None);
        }
        if let Some(manifest) = manifest {
            for deployment in manifest.deployments() {
                pairs.insert(
                    (deployment.app.to_owned(), deployment.environment.to_owned()),
                    Some(deployment.spec.revision().0),
                );
            }
        }
        let mut statuses = Vec::new();
        for ((app, env), desired_revision) in pairs {
            if !selection.includes(&app, &env) {
                continue;
            }
            let deployment = store.deployment(&app, &env).await?;
            let current_release = match &deployment {
                Some(record) => Some(store.release(record.current_release_id).await?),
                None => None,
            };
            let target = manifest
                .and_then(|manifest| manifest.environments.get(&env))
                .map(|environment| environment.target.clone())
                .or_else(|| current_release.as_ref().map(|release| release.target.clone()));
            let spec = manifest
                .and_then(|manifest| manifest.apps.get(&app)?.specs.get(&env).map(|spec| &**spec))
                .or(current_release.as_ref().map(|release| &release.spec));
            let live = match (&target, spec) {
                (Some(target), Some(spec)) => match self.target(target).await {
                    Ok(target) => target.observe(&env, &[AppRef { app: &app, spec }]).await?.apps.remove(&app),
                    Err(error) => {
                        tracing::warn!(%env, %error, "could not read live state");
                        None
                    }
                },
                _ => None,
            };
            let last_run = self.latest_run(&app, &env).await?;
            statuses.push(AppStatus { app, env, deployment, current_release, live, last_run, desired_revision });
        }
        Ok(statuses)
    }

    async fn latest_run(&self, app: &str, env: &str) -> Result<Option<Run>> {
        let filter =
            RunFilter { app: Some(app.to_owned()), env: Some(env.to_owned()), limit: Some(1), ..RunFilter::default() };
        Ok(self.inner.store.runs(&filter).await?.into_iter().next())
    }

    async fn current_release(&self, app: &str, env: &str) -> Result<Option<Release>> {
        match self.inner.store.deployment(app, env).await? {
            Some(record) => Ok(Some(self.inner.store.release(record.current_release_id).await?)),
            None => Ok(None),
        }
    }

    fn environment_target(&self, manifest: &Manifest, env: &str) -> Result<TargetSpec> {
        manifest
            .environments
            .get(env)
            .map(|environment| environment.target.clone())
            .ok_or_else(|| EngineError::Invalid(format!("environment {env} is not declared")))
    }

    /// Live state of the selected apps in `env`, read once per environment. Only the
    /// selected ones: on ECS each app is API calls, and a push that changed one app of
    /// a thousand must not describe the other 999.
    async fn live<'m>(
        &self,
        manifest: &Manifest,
        env: &str,
        selection: &Selection,
        cache: &'m mut BTreeMap<String, LiveEnvironment>,
    ) -> Result<&'m LiveEnvironment> {
        if !cache.contains_key(env) {
            let target = self.target(&self.environment_target(manifest, env)?).await?;
            let apps: Vec<AppRef<'_>> = manifest
                .deployments()
                .filter(|deployment| deployment.environment == env && selection.includes(deployment.app, env))
                .map(|deployment| AppRef { app: deployment.app, spec: deployment.spec })
                .collect();
            cache.insert(env.to_owned(), target.observe(env, &apps).await?);
        }
        Ok(&cache[env])
    }
}
