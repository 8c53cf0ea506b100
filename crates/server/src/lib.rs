//! `launchway server`: the always-on controller.
//!
//! One process serves the HTTP API and webhooks, polls the config repo, drives runs on a
//! bounded set of workers, runs Docker scheduled tasks, sends notifications and exports
//! metrics. Everything it knows is in the store, so it can be killed at any point: on
//! start it resumes interrupted runs and picks up approvals decided while it was down.
//!
//! Module map: `reconciler` (changes → runs), `runtime` (workers that drive runs, the
//! server's tasks, the one stop signal), `api` (routes), `auth` (tokens
//! and roles), `hooks` (webhook verification), `scheduler` (Docker tasks),
//! `notifications` (events → chat), `metrics` (Prometheus), `ui` (the web page).

pub mod api;
pub mod edge;
pub mod hooks;
mod http;
pub mod limits;
pub mod metrics;
pub mod pulls;
pub mod reconciler;
mod routes;
pub mod runtime;
mod scheduler;
pub mod session;
pub mod slack;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use launchway_engine::Engine;
use launchway_notify::{Notifier, OutboundPolicy, RetryPolicy};
use launchway_secrets::Secrets;
use launchway_source::RepoThread;
use launchway_store::{AuditKind, NewEvent};
use tokio::net::TcpListener;

pub use reconciler::{Reconciler, Scope};
pub use runtime::Runtime;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the API and webhooks listen.
    pub listen: SocketAddr,
    /// Where Prometheus scrapes; `None`: no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// The URL people reach the server at, for links in notifications.
    pub public_url: Option<String>,
    /// The secret GitHub signs with and GitLab sends; no secret refuses every webhook.
    pub webhook_secret: Option<String>,
    /// The branch environments with the default source follow; `None`: the repo's.
    pub branch: Option<String>,
    /// How often the config repo is polled (±10% jitter, so replicas do not align).
    pub poll_interval: Duration,
    /// Runs driven at once.
    pub max_concurrent_runs: usize,
    pub notify_retry: RetryPolicy,
    /// Which hosts chat and webhook notifications may go to (never link-local ones).
    pub notify_outbound: OutboundPolicy,
    /// How long shutdown waits for runs to reach a step boundary.
    pub shutdown_grace: Duration,
    /// Connection limits of the API listener.
    pub edge: edge::EdgeLimits,
    /// Resolves `ssm:` / `env:` references in notification URLs.
    pub secrets: Secrets,
    /// Slack's signing secret and who each Slack user is: with it, chat messages carry
    /// buttons that act (`POST /hooks/slack/interactions`).
    pub slack: Option<SlackConfig>,
    /// Reverse proxies in front of the server: from them, a request's source is the
    /// address they name in `X-Forwarded-For` (from anyone else the header is ignored).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// Slack interactivity: the app's signing secret, and Slack user id → launchway identity.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub signing_secret: String,
    pub users: std::collections::BTreeMap<String, String>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            public_url: None,
            webhook_secret: None,
            branch: None,
            poll_interval: Duration::from_secs(60),
            max_concurrent_runs: 16,
            notify_retry: RetryPolicy::default(),
            notify_outbound: OutboundPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            edge: edge::EdgeLimits::default(),
            secrets: Secrets::without_parameter_store(),
            slack: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A server that is up. Dropping it does not stop it: call [`RunningServer::shut_down`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub reconciler: Arc<Reconciler>,
    pub runtime: Arc<Runtime>,
    grace: Duration,
    serving: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops taking requests and work, lets runs reach a persisted step boundary, and
    /// returns when they have (or the grace period is over).
    pub async fn shut_down(self) {
        self.runtime.shut_down(self.grace).await;
        let _ = self.serving.await;
    }
}

