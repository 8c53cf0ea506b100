//! The ECS target against a real AWS API emulator: moto, with launchway's ECS rollout
//! model (crates/testkit/moto/ecs_rollouts.py) for what moto does not simulate — moto
//! stores resources faithfully but runs no tasks, so deployments progress, complete or
//! fail there under the control of the task definition's LAUNCHWAY_TEST_ROLLOUT
//! variable (complete, fail, stuck). Everything else is plain moto.
//!
//! Each test works in an account of its own, reached the way a launchway environment
//! reaches another account: by assuming a role there.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_ecs::config::{Credentials, Region};
use launchway_manifest::{
    AppSpec, CircuitBreaker, EcsDefinition, EcsDeployment, EcsServiceSpec, EcsTarget, EcsTaskSpec, ScheduleRef,
    TaskDefinitionDocument,
};
use launchway_secrets::{SecretRef, Secrets};
use launchway_target::{AppRef, Progress, Rollout, RolloutError, Target, TargetEvent, conformance};
use launchway_target_ecs::{Ecs, Polling, SsmParameters, sdk_config_with};
use launchway_testkit::{Moto, MotoAccount};
use serde_json::{Value, json};

const REGION: &str = "ap-northeast-1";
/// Verification watches this long: enough for the rollout model to move on twice.
const SETTLE: Duration = Duration::from_millis(400);

/// One test's AWS: an account on the shared moto server.
struct World {
    moto: &'static Moto,
    account: MotoAccount,
    /// Clients acting as the account itself, for setting things up and looking.
    ecs: aws_sdk_ecs::Client,
    events: aws_sdk_eventbridge::Client,
    scheduler: aws_sdk_scheduler::Client,
}

impl World {
    async fn new() -> World {
        let moto = Moto::shared();
        let account = moto.account();
        let config = loader(moto, &account.access_key).load().await;
        World {
            moto,
            ecs: aws_sdk_ecs::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            scheduler: aws_sdk_scheduler::Client::new(&config),
            account,
        }
    }

    /// The target as an environment declaring `role_arn` in this account sees it; the
    /// base credentials are another account's, as a deployer's would be.
    async fn target(&self) -> Ecs {
        let spec = EcsTarget {
            region: Some(REGION.into()),
            role_arn: Some(format!("arn:aws:iam::{}:role/launchway-deployer", self.account.id)),
            endpoint_url: Some(self.moto.endpoint().into()),
            ..EcsTarget::default()
        };
        let base = loader(self.moto, "AKIA0000999999999999");
        Ecs::connect_with(&spec, base).await.expect("connects").with_polling(Polling {
            first: Duration::from_millis(20),
            max: Duration::from_millis(100),
            slow_after: Duration::from_secs(60),
            slow_max: Duration::from_millis(100),
        })
    }

    async fn register(&self, document: Value) -> String {
        let mut request = self.ecs.register_task_definition().family(document["family"].as_str().unwrap());
        for container in document["containerDefinitions"].as_array().unwrap() {
            let mut definition = aws_sdk_ecs::types::ContainerDefinition::builder()
                .name(container["name"].as_str().unwrap())
                .image(container["image"].as_str().unwrap())
                .memory(128);
            for variable in container["environment"].as_array().into_iter().flatten() {
                definition = definition.environment(
                    aws_sdk_ecs::types::KeyValuePair::builder()
                        .name(variable["name"].as_str().unwrap())
                        .value(variable["value"].as_str().unwrap())
                        .build(),
                );
            }
            request = request.container_definitions(definition.build());
        }
        let output = request.send().await.expect("registered");
        output.task_definition.unwrap().task_definition_arn.unwrap()
    }

    async fn service(&self, cluster: &str, name: &str, task_definition: &str) {
        self.ecs.create_cluster().cluster_name(cluster).send().await.expect("cluster");
        self.ecs
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .task_definition(task_definition)
            .desired_count(2)
            .send()
            .await
            .expect("service");
    }

    async fn running(&self, cluster: &str, name: &str) -> aws_sdk_ecs::types::Service {
        let output = self.ecs.describe_services().cluster(cluster).services(name).send().await.expect("described");
        output.services.unwrap().remove(0)
    }

    async fn document(&self, task_definition: &str) -> Value {
        // What `aws ecs describe-task-definition --include TAGS` prints, through boto-less HTTP.
        let output = self
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
            .send()
            .await
            .expect("described");
        let definition = output.task_definition.unwrap();
        json!({
            "arn": definition.task_definition_arn,
            "images": definition.container_definitions().iter().map(|c| (c.name().unwrap().to_owned(), c.image().unwrap().to_owned())).collect::<BTreeMap<_, _>>(),
            "tags": output.tags.unwrap_or_default().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect::<BTreeMap<_, _>>(),
        })
    }

    async fn revisions(&self, family: &str) -> usize {
        let listed = self.ecs.list_task_definitions().family_prefix(family).send().await.expect("listed");
        listed.task_definition_arns().len()
    }
}

fn loader(moto: &Moto, access_key: &str) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new(access_key, "launchway-test", None, None, "test"))
}

#[derive(Default)]
struct Recorded(Mutex<Vec<TargetEvent>>);

impl Recorded {
    fn kinds(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().map(|event| event.report.kind()).collect()
    }
}

