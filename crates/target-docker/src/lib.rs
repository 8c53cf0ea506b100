//! The Docker engine target.
//!
//! Apps run as labelled containers on a bridge network per environment
//! (`launchway-<env>`), where each replica answers to the app's name. Ports are
//! published on 127.0.0.1 only, on ports the engine picks; launchway probes health
//! through them. All state is in the containers' labels.

mod build;
mod build_log;
mod ensure;
mod health;
mod image;
mod network;
mod proxy;
mod push;
mod replicas;
mod rollout;
mod task;
mod verify;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{CreateImageOptionsBuilder, EventsOptionsBuilder};
use futures_util::{Stream, StreamExt, TryStreamExt};
use launchway_manifest::AppSpec;
use launchway_manifest::ServiceSpec;
use launchway_target::planning::PlanRequest;
use launchway_target::{
    Advance, AppPlan, AppRef, ContainerLogs, LiveEnvironment, Progress, Rollout, RolloutError, Target, TargetError,
    TargetEvent, TargetReport, TaskExecution, TaskOutcome,
};

pub use build::{BUILD_KEY_LABEL, BuildRequest, build_image, image_built_with};
pub use ensure::{BuildJob, build_key, ensure_built};
pub use image::{ExecutableImage, build_executable_image};
pub use push::{DockerConfig, already_pushed, push_image, registry_of};
pub use replicas::label;

use replicas::api_error;
use rollout::Mode;

/// A Docker engine, reached over its API.
pub struct DockerTarget {
    docker: Docker,
    http: reqwest::Client,
    address: String,
    /// The host it was asked to connect to (`None`: `DOCKER_HOST` or the local socket).
    host: Option<String>,
    network_lock: tokio::sync::Mutex<()>,
}

