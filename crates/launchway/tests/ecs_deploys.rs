//! GitOps to Amazon ECS, end to end through the `launchway` binary: a real git repo, a
//! real SQLite file, and the AWS SDK talking to moto. moto runs no tasks, so service
//! deployments progress (or fail) through launchway's rollout model in
//! crates/testkit/moto/ecs_rollouts.py, chosen by each task definition's
//! LAUNCHWAY_TEST_ROLLOUT variable; everything else is plain moto.

mod support;

use std::process::Command;

use aws_config::BehaviorVersion;
use aws_sdk_ecs::config::{Credentials, Region};
use launchway_testkit::{GitRepo, Moto, MotoAccount};
use serde_json::{Value, json};
use support::Run;

const REGION: &str = "ap-northeast-1";

/// One test's world: a config repo, a database, an AWS account on moto.
struct Aws {
    repo: GitRepo,
    db: tempfile::TempDir,
    moto: &'static Moto,
    account: MotoAccount,
    ecs: aws_sdk_ecs::Client,
    events: aws_sdk_eventbridge::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Aws {
    async fn new() -> Aws {
        let moto = Moto::shared();
        let account = moto.account();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new(&account.access_key, &account.secret_key, None, None, "test"))
            .load()
            .await;
        Aws {
            repo: GitRepo::init(),
            db: tempfile::tempdir().expect("temp dir"),
            moto,
            ecs: aws_sdk_ecs::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            account,
        }
    }

    /// `launchway` with the ambient AWS configuration pointing at this test's account.
    async fn launchway(&self, args: &[&str]) -> Run {
        let mut command = Command::new(support::binary());
        command
            .args(args)
            .env("LAUNCHWAY_REPO", self.repo.path())
            .env("LAUNCHWAY_DB", self.db.path().join("launchway.db"))
            .env_remove("LAUNCHWAY_OUTPUT");
        for (name, value) in self.account.env(self.moto.endpoint(), REGION) {
            command.env(name, value);
        }
        let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("launchway runs");
        Run { output }
    }

    async fn register(&self, family: &str, containers: &[(&str, &str)], rollout: &str) -> String {
        let mut request = self.ecs.register_task_definition().family(family);
        for (name, image) in containers {
            request = request.container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name(*name)
                    .image(*image)
                    .memory(128)
                    .environment(
                        aws_sdk_ecs::types::KeyValuePair::builder()
                            .name("LAUNCHWAY_TEST_ROLLOUT")
                            .value(rollout)
                            .build(),
                    )
                    .build(),
            );
        }
        request.send().await.expect("registered").task_definition.unwrap().task_definition_arn.unwrap()
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

    async fn task_definition_of(&self, cluster: &str, service: &str) -> String {
        let output = self.ecs.describe_services().cluster(cluster).services(service).send().await.unwrap();
        output.services.unwrap().remove(0).task_definition.unwrap()
    }

    async fn images_of(&self, task_definition: &str) -> Vec<(String, String)> {
        let output = self.ecs.describe_task_definition().task_definition(task_definition).send().await.unwrap();
        output
            .task_definition
            .unwrap()
            .container_definitions()
            .iter()
            .map(|c| (c.name().unwrap().to_owned(), c.image().unwrap().to_owned()))
            .collect()
    }

    async fn runs(&self) -> Vec<Value> {
        let run = self.launchway(&["history", "--output", "json", "--limit", "100"]).await;
        run.assert_exit(0);
        serde_json::from_str(&run.stdout()).expect("JSON")
    }
}

