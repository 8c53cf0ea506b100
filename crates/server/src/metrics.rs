//! Prometheus metrics, served on a listener of their own.
//!
//! Counters and histograms are recorded as things happen (runs finishing, steps,
//! webhooks); gauges (runs by state, the queue, DORA figures) are read from the store
//! when scraped, so they are right even for runs other processes drive.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use launchway_engine::{DoraFigures, Engine};
use launchway_store::{Run, RunFilter, RunState};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// DORA figures are recomputed at most this often.
const DORA_REFRESH: Duration = Duration::from_secs(60);
/// The window DORA gauges cover.
pub const DORA_WINDOW_DAYS: u32 = 30;

/// The process-wide recorder, installed on first use. `None` when something else
/// installed one first (metrics then go there).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
                .expect("the bucket list is not empty");
            builder.install_recorder().ok()
        })
        .as_ref()
}

pub fn run_finished(run: &Run, took: Duration) {
    counter!("launchway_runs_finished_total", "env" => run.env.clone(), "state" => run.state.as_str(), "kind" => run.kind.as_str())
        .increment(1);
    histogram!("launchway_run_duration_seconds", "env" => run.env.clone(), "state" => run.state.as_str())
        .record(took.as_secs_f64());
}

pub fn step_finished(step: &str, outcome: &str, seconds: f64) {
    histogram!("launchway_step_duration_seconds", "step" => step.to_owned(), "outcome" => outcome.to_owned())
        .record(seconds);
}

pub fn webhook(provider: &str, outcome: &'static str) {
    counter!("launchway_webhooks_total", "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
}

pub fn notification(delivered: bool) {
    counter!("launchway_notifications_total", "outcome" => if delivered { "delivered" } else { "failed" }).increment(1);
}

/// Refreshes the gauges and renders everything in the Prometheus text format.
pub async fn render(engine: &Engine, queue_depth: i64) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    let store = engine.store();
    if let Ok(unfinished) = store.runs(&RunFilter { unfinished_only: true, ..RunFilter::default() }).await {
        for state in RunState::ALL.iter().filter(|state| !state.is_terminal()) {
            let count = unfinished.iter().filter(|run| run.state == *state).count();
            gauge!("launchway_runs", "state" => state.as_str()).set(count as f64);
        }
    }
    gauge!("launchway_queue_depth").set(queue_depth as f64);
    for figures in dora_figures(engine).await {
        let labels = [("app", figures.app.clone()), ("env", figures.env.clone())];
        gauge!("launchway_dora_deployments_per_day", &labels).set(figures.deployments_per_day);
        if let Some(lead) = figures.lead_time_median_s {
            gauge!("launchway_dora_lead_time_seconds", &labels).set(lead);
        }
        if let Some(rate) = figures.change_failure_rate {
            gauge!("launchway_dora_change_failure_rate", &labels).set(rate);
        }
        if let Some(restore) = figures.time_to_restore_median_s {
            gauge!("launchway_dora_time_to_restore_seconds", &labels).set(restore);
        }
    }
    handle.run_upkeep();
    handle.render()
}

async fn dora_figures(engine: &Engine) -> Vec<DoraFigures> {
    static CACHE: Mutex<Option<(Instant, Vec<DoraFigures>)>> = Mutex::new(None);
    if let Some((at, figures)) = CACHE.lock().expect("not poisoned").as_ref()
        && at.elapsed() < DORA_REFRESH
    {
        return figures.clone();
    }
    let figures = engine.dora(None, None, DORA_WINDOW_DAYS).await.unwrap_or_default();
    *CACHE.lock().expect("not poisoned") = Some((Instant::now(), figures.clone()));
    figures
}

/// The notification dispatcher's reports, as metrics.
pub struct Observed;

impl launchway_notify::dispatch::DispatchObserver for Observed {
    fn step_finished(&self, step: &str, outcome: &str, seconds: f64) {
        step_finished(step, outcome, seconds);
    }

    fn notification(&self, delivered: bool) {
        notification(delivered);
    }
}
