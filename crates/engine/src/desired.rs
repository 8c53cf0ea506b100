//! What launchway would deploy now for one (app, environment), and whether what runs is
//! that. Deploy decisions (`prepare_deploys`) and `status` both ask here, so status
//! never says "in sync" where the server would start a run, nor the reverse.

use std::collections::BTreeMap;

use launchway_manifest::{AppBuild, AppSpec, Manifest};
use launchway_store::{Published, RunFilter, RunKind, RunState};

use crate::decide::Decision;
use crate::{Engine, Result};

/// Desired state for one (app, environment), as launchway would deploy it now.
pub(crate) struct Desired {
    pub(crate) spec: AppSpec,
    /// The app's `build:`, when some of its images are still to build.
    pub(crate) build: Option<AppBuild>,
    /// Whether the images are a CI publication's (the release is then named after it).
    pub(crate) published: bool,
    /// A publication whose images failed before, so the last good images stand in for
    /// them: why, and how its last run ended.
    pub(crate) held_back: Option<(String, RunState)>,
}

/// What desired state comes to.
pub(crate) enum DesiredOutcome {
    Deploy(Box<Desired>),
    /// A publication failed and nothing was ever verified to fall back to: nothing
    /// deploys until a new publication (the decision says so).
    Wait(Decision),
}

/// Where the images of an (app, environment) come from, over the manifest's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ImageSource<'a> {
    /// A promotion's images: they win over publications.
    pub(crate) promoted: Option<&'a BTreeMap<String, String>>,
    /// What CI published for the pair.
    pub(crate) publication: Option<&'a Published>,
    /// Deploy a publication again even though its last run failed.
    pub(crate) retry_failed: bool,
}

impl Engine {
    /// The spec launchway would deploy for `app` in `env`: the manifest's, with a
    /// promotion's or else CI's images set over it (unless those failed before), and
    /// what was built for the references it builds.
    pub(crate) async fn desired(
        &self,
        manifest: &Manifest,
        app: &str,
        spec: &AppSpec,
        images: ImageSource<'_>,
    ) -> Result<DesiredOutcome> {
        let mut published = false;
        let mut held_back = None;
        let overridden = match (images.promoted, images.publication) {
            (Some(promoted), _) => Some(spec.with_images(promoted)),
            (None, Some(publication)) => {
                published = true;
                match self.published_images_to_deploy(spec, publication, images.retry_failed).await? {
                    PublishedImages::Deploy(spec) => Some(spec),
                    PublishedImages::FellBack(spec, why, state) => {
                        held_back = Some((why, state));
                        Some(spec)
                    }
                    PublishedImages::Wait(decision) => return Ok(DesiredOutcome::Wait(decision)),
                }
            }
            (None, None) => None,
        };
        let build = manifest.apps.get(app).and_then(|declared| declared.build.as_ref());
        let built = self.with_built_images(app, overridden.as_ref().unwrap_or(spec), build).await?;
        Ok(DesiredOutcome::Deploy(Box::new(Desired { spec: built.spec, build: built.build, published, held_back })))
    }

    /// What a publication deploys: its images, unless the last run that tried them
    /// failed (then the last good release's images for those containers, or nothing
    /// until a new publication when no release was ever good).
    async fn published_images_to_deploy(
        &self,
        spec: &AppSpec,
        publication: &Published,
        retry: bool,
    ) -> Result<PublishedImages> {
        let published = spec.with_images(&publication.images);
        if retry {
            return Ok(PublishedImages::Deploy(published));
        }
        let Some(failed) = self.last_try_failed(&publication.app, &publication.env, &publication.images).await? else {
            return Ok(PublishedImages::Deploy(published));
        };
        let what = format!(
            "the images {} published failed in run {}{}",
            publication.published_by,
            failed.id,
            failed.reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default()
        );
        let record = self.inner.store.deployment(&publication.app, &publication.env).await?;
        let Some(good) = self.release_if_any(record.and_then(|record| record.good_release_id)).await? else {
            return Ok(PublishedImages::Wait(Decision::Skipped {
                app: publication.app.clone(),
                env: publication.env.clone(),
                previous_state: failed.state,
                reason: format!(
                    "{what}; nothing was ever verified there to fall back to, so it waits for a new publication (or `release publish --retry`)"
                ),
            }));
        };
        let good_images: BTreeMap<String, String> = good
            .spec
            .images()
            .into_iter()
            .filter(|(container, _)| publication.images.contains_key(*container))
            .map(|(container, image)| (container.to_owned(), image.to_owned()))
            .collect();
        Ok(PublishedImages::FellBack(
            spec.with_images(&good_images),
            format!("{what}: release {}'s images until a new publication, or `release publish --retry`", good.id),
            failed.state,
        ))
    }

    /// The last deploy or repair whose release ran `images` for those containers, when
    /// it did not succeed.
    async fn last_try_failed(
        &self,
        app: &str,
        env: &str,
        images: &BTreeMap<String, String>,
    ) -> Result<Option<launchway_store::Run>> {
        let store = &self.inner.store;
        let filter =
            RunFilter { app: Some(app.to_owned()), env: Some(env.to_owned()), limit: Some(50), ..RunFilter::default() };
        for run in
            store.runs(&filter).await?.into_iter().filter(|run| matches!(run.kind, RunKind::Deploy | RunKind::Repair))
        {
            let release = store.release(run.release_id).await?;
            let ran = release.spec.images();
            if images.iter().all(|(container, image)| ran.get(container.as_str()) == Some(&image.as_str())) {
                return Ok(run.state.is_unsuccessful().then_some(run));
            }
        }
        Ok(None)
    }
}

/// What a publication makes of an app's desired state.
enum PublishedImages {
    Deploy(AppSpec),
    /// The publication failed before: the last good images, why, and how it ended.
    FellBack(AppSpec, String, RunState),
    /// It failed and there is nothing good to fall back to.
    Wait(Decision),
}