#[tokio::test]
async fn the_gitops_sample_deployment_file_deploys_as_it_is() {
    let aws = Aws::new().await;
    let a = aws
        .register("service-a", &[("service-a", "1111.dkr.ecr.us-east-1.amazonaws.com/service-a:1.0.0")], "complete")
        .await;
    // A service whose task has a sidecar; the sample names the app container by image.
    let b = aws
        .register(
            "service-b",
            &[("app", "1111.dkr.ecr.us-east-1.amazonaws.com/service-b:2.0.0"), ("log-router", "fluent-bit:2")],
            "complete",
        )
        .await;
    aws.service("demo", "demo-service-a-TS6BT1U6VQBG-Service-HTco3SKTy2J1", &a).await;
    aws.service("demo", "demo-service-b", &b).await;
    let x = aws
        .register(
            "batch",
            &[
                ("service-x", "1111.dkr.ecr.us-west-2.amazonaws.com/service-x:1.0.0"),
                ("service-y", "1111.dkr.ecr.us-west-2.amazonaws.com/service-y:3.0.0"),
            ],
            "complete",
        )
        .await;
    aws.events.put_rule().name("service-y-cw-rule").schedule_expression("rate(1 day)").send().await.unwrap();
    aws.events
        .put_targets()
        .rule("service-y-cw-rule")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("batch")
                .arn(format!("arn:aws:ecs:{REGION}:{}:cluster/demo", aws.account.id))
                .ecs_parameters(
                    aws_sdk_eventbridge::types::EcsParameters::builder().task_definition_arn(&x).build().unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // The sample's format, unmodified (its comments included).
    let deployment = r#"release: 4.0
# tasks - (optional) if no scheduled tasks exists just remove the tasks array
tasks:
  - service: service-x
    cwRuleName: service-y-cw-rule
    image: "1111.dkr.ecr.us-west-2.amazonaws.com/service-x:2.0.0"
  - service: service-y
    cwRuleName: service-y-cw-rule
    image: "1111.dkr.ecr.us-west-2.amazonaws.com/service-y:4.0.0"
services:
  #service - must match the container name in the task definition
  - service: service-a
    clusterName: demo
    serviceName: demo-service-a-TS6BT1U6VQBG-Service-HTco3SKTy2J1
    image: "1111.dkr.ecr.us-east-1.amazonaws.com/service-a:2.0.0"
  - service: service-b
    clusterName: demo
    serviceName: demo-service-b
    image: "1111.dkr.ecr.us-east-1.amazonaws.com/service-b:3.0.0"
"#;
    aws.repo.write("deployment.yaml", deployment);
    aws.repo.commit("release 4.0");

    let validate = aws.launchway(&["validate"]).await;
    validate.assert_exit(0);
    assert!(validate.stdout().contains("2 services, 1 task in 1 environment (default)"), "{}", validate.stdout());

    let deploy = aws.launchway(&["deploy"]).await;
    deploy.assert_exit(0);
    assert_eq!(aws.runs().await.len(), 3, "{}", deploy.stdout());

    let a_now = aws.task_definition_of("demo", "demo-service-a-TS6BT1U6VQBG-Service-HTco3SKTy2J1").await;
    assert_eq!(
        aws.images_of(&a_now).await,
        [("service-a".to_owned(), "1111.dkr.ecr.us-east-1.amazonaws.com/service-a:2.0.0".to_owned())]
    );
    let b_now = aws.task_definition_of("demo", "demo-service-b").await;
    assert_eq!(
        aws.images_of(&b_now).await,
        [
            ("app".to_owned(), "1111.dkr.ecr.us-east-1.amazonaws.com/service-b:3.0.0".to_owned()),
            ("log-router".to_owned(), "fluent-bit:2".to_owned())
        ],
        "the container whose image names service-b, and only it"
    );
    let rule_target =
        aws.events.list_targets_by_rule().rule("service-y-cw-rule").send().await.unwrap().targets.unwrap().remove(0);
    let batch_now = rule_target.ecs_parameters.unwrap().task_definition_arn;
    assert_eq!(
        aws.images_of(&batch_now).await,
        [
            ("service-x".to_owned(), "1111.dkr.ecr.us-west-2.amazonaws.com/service-x:2.0.0".to_owned()),
            ("service-y".to_owned(), "1111.dkr.ecr.us-west-2.amazonaws.com/service-y:4.0.0".to_owned())
        ],
        "two entries on one rule: one new revision with both images"
    );

    // Deploying the same file again changes nothing.
    let again = aws.launchway(&["deploy"]).await;
    again.assert_exit(0);
    assert!(again.stdout().contains("nothing to deploy"), "{}", again.stdout());
    assert_eq!(aws.runs().await.len(), 3);
    assert_eq!(aws.task_definition_of("demo", "demo-service-b").await, b_now);
}

#[tokio::test]
async fn images_published_by_ci_as_image_files_are_deployed() {
    let aws = Aws::new().await;
    let web = aws.register("web", &[("web", "web:1"), ("log", "log:1")], "complete").await;
    let api = aws.register("api", &[("api", "api:1")], "complete").await;
    aws.service("prod", "web", &web).await;
    aws.service("prod", "api", &api).await;
    aws.repo.write(
        "launchway.yaml",
        "environments:\n  prod:\n    target: {ecs: {cluster: prod}}\nservices:\n  web:\n    images_from: release/web/imagedefinitions.json\n    settle_window: 300ms\n  api:\n    images_from: release/api/imageDetail.json\n    settle_window: 300ms\n",
    );
    aws.repo.write(
        "release/web/imagedefinitions.json",
        r#"[{"name":"web","imageUri":"web:2"},{"name":"log","imageUri":"log:2"}]"#,
    );
    aws.repo.write("release/api/imageDetail.json", r#"{"ImageURI": "api:2"}"#);
    aws.repo.commit("CI published web and api");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let web_now = aws.task_definition_of("prod", "web").await;
    assert_eq!(
        aws.images_of(&web_now).await,
        [("web".to_owned(), "web:2".to_owned()), ("log".to_owned(), "log:2".to_owned())]
    );
    let api_now = aws.task_definition_of("prod", "api").await;
    assert_eq!(aws.images_of(&api_now).await, [("api".to_owned(), "api:2".to_owned())]);
}

#[tokio::test]
async fn a_failing_ecs_release_is_rolled_back_to_the_previous_task_definition() {
    let aws = Aws::new().await;
    let good = aws.shop_deployed("300ms").await;

    aws.repo.write("ecs/shop.json", &shop_definition("shop:2", "fail"));
    aws.repo.commit("shop 2, broken");
    let plan = aws.launchway(&["plan"]).await;
    plan.assert_exit(0);
    assert!(plan.stdout().contains("~ containers.shop.image: shop:1 → shop:2"), "{}", plan.stdout());
    let deploy = aws.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("ECS deployment circuit breaker: tasks failed to start."), "{stdout}");
    assert!(stdout.contains("Essential container in task exited"), "the stopped tasks' reasons are shown: {stdout}");
    assert_eq!(aws.task_definition_of("prod", "shop").await, good, "back on the previous revision");
    let runs = aws.runs().await;
    assert_eq!(runs[0]["state"], "rolled_back");
    assert!(runs[0]["reason"].as_str().unwrap().contains("failed"), "{}", runs[0]["reason"]);
}

#[tokio::test]
async fn the_plan_shows_task_definition_and_service_changes() {
    let aws = Aws::new().await;
    let seed = aws.register("site", &[("site", "site:1")], "complete").await;
    aws.service("prod", "site", &seed).await;
    aws.repo.write(
        "launchway.yaml",
        "environments:\n  prod:\n    target: {ecs: {cluster: prod}}\nservices:\n  site:\n    image: site:2\n    replicas: 5\n    strategy:\n      rolling: {max_surge: 100%, max_unavailable: 0%}\n    settle_window: 300ms\n",
    );
    aws.repo.commit("site 2 with 5 replicas");
    let plan = aws.launchway(&["plan", "--output", "json"]).await;
    plan.assert_exit(0);
    let plan: Value = serde_json::from_str(&plan.stdout()).unwrap();
    let changes: Vec<String> = plan["plans"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c["path"].as_str().unwrap(),
                c["from"].as_str().unwrap_or("-"),
                c["to"].as_str().unwrap_or("-")
            )
        })
        .collect();
    // 100% surge and 0% unavailable are what the service has (200%, 100%): not changes.
    assert_eq!(changes, ["containers.site.image: site:1 → site:2", "desired_count: 2 → 5"]);
    assert_eq!(plan["plans"][0]["action"], "update");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let service =
        aws.ecs.describe_services().cluster("prod").services("site").send().await.unwrap().services.unwrap().remove(0);
    assert_eq!(service.desired_count(), 5);
    let after = aws.launchway(&["plan", "--output", "json"]).await;
    let after: Value = serde_json::from_str(&after.stdout()).unwrap();
    assert_eq!(after["plans"][0]["action"], "no_change", "{after:#}");

    let status = aws.launchway(&["status"]).await;
    status.assert_exit(0);
    assert!(status.stdout().contains("COMPLETED: 5 of 5 running"), "{}", status.stdout());
    assert!(status.stdout().contains("in sync"), "{}", status.stdout());
}

