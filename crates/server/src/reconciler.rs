//! The reconciler: from changes (a poll, a push, a publication, a verified release) to
//! runs, which it hands to the [`Runtime`] to drive.
//!
//! Reconciling is idempotent — the engine creates a run only where desired state
//! differs from what runs and no run is under way — so triggers can overlap, repeat or
//! be lost to a crash without harm: the next poll puts everything right. Reconciles are
//! serialised so that two triggers never race to create the same run.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use launchway_engine::{Decision, DeployRequest, Engine, ImageOverrides, Selection};
use launchway_manifest::{EnvSource, Loader, Manifest, tag_matches, tag_version};
use launchway_source::{Commit, RepoThread};
use launchway_store::{AuditKind, EventBody, NewEvent, Published, ReleaseSource, Run, RunKind, RunState};
use tokio::sync::mpsc;

use crate::runtime::Runtime;

/// Manifests kept parsed, by commit: the heads of the branches and tags in use.
const MANIFEST_CACHE: usize = 2;

/// What a reconcile looks at.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Refs that were pushed: only environments fed by one of them. `None`: all.
    pub pushed_refs: Option<Vec<String>>,
    pub env: Option<String>,
    pub apps: Vec<String>,
    /// Deploy again what failed before (a publication's retry).
    pub retry: bool,
}

/// What environments deploy from: see [`Reconciler::desired_snapshots`].
pub struct DesiredSnapshots {
    pub latest: Option<Arc<Snapshot>>,
    pub by_env: BTreeMap<String, Option<Arc<Snapshot>>>,
}

/// Desired state at one commit.
#[derive(Debug)]
pub struct Snapshot {
    pub commit: Commit,
    pub manifest: Manifest,
}

pub struct Reconciler {
    runtime: Arc<Runtime>,
    repo: RepoThread,
    /// The branch environments with the default source follow.
    branch: String,
    /// Serialises reconciles.
    reconciling: tokio::sync::Mutex<()>,
    manifests: Mutex<VecDeque<Arc<Snapshot>>>,
    /// Commits whose manifest was found invalid, reported once each.
    reported_invalid: Mutex<HashSet<String>>,
    /// Parses again only the manifest files a commit changed (a push, usually one).
    loader: Arc<Mutex<Loader>>,
    /// The default branch's desired state, as last read.
    latest: Mutex<Option<Arc<Snapshot>>>,
    /// Per environment, the desired state last reconciled: a push then only looks at
    /// the apps it changed.
    reconciled: Mutex<BTreeMap<String, Arc<Snapshot>>>,
    /// (app, env) with a change that arrived while a run here had the app.
    deferred: Mutex<HashSet<(String, String)>>,
}

impl Reconciler {
    pub fn new(runtime: Arc<Runtime>, repo: RepoThread, branch: String) -> Reconciler {
        Reconciler {
            runtime,
            repo,
            branch,
            reconciling: tokio::sync::Mutex::new(()),
            manifests: Mutex::new(VecDeque::new()),
            reported_invalid: Mutex::new(HashSet::new()),
            loader: Arc::new(Mutex::new(Loader::default())),
            latest: Mutex::new(None),
            reconciled: Mutex::new(BTreeMap::new()),
            deferred: Mutex::new(HashSet::new()),
        }
    }

    pub fn engine(&self) -> &Engine {
        self.runtime.engine()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The default branch's desired state as last read.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.lock().expect("not poisoned").clone()
    }

    /// What each environment deploys from, as last read: the default branch's
    /// snapshot, and for each environment fed by a branch or tags of its own, the
    /// snapshot of that commit (`None` while it has none).
    pub fn desired_snapshots(&self) -> DesiredSnapshots {
        let latest = self.latest();
        let reconciled = self.reconciled.lock().expect("not poisoned");
        let by_env = latest
            .iter()
            .flat_map(|snapshot| &snapshot.manifest.environments)
            .filter(|(_, environment)| matches!(environment.source, EnvSource::Branch { .. } | EnvSource::Tags { .. }))
            .map(|(name, _)| (name.clone(), reconciled.get(name).cloned()))
            .collect();
        DesiredSnapshots { latest, by_env }
    }

