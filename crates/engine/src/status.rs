//! What runs where: each (app, environment) with its health, read from the target,
//! and whether it is what the repo asks for. What cannot be read is "unknown", never a
//! guess from the database.

use std::collections::BTreeMap;

use launchway_manifest::{AppSpec, Manifest, TargetSpec};
use launchway_store::{DeploymentRecord, Release, Run, RunKind, RunState, Store};
use launchway_target::{AppRef, ContainerLogs, LiveApp, ReplicaState, describe};
use serde::{Deserialize, Serialize};

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
    /// runs, how healthy it is and whether it is what the repo asks for. Live state that
    /// cannot be read makes health and sync "unknown", never a guess.
    pub async fn status(&self, manifest: Option<&Manifest>, selection: &Selection) -> Result<Vec<AppStatus>> {
        let store = &self.inner.store;
        // The store's answers come from its own threads: asked first (`biased`: in this
        // order), they arrive while this task hashes the manifest's specs (thousands on a
        // big board).
        let desired = async {
            let mut desired: BTreeMap<(String, String), String> = BTreeMap::new();
            if let Some(manifest) = manifest {
                for deployment in manifest.deployments() {
                    // Apps that build their images want what was built: read below.
                    let builds = manifest.apps.get(deployment.app).is_some_and(|app| app.build.is_some());
                    if selection.includes(deployment.app, deployment.environment) && !builds {
                        desired.insert(
                            (deployment.app.to_owned(), deployment.environment.to_owned()),
                            deployment.spec.revision().0,
                        );
                    }
                }
            }
            desired
        };
        let (deployments, latest_runs, mut desired) =
            tokio::join!(biased; store.deployments(), store.latest_runs(), desired);
        for deployment in manifest.iter().flat_map(|manifest| manifest.deployments()) {
            let build = manifest.and_then(|manifest| manifest.apps.get(deployment.app)?.build.as_ref());
            if build.is_some() && selection.includes(deployment.app, deployment.environment) {
                let built = self.with_built_images(deployment.app, deployment.spec, build).await?;
                desired.insert((deployment.app.to_owned(), deployment.environment.to_owned()), built.spec.revision().0);
            }
        }
        let mut records: BTreeMap<(String, String), DeploymentRecord> = BTreeMap::new();
        for record in deployments? {
            records.insert((record.app.clone(), record.env.clone()), record);
        }
        let mut pairs: BTreeMap<(String, String), Option<String>> =
            records.keys().map(|pair| (pair.clone(), None)).collect();
        for (pair, revision) in desired {
            pairs.insert(pair, Some(revision));
        }
        pairs.retain(|(app, env), _| selection.includes(app, env));

        // What each pair runs and where, before anything is looked at.
        struct Pending {
            app: String,
            env: String,
            desired_revision: Option<String>,
            deployment: Option<DeploymentRecord>,
            current_release: Option<Release>,
            target: Option<TargetSpec>,
        }
        let wanted: Vec<i64> =
            pairs.keys().filter_map(|pair| records.get(pair).map(|record| record.current_release_id)).collect();
        let mut releases: BTreeMap<i64, Release> = self.inner.releases.read(store.as_ref(), &wanted).await?;
        let mut latest_runs: BTreeMap<(String, String), Run> =
            latest_runs?.into_iter().map(|run| ((run.app.clone(), run.env.clone()), run)).collect();
        let mut pending = Vec::with_capacity(pairs.len());
        for ((app, env), desired_revision) in pairs {
            let deployment = records.remove(&(app.clone(), env.clone()));
            let current_release = match deployment.as_ref() {
                Some(record) => Some(match releases.remove(&record.current_release_id) {
                    Some(release) => release,
                    // Two pairs never share a release; read again rather than guess.
                    None => store.release(record.current_release_id).await?,
                }),
                None => None,
            };
            let target = manifest
                .and_then(|manifest| manifest.environments.get(&env))
                .map(|environment| environment.target.clone())
                .or_else(|| current_release.as_ref().map(|release| release.target.clone()));
            pending.push(Pending { app, env, desired_revision, deployment, current_release, target });
        }

        // Live state: one look per environment and target, for all of its apps (a board
        // of a thousand apps asks the Docker engine three times, not three thousand).
        let spec_of = |item: &Pending| -> Option<AppSpec> {
            item.current_release.as_ref().map(|release| release.spec.clone()).or_else(|| {
                manifest.and_then(|manifest| {
                    manifest.apps.get(&item.app)?.specs.get(&item.env).map(|spec| (**spec).clone())
                })
            })
        };
        let specs: Vec<Option<AppSpec>> = pending.iter().map(spec_of).collect();
        let mut groups: BTreeMap<(String, String), (TargetSpec, Vec<usize>)> = BTreeMap::new();
        for (index, item) in pending.iter().enumerate() {
            if let (Some(target), Some(_)) = (&item.target, &specs[index]) {
                let key = (item.env.clone(), serde_json::to_string(target).unwrap_or_default());
                groups.entry(key).or_insert_with(|| (target.clone(), Vec::new())).1.push(index);
            }
        }
        let mut looked: Vec<(Option<LiveApp>, Option<String>)> = vec![(None, None); pending.len()];
        for ((env, _), (target, members)) in groups {
            let apps: Vec<AppRef<'_>> = members
                .iter()
                .filter_map(|&index| Some(AppRef { app: &pending[index].app, spec: specs[index].as_ref()? }))
                .collect();
            let observed = match self.target(&target).await {
                Ok(target) => target.observe(&env, &apps).await.map_err(|error| describe(&error)),
                Err(error) => Err(describe(&error)),
            };
            match observed {
                Ok(mut live) => {
                    for &index in &members {
                        looked[index].0 = live.apps.remove(&pending[index].app);
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
        for (item, (live, live_error)) in pending.into_iter().zip(looked) {
            let last_run = latest_runs.remove(&(item.app.clone(), item.env.clone()));
            let health = health(item.current_release.as_ref(), live.as_ref(), live_error.as_deref(), last_run.as_ref());
            let sync = sync_state(
                item.deployment.as_ref(),
                item.current_release.as_ref(),
                item.desired_revision.as_deref(),
                live.as_ref(),
                live_error.is_some(),
            );
            statuses.push(AppStatus {
                app: item.app,
                env: item.env,
                deployment: item.deployment,
                current_release: item.current_release,
                live,
                last_run,
                desired_revision: item.desired_revision,
                live_error,
                health,
                sync,
            });
        }
        Ok(statuses)
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

fn sync_state(
    record: Option<&DeploymentRecord>,
    current: Option<&Release>,
    desired: Option<&str>,
    live: Option<&LiveApp>,
    live_unknown: bool,
) -> SyncState {
    if record.is_some_and(|record| record.pin.is_some()) {
        return SyncState::Pinned;
    }
    let Some(desired) = desired else { return SyncState::Unknown };
    if live_unknown {
        return SyncState::Unknown;
    }
    let Some(current) = current.filter(|current| current.revision == desired) else {
        return SyncState::OutOfSync;
    };
    // Replicas of another revision still running (Docker) are not what the repo says.
    let stray = live.is_some_and(|live| live.replicas.iter().any(|replica| replica.revision != current.revision));
    if stray { SyncState::OutOfSync } else { SyncState::InSync }
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
