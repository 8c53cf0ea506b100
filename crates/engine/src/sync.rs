//! From desired state to runs: which (app, environment) pairs need one.
//!
//! Only apps whose desired state differs from what runs get a run; an unfinished run is
//! resumed before anything new starts for its app; a revision that just failed is not
//! retried unless asked, so a broken commit does not redeploy in a loop.

use std::collections::BTreeMap;

use launchway_manifest::{ApprovalPolicy, Deployment, Manifest, TargetSpec};
use launchway_store::{
    AppPlan, AuditKind, DeploymentRecord, EventBody, NewEvent, NewPin, NewRelease, NewRun, Pin, PlanAction, Published,
    Release, ReleaseId, ReleaseSource, Run, RunCreated, RunFilter, RunId, RunKind, RunState, StoreError,
};
use launchway_target::AppRef;
use launchway_target::planning;
use serde_json::json;

use crate::decide::{
    ChangeFacts, Decision, Holder, OnUnfinished, REPAIR_MEMORY, ReleaseDrift, SettledFacts, UnfinishedFacts, Verdict,
    busy_or_resume, held_elsewhere, on_change, on_settled, on_unfinished, repair_wait,
};
use crate::desired::{DesiredOutcome, ImageSource};
use crate::plan::Observed;
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

/// What `prepare_rollback` is asked.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRequest<'a> {
    pub app: &'a str,
    pub env: &'a str,
    /// The verified release to go to; `None`: the one deployed before the current one.
    pub to: Option<ReleaseId>,
    /// The release the request means to leave: when another runs by now, the request
    /// was carried out already (a replay, a second press) and nothing is done.
    pub from: Option<ReleaseId>,
    /// Who asks: the pin names them.
    pub by: &'a str,
    /// How it was asked, for the run ("cli rollback by alice@example.com").
    pub trigger: &'a str,
    pub reason: Option<&'a str>,
}

/// Images to set over the manifest's, by (app, environment): what CI published, or
/// what a promotion carries from the environment before.
pub type ImageOverrides = BTreeMap<(String, String), BTreeMap<String, String>>;

pub struct DeployRequest<'a> {
    pub manifest: &'a Manifest,
    /// The commit the manifest was read from.
    pub source: ReleaseSource,
    /// Images to set over the manifest's (a promotion's); they win over publications.
    pub images: ImageOverrides,
    /// What CI published, by (app, environment). A publication whose release failed is
    /// not deployed again (the last good images are, until a new publication or a
    /// retry); its release is authored by the application commit's author.
    pub published: &'a [Published],
    pub selection: &'a Selection,
    /// Deploy a revision again even though its last run failed or was rolled back.
    pub retry_failed: bool,
    /// Who asks, for the audit log.
    pub trigger: String,
}

/// See [`Engine::recorded_releases`].
pub(crate) struct Recorded {
    pub(crate) record: Option<DeploymentRecord>,
    pub(crate) current: Option<Release>,
    pub(crate) good: Option<Release>,
}

/// What a run is created with.
struct RunRequest<'a> {
    kind: RunKind,
    /// The newest run of the app when the run was decided (`None`: do not check).
    decided_after: Option<&'a Option<Run>>,
    /// What a failure rolls back to: a verified release.
    previous: Option<ReleaseId>,
    trigger: &'a str,
    summary: &'a str,
    approval: Option<ApprovalPolicy>,
    pin: Option<NewPin>,
    /// Unfinished runs of the apps it depends on: it starts once they succeed.
    waits_for: Vec<RunId>,
}