#[async_trait]
impl Progress for Recorded {
    async fn report(&self, event: TargetEvent) {
        self.0.lock().unwrap().push(event);
    }
}

fn swap(cluster: &str, service: &str, images: &[(&str, &str)]) -> AppSpec {
    AppSpec::EcsService(EcsServiceSpec {
        cluster: cluster.into(),
        service: service.into(),
        definition: EcsDefinition {
            images: images.iter().map(|(c, i)| ((*c).to_owned(), (*i).to_owned())).collect(),
            document: None,
        },
        desired_count: None,
        deployment: None,
        timeout: Duration::from_secs(30),
        settle_window: Some(SETTLE),
        health_check_grace_period: None,
        strategy: None,
        alarms: None,
        load_balancer: None,
    })
}

/// What the task definition revisions of an ECS app are tagged with.
fn definition_revision(spec: &AppSpec) -> String {
    match spec {
        AppSpec::EcsService(service) => service.definition.revision().0,
        AppSpec::EcsTask(task) => task.definition.revision().0,
        other => panic!("not an ECS app: {other:?}"),
    }
}

fn rollout<'a>(app: &'a str, revision: &'a str, spec: &'a AppSpec) -> Rollout<'a> {
    Rollout { app, env: "prod", release_id: 1, revision, spec }
}

/// A task definition using every field the other tools are known to drop.
fn rich_definition() -> Value {
    json!({
        "family": "web",
        "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
        "executionRoleArn": "arn:aws:iam::123456789012:role/web-execution",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        "ephemeralStorage": {"sizeInGiB": 40},
        "volumes": [{"name": "cache", "host": {}}],
        "proxyConfiguration": {"type": "APPMESH", "containerName": "envoy", "properties": [{"name": "AppPorts", "value": "8080"}]},
        "containerDefinitions": [
            {
                "name": "web",
                "image": "111111111111.dkr.ecr.ap-northeast-1.amazonaws.com/web:1",
                "essential": true,
                "memory": 512,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "LOG_LEVEL", "value": "info"}],
                "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/web/db"}],
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web", "awslogs-region": "ap-northeast-1", "awslogs-stream-prefix": "web"}},
                "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/healthz || exit 1"], "interval": 10, "timeout": 3, "retries": 3, "startPeriod": 30},
                "mountPoints": [{"sourceVolume": "cache", "containerPath": "/cache"}],
                "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}]
            },
            {
                "name": "envoy",
                "image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29",
                "essential": true,
                "memory": 256,
                "user": "1337"
            }
        ],
        "tags": [{"key": "team", "value": "web"}, {"key": "cost-center", "value": "42"}]
    })
}

/// Registers a document with every field as given, as the AWS CLI's
/// `register-task-definition --cli-input-json` would: the JSON protocol's body is the
/// document itself.
async fn register_raw(world: &World, document: &Value) -> String {
    let body = serde_json::to_vec(document).unwrap();
    world
        .ecs
        .register_task_definition()
        .family("placeholder")
        .container_definitions(aws_sdk_ecs::types::ContainerDefinition::builder().name("x").build())
        .customize()
        .mutate_request(move |request| {
            request.headers_mut().insert("content-length", body.len().to_string());
            *request.body_mut() = aws_smithy_types::body::SdkBody::from(body.clone());
        })
        .send()
        .await
        .expect("registered")
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap()
}

/// The parts of a described task definition a deploy must never change.
fn registrable(described: &Value) -> Value {
    let mut definition = described["taskDefinition"].clone();
    for field in [
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
    ] {
        definition.as_object_mut().unwrap().remove(field);
    }
    definition
}

