//! Manifest text in, validated state or diagnostics out.

use std::time::Duration;

use super::*;

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile { path: path.to_owned(), bytes: text.as_bytes().to_vec() }
}

fn load_one(text: &str) -> Result<Validated, Vec<Diagnostic>> {
    load_files(&[file(ROOT_FILE, text)])
}

/// Loads `files`, the manifest files among them, the rest readable as referenced files.
fn load_files(files: &[SourceFile]) -> Result<Validated, Vec<Diagnostic>> {
    let manifest: Vec<SourceFile> = files.iter().filter(|f| is_manifest_path(&f.path)).cloned().collect();
    load(&manifest, &files.to_vec())
}

/// The diagnostics of an invalid manifest, rendered as the CLI prints them.
fn errors(files: &[SourceFile]) -> Vec<String> {
    match load_files(files) {
        Ok(_) => panic!("expected the manifest to be refused"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn errors_of(text: &str) -> Vec<String> {
    errors(&[file(ROOT_FILE, text)])
}

const MINIMAL: &str = "\
environments:
  dev:
    target: docker
services:
  web:
    image: example/web:1.0
    port: 8080
";

#[test]
fn a_minimal_manifest_gets_sensible_defaults() {
    let validated = load_one(MINIMAL).expect("valid");
    let manifest = validated.manifest;
    assert_eq!(manifest.environments["dev"].target, TargetSpec::Docker { host: None });
    let AppSpec::Service(spec) = &*manifest.apps["web"].specs["dev"] else { panic!("web is a service") };
    assert_eq!(spec.replicas, 1);
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(spec.containers[0].name, "web");
    assert_eq!(spec.containers[0].port, Some(8080));
    assert_eq!(
        spec.strategy,
        Strategy::Rolling { max_surge: 1, max_unavailable: 0, timeout: Duration::from_secs(600) }
    );
    assert_eq!(spec.stop_grace_period, Duration::from_secs(10));
    assert!(validated.warnings.is_empty());
}

#[test]
fn a_full_service_with_overrides_resolves_per_environment() {
    let text = "\
version: 1
environments:
  dev: {target: docker}
  prod:
    target:
      docker: {host: unix:///var/run/docker.sock}
services:
  api:
    containers:
      api:
        image: example/api:2.0
        command: [serve, --port, '9000']
        env: {LOG: info, WORKERS: 4, RATIO: 1.10, DEBUG: false}
        port: 9000
      proxy:
        image: example/proxy:1.0
    replicas: 3
    health:
      path: /healthz
      interval: 2s
      timeout: 500ms
      start_period: 10s
      unhealthy_threshold: 2
    strategy:
      rolling: {max_surge: 50%, max_unavailable: 25%, timeout: 5m}
    overrides:
      dev:
        replicas: 1
      prod:
        images: {api: example/api:1.9}
        env: {LOG: warn}
";
    let manifest = load_one(text).expect("valid").manifest;
    let api = &manifest.apps["api"];
    let (AppSpec::Service(dev), AppSpec::Service(prod)) = (&*api.specs["dev"], &*api.specs["prod"]) else {
        panic!("api is a service")
    };
    assert_eq!(dev.replicas, 1);
    assert_eq!(prod.replicas, 3);
    assert_eq!(dev.containers[0].image, "example/api:2.0");
    assert_eq!(prod.containers[0].image, "example/api:1.9");
    assert_eq!(prod.containers[1].image, "example/proxy:1.0", "other containers keep their image");
    assert_eq!(dev.containers[0].env["LOG"], "info");
    assert_eq!(prod.containers[0].env["LOG"], "warn");
    assert_eq!(prod.containers[1].env["LOG"], "warn", "env overrides apply to every container");
    assert_eq!(dev.containers[0].env["RATIO"], "1.10", "numbers are kept as written");
    assert_eq!(dev.containers[0].env["DEBUG"], "false");
    assert_eq!(dev.containers[0].command.as_deref(), Some(&["serve".to_owned(), "--port".into(), "9000".into()][..]));
    let health = prod.health.as_ref().expect("health check");
    assert_eq!(health.port, 9000, "the health check probes the primary container's port");
    assert_eq!(health.timeout, Duration::from_millis(500));
    // 3 replicas: surge 50% rounds up to 2, unavailable 25% rounds down to 0.
    assert_eq!(
        prod.strategy,
        Strategy::Rolling { max_surge: 2, max_unavailable: 0, timeout: Duration::from_secs(300) }
    );
    assert_eq!(
        manifest.environments["prod"].target,
        TargetSpec::Docker { host: Some("unix:///var/run/docker.sock".into()) }
    );
}

#[test]
fn overriding_a_setting_for_one_environment_keeps_the_app_in_every_other() {
    let text = "\
environments:
  dev: {target: docker}
  stg: {target: docker}
  prod: {target: docker}
services:
  web:
    image: example/web:1.0
    settle_window: 30s
    overrides:
      prod: {replicas: 3, settle_window: 1m}
";
    let manifest = load_one(text).expect("valid").manifest;
    let deployed: Vec<&str> = manifest.deployments().map(|d| d.environment).collect();
    assert_eq!(deployed, ["dev", "prod", "stg"]);
    let settle = |env: &str| match &*manifest.apps["web"].specs[env] {
        AppSpec::Service(service) => (service.replicas, service.settle_window()),
        other => panic!("{other:?}"),
    };
    assert_eq!(settle("stg"), (1, Duration::from_secs(30)));
    assert_eq!(settle("prod"), (3, Duration::from_secs(60)));
}

#[test]
fn the_settle_window_defaults_to_ten_seconds_without_changing_revisions() {
    let text = "\
environments:
  dev: {target: docker}
services:
  web: {image: example/web:1.0}
";
    let manifest = load_one(text).expect("valid").manifest;
    let AppSpec::Service(web) = &*manifest.apps["web"].specs["dev"] else { panic!("a service") };
    assert_eq!(web.settle_window, None, "not written, not stored: revisions stay as they were");
    assert_eq!(web.settle_window(), Duration::from_secs(10));
}

#[test]
fn a_settle_window_of_zero_is_allowed_with_a_warning() {
    let text = "\
environments:
  dev: {target: docker}
services:
  web: {image: example/web:1.0, settle_window: 0s}
";
    let warnings: Vec<String> = load_one(text).expect("valid").warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "launchway.yaml:4:3: services.web: settle_window is 0s: a release counts as verified the moment it is healthy, so a crash seconds later would not roll it back"
        ]
    );
}

#[test]
fn a_mapping_under_environments_is_refused_with_the_rewrite() {
    let text = "\
environments:
  stg: {target: docker}
  prod: {target: docker}
services:
  web:
    image: example/web:1.0
    environments:
      prod: {replicas: 3}
";
    assert_eq!(
        errors_of(text),
        vec![
            "launchway.yaml:8:7: services.web.environments: a mapping here would both choose where the app runs and change its settings; list where it runs, `environments: [prod]` (leave it out to run everywhere), and put per-environment changes under `overrides:`",
        ]
    );
}

#[test]
fn overrides_for_an_environment_the_app_does_not_run_in_are_refused() {
    let text = "\
environments:
  stg: {target: docker}
  prod: {target: docker}
services:
  web:
    image: example/web:1.0
    environments: [stg]
    overrides:
      prod: {replicas: 3}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:9:7: services.web.overrides: web does not run in "prod" (its environments are stg): add prod to `environments`, or remove these overrides"#,
        ]
    );
}

#[test]
fn an_app_in_a_promoted_environment_must_run_where_promotions_come_from() {
    let text = "\
environments:
  stg: {target: docker}
  prod: {target: docker, promote_from: stg}
services:
  web:
    image: example/web:1.0
    environments: [prod]
  api:
    image: example/api:1.0
";
    assert_eq!(
        errors_of(text),
        vec![
            "launchway.yaml:7:19: services.web: web runs in prod, which is deployed only by promotion from stg, where web does not run: nothing would ever reach prod; add stg to its environments",
        ]
    );
}

#[test]
fn an_app_listing_environments_is_deployed_only_there() {
    let text = "\
environments:
  dev: {target: docker}
  prod: {target: docker}
services:
  web:
    image: example/web:1.0
    environments: [dev]
";
    let manifest = load_one(text).expect("valid").manifest;
    let deployed: Vec<(&str, &str)> = manifest.deployments().map(|d| (d.app, d.environment)).collect();
    assert_eq!(deployed, vec![("web", "dev")]);
}

#[test]
fn every_problem_is_reported_in_one_pass_with_its_position() {
    let text = "\
environments:
  dev:
    target: docker
services:
  web:
    image: example/web:1.0
    replica: 3
    port: 80800
    health:
      path: healthz
      interval: soon
  worker:
    image: Example/Worker
    command: run --fast
    stop_grace_period: 10
tasks:
  report:
    image: example/report:1.0
    schedule: '61 * * * *'
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:7:5: services.web: unknown field "replica", did you mean "replicas"?"#,
            "launchway.yaml:8:11: services.web.port: 80800 is out of range, expected 1 to 65535",
            r#"launchway.yaml:10:13: services.web.health.path: "healthz" must start with '/'"#,
            r#"launchway.yaml:11:17: services.web.health.interval: "soon" is not a duration: write a number and a unit, like "10s", "500ms", "2m" or "1h 30m""#,
            r#"launchway.yaml:13:12: services.worker.image: invalid image reference "Example/Worker": repository names must be lowercase"#,
            r#"launchway.yaml:14:14: services.worker.command: expected a list of strings, like ["serve", "--port", "8080"], found the string "run --fast""#,
            r#"launchway.yaml:15:24: services.worker.stop_grace_period: expected a duration like "10s", "500ms" or "2m", found an integer"#,
            r#"launchway.yaml:19:15: tasks.report.schedule: invalid schedule "61 * * * *": Component error: Number out of bounds."#,
        ]
    );
}

