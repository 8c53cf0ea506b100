//! What launchway remembers, and the trait every store backend implements.
//!
//! The engine talks to a `dyn Store` only; SQL lives in the backends beside this crate
//! (`store-sqlite`, and later PostgreSQL), so a backend can be added without touching
//! the engine. Every method that changes a run takes the run's [`Lease`]: a backend
//! refuses the change when the lease has passed to another worker (fencing), which is
//! what keeps a stale or resumed process from acting twice.

#[cfg(feature = "conformance")]
pub mod conformance;
mod events;
mod plan;
mod rows;

use async_trait::async_trait;

pub use events::*;
pub use plan::*;
pub use rows::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("run {run_id} for {app} in {env} is still in progress")]
    RunInProgress { run_id: RunId, app: String, env: String },
    /// A run was created for (app, env) after the one a new run was decided from.
    #[error("another run for {app} in {env} was created meanwhile")]
    DecidedOnStale { app: String, env: String },
    #[error("the lease on run {run_id} is no longer held by this process (another worker took the run over)")]
    LeaseLost { run_id: RunId },
    #[error("run {run_id} is not waiting for approval")]
    NotAwaitingApproval { run_id: RunId },
    #[error("run {run_id} was already {decision} by {by}")]
    AlreadyDecided { run_id: RunId, decision: &'static str, by: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("could not open the database at {location}")]
    Open {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Durable state of releases, runs and the audit log.
///
/// # Guarantees
/// - At most one unfinished run exists per (app, environment).
/// - A change made with a lease happens only while that lease is current.
/// - A transition and its event are written together or not at all.
/// - Events are never updated or deleted.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records an immutable release.
    async fn create_release(&self, release: NewRelease) -> Result<Release>;
    async fn release(&self, id: ReleaseId) -> Result<Release>;
    /// The releases with these ids (those that exist), in no particular order: one read
    /// for a board of a thousand apps, not a thousand.
    async fn releases(&self, ids: &[ReleaseId]) -> Result<Vec<Release>>;

    /// Creates a pending run and its `run.created` event.
    ///
    /// # Errors
    /// [`StoreError::RunInProgress`] when (app, env) already has an unfinished run;
    /// [`StoreError::DecidedOnStale`] when `run.decided_after` is no longer the newest run.
    async fn create_run(&self, run: NewRun, event: NewEvent) -> Result<(Run, Event)>;
    /// Records a release and a run of it together: when the run cannot be created,
    /// the release is not recorded either. `run.release_id` is set to the new release,
    /// and so is `event.data["release"]`.
    ///
    /// # Errors
    /// [`StoreError::RunInProgress`] when (app, env) already has an unfinished run.
    async fn create_release_with_run(
        &self,
        release: NewRelease,
        run: NewRun,
        event: NewEvent,
    ) -> Result<(Release, Run, Event)>;
    async fn run(&self, id: RunId) -> Result<Run>;
    /// Runs, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// The newest run of each (app, environment) that has one.
    async fn latest_runs(&self) -> Result<Vec<Run>>;

    /// Claims an unfinished run for `owner` for `ttl_ms`, when nobody holds it, its lease
    /// has expired, `owner` holds it already, or its holder is `dead_owner` (a process
    /// the caller has seen die). Each claim increments the run's attempt counter, which
    /// fences out whoever held it before. Returns `None` when someone else holds it.
    async fn claim_run(&self, id: RunId, owner: &str, ttl_ms: i64, dead_owner: Option<&str>) -> Result<Option<Lease>>;
    /// Extends a lease. [`StoreError::LeaseLost`] when it is no longer current.
    async fn renew_lease(&self, lease: &Lease, ttl_ms: i64) -> Result<()>;
    /// Gives a lease up so that another process may take the run at once.
    async fn release_lease(&self, lease: &Lease) -> Result<()>;

    /// Moves a run to a new state, with its event and, for terminal states, the
    /// (app, environment) record, in one transaction.
    async fn transition(&self, lease: &Lease, transition: Transition) -> Result<(Run, Event)>;

    /// Records that a step started (again, after a resume) for the lease's attempt, and
    /// its event, in one transaction.
    async fn start_step(&self, lease: &Lease, step: &str, event: NewEvent) -> Result<Event>;
    /// Records how a step ended, and its event, in one transaction.
    async fn finish_step(
        &self,
        lease: &Lease,
        step: &str,
        outcome: StepOutcome,
        detail: Option<String>,
        event: NewEvent,
    ) -> Result<Event>;
    async fn steps(&self, run: RunId) -> Result<Vec<Step>>;

    async fn append_event(&self, event: NewEvent) -> Result<Event>;
    /// Events in the order they happened.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>>;

    /// What is deployed for one (app, environment), if anything ever was.
    async fn deployment(&self, app: &str, env: &str) -> Result<Option<DeploymentRecord>>;
    async fn deployments(&self) -> Result<Vec<DeploymentRecord>>;
    /// Lifts the pin on (app, environment), recording `event` with it. `None` when
    /// there was no pin (nothing is recorded then).
    async fn unpin(&self, app: &str, env: &str, event: NewEvent) -> Result<Option<(Pin, Event)>>;

    /// A run's approval request, if it has one.
    async fn approval(&self, run: RunId) -> Result<Option<Approval>>;
    /// Runs parked for approval that can move on: decided, or expired by `now`.
    async fn approvals_due(&self, now: i64) -> Result<Vec<RunId>>;
    /// Records a decision on a waiting run, with its event. The first decision wins.
    ///
    /// # Errors
    /// [`StoreError::NotAwaitingApproval`], [`StoreError::AlreadyDecided`].
    async fn decide(
        &self,
        run: RunId,
        decision: Decision,
        by: &str,
        comment: Option<String>,
        event: NewEvent,
    ) -> Result<(Approval, Event)>;

    async fn create_token(&self, token: NewToken) -> Result<Token>;
    /// A token by its public id, revoked or not.
    async fn token(&self, id: &str) -> Result<Option<Token>>;
    async fn tokens(&self) -> Result<Vec<Token>>;
    /// Revokes a token; true when it was live.
    async fn revoke_token(&self, id: &str) -> Result<bool>;
    async fn touch_token(&self, id: &str) -> Result<()>;

    /// Starts a web session standing for token `token_id` until `expires_at` (Unix ms);
    /// `id_hash` is the SHA-256 of the session's secret id, all that is kept of it.
    async fn create_session(&self, id_hash: &str, token_id: &str, expires_at: i64) -> Result<()>;
    /// The token a session stands for, while it lasts (`now`, Unix ms).
    async fn session_token(&self, id_hash: &str, now: i64) -> Result<Option<String>>;
    /// Ends a session; true when it was there.
    async fn end_session(&self, id_hash: &str) -> Result<bool>;

    /// Notes a webhook delivery; false when it was seen before.
    async fn record_delivery(&self, provider: &str, delivery_id: &str) -> Result<bool>;

    /// Records the images CI published for (app, env), replacing earlier ones.
    async fn publish_images(&self, published: Published) -> Result<()>;
    async fn published_images(&self) -> Result<Vec<Published>>;

    /// Records an image a run built; a reference recorded before keeps what it had (the
    /// answer: what is recorded now).
    async fn record_built_image(&self, built: BuiltImage) -> Result<BuiltImage>;
    /// What was built for each of `references` that has been, by reference.
    async fn built_images(&self, references: &[String]) -> Result<std::collections::BTreeMap<String, BuiltImage>>;

    /// How far the reader `name` has got through the event log: the id of the last
    /// event it is done with. `None` before it first says.
    async fn cursor(&self, name: &str) -> Result<Option<i64>>;
    async fn set_cursor(&self, name: &str, event_id: i64) -> Result<()>;

    /// Holds the reader `name`'s lease for `owner` until `ttl_ms` from now — taking it,
    /// or renewing it — unless another owner holds it unexpired (and is not
    /// `dead_owner`, a holder seen dead). Returns who holds it now: `owner` when it does.
    async fn lease_reader(&self, name: &str, owner: &str, ttl_ms: i64, dead_owner: Option<&str>) -> Result<String>;
    /// Gives the lease up, if `owner` holds it.
    async fn release_reader(&self, name: &str, owner: &str) -> Result<()>;
}