async fn described_json(world: &World, task_definition: &str) -> Value {
    let capture = std::sync::Arc::new(Mutex::new(Vec::new()));
    #[derive(Debug)]
    struct Keep(std::sync::Arc<Mutex<Vec<u8>>>);
    impl aws_smithy_runtime_api::client::interceptors::Intercept for Keep {
        fn name(&self) -> &'static str {
            "keep"
        }
        fn read_after_deserialization(
            &self,
            context: &aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef<
                '_,
            >,
            _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
            _: &mut aws_smithy_types::config_bag::ConfigBag,
        ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
            *self.0.lock().unwrap() = context.response().body().bytes().unwrap_or_default().to_vec();
            Ok(())
        }
    }
    world
        .ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .customize()
        .interceptor(Keep(capture.clone()))
        .send()
        .await
        .expect("described");
    let bytes = capture.lock().unwrap().clone();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn an_image_swap_changes_only_the_image_and_keeps_every_other_field() {
    let world = World::new().await;
    let original = register_raw(&world, &rich_definition()).await;
    world.service("prod", "web", &original).await;
    let spec = swap("prod", "web", &[("web", "111111111111.dkr.ecr.ap-northeast-1.amazonaws.com/web:2")]);
    let target = world.target().await;
    let progress = Recorded::default();
    target.check("web", "prod", &spec).await.expect("the service and its container exist");
    target.rollout(rollout("web", "rev-2", &spec), &progress).await.expect("rolled out");
    target.verify(rollout("web", "rev-2", &spec), &progress).await.expect("verified");

    let service = world.running("prod", "web").await;
    let deployed = service.task_definition().unwrap().to_owned();
    assert_ne!(deployed, original, "a new revision");
    let before = registrable(&described_json(&world, &original).await);
    // The comparison below means something only if the fields are there to lose.
    let web = &before["containerDefinitions"][0];
    for (field, present) in [
        ("secrets", !web["secrets"].is_null()),
        ("logConfiguration", !web["logConfiguration"].is_null()),
        ("healthCheck", !web["healthCheck"].is_null()),
        ("dependsOn", !web["dependsOn"].is_null()),
        ("sidecar", before["containerDefinitions"][1]["name"] == "envoy"),
        ("volumes", !before["volumes"].is_null()),
        ("runtimePlatform", !before["runtimePlatform"].is_null()),
        ("ephemeralStorage", !before["ephemeralStorage"].is_null()),
        ("proxyConfiguration", !before["proxyConfiguration"].is_null()),
        ("taskRoleArn", !before["taskRoleArn"].is_null()),
    ] {
        assert!(present, "{field} was registered: {before:#}");
    }
    let mut after = described_json(&world, &deployed).await;
    let tags = after["tags"].clone();
    let mut after = registrable(&after.take());
    assert_eq!(after["containerDefinitions"][0]["image"], "111111111111.dkr.ecr.ap-northeast-1.amazonaws.com/web:2");
    after["containerDefinitions"][0]["image"] = before["containerDefinitions"][0]["image"].clone();
    assert_eq!(after, before, "every field but the image survives the copy");
    let tags: BTreeMap<String, String> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap().to_owned(), t["value"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(tags["team"], "web", "the definition's own tags survive too");
    assert_eq!(tags["cost-center"], "42");
    assert_eq!(tags["launchway:revision"], definition_revision(&spec), "named by the definition's own content");
    assert_eq!(tags["launchway:previous"], original);
    assert_eq!(
        progress.kinds(),
        ["task_definition.registered", "service.updated", "deployment.progress", "verify.watching", "verify.passed"]
    );
}

/// A whole-definition app whose tasks behave as `rollout` says in the rollout model.
fn behaving(service: &str, image: &str, rollout: &str, timeout: Duration) -> AppSpec {
    AppSpec::EcsService(EcsServiceSpec {
        cluster: "prod".into(),
        service: service.into(),
        definition: EcsDefinition {
            images: BTreeMap::new(),
            document: Some(TaskDefinitionDocument {
                path: format!("ecs/{service}.json"),
                document: json!({"family": service, "containerDefinitions": [{"name": service, "image": image, "memory": 128,
                    "environment": [{"name": "LAUNCHWAY_TEST_ROLLOUT", "value": rollout}]}]}),
            }),
        },
        desired_count: None,
        deployment: None,
        timeout,
        settle_window: Some(SETTLE),
        health_check_grace_period: None,
        strategy: None,
        alarms: None,
        load_balancer: None,
    })
}

/// moto runs no container, so nothing writes logs: the test writes the lines the awslogs
/// driver would have written into the streams it would have named
/// (`<prefix>/<container>/<task id>`), for the tasks the fake deployment leaves running
/// (crates/testkit/moto/ecs_rollouts.py). Which tasks and streams launchway reads, and
/// how, is real SDK traffic against moto's CloudWatch Logs.
#[tokio::test]
async fn recent_logs_are_read_from_the_awslogs_stream_of_each_running_task() {
    let world = World::new().await;
    let seed = world
        .register(json!({"family": "ledger", "containerDefinitions": [{"name": "ledger", "image": "ledger:1"}]}))
        .await;
    world.service("prod", "ledger", &seed).await;
    let mut spec = behaving("ledger", "ledger:2", "complete", Duration::from_secs(30));
    let AppSpec::EcsService(service) = &mut spec else { unreachable!() };
    let document = &mut service.definition.document.as_mut().expect("a document").document;
    document["containerDefinitions"][0]["logConfiguration"] = json!({"logDriver": "awslogs",
        "options": {"awslogs-group": "/ecs/ledger", "awslogs-region": REGION, "awslogs-stream-prefix": "ecs"}});
    let target = world.target().await;
    target.rollout(rollout("ledger", "rev-l", &spec), &Recorded::default()).await.expect("deployed");

    let listed = world
        .ecs
        .list_tasks()
        .cluster("prod")
        .service_name("ledger")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .expect("tasks listed");
    let tasks: Vec<String> = listed.task_arns().iter().map(|arn| arn.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(tasks.len(), 2, "the service's desired count");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&loader(world.moto, &world.account.access_key).load().await);
    logs.create_log_group().log_group_name("/ecs/ledger").send().await.expect("group");
    let stream = format!("ecs/ledger/{}", tasks[0]);
    logs.create_log_stream().log_group_name("/ecs/ledger").log_stream_name(&stream).send().await.expect("stream");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut put = logs.put_log_events().log_group_name("/ecs/ledger").log_stream_name(&stream);
    for (offset, line) in ["starting", "ready", "GET / 200\n"].into_iter().enumerate() {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now + offset as i64)
                .message(line)
                .build()
                .unwrap(),
        );
    }
    put.send().await.expect("events written");

    let read = target.recent_logs("prod", AppRef { app: "ledger", spec: &spec }, 2).await.expect("logs read");
    let by_task: BTreeMap<&str, (&str, &[String])> =
        read.iter().map(|logs| (logs.replica.as_str(), (logs.container.as_str(), logs.lines.as_slice()))).collect();
    assert_eq!(by_task.len(), 2, "every running task: {read:?}");
    assert_eq!(by_task[tasks[0].as_str()], ("ledger", &["ready".to_owned(), "GET / 200".to_owned()][..]), "the last 2");
    assert_eq!(by_task[tasks[1].as_str()], ("ledger", &[][..]), "a task that wrote nothing has no stream yet");

    // Without the awslogs driver there is nothing launchway can read, and it says so.
    let plain = behaving("ledger", "ledger:3", "complete", Duration::from_secs(30));
    target.rollout(rollout("ledger", "rev-m", &plain), &Recorded::default()).await.expect("deployed");
    let error = target.recent_logs("prod", AppRef { app: "ledger", spec: &plain }, 2).await.expect_err("no logs");
    assert!(error.to_string().contains("logs to CloudWatch Logs"), "{error}");
}

