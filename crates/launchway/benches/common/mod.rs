//! What the benchmarks share: child processes killed when dropped, waiting for an
//! address to answer, and percentiles. Each benchmark uses some of it.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(command: &mut Command) -> Process {
    Process(command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starts"))
}

pub async fn wait_for(url: &str) {
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    for _ in 0..200 {
        if http.get(url).send().await.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never answered");
}

/// The `p`th percentile of sorted latencies (nearest rank).
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(p * sorted.len()).div_ceil(100).max(1) - 1]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