/// The server promotes across AWS accounts: stg deploys with the server's own
/// credentials, prod (another account) through the role its environment names, once
/// approved. moto's STS hands out credentials for the role's account.
#[tokio::test]
async fn the_server_promotes_from_stg_to_prod_in_another_account_after_approval() {
    use support::server::{Api, ServerProcess};

    let aws = Aws::new().await;
    let prod_account = aws.moto.account();
    let prod_config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(aws.moto.endpoint())
        .credentials_provider(Credentials::new(&prod_account.access_key, &prod_account.secret_key, None, None, "test"))
        .load()
        .await;
    let prod_ecs = aws_sdk_ecs::Client::new(&prod_config);
    let stg_seed = aws.register("web", &[("web", "web:1")], "complete").await;
    aws.service("stg", "web", &stg_seed).await;
    let prod_seed = prod_ecs
        .register_task_definition()
        .family("web")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder().name("web").image("web:1").memory(128).build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap();
    prod_ecs.create_cluster().cluster_name("prod").send().await.unwrap();
    prod_ecs
        .create_service()
        .cluster("prod")
        .service_name("web")
        .task_definition(&prod_seed)
        .desired_count(2)
        .send()
        .await
        .unwrap();

    aws.repo.write(
        "launchway.yaml",
        &format!(
            "environments:
  stg:
    target: {{ecs: {{cluster: stg}}}}
  prod:
    target: {{ecs: {{cluster: prod, role_arn: 'arn:aws:iam::{}:role/launchway-deployer'}}}}
    promote_from: stg
    approval: true
services:
  web:
    image: web:2
    settle_window: 300ms
",
            prod_account.id
        ),
    );
    aws.repo.commit("web 2");
    let created = aws
        .launchway(&[
            "token",
            "create",
            "--name",
            "t",
            "--subject",
            "bob@example.com",
            "--role",
            "approver",
            "--output",
            "json",
        ])
        .await;
    created.assert_exit(0);
    let secret = serde_json::from_str::<Value>(&created.stdout()).unwrap()["secret"].as_str().unwrap().to_owned();

    let mut command = Command::new(support::binary());
    command
        .env("LAUNCHWAY_REPO", aws.repo.path())
        .env("LAUNCHWAY_DB", aws.db.path().join("launchway.db"))
        .env_remove("LAUNCHWAY_OUTPUT");
    for (name, value) in aws.account.env(aws.moto.endpoint(), REGION) {
        command.env(name, value);
    }
    let server = ServerProcess::spawn(command);
    let api = Api::new(&server, Some(&secret));
    let runs = api
        .wait_for_runs("", |runs| runs.iter().any(|run| run["env"] == "prod" && run["state"] == "awaiting_approval"))
        .await;
    let stg_run = runs.iter().find(|run| run["env"] == "stg").unwrap();
    assert_eq!(stg_run["state"], "succeeded", "{stg_run}");
    let stg_now = aws.task_definition_of("stg", "web").await;
    assert_eq!(aws.images_of(&stg_now).await, [("web".to_owned(), "web:2".to_owned())]);
    let prod_before = prod_ecs.describe_services().cluster("prod").services("web").send().await.unwrap();
    assert_eq!(prod_before.services()[0].task_definition(), Some(prod_seed.as_str()), "untouched until approved");

    let prod_run = runs.iter().find(|run| run["env"] == "prod").unwrap()["id"].as_i64().unwrap();
    let approved = api.post(&format!("/api/v1/runs/{prod_run}/approve"), json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    api.wait_for_run(prod_run, &["succeeded"]).await;
    let prod_now = prod_ecs.describe_services().cluster("prod").services("web").send().await.unwrap();
    let prod_definition = prod_now.services()[0].task_definition().unwrap().to_owned();
    assert!(prod_definition.contains(&format!(":{}:task-definition/web:", prod_account.id)), "{prod_definition}");
    let described = prod_ecs.describe_task_definition().task_definition(&prod_definition).send().await.unwrap();
    assert_eq!(described.task_definition.unwrap().container_definitions()[0].image(), Some("web:2"));
}

/// A task definition file for the shop, whose tasks behave as `rollout` says.
fn shop_definition(image: &str, rollout: &str) -> String {
    json!({"family": "shop", "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "shop", "image": image, "memory": 256,
            "environment": [{"name": "LAUNCHWAY_TEST_ROLLOUT", "value": rollout}]}]})
    .to_string()
}

impl Aws {
    async fn revisions(&self, family: &str) -> usize {
        let listed = self.ecs.list_task_definitions().family_prefix(family).send().await.unwrap();
        listed.task_definition_arns().len()
    }

    /// The shop service in cluster prod, deployed by launchway from `ecs/shop.json` and
    /// verified over `settle`; returns the task definition it runs.
    async fn shop_deployed(&self, settle: &str) -> String {
        let seed = self.register("shop", &[("shop", "shop:0")], "complete").await;
        self.service("prod", "shop", &seed).await;
        let manifest = format!(
            "environments:\n  prod:\n    target: {{ecs: {{cluster: prod}}}}\nservices:\n  shop:\n    ecs: {{task_definition: ecs/shop.json}}\n    settle_window: {settle}\n"
        );
        self.repo.write("launchway.yaml", &manifest);
        self.repo.write("ecs/shop.json", &shop_definition("shop:1", "complete"));
        self.repo.commit("shop 1");
        self.launchway(&["deploy"]).await.assert_exit(0);
        self.task_definition_of("prod", "shop").await
    }

    async fn deployment_ids(&self, cluster: &str, service: &str) -> Vec<String> {
        let output = self.ecs.describe_services().cluster(cluster).services(service).send().await.unwrap();
        output.services.unwrap().remove(0).deployments().iter().map(|d| d.id().unwrap().to_owned()).collect()
    }
}

/// Verification watches the deployment after ECS says it completed: a task that stops
/// inside the settle window fails the release, which rolls back.
#[tokio::test]
async fn an_ecs_release_that_loses_a_task_inside_its_settle_window_is_rolled_back() {
    let aws = Aws::new().await;
    let good = aws.shop_deployed("2s").await;

    aws.repo.write("ecs/shop.json", &shop_definition("shop:2", "lose-after-complete"));
    aws.repo.commit("shop 2, dies soon after it starts");
    let deploy = aws.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("watching ECS service shop for 2s"), "{stdout}");
    assert!(stdout.contains("after its deployment completed, while it was being verified"), "{stdout}");
    assert!(stdout.contains("exit code 137"), "the stopped task says why: {stdout}");
    assert_eq!(aws.task_definition_of("prod", "shop").await, good, "back on the verified revision");
}

