//! The target conformance behaviours (`launchway_target::conformance`) against the
//! Docker engine on this machine, with an image made here from `/bin/sleep` and the
//! libraries it loads (nothing is pulled). Each test has an environment of its own,
//! removed when it ends, passed or failed.

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
