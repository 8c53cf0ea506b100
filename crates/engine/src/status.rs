//! What runs where: each (app, environment) with its health, read from the target,
//! and whether it is what the repo asks for. What cannot be read is "unknown", never a
//! guess from the database.

use std::collections::BTreeMap;
use std::sync::Arc;

use launchway_manifest::{AppSpec, EnvSource, Manifest, TargetSpec};
use launchway_store::{DeploymentRecord, Release, Run, RunKind, RunState, Store};
use launchway_target::planning::{Deployed, PlanRequest};
use launchway_target::{AppRef, ContainerLogs, LiveApp, ReplicaState, Target, describe};
use serde::{Deserialize, Serialize};

use crate::decide::runs_as_desired;
use crate::desired::{DesiredOutcome, ImageSource};
use crate::{Engine, Result, Selection};

/// How an app is doing where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Everything it should run runs, as verified.
    Healthy,
    /// Some of it is down, restarting, missing or left over.
    Degraded,
    /// A run is changing it.
    Progressing,
    /// Nothing of it serves.
    Failed,
    /// It is not deployed there.
    Missing,
    /// Live state could not be read: launchway does not guess.
    Unknown,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Progressing => "progressing",
            HealthState::Failed => "failed",
            HealthState::Missing => "missing",
            HealthState::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHealth {
    pub state: HealthState,
    /// "3/3 running", "2/3 running; web-dev-1f2e-1 exited (code 3)", "cannot reach …".
    pub summary: String,
}

/// Whether what runs is what the repo asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    InSync,
    OutOfSync,
    /// Held at a release by a manual rollback.
    Pinned,
    /// The repo or live state could not be read.
    Unknown,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::InSync => "in sync",
            SyncState::OutOfSync => "out of sync",
            SyncState::Pinned => "pinned",
            SyncState::Unknown => "unknown",
        }
    }
}

/// One (app, environment) as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    pub app: String,
    pub env: String,
    pub deployment: Option<DeploymentRecord>,
    pub current_release: Option<Release>,
    pub live: Option<LiveApp>,
    pub last_run: Option<Run>,
    /// The desired revision, when the config repo was read.
    pub desired_revision: Option<String>,
    /// Why live state could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_error: Option<String>,
    pub health: AppHealth,
    pub sync: SyncState,
    /// Why it is out of sync (what a deploy would do, or why it does not), or why sync
    /// is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_reason: Option<String>,
}

impl Engine {
    /// The last `lines` lines of each container of an app where it runs: on the target
    /// of its environment in `manifest`, else of the release it runs; found by the spec of
    /// the release it runs, else the manifest's.
    pub async fn recent_logs(
        &self,
        manifest: Option<&Manifest>,
        app: &str,
        env: &str,
        lines: usize,
    ) -> Result<Vec<ContainerLogs>> {
        let store = &self.inner.store;
        let running = match store.deployment(app, env).await? {
            Some(record) => Some(store.release(record.current_release_id).await?),
            None => None,
        };
        let declared_target = manifest.and_then(|manifest| Some(manifest.environments.get(env)?.target.clone()));
        let declared_spec = manifest.and_then(|manifest| Some((**manifest.apps.get(app)?.specs.get(env)?).clone()));
        let (target, spec) = match (running, declared_target, declared_spec) {
            (Some(release), target, _) => (target.unwrap_or(release.target), release.spec),
            (None, Some(target), Some(spec)) => (target, spec),
            _ => {
                return Err(crate::EngineError::Invalid(format!(
                    "{app} is not deployed in {env}, and the manifest does not declare it there"
                )));
            }
        };
        let target = self.target(&target).await?;
        Ok(target.recent_logs(env, AppRef { app, spec: &spec }, lines).await?)
    }

