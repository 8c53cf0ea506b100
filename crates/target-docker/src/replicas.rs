//! Replicas as labelled containers: reading them back, starting and removing them.
//!
//! A replica is one primary container, which owns the network namespace and publishes
//! the ports, plus any sidecars sharing that namespace (as in a Kubernetes pod or an ECS
//! task). Every container carries labels naming its app, environment, revision, release
//! and slot, and the spec it was created from: the engine's view of live state is built
//! from these labels alone, so it survives the loss of launchway's database.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use launchway_manifest::{ContainerSpec, ServiceSpec};

use crate::{DockerTarget, ServiceRollout};
use launchway_target::{LiveReplica, ReplicaState, TargetError};

/// The labels launchway puts on every container it manages.
pub mod label {
    pub const MANAGED: &str = "launchway.managed";
    pub const APP: &str = "launchway.app";
    pub const ENV: &str = "launchway.env";
    pub const REVISION: &str = "launchway.revision";
    pub const RELEASE: &str = "launchway.release";
    pub const SLOT: &str = "launchway.slot";
    pub const CONTAINER: &str = "launchway.container";
    pub const ROLE: &str = "launchway.role";
    pub const SPEC: &str = "launchway.spec";
}

const PRIMARY: &str = "primary";
const SIDECAR: &str = "sidecar";

/// One container of a replica, as listed by the engine.
#[derive(Debug, Clone)]
pub(crate) struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub spec: Option<ContainerSpec>,
    /// Container port → port published on 127.0.0.1.
    pub published: BTreeMap<u16, u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct DockerReplica {
    pub app: String,
    pub revision: String,
    pub slot: u32,
    pub release_id: Option<i64>,
    pub primary: Option<ContainerInfo>,
    pub sidecars: Vec<ContainerInfo>,
}

impl DockerReplica {
    /// Identifies the replica across snapshots: revision and slot.
    pub fn key(&self) -> String {
        format!("{}/{}", self.revision, self.slot)
    }

    /// Serving requires the primary and every sidecar to be running.
    pub fn is_running(&self) -> bool {
        self.primary.as_ref().is_some_and(|primary| primary.running) && self.sidecars.iter().all(|c| c.running)
    }

    pub fn containers(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.primary.iter().chain(&self.sidecars)
    }

    /// The first container that is not running, with its exit code.
    pub fn stopped_container(&self) -> Option<&ContainerInfo> {
        self.containers().find(|container| !container.running)
    }

    pub fn host_port(&self, container_port: u16) -> Option<u16> {
        self.primary.as_ref()?.published.get(&container_port).copied()
    }

    pub fn name(&self) -> String {
        match &self.primary {
            Some(primary) => primary.name.clone(),
            None => format!("{}-{}-{}", self.app, self.revision, self.slot),
        }
    }

    pub fn to_live(&self) -> LiveReplica {
        LiveReplica {
            id: self.primary.as_ref().map_or_else(|| self.key(), |primary| primary.id.clone()),
            name: self.name(),
            revision: self.revision.clone(),
            release_id: self.release_id,
            slot: self.slot,
            state: if self.is_running() {
                ReplicaState::Running
            } else {
                ReplicaState::Stopped { exit_code: self.stopped_container().and_then(|container| container.exit_code) }
            },
            containers: self.containers().filter_map(|container| container.spec.clone()).collect(),
            endpoints: self
                .primary
                .iter()
                .flat_map(|primary| primary.published.values())
                .map(|port| format!("127.0.0.1:{port}"))
                .collect(),
            restarts: 0,
        }
    }
}

