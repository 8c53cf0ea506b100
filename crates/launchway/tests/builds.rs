//! The build stage (`build:`): images built by the local Docker engine's BuildKit from
//! the config repo's own folders, as a step of the run, and deployed by image id with
//! no registry; or pushed to a real registry (Debian's docker-registry on loopback) and
//! deployed by the digest it holds. Nothing is pulled: the Dockerfiles start from images
//! the tests make from local executables.

mod support;

use launchway_target_docker::{ExecutableImage, build_executable_image};
use launchway_testkit::Registry;
use support::{IMAGE, World};

const SECRET: &str = "build-token-5d1e0c";
const SECRET_VARIABLE: &str = "LAUNCHWAY_TEST_BUILD_TOKEN";

/// A base image holding this machine's `/bin/sh` (as `/sh`), for the steps that run.
async fn shell_image(world: &World) -> &'static str {
    let tag = "launchway-test/sh:builds";
    let shell = ExecutableImage { tag: tag.into(), executable: "/bin/sh".into(), args: Vec::new(), env: Vec::new() };
    build_executable_image(world.docker.client(), &shell).await.expect("the shell image is made");
    tag
}

/// The web service's Dockerfile: a step that needs the build secret (and fails without
/// it, or with the wrong one; it prints it, as careless steps do), then the sample app answering `message` (which names the
/// test's environment: an image built from the very same context is reused, not built).
fn dockerfile(shell: &str, message: &str) -> String {
    format!(
        "FROM {shell} AS check
RUN --mount=type=secret,id=token [\"/sh\", \"-c\", \"read t < /run/secrets/token; echo checking the token $t for {message}; test ${{#t}} -eq {len} && echo checked > /checked\"]
FROM {IMAGE}
COPY --from=check /checked /checked
ENV SAMPLE_MESSAGE={message}
",
        len = SECRET.len()
    )
}

/// `launchway deploy` with the build secret in its environment.
async fn deploy(world: &World) -> std::process::Output {
    let mut command = world.command(&["deploy"]);
    command.env(SECRET_VARIABLE, SECRET);
    support::ingress::output(command).await
}

/// Deploys (with the secret), expecting success and every replica to answer `message`.
async fn deploy_expecting(world: &World, message: &str) -> std::process::Output {
    let deployed = deploy(world).await;
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    for answer in world.answers("web").await {
        assert!(answer.starts_with(message), "{answer}");
    }
    deployed
}

fn manifest(repository: &str) -> String {
    format!(
        "environments:
  {{env}}: {{target: docker}}
services:
  web:
    port: 8080
    health: {{path: /healthz}}
    settle_window: 300ms
    replicas: 1
    build:
      images:
        web:
          context: services/web
          secrets: {{token: \"env:{SECRET_VARIABLE}\"}}
{repository}"
    )
}

#[tokio::test]
async fn an_app_is_built_from_its_folder_deployed_by_image_id_and_rebuilt_only_when_the_folder_changes() {
    let world = World::new().await;
    let shell = shell_image(&world).await;
    world.repo.write("services/web/Dockerfile", &dockerfile(shell, &format!("built-one-{}", world.env)));
    let first_commit = world.commit(&manifest(""), "web, built from its folder");

    let first = deploy_expecting(&world, "built-one").await;
    let runs = world.runs().await;
    let run = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
    let steps: Vec<&str> = run["steps"].as_array().unwrap().iter().map(|step| step["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["validate", "build", "plan", "deploy", "verify"]);
    let image = run["release"]["spec"]["containers"][0]["image"].as_str().unwrap().to_owned();
    assert!(image.starts_with("sha256:"), "deployed by image id, with no registry: {image}");
    let tag = format!("launchway/web/web:{}", &first_commit[..10]);
    let kinds: Vec<&str> =
        run["events"].as_array().unwrap().iter().map(|event| event["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"image.building") && kinds.contains(&"image.built"), "{kinds:?}");
    let logged: Vec<String> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "image.build_log")
        .flat_map(|event| {
            event["data"]["lines"].as_array().unwrap().iter().map(|line| line.as_str().unwrap().to_owned())
        })
        .collect();
    assert!(logged.iter().any(|line| line.contains("checking the token ***")), "kept, the secret masked: {logged:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("checking the token ***"), "streamed live");
    let inspected =
        std::process::Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &tag]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&inspected.stdout).trim(),
        image,
        "tagged by the commit that last touched its folder"
    );

    // The secret reached the step that asked for it, and is kept nowhere.
    let history = std::process::Command::new("docker").args(["history", "--no-trunc", &tag]).output().unwrap();
    let mut kept = vec![
        String::from_utf8_lossy(&history.stdout).into_owned(),
        String::from_utf8_lossy(&first.stdout).into_owned(),
        String::from_utf8_lossy(&first.stderr).into_owned(),
        run.to_string(),
    ];
    kept.push(String::from_utf8_lossy(&std::fs::read(world.db.path().join("launchway.db")).unwrap()).into_owned());
    for text in &kept {
        assert!(!text.contains(SECRET), "the build secret is kept: {text}");
    }

    // A commit elsewhere: the folder's tag is the same, so nothing builds or deploys.
    world.repo.write("README.md", "the web service\n");
    world.repo.commit("docs only");
    let unchanged = deploy(&world).await;
    assert!(unchanged.status.success(), "{}", String::from_utf8_lossy(&unchanged.stderr));
    assert_eq!(world.runs().await.len(), 1, "no run: {}", String::from_utf8_lossy(&unchanged.stdout));
    let status = world.launchway(&["status", "--output", "json"]).await;
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status[0]["sync"], "in_sync", "{status}");
    for args in [&["plan", "--output", "json"][..], &["plan", "--work-tree", "--output", "json"][..]] {
        let plan = world.launchway(args).await;
        let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
        assert_eq!(plan["plans"][0]["action"], "no_change", "{args:?}: {plan}");
    }

    // The folder changes: a new tag, a build, a deploy.
    world.repo.write("services/web/Dockerfile", &dockerfile(shell, &format!("built-two-{}", world.env)));
    world.repo.commit("web two");
    deploy_expecting(&world, "built-two").await;

    // Without the secret, the step that needs it fails the build, and nothing changes.
    world.repo.write("services/web/Dockerfile", &dockerfile(shell, &format!("built-three-{}", world.env)));
    world.repo.commit("web three");
    let running = world.running_ids("web").await;
    let failed = world.launchway(&["deploy"]).await;
    assert_eq!(failed.code(), 4, "{}", failed.stdout());
    let runs = world.runs().await;
    let reason = runs[0]["reason"].as_str().unwrap();
    assert!(reason.contains("build secret \"token\"") && reason.contains(SECRET_VARIABLE), "{reason}");
    assert_eq!(world.running_ids("web").await, running);

    // A step that fails: the run says which, and keeps the log's last lines.
    let mut command = world.command(&["deploy", "--retry"]);
    command.env(SECRET_VARIABLE, "too-short");
    let failed = support::ingress::output(command).await;
    assert_eq!(failed.status.code(), Some(4));
    let runs = world.runs().await;
    let reason = runs[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("web: building launchway/web/web:") && reason.contains("exit code: 1"), "{reason}");
    let run = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
    let failure =
        run["events"].as_array().unwrap().iter().rev().find(|event| event["kind"] == "run.failed").unwrap().clone();
    let tail = failure["data"]["logs"].to_string();
    assert!(tail.contains("checking the token ***"), "{failure}");
    assert_eq!(world.running_ids("web").await, running);

    // Nor is it in what the server's API answers about these runs.
    let server = support::server::ServerProcess::start(&world);
    let token = support::server::token(&world, "viewer", "reader@example.com", &[]).await;
    let api = support::server::Api::new(&server, Some(&token));
    let first_run = runs.last().unwrap()["id"].as_i64().unwrap();
    let detail = api.get(&format!("/api/v1/runs/{first_run}")).await.body.to_string();
    assert!(detail.contains("image.build_log") && detail.contains("checking the token ***"), "{detail}");
    for path in [format!("/api/v1/runs/{first_run}"), "/api/v1/runs?limit=100".to_owned(), "/api/v1/status".to_owned()]
    {
        let answer = api.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(!answer.body.to_string().contains(SECRET), "{path}: {}", answer.body);
    }
}

#[tokio::test]
async fn a_built_image_is_pushed_and_deployed_by_the_digest_its_registry_holds() {
    let world = World::new().await;
    let shell = shell_image(&world).await;
    let registry = Registry::start().await;
    world.repo.write("services/web/Dockerfile", &dockerfile(shell, &format!("pushed-one-{}", world.env)));
    let repository = format!("          repository: {}/shop/web\n", registry.host);
    let commit = world.commit(&manifest(&repository), "web, built and pushed");
    deploy_expecting(&world, "pushed-one").await;
    let digest = registry.digest("shop/web", &commit[..10], None).await.expect("the tag is pushed");
    let runs = world.runs().await;
    let run = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
    assert_eq!(run["release"]["spec"]["containers"][0]["image"], format!("{}/shop/web@{digest}", registry.host));
}

/// A deploy killed while its build runs: the next deploy resumes the run at its build
/// step, which builds (BuildKit dropped the killed client's solve) and goes on.
#[tokio::test]
async fn a_build_killed_midway_is_resumed_by_the_next_deploy() {
    let world = World::new().await;
    let shell = shell_image(&world).await;
    let message = format!("slow-{}", world.env);
    let slow = format!(
        "FROM {shell} AS slow
RUN [\"/sh\", \"-c\", \"echo building {message}; i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; echo {message} > /done\"]
FROM {IMAGE}
COPY --from=slow /done /done
ENV SAMPLE_MESSAGE={message}
"
    );
    world.repo.write("services/web/Dockerfile", &slow);
    let manifest = manifest("").replace(&format!("          secrets: {{token: \"env:{SECRET_VARIABLE}\"}}\n"), "");
    world.commit(&manifest, "web, slow to build");

    let mut first = world.command(&["deploy"]).spawn().expect("launchway starts");
    let building = async {
        loop {
            let runs = world.runs().await;
            if runs.first().is_some_and(|run| run["state"] == "building") {
                let events = world.run_details(runs[0]["id"].as_i64().unwrap()).await["events"].clone();
                if events.as_array().unwrap().iter().any(|event| event["kind"] == "image.build_log") {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), building).await.expect("the build starts");
    first.kill().expect("killed");
    first.wait().expect("reaped");

    let resumed = world.launchway(&["deploy"]).await;
    resumed.assert_exit(0);
    let runs = world.runs().await;
    assert_eq!(runs.len(), 1, "the same run, resumed");
    assert_eq!(runs[0]["state"], "succeeded");
    let run = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
    let kinds: Vec<&str> =
        run["events"].as_array().unwrap().iter().map(|event| event["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"run.resumed"), "{kinds:?}");
    for answer in world.answers("web").await {
        assert!(answer.starts_with(&message), "{answer}");
    }
}

/// Contexts from another repository at a ref: built from the ref's commit, tagged by
/// the commit that last touched the folder there, and rebuilt when the ref moves.
#[tokio::test]
async fn an_app_is_built_from_another_repository_at_a_ref() {
    let world = World::new().await;
    let shell = shell_image(&world).await;
    let code = launchway_testkit::GitRepo::init();
    code.write("services/web/Dockerfile", &dockerfile(shell, &format!("from-code-one-{}", world.env)));
    let first = code.commit("web one");
    let source = format!("      source: {{repo: \"{}\", ref: main}}\n", code.path().display());
    let manifest = manifest("").replace("    build:\n", &format!("    build:\n{source}"));
    world.commit(&manifest, "web, built from the code repository");
    deploy_expecting(&world, "from-code-one").await;
    let runs = world.runs().await;
    let run = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
    let built: Vec<&serde_json::Value> =
        run["events"].as_array().unwrap().iter().filter(|event| event["kind"] == "image.built").collect();
    assert_eq!(built[0]["data"]["reference"], format!("launchway/web/web:{}", &first[..10]), "{built:?}");

    // The code repository moves on; the config repo does not: the next deploy builds it.
    code.write("services/web/Dockerfile", &dockerfile(shell, &format!("from-code-two-{}", world.env)));
    code.commit("web two");
    deploy_expecting(&world, "from-code-two").await;
}