impl Engine {
    /// Plans for every selected (app, environment), reading live state once per
    /// environment. Changes nothing.
    pub async fn plan(&self, manifest: &Manifest, selection: &Selection) -> Result<Vec<AppPlan>> {
        let mut live_by_env: BTreeMap<String, Observed> = BTreeMap::new();
        let mut plans = Vec::new();
        for deployment in manifest.deployments().filter(|d| selection.includes(d.app, d.environment)) {
            let observed = self.live(manifest, deployment.environment, selection, &mut live_by_env).await?;
            let record = self.inner.store.deployment(deployment.app, deployment.environment).await?;
            let current = self.release_if_any(record.as_ref().map(|record| record.current_release_id)).await?;
            let build = manifest.apps.get(deployment.app).and_then(|app| app.build.as_ref());
            let built = self.with_built_images(deployment.app, deployment.spec, build).await?;
            let mut plan = observed.plan(deployment.app, deployment.environment, &built.spec, current.as_ref());
            plan.pinned = record.and_then(|record| record.pin);
            plans.push(plan);
        }
        for (env, observed) in &live_by_env {
            for (app, live_app) in &observed.live.apps {
                let declared = manifest.apps.get(app).is_some_and(|declared| declared.specs.contains_key(env));
                if !declared && selection.includes(app, env) && !live_app.replicas.is_empty() {
                    plans.push(planning::unmanaged(app, env, live_app));
                }
            }
        }
        Ok(plans)
    }

