//! Images built on the Docker engine from a build context and a Dockerfile, by the
//! engine's own BuildKit, reached through its `/session` and `/grpc` endpoints (bollard's
//! Moby driver): no buildx plugin is needed (Debian's docker.io has none), and build
//! secrets reach the `RUN --mount=type=secret` steps that ask for them as BuildKit
//! secrets: never as build arguments, in a layer, in the image's history or config, or
//! in what is logged. A secret is handed to BuildKit as a file in a directory only this
//! process can read, removed as soon as the build ends.

use std::collections::BTreeMap;
use std::path::Path;

use bollard::Docker;
use bollard::grpc::BuildRef;
use bollard::grpc::build::{ImageBuildFrontendOptions, ImageBuildLoadInput, SecretSource};
use bollard::grpc::driver::Build as _;
use bollard::grpc::driver::moby::Moby;
use launchway_target::TargetError;

use crate::replicas::api_error;

/// What to build.
pub struct BuildRequest<'a> {
    /// The tag the image gets on the engine (`web:3f9a1c2`).
    pub tag: &'a str,
    /// The build context: a tar archive of the context folder.
    pub context: Vec<u8>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: &'a str,
    /// The stage to build, when not the last.
    pub target: Option<&'a str>,
    pub args: &'a BTreeMap<String, String>,
    /// Secret id → value, for `RUN --mount=type=secret,id=…`.
    pub secrets: &'a BTreeMap<String, String>,
    /// Labels the image gets (launchway's build key, [`BUILD_KEY_LABEL`]).
    pub labels: &'a BTreeMap<String, String>,
}

/// The label holding what an image was built from (context tree, Dockerfile, stage,
/// arguments, secret ids): an image with the same key is the same build.
pub const BUILD_KEY_LABEL: &str = "org.launchway.build-key";

/// The id of an image on the engine built with `key`, if any is left.
pub async fn image_built_with(docker: &Docker, key: &str) -> Result<Option<String>, TargetError> {
    let filter = format!("{BUILD_KEY_LABEL}={key}");
    let filters: std::collections::HashMap<&str, Vec<&str>> = [("label", vec![filter.as_str()])].into();
    let options = bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build();
    let images = docker.list_images(Some(options)).await.map_err(|error| api_error("list built images", error))?;
    Ok(images.into_iter().next().map(|image| image.id))
}

/// Builds the image and answers its id (`sha256:…`). A failing step is a
/// [`TargetError::Invalid`] saying which step failed and how, as BuildKit reports it.
pub async fn build_image(docker: &Docker, request: BuildRequest<'_>) -> Result<String, TargetError> {
    solve(docker, request, BuildRef::random()).await
}

/// [`build_image`], handing the build's log to `lines` as it comes (see `build_log`),
/// with `secrets` masked; `address` is the engine's (`unix:///…`, `tcp://…`).
pub async fn build_image_logged(
    docker: &Docker,
    address: &str,
    request: BuildRequest<'_>,
    lines: impl FnMut(Vec<String>),
) -> Result<String, TargetError> {
    let build_ref = BuildRef::random();
    let secrets: Vec<String> = request.secrets.values().cloned().collect();
    let solved = solve(docker, request, build_ref.clone());
    let followed = crate::build_log::follow(address, build_ref.as_ref(), &secrets, lines);
    tokio::pin!(solved, followed);
    // The log ends with the build; a log that cannot be followed leaves the build alone.
    let mut following = true;
    loop {
        tokio::select! {
            built = &mut solved => return built,
            result = &mut followed, if following => {
                if let Err(error) = result {
                    tracing::warn!(%error, "the build's log could not be followed");
                }
                following = false;
            }
        }
    }
}

async fn solve(docker: &Docker, request: BuildRequest<'_>, build_ref: BuildRef) -> Result<String, TargetError> {
    let secret_dir = tempfile::Builder::new()
        .prefix("launchway-build-")
        .tempdir()
        .map_err(|error| TargetError::local("could not make a private directory for build secrets", error))?;
    let mut options = ImageBuildFrontendOptions::builder().dockerfile(Path::new(request.dockerfile)).pull(false);
    if let Some(target) = request.target {
        options = options.target(target);
    }
    for (name, value) in request.args {
        options = options.buildarg(name, value);
    }
    for (name, value) in request.labels {
        options = options.label(name, value);
    }
    for (index, (id, value)) in request.secrets.iter().enumerate() {
        // Named by position, not by id: ids are the manifest's to choose.
        let file = secret_dir.path().join(format!("secret-{index}"));
        write_private(&file, value)
            .map_err(|error| TargetError::local(format!("could not hand secret {id:?} to the build"), error))?;
        options = options.set_secret(id, &SecretSource::File(file));
    }
    let built = Moby::new(docker)
        .docker_build(
            request.tag,
            options.build(),
            ImageBuildLoadInput::Upload(bytes::Bytes::from(request.context)),
            None,
            Some(build_ref),
        )
        .await;
    drop(secret_dir);
    if let Err(error) = built {
        return Err(TargetError::Invalid(format!("building {} failed: {}", request.tag, build_failure(&error))));
    }
    let inspected =
        docker.inspect_image(request.tag).await.map_err(|error| api_error("inspect the built image", error))?;
    inspected.id.ok_or_else(|| TargetError::Invalid(format!("the engine built {} but names no image id", request.tag)))
}

/// What BuildKit said, without the transport's wrapping.
fn build_failure(error: &bollard::grpc::error::GrpcError) -> String {
    match error {
        bollard::grpc::error::GrpcError::TonicStatus { err } => err.message().to_owned(),
        other => other.to_string(),
    }
}

/// Writes a file only this user can read (mode 0600 from the start, in a 0700 directory).
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(value.as_bytes())
}
