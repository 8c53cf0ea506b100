//! The target conformance behaviours (`launchway_target::conformance`) against the
//! Docker engine on this machine, with an image made here from `/bin/sleep` and the
//! libraries it loads (nothing is pulled), and what the Docker target must hold to
//! under concurrency (one network per environment). Each test has an environment of its
//! own, removed when it ends, passed or failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use launchway_manifest::{AppSpec, ContainerSpec, ServiceSpec, Strategy};
use launchway_target::conformance::{self, Subject};
use launchway_target_docker::{DockerTarget, ExecutableImage, build_executable_image};

const IMAGE: &str = "launchway-conformance/sleep:1";

/// Two replicas that keep running; v1 and v2 differ in an environment variable.
fn service(version: &str) -> AppSpec {
    AppSpec::Service(ServiceSpec {
        containers: vec![ContainerSpec {
            name: "app".into(),
            image: IMAGE.into(),
            command: None,
            entrypoint: None,
            env: BTreeMap::from([("VERSION".to_owned(), version.to_owned())]),
            port: None,
        }],
        replicas: 2,
        health: None,
        strategy: Strategy::Rolling { max_surge: 1, max_unavailable: 0, timeout: Duration::from_secs(60) },
        stop_grace_period: Duration::from_secs(1),
        settle_window: Some(Duration::from_millis(300)),
        ingress: None,
    })
}

/// A Docker environment that is removed when the test ends, however it ends.
struct Environment {
    target: Arc<DockerTarget>,
    name: String,
}

impl Drop for Environment {
    fn drop(&mut self) {
        let (target, name) = (self.target.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async { target.remove_environment(&name).await.expect("cleaned up") })
        });
        let _ = cleanup.join();
    }
}

impl Environment {
    async fn new(test: &str) -> Environment {
        let target = Arc::new(DockerTarget::connect(None).await.expect("the Docker engine answers"));
        let sleep = ExecutableImage {
            tag: IMAGE.into(),
            executable: "/bin/sleep".into(),
            args: vec!["3600".into()],
            env: Vec::new(),
        };
        build_executable_image(target.client(), &sleep).await.expect("the image is made");
        let name = format!("conformance-{test}-{}", std::process::id());
        Environment { target, name }
    }

    async fn check(&self, behaviour: impl AsyncFnOnce(&Subject<'_>)) {
        let (v1, v2) = (service("1"), service("2"));
        let subject = Subject { target: self.target.as_ref(), env: &self.name, app: "app", v1: &v1, v2: &v2 };
        behaviour(&subject).await;
    }
}

#[tokio::test]
async fn rollouts_are_observed_planned_and_verified() {
    let environment = Environment::new("observed").await;
    environment.check(async |subject| conformance::rollouts_are_observed_planned_and_verified(subject).await).await;
}

#[tokio::test]
async fn rolling_out_what_runs_changes_nothing() {
    let environment = Environment::new("idempotent").await;
    environment.check(async |subject| conformance::rolling_out_what_runs_changes_nothing(subject).await).await;
}

#[tokio::test]
async fn retiring_a_revision_stops_it() {
    let environment = Environment::new("retire").await;
    environment.check(async |subject| conformance::retiring_a_revision_stops_it(subject).await).await;
}

/// The one network named `launchway-<env>` that exists, and the network each of the
/// environment's containers is on.
async fn networks_of(target: &DockerTarget, env: &str) -> (Vec<(String, String)>, Vec<String>) {
    use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
    let name = format!("launchway-{env}");
    let filters = std::collections::HashMap::from([("name", vec![name.clone()])]);
    let networks = target
        .client()
        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
        .await
        .expect("networks");
    let mut named: Vec<(String, String)> = networks
        .into_iter()
        .filter(|network| network.name.as_deref() == Some(name.as_str()))
        .map(|network| (network.created.map(|at| at.to_string()).unwrap_or_default(), network.id.unwrap_or_default()))
        .collect();
    named.sort();
    let label = std::collections::HashMap::from([("label", vec![format!("launchway.env={env}")])]);
    let containers = target
        .client()
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&label).build()))
        .await
        .expect("containers");
    let on: Vec<String> = containers
        .into_iter()
        .flat_map(|container| container.network_settings.and_then(|settings| settings.networks).unwrap_or_default())
        .filter_map(|(_, endpoint)| endpoint.network_id)
        .collect();
    (named, on)
}

fn rollout<'a>(app: &'a str, env: &'a str, spec: &'a AppSpec, revision: &'a str) -> launchway_target::Rollout<'a> {
    launchway_target::Rollout { app, env, release_id: 1, revision, spec }
}