/// Regression (issue 11): a misspelt `image` hid every other problem of the container.
#[test]
fn a_misspelt_image_hides_no_other_problem_of_the_container() {
    let text = "\
environments:
  dev: {target: docker}
services:
  web:
    imgae: example/web:1
    port: \"eighty\"
";
    assert_eq!(
        errors_of(text),
        [
            r#"launchway.yaml:4:3: services.web: missing field "image" (the other container fields need one)"#,
            r#"launchway.yaml:5:5: services.web: unknown field "imgae", did you mean "image"?"#,
            r#"launchway.yaml:6:11: services.web.port: expected an integer, found the string "eighty""#,
        ]
    );
}

#[test]
fn references_to_undeclared_environments_are_refused_with_a_suggestion() {
    let text = "\
environments:
  staging: {target: docker}
services:
  web:
    image: example/web:1.0
    environments: [staging, prod]
    overrides:
      stagign: {replicas: 2}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:6:29: services.web.environments: environment "prod" is not declared in launchway.yaml"#,
            r#"launchway.yaml:8:7: services.web.overrides: environment "stagign" is not declared in launchway.yaml, did you mean "staging"?"#,
        ]
    );
}

#[test]
fn duplicate_keys_and_duplicate_app_names_across_files_are_refused() {
    let root = "\
environments:
  dev: {target: docker}
services:
  web:
    image: example/web:1.0
    replicas: 2
    replicas: 3
";
    let apps = "\
services:
  web:
    image: example/web:2.0
tasks:
  cleanup:
    image: example/cleanup:1.0
    schedule: rate(1 day)
";
    let more = "\
environments:
  qa: {target: docker}
services:
  cleanup:
    image: example/cleanup:1.0
";
    assert_eq!(
        errors(&[file(ROOT_FILE, root), file("apps/web.yaml", apps), file("apps/z.yml", more)]),
        vec![
            r#"apps/web.yaml:2:3: app "web" is already declared at launchway.yaml:4:3"#,
            "apps/z.yml:1:1: environments may only be declared in launchway.yaml",
            r#"apps/z.yml:1:1: unknown field "environments", expected one of "services", "tasks""#,
            r#"apps/z.yml:4:3: app "cleanup" is already declared at apps/web.yaml:5:3"#,
            r#"launchway.yaml:7:5: services.web: duplicate key "replicas" (first defined at 6:5)"#,
        ]
    );
}

#[test]
fn names_wrong_types_and_missing_fields_are_explained() {
    let text = "\
environments:
  Dev: {target: docker}
  prod: {target: {kubernetes: {}}}
  qa: {target: {docker: {host: nowhere}}}
  ci: {}
services:
  web:
    replicas: '3'
  both:
    image: example/both:1
    containers:
      a: {image: example/a:1}
  multi:
    containers:
      main: {image: example/main:1}
      side: {image: example/side:1}
    overrides:
      qa: {image: example/main:2}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:2:3: environments: invalid name "Dev": use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"#,
            r#"launchway.yaml:3:19: environments.prod.target: unknown field "kubernetes", expected one of "docker", "ecs""#,
            r#"launchway.yaml:4:32: environments.qa.target.docker.host: "nowhere" is not a Docker host; expected unix:///path/to/docker.sock or tcp://host:port"#,
            r#"launchway.yaml:5:3: environments.ci: missing field "target" (for example `target: docker`)"#,
            r#"launchway.yaml:7:3: services.web: missing field "image" (or a `containers` mapping, `images_from` or `build`)"#,
            r#"launchway.yaml:8:15: services.web.replicas: expected an integer, found the string "3""#,
            r#"launchway.yaml:11:5: services.both: use either `containers` or the single-container fields (image), not both"#,
            r#"launchway.yaml:18:19: services.multi.overrides.qa: this app has 2 containers (main, side); set their images with `images: {name: image}`"#,
        ]
    );
}

#[test]
fn a_rolling_update_that_could_never_progress_is_refused() {
    let text = "\
environments:
  dev: {target: docker}
services:
  web:
    image: example/web:1.0
    replicas: 3
    strategy:
      rolling: {max_surge: 0, max_unavailable: 10%}
";
    assert_eq!(
        errors_of(text),
        vec![
            "launchway.yaml:8:16: services.web in dev: with 3 replicas, max_surge and max_unavailable both come to 0, so a rolling update could never start or stop a replica"
        ]
    );
}

#[test]
fn a_health_check_without_any_port_is_refused() {
    let text = "\
environments:
  dev: {target: docker}
services:
  web:
    image: example/web:1.0
    health: {path: /healthz}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:6:5: services.web.health: the health check needs a port: set `port` on container "web" or on the health check"#
        ]
    );
}

#[test]
fn untagged_images_are_accepted_with_a_warning() {
    let text = MINIMAL.replace("example/web:1.0", "example/web");
    let validated = load_one(&text).expect("valid");
    assert_eq!(validated.warnings.len(), 1);
    assert!(validated.warnings[0].to_string().starts_with("launchway.yaml:5:3: services.web: image \"example/web\""));
}

#[test]
fn a_repo_without_the_root_file_is_refused() {
    assert_eq!(
        errors(&[file("apps/web.yaml", "services: {}")]),
        vec![
            "launchway.yaml:1:1: not found at the root of the config repo (nor deployment.yaml); it declares the environments"
        ]
    );
}

#[test]
fn syntax_errors_are_located() {
    assert_eq!(
        errors_of("environments:\n  dev:\n    target: docker\n   services: {}\n"),
        vec!["launchway.yaml:4:4: invalid YAML: while parsing a block mapping, did not find expected key"]
    );
}

#[test]
fn hostile_input_is_refused_quickly_and_without_panicking() {
    // An alias bomb: each line doubles ten times what the previous one expands to.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (previous, name) in ('a'..='i').zip('b'..='j') {
        let refs = vec![format!("*{previous}"); 10].join(", ");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let bomb_errors = errors_of(&bomb);
    assert!(bomb_errors[0].contains("budget breached"), "{bomb_errors:?}");

    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(errors_of(&deep)[0].starts_with("launchway.yaml:1:"));

    let nested: String = (0..200).map(|depth| format!("{}k{depth}:\n", "  ".repeat(depth))).collect();
    assert!(errors_of(&nested)[0].contains("nesting is too deep"), "{:?}", errors_of(&nested));

    let huge = "#".repeat(MAX_FILE_BYTES + 1);
    assert_eq!(
        errors_of(&huge),
        vec![format!(
            "launchway.yaml:1:1: file is {} bytes; manifests are limited to {} bytes",
            MAX_FILE_BYTES + 1,
            MAX_FILE_BYTES
        )]
    );

    let mut not_utf8 = b"environments:\n  dev: \xff\n".to_vec();
    not_utf8.extend_from_slice(b"\n");
    assert_eq!(
        errors(&[SourceFile { path: ROOT_FILE.into(), bytes: not_utf8 }]),
        vec!["launchway.yaml:2:8: file is not valid UTF-8"]
    );
}

#[test]
fn revisions_change_exactly_when_the_spec_changes() {
    let before = load_one(MINIMAL).expect("valid").manifest;
    let same = load_one(&format!("# a comment changes nothing\n{MINIMAL}")).expect("valid").manifest;
    let after = load_one(&MINIMAL.replace("1.0", "1.1")).expect("valid").manifest;
    let revision = |manifest: &Manifest| manifest.apps["web"].specs["dev"].revision();
    assert_eq!(revision(&before), revision(&same));
    assert_ne!(revision(&before), revision(&after));
    assert_eq!(revision(&before).0.len(), 12);
}

#[test]
fn specs_survive_a_round_trip_through_json() {
    let manifest = load_one(MINIMAL).expect("valid").manifest;
    let spec = &*manifest.apps["web"].specs["dev"];
    let json = serde_json::to_string(spec).expect("serializes");
    let back: AppSpec = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(&back, spec);
    assert_eq!(back.revision(), spec.revision());
}

// ---- ECS

const ECS: &str = "\
environments:
  dev: {target: docker}
  prod:
    target:
      ecs:
        region: ap-northeast-1
        cluster: prod
        role_arn: arn:aws:iam::222222222222:role/launchway-deployer
        endpoint_url: http://127.0.0.1:5000
services:
  web:
    image: example/web:2.0
    port: 8080
    replicas: 3
    strategy:
      rolling: {max_surge: 50%, max_unavailable: 0%}
    ecs:
      service: web-svc
      circuit_breaker: {rollback: true}
  api:
    containers:
      api: {image: example/api:7}
    environments: [prod]
    ecs:
      task_definition: ecs/api.json
tasks:
  report:
    image: example/report:3
    schedule: '0 3 * * *'
    ecs:
      rule: nightly-report
";

const API_TASK_DEFINITION: &str = r#"{
  "taskDefinition": {
    "taskDefinitionArn": "arn:aws:ecs:ap-northeast-1:222222222222:task-definition/api:4",
    "family": "api", "revision": 4, "status": "ACTIVE",
    "containerDefinitions": [
      {"name": "api", "image": "example/api:6", "memory": 512},
      {"name": "envoy", "image": "envoy:1.31", "memory": 128}
    ]
  },
  "tags": [{"key": "team", "value": "api"}]
}"#;

