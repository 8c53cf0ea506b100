//! Notifications from the CLI: the manifest's `notifications:` apply wherever a run is
//! driven. A command that drives runs marks where the event log stands before it
//! starts ([`before_runs`]), and once its runs are done sends what is due
//! ([`after_runs`]) through the server's own dispatcher — unless a `launchway server`
//! on the same database holds the notifications lease, which then sends them itself.
//! Either way each message goes out once.

use std::path::PathBuf;
use std::sync::Arc;

use launchway_engine::Engine;
use launchway_notify::dispatch::{self as notifications, Dispatcher, NotificationRules, Sent, Unobserved};
use launchway_notify::{Notifier, OutboundPolicy, RetryPolicy};
use launchway_secrets::Secrets;
use launchway_source::ConfigRepo;
use launchway_target_ecs::SsmParameters;

use crate::context::{Context, repo_cache_dir};

/// The config as it is now: the manifest this command loaded, else the one at `--ref`
/// of the config repo.
struct FromConfigRepo {
    repo: String,
    git_ref: String,
    cache: PathBuf,
    loaded: Option<Vec<launchway_manifest::Notification>>,
}

#[async_trait::async_trait]
impl NotificationRules for FromConfigRepo {
    async fn current_notifications(&self) -> Option<Vec<launchway_manifest::Notification>> {
        if let Some(loaded) = &self.loaded {
            return Some(loaded.clone());
        }
        let (repo, git_ref, cache) = (self.repo.clone(), self.git_ref.clone(), self.cache.clone());
        let read = tokio::task::spawn_blocking(move || {
            let config = ConfigRepo::open(&repo, &cache).ok()?;
            let commit = config.resolve(&git_ref).ok()?;
            config.manifest_at(&commit).ok()?.ok().map(|validated| validated.manifest.notifications)
        });
        read.await.ok().flatten()
    }
}

/// Before a command creates or drives runs: on a database nobody has sent
/// notifications from yet, marks the log's end, so that this command's events are
/// announced and earlier history is not.
pub async fn before_runs(engine: &Engine) {
    if let Err(error) = notifications::starting_point(engine.store().as_ref()).await {
        tracing::warn!(error = format!("{error:#}"), "could not mark where notifications start");
    }
}

/// Once the command's runs are done (or parked): sends the notifications due, unless a
/// server sends them. `loaded` is the manifest's notifications, when the command read
/// one.
pub async fn after_runs(context: &Context, engine: &Engine, loaded: Option<Vec<launchway_manifest::Notification>>) {
    let rules = FromConfigRepo {
        repo: context.global.repo.clone(),
        git_ref: context.global.git_ref.clone(),
        cache: repo_cache_dir(),
        loaded,
    };
    let allow = std::env::var("LAUNCHWAY_NOTIFY_ALLOW").unwrap_or_default();
    let outbound = OutboundPolicy {
        allow: allow.split(',').map(str::trim).filter(|host| !host.is_empty()).map(str::to_owned).collect(),
    };
    let dispatcher = Arc::new(Dispatcher {
        engine: engine.clone(),
        rules: Arc::new(rules),
        notifier: Notifier::new(RetryPolicy::default(), outbound),
        public_url: std::env::var("LAUNCHWAY_PUBLIC_URL").ok().filter(|url| !url.is_empty()),
        secrets: Secrets::with_parameter_store(Arc::new(SsmParameters::from_default_chain())),
        // Slack's buttons need a server to answer them; the CLI sends only when none runs.
        interactive_slack: false,
        sending: tokio_util::task::TaskTracker::new(),
        in_order: Default::default(),
        observer: Arc::new(Unobserved),
    });
    match dispatcher.send_due().await {
        Ok(Sent::Caught) => {}
        Ok(Sent::LeftTo) => tracing::info!("a launchway server sends this database's notifications"),
        Err(error) => eprintln!("warning: notifications could not be sent: {error:#}"),
    }
}