    /// Status of every (app, environment) deployed or, with a manifest, declared: what
    /// runs, how healthy it is and whether it is what launchway would deploy now (the
    /// manifest with CI's publications, promotions and builds applied; the same rule
    /// as deploy decisions, see `desired.rs`). Live state or desired state that cannot
    /// be read makes sync (and, for live state, health) "unknown", never a guess.
    pub async fn status(&self, sources: &DesiredSources<'_>, selection: &Selection) -> Result<Vec<AppStatus>> {
        let store = &self.inner.store;
        let (deployments, latest_runs, published) =
            tokio::join!(store.deployments(), store.latest_runs(), store.published_images());
        let published = published?;
        let mut records: BTreeMap<(String, String), DeploymentRecord> = BTreeMap::new();
        for record in deployments? {
            records.insert((record.app.clone(), record.env.clone()), record);
        }
        // Every pair deployed, and every pair the manifest (of its environment) declares.
        let mut pairs: BTreeMap<(String, String), Option<&AppSpec>> =
            records.keys().map(|pair| (pair.clone(), None)).collect();
        for env in sources.environments() {
            let Some(Some(manifest)) = sources.manifest_for(env) else { continue };
            for deployment in manifest.deployments().filter(|deployment| deployment.environment == env) {
                pairs.insert((deployment.app.to_owned(), env.to_owned()), Some(deployment.spec));
            }
        }
        pairs.retain(|(app, env), _| selection.includes(app, env));

        // What each pair runs and where, before anything is looked at.
        struct Pending<'a> {
            app: String,
            env: String,
            declared: Option<&'a AppSpec>,
            deployment: Option<DeploymentRecord>,
            current_release: Option<Release>,
            target: Option<TargetSpec>,
        }
        // Releases are read at once: those running, and the verified ones that
        // environments promoted from would carry on.
        let mut wanted: Vec<i64> =
            pairs.keys().filter_map(|pair| records.get(pair).map(|record| record.current_release_id)).collect();
        let promoted_from: Vec<&str> =
            sources.environments().into_iter().filter_map(|env| sources.promoted_from(env)).collect();
        wanted.extend(
            records
                .values()
                .filter(|record| promoted_from.contains(&record.env.as_str()))
                .filter_map(|record| record.good_release_id),
        );
        wanted.sort_unstable();
        wanted.dedup();
        let releases: BTreeMap<i64, Release> = self.inner.releases.read(store.as_ref(), &wanted).await?;
        let mut latest_runs: BTreeMap<(String, String), Run> =
            latest_runs?.into_iter().map(|run| ((run.app.clone(), run.env.clone()), run)).collect();
        let mut pending = Vec::with_capacity(pairs.len());
        for ((app, env), declared) in pairs {
            let deployment = records.get(&(app.clone(), env.clone())).cloned();
            let current_release = match deployment.as_ref() {
                Some(record) => Some(match releases.get(&record.current_release_id) {
                    Some(release) => release.clone(),
                    None => store.release(record.current_release_id).await?,
                }),
                None => None,
            };
            let target = sources
                .manifest_for(&env)
                .flatten()
                .and_then(|manifest| manifest.environments.get(&env))
                .map(|environment| environment.target.clone())
                .or_else(|| current_release.as_ref().map(|release| release.target.clone()));
            pending.push(Pending { app, env, declared, deployment, current_release, target });
        }

        // Live state: one look per environment and target, for all of its apps (a board
        // of a thousand apps asks the Docker engine three times, not three thousand).
        let specs: Vec<Option<&AppSpec>> = pending
            .iter()
            .map(|item| item.current_release.as_ref().map(|release| &release.spec).or(item.declared))
            .collect();
        let mut groups: BTreeMap<(String, String), (TargetSpec, Vec<usize>)> = BTreeMap::new();
        for (index, item) in pending.iter().enumerate() {
            if let (Some(target), Some(_)) = (&item.target, &specs[index]) {
                let key = (item.env.clone(), serde_json::to_string(target).unwrap_or_default());
                groups.entry(key).or_insert_with(|| (target.clone(), Vec::new())).1.push(index);
            }
        }
        let mut looked: Vec<(Option<LiveApp>, Option<String>)> = vec![(None, None); pending.len()];
        let mut planners: Vec<Option<Arc<dyn Target>>> = vec![None; pending.len()];
        for ((env, _), (target, members)) in groups {
            let apps: Vec<AppRef<'_>> = members
                .iter()
                .filter_map(|&index| Some(AppRef { app: &pending[index].app, spec: specs[index]? }))
                .collect();
            let observed = match self.target(&target).await {
                Ok(target) => match target.observe(&env, &apps).await {
                    Ok(live) => Ok((target, live)),
                    Err(error) => Err(describe(&error)),
                },
                Err(error) => Err(describe(&error)),
            };
            match observed {
                Ok((target, mut live)) => {
                    for &index in &members {
                        looked[index].0 = live.apps.remove(&pending[index].app);
                        planners[index] = Some(target.clone());
                    }
                }
                Err(error) => {
                    for &index in &members {
                        looked[index].1 = Some(error.clone());
                    }
                }
            }
        }

