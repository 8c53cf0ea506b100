//! Building images on the real Docker engine with its own BuildKit: a context the test
//! writes, a base image made from this machine's `/bin/sh` (nothing is pulled), a build
//! secret that the step asking for it sees and that nothing keeps.

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;
use bollard::Docker;
use launchway_target_docker::{
    BuildRequest, DockerConfig, ExecutableImage, build_executable_image, build_image, push_image, registry_of,
};
use launchway_testkit::Registry;

const SECRET: &str = "npm-token-7f3a91";

/// A tar archive of `files` (path, contents).
fn context(files: &[(&str, &str)]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_path(path).unwrap();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append(&header, contents.as_bytes()).unwrap();
    }
    archive.into_inner().unwrap()
}

fn docker_cli(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().expect("the docker command runs");
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The base image of these tests: this machine's `/bin/sh`, as `/sh`.
async fn shell_image(docker: &Docker) -> &'static str {
    let base = "launchway-test/sh:build";
    let shell = ExecutableImage { tag: base.into(), executable: "/bin/sh".into(), args: Vec::new(), env: Vec::new() };
    build_executable_image(docker, &shell).await.expect("the base image is made");
    base
}

#[tokio::test]
async fn a_build_secret_reaches_the_step_that_asks_for_it_and_is_kept_nowhere() {
    let docker = Docker::connect_with_defaults().unwrap();
    let base = shell_image(&docker).await;
    let dockerfile = format!(
        "FROM {base} AS base
COPY app/greeting.txt /greeting.txt
ARG FLAVOUR
RUN [\"/sh\", \"-c\", \"echo $FLAVOUR > /flavour\"]
RUN --mount=type=secret,id=npm [\"/sh\", \"-c\", \"read token < /run/secrets/npm; echo ${{#token}} > /secret-length\"]
ENTRYPOINT [\"/sh\", \"-c\"]
CMD [\"read g < /greeting.txt; read f < /flavour; read l < /secret-length; echo $g $f $l\"]
FROM base AS unused
RUN [\"/sh\", \"-c\", \"exit 9\"]
"
    );
    let tag = format!("launchway-test/built:{}", std::process::id());
    let args = BTreeMap::from([("FLAVOUR".to_owned(), "plain".to_owned())]);
    let secrets = BTreeMap::from([("npm".to_owned(), SECRET.to_owned())]);
    let labels = BTreeMap::new();
    let request = |target| BuildRequest {
        tag: &tag,
        context: context(&[("Dockerfile", &dockerfile), ("app/greeting.txt", "hello\n")]),
        dockerfile: "Dockerfile",
        target: Some(target),
        args: &args,
        secrets: &secrets,
        labels: &labels,
    };
    let id = build_image(&docker, request("base")).await.expect("the image builds");
    assert!(id.starts_with("sha256:"), "{id}");

    let said = docker_cli(&["run", "--rm", &tag]);
    assert_eq!(said.trim(), format!("hello plain {}", SECRET.len()), "the step saw the secret, whole");
    let history = docker_cli(&["history", "--no-trunc", &tag]);
    let inspected = docker_cli(&["image", "inspect", &tag]);
    for kept in [&history, &inspected] {
        assert!(!kept.contains(SECRET), "the secret is in the image: {kept}");
    }
    assert!(history.contains("/run/secrets/npm"), "the step is there, its secret is not: {history}");

    // A failing step fails the build, saying which and how.
    let error = build_image(&docker, request("unused")).await.expect_err("the unused stage fails");
    let message = error.to_string();
    assert!(message.contains("exit 9") && message.contains("exit code: 9"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
    docker_cli(&["image", "rm", "--force", &tag]);
}

/// Pushing to a real registry (Debian's docker-registry on loopback): open, then behind
/// basic authentication with the login found where Docker keeps it (`auths`, then a
/// credential helper); the digest answered is the one the registry holds.
#[tokio::test]
async fn an_image_is_pushed_with_dockers_own_logins_and_its_digest_is_the_registrys() {
    let docker = Docker::connect_with_defaults().unwrap();
    let image = shell_image(&docker).await;
    let open = Registry::start().await;
    let repository = format!("{}/shop/web", open.host);
    assert_eq!(registry_of(&repository), open.host);
    let digest = push_image(&docker, image, &repository, "v1", None).await.expect("pushed");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(open.digest("shop/web", "v1", None).await, Some(digest));

    let locked = Registry::start_with_password("ci", "s3cret-pw").await;
    let repository = format!("{}/shop/web", locked.host);
    let config = tempfile::tempdir().unwrap();
    let docker_config = DockerConfig::at(config.path(), None);
    assert!(docker_config.credentials_for(&locked.host).unwrap().is_none(), "no config.json: no login");
    let refused = push_image(&docker, image, &repository, "v1", None).await.expect_err("no login, no push");
    let said = launchway_target::describe(&refused);
    assert!(said.contains("no basic auth credentials") || said.contains("unauthorized"), "{said}");

    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret-pw");
    let auths = serde_json::json!({"auths": {locked.host.clone(): {"auth": auth}}});
    std::fs::write(config.path().join("config.json"), auths.to_string()).unwrap();
    let login = docker_config.credentials_for(&locked.host).unwrap();
    let digest = push_image(&docker, image, &repository, "v1", login).await.expect("pushed with the login");
    assert_eq!(locked.digest("shop/web", "v1", Some(("ci", "s3cret-pw"))).await, Some(digest));

    // A credential helper, asked as the Docker CLI asks it.
    let helper = config.path().join("docker-credential-launchwaytest");
    let script = r#"#!/bin/sh
read registry
printf '{"ServerURL": "%s", "Username": "ci", "Secret": "s3cret-pw"}' "$registry"
"#;
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helpers = serde_json::json!({"credHelpers": {locked.host.clone(): "launchwaytest"}});
    std::fs::write(config.path().join("config.json"), helpers.to_string()).unwrap();
    let with_helper = DockerConfig::at(config.path(), Some(config.path().as_os_str().to_owned()));
    let login = with_helper.credentials_for(&locked.host).unwrap().expect("the helper's login");
    assert_eq!((login.username.as_deref(), login.password.as_deref()), (Some("ci"), Some("s3cret-pw")));
    push_image(&docker, image, &repository, "v2", Some(login)).await.expect("pushed with the helper's login");
}

/// What a build reported, in order.
#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<launchway_target::TargetReport>>);

#[async_trait::async_trait]
impl launchway_target::Progress for Reports {
    async fn report(&self, event: launchway_target::TargetEvent) {
        self.0.lock().unwrap().push(event.report);
    }
}

impl Reports {
    /// What happened, the build's log lines left out.
    fn kinds(&self) -> Vec<&'static str> {
        let reports = self.0.lock().unwrap().drain(..).map(|report| report.kind()).collect::<Vec<_>>();
        reports.into_iter().filter(|kind| *kind != "image.build_log").collect()
    }
}

/// A build step asked again (resumed after a crash, or the same context under a new
/// tag) builds nothing and pushes only what the registry lacks; the answer is the digest
/// the registry holds, behind basic authentication with the login given.
#[tokio::test]
async fn an_image_is_built_once_and_pushed_once_whatever_asks_again() {
    let target = launchway_target_docker::DockerTarget::connect(None).await.expect("the engine");
    let base = shell_image(target.client()).await;
    let registry = Registry::start_with_password("ci", "s3cret-pw").await;
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let nonce = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
    let dockerfile = format!(
        "FROM {base} AS check
RUN --mount=type=secret,id=token [\"/sh\", \"-c\", \"read t < /run/secrets/token; test ${{#t}} -eq {len} && echo {nonce} > /checked\"]
FROM {base}
COPY --from=check /checked /checked
",
        len = SECRET.len()
    );
    let definition = launchway_manifest::ImageBuild {
        context: "web".into(),
        dockerfile: "Dockerfile".into(),
        target: None,
        args: BTreeMap::new(),
        secrets: BTreeMap::from([("token".to_owned(), "env:UNUSED_HERE".to_owned())]),
        repository: Some(format!("{}/shop/web", registry.host)),
    };
    let secrets = BTreeMap::from([("token".to_owned(), SECRET.to_owned())]);
    let files = [("Dockerfile", dockerfile.as_str())];
    let reference_v1 = format!("{}/shop/web:v1", registry.host);
    fn job<'a>(
        reference: &'a str,
        definition: &'a launchway_manifest::ImageBuild,
        tree: &'a str,
        files: &[(&str, &str)],
        secrets: &'a BTreeMap<String, String>,
    ) -> launchway_target_docker::BuildJob<'a> {
        launchway_target_docker::BuildJob {
            container: "web",
            reference,
            definition,
            context_tree: tree,
            context: context(files),
            secrets,
            login: Some(("ci".to_owned(), "s3cret-pw".to_owned())),
        }
    }
    let reports = Reports::default();
    let first = launchway_target_docker::ensure_built(
        &target,
        job(&reference_v1, &definition, &nonce, &files, &secrets),
        &reports,
    )
    .await
    .expect("built");
    assert_eq!(reports.kinds(), ["image.building", "image.built", "image.pushed"]);
    let digest = registry.digest("shop/web", "v1", Some(("ci", "s3cret-pw"))).await.expect("pushed");
    assert_eq!(first, format!("{}/shop/web@{digest}", registry.host));

    let again = launchway_target_docker::ensure_built(
        &target,
        job(&reference_v1, &definition, &nonce, &files, &secrets),
        &reports,
    )
    .await
    .expect("again");
    assert_eq!(again, first);
    assert_eq!(reports.kinds(), ["image.reused"], "neither built nor pushed again");

    // The same context under another tag (`${sha}` tags, a commit elsewhere): not
    // rebuilt; the registry gets the tag, for the same digest.
    let reference_v2 = format!("{}/shop/web:v2", registry.host);
    let retagged = launchway_target_docker::ensure_built(
        &target,
        job(&reference_v2, &definition, &nonce, &files, &secrets),
        &reports,
    )
    .await
    .expect("v2");
    assert_eq!(reports.kinds(), ["image.reused", "image.pushed"]);
    assert_eq!(retagged, first, "the same image, the same digest");
    let history = docker_cli(&["history", "--no-trunc", &reference_v1]);
    assert!(!history.contains(SECRET), "{history}");
}
