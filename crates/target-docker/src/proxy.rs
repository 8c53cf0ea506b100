//! The Docker host's traffic entry point: launchway's proxy (`launchway proxy`) in a
//! container of its own, made from launchway's own executable (nothing is pulled), on
//! the host's network, its route table in a volume. It keeps serving while launchway is
//! down; Docker restarts it, and it reads its routes back. launchway sets a service's
//! route as its replicas turn healthy, and drains a replica before stopping it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerUpdateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use launchway_manifest::IngressTls;
use launchway_proxy::admin::{DrainAnswer, DrainRequest};
use launchway_proxy::{Backend, Build, HealthProbe, Route, RouteTable, RouteTls};
use launchway_target::{Progress, RolloutError, TargetError, TargetEvent, TargetReport};

use crate::replicas::api_error;
use crate::replicas::{self, DockerReplica};
use crate::{DockerTarget, ExecutableImage, ServiceRollout, build_executable_image};

const IMAGE: &str = "launchway/proxy:local";

/// Where the proxy's admin API listens on the host: `LAUNCHWAY_PROXY_ADMIN`, else
/// 127.0.0.1:8099. A host has one proxy per admin address (tests use their own).
fn admin_address() -> String {
    std::env::var("LAUNCHWAY_PROXY_ADMIN")
        .ok()
        .filter(|address| !address.is_empty())
        .unwrap_or_else(|| "127.0.0.1:8099".to_owned())
}

/// The proxy's state volume: after its admin port.
fn volume() -> String {
    format!("launchway-proxy-state-{}", admin_port())
}

fn admin_port() -> String {
    admin_address().rsplit(':').next().unwrap_or("8099").to_owned()
}

/// The name a proxy container of `build` has: after its admin port and its build, so that
/// a newer one can start beside it and take its sockets over.
fn container_name(build: &Build) -> String {
    let (major, minor, patch) = build.version;
    format!("launchway-proxy-{}-{major}.{minor}.{patch}-{}-{}", admin_port(), build.written, build.size)
}

/// The name launchway gave its proxy container before proxies were replaced by newer
/// ones: such a proxy cannot hand its sockets over; they are lent to the new one
/// (`replace_one_that_cannot_hand_over`).
fn container_name_without_build() -> String {
    format!("launchway-proxy-{}", admin_port())
}

const ROLE_LABEL: &str = "launchway.role";
const ADMIN_LABEL: &str = "launchway.proxy.admin";
const BUILD_LABEL: &str = "launchway.proxy.build";

/// Whether the host's proxy answers, as an app's entry point.
pub(crate) async fn observe(http: &reqwest::Client) -> launchway_target::EntryPoint {
    let admin = admin_address();
    let answer = http.get(format!("http://{admin}/healthz")).timeout(Duration::from_secs(1)).send().await;
    launchway_target::EntryPoint {
        answering: answer.is_ok_and(|answer| answer.status().is_success()),
        what: format!("the proxy on this host (admin {admin}, containers labelled {ADMIN_LABEL}={admin})"),
    }
}

/// The build of this launchway, as its proxy containers are labelled: the version, then
/// the executable's modification time and size.
fn own_build() -> Result<Build, TargetError> {
    static OWN: std::sync::OnceLock<Result<Build, String>> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        let executable =
            std::env::current_exe().map_err(|error| format!("cannot find launchway's own executable: {error}"))?;
        let metadata =
            std::fs::metadata(&executable).map_err(|error| format!("cannot read {}: {error}", executable.display()))?;
        let written = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |elapsed| elapsed.as_secs());
        let version = format!("{}/{written}/{}", env!("CARGO_PKG_VERSION"), metadata.len());
        version.parse()
    });
    own.clone().map_err(TargetError::Invalid)
}

/// The proxy's admin API, once the proxy runs.
pub(crate) struct ProxyClient {
    http: reqwest::Client,
    admin: String,
    /// The admin token the proxy's containers are given (a proxy created before
    /// launchway made one asks for none, and takes it).
    token: String,
}

/// The environment variable `launchway proxy` reads its admin token from.
const TOKEN_VARIABLE: &str = "LAUNCHWAY_PROXY_TOKEN";