    /// Fetches the config repo and creates the runs `scope` calls for; starts them.
    pub async fn reconcile(self: &Arc<Self>, scope: &Scope, trigger: &str) -> Result<Vec<Decision>> {
        let _one_at_a_time = self.reconciling.lock().await;
        self.repo.call(|repo| repo.fetch()).await.context("could not fetch the config repo")?;
        let head = self
            .resolve(&format!("refs/heads/{}", self.branch))
            .await
            .with_context(|| format!("the config repo has no branch {}", self.branch))?;
        let Some(default) = self.snapshot(head).await? else {
            return Ok(Vec::new());
        };
        *self.latest.lock().expect("not poisoned") = Some(default.clone());

        let published = self.engine().store().published_images().await?;
        let mut decisions = Vec::new();
        for (name, environment) in &default.manifest.environments {
            if scope.env.as_ref().is_some_and(|env| env != name) {
                continue;
            }
            if let Some(refs) = &scope.pushed_refs
                && !refs.iter().any(|pushed| environment.source.accepts(pushed, &self.branch))
            {
                continue;
            }
            let commit = match &environment.source {
                EnvSource::DefaultBranch => Some(default.commit.clone()),
                EnvSource::Branch { name: branch } => self.resolve(&format!("refs/heads/{branch}")).await.ok(),
                EnvSource::Tags { pattern } => self.newest_tag(pattern).await?,
                // Changes only by promotion.
                EnvSource::Promotion { .. } => continue,
            };
            let Some(commit) = commit else { continue };
            let snapshot =
                if commit.id == default.commit.id { Some(default.clone()) } else { self.snapshot(commit).await? };
            let Some(snapshot) = snapshot else { continue };
            if !snapshot.manifest.environments.contains_key(name) {
                continue;
            }
            let previous = self.reconciled.lock().expect("not poisoned").insert(name.clone(), snapshot.clone());
            let mut env_scope = scope.clone();
            if scope.pushed_refs.is_some()
                && scope.apps.is_empty()
                && let Some(previous) = previous
            {
                // A push: only the apps whose desired state it changed. Polls still look
                // at everything, so nothing is missed for long if this is ever wrong.
                env_scope.apps = changed_apps(&previous.manifest, &snapshot.manifest, name);
                if env_scope.apps.is_empty() {
                    continue;
                }
            }
            decisions.extend(self.deploy_env(&snapshot, name, &env_scope, &published, trigger).await?);
        }
        self.start(&decisions);
        Ok(decisions)
    }

    /// Creates the runs one environment needs at one commit, with the images CI
    /// published applied (the engine names each such release after its publication).
    async fn deploy_env(
        &self,
        snapshot: &Snapshot,
        env: &str,
        scope: &Scope,
        published: &[Published],
        trigger: &str,
    ) -> Result<Vec<Decision>> {
        let in_scope = |app: &str| scope.apps.is_empty() || scope.apps.iter().any(|selected| selected == app);
        let apps: Vec<String> = snapshot
            .manifest
            .apps
            .values()
            .filter(|app| app.specs.contains_key(env) && in_scope(&app.name))
            .map(|app| app.name.clone())
            .collect();
        if apps.is_empty() {
            return Ok(Vec::new());
        }
        let selection = Selection { env: Some(env.to_owned()), apps };
        let request = DeployRequest {
            manifest: &snapshot.manifest,
            images: ImageOverrides::new(),
            published,
            source: release_source(&snapshot.commit),
            selection: &selection,
            retry_failed: scope.retry,
            trigger: trigger.to_owned(),
        };
        Ok(self.engine().prepare_deploys(&request).await?)
    }

