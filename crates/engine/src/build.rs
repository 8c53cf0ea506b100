//! The build step: images an app builds (`build:`) are built before anything is planned,
//! and the run moves to a release holding what was built.
//!
//! A built container's image starts as the reference its build will have (`repo:tag`,
//! set from the commit by whoever read the config repo). What was built for a reference
//! is recorded in the store, so desired state is always what was built: a change that
//! leaves a context alone keeps its reference, finds it built, and changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use launchway_manifest::{AppBuild, AppSpec, ImageBuild, TargetSpec};
use launchway_store::{BuiltImage, NewRelease, Run, RunState, now_ms};
use launchway_target::{Progress, TargetError, TargetEvent, TargetReport, describe};

use crate::run::RunProgress;
use crate::steps::Next;
use crate::{Engine, EngineError, Result};

/// One image to build.
pub struct ImageToBuild<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub container: &'a str,
    /// `repo:tag`: what the image is tagged (and pushed) as.
    pub reference: &'a str,
    pub definition: &'a ImageBuild,
    /// The repository the context is read from: `None` for the config repo, else the
    /// build's `source:`.
    pub repo: Option<&'a str>,
    /// The commit the context is read at.
    pub commit: &'a str,
    /// Where the environment runs: its engine builds, its credentials push.
    pub target: &'a TargetSpec,
}

/// Builds images for runs (the binary's, over the Docker engine and the config repo).
#[async_trait]
pub trait ImageBuilder: Send + Sync {
    /// Builds the image, or finds it built (and pushed) before, and answers what deploys
    /// it: `repo@sha256:…` once pushed, else the engine's image id. Idempotent: asked
    /// again after a crash, it neither builds nor pushes what is already there.
    async fn build(&self, image: ImageToBuild<'_>, progress: &dyn Progress) -> Result<String, TargetError>;
}

/// A spec with the images already built for it, and the build still to do.
pub(crate) struct WithBuilds {
    pub spec: AppSpec,
    /// The app's `build:`, when some images are still to build.
    pub build: Option<AppBuild>,
}

impl Engine {
    /// `spec` with every image it builds that was built set to what was built.
    pub(crate) async fn with_built_images(
        &self,
        app: &str,
        spec: &AppSpec,
        build: Option<&AppBuild>,
    ) -> Result<WithBuilds> {
        let Some(build) = build else {
            return Ok(WithBuilds { spec: spec.clone(), build: None });
        };
        let wanted = to_build(app, spec, build);
        if wanted.is_empty() {
            return Ok(WithBuilds { spec: spec.clone(), build: None });
        }
        let references: Vec<String> = wanted.values().cloned().collect();
        let built = self.inner.store.built_images(&references).await?;
        let images: BTreeMap<String, String> = wanted
            .iter()
            .filter_map(|(container, reference)| Some((container.clone(), built.get(reference)?.image.clone())))
            .collect();
        let pending = images.len() < wanted.len();
        Ok(WithBuilds { spec: spec.with_images(&images), build: pending.then(|| build.clone()) })
    }

    /// Builds what the run's release still has to build, then has the run validate the
    /// release with what was built.
    pub(crate) async fn build_step(&self, run: &Run) -> Result<Next> {
        let store = &self.inner.store;
        let release = store.release(run.release_id).await?;
        let Some(build) = &release.build else {
            return Ok(Next::to(RunState::Validating, "nothing to build"));
        };
        let wanted = to_build(&run.app, &release.spec, build);
        let (repo, commit) = match &build.source {
            Some(source) => (Some(source.repo.as_str()), source.commit.as_deref()),
            None => (None, release.source.commit.as_deref()),
        };
        let Some(commit) = commit else {
            let reason = "the release names no commit to build from".to_owned();
            return Ok(
                Next::to(RunState::Failed, format!("build failed, nothing was changed: {reason}")).because(reason)
            );
        };
        let references: Vec<String> = wanted.values().cloned().collect();
        let known = store.built_images(&references).await?;
        let progress = BuildProgress { run: RunProgress { engine: self, run }, tail: Mutex::default() };
        let mut images = BTreeMap::new();
        for (container, reference) in &wanted {
            if let Some(built) = known.get(reference) {
                images.insert(container.clone(), built.image.clone());
                continue;
            }
            let Some(builder) = &self.inner.builder else {
                let reason = "this launchway was started without an image builder".to_owned();
                return Ok(
                    Next::to(RunState::Failed, format!("build failed, nothing was changed: {reason}")).because(reason)
                );
            };
            let image = ImageToBuild {
                app: &run.app,
                env: &run.env,
                container,
                reference,
                definition: &build.images[container],
                repo,
                commit,
                target: &release.target,
            };
            // Asked to stop, the run stops here and builds again when resumed (what was
            // built is found again by its build key; the build itself ends on its own).
            let built = tokio::select! {
                built = builder.build(image, &progress) => built,
                () = self.inner.config.stop.cancelled() => return Err(EngineError::Interrupted { run_id: run.id }),
            };
            match built {
                Ok(image) => {
                    let recorded = store
                        .record_built_image(BuiltImage {
                            reference: reference.clone(),
                            image,
                            app: run.app.clone(),
                            container: container.clone(),
                            run_id: run.id,
                            built_at: now_ms(),
                        })
                        .await?;
                    images.insert(container.clone(), recorded.image);
                }
                Err(error) => {
                    let reason = format!("{container}: {}", describe(&error));
                    let tail: Vec<String> = progress.tail.lock().expect("not poisoned").drain(..).collect();
                    return Ok(Next::to(RunState::Failed, format!("{reason}; nothing was changed"))
                        .because(reason)
                        .with_logs(tail));
                }
            }
        }
        let built: Vec<String> = images.iter().map(|(container, image)| format!("{container} = {image}")).collect();
        let spec = release.spec.with_images(&images);
        let next = Next::to(RunState::Validating, format!("built {}", built.join(", ")));
        Ok(next.moving_to(NewRelease {
            app: release.app.clone(),
            env: release.env.clone(),
            spec,
            target: release.target.clone(),
            source: release.source.clone(),
            build: None,
        }))
    }
}

/// How many of a build's last log lines a failure keeps (and its notices show).
const LOG_TAIL: usize = 30;

/// The run's progress, keeping the build log's last lines for a failure to show.
struct BuildProgress<'a> {
    run: RunProgress<'a>,
    tail: Mutex<VecDeque<String>>,
}

#[async_trait]
impl Progress for BuildProgress<'_> {
    async fn report(&self, event: TargetEvent) {
        if let TargetReport::ImageBuildLog { container, lines } = &event.report {
            let mut tail = self.tail.lock().expect("not poisoned");
            tail.extend(lines.iter().map(|line| format!("{container} | {line}")));
            let excess = tail.len().saturating_sub(LOG_TAIL);
            tail.drain(..excess);
        }
        self.run.report(event).await;
    }
}

/// The images `spec` still has to build: container → the reference to build it as.
fn to_build(app: &str, spec: &AppSpec, build: &AppBuild) -> BTreeMap<String, String> {
    spec.images()
        .into_iter()
        .filter(|(container, image)| build.builds(app, container, image))
        .map(|(container, image)| (container.to_owned(), image.to_owned()))
        .collect()
}