/// Every replica launchway manages in `env`, optionally of one app only.
pub(crate) async fn list(docker: &Docker, env: &str, app: Option<&str>) -> Result<Vec<DockerReplica>, TargetError> {
    let mut label_filters = vec![format!("{}=true", label::MANAGED), format!("{}={env}", label::ENV)];
    if let Some(app) = app {
        label_filters.push(format!("{}={app}", label::APP));
    }
    let filters = HashMap::from([("label", label_filters)]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let summaries = docker.list_containers(Some(options)).await.map_err(|error| api_error("list containers", error))?;

    let mut replicas: BTreeMap<(String, String, u32), DockerReplica> = BTreeMap::new();
    for summary in summaries {
        let Some((key, role, release_id, info)) = parse_summary(summary) else {
            continue;
        };
        let replica = replicas.entry(key.clone()).or_insert_with(|| DockerReplica {
            app: key.0.clone(),
            revision: key.1.clone(),
            slot: key.2,
            release_id,
            primary: None,
            sidecars: Vec::new(),
        });
        if role == PRIMARY {
            replica.primary = Some(info);
        } else {
            replica.sidecars.push(info);
        }
    }
    Ok(replicas.into_values().collect())
}

type ReplicaKey = (String, String, u32);

fn parse_summary(summary: ContainerSummary) -> Option<(ReplicaKey, String, Option<i64>, ContainerInfo)> {
    let labels = summary.labels.unwrap_or_default();
    let app = labels.get(label::APP)?.clone();
    let revision = labels.get(label::REVISION)?.clone();
    let slot: u32 = labels.get(label::SLOT)?.parse().ok()?;
    let role = labels.get(label::ROLE).cloned().unwrap_or_else(|| PRIMARY.to_owned());
    let release_id = labels.get(label::RELEASE).and_then(|id| id.parse().ok());
    let spec = labels.get(label::SPEC).and_then(|json| serde_json::from_str(json).ok());
    let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
    let published = summary
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|port| Some((port.private_port, port.public_port?)))
        .collect();
    let info = ContainerInfo {
        id: summary.id.unwrap_or_default(),
        name: summary
            .names
            .and_then(|names| names.into_iter().next())
            .map(|name| name.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        running,
        exit_code: summary.status.as_deref().and_then(exit_code_from_status),
        spec,
        published,
    };
    Some(((app, revision, slot), role, release_id, info))
}

/// "Exited (137) 3 seconds ago" → 137; "Restarting (1) 2 seconds ago" (a crash that
/// the restart policy is handling) → 1.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let inner = status.strip_prefix("Exited (").or_else(|| status.strip_prefix("Restarting ("))?;
    inner.split(')').next()?.parse().ok()
}

/// The container name of a replica's container: `web-dev-3f9a1c2b4d5e-0` for the
/// primary, with `-<container>` for sidecars.
pub(crate) fn container_name(
    rollout: &ServiceRollout<'_>,
    slot: u32,
    container: &ContainerSpec,
    primary: bool,
) -> String {
    let base = format!("{}-{}-{}-{slot}", rollout.app, rollout.env, rollout.revision);
    if primary { base } else { format!("{base}-{}", container.name) }
}

/// Creates and starts one replica's containers on the network with id `network`.
/// Idempotent: containers that already exist under their names (from an attempt
/// interrupted by a crash) are started as they are, not duplicated.
pub(crate) async fn start(
    target: &DockerTarget,
    network: &str,
    rollout: &ServiceRollout<'_>,
    slot: u32,
) -> Result<(), TargetError> {
    let docker = &target.docker;
    let spec = rollout.spec;
    let primary_spec = spec.primary();
    let primary_name = container_name(rollout, slot, primary_spec, true);
    let body = create_body(rollout, slot, primary_spec, PRIMARY, network_settings(rollout, network, spec));
    let primary_id = target.create_and_start_on_network(rollout.env, &primary_name, body).await?;
    for sidecar in &spec.containers[1..] {
        let name = container_name(rollout, slot, sidecar, false);
        let shared = ContainerNetwork::Shared { primary_id: primary_id.clone() };
        let body = create_body(rollout, slot, sidecar, SIDECAR, shared);
        create_and_start(docker, &name, body).await?;
    }
    Ok(())
}

enum ContainerNetwork {
    /// Joins the environment's network with the app's name as alias, publishing ports.
    Own { network: String, alias: String, ports: Vec<u16> },
    /// Shares the primary's network namespace.
    Shared { primary_id: String },
}

fn network_settings(rollout: &ServiceRollout<'_>, network: &str, spec: &ServiceSpec) -> ContainerNetwork {
    let mut ports: Vec<u16> = spec.containers.iter().filter_map(|container| container.port).collect();
    if let Some(health) = &spec.health {
        ports.push(health.port);
    }
    ports.sort_unstable();
    ports.dedup();
    ContainerNetwork::Own { network: network.to_owned(), alias: rollout.app.to_owned(), ports }
}