/// Starts the server: binds its listeners, resumes what was interrupted, reads the
/// config repo once, and starts the loops.
pub async fn start(config: ServerConfig, engine: Engine, repo: RepoThread) -> Result<RunningServer> {
    let branch = match config.branch.clone() {
        Some(branch) => branch,
        None => repo.call(|repo| repo.default_branch()).await.unwrap_or_else(|| "main".to_owned()),
    };
    let listener = edge::listen(config.listen).with_context(|| format!("could not listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(metrics_addr) => Some(
            TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("could not listen for metrics on {metrics_addr}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    crate::metrics::handle();

    let (runtime, ended_runs) = Runtime::new(engine, config.max_concurrent_runs);
    let reconciler = Arc::new(Reconciler::new(runtime.clone(), repo, branch));
    runtime.spawn(reconciler.clone().follow_ended_runs(ended_runs));
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    // Chat messages and the answers to Slack's buttons go out through one client, under
    // one outbound policy.
    let notifier = Notifier::new(config.notify_retry, config.notify_outbound.clone());
    let dispatcher = Arc::new(launchway_notify::dispatch::Dispatcher {
        engine: runtime.engine().clone(),
        rules: reconciler.clone(),
        notifier: notifier.clone(),
        public_url: Some(public_url),
        secrets: config.secrets.clone(),
        interactive_slack: config.slack.is_some(),
        sending: tokio_util::task::TaskTracker::new(),
        in_order: Default::default(),
        observer: Arc::new(metrics::Observed),
    });
    // Before anything is recorded: none of this start's events is missed.
    dispatcher.starting_point().await.context("could not read where notifications got to")?;
    runtime.spawn(dispatcher.run(runtime.stop().clone()));

    // What a previous process left: interrupted runs, approvals decided meanwhile.
    reconciler.sweep().await.context("could not read unfinished runs")?;
    if let Err(error) = reconciler.reconcile(&Scope::default(), "server start").await {
        tracing::warn!(error = format!("{error:#}"), "the first read of the config repo failed; retrying at each poll");
    }
    runtime.spawn(poll(reconciler.clone(), config.poll_interval));
    runtime.spawn(housekeeping(reconciler.clone()));
    runtime.spawn(scheduler::Scheduler::default().run(runtime.clone()));

    let limiter = Arc::new(limits::FailureLimiter::new(limits::Policy::default()));
    runtime.spawn(summarise_refusals(runtime.clone(), limiter.clone()));
    let state = http::AppState {
        reconciler: reconciler.clone(),
        runtime: runtime.clone(),
        webhook_secret: config.webhook_secret.clone(),
        limiter,
        trusted_proxies: config.trusted_proxies.clone(),
        secure_cookies: config.public_url.as_deref().is_some_and(|url| url.starts_with("https://")),
        pulls: Arc::new(pulls::PullRequestPlans { notifier: notifier.clone(), secrets: config.secrets.clone() }),
        slack: config.slack.as_ref().map(|slack| {
            Arc::new(slack::SlackInteractivity {
                signing_secret: slack.signing_secret.clone(),
                users: slack.users.clone(),
                notifier: notifier.clone(),
            })
        }),
    };
    let shutdown = runtime.stop().clone();
    let app = api::router(state);
    let serving = tokio::spawn(edge::serve(listener, app, config.edge, shutdown));
    if let Some(metrics_listener) = metrics_listener {
        let runtime = runtime.clone();
        let shutdown = runtime.stop().clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let runtime = runtime.clone();
                async move { crate::metrics::render(runtime.engine(), runtime.queue_depth()).await }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(metrics_listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
    }
    Ok(RunningServer { addr, metrics_addr, reconciler, runtime, grace: config.shutdown_grace, serving })
}

/// Reads the config repo every `interval`, give or take 10%.
async fn poll(reconciler: Arc<Reconciler>, interval: Duration) {
    loop {
        let jitter = 0.9 + 0.2 * random_fraction();
        tokio::select! {
            () = reconciler.runtime().stop().cancelled() => return,
            () = tokio::time::sleep(interval.mul_f64(jitter)) => {}
        }
        if let Err(error) = reconciler.reconcile(&Scope::default(), "poll").await {
            tracing::warn!(error = format!("{error:#}"), "polling the config repo failed");
        }
    }
}

/// Once a second: approvals decided elsewhere or expired, and runs whose driver died.
async fn housekeeping(reconciler: Arc<Reconciler>) {
    loop {
        tokio::select! {
            () = reconciler.runtime().stop().cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Err(error) = reconciler.sweep().await {
            tracing::warn!(error = format!("{error:#}"), "could not look for runs to resume");
        }
    }
}

/// Once a second: a summary in the audit log for each source whose failed
/// authentication went past the limit in a window that has ended.
async fn summarise_refusals(runtime: Arc<Runtime>, limiter: Arc<limits::FailureLimiter>) {
    loop {
        tokio::select! {
            () = runtime.stop().cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for summary in limiter.ended(std::time::Instant::now()) {
            let (kind, what) = match summary.failure {
                limits::Failure::Webhook => (AuditKind::WebhookRefusedSummary, "webhooks"),
                limits::Failure::Token => (AuditKind::TokenRefusedSummary, "API calls with wrong tokens"),
            };
            let from = match summary.source {
                Some(source) => source.to_string(),
                None => format!("{} more addresses", summary.sources),
            };
            let event = NewEvent::audit(
                kind,
                format!(
                    "refused {} more {what} from {from} within {} s, past the limit (answered 401, then 429)",
                    summary.suppressed,
                    summary.window.as_secs()
                ),
                serde_json::json!({
                    "source": summary.source,
                    "sources": summary.sources,
                    "suppressed": summary.suppressed,
                    "window_s": summary.window.as_secs(),
                }),
            );
            if let Err(error) = runtime.engine().record(event).await {
                tracing::warn!(%error, "could not record a summary of refused requests");
            }
        }
    }
}

fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests;