/// A proxy container of this host's admin address.
#[derive(Debug)]
struct ProxyContainer {
    id: String,
    running: bool,
    /// `None`: made by a launchway from before proxies were replaced.
    build: Option<Build>,
    token: Option<String>,
    /// The image it runs: a replaced proxy's image, untagged when the new one was
    /// imported, goes with it.
    image: Option<String>,
}

/// The proxy containers of this admin address, found by label (and, for those made
/// before the label, by name), with the token each was given.
async fn proxy_containers(docker: &Docker) -> Result<Vec<ProxyContainer>, TargetError> {
    let filters = HashMap::from([("label", vec![format!("{ROLE_LABEL}=proxy")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let summaries = docker.list_containers(Some(options)).await.map_err(|error| api_error("list containers", error))?;
    let (admin, unlabelled_name) = (admin_address(), format!("/{}", container_name_without_build()));
    let mut found = Vec::new();
    for summary in summaries {
        let labels = summary.labels.unwrap_or_default();
        let ours = match labels.get(ADMIN_LABEL) {
            Some(address) => *address == admin,
            None => summary.names.iter().flatten().any(|name| *name == unlabelled_name),
        };
        let Some(id) = summary.id.filter(|_| ours) else { continue };
        let Ok(inspected) = docker.inspect_container(&id, None).await else { continue };
        let token = inspected.config.and_then(|config| config.env).unwrap_or_default().iter().find_map(|variable| {
            variable.strip_prefix(TOKEN_VARIABLE).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned)
        });
        found.push(ProxyContainer {
            id,
            running: inspected.state.and_then(|state| state.running).unwrap_or(false),
            build: labels.get(BUILD_LABEL).and_then(|build| build.parse().ok()),
            token,
            image: summary.image_id.clone(),
        });
    }
    Ok(found)
}

impl ProxyClient {
    /// Finds the host's proxy answering, or starts its container (and its image, from
    /// this executable) and waits for it. A proxy from an older launchway is replaced by
    /// this one's, which takes its sockets over: no connection is refused meanwhile.
    pub(crate) async fn ensure(docker: &Docker, http: &reqwest::Client) -> Result<ProxyClient, TargetError> {
        let own = own_build()?;
        let containers = proxy_containers(docker).await?;
        // The token lives in the containers' own environment: whoever may inspect
        // containers on this host may also run them, so it tells them nothing new, and
        // every launchway process finds it there. A successor gets its predecessor's.
        let token = containers
            .iter()
            .filter(|container| container.running)
            .chain(containers.iter())
            .find_map(|container| container.token.clone())
            .unwrap_or_else(new_token);
        let client = ProxyClient { http: http.clone(), admin: format!("http://{}", admin_address()), token };
        let newest_running =
            containers.iter().filter(|container| container.running).max_by(|a, b| a.build.cmp(&b.build));
        if let Some(serving) = newest_running.filter(|container| container.build.is_none())
            && client.answers().await
        {
            // Made before proxies could hand over: its sockets are lent to ours.
            client.replace_one_that_cannot_hand_over(docker, &own, &containers, serving).await?;
            return Ok(client);
        }
        let kept = newest_running.and_then(|container| container.build.as_ref()).is_some_and(|build| *build >= own);
        if kept && client.answers().await {
            let serving = newest_running.map(|container| container.id.as_str());
            let replaced = containers.iter().filter(|container| Some(container.id.as_str()) != serving);
            if let Err(error) = retire(docker, replaced).await {
                tracing::debug!(%error, "could not tidy up after a replaced proxy");
            }
            return Ok(client);
        }
        client.start(docker, &own, &containers).await?;
        Ok(client)
    }

    /// Starts this launchway's proxy container, which takes the sockets of a proxy still
    /// serving, and waits for the host's proxy to answer.
    async fn start(&self, docker: &Docker, own: &Build, containers: &[ProxyContainer]) -> Result<(), TargetError> {
        // The ones it replaces must not come back once they have handed over (or after
        // they were killed): Docker would restart them.
        retire(docker, containers.iter().filter(|container| container.build.as_ref() != Some(own))).await?;
        proxy_image(docker).await?;
        let name = container_name(own);
        let labels = [
            (ROLE_LABEL.to_owned(), "proxy".to_owned()),
            (ADMIN_LABEL.to_owned(), admin_address()),
            (BUILD_LABEL.to_owned(), own.to_string()),
        ];
        let body = ContainerCreateBody {
            image: Some(IMAGE.to_owned()),
            // Appended to the image's entry point: take the sockets of a proxy still
            // serving (none after a crash: then it listens itself).
            cmd: Some(vec!["--take-over".to_owned(), "--build".to_owned(), own.to_string()]),
            env: Some(vec![format!("{TOKEN_VARIABLE}={}", self.token)]),
            labels: Some(labels.into()),
            host_config: Some(HostConfig {
                // Route ports open on the host itself, and replicas' published ports
                // (127.0.0.1) are reachable from it.
                network_mode: Some("host".to_owned()),
                binds: Some(vec![format!("{}:/state", volume())]),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        replicas::create_and_start(docker, &name, body).await?;
        // A first start imports the image of launchway's own executable: on a busy host
        // that takes a while.
        for _ in 0..600 {
            if self.answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TargetError::Invalid(format!(
            "the proxy container {name} did not answer on http://{} within 30s (`docker logs {name}`)",
            admin_address()
        )))
    }

    /// Replaces a proxy made by a launchway from before proxies handed their sockets over:
    /// a short-lived container with ptrace rights over it (the host's PID namespace,
    /// CAP_SYS_PTRACE) copies its listening sockets (`launchway proxy-lend`) and hands
    /// them to ours, then the old one is stopped, finishing what it serves. If the
    /// sockets cannot be had, the old proxy keeps serving, as it was.
    async fn replace_one_that_cannot_hand_over(
        &self,
        docker: &Docker,
        own: &Build,
        containers: &[ProxyContainer],
        old: &ProxyContainer,
    ) -> Result<(), TargetError> {
        let inspected =
            docker.inspect_container(&old.id, None).await.map_err(|error| api_error("inspect the proxy", error))?;
        let Some(pid) = inspected.state.and_then(|state| state.pid).filter(|pid| *pid > 0) else {
            return Ok(());
        };
        let executable = proxy_image(docker).await?;
        let lender = format!("launchway-proxy-{}-lend", admin_port());
        remove_container(docker, &lender).await;
        let body = ContainerCreateBody {
            image: Some(IMAGE.to_owned()),
            entrypoint: Some(vec![
                format!("/{executable}"),
                "proxy-lend".to_owned(),
                "--from-pid".to_owned(),
                pid.to_string(),
                "--state".to_owned(),
                "/state/routes.json".to_owned(),
                "--admin".to_owned(),
                admin_address(),
            ]),
            labels: Some([(ROLE_LABEL.to_owned(), "proxy-lend".to_owned())].into()),
            host_config: Some(HostConfig {
                pid_mode: Some("host".to_owned()),
                cap_add: Some(vec!["SYS_PTRACE".to_owned()]),
                network_mode: Some("none".to_owned()),
                binds: Some(vec![format!("{}:/state", volume())]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        replicas::create_and_start(docker, &lender, body).await?;
        let offering = wait_for_line(docker, &lender, "offering the sockets").await;
        if let Err(problem) = offering {
            let logs = replicas::log_tail(docker, &lender, 20).await;
            remove_container(docker, &lender).await;
            tracing::warn!(%problem, ?logs, "the old proxy's sockets could not be had; it keeps serving");
            return Ok(());
        }
        // Ours takes the sockets from the lender (and the old one is kept from restarting).
        self.start(docker, own, containers).await?;
        let lent = wait_for_line(docker, &lender, "the new proxy serves from them").await;
        let logs = replicas::log_tail(docker, &lender, 20).await;
        remove_container(docker, &lender).await;
        if let Err(problem) = lent {
            return Err(TargetError::Invalid(format!(
                "the new proxy did not take the old one's sockets ({problem}): {}",
                logs.join(" | ")
            )));
        }
        // Both accept from the same sockets now; the old one finishes what it serves.
        let options = bollard::query_parameters::StopContainerOptionsBuilder::new().t(30).build();
        docker.stop_container(&old.id, Some(options)).await.map_err(|error| api_error("stop the old proxy", error))?;
        Ok(())
    }

    async fn answers(&self) -> bool {
        let request = self.http.get(format!("{}/healthz", self.admin)).timeout(Duration::from_secs(1));
        self.send(request, "check it answers").await.is_ok_and(|answer| answer.status().is_success())
    }

    /// Sends an admin call, again on a new connection when it reached a proxy that has
    /// just handed its sockets to a successor (every admin call is idempotent).
    async fn send(&self, request: reqwest::RequestBuilder, action: &str) -> Result<reqwest::Response, TargetError> {
        const ATTEMPTS: usize = 5;
        let request = request.bearer_auth(&self.token);
        for _ in 1..ATTEMPTS {
            let Some(attempt) = request.try_clone() else { break };
            match attempt.send().await {
                Ok(answer) if handed_over(&answer) => {}
                Ok(answer) => return Ok(answer),
                // The connection closed under the call: the proxy it reached let go.
                Err(error) if !error.is_timeout() && !error.is_connect() => {}
                Err(error) => return Err(proxy_error(action, error)),
            }
        }
        request.send().await.map_err(|error| proxy_error(action, error))
    }

    /// The replicas the service's route sends new requests to now (none without a
    /// route; not those kept idle at weight 0).
    pub(crate) async fn serving(&self, rollout: &ServiceRollout<'_>) -> Result<Vec<SocketAddr>, TargetError> {
        let backends = self.backends(rollout).await?;
        Ok(backends
            .iter()
            .filter(|backend| backend.weight > 0 && !backend.draining)
            .map(|backend| backend.address)
            .collect())
    }

    /// Every backend of the service's route, with its weight.
    pub(crate) async fn backends(&self, rollout: &ServiceRollout<'_>) -> Result<Vec<Backend>, TargetError> {
        let name = route_name(rollout);
        let table: RouteTable = self
            .send(self.http.get(format!("{}/routes", self.admin)), "read the routes")
            .await?
            .json()
            .await
            .map_err(|error| proxy_error("read the routes", error))?;
        let route = table.routes.into_iter().find(|route| route.name == name);
        Ok(route.map(|route| route.backends).unwrap_or_default())
    }

    /// Sends the service's requests to `serving`, evenly, and only to them.
    pub(crate) async fn route(&self, rollout: &ServiceRollout<'_>, serving: &[SocketAddr]) -> Result<(), TargetError> {
        self.route_weighted(rollout, serving.iter().map(|address| Backend::new(*address)).collect()).await
    }

    /// Sends the service's requests to `backends`, each its weight's share.
    pub(crate) async fn route_weighted(
        &self,
        rollout: &ServiceRollout<'_>,
        backends: Vec<Backend>,
    ) -> Result<(), TargetError> {
        let Some(ingress) = &rollout.spec.ingress else { return Ok(()) };
        let primary_port = rollout.spec.primary().port;
        // The proxy checks replicas itself only where their health check is on the port
        // it sends requests to.
        let health =
            rollout.spec.health.as_ref().filter(|health| Some(health.port) == primary_port).map(|health| HealthProbe {
                path: health.path.clone(),
                interval_ms: health.interval.as_millis() as u64,
                unhealthy_threshold: health.unhealthy_threshold,
            });
        let tls = match &ingress.tls {
            Some(tls) => Some(read_tls(tls)?),
            None => None,
        };
        let route = Route {
            name: route_name(rollout),
            port: ingress.port,
            host: ingress.host.clone(),
            path_prefix: ingress.path.clone(),
            backends,
            health,
            tls,
        };
        let answer = self.send(self.http.put(format!("{}/routes", self.admin)).json(&route), "set the route").await?;
        if !answer.status().is_success() {
            let status = answer.status();
            let text = answer.text().await.unwrap_or_default();
            return Err(TargetError::Invalid(format!(
                "the proxy refused the route of {}: {status} {text}",
                route.name
            )));
        }
        Ok(())
    }

    /// Waits (at most `grace`) for the requests under way to `backend` to end, once no
    /// new one goes there.
    pub(crate) async fn drain(&self, backend: SocketAddr, grace: Duration) -> Result<bool, TargetError> {
        let request = DrainRequest { backend, grace_ms: grace.as_millis() as u64 };
        let call =
            self.http.post(format!("{}/drain", self.admin)).json(&request).timeout(grace + Duration::from_secs(5));
        let answer: DrainAnswer = self
            .send(call, "drain a replica")
            .await?
            .json()
            .await
            .map_err(|error| proxy_error("drain a replica", error))?;
        Ok(answer.drained)
    }
}

/// The weights that give `revision`'s replicas (`ours`) `weight` percent of the
/// requests and the replicas that served before (`others`) the rest, each set sharing
/// its part evenly. At 100 the others stay in the route at weight 0: idle, and ready to
/// take everything back at once.
pub(crate) fn weighted(ours: &[SocketAddr], others: &[SocketAddr], weight: u8) -> Vec<Backend> {
    let weight = u32::from(weight.min(100));
    let (ours_each, others_each) = match (ours.len() as u32, others.len() as u32) {
        (_, 0) => (1, 0),
        (0, _) => (0, 1),
        (ours_count, others_count) => (weight * others_count, (100 - weight) * ours_count),
    };
    let backend = |address: &SocketAddr, weight: u32| Backend { weight, ..Backend::new(*address) };
    ours.iter()
        .map(|address| backend(address, ours_each))
        .chain(others.iter().map(|address| backend(address, others_each)))
        .collect()
}

/// Gives `weight` percent of the service's requests to its revision's replicas and the
/// rest to those that served before (never to a replica the route never had).
pub(crate) async fn shift_traffic(
    target: &DockerTarget,
    service: ServiceRollout<'_>,
    weight: u8,
    progress: &dyn Progress,
) -> Result<(), RolloutError> {
    if service.spec.ingress.is_none() {
        return Err(TargetError::Invalid(format!(
            "{} has no `ingress:`, so no traffic of its own to move",
            service.app
        ))
        .into());
    }
    let proxy = ProxyClient::ensure(&target.docker, &target.http).await?;
    let routed: Vec<_> = proxy.backends(&service).await?.into_iter().map(|backend| backend.address).collect();
    let running = replicas::list(&target.docker, service.env, Some(service.app)).await?;
    let running = running.iter().filter(|replica| replica.is_running());
    let (ours, others): (Vec<_>, Vec<_>) = running.partition(|replica| replica.revision == service.revision);
    let ours: Vec<_> = ours.iter().filter_map(|replica| endpoint(&service, replica)).collect();
    // Only replicas that were serving get the rest: never one that never passed.
    let others: Vec<_> = others
        .iter()
        .filter_map(|replica| endpoint(&service, replica))
        .filter(|address| routed.contains(address))
        .collect();
    if ours.is_empty() {
        return Err(RolloutError::Unhealthy {
            reason: format!("no replica of revision {} runs to take {weight}% of the traffic", service.revision),
            logs: Vec::new(),
        });
    }
    proxy.route_weighted(&service, weighted(&ours, &others, weight)).await?;
    let report = TargetReport::TrafficShifted {
        revision: service.revision.to_owned(),
        weight,
        replicas: ours.len() as u32,
        others: others.len() as u32,
    };
    let message = match others.len() {
        0 => format!("all traffic goes to revision {} ({} replicas)", service.revision, ours.len()),
        count => format!(
            "{weight}% of traffic goes to revision {} ({} replicas), {}% to the {count} serving before",
            service.revision,
            ours.len(),
            100 - u32::from(weight)
        ),
    };
    progress.report(TargetEvent::new(report, message)).await;
    Ok(())
}

/// The certificate and key an ingress names, read from the machine launchway runs on.
pub(crate) fn read_tls(tls: &IngressTls) -> Result<RouteTls, TargetError> {
    let read = |path: &str, what: &str| {
        std::fs::read_to_string(path)
            .map_err(|error| TargetError::local(format!("cannot read the entry point's {what} {path}"), error))
    };
    Ok(RouteTls { certificate_pem: read(&tls.certificate, "TLS certificate")?, key_pem: read(&tls.key, "TLS key")? })
}

/// A fresh admin token: 32 random bytes, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn route_name(rollout: &ServiceRollout<'_>) -> String {
    format!("{}@{}", rollout.app, rollout.env)
}

/// Where the proxy reaches a replica: its primary container's port, published on the
/// host's loopback.
pub(crate) fn endpoint(rollout: &ServiceRollout<'_>, replica: &DockerReplica) -> Option<SocketAddr> {
    let port = replica.host_port(rollout.spec.primary().port?)?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The proxy's image, made from this executable (nothing is pulled); answers the
/// executable's name in it.
async fn proxy_image(docker: &Docker) -> Result<String, TargetError> {
    let executable =
        std::env::current_exe().map_err(|error| TargetError::local("cannot find launchway's own executable", error))?;
    let name = executable.file_name().and_then(|name| name.to_str()).unwrap_or("launchway").to_owned();
    let image = ExecutableImage {
        tag: IMAGE.to_owned(),
        executable,
        args: ["proxy", "--state", "/state/routes.json", "--listen-ip", "0.0.0.0", "--admin", &admin_address()]
            .map(str::to_owned)
            .to_vec(),
        env: Vec::new(),
    };
    build_executable_image(docker, &image).await?;
    Ok(name)
}

/// Waits (at most 30 s) until `container` logs a line containing `line`; an error when it
/// ends first.
async fn wait_for_line(docker: &Docker, container: &str, line: &str) -> Result<(), String> {
    for _ in 0..600 {
        let logs = replicas::log_tail(docker, container, 50).await;
        if logs.iter().any(|logged| logged.contains(line)) {
            return Ok(());
        }
        let running = docker.inspect_container(container, None).await.ok().and_then(|inspected| inspected.state);
        if running.is_some_and(|state| {
            state.running == Some(false) && state.finished_at.is_some_and(|at| !at.starts_with("0001"))
        }) {
            return Err(format!("it ended: {}", logs.join(" | ")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("it said nothing within 30s".to_owned())
}

/// Whether an admin answer comes from a proxy that handed its sockets over.
fn handed_over(answer: &reqwest::Response) -> bool {
    let (name, value) = launchway_proxy::admin::HANDED_OVER;
    answer.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
        && answer.headers().get(name).is_some_and(|header| header == value)
}

/// Removes a proxy container that no longer serves (gone already is fine).
async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    if let Err(error) = docker.remove_container(id, Some(options)).await {
        tracing::debug!(%error, container = id, "could not remove a proxy container that no longer serves");
    }
}

/// Tidies up after proxies that were replaced: those that ended are removed, and one
/// still finishing its requests (or about to hand over) is kept from restarting.
async fn retire(docker: &Docker, replaced: impl Iterator<Item = &ProxyContainer>) -> Result<(), TargetError> {
    for container in replaced {
        if container.running {
            let update = ContainerUpdateBody {
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..ContainerUpdateBody::default()
            };
            docker
                .update_container(&container.id, update)
                .await
                .map_err(|error| api_error("keep a replaced proxy from restarting", error))?;
        } else {
            remove_container(docker, &container.id).await;
            if let Some(image) = &container.image {
                // Refused while another container uses it (the new proxy, when it is the
                // same image): then it stays.
                let _ = docker.remove_image(image, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
            }
        }
    }
    Ok(())
}

fn proxy_error(action: &str, error: reqwest::Error) -> TargetError {
    TargetError::Unreachable { target: format!("the launchway proxy (to {action})"), source: Box::new(error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(ports: &[u16]) -> Vec<SocketAddr> {
        ports.iter().map(|port| SocketAddr::from(([127, 0, 0, 1], *port))).collect()
    }

    fn share(backends: &[Backend], ports: &[u16]) -> f64 {
        let total: u32 = backends.iter().map(|backend| backend.weight).sum();
        let ours: u32 = backends
            .iter()
            .filter(|backend| ports.contains(&backend.address.port()))
            .map(|backend| backend.weight)
            .sum();
        f64::from(ours) / f64::from(total)
    }

    #[test]
    fn weights_give_each_set_its_share_whatever_the_sizes() {
        let backends = weighted(&addresses(&[1, 2, 3]), &addresses(&[4, 5]), 20);
        assert!((share(&backends, &[1, 2, 3]) - 0.20).abs() < 1e-9);
        let backends = weighted(&addresses(&[1]), &addresses(&[4, 5, 6]), 60);
        assert!((share(&backends, &[1]) - 0.60).abs() < 1e-9);
    }

    #[test]
    fn at_a_hundred_the_others_stay_idle_and_alone_the_new_set_takes_everything() {
        let backends = weighted(&addresses(&[1]), &addresses(&[4]), 100);
        assert_eq!(backends.iter().map(|backend| backend.weight).collect::<Vec<_>>(), [100, 0]);
        let backends = weighted(&addresses(&[1, 2]), &[], 20);
        assert!(backends.iter().all(|backend| backend.weight == 1));
    }
}