/// A login for pushing built images to the account's ECR registry, through the
/// environment's role (moto's GetAuthorizationToken answers as ECR does: user `AWS`, a
/// token, the registry's endpoint).
#[tokio::test]
async fn an_ecr_login_is_the_registry_user_and_password_ecr_hands_out() {
    let world = World::new().await;
    let spec = EcsTarget {
        region: Some(REGION.into()),
        role_arn: Some(format!("arn:aws:iam::{}:role/launchway-deployer", world.account.id)),
        endpoint_url: Some(world.moto.endpoint().into()),
        ..EcsTarget::default()
    };
    let config = sdk_config_with(&spec, loader(world.moto, "AKIA0000999999999999")).await.expect("configured");
    let login = launchway_target_ecs::ecr_login(&config).await.expect("a login");
    assert_eq!(login.registry, format!("{}.dkr.ecr.{REGION}.amazonaws.com", world.account.id));
    assert_eq!(login.username, "AWS");
    assert!(!login.password.is_empty());
    assert!(!format!("{login:?}").contains(&login.password), "the password is never shown");
}

#[tokio::test]
async fn a_deployment_that_completes_and_then_loses_a_task_inside_the_settle_window_fails_verification() {
    let world = World::new().await;
    let good =
        world.register(json!({"family": "feed", "containerDefinitions": [{"name": "feed", "image": "feed:1"}]})).await;
    world.service("prod", "feed", &good).await;
    let spec = behaving("feed", "feed:2", "lose-after-complete", Duration::from_secs(30));
    let target = world.target().await;
    target.rollout(rollout("feed", "rev-f", &spec), &Recorded::default()).await.expect("the deployment completes");
    let error = target.verify(rollout("feed", "rev-f", &spec), &Recorded::default()).await.expect_err("not verified");
    let RolloutError::Unhealthy { reason, logs } = &error else { panic!("{error:?}") };
    assert!(reason.contains("had 1 task fail"), "{reason}");
    assert!(reason.contains("after its deployment completed, while it was being verified"), "{reason}");
    assert!(logs.iter().any(|line| line.contains("exit code 137")), "the stopped task says why: {logs:#?}");
}

#[tokio::test]
async fn tasks_failing_without_a_circuit_breaker_fail_the_rollout_within_seconds() {
    let world = World::new().await;
    let good =
        world.register(json!({"family": "mail", "containerDefinitions": [{"name": "mail", "image": "mail:1"}]})).await;
    world.service("prod", "mail", &good).await;
    // The timeout is long: only the failed tasks can end this quickly.
    let spec = behaving("mail", "mail:2", "crashloop", Duration::from_secs(600));
    let started = std::time::Instant::now();
    let error =
        world.target().await.rollout(rollout("mail", "rev-m", &spec), &Recorded::default()).await.expect_err("fails");
    let RolloutError::Unhealthy { reason, logs } = &error else { panic!("{error:?}") };
    assert!(reason.contains("tasks failed and none is running"), "{reason}");
    assert!(logs.iter().any(|line| line.contains("exit code 1")), "{logs:#?}");
    assert!(started.elapsed() < Duration::from_secs(60), "gave up after {:?}, not the timeout", started.elapsed());
}

#[tokio::test]
async fn nothing_is_registered_or_updated_when_nothing_changed() {
    let world = World::new().await;
    let original =
        world.register(json!({"family": "api", "containerDefinitions": [{"name": "api", "image": "api:1"}]})).await;
    world.service("prod", "api", &original).await;
    let spec = swap("prod", "api", &[("api", "api:2")]);
    let target = world.target().await;
    target.rollout(rollout("api", "rev-2", &spec), &Recorded::default()).await.expect("rolled out");
    let revisions = world.revisions("api").await;
    let deployments = world.running("prod", "api").await.deployments().len();

    let again = Recorded::default();
    target.rollout(rollout("api", "rev-2", &spec), &again).await.expect("rolled out again");
    assert_eq!(world.revisions("api").await, revisions, "no new revision");
    assert_eq!(world.running("prod", "api").await.deployments().len(), deployments, "no new deployment");
    assert!(again.kinds().is_empty(), "nothing happened: {:?}", again.kinds());

    // The plan's view: what runs, with its revision.
    let live = target.observe("prod", &[AppRef { app: "api", spec: &spec }]).await.expect("observed");
    let definition = live.apps["api"].definition.as_ref().expect("a definition");
    assert_eq!(definition.revision.as_deref(), Some(definition_revision(&spec).as_str()));
    assert_eq!(definition.images["api"], "api:2");
    assert!(definition.steady, "{}", definition.status);
}