    /// A release verified in one environment starts a run in each environment that
    /// promotes from it, with the same images and that environment's own settings (and
    /// credentials: each environment names its own target).
    pub async fn promote(self: &Arc<Self>, run: &Run) -> Result<Vec<Decision>> {
        let store = self.engine().store();
        let release = store.release(run.release_id).await?;
        let Some(commit_id) = release.source.commit.clone() else {
            return Ok(Vec::new());
        };
        let commit = self.resolve(&commit_id).await?;
        let Some(snapshot) = self.snapshot(commit).await? else {
            return Ok(Vec::new());
        };
        let images: BTreeMap<String, String> = release
            .spec
            .images()
            .into_iter()
            .map(|(container, image)| (container.to_owned(), image.to_owned()))
            .collect();
        let mut decisions = Vec::new();
        for (name, environment) in &snapshot.manifest.environments {
            let promotes_from_here = matches!(&environment.source, EnvSource::Promotion { from } if *from == run.env);
            let declares_app = snapshot.manifest.apps.get(&run.app).is_some_and(|app| app.specs.contains_key(name));
            if !promotes_from_here || !declares_app {
                continue;
            }
            let source = ReleaseSource {
                origin: Some(ReleaseSource::promoted_origin(&run.env, run.id)),
                ..release.source.clone()
            };
            let overrides: ImageOverrides = [((run.app.clone(), name.clone()), images.clone())].into();
            let selection = Selection { env: Some(name.clone()), apps: vec![run.app.clone()] };
            let trigger = format!("promotion of release {} from {} (run {})", release.id, run.env, run.id);
            let request = DeployRequest {
                manifest: &snapshot.manifest,
                images: overrides,
                published: &[],
                source,
                selection: &selection,
                retry_failed: false,
                trigger,
            };
            decisions.extend(self.engine().prepare_deploys(&request).await?);
        }
        if !decisions.is_empty() {
            let started = EventBody::Audit {
                kind: AuditKind::PromotionStarted,
                data: serde_json::to_value(&decisions).unwrap_or_default(),
            };
            let message = format!("release {} verified in {}: promoting", release.id, run.env);
            self.engine().record(NewEvent::for_run(run, started, message)).await?;
        }
        self.start(&decisions);
        Ok(decisions)
    }

    /// Drives the runs decisions created or found interrupted. A run already being
    /// driven here means the app could not take the change yet: it is looked at again
    /// when that run ends or parks.
    pub fn start(self: &Arc<Self>, decisions: &[Decision]) {
        for decision in decisions {
            match decision {
                Decision::Started { run, .. } => self.runtime.drive(run.id),
                Decision::Resume { run } => {
                    if self.runtime.is_driving(run.id) {
                        self.deferred.lock().expect("not poisoned").insert((run.app.clone(), run.env.clone()));
                    }
                    self.runtime.drive(run.id);
                }
                _ => {}
            }
        }
    }

    /// Follows runs the runtime saw end or park, until the server stops: a change that
    /// waited for the app is reconciled, and a release verified in one environment is
    /// promoted to those that promote from it.
    pub async fn follow_ended_runs(self: Arc<Self>, mut ended: mpsc::UnboundedReceiver<Run>) {
        loop {
            let run = tokio::select! {
                () = self.runtime.stop().cancelled() => return,
                run = ended.recv() => match run {
                    Some(run) => run,
                    None => return,
                },
            };
            self.follow_up(&run);
            let changed = run.reason.as_deref() != Some(launchway_engine::NO_OP_REASON);
            if run.state == RunState::Succeeded && run.kind == RunKind::Deploy && changed {
                let reconciler = self.clone();
                self.runtime.spawn(async move {
                    if let Err(error) = reconciler.promote(&run).await {
                        tracing::error!(run_id = run.id, error = format!("{error:#}"), "promotion failed");
                        let failed =
                            EventBody::Audit { kind: AuditKind::PromotionFailed, data: serde_json::Value::Null };
                        let event = NewEvent::for_run(&run, failed, format!("could not promote: {error:#}"));
                        let _ = reconciler.engine().record(event).await;
                    }
                });
            }
        }
    }