/// Issue 22, item 2: two deploys into a new environment each created its network
/// (Docker accepts a duplicate name), after which deploys failed on the ambiguous name or
/// apps landed on different networks. Separate targets (as separate processes are) roll
/// out apps into a new environment at once: one network, every app on it.
#[tokio::test]
async fn deploys_into_a_new_environment_at_once_share_one_network() {
    let environment = Environment::new("together").await;
    let spec = match service("1") {
        AppSpec::Service(service) => AppSpec::Service(ServiceSpec { replicas: 1, ..service }),
        other => other,
    };
    let revision = spec.revision().0;
    let mut targets = Vec::new();
    for _ in 0..6 {
        targets.push(DockerTarget::connect(None).await.expect("the Docker engine answers"));
    }
    let apps: Vec<String> = (0..targets.len()).map(|index| format!("app{index}")).collect();
    let rollouts = targets.iter().zip(&apps).map(|(target, app)| {
        let (spec, revision, env) = (&spec, &revision, &environment.name);
        async move {
            launchway_target::Target::rollout(
                target,
                rollout(app, env, spec, revision),
                &conformance::Reports::default(),
            )
            .await
        }
    });
    for outcome in futures_util::future::join_all(rollouts).await {
        outcome.expect("each rollout succeeds");
    }
    let (networks, on) = networks_of(&environment.target, &environment.name).await;
    assert_eq!(networks.len(), 1, "one network: {networks:?}");
    assert_eq!(on.len(), apps.len(), "{on:?}");
    assert!(on.iter().all(|id| *id == networks[0].1), "every app on it: {on:?} {networks:?}");
}

/// Issue 22, item 2: a duplicate network left by an older launchway is repaired, not
/// fatal: the oldest is kept, and what ran on the other moves to it.
#[tokio::test]
async fn a_duplicate_network_left_behind_is_merged_into_the_oldest() {
    use bollard::models::{
        ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
        NetworkDisconnectRequest,
    };
    let environment = Environment::new("duplicate").await;
    let docker = environment.target.client();
    let name = format!("launchway-{}", environment.name);
    let labels = std::collections::HashMap::from([("launchway.env".to_owned(), environment.name.clone())]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        ids.push(docker.create_network(request).await.expect("created").id);
    }
    let (oldest, newer) = (ids[0].clone(), ids[1].clone());
    // Something of the environment runs on the newer one (started apart, then joined to
    // it: with two of the name, Docker refuses to start a container on either).
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        labels: Some(std::collections::HashMap::from([
            ("launchway.env".to_owned(), environment.name.clone()),
            ("launchway.app".to_owned(), "old".to_owned()),
            ("launchway.managed".to_owned(), "true".to_owned()),
        ])),
        host_config: Some(HostConfig { network_mode: Some("bridge".into()), ..Default::default() }),
        ..Default::default()
    };
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::new()
        .name(&format!("{}-left-behind", environment.name))
        .build();
    let created = docker.create_container(Some(options), body).await.expect("container");
    docker.start_container(&created.id, None).await.expect("started");
    docker
        .disconnect_network("bridge", NetworkDisconnectRequest { container: created.id.clone(), force: Some(true) })
        .await
        .expect("off the default bridge");
    let connect =
        NetworkConnectRequest { container: created.id.clone(), endpoint_config: Some(EndpointSettings::default()) };
    docker.connect_network(&newer, connect).await.expect("on the newer network");

    let spec = match service("1") {
        AppSpec::Service(service) => AppSpec::Service(ServiceSpec { replicas: 1, ..service }),
        other => other,
    };
    let revision = spec.revision().0;
    let target = environment.target.as_ref();
    launchway_target::Target::rollout(
        target,
        rollout("app", &environment.name, &spec, &revision),
        &conformance::Reports::default(),
    )
    .await
    .expect("the rollout succeeds beside the duplicate");
    let (networks, on) = networks_of(target, &environment.name).await;
    let left_behind = docker.inspect_container(&created.id, None).await.expect("inspected");
    let remove = bollard::query_parameters::RemoveContainerOptionsBuilder::new().force(true).build();
    let _ = docker.remove_container(&created.id, Some(remove)).await;
    let kept: Vec<&str> = networks.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(kept, [oldest.as_str()], "the oldest is kept");
    let moved: Vec<String> = left_behind
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default()
        .into_values()
        .filter_map(|endpoint| endpoint.network_id)
        .collect();
    assert_eq!(moved, std::slice::from_ref(&oldest), "what ran on the other moved to it");
    assert!(!on.is_empty() && on.iter().all(|id| *id == oldest), "the new replica is on it too: {on:?}");
}
