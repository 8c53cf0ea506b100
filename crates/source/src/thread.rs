//! A config repo owned by one thread, for async code that needs it often.
//!
//! gix's repository handles are not `Send` in the build launchway uses (its `parallel`
//! feature is off, keeping the build small), so a long-lived process keeps the repo on a
//! thread of its own and sends it work. Calls are served in order, which also keeps
//! fetches and reads from interleaving.

use std::path::PathBuf;
use std::sync::mpsc;

use crate::{ConfigRepo, Result};

type Job = Box<dyn FnOnce(&ConfigRepo) + Send>;

/// A handle to a config repo living on its own thread. Cheap to clone.
#[derive(Clone)]
pub struct RepoThread {
    jobs: mpsc::Sender<Job>,
    location: String,
}

impl std::fmt::Debug for RepoThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoThread({})", self.location)
    }
}

impl RepoThread {
    /// Opens (and for a URL, mirrors) the repo on a new thread. The thread ends when the
    /// last handle is dropped.
    pub fn open(location: &str, cache_dir: PathBuf) -> Result<RepoThread> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (opened, open_result) = mpsc::sync_channel::<Result<()>>(1);
        let thread_location = location.to_owned();
        std::thread::Builder::new()
            .name("config-repo".to_owned())
            .spawn(move || {
                let repo = match ConfigRepo::open(&thread_location, &cache_dir) {
                    Ok(repo) => {
                        let _ = opened.send(Ok(()));
                        repo
                    }
                    Err(error) => {
                        let _ = opened.send(Err(error));
                        return;
                    }
                };
                for job in receiver {
                    job(&repo);
                }
            })
            .expect("a thread can be started");
        open_result.recv().expect("the repo thread answers")?;
        Ok(RepoThread { jobs, location: location.to_owned() })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `work` with the repo on its thread and returns its result.
    pub async fn call<T: Send + 'static>(&self, work: impl FnOnce(&ConfigRepo) -> T + Send + 'static) -> T {
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |repo| {
            let _ = answer.send(work(repo));
        });
        self.jobs.send(job).expect("the repo thread lives as long as its handles");
        result.await.expect("the repo thread finishes every job it takes")
    }
}