    /// A change that came while a run had its app is not lost: once the run ends or
    /// parks, the app is reconciled again.
    fn follow_up(self: &Arc<Self>, run: &Run) {
        let deferred = self.deferred.lock().expect("not poisoned").remove(&(run.app.clone(), run.env.clone()));
        if !deferred || self.runtime.stop().is_cancelled() {
            return;
        }
        let reconciler = self.clone();
        let scope = Scope { env: Some(run.env.clone()), apps: vec![run.app.clone()], ..Scope::default() };
        let trigger = format!("follow-up of run {}", run.id);
        self.runtime.spawn(async move {
            if let Err(error) = reconciler.reconcile(&scope, &trigger).await {
                tracing::warn!(error = format!("{error:#}"), "could not reconcile after a run");
            }
        });
    }

    /// Runs nobody alive is driving, and approvals decided or expired: driven again.
    pub async fn sweep(self: &Arc<Self>) -> Result<()> {
        for run in self.engine().orphaned_runs().await? {
            self.runtime.drive(run.id);
        }
        for run_id in self.engine().approvals_due().await? {
            self.runtime.drive(run_id);
        }
        Ok(())
    }

    /// Desired state at `commit`, parsed once; `None` (reported once) when invalid.
    pub async fn snapshot(&self, commit: Commit) -> Result<Option<Arc<Snapshot>>> {
        if let Some(cached) = self.manifests.lock().expect("not poisoned").iter().find(|s| s.commit.id == commit.id) {
            return Ok(Some(cached.clone()));
        }
        let for_load = commit.clone();
        let loader = self.loader.clone();
        let loaded = self
            .repo
            .call(move |repo| -> Result<_> {
                let files = repo.manifest_files(&for_load)?;
                let referenced = repo.files_at(&for_load)?;
                let loaded = loader.lock().expect("not poisoned").load(&files, &referenced);
                // Built images are named after the commits that touched their contexts.
                Ok(loaded.and_then(|mut validated| {
                    repo.set_build_references(&for_load, &mut validated.manifest)
                        .map_err(|diagnostic| vec![diagnostic])?;
                    Ok(validated)
                }))
            })
            .await?;
        match loaded {
            Ok(validated) => {
                // A build from another repository follows its ref: read again each time.
                let follows_others = validated
                    .manifest
                    .apps
                    .values()
                    .any(|app| app.build.as_ref().is_some_and(|build| build.source.is_some()));
                let snapshot = Arc::new(Snapshot { commit, manifest: validated.manifest });
                if !follows_others {
                    let mut cache = self.manifests.lock().expect("not poisoned");
                    cache.push_front(snapshot.clone());
                    cache.truncate(MANIFEST_CACHE);
                }
                Ok(Some(snapshot))
            }
            Err(diagnostics) => {
                if self.reported_invalid.lock().expect("not poisoned").insert(commit.id.clone()) {
                    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                    tracing::warn!(commit = %commit.id, "the manifest is invalid; nothing deploys from this commit");
                    self.engine()
                        .record(NewEvent::audit(
                            AuditKind::SourceInvalid,
                            format!(
                                "the manifest at commit {} is invalid ({} problems); nothing was deployed from it",
                                commit.short_id(),
                                lines.len()
                            ),
                            serde_json::json!({"commit": commit.id, "diagnostics": lines}),
                        ))
                        .await?;
                }
                Ok(None)
            }
        }
    }

    /// Desired state at a commit someone asks to have reviewed (a pull request's head),
    /// read contacting no other repository than `allowed` (those the base branch builds
    /// from): the manifest, or its problems as lines. Neither kept nor audited.
    pub async fn review_snapshot(
        &self,
        reference: &str,
        allowed: std::collections::BTreeSet<String>,
    ) -> Result<std::result::Result<Snapshot, Vec<String>>> {
        let commit = self.resolve(reference).await?;
        let for_load = commit.clone();
        let loaded = self
            .repo
            .call(move |repo| -> Result<_> {
                let loaded = repo.manifest_at(&for_load)?;
                Ok(loaded.and_then(|mut validated| {
                    repo.set_build_references_within(&for_load, &mut validated.manifest, &allowed)
                        .map_err(|diagnostic| vec![diagnostic])?;
                    Ok(validated)
                }))
            })
            .await?;
        Ok(match loaded {
            Ok(validated) => Ok(Snapshot { commit, manifest: validated.manifest }),
            Err(diagnostics) => Err(diagnostics.iter().map(ToString::to_string).collect()),
        })
    }