/// Without a circuit breaker ECS retries failing tasks for ever; launchway gives up as
/// ECS's own breaker would, in seconds, not at the ten-minute timeout.
#[tokio::test]
async fn failing_tasks_without_a_circuit_breaker_fail_the_run_within_seconds() {
    let aws = Aws::new().await;
    let good = aws.shop_deployed("300ms").await;

    aws.repo.write("ecs/shop.json", &shop_definition("shop:2", "crashloop"));
    aws.repo.commit("shop 2, its tasks exit at once");
    let started = std::time::Instant::now();
    let deploy = aws.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    assert!(deploy.stdout().contains("tasks failed and none is running"), "{}", deploy.stdout());
    assert_eq!(aws.task_definition_of("prod", "shop").await, good);
}

/// Settings are not a new task definition: a changed replica count or grace period
/// updates the service and nothing else; a manual rollback lands on the exact revision
/// that ran before, even one launchway did not register.
#[tokio::test]
async fn settings_only_changes_and_rollbacks_touch_no_more_than_they_must() {
    let aws = Aws::new().await;
    let theirs = aws.register("site", &[("site", "site:1")], "complete").await;
    aws.service("prod", "site", &theirs).await;
    let manifest = |image: &str, replicas: u32| {
        format!(
            "environments:\n  prod:\n    target: {{ecs: {{cluster: prod}}}}\nservices:\n  site:\n    image: {image}\n    replicas: {replicas}\n    settle_window: 300ms\n    ecs: {{health_check_grace_period: 1m}}\n"
        )
    };
    aws.repo.write("launchway.yaml", &manifest("site:1", 2));
    aws.repo.commit("site as it runs, with a grace period");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(aws.task_definition_of("prod", "site").await, theirs, "a grace period is no new revision");
    assert_eq!(aws.revisions("site").await, 1);

    aws.repo.write("launchway.yaml", &manifest("site:2", 2));
    aws.repo.commit("site 2");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let v2 = aws.task_definition_of("prod", "site").await;
    assert_ne!(v2, theirs);
    let deployments = aws.deployment_ids("prod", "site").await;

    aws.repo.write("launchway.yaml", &manifest("site:2", 3));
    aws.repo.commit("site on three tasks");
    let plan = aws.launchway(&["plan"]).await;
    assert!(plan.stdout().contains("~ desired_count: 2 → 3"), "{}", plan.stdout());
    assert!(plan.stdout().contains("update ECS service site"), "{}", plan.stdout());
    aws.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(aws.task_definition_of("prod", "site").await, v2, "the same revision");
    assert_eq!(aws.revisions("site").await, 2, "none registered");
    assert_eq!(aws.deployment_ids("prod", "site").await, deployments, "no deployment started");

    // Back to the first release: the revision someone else registered, not a copy.
    aws.launchway(&["rollback", "--app", "site", "--to", "1"]).await.assert_exit(0);
    assert_eq!(aws.task_definition_of("prod", "site").await, theirs);
    assert_eq!(aws.revisions("site").await, 2);
}

/// Issue 21, item 3: after someone moved the service back by hand (`aws ecs
/// update-service --task-definition site:1`), `status` said "in sync" from the store
/// while the next deploy redeployed. Status now plans against what ECS runs, by the rule
/// deploys decide by; the plan says the revision is reused, not registered again (item
/// 13); and a change of launchway's own settings is listed, not hidden (item 5).
#[tokio::test]
async fn status_sees_a_service_moved_by_hand_and_a_deploy_moves_it_back_without_registering() {
    let aws = Aws::new().await;
    let theirs = aws.register("site", &[("site", "site:1")], "complete").await;
    aws.service("prod", "site", &theirs).await;
    let manifest = |settle: &str| {
        format!(
            "environments:\n  prod:\n    target: {{ecs: {{cluster: prod}}}}\nservices:\n  site:\n    image: site:2\n    settle_window: {settle}\n"
        )
    };
    aws.repo.write("launchway.yaml", &manifest("300ms"));
    aws.repo.commit("site 2");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let ours = aws.task_definition_of("prod", "site").await;
    assert_ne!(ours, theirs);
    let status = |run: Run| -> Value {
        run.assert_exit(0);
        serde_json::from_str::<Value>(&run.stdout()).expect("JSON")[0].clone()
    };
    assert_eq!(status(aws.launchway(&["status", "--output", "json"]).await)["sync"], "in_sync");

    aws.ecs.update_service().cluster("prod").service("site").task_definition(&theirs).send().await.unwrap();
    let moved = status(aws.launchway(&["status", "--output", "json"]).await);
    assert_eq!(moved["sync"], "out_of_sync", "{moved:#}");
    let reason = moved["sync_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("move ECS service site in cluster prod back to the task definition revision registered"),
        "{reason}"
    );
    let text = aws.launchway(&["status"]).await;
    assert!(text.stdout().contains("site@prod is out of sync: move ECS service site"), "{}", text.stdout());

    aws.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(aws.task_definition_of("prod", "site").await, ours);
    assert_eq!(aws.revisions("site").await, 2, "reused, not registered again");
    assert_eq!(status(aws.launchway(&["status", "--output", "json"]).await)["sync"], "in_sync");

    // Only launchway watches the settle window: the plan lists it all the same, and
    // status says a deploy would record it.
    aws.repo.write("launchway.yaml", &manifest("400ms"));
    aws.repo.commit("a longer settle window");
    let plan = aws.launchway(&["plan"]).await;
    assert!(plan.stdout().contains("~ settle_window: 300ms → 400ms"), "{}", plan.stdout());
    assert!(plan.stdout().contains("nothing changes on the target"), "{}", plan.stdout());
    let settling = status(aws.launchway(&["status", "--output", "json"]).await);
    assert_eq!(settling["sync"], "out_of_sync");
    assert!(settling["sync_reason"].as_str().unwrap().contains("settle_window: 300ms → 400ms"), "{settling:#}");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(status(aws.launchway(&["status", "--output", "json"]).await)["sync"], "in_sync");
    assert_eq!(aws.revisions("site").await, 2);
}