    /// Decides, for each selected (app, environment), whether it needs a run, and
    /// creates the release and the run where it does.
    ///
    /// # Rules
    /// - An unfinished run is resumed (or waited for) before anything new starts.
    /// - A pinned app gets nothing newer; only drift from its pinned release is repaired.
    /// - A revision whose last deploy failed, was rolled back or rejected is not deployed
    ///   again until the desired state changes or `retry_failed` asks for it.
    /// - Drift from the last verified release (replicas died, restarted, went missing)
    ///   is repaired toward that release, never toward an unverified one, with a backoff.
    pub async fn prepare_deploys(&self, request: &DeployRequest<'_>) -> Result<Vec<Decision>> {
        let store = &self.inner.store;
        let mut live_by_env: BTreeMap<String, Observed> = BTreeMap::new();
        let mut decisions = Vec::new();
        // Within an environment, an app comes after the apps it depends on, so that its
        // run is created knowing theirs.
        let mut selected: Vec<Deployment<'_>> =
            request.manifest.deployments().filter(|d| request.selection.includes(d.app, d.environment)).collect();
        let mut order: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for env in request.manifest.environments.keys() {
            let apps: Vec<&str> = selected.iter().filter(|d| d.environment == env).map(|d| d.app).collect();
            for (index, app) in request.manifest.in_dependency_order(env, &apps).into_iter().enumerate() {
                order.insert((app, env.as_str()), index);
            }
        }
        selected.sort_by_key(|d| (d.environment, order.get(&(d.app, d.environment)).copied().unwrap_or(usize::MAX)));
        for deployment in selected {
            let (app, env) = (deployment.app, deployment.environment);
            let key = (app.to_owned(), env.to_owned());
            let publication = request.published.iter().find(|published| published.app == app && published.env == env);
            let images =
                ImageSource { promoted: request.images.get(&key), publication, retry_failed: request.retry_failed };
            let desired = match self.desired(request.manifest, app, deployment.spec, images).await? {
                DesiredOutcome::Deploy(desired) => desired,
                DesiredOutcome::Wait(decision) => {
                    decisions.push(decision);
                    continue;
                }
            };
            let source = match publication.filter(|_| desired.published) {
                Some(publication) => publication_source(&request.source, publication),
                None => request.source.clone(),
            };
            let note = desired.held_back.clone();
            let spec = &desired.spec;
            let revision = spec.revision().0;
            let latest = self.latest_run(app, env).await?;
            if let Some(run) = latest.as_ref().filter(|run| !run.state.is_terminal()) {
                let (holder, now) = (self.holder(run), self.now_ms());
                // What it is parked behind matters only when no other process drives it.
                let parked = match held_elsewhere(holder, now) {
                    true => None,
                    false => self.parked_behind(run).await?,
                };
                let same_revision = match parked {
                    Some(_) => store.release(run.release_id).await?.revision == revision,
                    None => false,
                };
                let facts = UnfinishedFacts { run, holder, parked: parked.as_ref(), same_revision, now };
                match on_unfinished(&facts) {
                    OnUnfinished::Decided(decision) => {
                        decisions.push(decision);
                        continue;
                    }
                    OnUnfinished::Supersede => self.supersede(run, &revision).await?,
                }
            }
            let observed = self.live(request.manifest, env, request.selection, &mut live_by_env).await?;
            let Recorded { record, current, good } = self.recorded_releases(app, env).await?;
            let drift_from = |release: &Release| {
                let plan = observed.plan(app, env, &release.spec, current.as_ref());
                (plan.action == PlanAction::Converge).then_some(plan)
            };
            let pin = record.as_ref().and_then(|record| record.pin.clone());
            let pinned = match &pin {
                Some(pin) => Some(store.release(pin.release_id).await?),
                None => None,
            };
            let pinned_drift = pinned.as_ref().and_then(drift_from);
            let mut plan = observed.plan(app, env, spec, current.as_ref());
            if let Some((note, _)) = &note {
                plan.summary = format!("{} ({note})", plan.summary);
            }
            let settled = SettledFacts {
                app,
                env,
                revision: &revision,
                pin: pin
                    .as_ref()
                    .zip(pinned.as_ref())
                    .map(|(pin, release)| (pin, ReleaseDrift { release, drift: pinned_drift.as_ref() })),
                plan: &plan,
                current: current.as_ref(),
                held_back: note.as_ref(),
            };
            // Read only when the change stage decides.
            let (failed_before, good_drift);
            let mut verdict = on_settled(&settled);
            if let Verdict::GoOn = verdict {
                failed_before = match request.retry_failed {
                    true => None,
                    false => self.failed_before(app, env, &revision).await?,
                };
                good_drift = good.as_ref().and_then(drift_from);
                verdict = on_change(&ChangeFacts {
                    app,
                    env,
                    revision: &revision,
                    plan: &plan,
                    good: good.as_ref().map(|release| ReleaseDrift { release, drift: good_drift.as_ref() }),
                    failed_before: failed_before.as_ref(),
                    retry_failed: request.retry_failed,
                });
            }
            match verdict {
                Verdict::Decided(decision) => {
                    decisions.push(decision);
                    continue;
                }
                Verdict::Repair { release, plan } => {
                    decisions.push(self.repair(release, plan.clone(), request, &latest).await?);
                    continue;
                }
                Verdict::Deploy | Verdict::GoOn => {}
            }
            let target = self.environment_target(request.manifest, env)?;
            let approval = request.manifest.environments.get(env).and_then(|environment| environment.approval);
            let new_release = NewRelease {
                app: app.to_owned(),
                env: env.to_owned(),
                spec: spec.clone(),
                target,
                source,
                build: desired.build.clone(),
            };
            let waits_for = self.unfinished_dependencies(request.manifest, app, env).await?;
            let run = RunRequest {
                kind: RunKind::Deploy,
                decided_after: Some(&latest),
                previous: good.as_ref().map(|good| good.id),
                trigger: &request.trigger,
                summary: &plan.summary,
                approval,
                pin: None,
                waits_for,
            };
            match self.create_release_and_run(new_release, run).await {
                Ok(run) => decisions.push(Decision::Started { run: Box::new(run), plan: Box::new(plan) }),
                // Another process created a run for the app since we looked: its run
                // is resumed or waited for like any other.
                Err(EngineError::Store(StoreError::RunInProgress { run_id, .. })) => {
                    decisions.push(self.in_progress(app, env, run_id).await?)
                }
                Err(EngineError::Store(StoreError::DecidedOnStale { .. })) => decisions.push(look_again(app, env)),
                Err(error) => return Err(error),
            }
        }
        Ok(decisions)
    }

