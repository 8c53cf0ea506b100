//! The engine's image builder: contexts from the config repo, secrets from `ssm:` and
//! `env:`, the build on the environment's Docker engine (the local one for ECS
//! environments), pushes with Docker's logins or, to ECR, with the environment's AWS
//! credentials.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use launchway_engine::{ImageBuilder, ImageToBuild};
use launchway_manifest::TargetSpec;
use launchway_secrets::{SecretRef, Secrets};
use launchway_source::RepoThread;
use launchway_target::{Progress, TargetError};
use launchway_target_docker::{BuildJob, ensure_built};
use launchway_target_ecs::{SsmParameters, ecr_login, sdk_config};
use tokio::sync::Mutex;

use crate::targets::Targets;

pub struct Builder {
    targets: Arc<Targets>,
    /// The config repo's location.
    location: String,
    cache_dir: PathBuf,
    /// Repositories read from, by location, each opened on its own thread at its first
    /// build.
    repos: Mutex<HashMap<String, RepoThread>>,
}

impl Builder {
    pub fn new(targets: Arc<Targets>, location: String, cache_dir: PathBuf) -> Builder {
        Builder { targets, location, cache_dir, repos: Mutex::default() }
    }

    /// The repository at `location` (`None`: the config repo).
    async fn repo(&self, location: Option<&str>) -> Result<RepoThread, TargetError> {
        let location = location.unwrap_or(&self.location).to_owned();
        let mut repos = self.repos.lock().await;
        if let Some(repo) = repos.get(&location) {
            return Ok(repo.clone());
        }
        let (opening, cache_dir) = (location.clone(), self.cache_dir.clone());
        let repo = tokio::task::spawn_blocking(move || RepoThread::open(&opening, cache_dir))
            .await
            .map_err(|error| TargetError::local(format!("opening {location} stopped"), error))?
            .map_err(|error| TargetError::local(format!("could not open {location}"), error))?;
        repos.insert(location, repo.clone());
        Ok(repo)
    }

    /// The context at the commit, fetching once if the commit is not here yet (a run
    /// resumed by a process whose mirror is behind).
    async fn context(
        &self,
        location: Option<&str>,
        commit: &str,
        folder: &str,
    ) -> Result<launchway_source::BuildContext, TargetError> {
        let repo = self.repo(location).await?;
        let (for_read, folder_read) = (commit.to_owned(), folder.to_owned());
        let read = move |repo: &launchway_source::ConfigRepo| repo.build_context(&for_read, &folder_read);
        let first = repo.call(read.clone()).await;
        let context = match first {
            Ok(context) => Ok(context),
            Err(_) if repo.call(|repo| repo.fetch()).await.is_ok() => repo.call(read).await,
            Err(error) => Err(error),
        };
        context.map_err(|error| {
            TargetError::local(format!("could not read the build context {folder:?} at commit {commit}"), error)
        })
    }
}

#[async_trait]
impl ImageBuilder for Builder {
    async fn build(&self, image: ImageToBuild<'_>, progress: &dyn Progress) -> Result<String, TargetError> {
        let definition = image.definition;
        let (docker, secrets, ecs) = match image.target {
            TargetSpec::Docker { host } => (
                self.targets.docker(host.as_deref()).await?,
                Secrets::with_parameter_store(Arc::new(SsmParameters::from_default_chain())),
                None,
            ),
            TargetSpec::Ecs(ecs) => {
                let config = sdk_config(ecs).await?;
                let secrets = Secrets::with_parameter_store(Arc::new(SsmParameters::with_config(config.clone())));
                (self.targets.docker(None).await?, secrets, Some(config))
            }
        };
        let mut secret_values = BTreeMap::new();
        for (id, reference) in &definition.secrets {
            let value = secrets.resolve(&SecretRef::parse(reference)).await.map_err(|error| {
                TargetError::local(format!("build secret {id:?} of {} ({reference})", image.container), error)
            })?;
            secret_values.insert(id.clone(), value.expose().to_owned());
        }
        let pushes_to_ecr = definition.repository.as_deref().is_some_and(is_ecr);
        let login = match (&ecs, pushes_to_ecr) {
            (Some(config), true) => {
                let login = ecr_login(config).await?;
                Some((login.username, login.password))
            }
            _ => None,
        };
        let context = self.context(image.repo, image.commit, &definition.context).await?;
        let job = BuildJob {
            container: image.container,
            reference: image.reference,
            definition,
            context_tree: &context.tree,
            context: context.archive,
            secrets: &secret_values,
            login,
        };
        ensure_built(&docker, job, progress).await
    }
}

/// `123456789012.dkr.ecr.eu-west-1.amazonaws.com/web`: pushed with an ECR login.
fn is_ecr(repository: &str) -> bool {
    let host = repository.split('/').next().unwrap_or_default();
    host.contains(".dkr.ecr.") && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}
