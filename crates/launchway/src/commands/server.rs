//! `launchway server`: the controller, until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use launchway_secrets::Secrets;
use launchway_server::ServerConfig;
use launchway_source::RepoThread;
use launchway_store::{Event, EventBody};
use launchway_target_ecs::SsmParameters;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::ServerArgs;
use crate::context::{Context, repo_cache_dir};
use crate::exit;

pub async fn run(context: &Context, args: ServerArgs) -> Result<u8> {
    let engine = context.engine().await?;
    let location = context.global.repo.clone();
    let repo = tokio::task::spawn_blocking(move || RepoThread::open(&location, repo_cache_dir()))
        .await?
        .with_context(|| format!("could not open the config repo {}", context.global.repo))?;
    let config = ServerConfig {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        public_url: args.public_url,
        webhook_secret: args.webhook_secret.filter(|secret| !secret.is_empty()),
        branch: args.branch,
        poll_interval: args.poll,
        max_concurrent_runs: args.workers,
        notify_outbound: launchway_notify::OutboundPolicy {
            allow: args
                .notify_allow
                .iter()
                .map(|host| host.trim().to_owned())
                .filter(|host| !host.is_empty())
                .collect(),
        },
        edge: launchway_server::edge::EdgeLimits {
            max_connections: args.max_connections.max(1),
            header_read_timeout: args.header_timeout,
            body_read_timeout: args.body_timeout,
        },
        secrets: Secrets::with_parameter_store(Arc::new(SsmParameters::from_default_chain())),
        slack: slack_config(args.slack_signing_secret, &args.slack_users)?,
        trusted_proxies: args.trusted_proxies.clone(),
        // Under the 10 s after which a signal handler quits regardless.
        shutdown_grace: Duration::from_secs(8),
        ..ServerConfig::default()
    };
    let has_secret = config.webhook_secret.is_some();
    tokio::spawn(log_run_transitions(engine.subscribe()));
    let server = launchway_server::start(config, engine, repo).await?;
    eprintln!(
        "launchway server on http://{} following {} (branch {}){}",
        server.addr,
        context.global.repo,
        server.reconciler.branch(),
        server.metrics_addr.map(|addr| format!(", metrics on http://{addr}/metrics")).unwrap_or_default()
    );
    if !has_secret {
        eprintln!("note: no webhook secret (LAUNCHWAY_WEBHOOK_SECRET): webhooks are refused; polling still works");
    }
    context.stop.cancelled().await;
    eprintln!("shutting down: runs stop at their next step boundary and resume on the next start");
    server.shut_down().await;
    Ok(exit::SUCCESS)
}

/// Slack interactivity from `--slack-signing-secret` and `--slack-user ID=IDENTITY`.
fn slack_config(secret: Option<String>, users: &[String]) -> Result<Option<launchway_server::SlackConfig>> {
    let mut mapped = std::collections::BTreeMap::new();
    for pair in users.iter().map(|pair| pair.trim()).filter(|pair| !pair.is_empty()) {
        let (id, identity) = pair
            .split_once('=')
            .filter(|(id, identity)| !id.trim().is_empty() && !identity.trim().is_empty())
            .ok_or_else(|| anyhow::anyhow!("--slack-user {pair:?}: expected SLACK_ID=IDENTITY"))?;
        mapped.insert(id.trim().to_owned(), identity.trim().to_owned());
    }
    match secret.filter(|secret| !secret.is_empty()) {
        Some(signing_secret) => Ok(Some(launchway_server::SlackConfig { signing_secret, users: mapped })),
        None if !mapped.is_empty() => {
            anyhow::bail!("--slack-user needs --slack-signing-secret (LAUNCHWAY_SLACK_SIGNING_SECRET)")
        }
        None => Ok(None),
    }
}

/// One log line per run transition (`launchway::runs`, on by default): an operator
/// watching the server sees every run go by, and a log pipeline gets them as fields
/// with `--log-format json`.
async fn log_run_transitions(mut events: tokio::sync::broadcast::Receiver<Event>) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(target: "launchway::runs", missed, "run transitions were not logged; the audit log has them");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let state = match event.body() {
            EventBody::RunCreated(_) => "created".to_owned(),
            EventBody::RunResumed { state, .. } => format!("resumed at {state}"),
            EventBody::RunEntered { state, .. } => state.to_string(),
            _ => continue,
        };
        tracing::info!(
            target: "launchway::runs",
            run = event.run_id,
            app = event.app.as_deref().unwrap_or_default(),
            env = event.env.as_deref().unwrap_or_default(),
            state,
            "{}",
            event.message
        );
    }
}
