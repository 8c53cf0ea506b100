//! One image of a run's build step, made to exist exactly once: reused when the engine
//! holds an image built from the same inputs (the same context under a new tag, or a
//! step resumed after a crash), built otherwise, and pushed unless the registry already
//! holds it. What it answers is what deploys: `repo@sha256:…` once pushed, else the
//! engine's image id.

use std::collections::BTreeMap;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::TagImageOptionsBuilder;
use launchway_manifest::ImageBuild;
use launchway_target::{Progress, TargetError, TargetEvent, TargetReport};
use sha2::{Digest, Sha256};

use crate::DockerTarget;
use crate::build::{BUILD_KEY_LABEL, BuildRequest, build_image_logged, image_built_with};
use crate::push::{DockerConfig, already_pushed, push_image, registry_of};
use crate::replicas::api_error;

/// An image to have on the engine (and in its registry).
pub struct BuildJob<'a> {
    pub container: &'a str,
    /// `repo:tag`.
    pub reference: &'a str,
    pub definition: &'a ImageBuild,
    /// The context folder's git tree id: with the definition, what the build is made of.
    pub context_tree: &'a str,
    /// The context as a tar archive.
    pub context: Vec<u8>,
    /// Secret id → value.
    pub secrets: &'a BTreeMap<String, String>,
    /// A login to push with (ECR's); otherwise Docker's own configuration is asked.
    pub login: Option<(String, String)>,
}

/// The key an image built from `definition` over the context tree gets: the same
/// inputs, the same key (secret values are not inputs: a rotated token builds nothing).
pub fn build_key(context_tree: &str, definition: &ImageBuild) -> String {
    let inputs = serde_json::json!({
        "context_tree": context_tree,
        "dockerfile": definition.dockerfile,
        "target": definition.target,
        "args": definition.args,
        "secrets": definition.secrets.keys().collect::<Vec<_>>(),
    });
    hex::encode(Sha256::digest(inputs.to_string().as_bytes()))
}

/// Makes the image exist on `target`'s engine (see the module's documentation) and
/// answers what deploys it.
pub async fn ensure_built(
    target: &DockerTarget,
    mut job: BuildJob<'_>,
    progress: &dyn Progress,
) -> Result<String, TargetError> {
    let docker = target.client();
    let (repository, tag) = job
        .reference
        .rsplit_once(':')
        .filter(|(repository, _)| !repository.is_empty())
        .ok_or_else(|| TargetError::Invalid(format!("{} names no tag", job.reference)))?;
    let key = build_key(job.context_tree, job.definition);
    let container = job.container.to_owned();
    let reference = job.reference.to_owned();
    let id = match image_built_with(docker, &key).await? {
        Some(id) => {
            let options = TagImageOptionsBuilder::new().repo(repository).tag(tag).build();
            docker
                .tag_image(&id, Some(options))
                .await
                .map_err(|error| api_error("tag the image built before", error))?;
            let message = format!("{container}: {reference} is built already ({id}): same context, same build");
            let report = TargetReport::ImageReused {
                container: container.clone(),
                reference: reference.clone(),
                image: id.clone(),
            };
            progress.report(TargetEvent { message, report }).await;
            id
        }
        None => {
            let report = TargetReport::ImageBuilding { container: container.clone(), reference: reference.clone() };
            progress.report(TargetEvent { message: format!("{container}: building {reference}"), report }).await;
            let (sender, mut log) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
            // The context goes to the build's thread as it is (it may be large).
            let context = std::mem::take(&mut job.context);
            let building = build_on_own_thread(target.host.clone(), &job, context, key, sender);
            tokio::pin!(building);
            let mut kept = KeptLog::default();
            let built = loop {
                tokio::select! {
                    biased;
                    Some(lines) = log.recv() => kept.report(progress, &container, lines).await,
                    built = &mut building => break built,
                }
            };
            while let Ok(lines) = log.try_recv() {
                kept.report(progress, &container, lines).await;
            }
            kept.finish(progress, &container).await;
            let id = built?;
            let report = TargetReport::ImageBuilt {
                container: container.clone(),
                reference: reference.clone(),
                image: id.clone(),
            };
            progress.report(TargetEvent { message: format!("{container}: built {reference} ({id})"), report }).await;
            id
        }
    };
    if job.definition.repository.is_none() {
        return Ok(id);
    }
    let credentials = match job.login {
        Some((username, password)) => Some(DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress: Some(registry_of(repository).to_owned()),
            ..DockerCredentials::default()
        }),
        None => DockerConfig::from_environment().credentials_for(registry_of(repository))?,
    };
    let digest = match already_pushed(docker, &id, repository, tag, credentials.clone()).await? {
        Some(digest) => digest,
        None => {
            let digest = push_image(docker, &id, repository, tag, credentials).await?;
            let report = TargetReport::ImagePushed { reference: reference.clone(), digest: digest.clone() };
            progress
                .report(TargetEvent { message: format!("{container}: pushed {reference} ({digest})"), report })
                .await;
            digest
        }
    };
    Ok(format!("{repository}@{digest}"))
}