/// Regression (issue 8): a fresh database (a new server, say) must not redeploy what
/// runs because the live settings are spelled differently from the manifest's.
#[tokio::test]
async fn a_fresh_database_adopts_what_runs_without_redeploying_it() {
    let aws = Aws::new().await;
    let seed = aws.register("shop", &[("shop", "shop:0")], "complete").await;
    aws.service("prod", "shop", &seed).await;
    let manifest = "environments:\n  prod:\n    target: {ecs: {cluster: prod}}\nservices:\n  shop:\n    replicas: 2\n    strategy:\n      rolling: {max_surge: 100%, max_unavailable: 0%}\n    settle_window: 300ms\n    ecs: {task_definition: ecs/shop.json, circuit_breaker: true, health_check_grace_period: 30s}\n";
    aws.repo.write("launchway.yaml", manifest);
    aws.repo.write("ecs/shop.json", &shop_definition("shop:1", "complete"));
    aws.repo.commit("shop 1");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let deployed = aws.task_definition_of("prod", "shop").await;
    let deployments = aws.deployment_ids("prod", "shop").await;
    // The file exported from what runs, launchway's own tags and all.
    let exported = aws.ecs.describe_task_definition().task_definition(&deployed).send().await.unwrap();
    let mut document: Value = serde_json::from_str(&shop_definition("shop:1", "complete")).unwrap();
    document["tags"] = json!([{"key": "launchway:revision", "value": "000000000000"}]);
    assert!(exported.task_definition.is_some());
    aws.repo.write("ecs/shop.json", &document.to_string());
    aws.repo.commit("the definition as exported");

    std::fs::remove_file(aws.db.path().join("launchway.db")).unwrap();
    let plan = aws.launchway(&["plan", "--output", "json"]).await;
    let plan: Value = serde_json::from_str(&plan.stdout()).unwrap();
    assert_eq!(plan["plans"][0]["action"], "no_change", "{plan:#}");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(aws.task_definition_of("prod", "shop").await, deployed);
    assert_eq!(aws.deployment_ids("prod", "shop").await, deployments, "nothing redeployed");
    assert_eq!(aws.revisions("shop").await, 2);
}

/// ECS's own strategies (BLUE_GREEN, CANARY, LINEAR) on the rollout model: moto does not
/// implement them, so crates/testkit/moto/ecs_rollouts.py moves each native deployment
/// through its lifecycle stages, pauses it at PAUSE hooks until ContinueServiceDeployment,
/// bakes (a minute lasts half a second there) and rolls back. What launchway asks of ECS
/// and how it follows and gates the deployment is real SDK traffic.
impl Aws {
    /// The shop on a rolling service behind a load balancer, deployed once by launchway;
    /// then the manifest switched to `strategy` (YAML under `strategy:`) with `image`.
    async fn shop_switched_to(&self, strategy: &str, image: &str, rollout: &str) -> String {
        self.shop_switched_with(strategy, "", image, rollout).await
    }

    /// As [`Aws::shop_switched_to`], with more lines in the `ecs:` block.
    async fn shop_switched_with(&self, strategy: &str, ecs: &str, image: &str, rollout: &str) -> String {
        let seed = self.register("shop", &[("shop", "shop:0")], "complete").await;
        self.ecs.create_cluster().cluster_name("prod").send().await.expect("cluster");
        self.ecs
            .create_service()
            .cluster("prod")
            .service_name("shop")
            .task_definition(&seed)
            .desired_count(2)
            .load_balancers(
                aws_sdk_ecs::types::LoadBalancer::builder()
                    .target_group_arn("arn:aws:elasticloadbalancing:ap-northeast-1:1:targetgroup/blue/1")
                    .container_name("shop")
                    .container_port(80)
                    .build(),
            )
            .send()
            .await
            .expect("service");
        let manifest = |strategy: &str| {
            format!(
                "environments:\n  prod:\n    target: {{ecs: {{cluster: prod}}}}\nservices:\n  shop:\n    ecs:\n{ecs}      task_definition: ecs/shop.json\n      load_balancer:\n        alternate_target_group: arn:aws:elasticloadbalancing:ap-northeast-1:1:targetgroup/green/2\n        production_listener_rule: arn:aws:elasticloadbalancing:ap-northeast-1:1:listener-rule/app/shop/1/2/3\n        role: arn:aws:iam::1:role/ecs-traffic\n    settle_window: 300ms\n{strategy}"
            )
        };
        self.repo.write("launchway.yaml", &manifest(""));
        self.repo.write("ecs/shop.json", &shop_definition("shop:1", "complete"));
        self.repo.commit("shop 1");
        self.launchway(&["deploy"]).await.assert_exit(0);
        let good = self.task_definition_of("prod", "shop").await;
        self.repo.write("launchway.yaml", &manifest(&format!("    strategy:\n{strategy}")));
        self.repo.write("ecs/shop.json", &shop_definition(image, rollout));
        self.repo.commit("shop 2, natively");
        good
    }

    /// The service's current native deployment, as DescribeServiceDeployments tells it.
    async fn native_deployment(&self) -> Option<aws_sdk_ecs::types::ServiceDeployment> {
        let output = self.ecs.describe_services().cluster("prod").services("shop").send().await.unwrap();
        let arn = output.services.unwrap().remove(0).current_service_deployment?;
        let described = self.ecs.describe_service_deployments().service_deployment_arns(arn).send().await.unwrap();
        described.service_deployments.unwrap_or_default().into_iter().next()
    }