    /// A repair run that brings `release` (the last verified one, or the pinned one)
    /// back, unless the app was repaired too recently.
    async fn repair(
        &self,
        release: &Release,
        plan: AppPlan,
        request: &DeployRequest<'_>,
        latest: &Option<Run>,
    ) -> Result<Decision> {
        let (app, env) = (release.app.as_str(), release.env.as_str());
        let now = self.now_ms();
        let filter = RunFilter {
            app: Some(app.to_owned()),
            env: Some(env.to_owned()),
            kind: Some(RunKind::Repair),
            since: Some(now - REPAIR_MEMORY.as_millis() as i64),
            ..RunFilter::default()
        };
        let recent = self.inner.store.runs(&filter).await?;
        if let Some(retry_at) = repair_wait(&recent, request.retry_failed, now) {
            return Ok(Decision::RepairLater {
                app: app.to_owned(),
                env: env.to_owned(),
                reason: format!(
                    "{} ({}); repaired {} time{} in the last hour, last in run {}",
                    plan.summary,
                    release_words(release),
                    recent.len(),
                    if recent.len() == 1 { "" } else { "s" },
                    recent.first().map_or(0, |last| last.id)
                ),
                retry_at,
            });
        }
        let previous = self.verified_before(app, env, &release.revision).await?;
        let summary = format!("repair: {}", plan.summary);
        let run = RunRequest {
            kind: RunKind::Repair,
            decided_after: Some(latest),
            previous: previous.map(|previous| previous.id),
            trigger: &request.trigger,
            summary: &summary,
            approval: None,
            pin: None,
            waits_for: Vec::new(),
        };
        match self.create_run(release, run).await {
            Ok(run) => Ok(Decision::Started { run: Box::new(run), plan: Box::new(plan) }),
            Err(EngineError::Store(StoreError::RunInProgress { run_id, .. })) => {
                self.in_progress(app, env, run_id).await
            }
            Err(EngineError::Store(StoreError::DecidedOnStale { .. })) => Ok(look_again(app, env)),
            Err(error) => Err(error),
        }
    }

    /// The decision for an app whose run another process created first.
    async fn in_progress(&self, app: &str, env: &str, run_id: i64) -> Result<Decision> {
        match self.inner.store.run(run_id).await {
            Ok(run) if !run.state.is_terminal() => Ok(match self.unfinished(&run) {
                // Just created by a live process that is about to drive it.
                Decision::Resume { run } if run.lease_owner.is_none() => busy_elsewhere(app, env, run_id),
                decision => decision,
            }),
            // Finished (or gone) since: look again.
            _ => Ok(busy_elsewhere(app, env, run_id)),
        }
    }

    /// The last run that tried to bring `revision` in (a deploy, or a repair of it),
    /// when it did not succeed: a release that a repair had to roll back failed too.
    async fn failed_before(&self, app: &str, env: &str, revision: &str) -> Result<Option<Run>> {
        let mut last: Option<Run> = None;
        for kind in [RunKind::Deploy, RunKind::Repair] {
            let filter = RunFilter {
                app: Some(app.to_owned()),
                env: Some(env.to_owned()),
                kind: Some(kind),
                limit: Some(1),
                ..RunFilter::default()
            };
            if let Some(run) = self.inner.store.runs(&filter).await?.into_iter().next()
                && last.as_ref().is_none_or(|last| run.id > last.id)
            {
                last = Some(run);
            }
        }
        let Some(last) = last else { return Ok(None) };
        if !last.state.is_unsuccessful() {
            return Ok(None);
        }
        Ok((self.inner.store.release(last.release_id).await?.revision == revision).then_some(last))
    }

