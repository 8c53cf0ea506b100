//! Runs: turning desired state into durable pipeline executions, and executing them.
//!
//! A run moves pending → validating → planning → deploying → verifying → succeeded
//! (with progressing between deploying and verifying for blue/green and canary), or from
//! deploying/progressing/verifying → rolling back → rolled back (or failed). Every transition
//! is written to the store, with its event, *before* the step it starts acts; each step
//! is idempotent over live state. So a run interrupted anywhere, even by SIGKILL, is
//! resumed by calling [`Engine::drive`] again: the step that was under way simply runs
//! again and finds its work partly or wholly done.
//!
//! The engine knows only traits: [`Store`], [`Target`] (through [`TargetProvider`]).

pub mod access;
mod analysis;
mod approval;
mod build;
mod clock;
mod decide;
mod desired;
pub mod dora;
mod owner;
mod plan;
mod progressive;
mod run;
mod status;
mod steps;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use launchway_manifest::TargetSpec;
use launchway_store::{Event, NewEvent, Store, StoreError};
use launchway_target::{Target, TargetError};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use build::{ImageBuilder, ImageToBuild};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decide::Decision;
pub use dora::{DoraFigures, NO_OP_REASON};
pub use launchway_store::{AppPlan, Change, PlanAction};
pub use owner::Owner;
pub use status::{AppHealth, AppStatus, DesiredSources, HealthState, SyncState};
pub use sync::{DeployRequest, ImageOverrides, RollbackRequest, Selection};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("run {run_id} is being driven by {owner}; its lease expires in {expires_in_ms} ms")]
    Busy { run_id: i64, owner: String, expires_in_ms: i64 },
    #[error("{0}")]
    Invalid(String),
    /// Not allowed for whoever asked (the release's author approving it…).
    #[error("{0}")]
    Forbidden(String),
    #[error("stopped before run {run_id} finished; it resumes where it stopped")]
    Interrupted { run_id: i64 },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Connects to the target an environment names.
#[async_trait]
pub trait TargetProvider: Send + Sync {
    async fn target(&self, spec: &TargetSpec) -> Result<Arc<dyn Target>, TargetError>;
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal. A crashed holder on another host blocks
    /// its runs this long; on the same host its death is seen at once.
    pub lease_ttl: Duration,
    /// The process's one stop signal: once cancelled, runs being driven stop at their
    /// next step boundary, persisted and with their lease given up, so that they resume
    /// elsewhere at once. The CLI cancels it on Ctrl-C or SIGTERM, the server on
    /// shutdown; everything else that must stop then (the server's loops, its HTTP
    /// listener) waits on the same token.
    pub stop: CancellationToken,
    /// What approval expiry, repair back-off and lease checks take as now.
    pub clock: Arc<dyn Clock>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            lease_ttl: Duration::from_secs(15),
            stop: CancellationToken::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Runs pipelines against a store and targets. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    targets: Arc<dyn TargetProvider>,
    owner: Owner,
    config: EngineConfig,
    events: broadcast::Sender<Event>,
    /// For analyses: HTTP checks of new replicas, Prometheus queries.
    http: reqwest::Client,
    /// Releases already read, by id: a release never changes once written, and `status`
    /// asks for thousands of them on every board load.
    releases: status::ReleaseCache,
    /// Builds the images releases build (`build:`); without one, such runs fail.
    builder: Option<Arc<dyn ImageBuilder>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, targets: Arc<dyn TargetProvider>, config: EngineConfig) -> Engine {
        let (events, _) = broadcast::channel(1024);
        let http = reqwest::Client::builder().build().unwrap_or_default();
        let releases = status::ReleaseCache::default();
        Engine {
            inner: Arc::new(Inner {
                store,
                targets,
                owner: Owner::of_this_process(),
                config,
                events,
                http,
                releases,
                builder: None,
            }),
        }
    }

    /// The engine, building images with `builder`.
    ///
    /// # Panics
    /// When called on a clone: the builder is given before the engine is shared.
    #[must_use]
    pub fn with_builder(mut self, builder: Arc<dyn ImageBuilder>) -> Engine {
        Arc::get_mut(&mut self.inner).expect("the builder is given before the engine is cloned").builder =
            Some(builder);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn owner(&self) -> &Owner {
        &self.inner.owner
    }

    /// Every event this engine records, as it records it (for live progress).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Now, by the engine's clock ([`EngineConfig::clock`]), in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    /// The stop signal it obeys ([`EngineConfig::stop`]).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.inner.config.stop
    }

    fn stopping(&self) -> bool {
        self.inner.config.stop.is_cancelled()
    }

    pub async fn target(&self, spec: &TargetSpec) -> Result<Arc<dyn Target>> {
        Ok(self.inner.targets.target(spec).await?)
    }

    /// Appends an event and shows it to subscribers.
    pub async fn record(&self, event: NewEvent) -> Result<Event> {
        let event = self.inner.store.append_event(event).await?;
        self.announce(&event);
        Ok(event)
    }

    fn announce(&self, event: &Event) {
        // Nobody listening is fine.
        let _ = self.inner.events.send(event.clone());
    }
}
