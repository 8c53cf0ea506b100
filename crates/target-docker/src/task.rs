//! One execution of a scheduled task: its containers started on the environment's
//! network, the first one waited for, its exit code and last log lines kept, and
//! everything removed afterwards.
//!
//! Task containers carry the app and environment labels but no replica slot, so that
//! they never count as a service's replicas.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use launchway_manifest::{AppSpec, ContainerSpec};
use launchway_target::{Progress, RolloutError, TargetError, TargetEvent, TargetReport, TaskExecution, TaskOutcome};

use crate::DockerTarget;
use crate::replicas::{api_error, create_and_start, label, log_tail};

/// What a task container's `launchway.role` label says.
pub(crate) const TASK_ROLE: &str = "task";
/// The run that started a task container.
const RUN_LABEL: &str = "launchway.run";
/// How long a task may run when its spec sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
const LOG_LINES: usize = 20;

pub(crate) async fn run(
    target: &DockerTarget,
    task: TaskExecution<'_>,
    progress: &dyn Progress,
) -> Result<TaskOutcome, RolloutError> {
    let AppSpec::Task(spec) = task.spec else {
        return Err(TargetError::Invalid(format!("{} is not a Docker task", task.app)).into());
    };
    let started = Instant::now();
    let network = target.ensure_network(task.env).await?;
    let docker = target.client();
    // Named after the run, so that a run resumed after a crash finds its container
    // (create answers 409 and the existing one is used) instead of starting another.
    let base = format!("{}-{}-run{}", task.app, task.env, task.run_id);
    let names: Vec<String> = std::iter::once(base.clone())
        .chain(spec.containers[1..].iter().map(|sidecar| format!("{base}-{}", sidecar.name)))
        .collect();
    let primary_id = match existing(target, &base).await? {
        // Started before a crash: wait for it (or read how it ended); never run it twice.
        Some(id) => id,
        None => {
            let primary_id = target
                .create_and_start_on_network(task.env, &base, body(&task, &spec.containers[0], Network::Own(&network)))
                .await?;
            for sidecar in &spec.containers[1..] {
                let name = format!("{base}-{}", sidecar.name);
                create_and_start(docker, &name, body(&task, sidecar, Network::Shared(&primary_id))).await?;
            }
            progress
                .report(TargetEvent::new(
                    TargetReport::TaskStarted { container: base.clone(), image: spec.containers[0].image.clone() },
                    format!("started {base} ({})", spec.containers[0].image),
                ))
                .await;
            primary_id
        }
    };

    let timeout = spec.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let waited =
        tokio::time::timeout(timeout.saturating_sub(started.elapsed()), wait_for_exit(target, &primary_id)).await;
    let logs = log_tail(docker, &primary_id, LOG_LINES).await;
    remove_all(target, &names).await;
    let elapsed = started.elapsed();
    match waited {
        Err(_) => Err(RolloutError::TimedOut {
            reason: format!("task {} was still running after {}s and was stopped", task.app, timeout.as_secs()),
            logs,
        }),
        Ok(Err(error)) => Err(error.into()),
        Ok(Ok(0)) => Ok(TaskOutcome { exit_code: 0, elapsed, logs }),
        Ok(Ok(code)) => {
            Err(RolloutError::Unhealthy { reason: format!("task {} exited with code {code}", task.app), logs })
        }
    }
}

/// The id of a task container that was started earlier, if there is one.
async fn existing(target: &DockerTarget, name: &str) -> Result<Option<String>, TargetError> {
    match target.client().inspect_container(name, None).await {
        Ok(container) => {
            let started = container.state.and_then(|state| state.started_at).is_some_and(|at| !at.starts_with("0001-"));
            Ok(if started { container.id } else { None })
        }
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(error) => Err(api_error(&format!("inspect container {name}"), error)),
    }
}

/// Removes the task containers left in `env` (by a run interrupted for good).
pub(crate) async fn remove_leftovers(target: &DockerTarget, env: &str) -> Result<usize, TargetError> {
    let filters =
        HashMap::from([("label", vec![format!("{}={env}", label::ENV), format!("{}={TASK_ROLE}", label::ROLE)])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let containers = target
        .client()
        .list_containers(Some(options))
        .await
        .map_err(|error| api_error("list task containers", error))?;
    let names: Vec<String> = containers.into_iter().filter_map(|container| container.id).collect();
    remove_all(target, &names).await;
    Ok(names.len())
}

/// The container's exit code, once it has exited. The client's request timeout can
/// end a long wait; the wait then simply starts again.
async fn wait_for_exit(target: &DockerTarget, id: &str) -> Result<i64, TargetError> {
    loop {
        let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut wait = target.client().wait_container(id, Some(options));
        match wait.next().await {
            Some(Ok(response)) => return Ok(response.status_code),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => return Ok(code),
            Some(Err(DockerError::RequestTimeoutError)) | None => continue,
            Some(Err(error)) => return Err(api_error(&format!("wait for container {id}"), error)),
        }
    }
}

async fn remove_all(target: &DockerTarget, names: &[String]) {
    for name in names.iter().rev() {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        if let Err(error) = target.client().remove_container(name, Some(options)).await
            && !matches!(error, DockerError::DockerResponseServerError { status_code: 404 | 409, .. })
        {
            tracing::warn!(container = %name, %error, "could not remove a finished task container");
        }
    }
}

enum Network<'a> {
    /// The environment's network, by id.
    Own(&'a str),
    /// The primary container's namespace, by container id.
    Shared(&'a str),
}

fn body(task: &TaskExecution<'_>, container: &ContainerSpec, network: Network<'_>) -> ContainerCreateBody {
    let labels = HashMap::from([
        (label::MANAGED.to_owned(), "true".to_owned()),
        (label::APP.to_owned(), task.app.to_owned()),
        (label::ENV.to_owned(), task.env.to_owned()),
        (label::REVISION.to_owned(), task.revision.to_owned()),
        (label::RELEASE.to_owned(), task.release_id.to_string()),
        (label::CONTAINER.to_owned(), container.name.clone()),
        (label::ROLE.to_owned(), TASK_ROLE.to_owned()),
        (RUN_LABEL.to_owned(), task.run_id.to_string()),
    ]);
    let env: Vec<String> = container.env.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let (network_mode, networking_config) = match network {
        Network::Own(id) => (
            id.to_owned(),
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(id.to_owned(), EndpointSettings::default())])),
            }),
        ),
        Network::Shared(primary) => (format!("container:{primary}"), None),
    };
    ContainerCreateBody {
        image: Some(container.image.clone()),
        cmd: container.command.clone(),
        entrypoint: container.entrypoint.clone(),
        env: Some(env),
        labels: Some(labels),
        networking_config,
        host_config: Some(HostConfig { network_mode: Some(network_mode), ..HostConfig::default() }),
        ..ContainerCreateBody::default()
    }
}
