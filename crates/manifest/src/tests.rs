//! Manifest text in, validated state or diagnostics out.

use std::time::Duration;

use super::*;

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile { path: path.to_owned(), bytes: text.as_bytes().to_vec() }
}

fn load_one(text: &str) -> Result<Validated, Vec<Diagnostic>> {
    load(&[file(ROOT_FILE, text)])
}

/// The diagnostics of an invalid manifest, rendered as the CLI prints them.
fn errors(files: &[SourceFile]) -> Vec<String> {
    match load(files) {
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
    let AppSpec::Service(spec) = &manifest.apps["web"].specs["dev"] else { panic!("web is a service") };
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
    environments:
      dev:
        replicas: 1
      prod:
        images: {api: example/api:1.9}
        env: {LOG: warn}
";
    let manifest = load_one(text).expect("valid").manifest;
    let api = &manifest.apps["api"];
    let (AppSpec::Service(dev), AppSpec::Service(prod)) = (&api.specs["dev"], &api.specs["prod"]) else {
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
            r#"launchway.yaml:11:17: services.web.health.interval: "soon" is not a duration (expected number at 0); write it like "10s", "500ms" or "2m""#,
            r#"launchway.yaml:13:12: services.worker.image: invalid image reference "Example/Worker": repository names must be lowercase"#,
            r#"launchway.yaml:14:14: services.worker.command: expected a list of strings, like ["serve", "--port", "8080"], found the string "run --fast""#,
            r#"launchway.yaml:15:24: services.worker.stop_grace_period: expected a duration like "10s", "500ms" or "2m", found an integer"#,
            r#"launchway.yaml:19:15: tasks.report.schedule: invalid schedule "61 * * * *": Component error: Number out of bounds."#,
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
    environments:
      stagign: {replicas: 2}
      prod: {}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:7:7: services.web.environments: environment "stagign" is not declared in launchway.yaml, did you mean "staging"?"#,
            r#"launchway.yaml:8:7: services.web.environments: environment "prod" is not declared in launchway.yaml"#,
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
  qa: {}
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
    environments:
      qa: {image: example/main:2}
";
    assert_eq!(
        errors_of(text),
        vec![
            r#"launchway.yaml:2:3: environments: invalid name "Dev": use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"#,
            r#"launchway.yaml:3:19: environments.prod.target: unknown field "kubernetes", expected one of "docker""#,
            r#"launchway.yaml:4:3: environments.qa: missing field "target" (for example `target: docker`)"#,
            r#"launchway.yaml:6:3: services.web: missing field "image" (or a `containers` mapping)"#,
            r#"launchway.yaml:7:15: services.web.replicas: expected an integer, found the string "3""#,
            r#"launchway.yaml:10:5: services.both: use either `containers` or the single-container fields (image), not both"#,
            r#"launchway.yaml:17:19: services.multi.environments.qa: this app has 2 containers (main, side); set their images with `images: {name: image}`"#,
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
            "launchway.yaml:8:16: services.web.environments.dev: with 3 replicas, max_surge and max_unavailable both come to 0, so a rolling update could never start or stop a replica"
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
        vec!["launchway.yaml:1:1: not found at the root of the config repo; it declares the environments"]
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
    let spec = &manifest.apps["web"].specs["dev"];
    let json = serde_json::to_string(spec).expect("serializes");
    let back: AppSpec = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(&back, spec);
    assert_eq!(back.revision(), spec.revision());
}