    /// Creates a run that returns an app to an earlier, verified release: `request.to`, or
    /// else the verified release deployed before the current one (never one a rollback
    /// moved away from, so rolling back twice goes further back, not forth). The app is
    /// then pinned there (by `request.by`, for its reason): nothing newer deploys until
    /// [`Engine::unpin`].
    ///
    /// # Errors
    /// [`EngineError::Invalid`] when there is nothing to roll back to, or when
    /// `request.from` names a release that no longer runs there (a replayed request, a
    /// second press of a button: it was done already).
    pub async fn prepare_rollback(&self, request: RollbackRequest<'_>) -> Result<Run> {
        let RollbackRequest { app, env, to, from, by, trigger, reason } = request;
        let store = &self.inner.store;
        let Some(record) = store.deployment(app, env).await? else {
            return Err(EngineError::Invalid(format!("nothing has been deployed for {app} in {env}")));
        };
        if let Some(from) = from.filter(|from| *from != record.current_release_id) {
            return Err(EngineError::Invalid(format!(
                "release {from} no longer runs {app} in {env} (release {} does): the rollback from it was done already",
                record.current_release_id
            )));
        }
        let current = store.release(record.current_release_id).await?;
        if current.spec.runs_on_deploy() {
            // Running an older migration again would not undo the newer one.
            return Err(EngineError::Invalid(format!(
                "{app} runs once on deploy (`run: on_deploy`): rolling it back would run an older release of it again, which undoes nothing; deploy a change that does what is needed"
            )));
        }
        let target = match to {
            Some(id) => {
                let release = store.release(id).await?;
                if release.app != app || release.env != env {
                    return Err(EngineError::Invalid(format!(
                        "release {id} is for {} in {}, not {app} in {env}",
                        release.app, release.env
                    )));
                }
                let verified = self.verified_releases(app, env).await?;
                if !verified.iter().any(|verified| verified.revision == release.revision) {
                    return Err(EngineError::Invalid(format!(
                        "release {id} (revision {}) was never verified in {env}, so launchway will not roll back to it; `launchway history --app {app}` lists the runs that succeeded",
                        release.revision
                    )));
                }
                release
            }
            None => self.rollback_target(app, env, &current).await?.ok_or_else(|| {
                EngineError::Invalid(format!(
                    "no release of {app} in {env} deployed before release {} was verified (releases rolled back from do not count), so there is nothing to roll back to; `--to RELEASE` names one",
                    current.id
                ))
            })?,
        };
        if target.revision == current.revision {
            return Err(EngineError::Invalid(format!(
                "{app} in {env} already runs revision {} (release {})",
                current.revision, current.id
            )));
        }
        let summary = format!("roll back, pinning {app} in {env} to this release");
        let run = RunRequest {
            kind: RunKind::Rollback,
            decided_after: None,
            previous: record.good_release_id,
            trigger,
            summary: &summary,
            approval: None,
            pin: Some(NewPin { by: by.to_owned(), reason: reason.map(str::to_owned) }),
            waits_for: Vec::new(),
        };
        self.create_run(&target, run).await
    }

    /// Lifts a manual rollback's pin: the repo's desired state deploys there again (at
    /// the server's next look, or the next `deploy`).
    pub async fn unpin(&self, app: &str, env: &str, by: &str) -> Result<Pin> {
        let event = NewEvent::for_app(
            app,
            env,
            EventBody::Audit { kind: AuditKind::DeploymentUnpinned, data: json!({"by": by}) },
            format!("{app} in {env} unpinned by {by}: the repo's desired state deploys there again"),
        );
        match self.inner.store.unpin(app, env, event).await? {
            Some((pin, event)) => {
                self.announce(&event);
                Ok(pin)
            }
            None => Err(EngineError::Invalid(format!("{app} in {env} is not pinned"))),
        }
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
        let run = RunRequest {
            kind: RunKind::Scheduled,
            decided_after: None,
            previous: record.good_release_id,
            trigger,
            summary: "scheduled run",
            approval: None,
            pin: None,
            waits_for: Vec::new(),
        };
        self.create_run(&release, run).await
    }

    /// Verified releases of (app, env), newest verification first: those of runs that
    /// succeeded (their verify step passed) and those a rollback returned to.
    async fn verified_releases(&self, app: &str, env: &str) -> Result<Vec<Release>> {
        let store = &self.inner.store;
        let runs = store
            .runs(&RunFilter { app: Some(app.to_owned()), env: Some(env.to_owned()), ..RunFilter::default() })
            .await?;
        let mut releases: Vec<Release> = Vec::new();
        for run in runs {
            let verified = match (run.state, run.kind) {
                (_, RunKind::Scheduled) => None,
                (RunState::Succeeded, _) => Some(run.release_id),
                (RunState::RolledBack, _) => run.previous_release_id,
                _ => None,
            };
            if let Some(id) = verified.filter(|id| releases.iter().all(|release| release.id != *id)) {
                releases.push(store.release(id).await?);
            }
        }
        Ok(releases)
    }

