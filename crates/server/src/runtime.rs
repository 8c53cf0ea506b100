//! The runtime: runs driven to their end by a bounded set of workers, the server's
//! long-lived tasks, and the one stop signal they all obey (the engine's).
//!
//! It knows nothing of the config repo. A run that ends or parks is handed on through
//! the channel [`Runtime::new`] returns, for the reconciler to follow up (a change that
//! waited for the app, a promotion): so the two never call each other in a circle.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use launchway_engine::{Engine, EngineError};
use launchway_store::Run;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Runtime {
    engine: Engine,
    workers: Arc<Semaphore>,
    /// Runs waiting for a worker.
    queued: AtomicI64,
    /// Runs this process is driving or about to.
    driving: Mutex<HashSet<i64>>,
    tasks: TaskTracker,
    /// Woken when a run finishes (the scheduler looks for new tasks then).
    run_finished: Notify,
    /// Runs that ended or parked, in the order they did.
    ended: mpsc::UnboundedSender<Run>,
}

impl Runtime {
    /// A runtime driving at most `max_concurrent_runs` runs at once, and the receiving
    /// end of the runs it saw end or park.
    pub fn new(engine: Engine, max_concurrent_runs: usize) -> (Arc<Runtime>, mpsc::UnboundedReceiver<Run>) {
        let (ended, receiver) = mpsc::unbounded_channel();
        let runtime = Runtime {
            engine,
            workers: Arc::new(Semaphore::new(max_concurrent_runs.max(1))),
            queued: AtomicI64::new(0),
            driving: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
            run_finished: Notify::new(),
            ended,
        };
        (Arc::new(runtime), receiver)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The process's stop signal: cancelled, runs stop at their next step boundary and
    /// every loop of the server returns.
    pub fn stop(&self) -> &CancellationToken {
        self.engine.stop_token()
    }

    /// Runs waiting for a worker.
    pub fn queue_depth(&self) -> i64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether this process is driving the run (or about to).
    pub fn is_driving(&self, run_id: i64) -> bool {
        self.driving.lock().expect("not poisoned").contains(&run_id)
    }

    /// Resolves when a run finishes.
    pub async fn run_finished(&self) {
        self.run_finished.notified().await;
    }

    /// Keeps a task of the server's going until shutdown waits for it.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Drives a run on a worker, unless this process already is or is stopping.
    pub fn drive(self: &Arc<Self>, run_id: i64) {
        if self.stop().is_cancelled() || !self.driving.lock().expect("not poisoned").insert(run_id) {
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let runtime = self.clone();
        self.tasks.spawn(async move {
            let permit = runtime.workers.clone().acquire_owned().await;
            runtime.queued.fetch_sub(1, Ordering::Relaxed);
            if permit.is_ok() {
                runtime.drive_now(run_id).await;
            }
            runtime.driving.lock().expect("not poisoned").remove(&run_id);
        });
    }

    async fn drive_now(&self, run_id: i64) {
        let started = Instant::now();
        match self.engine.drive(run_id).await {
            Ok(run) => {
                if run.state.is_terminal() {
                    crate::metrics::run_finished(&run, started.elapsed());
                    self.run_finished.notify_waiters();
                }
                // Nobody following up only means the server is shutting down.
                let _ = self.ended.send(run);
            }
            // Another live process drives it; it will finish it.
            Err(EngineError::Busy { .. }) => {}
            Err(EngineError::Interrupted { .. }) => tracing::info!(run_id, "stopped at a step boundary for shutdown"),
            Err(error) => {
                tracing::error!(run_id, %error, "the run stopped with an error; it resumes at the next sweep")
            }
        }
    }

    /// Stops taking work, asks runs to stop at their next step boundary, and waits
    /// (at most `grace`) for them and the server's tasks to get there.
    pub async fn shut_down(&self, grace: Duration) {
        self.stop().cancel();
        self.workers.close();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("runs did not reach a step boundary in time; they resume on the next start");
        }
    }
}