impl DockerTarget {
    /// Connects to the engine at `host` (`unix:///…` or `tcp://…`), or to the local
    /// engine (`DOCKER_HOST`, else the default socket), and agrees on an API version
    /// both sides speak.
    pub async fn connect(host: Option<&str>) -> Result<DockerTarget, TargetError> {
        let address = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let unreachable = |source: DockerError| TargetError::Unreachable {
            target: format!("the Docker engine at {address}"),
            source: Box::new(source),
        };
        let docker = match host {
            None => Docker::connect_with_local_defaults(),
            Some(host) if host.starts_with("unix://") => {
                Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION)
            }
            Some(host) => {
                Docker::connect_with_http(&host.replacen("tcp://", "http://", 1), 120, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        let http = reqwest::Client::builder()
            // Probes go to 127.0.0.1; a proxy from the environment must not intercept them.
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|source| TargetError::Api {
                action: "create the health check client".to_owned(),
                source: Box::new(source),
            })?;
        Ok(DockerTarget {
            docker,
            http,
            address,
            host: host.map(str::to_owned),
            network_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The underlying client, for tools (the demo, tests) that need more than deploys.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Removes everything launchway runs in `env`, and its network: how a throwaway
    /// environment (the demo's, a test's) is cleaned up. Returns how many containers
    /// were removed.
    pub async fn remove_environment(&self, env: &str) -> Result<usize, TargetError> {
        let replicas = replicas::list(&self.docker, env, None).await?;
        for replica in &replicas {
            replicas::remove(&self.docker, replica, 0).await?;
        }
        let tasks = task::remove_leftovers(self, env).await?;
        let network = network::name(env);
        for id in self.networks_named(&network).await?.into_iter().map(|found| found.id) {
            match self.docker.remove_network(&id).await {
                Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(error) => return Err(api_error(&format!("remove network {network}"), error)),
            }
        }
        Ok(replicas.iter().map(|replica| replica.containers().count()).sum::<usize>() + tasks)
    }

    /// The app's containers as they die (id and exit code); ends quietly if the stream
    /// breaks, in which case the rollout loop still wakes up for its probes.
    fn container_deaths(&self, app: &str, env: &str) -> impl Stream<Item = (String, Option<i64>)> + use<> {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("event", vec!["die".to_owned(), "oom".to_owned()]),
            ("label", vec![format!("{}={app}", label::APP), format!("{}={env}", label::ENV)]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        self.docker.events(Some(options)).take_while(|event| std::future::ready(event.is_ok())).filter_map(
            |event| async move {
                let actor = event.ok()?.actor?;
                let exit_code = actor
                    .attributes
                    .as_ref()
                    .and_then(|attributes| attributes.get("exitCode"))
                    .and_then(|code| code.parse().ok());
                Some((actor.id?, exit_code))
            },
        )
    }

    async fn ensure_image(&self, image: &str, progress: Option<&dyn Progress>) -> Result<Option<String>, TargetError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(None),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(error) => return Err(api_error(&format!("inspect image {image}"), error)),
        }
        if let Some(progress) = progress {
            progress
                .report(TargetEvent::new(
                    TargetReport::ImagePulling { image: image.to_owned() },
                    format!("pulling {image}"),
                ))
                .await;
        }
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            if let Err(error) = step {
                return Err(TargetError::Invalid(format!(
                    "image {image} is not on the engine and could not be pulled: {}",
                    describe_docker_error(&error)
                )));
            }
        }
        Ok(Some(format!("pulled {image}")))
    }
}

#[async_trait]
impl Target for DockerTarget {
    fn rolled_out(&self, spec: &AppSpec, revision: &str) -> String {
        match spec {
            AppSpec::Service(service) => {
                let plural = if service.replicas == 1 { "" } else { "s" };
                format!("{} replica{plural} of revision {revision} rolled out", service.replicas)
            }
            _ => format!("revision {revision} recorded"),
        }
    }

    fn describe(&self) -> String {
        format!("docker at {}", self.address)
    }

    fn plan(&self, request: PlanRequest<'_>) -> AppPlan {
        launchway_target::planning::native_plan(request)
    }

    async fn check(&self, _app: &str, _env: &str, spec: &AppSpec) -> Result<Vec<String>, TargetError> {
        if !matches!(spec, AppSpec::Service(_) | AppSpec::Task(_)) {
            return Err(TargetError::Invalid("a Docker environment runs Docker services and tasks only".to_owned()));
        }
        let mut notes = Vec::new();
        // The entry point's certificate and key are read when its route is set: unreadable
        // ones stop the run before anything changes.
        if let AppSpec::Service(service) = spec
            && let Some(tls) = service.ingress.as_ref().and_then(|ingress| ingress.tls.as_ref())
        {
            proxy::read_tls(tls)?;
            notes.push(format!("the entry point serves TLS with {}", tls.certificate));
        }
        for image in spec.images().into_values() {
            if let Some(note) = self.ensure_image(image, None).await? {
                notes.push(note);
            }
        }
        Ok(notes)
    }

    /// Everything launchway labels in `env`, whatever `apps` says: apps the manifest no
    /// longer declares are reported too. Restart counts (one inspection per container)
    /// are read for the apps asked about only.
    async fn observe(&self, env: &str, apps: &[AppRef<'_>]) -> Result<LiveEnvironment, TargetError> {
        let listed = replicas::list(&self.docker, env, None).await?;
        let asked: Vec<(String, String, Vec<String>)> = listed
            .iter()
            .filter(|replica| replica.is_running() && apps.iter().any(|app| app.app == replica.app))
            .map(|replica| (replica.app.clone(), replica.key(), replica.containers().map(|c| c.id.clone()).collect()))
            .collect();
        let restarts = restart_counts(&self.docker, asked).await?;
        let mut live = LiveEnvironment::default();
        for replica in listed {
            let mut view = replica.to_live();
            view.restarts = restarts.get(&(replica.app.clone(), replica.key())).map_or(0, |count| *count as u32);
            live.apps.entry(replica.app.clone()).or_default().replicas.push(view);
        }
        // Apps reached through the proxy: whether it answers is part of what runs (a
        // killed proxy container is not restarted by Docker).
        let entered: Vec<&str> = apps
            .iter()
            .filter(|app| matches!(app.spec, AppSpec::Service(service) if service.ingress.is_some()))
            .map(|app| app.app)
            .collect();
        if !entered.is_empty() {
            let entry_point = proxy::observe(&self.http).await;
            for app in entered {
                live.apps.entry(app.to_owned()).or_default().entry_point = Some(entry_point.clone());
            }
        }
        Ok(live)
    }

    async fn rollout(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        let service = ServiceRollout::of(&rollout)?;
        rollout::run(self, service, Mode::start(&service.spec.strategy), progress).await
    }

    async fn recent_logs(&self, env: &str, app: AppRef<'_>, lines: usize) -> Result<Vec<ContainerLogs>, TargetError> {
        let replicas = replicas::list(&self.docker, env, Some(app.app)).await?;
        let mut logs = Vec::new();
        for replica in &replicas {
            for container in replica.containers() {
                logs.push(ContainerLogs {
                    replica: replica.name(),
                    container: container.name.clone(),
                    running: container.running,
                    lines: replicas::log_tail(&self.docker, &container.id, lines).await,
                });
            }
        }
        Ok(logs)
    }

    async fn promote(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        let service = ServiceRollout::of(&rollout)?;
        rollout::run(self, service, Mode::finish(&service.spec.strategy), progress).await
    }

    async fn advance(
        &self,
        rollout: Rollout<'_>,
        step: usize,
        progress: &dyn Progress,
    ) -> Result<Advance, RolloutError> {
        let service = ServiceRollout::of(&rollout)?;
        let Some(traffic) = service.spec.strategy.traffic_steps().get(step).copied() else {
            return Err(RolloutError::Target(TargetError::Invalid(format!(
                "{} has no traffic step {}",
                rollout.app,
                step + 1
            ))));
        };
        proxy::shift_traffic(self, service, traffic.weight, progress).await?;
        Ok(Advance::Reached)
    }

    async fn analysis_endpoints(&self, rollout: Rollout<'_>, port: Option<u16>) -> Result<Vec<String>, TargetError> {
        let service = ServiceRollout::of(&rollout)?;
        let Some(port) = port.or(service.spec.primary().port) else {
            return Err(TargetError::Invalid(format!("{} has no port for the analysis to ask", rollout.app)));
        };
        let replicas = replicas::list(&self.docker, rollout.env, Some(rollout.app)).await?;
        replicas
            .iter()
            .filter(|replica| replica.revision == rollout.revision && replica.is_running())
            .map(|replica| match replica.host_port(port) {
                Some(host_port) => Ok(format!("127.0.0.1:{host_port}")),
                None => Err(TargetError::Invalid(format!(
                    "port {port} of {} is not published: an analysis can ask the service's port or its health check's",
                    replica.name()
                ))),
            })
            .collect()
    }

    /// Watches the rolled-out replicas for the service's settle window: see `verify.rs`.
    async fn verify(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        verify::run(self, ServiceRollout::of(&rollout)?, progress).await
    }

    async fn run_task(&self, task: TaskExecution<'_>, progress: &dyn Progress) -> Result<TaskOutcome, RolloutError> {
        task::run(self, task, progress).await
    }

    async fn retire(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), TargetError> {
        let replicas = replicas::list(&self.docker, rollout.env, Some(rollout.app)).await?;
        if let Ok(service) = ServiceRollout::of(&rollout)
            && service.spec.ingress.is_some()
        {
            // The retired replicas leave the route first, and finish what they serve.
            let proxy = proxy::ProxyClient::ensure(&self.docker, &self.http).await?;
            let (leaving, staying): (Vec<&replicas::DockerReplica>, Vec<&replicas::DockerReplica>) =
                replicas.iter().partition(|replica| replica.revision == rollout.revision);
            let staying: Vec<_> = staying
                .iter()
                .filter(|replica| replica.is_running())
                .filter_map(|replica| proxy::endpoint(&service, replica))
                .collect();
            proxy.route(&service, &staying).await?;
            for address in leaving.iter().filter_map(|replica| proxy::endpoint(&service, replica)) {
                proxy.drain(address, RETIRE_STOP_GRACE).await?;
            }
        }
        for replica in replicas.iter().filter(|replica| replica.revision == rollout.revision) {
            replicas::remove(&self.docker, replica, RETIRE_STOP_GRACE.as_secs() as i32).await?;
            progress
                .report(TargetEvent::new(
                    TargetReport::ReplicaStopped(rollout::replica_ref(replica, None)),
                    format!("removed {}", replica.name()),
                ))
                .await;
        }
        Ok(())
    }
}

/// A rollout of a Docker service: what every step here works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceRollout<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub release_id: i64,
    pub revision: &'a str,
    pub spec: &'a ServiceSpec,
}

impl<'a> ServiceRollout<'a> {
    fn of(rollout: &Rollout<'a>) -> Result<ServiceRollout<'a>, TargetError> {
        let AppSpec::Service(spec) = rollout.spec else {
            return Err(TargetError::Invalid(format!(
                "{} is a {}, which a Docker environment does not roll out",
                rollout.app,
                rollout.spec.kind()
            )));
        };
        Ok(ServiceRollout {
            app: rollout.app,
            env: rollout.env,
            release_id: rollout.release_id,
            revision: rollout.revision,
            spec,
        })
    }
}

/// The engine's own message when it sent one, rather than bollard's wrapper text.
fn describe_docker_error(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// Restart counts of replicas given as (app, key, container ids), summed per replica.
async fn restart_counts(
    docker: &Docker,
    replicas: Vec<(String, String, Vec<String>)>,
) -> Result<HashMap<(String, String), i64>, TargetError> {
    let lookups = replicas.into_iter().map(|(app, key, containers)| async move {
        Ok::<_, TargetError>(((app, key), replicas::replica_restarts(docker, &containers).await?))
    });
    futures_util::stream::iter(lookups).buffer_unordered(INSPECT_CONCURRENCY).try_collect().await
}

/// Containers inspected at once when restart counts are read.
const INSPECT_CONCURRENCY: usize = 16;

/// How long a retired replica gets to stop before it is killed: its spec, with its own
/// grace period, may no longer be known.
const RETIRE_STOP_GRACE: Duration = Duration::from_secs(10);
