//! Clients sending HTTP requests back to back, for tests that change what serves an
//! address under load and must see no request fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// `clients` tasks each sending GET requests to one URL, one after another, until
/// stopped. Every answer that is not a success, and every error, counts as failed.
pub struct Load {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

/// What the clients got: the bodies of the answers that succeeded, in order per client
/// (the clients one after another), how many requests failed, and of those how many
/// found no one accepting their connection (a gap in the listening address).
#[derive(Debug)]
pub struct LoadResult {
    pub answers: Vec<String>,
    pub failed: usize,
    pub refused: usize,
}

impl Load {
    pub fn start(url: &str, clients: usize) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let refused = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (url, running, sent, failed) = (url.to_owned(), running.clone(), sent.clone(), failed.clone());
                let refused = refused.clone();
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .expect("an HTTP client");
                    let mut answers = Vec::new();
                    while running.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match http.get(&url).send().await {
                            Ok(answer) if answer.status().is_success() => {
                                answers.push(answer.text().await.unwrap_or_default())
                            }
                            Ok(answer) => {
                                eprintln!("load: {url} answered {}", answer.status());
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => {
                                let cause = std::error::Error::source(&error).map(ToString::to_string);
                                eprintln!("load: {url}: {error} ({})", cause.unwrap_or_default());
                                failed.fetch_add(1, Ordering::Relaxed);
                                if error.is_connect() {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    answers
                })
            })
            .collect();
        Load { running, sent, failed, refused, tasks }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until at least `count` requests have been sent (at most `limit`).
    pub async fn until_sent(&self, count: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.sent() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) -> LoadResult {
        self.running.store(false, Ordering::Relaxed);
        let mut answers = Vec::new();
        for task in self.tasks {
            answers.extend(task.await.expect("a load client"));
        }
        LoadResult {
            answers,
            failed: self.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}