    /// Starts `launchway deploy` and waits until ECS's deployment waits at a pause hook.
    async fn deploy_until_paused(&self) -> std::process::Child {
        let mut command = Command::new(support::binary());
        command
            .arg("deploy")
            .env("LAUNCHWAY_REPO", self.repo.path())
            .env("LAUNCHWAY_DB", self.db.path().join("launchway.db"))
            .env_remove("LAUNCHWAY_OUTPUT")
            .stdout(std::process::Stdio::piped());
        for (name, value) in self.account.env(self.moto.endpoint(), REGION) {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("launchway runs");
        for _ in 0..300 {
            // Only launchway looks at the deployment: each of our looks would move it on.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let runs = self.runs().await;
            if runs.first().is_some_and(|run| run["state"] == "progressing") {
                let events = self.launchway(&["audit", "--output", "json", "--limit", "1000"]).await;
                if events.stdout().contains("deployment.paused") {
                    return child;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the deployment never paused");
    }
}

#[tokio::test]
async fn an_ecs_blue_green_deployment_waits_at_its_gate_until_someone_promotes_it() {
    let aws = Aws::new().await;
    let good = aws
        .shop_switched_to(
            "      blue_green:\n        bake: 1m\n        gates: [{at: post_test_traffic_shift, approval: true}]\n",
            "shop:2",
            "complete",
        )
        .await;
    let plan = aws.launchway(&["plan"]).await;
    plan.assert_exit(0);
    let stdout = plan.stdout();
    // (The load balancer's advanced configuration was set by the first deploy.)
    for change in [
        "+ deployment.strategy: blue_green",
        "+ deployment.bake: 1m",
        "+ deployment.gates: post_test_traffic_shift (ECS rolls back after 1day)",
    ] {
        assert!(stdout.contains(change), "the plan shows {change:?}: {stdout}");
    }

    let child = aws.deploy_until_paused().await;
    let paused = aws.native_deployment().await.expect("a native deployment");
    assert_eq!(paused.lifecycle_stage().map(|stage| stage.as_str()), Some("POST_TEST_TRAFFIC_SHIFT"));
    let hook = &paused.lifecycle_hook_details()[0];
    assert_eq!(hook.status().map(|status| status.as_str()), Some("AWAITING_ACTION"));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let still = aws.native_deployment().await.unwrap();
    assert_eq!(still.status().map(|status| status.as_str()), Some("IN_PROGRESS"), "nobody approved: it waits");
    let green = still.target_service_revision().expect("a target revision");
    assert_eq!(green.requested_production_traffic_weight(), Some(0.0), "production traffic stays on blue");
    // What the app page and `status` show meanwhile: the deployment's lifecycle stage
    // and the service's deployments (looking at a paused deployment moves nothing).
    let status = aws.launchway(&["status", "--app", "shop", "--output", "json"]).await;
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).expect("status JSON");
    let definition = &status[0]["live"]["definition"];
    assert_eq!(
        definition["lifecycle"],
        serde_json::json!({"status": "IN_PROGRESS", "stage": "post_test_traffic_shift", "production_weight": 0.0,
            "to": "shop:3", "paused": true}),
        "{definition}"
    );
    assert!(!definition["deployments"].as_array().expect("deployments").is_empty(), "{definition}");

    let run_id = aws.runs().await[0]["id"].as_i64().unwrap().to_string();
    aws.launchway(&["promote", &run_id]).await.assert_exit(0);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("told ECS to go on from its pause at post_test_traffic_shift"), "{stdout}");
    let done = aws.native_deployment().await.unwrap();
    assert_eq!(done.status().map(|status| status.as_str()), Some("SUCCESSFUL"));
    assert_ne!(aws.task_definition_of("prod", "shop").await, good);
    let runs = aws.runs().await;
    assert_eq!(runs[0]["state"], "succeeded", "{}", runs[0]);
    let configuration = aws.ecs.describe_services().cluster("prod").services("shop").send().await.unwrap();
    let service = configuration.services.unwrap().remove(0);
    let deployment = service.deployment_configuration().unwrap();
    assert_eq!(deployment.strategy().map(|strategy| strategy.as_str()), Some("BLUE_GREEN"));
    assert_eq!(deployment.bake_time_in_minutes(), Some(1));
    let advanced = service.load_balancers()[0].advanced_configuration().expect("advanced configuration set");
    assert_eq!(advanced.role_arn(), Some("arn:aws:iam::1:role/ecs-traffic"));
}

#[tokio::test]
async fn a_failing_analysis_at_an_ecs_gate_rolls_the_deployment_back_through_ecs() {
    let aws = Aws::new().await;
    // A query whose answer is over its limit: the analysis fails at its first measurement.
    let prometheus = launchway_testkit::Prometheus::start("127.0.0.1:9").await;
    let strategy = format!(
        "      blue_green:\n        gates: [{{at: post_test_traffic_shift, hold: 2s}}]\n        analysis:\n          interval: 500ms\n          prometheus: {{address: '{}', query: 'vector(3)', max: 1}}\n",
        prometheus.address
    );
    let good = aws.shop_switched_to(&strategy, "shop:2", "complete").await;
    let deploy = aws.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("analysis at step 1: prometheus failed"), "{stdout}");
    assert!(stdout.contains("told ECS to roll back from its pause at post_test_traffic_shift"), "{stdout}");
    let rolled_back = aws.native_deployment().await.unwrap();
    assert_eq!(rolled_back.status().map(|status| status.as_str()), Some("ROLLBACK_SUCCESSFUL"));
    assert_eq!(aws.task_definition_of("prod", "shop").await, good, "ECS put the service back");
    let runs = aws.runs().await;
    assert_eq!(runs[0]["state"], "rolled_back", "{}", runs[0]);
}

#[tokio::test]
async fn ecs_canary_and_linear_deployments_shift_production_traffic_in_their_steps() {
    for (strategy, weights) in [
        ("      canary:\n        steps: [{weight: 10, pause: 1m}, {weight: 100, pause: 1m}]\n", vec![10.0, 100.0]),
        ("      linear: {step: 25, pause: 1m}\n", vec![25.0, 50.0, 75.0, 100.0]),
    ] {
        let aws = Aws::new().await;
        let good = aws.shop_switched_to(strategy, "shop:2", "complete").await;
        let deploy = aws.launchway(&["deploy", "--output", "json"]).await;
        deploy.assert_exit(0);
        assert_ne!(aws.task_definition_of("prod", "shop").await, good);
        let events = aws.launchway(&["audit", "--output", "json", "--limit", "1000"]).await;
        let mut events: Vec<Value> = serde_json::from_str(&events.stdout()).expect("JSON");
        events.sort_by_key(|event| event["id"].as_i64());
        let mut seen: Vec<f64> = Vec::new();
        for event in events.iter().filter(|event| event["kind"] == "deployment.stage") {
            if event["data"]["stage"] == "production_traffic_shift"
                && let Some(weight) = event["data"]["production_weight"].as_f64()
                && seen.last() != Some(&weight)
            {
                seen.push(weight);
            }
        }
        assert_eq!(seen, weights, "{strategy}: the production weights ECS went through, in order");
    }
}

#[tokio::test]
async fn an_alarm_that_goes_off_mid_deployment_is_a_rollback_by_ecs_and_a_failed_release() {
    let aws = Aws::new().await;
    let good = aws
        .shop_switched_with("      linear: {step: 50, pause: 1m}\n", "      alarms: [shop-5xx]\n", "shop:2", "alarm")
        .await;
    let deploy = aws.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("is ROLLBACK_IN_PROGRESS: alarm shop-5xx went off"), "{stdout}");
    assert_eq!(aws.task_definition_of("prod", "shop").await, good, "ECS put the service back");
    let runs = aws.runs().await;
    assert_eq!(runs[0]["state"], "rolled_back", "{}", runs[0]);
    let configuration = aws.ecs.describe_services().cluster("prod").services("shop").send().await.unwrap();
    let alarms = configuration.services.unwrap().remove(0).deployment_configuration.unwrap().alarms.unwrap();
    assert_eq!((alarms.alarm_names(), alarms.enable(), alarms.rollback()), (&["shop-5xx".to_owned()][..], true, true));
}