    /// Where a rollback from `current` goes by default: the newest verified release
    /// deployed before it (an older release id), with another revision, that no
    /// rollback moved away from.
    async fn rollback_target(&self, app: &str, env: &str, current: &Release) -> Result<Option<Release>> {
        let filter = RunFilter {
            app: Some(app.to_owned()),
            env: Some(env.to_owned()),
            kind: Some(RunKind::Rollback),
            state: Some(RunState::Succeeded),
            ..RunFilter::default()
        };
        // A rollback run's previous release is the one it left (what a failed rollback
        // would return to).
        let rolled_back_from: Vec<ReleaseId> =
            self.inner.store.runs(&filter).await?.iter().filter_map(|run| run.previous_release_id).collect();
        Ok(self
            .verified_releases(app, env)
            .await?
            .into_iter()
            .filter(|release| release.id < current.id && release.revision != current.revision)
            .filter(|release| !rolled_back_from.contains(&release.id))
            .max_by_key(|release| release.id))
    }

    /// The most recently verified release of (app, env) with another revision.
    async fn verified_before(&self, app: &str, env: &str, revision: &str) -> Result<Option<Release>> {
        Ok(self.verified_releases(app, env).await?.into_iter().find(|release| release.revision != revision))
    }

    async fn create_run(&self, release: &Release, request: RunRequest<'_>) -> Result<Run> {
        let (run, event) =
            self.inner.store.create_run(new_run(release, &request), run_created(release, &request)).await?;
        self.announce(&event);
        Ok(run)
    }

    async fn create_release_and_run(&self, release: NewRelease, request: RunRequest<'_>) -> Result<Run> {
        // The release id is not known yet: the store fills it in (`data.release`).
        let draft = Release {
            id: 0,
            app: release.app.clone(),
            env: release.env.clone(),
            revision: release.spec.revision().0,
            spec: release.spec.clone(),
            target: release.target.clone(),
            source: release.source.clone(),
            build: release.build.clone(),
            created_at: 0,
        };
        let (_, run, event) = self
            .inner
            .store
            .create_release_with_run(release, new_run(&draft, &request), run_created(&draft, &request))
            .await?;
        self.announce(&event);
        Ok(run)
    }

    /// Another process drives `run` now, or it is to be resumed.
    fn unfinished(&self, run: &Run) -> Decision {
        busy_or_resume(run, self.holder(run), self.now_ms())
    }

    /// Who holds `run`'s lease, as this process sees it.
    fn holder(&self, run: &Run) -> Holder {
        match (run.lease_owner.as_deref(), run.lease_expires_at) {
            (Some(holder), Some(expires_at)) if holder != self.inner.owner.id => {
                match self.inner.owner.sees_dead(holder) {
                    true => Holder::Dead,
                    false => Holder::Other { expires_at },
                }
            }
            _ => Holder::Nobody,
        }
    }

    /// Unfinished runs nobody alive is driving: what a restarted controller resumes.
    /// Runs parked for approval are not among them: they wait for a decision, and so do
    /// pending runs whose dependencies wait for one.
    pub async fn orphaned_runs(&self) -> Result<Vec<Run>> {
        let runs = self
            .inner
            .store
            .runs(&RunFilter { unfinished_only: true, exclude_parked: true, ..RunFilter::default() })
            .await?;
        let mut orphaned = Vec::new();
        for run in runs {
            if let Decision::Resume { run } = self.unfinished(&run)
                && self.parked_behind(&run).await?.is_none()
            {
                orphaned.push(*run);
            }
        }
        Ok(orphaned)
    }

    /// What the store says of (app, environment): its deployment record, the release
    /// that runs and the last verified one. What decisions and the plan step both read.
    pub(crate) async fn recorded_releases(&self, app: &str, env: &str) -> Result<Recorded> {
        let record = self.inner.store.deployment(app, env).await?;
        let current = self.release_if_any(record.as_ref().map(|record| record.current_release_id)).await?;
        let good = self.release_if_any(record.as_ref().and_then(|record| record.good_release_id)).await?;
        Ok(Recorded { record, current, good })
    }

    /// The release `id` names, when there is one.
    pub(crate) async fn release_if_any(&self, id: Option<ReleaseId>) -> Result<Option<Release>> {
        Ok(match id {
            Some(id) => Some(self.inner.store.release(id).await?),
            None => None,
        })
    }

