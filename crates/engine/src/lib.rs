//! Runs: turning desired state into durable pipeline executions, and executing them.
//!
//! A run moves pending → validating → planning → deploying → verifying → succeeded, or
//! from deploying/verifying → rolling back → rolled back (or failed). Every transition
//! is written to the store, with its event, *before* the step it starts acts; each step
//! is idempotent over live state. So a run interrupted anywhere, even by SIGKILL, is
//! resumed by calling [`Engine::drive`] again: the step that was under way simply runs
//! again and finds its work partly or wholly done.
//!
//! The engine knows only traits: [`Store`], [`Target`] (through [`TargetProvider`]).

mod approval;
pub mod dora;
mod owner;
pub mod plan;
mod run;
mod status;
mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use launchway_manifest::TargetSpec;
use launchway_store::{Event, NewEvent, Store, StoreError};
use launchway_target::{Target, TargetError};
use tokio::sync::broadcast;

pub use dora::{DoraFigures, NO_OP_REASON};
pub use owner::Owner;
pub use plan::{AppPlan, Change, PlanAction};
pub use status::{AppHealth, AppStatus, HealthState, SyncState};
pub use sync::{Decision, DeployRequest, ImageOverrides, Selection};

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
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig { lease_ttl: Duration::from_secs(15) }
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
    stopping: AtomicBool,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, targets: Arc<dyn TargetProvider>, config: EngineConfig) -> Engine {
        let (events, _) = broadcast::channel(1024);
        Engine {
            inner: Arc::new(Inner {
                store,
                targets,
                owner: Owner::of_this_process(),
                config,
                events,
                stopping: AtomicBool::new(false),
            }),
        }
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

    /// Asks runs being driven to stop at the next step boundary, with their state
    /// persisted and their lease given up, so that they resume elsewhere at once.
    pub fn stop_at_next_boundary(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
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