/// [`build_image`] on a thread of its own, with a runtime and an engine connection of its
/// own: bollard's BuildKit session is not `Send`, and a run's steps must be. Connecting
/// afresh keeps the caller's connection pool free of connections whose runtime ends.
async fn build_on_own_thread(
    host: Option<String>,
    job: &BuildJob<'_>,
    context: Vec<u8>,
    key: String,
    log: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
) -> Result<String, TargetError> {
    let tag = job.reference.to_owned();
    let definition = job.definition.clone();
    let secrets = job.secrets.clone();
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("image-build".to_owned())
        .spawn(move || {
            let built = tokio::runtime::Builder::new_current_thread().enable_all().build().map_or_else(
                |error| Err(TargetError::local("could not start the build's runtime", error)),
                |runtime| {
                    runtime.block_on(async {
                        let target = DockerTarget::connect(host.as_deref()).await?;
                        let labels = BTreeMap::from([(BUILD_KEY_LABEL.to_owned(), key)]);
                        let request = BuildRequest {
                            tag: &tag,
                            context,
                            dockerfile: &definition.dockerfile,
                            target: definition.target.as_deref(),
                            args: &definition.args,
                            secrets: &secrets,
                            labels: &labels,
                        };
                        build_image_logged(target.client(), &target.address, request, |lines| {
                            let _ = log.send(lines);
                        })
                        .await
                    })
                },
            );
            let _ = answer.send(built);
        })
        .map_err(|error| TargetError::local("could not start a thread for the build", error))?;
    answered.await.map_err(|_| TargetError::Invalid("the build's thread ended without an answer".to_owned()))?
}

/// The build log lines a build reports (and the store keeps) at most: a build that
/// writes more (a chatty dependency install) keeps its first lines, says how many more
/// there were, and ends with its last [`KEPT_LAST_LINES`] (where a failure shows).
const KEPT_LOG_LINES: usize = 5_000;
const KEPT_LAST_LINES: usize = 30;

/// How much of a build's log has been reported.
#[derive(Default)]
struct KeptLog {
    reported: usize,
    dropped: usize,
    /// The last lines not reported.
    last: std::collections::VecDeque<String>,
}

impl KeptLog {
    async fn report(&mut self, progress: &dyn Progress, container: &str, mut lines: Vec<String>) {
        let room = KEPT_LOG_LINES.saturating_sub(self.reported);
        if lines.len() > room {
            self.dropped += lines.len() - room;
            self.last.extend(lines.drain(room..));
            let excess = self.last.len().saturating_sub(KEPT_LAST_LINES);
            self.last.drain(..excess);
        }
        if lines.is_empty() {
            return;
        }
        self.reported += lines.len();
        report_log(progress, container, lines).await;
    }

    async fn finish(self, progress: &dyn Progress, container: &str) {
        if self.dropped > 0 {
            let skipped = self.dropped - self.last.len();
            let mut lines = vec![format!("({skipped} lines of the build's log were not kept)")];
            lines.extend(self.last);
            report_log(progress, container, lines).await;
        }
    }
}

async fn report_log(progress: &dyn Progress, container: &str, lines: Vec<String>) {
    let message = lines.iter().map(|line| format!("{container} | {line}")).collect::<Vec<_>>().join("\n");
    let report = TargetReport::ImageBuildLog { container: container.to_owned(), lines };
    progress.report(TargetEvent { message, report }).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl Progress for Lines {
        async fn report(&self, event: TargetEvent) {
            if let TargetReport::ImageBuildLog { lines, .. } = event.report {
                self.0.lock().unwrap().extend(lines);
            }
        }
    }

    #[tokio::test]
    async fn a_long_build_log_keeps_its_first_lines_a_count_and_its_last_lines() {
        let progress = Lines::default();
        let mut kept = KeptLog::default();
        for batch in 0..60 {
            let lines = (0..100).map(|line| format!("line {}", batch * 100 + line)).collect();
            kept.report(&progress, "web", lines).await;
        }
        kept.finish(&progress, "web").await;
        let reported = progress.0.into_inner().unwrap();
        assert_eq!(reported.len(), KEPT_LOG_LINES + 1 + KEPT_LAST_LINES);
        assert_eq!(reported[KEPT_LOG_LINES - 1], "line 4999");
        assert_eq!(reported[KEPT_LOG_LINES], "(970 lines of the build's log were not kept)");
        assert_eq!(reported.last().map(String::as_str), Some("line 5999"), "the end, where a failure shows");

        let short = Lines::default();
        let mut kept = KeptLog::default();
        kept.report(&short, "web", vec!["only line".to_owned()]).await;
        kept.finish(&short, "web").await;
        assert_eq!(short.0.into_inner().unwrap(), ["only line"]);
    }
}