fn create_body(
    rollout: &ServiceRollout<'_>,
    slot: u32,
    container: &ContainerSpec,
    role: &str,
    network: ContainerNetwork,
) -> ContainerCreateBody {
    let labels = HashMap::from([
        (label::MANAGED.to_owned(), "true".to_owned()),
        (label::APP.to_owned(), rollout.app.to_owned()),
        (label::ENV.to_owned(), rollout.env.to_owned()),
        (label::REVISION.to_owned(), rollout.revision.to_owned()),
        (label::RELEASE.to_owned(), rollout.release_id.to_string()),
        (label::SLOT.to_owned(), slot.to_string()),
        (label::CONTAINER.to_owned(), container.name.clone()),
        (label::ROLE.to_owned(), role.to_owned()),
        (label::SPEC.to_owned(), serde_json::to_string(container).expect("container specs always serialize")),
    ]);
    let env: Vec<String> = container.env.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let mut host_config = HostConfig {
        // Replicas keep running when launchway is not: Docker restarts them after a
        // crash or an engine restart, but not after launchway stops them.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..HostConfig::default()
    };
    let mut body = ContainerCreateBody {
        image: Some(container.image.clone()),
        cmd: container.command.clone(),
        entrypoint: container.entrypoint.clone(),
        env: Some(env),
        labels: Some(labels),
        stop_timeout: Some(rollout.spec.stop_grace_period.as_secs().max(1) as i64),
        ..ContainerCreateBody::default()
    };
    match network {
        ContainerNetwork::Own { network, alias, ports } => {
            let keys: Vec<String> = ports.iter().map(|port| format!("{port}/tcp")).collect();
            host_config.port_bindings = Some(
                keys.iter()
                    .map(|key| {
                        let binding = PortBinding {
                            host_ip: Some("127.0.0.1".to_owned()),
                            // Empty: the engine picks a free port.
                            host_port: Some(String::new()),
                        };
                        (key.clone(), Some(vec![binding]))
                    })
                    .collect(),
            );
            host_config.network_mode = Some(network.clone());
            body.exposed_ports = Some(keys);
            body.networking_config = Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings { aliases: Some(vec![alias]), ..EndpointSettings::default() },
                )])),
            });
        }
        ContainerNetwork::Shared { primary_id } => {
            host_config.network_mode = Some(format!("container:{primary_id}"));
        }
    }
    body.host_config = Some(host_config);
    body
}

pub(crate) async fn create_and_start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, TargetError> {
    let options = CreateContainerOptionsBuilder::new().name(name).build();
    let id = match docker.create_container(Some(options), body).await {
        Ok(created) => created.id,
        // Created by an earlier attempt that was interrupted: use it.
        Err(DockerError::DockerResponseServerError { status_code: 409, .. }) => docker
            .inspect_container(name, None)
            .await
            .map_err(|error| api_error(&format!("inspect container {name}"), error))?
            .id
            .unwrap_or_else(|| name.to_owned()),
        Err(error) => return Err(api_error(&format!("create container {name}"), error)),
    };
    match docker.start_container(&id, None).await {
        // 304: already started.
        Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 304, .. }) => Ok(id),
        Err(error) => Err(api_error(&format!("start container {name}"), error)),
    }
}

/// Stops a replica (sidecars first, then the primary, each with the grace period) and
/// removes its containers. Idempotent: containers already gone are skipped.
pub(crate) async fn remove(docker: &Docker, replica: &DockerReplica, grace_seconds: i32) -> Result<(), TargetError> {
    for container in replica.sidecars.iter().chain(replica.primary.iter()) {
        if container.running {
            let options = StopContainerOptionsBuilder::new().t(grace_seconds).build();
            match docker.stop_container(&container.id, Some(options)).await {
                Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 304 | 404, .. }) => {}
                Err(error) => return Err(api_error(&format!("stop container {}", container.name), error)),
            }
        }
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match docker.remove_container(&container.id, Some(options)).await {
            // 409: removal already in progress.
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
            Err(error) => return Err(api_error(&format!("remove container {}", container.name), error)),
        }
    }
    Ok(())
}

/// How many times Docker's restart policy has restarted a container (0 for one that is
/// gone: the caller's listing says so).
pub(crate) async fn restart_count(docker: &Docker, container_id: &str) -> Result<i64, TargetError> {
    match docker.inspect_container(container_id, None).await {
        Ok(inspected) => Ok(inspected.restart_count.unwrap_or_default()),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(0),
        Err(error) => Err(api_error(&format!("inspect container {container_id}"), error)),
    }
}

/// The restarts of a replica's containers (given by id), summed.
pub(crate) async fn replica_restarts(docker: &Docker, container_ids: &[String]) -> Result<i64, TargetError> {
    let mut count = 0;
    for container_id in container_ids {
        count += restart_count(docker, container_id).await?;
    }
    Ok(count)
}

/// The last lines a container wrote, stdout and stderr together.
pub(crate) async fn log_tail(docker: &Docker, container_id: &str, lines: usize) -> Vec<String> {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
    let mut stream = docker.logs(container_id, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.lines().map(str::to_owned).collect()
}

pub(crate) fn api_error(action: &str, error: DockerError) -> TargetError {
    TargetError::Api { action: action.to_owned(), source: Box::new(error) }
}

#[cfg(test)]
mod tests {
    use super::exit_code_from_status;

    #[test]
    fn reads_exit_codes_from_container_status() {
        assert_eq!(exit_code_from_status("Exited (137) 3 seconds ago"), Some(137));
        assert_eq!(exit_code_from_status("Exited (0) About a minute ago"), Some(0));
        assert_eq!(exit_code_from_status("Restarting (1) 2 seconds ago"), Some(1));
        assert_eq!(exit_code_from_status("Up 2 seconds"), None);
        assert_eq!(exit_code_from_status("Created"), None);
    }
}