#[test]
fn an_app_resolves_to_the_shape_each_environment_target_needs() {
    let validated = load_files(&[file(ROOT_FILE, ECS), file("ecs/api.json", API_TASK_DEFINITION)]).expect("valid");
    let manifest = validated.manifest;
    let TargetSpec::Ecs(prod) = &manifest.environments["prod"].target else { panic!("prod is on ECS") };
    assert_eq!(prod.role_arn.as_deref(), Some("arn:aws:iam::222222222222:role/launchway-deployer"));
    assert_eq!(prod.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));

    assert!(matches!(*manifest.apps["web"].specs["dev"], AppSpec::Service(_)), "Docker in dev");
    let AppSpec::EcsService(web) = &*manifest.apps["web"].specs["prod"] else { panic!("ECS in prod") };
    assert_eq!((web.cluster.as_str(), web.service.as_str()), ("prod", "web-svc"));
    assert_eq!(web.definition.images["web"], "example/web:2.0");
    assert_eq!(web.definition.document, None, "an image swap on the live definition");
    assert_eq!(web.desired_count, Some(3));
    assert_eq!(
        web.deployment,
        Some(EcsDeployment {
            maximum_percent: Some(150),
            minimum_healthy_percent: Some(100),
            circuit_breaker: Some(CircuitBreaker { enable: true, rollback: Some(true) })
        })
    );

    let AppSpec::EcsService(api) = &*manifest.apps["api"].specs["prod"] else { panic!("ECS") };
    assert_eq!(api.service, "api", "the app's name by default");
    assert_eq!((api.desired_count, api.deployment), (None, None), "the service keeps its count and settings");
    let document = &api.definition.document.as_ref().expect("a whole definition").document;
    assert_eq!(document["family"], "api");
    assert!(document.get("taskDefinitionArn").is_none() && document.get("revision").is_none());
    assert_eq!(document["tags"][0]["value"], "api", "the wrapper's tags are kept");
    assert_eq!(api.definition.images["api"], "example/api:7", "the manifest's image wins over the file's");
    assert!(!manifest.apps["api"].specs.contains_key("dev"));

    let AppSpec::EcsTask(report) = &*manifest.apps["report"].specs["prod"] else { panic!("ECS task") };
    assert_eq!(report.rule.as_deref(), Some("nightly-report"));
    assert_eq!(report.cluster.as_deref(), Some("prod"));

    // Docker-only settings are pointed out for the ECS environment, not silently dropped.
    assert_eq!(
        validated.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            r#"launchway.yaml:11:3: services.web: port is not used in environment "prod" (ECS): the task definition says how containers run there"#
        ]
    );
}

#[test]
fn ecs_problems_are_located_in_the_manifest_and_in_the_files_it_refers_to() {
    let manifest = "\
environments:
  prod:
    target: {ecs: {role_arn: not-an-arn}}
services:
  web:
    image: example/web:1
    strategy:
      rolling: {max_surge: 1, max_unavailable: 0}
  api:
    containers:
      api: {image: example/api:7}
      sidecar: {image: example/side:1}
    ecs:
      cluster: prod
      task_definition: ecs/api.json
  gone:
    ecs: {cluster: prod, task_definition: ecs/missing.json}
  bare:
    ecs: {cluster: prod}
tasks:
  report:
    image: example/report:3
    ecs: {cluster: prod}
";
    let broken_json = "{\n  \"family\": \"api\",\n  \"containerDefinitions\": [\n    {\"name\": \"api\",}\n  ]\n}";
    assert_eq!(
        errors(&[file(ROOT_FILE, manifest), file("ecs/api.json", broken_json)]),
        vec![
            r#"ecs/api.json:4:20: invalid JSON: trailing comma"#,
            r#"launchway.yaml:3:30: environments.prod.target.ecs.role_arn: "not-an-arn" is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"#,
            "launchway.yaml:5:3: services.web: no ECS cluster: set ecs.cluster on the app, or cluster on environment \"prod\"'s target",
            "launchway.yaml:8:16: services.web in prod: on ECS, give max_surge and max_unavailable as percentages (ECS works in percent of the desired count), or set replicas",
            "launchway.yaml:17:43: services.gone.ecs.task_definition: ecs/missing.json is not in the config repo",
            "launchway.yaml:18:3: services.bare: an ECS app needs images to set (image, containers, images_from or build) or a whole ecs.task_definition",
            "launchway.yaml:23:5: tasks.report: on ECS a scheduled task runs from an EventBridge rule or Scheduler schedule: name it with ecs.rule or ecs.schedule",
        ]
    );
    let fixed_json = "{\"family\": \"api\", \"containerDefinitions\": [{\"name\": \"api\"}]}";
    let errors = errors(&[file(ROOT_FILE, manifest), file("ecs/api.json", fixed_json)]);
    assert!(
        errors.contains(
            &r#"launchway.yaml:9:3: services.api: container "sidecar" is not in ecs/api.json (it has api)"#.to_owned()
        ),
        "{errors:#?}"
    );
}

#[test]
fn images_come_from_codepipeline_and_codedeploy_files() {
    let manifest = "\
environments:
  dev: {target: docker}
services:
  web:
    containers:
      web: {image: example/web:placeholder}
      log: {image: example/log:placeholder}
    images_from: release/imagedefinitions.json
  api:
    image: example/api:placeholder
    images_from: release/api/imageDetail.json
";
    let definitions = r#"[{"name":"web","imageUri":"123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/web:dev-3f9a1c2"},{"name":"log","imageUri":"fluent-bit:3.1"}]"#;
    let detail = r#"{"ImageURI": "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/api:dev-77aa01"}"#;
    let manifest = load_files(&[
        file(ROOT_FILE, manifest),
        file("release/imagedefinitions.json", definitions),
        file("release/api/imageDetail.json", detail),
    ])
    .expect("valid")
    .manifest;
    let images = |app: &str| -> Vec<(String, String)> {
        manifest.apps[app].specs["dev"].images().into_iter().map(|(c, i)| (c.to_owned(), i.to_owned())).collect()
    };
    assert_eq!(
        images("web"),
        [
            ("log".to_owned(), "fluent-bit:3.1".to_owned()),
            ("web".to_owned(), "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/web:dev-3f9a1c2".to_owned())
        ]
    );
    assert_eq!(images("api")[0].1, "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/api:dev-77aa01");
}

#[test]
fn a_docker_app_may_take_every_image_from_images_from() {
    let manifest = "\
environments:
  dev: {target: docker}
services:
  web:
    images_from: release/imagedefinitions.json
  api:
    port: 8080
    env: {MODE: api}
    images_from: release/api/imageDetail.json
  worker:
    containers:
      worker: {command: [work]}
      log: {image: fluent-bit:3.1}
    images_from: release/worker.json
";
    let definitions =
        r#"[{"name":"web","imageUri":"registry.example/web:dev-3f9a1c2"},{"name":"log","imageUri":"fluent-bit:3.1"}]"#;
    let detail = r#"{"ImageURI": "registry.example/api:dev-77aa01"}"#;
    let worker = r#"[{"name":"worker","imageUri":"registry.example/worker:9"}]"#;
    let manifest = load_files(&[
        file(ROOT_FILE, manifest),
        file("release/imagedefinitions.json", definitions),
        file("release/api/imageDetail.json", detail),
        file("release/worker.json", worker),
    ])
    .expect("valid")
    .manifest;
    let containers = |app: &str| match manifest.apps[app].specs["dev"].as_ref() {
        AppSpec::Service(service) => service.containers.clone(),
        other => panic!("{app} is a Docker service: {other:?}"),
    };
    let web: Vec<(String, String)> = containers("web").into_iter().map(|c| (c.name, c.image)).collect();
    assert_eq!(
        web,
        [("log".into(), "fluent-bit:3.1".into()), ("web".into(), "registry.example/web:dev-3f9a1c2".into())],
        "one container per entry of the file"
    );
    let api = containers("api");
    assert_eq!(
        (api[0].name.as_str(), api[0].image.as_str(), api[0].port),
        ("api", "registry.example/api:dev-77aa01", Some(8080))
    );
    assert_eq!(api[0].env["MODE"], "api");
    let workers = containers("worker");
    assert_eq!(
        workers.iter().map(|c| c.image.as_str()).collect::<Vec<_>>(),
        ["registry.example/worker:9", "fluent-bit:3.1"]
    );

    // A container left without an image by the file is refused where images_from is written.
    let unset = "\
environments:
  dev: {target: docker}
services:
  worker:
    containers:
      worker: {command: [work]}
      sidecar: {port: 9000}
    images_from: release/worker.json
";
    assert_eq!(
        errors(&[file(ROOT_FILE, unset), file("release/worker.json", worker)]),
        [
            r#"launchway.yaml:8:18: services.worker.images_from: release/worker.json sets no image for container "sidecar", which declares no `image`"#
        ]
    );
}