        let mut statuses = Vec::with_capacity(pending.len());
        for ((item, (live, live_error)), planner) in pending.into_iter().zip(looked).zip(planners) {
            let last_run = latest_runs.remove(&(item.app.clone(), item.env.clone()));
            let health = health(item.current_release.as_ref(), live.as_ref(), live_error.as_deref(), last_run.as_ref());
            let promoted = sources.promoted_from(&item.env).and_then(|from| {
                let record = records.get(&(item.app.clone(), from.to_owned()))?;
                let good = releases.get(&record.good_release_id?)?;
                Some(good.spec.images().into_iter().map(|(c, i)| (c.to_owned(), i.to_owned())).collect())
            });
            let looked = Looked {
                record: item.deployment.as_ref(),
                current: item.current_release.as_ref(),
                live: live.as_ref(),
                live_error: live_error.as_deref(),
                planner: planner.as_deref(),
            };
            let (sync, desired_revision, sync_reason) = match sources.manifest_for(&item.env) {
                Some(Some(manifest)) => {
                    let images = ImageSource {
                        promoted: promoted.as_ref(),
                        publication: published.iter().find(|p| p.app == item.app && p.env == item.env),
                        retry_failed: false,
                    };
                    self.sync_of(manifest, &item.app, &item.env, item.declared, images, &looked).await?
                }
                Some(None) | None => {
                    let why = sources.unreadable.clone().unwrap_or_else(|| {
                        format!(
                            "the desired state of {} could not be read (its branch or tag has no commit yet)",
                            item.env
                        )
                    });
                    (looked.pinned().unwrap_or(SyncState::Unknown), None, Some(why))
                }
            };
            statuses.push(AppStatus {
                app: item.app,
                env: item.env,
                deployment: item.deployment,
                current_release: item.current_release,
                live,
                last_run,
                desired_revision,
                live_error,
                health,
                sync,
                sync_reason,
            });
        }
        Ok(statuses)
    }

    /// Whether one pair runs what launchway would deploy now: the sync, the revision it
    /// would deploy, and why it is not in sync (or cannot be told).
    async fn sync_of(
        &self,
        manifest: &Manifest,
        app: &str,
        env: &str,
        declared: Option<&AppSpec>,
        images: ImageSource<'_>,
        looked: &Looked<'_>,
    ) -> Result<(SyncState, Option<String>, Option<String>)> {
        let Some(declared) = declared else {
            let why = format!("the manifest no longer declares {app} in {env}; launchway leaves what runs there alone");
            return Ok((looked.pinned().unwrap_or(SyncState::OutOfSync), None, Some(why)));
        };
        let desired = match self.desired(manifest, app, declared, images).await? {
            DesiredOutcome::Deploy(desired) => desired,
            DesiredOutcome::Wait(decision) => {
                let why = match decision {
                    crate::Decision::Skipped { reason, .. } => reason,
                    _ => "it waits for a new publication".to_owned(),
                };
                return Ok((looked.pinned().unwrap_or(SyncState::OutOfSync), None, Some(why)));
            }
        };
        let revision = desired.spec.revision().0;
        if let Some(pinned) = looked.pinned() {
            return Ok((pinned, Some(revision), None));
        }
        if let Some(error) = looked.live_error {
            return Ok((SyncState::Unknown, Some(revision), Some(format!("cannot read live state: {error}"))));
        }
        let Some(planner) = looked.planner else {
            return Ok((SyncState::Unknown, Some(revision), Some("its target could not be asked".to_owned())));
        };
        let plan = planner.plan(PlanRequest {
            app,
            env,
            desired: &desired.spec,
            live: looked.live,
            current: looked.current.map(|release| Deployed { revision: &release.revision, spec: &release.spec }),
        });
        let why = if let Some((held_back, _)) = desired.held_back {
            Some(held_back)
        } else if runs_as_desired(&plan, looked.current, &revision) {
            None
        } else if plan.is_no_op() && !plan.changes.is_empty() {
            let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
            Some(format!(
                "nothing changes on the target, but launchway's own settings do ({}): the next deploy records and verifies them",
                changes.join("; ")
            ))
        } else if plan.is_no_op() {
            Some(match looked.current {
                Some(current) => format!(
                    "what runs matches revision {revision}, but launchway deployed it as release {} (revision {}): the next deploy records it",
                    current.id, current.revision
                ),
                None => format!("what runs matches revision {revision}, which launchway has not deployed yet"),
            })
        } else {
            Some(plan.summary)
        };
        let sync = if why.is_none() { SyncState::InSync } else { SyncState::OutOfSync };
        Ok((sync, Some(revision), why))
    }
}

