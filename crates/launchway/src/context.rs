//! What commands share: the global options, the store, the engine, the config repo.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use launchway_engine::{Engine, EngineConfig, Selection};
use launchway_manifest::{Diagnostic, Manifest, SourceFile, Validated};
use launchway_source::{Commit, ConfigRepo};
use launchway_store::ReleaseSource;
use launchway_store_sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

use crate::cli::{Global, Output, Scope};
use crate::output::InvalidManifest;
use crate::targets::Targets;

pub struct Context {
    pub global: Global,
    pub targets: Arc<Targets>,
    /// Cancelled when the user asks launchway to stop (Ctrl-C, SIGTERM): the one stop
    /// signal engines made here, and the server, obey.
    pub stop: CancellationToken,
}

/// Desired state read from the files on disk of a local config repo (`plan --work-tree`).
pub struct WorkTreeLoaded {
    /// The commit checked out, if the repo has one yet.
    pub head: Option<Commit>,
    pub root: PathBuf,
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
}

/// Desired state read from the config repo.
pub struct Loaded {
    pub commit: Commit,
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    pub fn release_source(&self) -> ReleaseSource {
        ReleaseSource {
            commit: Some(self.commit.id.clone()),
            summary: Some(self.commit.summary.clone()),
            author: Some(self.commit.author.clone()),
            committed_at: Some(self.commit.time * 1000),
            origin: None,
        }
    }
}

impl Context {
    pub fn new(global: Global) -> Context {
        Context { global, targets: Arc::new(Targets::default()), stop: CancellationToken::new() }
    }

    pub fn output(&self) -> Output {
        self.global.output
    }

    /// A client for `--server`, when one is given.
    pub fn server(&self) -> Result<Option<crate::client::Client>> {
        match &self.global.server {
            Some(server) => Ok(Some(crate::client::Client::new(server, self.global.token.as_deref())?)),
            None => Ok(None),
        }
    }

    /// For commands that work on this machine only: says so when `--server` (or
    /// `LAUNCHWAY_SERVER`) is given, rather than ignoring it silently.
    pub fn note_server_unused(&self, command: &str, why: &str) {
        if let Some(server) = &self.global.server {
            eprintln!("note: {command} does not use --server {server}: {why}");
        }
    }