#[tokio::test]
async fn a_whole_definition_from_the_repo_is_registered_as_written_with_service_settings() {
    let world = World::new().await;
    let original = world
        .register(json!({"family": "worker", "containerDefinitions": [{"name": "worker", "image": "worker:1"}]}))
        .await;
    world.service("prod", "worker", &original).await;
    let document = json!({
        "family": "worker",
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "worker", "image": "worker:placeholder", "memory": 256,
            "environment": [{"name": "QUEUE", "value": "jobs"}], "stopTimeout": 30}],
        "tags": [{"key": "team", "value": "batch"}]
    });
    let spec = AppSpec::EcsService(EcsServiceSpec {
        cluster: "prod".into(),
        service: "worker".into(),
        definition: EcsDefinition {
            images: BTreeMap::from([("worker".into(), "worker:2".into())]),
            document: Some(TaskDefinitionDocument { path: "ecs/worker.json".into(), document }),
        },
        desired_count: Some(4),
        deployment: Some(EcsDeployment {
            maximum_percent: Some(150),
            minimum_healthy_percent: Some(100),
            circuit_breaker: Some(CircuitBreaker { enable: true, rollback: Some(false) }),
        }),
        timeout: Duration::from_secs(30),
        settle_window: Some(SETTLE),
        health_check_grace_period: None,
        strategy: None,
        alarms: None,
        load_balancer: None,
    });
    let target = world.target().await;
    target.rollout(rollout("worker", "rev-w", &spec), &Recorded::default()).await.expect("rolled out");
    let service = world.running("prod", "worker").await;
    assert_eq!(service.desired_count(), 4);
    let configuration = service.deployment_configuration().expect("configured");
    assert_eq!((configuration.maximum_percent(), configuration.minimum_healthy_percent()), (Some(150), Some(100)));
    assert!(configuration.deployment_circuit_breaker().unwrap().enable());
    let registered = registrable(&described_json(&world, service.task_definition().unwrap()).await);
    assert_eq!(registered["containerDefinitions"][0]["image"], "worker:2");
    assert_eq!(registered["containerDefinitions"][0]["environment"][0]["value"], "jobs");
    assert_eq!(registered["containerDefinitions"][0]["stopTimeout"], 30);
    assert_eq!(registered["cpu"], "256");
}

#[tokio::test]
async fn a_failed_deployment_is_reported_with_the_stopped_tasks_reasons() {
    let world = World::new().await;
    let good =
        world.register(json!({"family": "pay", "containerDefinitions": [{"name": "pay", "image": "pay:1"}]})).await;
    world.service("prod", "pay", &good).await;
    // The new image's tasks fail (LAUNCHWAY_TEST_ROLLOUT=fail on the definition the
    // deploy registers is set through a whole definition).
    let spec = AppSpec::EcsService(EcsServiceSpec {
        cluster: "prod".into(),
        service: "pay".into(),
        definition: EcsDefinition {
            images: BTreeMap::new(),
            document: Some(TaskDefinitionDocument {
                path: "ecs/pay.json".into(),
                document: json!({"family": "pay", "containerDefinitions": [{"name": "pay", "image": "pay:broken", "memory": 128,
                    "environment": [{"name": "LAUNCHWAY_TEST_ROLLOUT", "value": "fail"}]}]}),
            }),
        },
        desired_count: None,
        deployment: None,
        timeout: Duration::from_secs(30),
        settle_window: Some(SETTLE),
        health_check_grace_period: None,
        strategy: None,
        alarms: None,
        load_balancer: None,
    });
    let target = world.target().await;
    let error = target.rollout(rollout("pay", "rev-bad", &spec), &Recorded::default()).await.expect_err("fails");
    let RolloutError::Unhealthy { reason, logs } = &error else { panic!("{error:?}") };
    assert!(reason.contains("failed: ECS deployment circuit breaker: tasks failed to start."), "{reason}");
    assert!(
        logs.iter().any(|line| line.contains("stopped: Essential container in task exited (exit code 1)")),
        "{logs:#?}"
    );

    // With no earlier release to roll back to, the engine retires the revision: the
    // service goes back to what it ran before.
    target.retire(rollout("pay", "rev-bad", &spec), &Recorded::default()).await.expect("retired");
    assert_eq!(world.running("prod", "pay").await.task_definition(), Some(good.as_str()));
}

