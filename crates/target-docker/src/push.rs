//! Pushing built images to their registry with the credentials Docker itself would use:
//! from `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), the credential
//! helper named for the registry (`credHelpers`), else the default store (`credsStore`),
//! else an `auths` entry. The pushed image's digest is what a release records.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use launchway_target::TargetError;
use serde_json::Value;

use crate::replicas::api_error;

/// Where Docker's configuration is, and where its credential helpers are found.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    dir: PathBuf,
    /// The `PATH` helpers (`docker-credential-NAME`) are looked up in.
    helper_path: Option<OsString>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG`, else `~/.docker`; helpers on `$PATH`.
    pub fn from_environment() -> DockerConfig {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        DockerConfig { dir, helper_path: std::env::var_os("PATH") }
    }

    /// A configuration folder of one's own, helpers looked up in `helper_path`.
    pub fn at(dir: impl Into<PathBuf>, helper_path: Option<OsString>) -> DockerConfig {
        DockerConfig { dir: dir.into(), helper_path }
    }

    /// The credentials for `registry` (a host, `127.0.0.1:5000`), if any are configured.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<DockerCredentials>, TargetError> {
        let file = self.dir.join("config.json");
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(TargetError::local(format!("cannot read {}", file.display()), error)),
        };
        let config: Value = serde_json::from_str(&text)
            .map_err(|error| TargetError::local(format!("{} is not JSON", file.display()), error))?;
        let helper = config["credHelpers"][registry].as_str().or_else(|| config["credsStore"].as_str());
        if let Some(helper) = helper {
            return self.ask_helper(helper, registry);
        }
        let Some(auth) = config["auths"][registry]["auth"].as_str() else { return Ok(None) };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                TargetError::Invalid(format!("the auth of {registry} in {} is not base64", file.display()))
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            TargetError::Invalid(format!("the auth of {registry} in {} is not user:password", file.display()))
        })?;
        Ok(Some(DockerCredentials {
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            serveraddress: Some(registry.to_owned()),
            ..DockerCredentials::default()
        }))
    }

    /// Asks `docker-credential-HELPER get`, as the Docker CLI does.
    fn ask_helper(&self, helper: &str, registry: &str) -> Result<Option<DockerCredentials>, TargetError> {
        let program = format!("docker-credential-{helper}");
        let mut command = Command::new(&program);
        if let Some(path) = &self.helper_path {
            command.env("PATH", path);
        }
        let mut child = command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| TargetError::local(format!("the credential helper {program} cannot run"), error))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(registry.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|error| TargetError::local(format!("the credential helper {program} failed"), error))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stdout);
            // What helpers answer for a registry they hold nothing for.
            if said.contains("credentials not found") {
                return Ok(None);
            }
            return Err(TargetError::Invalid(format!(
                "the credential helper {program} found no login for {registry}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let answer: Value = serde_json::from_slice(&output.stdout)
            .map_err(|error| TargetError::local(format!("{program} answered something other than JSON"), error))?;
        let (username, secret) = (answer["Username"].as_str(), answer["Secret"].as_str());
        Ok(Some(match username {
            // An identity token, not a password.
            Some("<token>") => DockerCredentials {
                identitytoken: secret.map(str::to_owned),
                serveraddress: Some(registry.to_owned()),
                ..DockerCredentials::default()
            },
            _ => DockerCredentials {
                username: username.map(str::to_owned),
                password: secret.map(str::to_owned),
                serveraddress: Some(registry.to_owned()),
                ..DockerCredentials::default()
            },
        }))
    }
}

/// The registry part of an image repository: `registry.example.com:5000/web` → the
/// host; `library/web` → Docker Hub.
pub fn registry_of(repository: &str) -> &str {
    match repository.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "https://index.docker.io/v1/",
    }
}

/// Tags `image` (an id or a local tag) as `repository:tag`, pushes it, and answers the
/// digest the registry holds it under (`sha256:…`).
pub async fn push_image(
    docker: &Docker,
    image: &str,
    repository: &str,
    tag: &str,
    credentials: Option<DockerCredentials>,
) -> Result<String, TargetError> {
    let options = TagImageOptionsBuilder::new().repo(repository).tag(tag).build();
    docker.tag_image(image, Some(options)).await.map_err(|error| api_error("tag the image for its registry", error))?;
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    let mut pushing = docker.push_image(repository, Some(options), credentials);
    while let Some(step) = pushing.next().await {
        let step = step.map_err(|error| api_error(&format!("push {repository}:{tag}"), error))?;
        if let Some(error) = step.error_detail.and_then(|detail| detail.message) {
            return Err(TargetError::local(format!("pushing {repository}:{tag} failed"), error));
        }
    }
    let inspected = docker
        .inspect_image(&format!("{repository}:{tag}"))
        .await
        .map_err(|error| api_error("inspect the pushed image", error))?;
    let prefix = format!("{repository}@");
    inspected
        .repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|digest| digest.strip_prefix(&prefix).map(str::to_owned))
        .ok_or_else(|| TargetError::Invalid(format!("the registry gave no digest for {repository}:{tag}")))
}

/// The digest `repository:tag` has in its registry when that is `image` already (the
/// engine recorded pushing it there under that digest): what a push resumed after a
/// crash need not send again. `None` when the registry has no such tag, or another image.
pub async fn already_pushed(
    docker: &Docker,
    image: &str,
    repository: &str,
    tag: &str,
    credentials: Option<DockerCredentials>,
) -> Result<Option<String>, TargetError> {
    let Ok(remote) = docker.inspect_registry_image(&format!("{repository}:{tag}"), credentials).await else {
        return Ok(None);
    };
    let Some(digest) = remote.descriptor.digest else {
        return Ok(None);
    };
    let local = match docker.inspect_image(image).await {
        Ok(local) => local,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
        Err(error) => return Err(api_error("inspect the image to push", error)),
    };
    let pushed_here = format!("{repository}@{digest}");
    Ok(local.repo_digests.unwrap_or_default().contains(&pushed_here).then_some(digest))
}
