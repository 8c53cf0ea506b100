//! Building images on the real Docker engine with its own BuildKit: a context the test
//! writes, a base image made from this machine's `/bin/sh` (nothing is pulled), a build
//! secret that the step asking for it sees and that nothing keeps.

use std::collections::BTreeMap;
use std::process::Command;

use bollard::Docker;
use launchway_target_docker::{BuildRequest, ExecutableImage, build_executable_image, build_image};

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

#[tokio::test]
async fn a_build_secret_reaches_the_step_that_asks_for_it_and_is_kept_nowhere() {
    let docker = Docker::connect_with_defaults().unwrap();
    let base = "launchway-test/sh:build";
    let shell = ExecutableImage { tag: base.into(), executable: "/bin/sh".into(), args: Vec::new(), env: Vec::new() };
    build_executable_image(&docker, &shell).await.expect("the base image is made");
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
    let request = |target| BuildRequest {
        tag: &tag,
        context: context(&[("Dockerfile", &dockerfile), ("app/greeting.txt", "hello\n")]),
        dockerfile: "Dockerfile",
        target: Some(target),
        args: &args,
        secrets: &secrets,
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