#[tokio::test]
async fn a_circuit_breaker_rollback_by_ecs_is_a_failure_not_a_success() {
    let world = World::new().await;
    let good =
        world.register(json!({"family": "cart", "containerDefinitions": [{"name": "cart", "image": "cart:1"}]})).await;
    world.service("prod", "cart", &good).await;
    world
        .ecs
        .update_service()
        .cluster("prod")
        .service("cart")
        .deployment_configuration(
            aws_sdk_ecs::types::DeploymentConfiguration::builder()
                .deployment_circuit_breaker(
                    aws_sdk_ecs::types::DeploymentCircuitBreaker::builder().enable(true).rollback(true).build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("circuit breaker on");
    let bad = world
        .register(json!({"family": "cart-bad", "containerDefinitions": [{"name": "cart", "image": "cart:broken",
            "environment": [{"name": "LAUNCHWAY_TEST_ROLLOUT", "value": "fail"}]}]}))
        .await;
    let spec = AppSpec::EcsService(EcsServiceSpec {
        cluster: "prod".into(),
        service: "cart".into(),
        definition: EcsDefinition {
            images: BTreeMap::new(),
            document: Some(TaskDefinitionDocument {
                path: "ecs/cart.json".into(),
                document: registrable(&described_json(&world, &bad).await),
            }),
        },
        desired_count: None,
        deployment: None,
        timeout: Duration::from_secs(30),
        settle_window: Some(SETTLE),
        health_check_grace_period: None,
        strategy: None,
        alarms: None,
        load_balancer: None,
    });
    let error =
        world.target().await.rollout(rollout("cart", "rev-c", &spec), &Recorded::default()).await.expect_err("fails");
    let RolloutError::Unhealthy { reason, logs } = &error else { panic!("{error:?}") };
    assert!(reason.contains("failed and ECS's circuit breaker rolled service cart back to cart:1"), "{reason}");
    assert!(logs.iter().any(|line| line.contains("Essential container in task exited")), "{logs:#?}");
    assert_eq!(world.running("prod", "cart").await.task_definition(), Some(good.as_str()), "ECS rolled back by itself");
}

#[tokio::test]
async fn a_deployment_that_never_settles_times_out_with_what_ecs_said() {
    let world = World::new().await;
    let good =
        world.register(json!({"family": "slow", "containerDefinitions": [{"name": "slow", "image": "slow:1"}]})).await;
    world.service("prod", "slow", &good).await;
    let spec = AppSpec::EcsService(EcsServiceSpec {
        cluster: "prod".into(),
        service: "slow".into(),
        definition: EcsDefinition {
            images: BTreeMap::new(),
            document: Some(TaskDefinitionDocument {
                path: "ecs/slow.json".into(),
                document: json!({"family": "slow", "containerDefinitions": [{"name": "slow", "image": "slow:2", "memory": 128,
                    "environment": [{"name": "LAUNCHWAY_TEST_ROLLOUT", "value": "stuck"}]}]}),
            }),
        },
        desired_count: None,
        deployment: None,
        timeout: Duration::from_millis(700),
        settle_window: Some(SETTLE),
        health_check_grace_period: None,
        strategy: None,
        alarms: None,
        load_balancer: None,
    });
    let error = world
        .target()
        .await
        .rollout(rollout("slow", "rev-s", &spec), &Recorded::default())
        .await
        .expect_err("times out");
    let RolloutError::TimedOut { reason, .. } = &error else { panic!("{error:?}") };
    assert!(reason.contains("was not steady in time: IN_PROGRESS: 0 of 2 running"), "{reason}");
}

#[tokio::test]
async fn scheduled_tasks_move_their_rule_and_schedule_targets_and_keep_every_other_setting() {
    let world = World::new().await;
    let original = world
        .register(json!({"family": "report", "containerDefinitions": [{"name": "report", "image": "report:1"}]}))
        .await;
    let cluster_arn = format!("arn:aws:ecs:{REGION}:{}:cluster/batch", world.account.id);
    let role = format!("arn:aws:iam::{}:role/events", world.account.id);
    world.events.put_rule().name("nightly").schedule_expression("cron(0 3 * * ? *)").send().await.expect("rule");
    let network = aws_sdk_eventbridge::types::NetworkConfiguration::builder()
        .awsvpc_configuration(
            aws_sdk_eventbridge::types::AwsVpcConfiguration::builder().subnets("subnet-1234").build().unwrap(),
        )
        .build();
    world
        .events
        .put_targets()
        .rule("nightly")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("report")
                .arn(&cluster_arn)
                .role_arn(&role)
                .ecs_parameters(
                    aws_sdk_eventbridge::types::EcsParameters::builder()
                        .task_definition_arn(&original)
                        .task_count(2)
                        .launch_type(aws_sdk_eventbridge::types::LaunchType::Fargate)
                        .network_configuration(network)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("rule target");
    world
        .scheduler
        .create_schedule()
        .name("hourly-report")
        .schedule_expression("rate(1 hour)")
        .schedule_expression_timezone("Asia/Tokyo")
        .flexible_time_window(
            aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
                .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Flexible)
                .maximum_window_in_minutes(15)
                .build()
                .unwrap(),
        )
        .target(
            aws_sdk_scheduler::types::Target::builder()
                .arn(&cluster_arn)
                .role_arn(&role)
                .ecs_parameters(
                    aws_sdk_scheduler::types::EcsParameters::builder()
                        .task_definition_arn(&original)
                        .task_count(1)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("schedule");

    let spec = AppSpec::EcsTask(EcsTaskSpec {
        definition: EcsDefinition { images: BTreeMap::from([("report".into(), "report:2".into())]), document: None },
        rule: Some("nightly".into()),
        schedule: Some(ScheduleRef { name: "hourly-report".into(), group: None }),
        cluster: None,
        on_deploy: None,
    });
    let target = world.target().await;
    let progress = Recorded::default();
    target.rollout(rollout("report", "rev-r", &spec), &progress).await.expect("moved");
    target.verify(rollout("report", "rev-r", &spec), &progress).await.expect("verified");
    assert_eq!(progress.kinds()[..3], ["task_definition.registered", "rule.updated", "schedule.updated"]);

    let rule_target =
        world.events.list_targets_by_rule().rule("nightly").send().await.unwrap().targets.unwrap().remove(0);
    let ecs = rule_target.ecs_parameters.as_ref().unwrap();
    assert_ne!(ecs.task_definition_arn, original);
    assert_eq!(world.document(&ecs.task_definition_arn).await["images"]["report"], "report:2");
    assert_eq!((ecs.task_count, ecs.launch_type.as_ref().map(|t| t.as_str())), (Some(2), Some("FARGATE")));
    assert_eq!(
        ecs.network_configuration.as_ref().unwrap().awsvpc_configuration.as_ref().unwrap().subnets(),
        ["subnet-1234"]
    );
    assert_eq!(rule_target.role_arn.as_deref(), Some(role.as_str()));

    let schedule = world.scheduler.get_schedule().name("hourly-report").send().await.unwrap();
    assert_eq!(
        schedule.target.as_ref().unwrap().ecs_parameters.as_ref().unwrap().task_definition_arn,
        ecs.task_definition_arn
    );
    assert_eq!(schedule.schedule_expression.as_deref(), Some("rate(1 hour)"));
    assert_eq!(schedule.schedule_expression_timezone.as_deref(), Some("Asia/Tokyo"));
    assert_eq!(schedule.flexible_time_window.unwrap().maximum_window_in_minutes, Some(15));

    // Rolling back moves both to what they started before.
    target.retire(rollout("report", "rev-r", &spec), &Recorded::default()).await.expect("retired");
    let rule_target =
        world.events.list_targets_by_rule().rule("nightly").send().await.unwrap().targets.unwrap().remove(0);
    assert_eq!(rule_target.ecs_parameters.unwrap().task_definition_arn, original);
}

#[tokio::test]
async fn an_environment_role_in_another_account_is_assumed_for_every_call() {
    let world = World::new().await;
    let original =
        world.register(json!({"family": "crm", "containerDefinitions": [{"name": "crm", "image": "crm:1"}]})).await;
    world.service("prod", "crm", &original).await;
    // The same names in the base credentials' own account are not touched.
    let other = aws_sdk_ecs::Client::new(&loader(world.moto, "AKIA0000999999999999").load().await);
    assert!(
        other
            .describe_services()
            .cluster("prod")
            .services("crm")
            .send()
            .await
            .map(|o| o.services().is_empty())
            .unwrap_or(true)
    );
    let spec = swap("prod", "crm", &[("crm", "crm:2")]);
    world.target().await.rollout(rollout("crm", "rev-crm", &spec), &Recorded::default()).await.expect("rolled out");
    let deployed = world.running("prod", "crm").await.task_definition().unwrap().to_owned();
    assert!(deployed.contains(&format!(":{}:task-definition/crm:", world.account.id)), "{deployed}");
}

#[tokio::test]
async fn secrets_referenced_in_ssm_are_read_decrypted() {
    let world = World::new().await;
    let config = loader(world.moto, &world.account.access_key).load().await;
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name("/launchway/slack-webhook")
        .value("https://hooks.slack.example/services/T0/B0/secret")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("stored");
    let config = sdk_config_with(&EcsTarget::default(), loader(world.moto, &world.account.access_key)).await.unwrap();
    let secrets = Secrets::with_parameter_store(std::sync::Arc::new(SsmParameters::with_config(config)));
    let secret = secrets.resolve(&SecretRef::parse("ssm:/launchway/slack-webhook")).await.expect("resolved");
    assert_eq!(secret.expose(), "https://hooks.slack.example/services/T0/B0/secret");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    let missing = secrets.resolve(&SecretRef::parse("ssm:/launchway/never-stored")).await.unwrap_err();
    assert!(missing.0.contains("ParameterNotFound"), "{missing}");
}

#[tokio::test]
async fn a_revision_registered_before_a_crash_is_reused_not_registered_again() {
    let world = World::new().await;
    let original =
        world.register(json!({"family": "inv", "containerDefinitions": [{"name": "inv", "image": "inv:1"}]})).await;
    world.service("prod", "inv", &original).await;
    // What an interrupted run leaves: its revision registered and tagged, the service
    // not yet moved to it.
    let spec = swap("prod", "inv", &[("inv", "inv:2")]);
    let mut orphan = registrable(&described_json(&world, &original).await);
    orphan["containerDefinitions"][0]["image"] = json!("inv:2");
    orphan["tags"] = json!([
        {"key": "launchway:app", "value": "inv"},
        {"key": "launchway:revision", "value": definition_revision(&spec)},
        {"key": "launchway:previous", "value": original}
    ]);
    let registered = register_raw(&world, &orphan).await;
    let revisions = world.revisions("inv").await;

    let progress = Recorded::default();
    world.target().await.rollout(rollout("inv", "rev-inv", &spec), &progress).await.expect("resumed");
    assert_eq!(world.revisions("inv").await, revisions, "nothing registered");
    assert_eq!(world.running("prod", "inv").await.task_definition(), Some(registered.as_str()));
    assert_eq!(progress.kinds()[0], "task_definition.reused");
}

/// Regression (issue 8): changing only service settings registered a new, identical
/// revision and replaced every task; the plan itself said only `desired_count: 2 → 3`.
#[tokio::test]
async fn a_change_to_service_settings_only_registers_nothing_and_starts_no_deployment() {
    let world = World::new().await;
    let original =
        world.register(json!({"family": "crm", "containerDefinitions": [{"name": "crm", "image": "crm:1"}]})).await;
    world.service("prod", "crm", &original).await;
    let target = world.target().await;
    let first = swap("prod", "crm", &[("crm", "crm:2")]);
    target.rollout(rollout("crm", "rev-1", &first), &Recorded::default()).await.expect("rolled out");
    let deployed = world.running("prod", "crm").await;
    let revisions = world.revisions("crm").await;

    let AppSpec::EcsService(mut settings) = first.clone() else { unreachable!() };
    settings.desired_count = Some(3);
    settings.health_check_grace_period = Some(Duration::from_secs(90));
    settings.deployment = Some(EcsDeployment {
        maximum_percent: Some(150),
        minimum_healthy_percent: Some(100),
        circuit_breaker: Some(CircuitBreaker { enable: true, rollback: Some(false) }),
    });
    let settings = AppSpec::EcsService(settings);
    assert_ne!(settings.revision(), first.revision(), "another release of the app…");
    assert_eq!(definition_revision(&settings), definition_revision(&first), "…with the same task definition");
    let progress = Recorded::default();
    target.rollout(rollout("crm", "rev-2", &settings), &progress).await.expect("updated");
    target.verify(rollout("crm", "rev-2", &settings), &progress).await.expect("verified");

    let service = world.running("prod", "crm").await;
    assert_eq!(world.revisions("crm").await, revisions, "no revision registered");
    assert_eq!(service.task_definition(), deployed.task_definition());
    assert_eq!(
        service.deployments().iter().map(|d| d.id().unwrap().to_owned()).collect::<Vec<_>>(),
        deployed.deployments().iter().map(|d| d.id().unwrap().to_owned()).collect::<Vec<_>>(),
        "no deployment started"
    );
    assert_eq!((service.desired_count(), service.running_count()), (3, 3));
    assert_eq!(service.health_check_grace_period_seconds(), Some(90));
    assert_eq!(service.deployment_configuration().unwrap().maximum_percent(), Some(150));
    let kinds = progress.kinds();
    assert_eq!(kinds[0], "service.updated", "{kinds:?}");
    let updated = &progress.0.lock().unwrap()[0].message;
    assert!(updated.contains("desired count 2 → 3"), "{updated}");
    assert!(updated.contains("health check grace period 0s → 90s"), "{updated}");
}

/// Regression (issue 8): rolling back to a task definition that launchway did not
/// register made a copy of it; it must return to that very revision.
#[tokio::test]
async fn a_rollback_returns_to_exactly_the_task_definition_that_ran_before() {
    let world = World::new().await;
    let theirs = register_raw(&world, &rich_definition()).await;
    world.service("prod", "web", &theirs).await;
    let target = world.target().await;
    let image = |tag: &str| format!("111111111111.dkr.ecr.ap-northeast-1.amazonaws.com/web:{tag}");
    let v1 = swap("prod", "web", &[("web", &image("1"))]);
    let v2 = swap("prod", "web", &[("web", &image("2"))]);
    target.rollout(rollout("web", "rev-2", &v2), &Recorded::default()).await.expect("rolled out");
    assert_ne!(world.running("prod", "web").await.task_definition(), Some(theirs.as_str()));
    let revisions = world.revisions("web").await;

    target.rollout(rollout("web", "rev-1", &v1), &Recorded::default()).await.expect("rolled back");
    assert_eq!(world.running("prod", "web").await.task_definition(), Some(theirs.as_str()), "the very same revision");
    assert_eq!(world.revisions("web").await, revisions, "no copy registered");
}

/// The target conformance behaviours (`launchway_target::conformance`), on a service
/// that runs `conf:0` and is moved between `conf:1` and `conf:2`. Moto runs no tasks:
/// launchway's rollout model completes each deployment as ECS would.
async fn conformance_check(behaviour: impl AsyncFnOnce(&conformance::Subject<'_>)) {
    let world = World::new().await;
    let original =
        world.register(json!({"family": "conf", "containerDefinitions": [{"name": "conf", "image": "conf:0"}]})).await;
    world.service("prod", "conf", &original).await;
    let target = world.target().await;
    let (v1, v2) = (swap("prod", "conf", &[("conf", "conf:1")]), swap("prod", "conf", &[("conf", "conf:2")]));
    let subject = conformance::Subject { target: &target, env: "prod", app: "conf", v1: &v1, v2: &v2 };
    behaviour(&subject).await;
}

#[tokio::test]
async fn conformance_rollouts_are_observed_planned_and_verified() {
    conformance_check(async |subject| conformance::rollouts_are_observed_planned_and_verified(subject).await).await;
}

#[tokio::test]
async fn conformance_rolling_out_what_runs_changes_nothing() {
    conformance_check(async |subject| conformance::rolling_out_what_runs_changes_nothing(subject).await).await;
}

#[tokio::test]
async fn conformance_retiring_a_revision_stops_it() {
    conformance_check(async |subject| conformance::retiring_a_revision_stops_it(subject).await).await;
}