    /// The unfinished runs of the apps `app` depends on in `env` (created just before,
    /// in dependency order, or still going from earlier): what its new run waits for.
    async fn unfinished_dependencies(&self, manifest: &Manifest, app: &str, env: &str) -> Result<Vec<RunId>> {
        let mut waits_for = Vec::new();
        for dependency in manifest.dependencies_in(app, env) {
            if let Some(run) = self.latest_run(dependency, env).await?.filter(|run| !run.state.is_terminal()) {
                waits_for.push(run.id);
            }
        }
        Ok(waits_for)
    }

    pub(crate) async fn latest_run(&self, app: &str, env: &str) -> Result<Option<Run>> {
        let filter =
            RunFilter { app: Some(app.to_owned()), env: Some(env.to_owned()), limit: Some(1), ..RunFilter::default() };
        Ok(self.inner.store.runs(&filter).await?.into_iter().next())
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
        cache: &'m mut BTreeMap<String, Observed>,
    ) -> Result<&'m Observed> {
        if !cache.contains_key(env) {
            let target = self.target(&self.environment_target(manifest, env)?).await?;
            let apps: Vec<AppRef<'_>> = manifest
                .deployments()
                .filter(|deployment| deployment.environment == env && selection.includes(deployment.app, env))
                .map(|deployment| AppRef { app: deployment.app, spec: deployment.spec })
                .collect();
            let live = target.observe(env, &apps).await?;
            cache.insert(env.to_owned(), Observed { target, live });
        }
        Ok(&cache[env])
    }
}

/// A published release's source: the config commit, authored by the application
/// commit's author (whom the approval author rule is about), else by the publisher.
fn publication_source(config: &ReleaseSource, publication: &Published) -> ReleaseSource {
    let built_from = match (&publication.commit, &publication.author) {
        (Some(commit), Some(author)) => format!(" from commit {} by {author}", &commit[..commit.len().min(12)]),
        (Some(commit), None) => format!(" from commit {}", &commit[..commit.len().min(12)]),
        (None, Some(author)) => format!(" for a change by {author}"),
        (None, None) => String::new(),
    };
    ReleaseSource {
        author: Some(publication.author.clone().unwrap_or_else(|| publication.published_by.clone())),
        origin: Some(format!("images published by {}{built_from}", publication.published_by)),
        ..config.clone()
    }
}

/// Another process created a run for the app since this one decided: the caller looks
/// again (the CLI shortly, the server at its next reconcile).
/// Another process is deciding or driving the app's run (`run_id` 0: not known yet).
fn busy_elsewhere(app: &str, env: &str, run_id: i64) -> Decision {
    Decision::Busy { app: app.to_owned(), env: env.to_owned(), run_id, owner: "another process".to_owned() }
}

fn look_again(app: &str, env: &str) -> Decision {
    busy_elsewhere(app, env, 0)
}

/// "release 4 (revision 1a2b3c4d5e6f)"
fn release_words(release: &Release) -> String {
    format!("release {} (revision {})", release.id, release.revision)
}

fn new_run(release: &Release, request: &RunRequest<'_>) -> NewRun {
    NewRun {
        app: release.app.clone(),
        env: release.env.clone(),
        kind: request.kind,
        release_id: release.id,
        previous_release_id: request.previous,
        trigger: request.trigger.to_owned(),
        approval_policy: request.approval,
        pin: request.pin.clone(),
        decided_after: request.decided_after.map(|latest| latest.as_ref().map_or(0, |run| run.id)),
        waits_for: request.waits_for.clone(),
    }
}

/// The `run.created` event. A release not yet stored (id 0) is named by its revision.
fn run_created(release: &Release, request: &RunRequest<'_>) -> NewEvent {
    let commit = release
        .source
        .commit
        .as_deref()
        .map(|commit| format!(" from commit {}", &commit[..commit.len().min(10)]))
        .unwrap_or_default();
    let what = if release.id == 0 { format!("revision {}", release.revision) } else { release_words(release) };
    let created = RunCreated {
        release: release.id,
        revision: release.revision.clone(),
        trigger: request.trigger.to_owned(),
        kind: request.kind,
    };
    NewEvent::for_app(
        &release.app,
        &release.env,
        EventBody::RunCreated(created),
        format!("{} {what}{commit}: {}", request.kind.as_str(), request.summary),
    )
}