#[test]
fn apps_deploy_after_what_they_depend_on_where_both_run() {
    let manifest = "\
environments:
  stg: {target: docker}
  prod: {target: docker}
services:
  web: {image: web:1, depends_on: [api]}
  api: {image: api:1, depends_on: [migrate]}
  admin: {image: admin:1, environments: [stg], depends_on: [api, web]}
tasks:
  migrate: {image: api:1, schedule: \"0 3 * * *\", environments: [stg]}
";
    let manifest = load_one(manifest).expect("valid").manifest;
    assert_eq!(manifest.apps["web"].depends_on, ["api"]);
    assert_eq!(manifest.dependencies_in("api", "stg"), ["migrate"]);
    assert!(manifest.dependencies_in("api", "prod").is_empty(), "migrate does not run in prod");
    assert_eq!(
        manifest.in_dependency_order("stg", &["web", "admin", "migrate", "api"]),
        ["migrate", "api", "web", "admin"]
    );
    // Through an app that does not change: web still waits for migrate.
    assert_eq!(manifest.in_dependency_order("stg", &["web", "migrate"]), ["migrate", "web"]);
    assert_eq!(manifest.in_dependency_order("prod", &["web", "api", "gone"]), ["api", "web", "gone"]);
}

#[test]
fn a_task_runs_on_its_schedule_or_on_deploy_but_not_both() {
    let manifest = "\
environments:
  dev: {target: docker}
  aws: {target: ecs}
tasks:
  migrate: {image: api:1, run: on_deploy, environments: [dev]}
  both: {image: api:1, run: on_deploy, schedule: \"0 3 * * *\", environments: [dev]}
  neither: {image: api:1, environments: [dev]}
  later: {image: api:1, run: later, environments: [dev]}
  on-ecs: {image: api:1, run: on_deploy, environments: [aws]}
";
    assert_eq!(
        errors_of(manifest),
        [
            r#"launchway.yaml:6:29: tasks.both.run: a task runs on its schedule or on deploy, not both"#,
            r#"launchway.yaml:7:3: tasks.neither: missing field "schedule" (for example "0 3 * * *" or "rate(5 minutes)"), or `run: on_deploy` for a task run once each time it changes, such as a migration"#,
            r#"launchway.yaml:8:30: tasks.later.run: unknown run "later", expected "on_deploy""#,
            r#"launchway.yaml:9:3: tasks.on-ecs: a task run on deploy on ECS needs ecs.task_definition (a whole task definition: nothing runs it yet to take one from)"#,
            r#"launchway.yaml:9:3: tasks.on-ecs: no ECS cluster to run the task in: set ecs.cluster on the app, or cluster on the environment's target"#,
        ]
    );
    let valid = load_one(&manifest.lines().take(5).collect::<Vec<_>>().join("\n")).expect("valid").manifest;
    let AppSpec::Task(task) = valid.apps["migrate"].specs["dev"].as_ref() else { panic!("a Docker task") };
    assert_eq!(task.schedule, None, "run on deploy");
}

#[test]
fn a_dependency_cycle_an_unknown_app_and_a_self_dependency_are_reported_where_written() {
    let manifest = "\
environments:
  prod: {target: docker}
services:
  web: {image: web:1, depends_on: [api]}
  api: {image: api:1, depends_on: [worker]}
  worker: {image: worker:1, depends_on: [web, apj, worker]}
  solo: {image: solo:1, depends_on: api}
";
    assert_eq!(
        errors_of(manifest),
        [
            r#"launchway.yaml:6:42: services.worker.depends_on: a cycle: web → api → worker → web (each waits for the next to deploy first)"#,
            r#"launchway.yaml:6:47: services.worker.depends_on: app "apj" is not declared, did you mean "api"?"#,
            r#"launchway.yaml:6:52: services.worker.depends_on: worker cannot depend on itself"#,
            r#"launchway.yaml:7:37: services.solo.depends_on: expected a list of apps, like [api, migrate]"#,
        ]
    );
}

#[test]
fn the_gitops_sample_deployment_file_is_a_config_repo_of_its_own() {
    // aws-samples/gitops-amazon-ecs-sample's deployment.yaml, as it is published.
    let sample = r#"release: 4.0
# tasks - (optional) if no scheduled tasks exists just remove the tasks array
tasks:
    #service - must match the task's container name in the task definition
  - service: service-x
    # cwRuleName - Name of the cloudwatch events rule associated with the ECS service name .
    cwRuleName: service-y-cw-rule
    # image - New image that you want to deploy.
    image: "11111111111.dkr.ecr.us-west-2.amazonaws.com/service-x:2.0.0"
  - service: service-y
    cwRuleName: service-y-cw-rule
    image: "11111111111.dkr.ecr.us-west-2.amazonaws.com/service-y:4.0.0"
services:
  #service - must match the container name in the task definition
  - service: service-a
    # clusterName - Name of the ECS cluster where the service exists
    clusterName: demo
    # serviceName - Name of the ECS service
    serviceName: demo-service-a-TS6BT1U6VQBG-Service-HTco3SKTy2J1
    # image - New image that you want to deploy.
    image: "11111111111.dkr.ecr.us-east-1.amazonaws.com/service-a:2.0.0"
  - service: service-b
    clusterName: demo
    serviceName: demo-service-b-1OP5GR8JWHKX7-Service-ExB0A5Jxcnv2
    image: "11111111111.dkr.ecr.us-east-1.amazonaws.com/service-b:3.0.0"
  - service: service-c
    clusterName: demo
    serviceName: demo-service-c-1OP5GR8JWHKX7-Service-ExB0A5Jxcnv2
    image: "11111111111.dkr.ecr.us-east-1.amazonaws.com/service-c:6.0.0"
"#;
    let manifest = load_files(&[file(SAMPLE_FILE, sample)]).expect("valid").manifest;
    assert_eq!(manifest.environments.keys().collect::<Vec<_>>(), [SAMPLE_ENVIRONMENT]);
    assert_eq!(manifest.environments[SAMPLE_ENVIRONMENT].target, TargetSpec::Ecs(EcsTarget::default()));
    assert_eq!(manifest.apps.len(), 4, "three services and one rule: {:?}", manifest.apps.keys());
    let AppSpec::EcsService(a) = &*manifest.apps["demo-service-a-ts6bt1u6vqbg-service-htco3skty2j1"].specs["default"]
    else {
        panic!("a service")
    };
    assert_eq!((a.cluster.as_str(), a.service.as_str()), ("demo", "demo-service-a-TS6BT1U6VQBG-Service-HTco3SKTy2J1"));
    assert_eq!(a.definition.images["service-a"], "11111111111.dkr.ecr.us-east-1.amazonaws.com/service-a:2.0.0");
    // Two containers on one rule: one app, one new revision.
    let AppSpec::EcsTask(rule) = &*manifest.apps["service-y-cw-rule"].specs["default"] else { panic!("a task") };
    assert_eq!(rule.rule.as_deref(), Some("service-y-cw-rule"));
    assert_eq!(rule.definition.images.keys().collect::<Vec<_>>(), ["service-x", "service-y"]);

    // Tasks may be left out, as the sample's comment says.
    let services_only = sample.split("services:").nth(1).map(|rest| format!("release: 4.0\nservices:{rest}")).unwrap();
    assert_eq!(load_files(&[file(SAMPLE_FILE, &services_only)]).expect("valid").manifest.apps.len(), 3);
}

#[test]
fn the_gitops_sample_file_gets_the_same_checks() {
    let broken =
        "release: 4.0\nservices:\n  - service: web\n    clusterName: demo\n    image: Web:1\n    servicename: web\n";
    assert_eq!(
        errors(&[file(SAMPLE_FILE, broken)]),
        vec![
            r#"deployment.yaml:3:5: services[0]: missing field "serviceName""#,
            r#"deployment.yaml:5:12: services[0].image: invalid image reference "Web:1": repository names must be lowercase"#,
            r#"deployment.yaml:6:5: services[0]: unknown field "servicename", did you mean "serviceName"?"#,
        ]
    );
}

const SMALL_SAMPLE: &str = "release: 4.0
services:
  - service: web
    clusterName: demo
    serviceName: web-svc
    image: example/web:2.0.0
";

#[test]
fn the_gitops_sample_file_takes_launchways_settings_in_a_block_of_its_own() {
    let sample = format!("{SMALL_SAMPLE}launchway:\n  timeout: 3m\n  settle_window: 45s\n");
    let manifest = load_files(&[file(SAMPLE_FILE, &sample)]).expect("valid").manifest;
    let AppSpec::EcsService(web) = &*manifest.apps["web-svc"].specs[SAMPLE_ENVIRONMENT] else { panic!("a service") };
    assert_eq!((web.timeout, web.settle_window()), (Duration::from_secs(180), Duration::from_secs(45)));

    let elsewhere = format!("{SMALL_SAMPLE}launchway:\n  environments: [prod]\n");
    assert_eq!(
        errors(&[file(SAMPLE_FILE, &elsewhere)]),
        vec![
            r#"deployment.yaml:8:17: launchway.environments: without a launchway.yaml, the apps of deployment.yaml deploy to the one environment "default"; declare "prod" in a launchway.yaml beside it"#,
        ]
    );
}

/// Regression (issue 8): a launchway.yaml beside deployment.yaml made launchway ignore
/// the latter without a word ("0 services").
#[test]
fn a_launchway_yaml_beside_the_sample_file_declares_where_its_apps_run() {
    let root = "\
environments:
  dev: {target: docker}
  stg: {target: {ecs: {cluster: stg}}}
  prod: {target: {ecs: {cluster: prod}}, promote_from: stg, approval: true}
services:
  site: {image: example/site:1}
";
    let sample = format!("{SMALL_SAMPLE}launchway: {{settle_window: 1m}}\n");
    let validated = load_files(&[file(ROOT_FILE, root), file(SAMPLE_FILE, &sample)]).expect("valid");
    let manifest = validated.manifest;
    let web: Vec<&str> = manifest.apps["web-svc"].specs.keys().map(String::as_str).collect();
    assert_eq!(web, ["prod", "stg"], "every ECS environment, not the Docker one");
    assert_eq!(manifest.apps["web-svc"].file, SAMPLE_FILE);
    assert_eq!(manifest.apps["site"].specs.len(), 3, "launchway.yaml's own apps are as they were");
    assert!(manifest.environments["prod"].approval.is_some(), "launchway.yaml's environments and approvals apply");
    let AppSpec::EcsService(web) = &*manifest.apps["web-svc"].specs["prod"] else { panic!("a service") };
    assert_eq!(web.settle_window(), Duration::from_secs(60));

    let listed = format!("{SMALL_SAMPLE}launchway:\n  environments: [stg, prod]\n");
    assert_eq!(load_files(&[file(ROOT_FILE, root), file(SAMPLE_FILE, &listed)]).expect("valid").manifest.apps.len(), 2);
}

#[test]
fn conflicts_between_launchway_yaml_and_the_sample_file_are_errors() {
    let root = "\
environments:
  dev: {target: docker}
  prod: {target: {ecs: {cluster: prod}}, promote_from: dev}
services:
  web-svc: {image: example/web:1}
";
    let sample = format!("{SMALL_SAMPLE}launchway:\n  environments: [dev, prod, qa]\n");
    assert_eq!(
        errors(&[file(ROOT_FILE, root), file(SAMPLE_FILE, &sample)]),
        vec![
            r#"deployment.yaml:3:5: app "web-svc" is already declared at launchway.yaml:5:3"#,
            r#"deployment.yaml:8:17: launchway.environments: environment "dev" runs on Docker; the apps of deployment.yaml are ECS services and rules"#,
            r#"deployment.yaml:8:17: launchway.environments: environment "qa" is not declared in launchway.yaml"#,
        ]
    );
    let docker_only = "environments:\n  dev: {target: docker}\n";
    assert_eq!(
        errors(&[file(ROOT_FILE, docker_only), file(SAMPLE_FILE, SMALL_SAMPLE)]),
        vec![
            "deployment.yaml:1:1: the apps of deployment.yaml run on ECS, and launchway.yaml declares no ECS environment: declare one, or list where they run with `launchway: {environments: [..]}`",
        ]
    );
}

#[test]
fn the_sample_files_apps_must_run_where_their_promotions_come_from() {
    let root = "\
environments:
  stg: {target: {ecs: {cluster: stg}}}
  prod: {target: {ecs: {cluster: prod}}, promote_from: stg}
";
    let prod_only = format!("{SMALL_SAMPLE}launchway:\n  environments: [prod]\n");
    assert_eq!(
        errors(&[file(ROOT_FILE, root), file(SAMPLE_FILE, &prod_only)]),
        vec![
            "deployment.yaml:8:3: launchway.environments: prod is deployed only by promotion from stg, where the apps of deployment.yaml do not run: add stg",
        ]
    );
}

// ---- what the server reads: sources, approvals, notifications

const PIPELINE: &str = "\
environments:
  dev:
    target: docker
    branch: dev
  stg:
    target: docker
  prod:
    target: docker
    promote_from: stg
    approval: {expires: 24h}
  hotfix:
    target: docker
    tags: semver
    approval: true
notifications:
  - slack: ssm:/launchway/slack-webhook
    events: [approval_needed, failed, rolled_back]
    environments: [prod]
  - webhook: https://ops.example.com/launchway
  - discord: env:DISCORD_WEBHOOK
    events: [failed]
services:
  web: {image: example/web:1}
";

#[test]
fn environments_say_which_changes_feed_them_and_who_must_approve() {
    let manifest = load_one(PIPELINE).expect("valid").manifest;
    let env = |name: &str| &manifest.environments[name];
    assert_eq!(env("dev").source, EnvSource::Branch { name: "dev".into() });
    assert_eq!(env("stg").source, EnvSource::DefaultBranch);
    assert_eq!(env("prod").source, EnvSource::Promotion { from: "stg".into() });
    assert_eq!(env("hotfix").source, EnvSource::Tags { pattern: "semver".into() });
    assert_eq!(
        env("prod").approval,
        Some(ApprovalPolicy { forbid_author: true, expires: Some(Duration::from_secs(86_400)) })
    );
    assert_eq!(env("hotfix").approval, Some(ApprovalPolicy { forbid_author: true, expires: None }));
    assert_eq!(env("stg").approval, None);

    assert!(env("dev").source.accepts("refs/heads/dev", "main"));
    assert!(!env("dev").source.accepts("refs/heads/main", "main"));
    assert!(env("stg").source.accepts("refs/heads/main", "main"));
    assert!(env("hotfix").source.accepts("refs/tags/v1.4.2", "main"));
    assert!(env("hotfix").source.accepts("refs/tags/2.0.0-rc.1", "main"));
    assert!(!env("hotfix").source.accepts("refs/tags/nightly", "main"));
    assert!(!env("prod").source.accepts("refs/heads/main", "main"), "prod takes promotions only");

    assert_eq!(manifest.notifications.len(), 3);
    assert_eq!(manifest.notifications[2].sink, NotificationSink::Discord { url: "env:DISCORD_WEBHOOK".into() });
    let slack = &manifest.notifications[0];
    assert_eq!(slack.sink, NotificationSink::Slack { url: "ssm:/launchway/slack-webhook".into() });
    assert!(slack.wants(NotifyOn::Failed, "prod"));
    assert!(!slack.wants(NotifyOn::Succeeded, "prod"));
    assert!(!slack.wants(NotifyOn::Failed, "dev"));
    assert!(manifest.notifications[1].wants(NotifyOn::Succeeded, "dev"), "no filter: everything");
    assert!(!manifest.notifications[1].wants(NotifyOn::Started, "dev"), "…but starts only when asked for");
}

#[test]
fn commit_statuses_go_to_github_or_gitlab_with_a_token_kept_secret() {
    let with = |notifications: &str| {
        format!(
            "environments:\n  dev: {{target: docker}}\nservices:\n  web: {{image: web:1}}\nnotifications:\n{notifications}"
        )
    };
    let manifest = with(
        "  - github: {repo: shop/config, token: env:GITHUB_TOKEN}
  - gitlab: {repo: shop/config, token: ssm:/launchway/gitlab, api_url: https://git.example.com/api/v4}
",
    );
    let manifest = load_one(&manifest).expect("valid").manifest;
    let github = &manifest.notifications[0];
    let expected = ForgeStatuses {
        repo: "shop/config".into(),
        token: "env:GITHUB_TOKEN".into(),
        api_url: "https://api.github.com".into(),
    };
    assert_eq!(github.sink, NotificationSink::GitHub(expected));
    assert!(github.wants(NotifyOn::Started, "dev") && github.wants(NotifyOn::ApprovalNeeded, "dev"));
    let gitlab = &manifest.notifications[1];
    assert!(!gitlab.wants(NotifyOn::ApprovalNeeded, "dev"), "GitLab takes no step back from running to pending");

    let plain = with("  - github: {repo: shop/config, token: ghp_0123456789}\n");
    assert_eq!(
        errors_of(&plain),
        [
            "launchway.yaml:6:40: notifications[0].github.token: a token is a secret: write a reference to it, env:VARIABLE or ssm:/parameter/name"
        ]
    );
}

/// A Slack app (a bot token and a channel) posts messages it can edit later: the
/// approval message brought up to date once decided (issue 21).
#[test]
fn a_slack_app_is_a_bot_token_kept_secret_and_a_channel() {
    let with = |slack: &str| {
        format!(
            "environments:\n  dev: {{target: docker}}\nservices:\n  web: {{image: web:1}}\nnotifications:\n  - slack: {slack}\n"
        )
    };
    let manifest = load_one(&with("{token: env:SLACK_BOT_TOKEN, channel: C0123}")).expect("valid").manifest;
    let expected = SlackApp {
        token: "env:SLACK_BOT_TOKEN".into(),
        channel: "C0123".into(),
        api_url: "https://slack.com/api".into(),
    };
    assert_eq!(manifest.notifications[0].sink, NotificationSink::SlackApp(expected));
    assert!(manifest.notifications[0].wants(NotifyOn::ApprovalNeeded, "dev"));
    assert_eq!(
        errors_of(&with("{token: xoxb-123, channel: C0123, chanel: x}")),
        [
            "launchway.yaml:6:20: notifications[0].slack.token: a token is a secret: write a reference to it, env:VARIABLE or ssm:/parameter/name",
            r#"launchway.yaml:6:46: notifications[0].slack: unknown field "chanel", did you mean "channel"?"#,
        ]
    );
    assert_eq!(
        errors_of(&with("{token: env:T}")),
        [r#"launchway.yaml:6:12: notifications[0].slack: missing field "channel""#]
    );
}

#[test]
fn tag_patterns_are_semver_or_globs() {
    assert!(tag_matches("semver", "v10.0.3"));
    assert!(tag_matches("semver", "1.2.3+build.7"));
    assert!(!tag_matches("semver", "v1.2"));
    assert!(!tag_matches("semver", "latest"));
    assert!(tag_matches("release-*", "release-2026-11"));
    assert!(!tag_matches("release-*", "hotfix-1"));
    assert!(tag_matches("*", "anything"));
    assert!(tag_matches("release/*", "release/2026/11"), "* spans slashes");
    assert!(tag_matches("v1.?.[0-9]", "v1.4.2"));
    assert!(!tag_matches("v1.?.[0-9]", "v1.4.x"));
    // The hand-written matcher this replaced backtracked exponentially on such a pair.
    assert!(!tag_matches("*a*a*a*a*a*a*a*a*a*a*a*a*b", &"a".repeat(60)));
}

#[test]
fn bad_sources_promotions_and_notifications_are_reported() {
    let text = "\
environments:
  dev: {target: docker, branch: dev, tags: semver}
  stg: {target: docker, promote_from: prod}
  prod: {target: docker, promote_from: stg}
  qa: {target: docker, promote_from: staging, approval: {requierd: true}}
notifications:
  - slack: hooks.slack.com/services/x
  - webhook: https://ops.example.com/hook
    events: [deployed]
    environments: [production]
  - {}
services:
  web: {image: example/web:1}
";
    assert_eq!(
        errors_of(text),
        vec![
            "launchway.yaml:2:38: environments.dev: an environment has one source: branch and tags cannot be combined",
            "launchway.yaml:3:39: environments.stg.promote_from: promotions go round in a circle (stg ← prod ← stg)",
            "launchway.yaml:4:40: environments.prod.promote_from: promotions go round in a circle (prod ← stg ← prod)",
            r#"launchway.yaml:5:38: environments.qa.promote_from: environment "staging" is not declared, did you mean "stg"?"#,
            r#"launchway.yaml:5:58: environments.qa.approval: unknown field "requierd", did you mean "required"?"#,
            "launchway.yaml:7:12: notifications[0].slack: expected an http(s) URL, or a reference to one: ssm:/parameter/name or env:VARIABLE",
            r#"launchway.yaml:9:13: notifications[1].events: unknown event "deployed", expected "started", "approval_needed", "succeeded", "failed", "rolled_back", "rejected""#,
            "launchway.yaml:11:5: notifications[2]: name one destination: slack (an incoming webhook, or an app: {token, channel}), discord (a channel webhook), webhook, or github / gitlab (commit statuses)",
        ]
    );
}

/// Issue 21, item 13: a `promote_from` naming no environment was reported only once the
/// environment's other errors (here its approval) were fixed: one pass reports both.
#[test]
fn a_bad_promotion_is_reported_beside_the_environments_other_errors() {
    let text = "\
environments:
  stg: {target: dockr}
  prod: {target: docker, promote_from: stage, approval: maybe}
services:
  web: {image: example/web:1}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:2:17: environments.stg.target: unknown target kind "dockr", did you mean "docker"?"#,
            r#"launchway.yaml:3:40: environments.prod.promote_from: environment "stage" is not declared, did you mean "stg"?"#,
            r#"launchway.yaml:3:57: environments.prod.approval: expected a mapping, found the string "maybe""#,
        ]
    );
}

#[test]
fn published_images_replace_the_manifests_by_container() {
    let manifest = load_one(MINIMAL).expect("valid").manifest;
    let spec = &*manifest.apps["web"].specs["dev"];
    let published =
        spec.with_images(&std::collections::BTreeMap::from([("web".to_owned(), "example/web:1.1".to_owned())]));
    assert_eq!(published.images()["web"], "example/web:1.1");
    assert_ne!(published.revision(), spec.revision());
    let unrelated = spec.with_images(&std::collections::BTreeMap::from([("other".to_owned(), "x:1".to_owned())]));
    assert_eq!(unrelated, *spec);
}

#[test]
fn a_loader_reparses_only_changed_files_and_agrees_with_a_fresh_load() {
    let root = file("launchway.yaml", "environments: {dev: {target: docker}}\n");
    let app = |name: &str, image: &str| {
        file(&format!("apps/{name}.yaml"), &format!("services: {{{name}: {{image: {image}}}}}\n"))
    };
    let mut loader = Loader::default();
    let first = vec![root.clone(), app("web", "web:1"), app("api", "api:1")];
    let loaded = loader.load(&first, &first).expect("valid");
    assert_eq!(loaded.manifest, load_files(&first).expect("valid").manifest);

    // One file changes; the others are taken as they were read.
    let second = vec![root.clone(), app("web", "web:2"), app("api", "api:1")];
    let reloaded = loader.load(&second, &second).expect("valid");
    assert_eq!(reloaded.manifest, load_files(&second).expect("valid").manifest);
    assert!(format!("{:?}", reloaded.manifest.apps["web"]).contains("web:2"));

    // A file's own problems come back with it while it is unchanged, and go once fixed;
    // problems across files (an app declared twice) are found whatever was cached.
    let broken = vec![root.clone(), app("web", "web:2"), file("apps/api.yaml", "services: {api: {imgae: api:1}}\n")];
    let expected = load_files(&broken).expect_err("invalid");
    assert_eq!(loader.load(&broken, &broken).expect_err("invalid"), expected);
    assert_eq!(loader.load(&broken, &broken).expect_err("still invalid"), expected);
    let twice = vec![root.clone(), app("web", "web:2"), file("apps/api.yaml", "services: {web: {image: web:3}}\n")];
    assert_eq!(loader.load(&twice, &twice).expect_err("declared twice"), load_files(&twice).expect_err("invalid"));
    let fixed = vec![root, app("web", "web:2"), app("api", "api:1")];
    assert_eq!(loader.load(&fixed, &fixed).expect("valid").manifest, reloaded.manifest);
}

#[test]
fn an_entry_point_needs_a_port_runs_on_docker_and_changes_the_revision_only_when_written() {
    let plain = "environments: {dev: {target: docker}}\nservices: {web: {image: web:1, port: 8080}}\n";
    let with = "environments: {dev: {target: docker}}\nservices: {web: {image: web:1, port: 8080, ingress: {port: 80, host: shop.example, path: /api}}}\n";
    let plain_spec = load_one(plain).expect("valid").manifest.apps["web"].specs["dev"].clone();
    let spec = load_one(with).expect("valid").manifest.apps["web"].specs["dev"].clone();
    let AppSpec::Service(service) = spec.as_ref() else { panic!("{spec:?}") };
    assert_eq!(
        service.ingress,
        Some(Ingress { port: 80, host: Some("shop.example".into()), path: Some("/api".into()), tls: None })
    );
    assert_ne!(spec.revision(), plain_spec.revision());
    let AppSpec::Service(plain_service) = plain_spec.as_ref() else { panic!() };
    assert!(plain_service.ingress.is_none());

    assert_eq!(
        errors_of("environments: {dev: {target: docker}}\nservices: {web: {image: web:1, ingress: {port: 80}}}\n"),
        [
            "launchway.yaml:2:41: services.web.ingress: the entry point sends requests to a port: set `port` on container \"web\""
        ]
    );
    assert_eq!(
        errors_of(
            "environments: {dev: {target: docker}}\nservices: {web: {image: web:1, port: 80, ingress: {host: a, path: api}}}\n"
        ),
        [
            "launchway.yaml:2:51: services.web.ingress: `port` is required: the host port clients connect to",
            "launchway.yaml:2:67: services.web.ingress.path: \"api\" must start with '/'",
        ]
    );
    let ecs = "environments: {prod: {target: {ecs: {region: ap-northeast-1, cluster: main}}}}\nservices: {web: {image: web:1, port: 80, ingress: {port: 80}}}\n";
    let problems = errors_of(ecs);
    assert!(problems.iter().any(|problem| problem.contains("`ingress` is for Docker environments")), "{problems:?}");
}

const PROGRESSIVE: &str = "\
environments:
  dev: {target: docker}
services:
  web:
    image: example/web:1.0
    port: 8080
    replicas: 2
    ingress: {port: 8000}
    strategy:
      canary:
        steps:
          - {weight: 20, pause: 2s}
          - {weight: 60}
        analysis:
          interval: 500ms
          failure_limit: 1
          http: {path: /work, status: 200, max_latency: 250ms}
          prometheus: {address: 'http://127.0.0.1:9090', query: max(errors), max: 0.5}
";

#[test]
fn a_canary_reads_its_steps_and_its_analysis() {
    let manifest = load_one(PROGRESSIVE).expect("valid").manifest;
    let AppSpec::Service(spec) = &*manifest.apps["web"].specs["dev"] else { panic!("web is a service") };
    assert_eq!(
        spec.strategy.traffic_steps(),
        [CanaryStep::timed(20, Duration::from_secs(2)), CanaryStep::timed(60, Duration::ZERO)]
    );
    assert_eq!(spec.strategy.timeout(), Duration::from_secs(600));
    let analysis = spec.strategy.analysis().expect("an analysis");
    assert_eq!((analysis.interval, analysis.failure_limit), (Duration::from_millis(500), 1));
    assert_eq!(
        analysis.http,
        Some(HttpAnalysis {
            path: "/work".into(),
            url: None,
            port: None,
            status: Some(200),
            max_latency: Some(Duration::from_millis(250))
        })
    );
    let prometheus = analysis.prometheus.as_ref().expect("a query");
    assert_eq!((prometheus.query.as_str(), prometheus.max, prometheus.min), ("max(errors)", Some(0.5), None));
}

#[test]
fn blue_green_moves_all_traffic_in_one_step_held_for_its_bake() {
    let text = PROGRESSIVE.replace(
        "      canary:\n        steps:\n          - {weight: 20, pause: 2s}\n          - {weight: 60}\n        analysis:",
        "      blue_green:\n        bake: 5s\n        analysis:",
    );
    let manifest = load_one(&text).expect("valid").manifest;
    let AppSpec::Service(spec) = &*manifest.apps["web"].specs["dev"] else { panic!("web is a service") };
    assert!(matches!(spec.strategy, Strategy::BlueGreen { .. }));
    assert_eq!(spec.strategy.traffic_steps(), [CanaryStep::timed(100, Duration::from_secs(5))]);
}

#[test]
fn progressive_strategies_are_refused_where_no_traffic_can_be_moved_and_when_written_wrong() {
    // Without an entry point there is no traffic for launchway to move.
    let without_ingress = PROGRESSIVE.replace("    ingress: {port: 8000}\n", "");
    assert_eq!(
        errors_of(&without_ingress),
        vec![
            "launchway.yaml:9:7: services.web.strategy: canary moves traffic between releases through launchway's proxy: declare `ingress:` (the host port clients use)"
        ]
    );
    let wrong = "\
environments: {dev: {target: docker}}
services:
  web:
    image: example/web:1.0
    port: 8080
    ingress: {port: 8000}
    strategy:
      canary:
        steps: [{weight: 0}, {wieght: 5}]
        analysis: {interval: 0s, prometheus: {address: '127.0.0.1:9090', query: up}}
";
    assert_eq!(
        errors_of(wrong),
        vec![
            "launchway.yaml:9:26: services.web.strategy.canary.steps[0].weight: 0 is out of range, expected 1 to 100",
            "launchway.yaml:9:30: services.web.strategy.canary.steps[1]: `weight` is required: the percent of requests, 1 to 100",
            "launchway.yaml:9:31: services.web.strategy.canary.steps[1]: unknown field \"wieght\", did you mean \"weight\"?",
            "launchway.yaml:10:30: services.web.strategy.canary.analysis.interval: must be greater than zero",
            "launchway.yaml:10:46: services.web.strategy.canary.analysis.prometheus: a query needs a threshold: `max`, `min` or both",
            "launchway.yaml:10:56: services.web.strategy.canary.analysis.prometheus.address: \"127.0.0.1:9090\" is not an address like \"http://127.0.0.1:9090\"",
        ]
    );
    // ECS shifts a canary once, and measures at its gates through Prometheus only.
    let on_ecs = PROGRESSIVE
        .replace("dev: {target: docker}", "dev: {target: {ecs: {cluster: main}}}")
        .replace("    ingress: {port: 8000}\n", "");
    assert_eq!(
        errors_of(&on_ecs),
        vec![
            "launchway.yaml:9:7: services.web.strategy: ECS shifts a canary once: one step (its weight under 100, its pause ECS's canary bake time), optionally followed by {weight: 100, pause: <bake>}; for more steps, use linear"
        ]
    );
}

const ECS_NATIVE: &str = "\
environments:
  prod: {target: {ecs: {cluster: main}}}
services:
  web:
    image: example/web:1.0
    ecs:
      alarms: [web-5xx, web-latency]
      load_balancer:
        alternate_target_group: arn:tg/green
        production_listener_rule: arn:rule/prod
        test_listener_rule: arn:rule/test
        role: arn:role/ecs
    strategy:
      blue_green:
        bake: 10m
        gates:
          - {at: post_production_traffic_shift, hold: 1m}
          - {at: post_test_traffic_shift, approval: true, timeout: 2h}
        analysis:
          prometheus: {address: 'http://127.0.0.1:9090', query: max(errors), max: 0.5}
";

#[test]
fn an_ecs_service_asks_for_ecss_own_blue_green_with_gates_alarms_and_load_balancer() {
    let manifest = load_one(ECS_NATIVE).expect("valid").manifest;
    let AppSpec::EcsService(spec) = &*manifest.apps["web"].specs["prod"] else { panic!("web is an ECS service") };
    let strategy = spec.strategy.as_ref().expect("a native strategy");
    assert!(matches!(strategy, Strategy::BlueGreen { bake, .. } if *bake == Duration::from_secs(600)));
    // Gates come in the order ECS reaches them, whatever order they were written in.
    assert_eq!(
        strategy.gates(),
        [
            Gate {
                at: GateStage::PostTestTrafficShift,
                hold: Duration::ZERO,
                approval: true,
                timeout: Duration::from_secs(7200)
            },
            Gate {
                at: GateStage::PostProductionTrafficShift,
                hold: Duration::from_secs(60),
                approval: false,
                timeout: Duration::from_secs(86400)
            },
        ]
    );
    assert_eq!(spec.alarms, Some(EcsAlarms { names: vec!["web-5xx".into(), "web-latency".into()], rollback: true }));
    let balancer = spec.load_balancer.as_ref().expect("advanced configuration");
    assert_eq!(
        (balancer.role.as_str(), balancer.test_listener_rule.as_deref()),
        ("arn:role/ecs", Some("arn:rule/test"))
    );
    let (_, steps) = manifest.apps["web"].specs["prod"].progressive().expect("progressive");
    let names: Vec<&str> = steps.iter().map(|step| step.name.as_str()).collect();
    assert_eq!(names, ["gate 1", "gate 2"]);
    assert!(steps[0].approval && !steps[1].approval);
}

#[test]
fn ecs_strategies_are_checked_against_what_ecs_can_do() {
    let broken = ECS_NATIVE
        .replace("bake: 10m", "bake: 90s")
        .replace("at: post_test_traffic_shift", "at: post_test_trafic_shift")
        .replace("query: max(errors), max: 0.5}", "query: max(errors), max: 0.5}\n          http: {path: /}");
    assert_eq!(
        errors_of(&broken),
        vec![
            "launchway.yaml:18:18: services.web.strategy.blue_green.gates[1].at: \"post_test_trafic_shift\" is not a stage an ECS deployment pauses at (pre_scale_up, post_scale_up, post_test_traffic_shift, post_production_traffic_shift); did you mean \"post_test_traffic_shift\"?",
        ]
    );
    let broken = ECS_NATIVE
        .replace("bake: 10m", "bake: 90s")
        .replace("query: max(errors), max: 0.5}", "query: max(errors), max: 0.5}\n          http: {path: /}");
    assert_eq!(
        errors_of(&broken),
        vec![
            "launchway.yaml:14:7: services.web.strategy: ECS counts bake in whole minutes, up to 1440: 1m 30s is not",
            "launchway.yaml:14:7: services.web.strategy: on ECS, an `http` analysis asks one address, the load balancer's test listener: give `url`, like \"https://test.example.com:8443/healthz\" (`path` alone asks each replica, on Docker)",
        ]
    );
    let without_gates = ECS_NATIVE.replace(
        "        gates:\n          - {at: post_production_traffic_shift, hold: 1m}\n          - {at: post_test_traffic_shift, approval: true, timeout: 2h}\n",
        "",
    );
    assert_eq!(
        errors_of(&without_gates),
        vec![
            "launchway.yaml:14:7: services.web.strategy: on ECS the analysis runs while the deployment waits at its gates: add `gates:`, like [{at: post_production_traffic_shift, hold: 5m}]"
        ]
    );
    let gates_on_docker = PROGRESSIVE
        .replace("          - {weight: 60}\n", "          - {weight: 60}\n        gates: [{at: post_scale_up}]\n");
    assert_eq!(
        errors_of(&gates_on_docker),
        vec![
            "launchway.yaml:10:7: services.web.strategy: `gates` are the pauses of ECS's own deployments; on Docker each traffic step's pause is its gate"
        ]
    );
}

#[test]
fn a_linear_strategy_moves_equal_steps_then_bakes() {
    let text = PROGRESSIVE.replace(
        "      canary:\n        steps:\n          - {weight: 20, pause: 2s}\n          - {weight: 60}\n        analysis:",
        "      linear: {step: 30, pause: 1s, bake: 5s}\n      x:",
    );
    let text = text.replace("      x:\n", "").replace(
        "          interval: 500ms\n          failure_limit: 1\n          http: {path: /work, status: 200, max_latency: 250ms}\n          prometheus: {address: 'http://127.0.0.1:9090', query: max(errors), max: 0.5}\n",
        "",
    );
    let manifest = load_one(&text).expect("valid").manifest;
    let AppSpec::Service(spec) = &*manifest.apps["web"].specs["dev"] else { panic!("web is a service") };
    let second = Duration::from_secs(1);
    assert_eq!(
        spec.strategy.traffic_steps(),
        [
            CanaryStep::timed(30, second),
            CanaryStep::timed(60, second),
            CanaryStep::timed(90, second),
            CanaryStep::timed(100, Duration::from_secs(5)),
        ]
    );
}

#[test]
fn a_rolling_spec_keeps_its_revision_now_that_other_strategies_exist() {
    // Revisions are content hashes: a change in how `Rolling` is written would redeploy
    // every service on upgrade.
    let spec = Strategy::Rolling { max_surge: 1, max_unavailable: 0, timeout: Duration::from_secs(600) };
    assert_eq!(
        serde_json::to_string(&spec).unwrap(),
        r#"{"type":"rolling","max_surge":1,"max_unavailable":0,"timeout":600000}"#
    );
}

#[test]
fn a_canary_step_can_wait_for_someone_to_promote_it() {
    let text = PROGRESSIVE.replace("          - {weight: 60}\n", "          - {weight: 60, approval: true}\n");
    let manifest = load_one(&text).expect("valid").manifest;
    let (_, steps) = manifest.apps["web"].specs["dev"].progressive().expect("progressive");
    assert_eq!(steps.iter().map(|step| step.approval).collect::<Vec<_>>(), [false, true]);
    assert_eq!(steps[1].what, "60% of traffic");
}

#[test]
fn an_http_analysis_asks_each_replica_or_one_address() {
    // On ECS, one address: the load balancer's test listener.
    let with_url = ECS_NATIVE.replace(
        "query: max(errors), max: 0.5}",
        "query: max(errors), max: 0.5}\n          http: {url: 'https://test.example.com:8443/healthz', status: 200}",
    );
    let manifest = load_one(&with_url).expect("valid").manifest;
    let (strategy, _) = manifest.apps["web"].specs["prod"].progressive().expect("progressive");
    let http = strategy.analysis().and_then(|analysis| analysis.http.as_ref()).expect("an http check");
    assert_eq!(http.url.as_deref(), Some("https://test.example.com:8443/healthz"));
    let per_replica = ECS_NATIVE
        .replace("query: max(errors), max: 0.5}", "query: max(errors), max: 0.5}\n          http: {path: /healthz}");
    assert_eq!(
        errors_of(&per_replica),
        vec![
            "launchway.yaml:14:7: services.web.strategy: on ECS, an `http` analysis asks one address, the load balancer's test listener: give `url`, like \"https://test.example.com:8443/healthz\" (`path` alone asks each replica, on Docker)"
        ]
    );
    let both = PROGRESSIVE.replace("http: {path: /work,", "http: {path: /work, url: 'ftp://x',");
    assert_eq!(
        errors_of(&both),
        vec![
            "launchway.yaml:17:24: services.web.strategy.canary.analysis.http.path: give `path` (each replica) or `url` (one address), not both",
            "launchway.yaml:17:36: services.web.strategy.canary.analysis.http.url: \"ftp://x\" is not an address like \"https://test.example.com:8443/healthz\"",
        ]
    );
    let ecs_canary_approval = ECS_NATIVE.replace(
        "      blue_green:\n        bake: 10m\n",
        "      canary:\n        steps: [{weight: 10, pause: 1m, approval: true}]\n",
    );
    assert_eq!(
        errors_of(&ecs_canary_approval),
        vec![
            "launchway.yaml:14:7: services.web.strategy: ECS times its canary itself: wait for an approval at a gate instead, like gates: [{at: post_production_traffic_shift, approval: true}]"
        ]
    );
}

#[test]
fn cloudwatch_analyses_are_read_on_ecs_and_refused_on_docker() {
    let with_cloudwatch = ECS_NATIVE.replace(
        "          prometheus: {address: 'http://127.0.0.1:9090', query: max(errors), max: 0.5}\n",
        "          cloudwatch: {namespace: AWS/ApplicationELB, metric: HTTPCode_Target_5XX_Count, dimensions: {TargetGroup: tg/green}, statistic: Sum, period: 5m, max: 0}\n          alarms: [web-5xx]\n",
    );
    let manifest = load_one(&with_cloudwatch).expect("valid").manifest;
    let (strategy, _) = manifest.apps["web"].specs["prod"].progressive().expect("progressive");
    let analysis = strategy.analysis().expect("an analysis");
    let metric = analysis.cloudwatch.as_ref().expect("a metric");
    assert_eq!((metric.statistic.as_str(), metric.period, metric.max), ("Sum", Duration::from_secs(300), Some(0.0)));
    assert_eq!(metric.dimensions["TargetGroup"], "tg/green");
    assert_eq!(analysis.alarms, ["web-5xx"]);
    let wrong = with_cloudwatch.replace("statistic: Sum, period: 5m", "statistic: P99, period: 90s");
    assert_eq!(
        errors_of(&wrong),
        vec![
            "launchway.yaml:20:138: services.web.strategy.blue_green.analysis.cloudwatch.statistic: \"P99\" is not a CloudWatch statistic (Average, Sum, Minimum, Maximum, SampleCount)",
            "launchway.yaml:20:151: services.web.strategy.blue_green.analysis.cloudwatch.period: CloudWatch periods are 1s, 5s, 10s, 30s or whole minutes",
        ]
    );
    let on_docker = PROGRESSIVE
        .replace("          http: {path: /work, status: 200, max_latency: 250ms}\n", "          alarms: [web-5xx]\n");
    assert_eq!(
        errors_of(&on_docker),
        vec![
            "launchway.yaml:10:7: services.web.strategy: CloudWatch metrics and alarms are read with an ECS environment's AWS credentials: on Docker, measure through `prometheus` or `http`"
        ]
    );
}

#[test]
fn an_entry_point_serves_tls_from_absolute_paths_only() {
    let with_tls = PROGRESSIVE.replace(
        "    ingress: {port: 8000}\n",
        "    ingress: {port: 8443, tls: {certificate: /etc/launchway/web.pem, key: /etc/launchway/web.key}}\n",
    );
    let manifest = load_one(&with_tls).expect("valid").manifest;
    let AppSpec::Service(spec) = &*manifest.apps["web"].specs["dev"] else { panic!("web is a service") };
    let tls = spec.ingress.as_ref().and_then(|ingress| ingress.tls.as_ref()).expect("TLS");
    assert_eq!((tls.certificate.as_str(), tls.key.as_str()), ("/etc/launchway/web.pem", "/etc/launchway/web.key"));
    let relative =
        PROGRESSIVE.replace("    ingress: {port: 8000}\n", "    ingress: {port: 8443, tls: {certificate: web.pem}}\n");
    assert_eq!(
        errors_of(&relative),
        vec![
            "launchway.yaml:8:32: services.web.ingress.tls: `key` is required: the private key's PEM file",
            "launchway.yaml:8:46: services.web.ingress.tls.certificate: \"web.pem\" is not an absolute path: give where the certificate chain is on the machine launchway runs on",
        ]
    );
}

#[test]
fn an_app_built_from_the_repo_gets_the_reference_its_build_will_have() {
    let manifest = "\
environments:
  stg: {target: docker}
  prod: {target: docker}
services:
  web:
    containers:
      web: {port: 8080}
      proxy: {image: envoy:1}
    build:
      images:
        web: {context: ./services/web/, target: runtime, args: {MODE: fast}, secrets: {npm: \"ssm:/ci/npm\"}}
    overrides:
      prod: {images: {web: web:hotfix}}
tasks:
  migrate:
    run: on_deploy
    build:
      tag: ${env}-${sha}
      source: {repo: \"https://git.example/db.git\", ref: main}
      images:
        migrate: {context: db, dockerfile: build/Dockerfile, repository: \"127.0.0.1:5000/db\"}
";
    let mut manifest = load_one(manifest).expect("valid").manifest;
    let web = manifest.apps["web"].build.clone().expect("web is built");
    assert_eq!(web.tag, crate::TagScheme::Context);
    assert_eq!(web.images["web"].context, "services/web");
    assert_eq!(web.images["web"].dockerfile, "Dockerfile");
    assert_eq!(manifest.apps["web"].specs["stg"].images()["web"], "", "set once the commit is known");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    manifest.set_build_references(commit, &mut Git).expect("references set");
    let stg = manifest.apps["web"].specs["stg"].images();
    assert_eq!(stg["web"], "launchway/web/web:fedcba9876", "tagged by the last commit touching its context");
    assert_eq!(stg["proxy"], "envoy:1", "not built");
    assert_eq!(manifest.apps["web"].specs["prod"].images()["web"], "web:hotfix", "an override is not built");
    assert_eq!(
        manifest.apps["migrate"].specs["prod"].images()["migrate"],
        "127.0.0.1:5000/db:prod-aaaabbbbcc",
        "the source repository's commit"
    );
    let source = manifest.apps["migrate"].build.as_ref().and_then(|build| build.source.clone()).expect("a source");
    assert_eq!(source.commit.as_deref(), Some("aaaabbbbccccddddeeeeffff0000111122223333"), "kept for the build");
    assert!(web.builds("web", "web", "launchway/web/web:fedcba9876"));
    assert!(!web.builds("web", "web", "web:hotfix"));
}

/// What git would say, for the tests: web's folder last changed at `fedcba98…`, the db
/// repository's main is at `aaaabbbb…`.
struct Git;

impl crate::BuildSources for Git {
    fn resolve(&mut self, repo: &str, git_ref: &str) -> Result<String, String> {
        match (repo, git_ref) {
            ("https://git.example/db.git", "main") => Ok("aaaabbbbccccddddeeeeffff0000111122223333".to_owned()),
            _ => Err(format!("no {git_ref} in {repo}")),
        }
    }

    fn last_change(&mut self, repo: Option<&str>, _commit: &str, folder: &str) -> Result<String, String> {
        match (repo, folder) {
            (None, "services/web") => Ok("fedcba9876543210fedcba9876543210fedcba98".to_owned()),
            _ => Err("it is not in the repository at that commit".to_owned()),
        }
    }
}

#[test]
fn a_context_git_cannot_find_is_reported_at_its_build() {
    let manifest = "\
environments:
  dev: {target: docker}
services:
  api:
    port: 8080
    build:
      images:
        api: {context: services/api}
";
    let mut manifest = load_one(manifest).expect("valid").manifest;
    let problem = manifest.set_build_references("0123", &mut Git).expect_err("no such folder");
    assert_eq!(
        problem.to_string(),
        r#"launchway.yaml:7:7: the build context of api, "services/api": it is not in the repository at that commit"#
    );
}

#[test]
fn build_definitions_are_checked_where_they_are_written() {
    let manifest = "\
environments:
  dev: {target: docker}
  aws: {target: ecs}
services:
  web:
    image: web:1
    environments: [dev]
    build:
      tag: latest
      images:
        wbe: {context: ../outside, secrets: {token: hunter2}}
  api:
    environments: [aws]
    image: api:1
    ecs: {cluster: prod}
    build:
      images:
        api: {context: api, repository: \"registry.example/api:v1\"}
  worker:
    environments: [aws]
    image: worker:1
    ecs: {cluster: prod}
    build:
      images:
        worker: {dockerfile: Dockerfile}
";
    assert_eq!(
        errors_of(manifest),
        [
            r#"launchway.yaml:9:12: services.web.build.tag: unknown tag scheme "latest": use one of ${context}, ${sha}, ${env}-${sha}"#,
            r#"launchway.yaml:11:24: services.web.build.images.wbe.context: "../outside" must be a path inside the config repo"#,
            r#"launchway.yaml:11:53: services.web.build.images.wbe.secrets.token: a build secret must be an `ssm:` or `env:` reference (a value written here would be in the repo)"#,
            r#"launchway.yaml:18:41: services.api.build.images.api.repository: "registry.example/api:v1" is not a repository (like registry.example.com/team/web, without a tag: launchway tags the images it builds)"#,
            r#"launchway.yaml:25:17: services.worker.build.images.worker: missing field "context" (the folder to build, like services/web)"#,
        ]
    );
    let unknown_container = "\
environments:
  dev: {target: docker}
  aws: {target: ecs}
services:
  web:
    image: web:1
    environments: [dev]
    build:
      images:
        wbe: {context: web}
  api:
    environments: [aws]
    image: api:1
    ecs: {cluster: prod}
    build:
      images:
        api: {context: api}
";
    assert_eq!(
        errors_of(unknown_container),
        [
            r#"launchway.yaml:9:7: services.web.build.images: web has no container "wbe" to build (its containers: web)"#,
            r#"launchway.yaml:16:7: services.api.build.images.api: services.api in aws needs a `repository` to push "api" to: ECS pulls images from a registry"#,
        ]
    );
}

#[test]
fn an_ecs_task_run_on_deploy_says_how_it_starts() {
    let root = "\
environments:
  aws: {target: {ecs: {cluster: prod}}}
tasks:
  migrate:
    run: on_deploy
    timeout: 10m
    ecs:
      task_definition: ecs/api.json
      launch_type: FARGATE
      network: {subnets: [subnet-1, subnet-2], security_groups: [sg-1]}
  report:
    image: report:1
    ecs: {rule: nightly, launch_type: FARGATE}
";
    assert_eq!(
        errors(&[file(ROOT_FILE, root), file("ecs/api.json", API_TASK_DEFINITION)]),
        [
            "launchway.yaml:13:5: tasks.report: ecs.launch_type and ecs.network say how a task run on deploy starts (`run: on_deploy`); a scheduled task starts as its rule or schedule says"
        ]
    );
    let valid: String = root.lines().take(10).collect::<Vec<_>>().join("\n");
    let manifest =
        load_files(&[file(ROOT_FILE, &valid), file("ecs/api.json", API_TASK_DEFINITION)]).expect("valid").manifest;
    let AppSpec::EcsTask(task) = manifest.apps["migrate"].specs["aws"].as_ref() else { panic!("an ECS task") };
    let how = task.on_deploy.clone().expect("run on deploy");
    assert_eq!(how.launch_type.as_deref(), Some("FARGATE"));
    assert_eq!(how.network.expect("a network").subnets, ["subnet-1", "subnet-2"]);
    assert_eq!(how.timeout, Some(std::time::Duration::from_secs(600)));
    assert_eq!(task.cluster.as_deref(), Some("prod"));
    assert!(manifest.apps["migrate"].specs["aws"].runs_on_deploy());
}