#[tokio::test]
async fn cloudwatch_metrics_and_alarms_decide_at_an_ecs_gate() {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricDatum, StateValue, Statistic};
    let aws = Aws::new().await;
    let green = Dimension::builder().name("TargetGroup").value("targetgroup/green/2").build();
    aws.cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(
            MetricDatum::builder()
                .metric_name("HTTPCode_Target_5XX_Count")
                .dimensions(green.clone())
                .value(0.0)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now()))
                .build(),
        )
        .send()
        .await
        .expect("metric data");
    aws.cloudwatch
        .put_metric_alarm()
        .alarm_name("shop-5xx-green")
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .dimensions(green)
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("alarm");
    let alarm_state = |state: StateValue| {
        aws.cloudwatch.set_alarm_state().alarm_name("shop-5xx-green").state_value(state).state_reason("test").send()
    };
    alarm_state(StateValue::Ok).await.expect("alarm state");
    let strategy = "      blue_green:\n        gates: [{at: post_test_traffic_shift, hold: 1s}]\n        analysis:\n          interval: 300ms\n          cloudwatch: {namespace: AWS/ApplicationELB, metric: HTTPCode_Target_5XX_Count, dimensions: {TargetGroup: targetgroup/green/2}, statistic: Sum, max: 0}\n          alarms: [shop-5xx-green]\n";
    aws.shop_switched_to(strategy, "shop:2", "complete").await;
    let deploy = aws.launchway(&["deploy"]).await;
    let stdout = deploy.stdout();
    deploy.assert_exit(0);
    assert!(
        stdout.contains("cloudwatch passed — Sum(AWS/ApplicationELB/HTTPCode_Target_5XX_Count) = 0, within bounds"),
        "{stdout}"
    );
    assert!(stdout.contains("alarms passed — no alarm in ALARM (shop-5xx-green)"), "{stdout}");
    let promoted = aws.task_definition_of("prod", "shop").await;

    // The same alarm in ALARM at the next release's gate sends ECS back.
    alarm_state(StateValue::Alarm).await.expect("alarm state");
    aws.repo.write("ecs/shop.json", &shop_definition("shop:3", "complete"));
    aws.repo.commit("shop 3");
    let deploy = aws.launchway(&["deploy"]).await;
    let stdout = deploy.stdout();
    deploy.assert_exit(5);
    assert!(stdout.contains("alarms failed — in ALARM: shop-5xx-green"), "{stdout}");
    assert_eq!(aws.task_definition_of("prod", "shop").await, promoted, "ECS put the service back");
}

/// The build stage for ECS: the image is built on the local engine, pushed to a real
/// registry (Debian's docker-registry on loopback, standing in for ECR, which moto only
/// logs in to), and the task definition gets the digest the registry holds, as
/// CodeBuild's imagedefinitions.json carried the pushed image.
#[tokio::test]
async fn an_ecs_app_built_by_launchway_runs_the_digest_it_pushed() {
    let aws = Aws::new().await;
    let docker = launchway_target_docker::DockerTarget::connect(None).await.expect("a Docker engine");
    let shell = launchway_target_docker::ExecutableImage {
        tag: "launchway-test/sh:ecs-build".into(),
        executable: "/bin/sh".into(),
        args: Vec::new(),
        env: Vec::new(),
    };
    launchway_target_docker::build_executable_image(docker.client(), &shell).await.expect("the base image");
    let registry = launchway_testkit::Registry::start().await;
    let web = aws.register("web", &[("web", "web:1")], "complete").await;
    aws.service("prod", "web", &web).await;
    let nonce = aws.db.path().display().to_string();
    aws.repo.write(
        "services/web/Dockerfile",
        &format!("FROM {}\nRUN [\"/sh\", \"-c\", \"echo {nonce} > /built\"]\n", shell.tag),
    );
    aws.repo.write(
        "launchway.yaml",
        &format!(
            "environments:\n  prod:\n    target: {{ecs: {{cluster: prod}}}}\nservices:\n  web:\n    settle_window: 300ms\n    build:\n      images:\n        web: {{context: services/web, repository: {}/shop/web}}\n",
            registry.host
        ),
    );
    let commit = aws.repo.commit("web, built by launchway");
    let deployed = aws.launchway(&["deploy"]).await;
    deployed.assert_exit(0);
    let digest = registry.digest("shop/web", &commit[..10], None).await;
    let digest = digest.unwrap_or_else(|| panic!("not pushed: {}\n{}", deployed.stdout(), deployed.stderr()));
    let now = aws.task_definition_of("prod", "web").await;
    assert_eq!(aws.images_of(&now).await, [("web".to_owned(), format!("{}/shop/web@{digest}", registry.host))]);
}