    /// Fetches more than branches and tags (a pull request's head), for a mirror.
    pub async fn fetch_with(&self, refspecs: Vec<String>) -> Result<()> {
        Ok(self.repo.call(move |repo| repo.fetch_with(&refspecs)).await?)
    }

    /// Desired state at a branch, tag or commit id: `None` when its manifest is invalid.
    pub async fn snapshot_of(&self, reference: &str) -> Result<Option<Arc<Snapshot>>> {
        let commit = self.resolve(reference).await?;
        self.snapshot(commit).await
    }

    async fn resolve(&self, reference: &str) -> Result<Commit> {
        let reference = reference.to_owned();
        Ok(self.repo.call(move |repo| repo.resolve(&reference)).await?)
    }

    /// The newest tag matching `pattern`: the highest version for `semver`, else the
    /// most recent commit.
    async fn newest_tag(&self, pattern: &str) -> Result<Option<Commit>> {
        let tags = self.repo.call(|repo| repo.tags()).await?;
        let matching = tags.into_iter().filter(|tag| tag_matches(pattern, &tag.name));
        let newest = if pattern == "semver" {
            matching.max_by(|a, b| tag_version(&a.name).cmp(&tag_version(&b.name)))
        } else {
            matching.max_by(|a, b| (a.commit.time, &a.name).cmp(&(b.commit.time, &b.name)))
        };
        Ok(newest.map(|tag| tag.commit))
    }
}

/// Apps whose spec in `env` differs between two manifests, or that are new there.
fn changed_apps(before: &Manifest, after: &Manifest, env: &str) -> Vec<String> {
    after
        .apps
        .values()
        .filter_map(|app| {
            let spec = app.specs.get(env)?;
            let was = before.apps.get(&app.name).and_then(|old| old.specs.get(env));
            (was != Some(spec)).then(|| app.name.clone())
        })
        .collect()
}

fn release_source(commit: &Commit) -> ReleaseSource {
    ReleaseSource {
        commit: Some(commit.id.clone()),
        summary: Some(commit.summary.clone()),
        author: Some(commit.author.clone()),
        committed_at: Some(commit.time * 1000),
        origin: None,
    }
}

#[async_trait::async_trait]
impl launchway_notify::dispatch::NotificationRules for Reconciler {
    async fn current_notifications(&self) -> Option<Vec<launchway_manifest::Notification>> {
        let snapshot = match self.latest() {
            Some(latest) => latest,
            // Messages due when the server starts are sent before its first reconcile:
            // the default branch as the repo has it.
            None => self.snapshot_of(&format!("refs/heads/{}", self.branch())).await.ok().flatten()?,
        };
        Some(snapshot.manifest.notifications.clone())
    }
}

#[cfg(test)]
mod tests {
    use launchway_manifest::tag_version;

    /// Regression (issue 9): the hand-written order put `rc.10` before `rc.2`.
    #[test]
    fn semver_tags_order_by_number_and_releases_above_pre_releases() {
        let mut tags =
            vec!["v1.10.0", "v1.2.0", "v1.10.0-rc.10", "1.9.3", "v2.0.0-alpha", "v1.10.0-rc.2", "v1.10.0-rc.1"];
        tags.sort_by_key(|tag| tag_version(tag));
        assert_eq!(
            tags,
            ["v1.2.0", "1.9.3", "v1.10.0-rc.1", "v1.10.0-rc.2", "v1.10.0-rc.10", "v1.10.0", "v2.0.0-alpha"]
        );
    }
}