/// Where `status` reads desired state from.
#[derive(Debug, Clone, Default)]
pub struct DesiredSources<'a> {
    /// The manifest environments deploy from, unless `by_env` names another; `None`
    /// when it could not be read (`unreadable` says why).
    pub manifest: Option<&'a Manifest>,
    /// Environments that deploy from a commit of their own (a branch, the newest tag
    /// matching a pattern): the manifest there, or `None` when there is none yet.
    pub by_env: BTreeMap<String, Option<&'a Manifest>>,
    /// Why the config repo could not be read, when it could not.
    pub unreadable: Option<String>,
}

impl<'a> DesiredSources<'a> {
    /// Desired state from one manifest for every environment (the CLI's `--ref`).
    pub fn manifest(manifest: &'a Manifest) -> DesiredSources<'a> {
        DesiredSources { manifest: Some(manifest), ..DesiredSources::default() }
    }

    /// No desired state: the config repo could not be read, for `why`.
    pub fn unreadable(why: impl Into<String>) -> DesiredSources<'a> {
        DesiredSources { unreadable: Some(why.into()), ..DesiredSources::default() }
    }

    /// The manifest `env` deploys from: `None` when nothing says, `Some(None)` when its
    /// source has nothing to read.
    fn manifest_for(&self, env: &str) -> Option<Option<&'a Manifest>> {
        match self.by_env.get(env) {
            Some(manifest) => Some(*manifest),
            None => self.manifest.map(Some),
        }
    }

    /// Every environment the sources declare.
    fn environments(&self) -> Vec<&'a str> {
        let mut environments: Vec<&'a str> =
            self.manifest.iter().flat_map(|manifest| manifest.environments.keys().map(String::as_str)).collect();
        for manifest in self.by_env.values().flatten() {
            environments.extend(manifest.environments.keys().map(String::as_str));
        }
        environments.sort_unstable();
        environments.dedup();
        environments
    }

    /// The environment `env` is promoted from, when it changes only by promotion.
    fn promoted_from(&self, env: &str) -> Option<&'a str> {
        let environment = self.manifest_for(env).flatten()?.environments.get(env)?;
        match &environment.source {
            EnvSource::Promotion { from } => Some(from.as_str()),
            _ => None,
        }
    }
}

/// What `status` found of one pair.
struct Looked<'a> {
    record: Option<&'a DeploymentRecord>,
    current: Option<&'a Release>,
    live: Option<&'a LiveApp>,
    live_error: Option<&'a str>,
    /// The target that observed it, which plans it.
    planner: Option<&'a dyn Target>,
}

impl Looked<'_> {
    /// `Pinned`, when a manual rollback holds the pair.
    fn pinned(&self) -> Option<SyncState> {
        self.record.is_some_and(|record| record.pin.is_some()).then_some(SyncState::Pinned)
    }
}