/// A migration on ECS: a task run once on deploy (RunTask, followed until it stops),
/// which the service depends on. moto runs no tasks: its RunTask is extended (in
/// ecs_rollouts.py) to stop the task at once with the exit code the task definition's
/// LAUNCHWAY_TEST_EXIT_CODE names; what launchway reads back (DescribeTasks' exit
/// codes) is ECS's own answer.
#[tokio::test]
async fn an_ecs_migration_task_runs_once_before_the_service_and_a_failing_one_stops_it() {
    let aws = Aws::new().await;
    let web = aws.register("web", &[("web", "web:1")], "complete").await;
    aws.service("prod", "web", &web).await;
    let migration = |exit_code: &str, version: &str| {
        json!({
            "family": "migrate",
            "containerDefinitions": [{
                "name": "migrate", "image": format!("shop:{version}"), "memory": 128, "essential": true,
                "command": ["shop", "migrate"],
                "environment": [{"name": "LAUNCHWAY_TEST_EXIT_CODE", "value": exit_code}]
            }]
        })
        .to_string()
    };
    let manifest = |web_image: &str| {
        format!(
            "environments:
  prod:
    target: {{ecs: {{cluster: prod}}}}
services:
  web:
    image: {web_image}
    settle_window: 300ms
    depends_on: [migrate]
tasks:
  migrate:
    run: on_deploy
    timeout: 1m
    ecs: {{task_definition: ecs/migrate.json, launch_type: FARGATE}}
"
        )
    };
    aws.repo.write("ecs/migrate.json", &migration("0", "2"));
    aws.repo.write("launchway.yaml", &manifest("web:2"));
    aws.repo.commit("web 2 after its migration");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let runs = aws.runs().await;
    let run_of = |runs: &[Value], app: &str| runs.iter().find(|run| run["app"] == app).expect("a run").clone();
    let (migrate, web_run) = (run_of(&runs, "migrate"), run_of(&runs, "web"));
    assert_eq!(migrate["state"], "succeeded", "{migrate}");
    assert!(migrate["reason"].as_str().unwrap().starts_with("exited 0"), "{migrate}");
    assert_eq!(web_run["waits_for"], json!([migrate["id"]]));
    assert_eq!(web_run["state"], "succeeded");
    assert_eq!(aws.tasks_run_by(&migrate).await.len(), 1, "run once, named after its run");
    let web_before = aws.task_definition_of("prod", "web").await;
    assert_eq!(aws.images_of(&web_before).await, [("web".to_owned(), "web:2".to_owned())]);
    aws.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(aws.runs().await.len(), runs.len(), "an unchanged migration does not run again");

    // The next migration fails: web's change is not deployed.
    aws.repo.write("ecs/migrate.json", &migration("3", "3"));
    aws.repo.write("launchway.yaml", &manifest("web:3"));
    aws.repo.commit("web 3 and a broken migration");
    aws.launchway(&["deploy"]).await.assert_exit(4);
    let runs = aws.runs().await;
    let (migrate, web_run) = (run_of(&runs, "migrate"), run_of(&runs, "web"));
    assert_eq!(migrate["state"], "failed", "{migrate}");
    assert!(migrate["reason"].as_str().unwrap().contains("migrate exited 3"), "{migrate}");
    assert_eq!(web_run["state"], "failed");
    assert!(web_run["reason"].as_str().unwrap().starts_with("not deployed: web depends on migrate"), "{web_run}");
    assert_eq!(aws.task_definition_of("prod", "web").await, web_before, "web untouched");
}

impl Aws {
    /// The tasks of cluster `prod` a run started, stopped since (`startedBy` names it).
    async fn tasks_run_by(&self, run: &Value) -> Vec<String> {
        let listed = self
            .ecs
            .list_tasks()
            .cluster("prod")
            .started_by(format!("launchway-run-{}", run["id"]))
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .unwrap();
        listed.task_arns().to_vec()
    }

    /// One EC2 Query API call to moto as this test's account (no EC2 SDK in the tests:
    /// a subnet and a security group are all a task's network needs); answers the text
    /// of the first `<tag>` of the reply.
    async fn ec2(&self, params: &[(&str, &str)], tag: &str) -> String {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0",
            self.account.access_key
        );
        let reply = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(self.moto.endpoint())
            .header("authorization", authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("Version", "2016-11-15")
                    .extend_pairs(params)
                    .finish(),
            )
            .send()
            .await
            .expect("moto answers")
            .text()
            .await
            .unwrap();
        let open = format!("<{tag}>");
        let start = reply.find(&open).unwrap_or_else(|| panic!("no {tag} in {reply}")) + open.len();
        reply[start..].split('<').next().unwrap().to_owned()
    }
}

/// A migration that runs in the awsvpc network the manifest names: RunTask gets the
/// subnets and security groups, and the task is attached there.
#[tokio::test]
async fn an_ecs_migration_runs_in_the_network_it_names() {
    let aws = Aws::new().await;
    aws.ecs.create_cluster().cluster_name("prod").send().await.expect("cluster");
    let vpc = aws.ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.9.0.0/16")], "vpcId").await;
    let subnet =
        aws.ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", "10.9.1.0/24")], "subnetId").await;
    let group = aws
        .ec2(
            &[("Action", "CreateSecurityGroup"), ("VpcId", &vpc), ("GroupName", "migrate"), ("GroupDescription", "m")],
            "groupId",
        )
        .await;
    let definition = json!({
        "family": "migrate", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "migrate", "image": "shop:2", "essential": true, "memory": 512,
            "environment": [{"name": "LAUNCHWAY_TEST_EXIT_CODE", "value": "0"}]}]
    });
    aws.repo.write("ecs/migrate.json", &definition.to_string());
    aws.repo.write(
        "launchway.yaml",
        &format!(
            "environments:\n  prod:\n    target: {{ecs: {{cluster: prod}}}}\ntasks:\n  migrate:\n    run: on_deploy\n    ecs:\n      task_definition: ecs/migrate.json\n      launch_type: FARGATE\n      network: {{subnets: [{subnet}], security_groups: [{group}]}}\n"
        ),
    );
    aws.repo.commit("a migration in its own network");
    aws.launchway(&["deploy"]).await.assert_exit(0);
    let runs = aws.runs().await;
    let tasks = aws.tasks_run_by(&runs[0]).await;
    let described = aws.ecs.describe_tasks().cluster("prod").set_tasks(Some(tasks)).send().await.unwrap();
    let attached: Vec<String> = described.tasks()[0]
        .attachments()
        .iter()
        .flat_map(|attachment| attachment.details())
        .filter(|detail| detail.name() == Some("subnetId"))
        .filter_map(|detail| detail.value().map(str::to_owned))
        .collect();
    assert_eq!(attached, [subnet]);
    assert_eq!(described.tasks()[0].launch_type().map(|kind| kind.as_str()), Some("FARGATE"));
}