    /// Who the user is, for what they do through the local database: `--as` (or
    /// `LAUNCHWAY_USER`), else git's `user.email` as the config repo sees it (its own
    /// config, then the user's), else the login name. One identity for everything a
    /// command records (triggers, approvals, pins, tokens); never a host name.
    pub fn identity(&self) -> String {
        if let Some(identity) = self.global.identity.as_deref().map(str::trim).filter(|identity| !identity.is_empty()) {
            return identity.to_owned();
        }
        let mut git = std::process::Command::new("git");
        // A local config repo answers with its own user.email where it sets one.
        if !self.global.repo.contains("://") && Path::new(&self.global.repo).exists() {
            git.arg("-C").arg(&self.global.repo);
        }
        let git_email = git
            .args(["config", "user.email"])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .filter(|email| !email.is_empty());
        git_email.unwrap_or_else(|| {
            std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_owned())
        })
    }

    /// `--db`, or `launchway.db` in the user's data directory.
    pub fn db_location(&self) -> Result<String> {
        if let Some(db) = &self.global.db {
            return Ok(db.clone());
        }
        let dir = dirs::data_dir()
            .ok_or_else(|| anyhow!("no data directory is known for this user; pass --db"))?
            .join("launchway");
        std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        Ok(dir.join("launchway.db").display().to_string())
    }

    pub async fn engine(&self) -> Result<Engine> {
        let location = self.db_location()?;
        let store =
            SqliteStore::open(&location).await.with_context(|| format!("could not open the store at {location}"))?;
        let config = EngineConfig { stop: self.stop.clone(), ..EngineConfig::default() };
        let builder = crate::builder::Builder::new(self.targets.clone(), self.global.repo.clone(), repo_cache_dir());
        Ok(Engine::new(Arc::new(store), self.targets.clone(), config).with_builder(Arc::new(builder)))
    }

    /// Reads and validates the manifest at `--ref` of `--repo`.
    pub async fn load(&self) -> Result<Loaded> {
        let repo = self.global.repo.clone();
        let git_ref = self.global.git_ref.clone();
        let cache = repo_cache_dir();
        tokio::task::spawn_blocking(move || -> Result<Loaded> {
            let config =
                ConfigRepo::open(&repo, &cache).with_context(|| format!("could not open the config repo {repo}"))?;
            let commit = config.resolve(&git_ref)?;
            let read = config
                .manifest_at(&commit)
                .with_context(|| format!("could not read the manifest at commit {}", commit.short_id()))?;
            let invalid = |diagnostics| InvalidManifest {
                location: format!("commit {} of {repo}", commit.short_id()),
                diagnostics,
            };
            let mut validated = read.map_err(invalid)?;
            config
                .set_build_references(&commit, &mut validated.manifest)
                .map_err(|diagnostic| invalid(vec![diagnostic]))?;
            Ok(Loaded { commit, manifest: validated.manifest, warnings: validated.warnings })
        })
        .await
        .context("reading the config repo was interrupted")?
    }

    /// Reads and validates the manifest files on disk of the local repo at `--repo`,
    /// uncommitted edits included.
    pub async fn load_work_tree(&self) -> Result<WorkTreeLoaded> {
        let repo = self.global.repo.clone();
        let cache = repo_cache_dir();
        tokio::task::spawn_blocking(move || -> Result<WorkTreeLoaded> {
            let config =
                ConfigRepo::open(&repo, &cache).with_context(|| format!("could not open the config repo {repo}"))?;
            let root = config.work_dir().ok_or_else(|| {
                anyhow!("{repo} has no files on disk to plan (a URL or a bare repo); drop --work-tree")
            })?;
            let head = match config.resolve("HEAD") {
                Ok(commit) => Some(commit),
                Err(launchway_source::SourceError::NoCommits { .. }) => None,
                Err(error) => return Err(error.into()),
            };
            let (_, mut validated) = load_from_disk(&root)?;
            // Built images are named from history: as of HEAD (edits to a context not
            // committed yet are built once they are).
            if let Some(head) = &head {
                config.set_build_references(head, &mut validated.manifest).map_err(|diagnostic| InvalidManifest {
                    location: root.display().to_string(),
                    diagnostics: vec![diagnostic],
                })?;
            }
            Ok(WorkTreeLoaded { head, root, manifest: validated.manifest, warnings: validated.warnings })
        })
        .await
        .context("reading the work tree was interrupted")?
    }

    /// The manifest files whose copy on disk differs from `commit`'s (edited, added or
    /// deleted), when `--repo` is a local repo read at `HEAD`: what a plan of `HEAD` does
    /// not show. Empty when that cannot be known (a URL, another ref).
    pub async fn uncommitted_edits(&self, commit: &Commit) -> Vec<String> {
        if self.global.git_ref != "HEAD" {
            return Vec::new();
        }
        let repo = self.global.repo.clone();
        let commit = commit.clone();
        let cache = repo_cache_dir();
        let compare = move || -> Option<Vec<String>> {
            let config = ConfigRepo::open(&repo, &cache).ok()?;
            let root = config.work_dir()?;
            let on_disk = launchway_source::read_work_tree(&root).ok()?;
            let committed = config.manifest_files(&commit).ok()?;
            let index = |files: Vec<launchway_manifest::SourceFile>| {
                files.into_iter().map(|file| (file.path, file.bytes)).collect::<std::collections::BTreeMap<_, _>>()
            };
            let (on_disk, committed) = (index(on_disk), index(committed));
            let mut paths: std::collections::BTreeSet<&String> = on_disk.keys().collect();
            paths.extend(committed.keys());
            Some(paths.into_iter().filter(|path| on_disk.get(*path) != committed.get(*path)).cloned().collect())
        };
        tokio::task::spawn_blocking(compare).await.ok().flatten().unwrap_or_default()
    }

    /// Turns `--env`/`--app` into a selection, checking the names against the manifest.
    /// With several environments and no `--env`, `required_env` makes it an error.
    pub fn selection(&self, scope: &Scope, manifest: &Manifest, required_env: bool) -> Result<Selection> {
        let environments: Vec<&str> = manifest.environments.keys().map(String::as_str).collect();
        let env = match &scope.env {
            Some(env) if !manifest.environments.contains_key(env) => {
                return Err(anyhow!(
                    "environment {env:?} is not declared in the manifest (it declares {})",
                    environments.join(", ")
                ));
            }
            Some(env) => Some(env.clone()),
            None if environments.len() == 1 => Some(environments[0].to_owned()),
            None if required_env => {
                return Err(anyhow!(
                    "the manifest declares several environments ({}); choose one with --env",
                    environments.join(", ")
                ));
            }
            None => None,
        };
        for app in &scope.apps {
            if !manifest.apps.contains_key(app) {
                let known: Vec<&str> = manifest.apps.keys().map(String::as_str).collect();
                return Err(anyhow!("app {app:?} is not declared in the manifest (it declares {})", known.join(", ")));
            }
        }
        Ok(Selection { env, apps: scope.apps.clone() })
    }

    /// What started a run from this command, for the audit log: `cli deploy by
    /// alice@example.com`.
    pub fn trigger(&self, command: &str) -> String {
        format!("cli {command} by {}", self.identity())
    }
}

/// Reads and validates the manifest files on disk at `path` (a config repo's folder, or
/// its launchway.yaml), with the files they refer to read from beside them; the files
/// read, and what they say.
pub fn load_from_disk(path: &Path) -> Result<(Vec<SourceFile>, Validated)> {
    let files = launchway_source::read_work_tree(path).with_context(|| format!("could not read {}", path.display()))?;
    let root = if path.is_file() { path.parent().map(PathBuf::from).unwrap_or_default() } else { path.to_path_buf() };
    let referenced = launchway_source::WorkTreeFiles { root };
    let validated = launchway_manifest::load(&files, &referenced)
        .map_err(|diagnostics| InvalidManifest { location: path.display().to_string(), diagnostics })?;
    Ok((files, validated))
}

/// Where mirrors of remote config repos are kept.
pub fn repo_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("launchway").join("repos")
}