/// Health from what runs, against the release that should be running.
fn health(
    current: Option<&Release>,
    live: Option<&LiveApp>,
    live_error: Option<&str>,
    last_run: Option<&Run>,
) -> AppHealth {
    let said = |state: HealthState, summary: String| AppHealth { state, summary };
    if let Some(run) = last_run.filter(|run| !run.state.is_terminal() && run.state != RunState::AwaitingApproval) {
        return said(HealthState::Progressing, format!("run {} is {}", run.id, run.state));
    }
    if let Some(error) = live_error {
        return said(HealthState::Unknown, format!("cannot read live state: {error}"));
    }
    let Some(current) = current else {
        return said(HealthState::Missing, "not deployed yet".to_owned());
    };
    let empty = LiveApp::default();
    let live = live.unwrap_or(&empty);
    match &current.spec {
        AppSpec::Service(service) => {
            let desired = service.replicas;
            let ours: Vec<_> = live.replicas.iter().filter(|r| r.revision == current.revision).collect();
            let running = ours.iter().filter(|r| r.state == ReplicaState::Running).count() as u32;
            let mut problems = Vec::new();
            for replica in &ours {
                match &replica.state {
                    ReplicaState::Stopped { exit_code } => problems.push(format!(
                        "{} is not running{}",
                        replica.name,
                        exit_code.map(|code| format!(" (exit code {code})")).unwrap_or_default()
                    )),
                    ReplicaState::Running if replica.restarts > 0 => problems.push(format!(
                        "{} restarted {} time{} after crashing",
                        replica.name,
                        replica.restarts,
                        if replica.restarts == 1 { "" } else { "s" }
                    )),
                    ReplicaState::Running => {}
                }
            }
            if let Some(entry) = live.entry_point.as_ref().filter(|entry| !entry.answering) {
                problems.push(format!("the entry point does not answer ({})", entry.what));
            }
            let others = live.replicas.len() - ours.len();
            if others > 0 {
                problems.push(format!("{others} replica{} of another revision", if others == 1 { "" } else { "s" }));
            }
            let mut summary = format!("{running}/{desired} running");
            for problem in &problems {
                summary.push_str("; ");
                summary.push_str(problem);
            }
            let state = if desired > 0 && running == 0 {
                HealthState::Failed
            } else if running < desired || !problems.is_empty() {
                HealthState::Degraded
            } else {
                HealthState::Healthy
            };
            said(state, summary)
        }
        AppSpec::Task(task) if task.schedule.is_none() => match last_run {
            Some(run) if run.state == RunState::Failed => said(
                HealthState::Degraded,
                format!("its last run ({}) failed: {}", run.id, run.reason.as_deref().unwrap_or("")),
            ),
            _ => said(HealthState::Healthy, format!("ran once for release {}", current.id)),
        },
        AppSpec::Task(_) => match last_run.filter(|run| run.kind == RunKind::Scheduled) {
            Some(run) if run.state == RunState::Failed => said(
                HealthState::Degraded,
                format!("its last scheduled run ({}) failed: {}", run.id, run.reason.as_deref().unwrap_or("")),
            ),
            _ => said(HealthState::Healthy, "runs on its schedule".to_owned()),
        },
        AppSpec::EcsService(_) | AppSpec::EcsTask(_) => match &live.definition {
            None => said(HealthState::Failed, "not found on ECS".to_owned()),
            Some(definition) if definition.failed => said(HealthState::Failed, definition.status.clone()),
            Some(definition) => {
                let short =
                    definition.running.zip(definition.desired).is_some_and(|(running, desired)| running < desired);
                let state = match (definition.steady, short) {
                    (true, false) => HealthState::Healthy,
                    (true, true) => HealthState::Degraded,
                    (false, _) => HealthState::Progressing,
                };
                said(state, definition.status.clone())
            }
        },
    }
}

/// Releases by id, kept once read (they are immutable). Bounded: past [`Self::CAPACITY`]
/// entries it starts again empty, which costs one slower call.
#[derive(Default)]
pub(crate) struct ReleaseCache {
    by_id: std::sync::Mutex<std::collections::HashMap<i64, Release>>,
}

impl ReleaseCache {
    const CAPACITY: usize = 50_000;

    /// The releases with these ids, from memory where it can and from the store in one
    /// query for the rest.
    pub(crate) async fn read(&self, store: &dyn Store, ids: &[i64]) -> Result<BTreeMap<i64, Release>> {
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let by_id = self.by_id.lock().expect("release cache");
            for id in ids {
                match by_id.get(id) {
                    Some(release) => {
                        found.insert(*id, release.clone());
                    }
                    None => missing.push(*id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let read = store.releases(&missing).await?;
        let mut by_id = self.by_id.lock().expect("release cache");
        if by_id.len() + read.len() > Self::CAPACITY {
            by_id.clear();
        }
        for release in read {
            by_id.insert(release.id, release.clone());
            found.insert(release.id, release);
        }
        Ok(found)
    }
}
