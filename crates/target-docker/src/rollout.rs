//! A rolling update on one Docker engine.
//!
//! Each turn of the loop reads the app's replicas back from the engine, asks the pure
//! planner what to start and stop, does it, and otherwise waits for whichever comes
//! first: the next health probe, a container dying (Docker's event stream), or the
//! deadline. There is no fixed sleep anywhere; a resumed rollout is just another turn.
//!
//! While old replicas still serve, the first new ones must stay healthy for the
//! service's settle window before any old replica is stopped (Kubernetes'
//! `minReadySeconds`, for the first batch only): a release that crashes seconds after
//! turning healthy is caught while the last good one still serves in full. Later
//! batches go on as soon as they are healthy; verification then watches the whole new
//! set for the window again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use launchway_manifest::{Strategy, format_duration};
use launchway_target::rolling::{self, Health, ReplicaView, Snapshot};
use launchway_target::{Progress, ReplicaRef, RolloutError, TargetEvent, TargetReport};
use tokio::time::Instant;

use crate::health::{self, HealthTracker, Verdict};
use crate::proxy::{self, ProxyClient};
use crate::replicas::{self, DockerReplica};
use crate::{DockerTarget, ServiceRollout};

/// How many log lines of a failing replica are kept for the report.
const LOG_LINES: usize = 20;

/// What a rollout is asked to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The revision replaces every other replica, a batch at a time, per the strategy.
    Rolling,
    /// The revision's whole set runs, healthy, beside the others, which keep every
    /// request (a progressive strategy's start; with nothing else serving, the new set
    /// takes the requests).
    Preview,
    /// The revision takes all requests and every other replica is removed: its missing
    /// replicas start first, then the others leave at once (a progressive strategy's
    /// end, and a rollback to the set that served).
    Takeover,
}

impl Mode {
    pub(crate) fn start(strategy: &Strategy) -> Mode {
        if strategy.is_progressive() { Mode::Preview } else { Mode::Rolling }
    }

    pub(crate) fn finish(strategy: &Strategy) -> Mode {
        if strategy.is_progressive() { Mode::Takeover } else { Mode::Rolling }
    }
}

pub(crate) async fn run(
    target: &DockerTarget,
    rollout: ServiceRollout<'_>,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<(), RolloutError> {
    let timeout = rollout.spec.strategy.timeout();
    let (max_surge, max_unavailable) = match (&rollout.spec.strategy, mode) {
        (Strategy::Rolling { max_surge, max_unavailable, .. }, Mode::Rolling) => (*max_surge, *max_unavailable),
        // The whole new set beside the old one, which stays until the new one is ready.
        _ => (rollout.spec.replicas, 0),
    };
    let network_id = target.ensure_network(rollout.env).await?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut deaths = Box::pin(target.container_deaths(rollout.app, rollout.env));
    let mut tracker = HealthTracker::new(rollout.spec.health.clone());
    let mut seen: HashSet<String> = HashSet::new();
    // Containers launchway itself stopped: their deaths are expected.
    let mut removed: HashSet<String> = HashSet::new();
    let mut started_at: HashMap<String, Instant> = HashMap::new();
    let grace = rollout.spec.stop_grace_period.as_secs().max(1) as i32;
    let desired = rollout.spec.replicas;
    let window = rollout.spec.settle_window();
    // When each new replica was first seen healthy, and whether the first batch has
    // settled (decided at the first look: only needed while old replicas serve).
    let mut healthy_since: HashMap<String, Instant> = HashMap::new();
    let mut settled: Option<bool> = None;
    // Replicas of the revision already broken when the rollout began (crashed and
    // restarted since they were verified, or not running): replaced with fresh ones,
    // which are watched. Their own deaths meanwhile are expected.
    let broken = broken_replicas(target, &rollout, progress).await?;
    // With an entry point, the proxy's route follows the replicas that serve.
    let proxy = match &rollout.spec.ingress {
        Some(_) => Some(ProxyClient::ensure(&target.docker, &target.http).await?),
        None => None,
    };
    // Replicas of other revisions keep requests only if the route had them already: a
    // rollback must not hand traffic to the failed release it is undoing.
    let serving_before = match &proxy {
        Some(proxy) => proxy.serving(&rollout).await?,
        None => Vec::new(),
    };
    let mut routed: Option<Vec<std::net::SocketAddr>> = None;

    loop {
        let replicas = replicas::list(&target.docker, rollout.env, Some(rollout.app)).await?;
        let now = Instant::now();
        let mut snapshot = Snapshot { desired, max_surge, max_unavailable, new: Vec::new(), old: Vec::new() };
        // Restarted replicas still serve between crashes: one is replaced at a time,
        // and only while every other replica of the revision is healthy.
        let is_broken = |replica: &DockerReplica| replica.containers().any(|c| broken.contains(&c.id));
        let mut may_replace = !replicas.iter().any(|replica| {
            replica.revision == rollout.revision
                && !is_broken(replica)
                && !(replica.is_running() && tracker.verdict(&replica.key()) == Some(Verdict::Healthy))
        });
        for replica in &replicas {
            let key = replica.key();
            if replica.revision != rollout.revision {
                let health = if replica.is_running() { Health::Healthy } else { Health::Down };
                if mode != Mode::Preview {
                    snapshot.old.push(view(replica, health));
                }
                continue;
            }
            if is_broken(replica) && (!replica.is_running() || may_replace) {
                may_replace &= !replica.is_running();
                snapshot.new.push(view(replica, Health::Down));
                continue;
            }
            if !replica.is_running() {
                if let Some(stopped) = replica.stopped_container().filter(|c| c.exit_code.is_some()) {
                    let reason = format!(
                        "replica {} exited with code {} during the rollout",
                        replica.name(),
                        stopped.exit_code.unwrap_or_default()
                    );
                    return Err(unhealthy(target, replica, reason).await);
                }
                // Created but never started (an interrupted attempt): replaced.
                snapshot.new.push(view(replica, Health::Down));
                continue;
            }
            if seen.insert(key.clone()) && !started_at.contains_key(&key) {
                progress
                    .report(TargetEvent::new(
                        TargetReport::ReplicaAdopted(replica_ref(replica, None)),
                        format!("found {} already running, checking its health", replica.name()),
                    ))
                    .await;
            }
            tracker.track(&key, now);
            let health = match tracker.verdict(&key) {
                Some(Verdict::Healthy) if settled == Some(false) => {
                    let since = *healthy_since.entry(key.clone()).or_insert(now);
                    if now >= since + window {
                        settled = Some(true);
                        let message =
                            format!("{} stayed healthy for {}: rolling on", replica.name(), format_duration(window));
                        progress
                            .report(TargetEvent::new(TargetReport::ReplicaSettled(replica_ref(replica, None)), message))
                            .await;
                        Health::Healthy
                    } else {
                        Health::Starting
                    }
                }
                Some(Verdict::Healthy) => Health::Healthy,
                Some(Verdict::Failed) => {
                    let reason = format!(
                        "replica {} failed its health check: {}",
                        replica.name(),
                        tracker.last_error(&key).unwrap_or("unhealthy")
                    );
                    return Err(unhealthy(target, replica, reason).await);
                }
                _ => Health::Starting,
            };
            snapshot.new.push(view(replica, health));
        }

        if settled.is_none() {
            // With nothing to protect, or no window asked, the snapshot stands as built.
            // A preview stops nothing; a takeover follows a preview that was watched
            // (or goes back to a set that served).
            let old_serving = snapshot.old.iter().any(|replica| replica.health == Health::Healthy);
            let hold = old_serving && !window.is_zero() && mode == Mode::Rolling;
            settled = Some(!hold);
            if hold {
                // Built before the decision: healthy new replicas start their watch now.
                for view in &mut snapshot.new {
                    if view.health == Health::Healthy {
                        healthy_since.entry(view.id.clone()).or_insert(now);
                        view.health = Health::Starting;
                    }
                }
                progress
                    .report(TargetEvent::new(
                        TargetReport::RolloutSettling { window_ms: window.as_millis() as u64 },
                        format!(
                            "the first new replicas must stay healthy for {} before any old one stops",
                            format_duration(window)
                        ),
                    ))
                    .await;
            }
        }
        // A preview beside replicas that serve leaves the route (and its weights) as it
        // is: traffic moves only when asked.
        let route_untouched = mode == Mode::Preview
            && replicas.iter().any(|replica| {
                replica.revision != rollout.revision
                    && replica.is_running()
                    && proxy::endpoint(&rollout, replica).is_some_and(|address| serving_before.contains(&address))
            });
        if let Some(proxy) = proxy.as_ref().filter(|_| !route_untouched) {
            // Replicas that served keep serving until stopped (or, of this revision,
            // until a check fails them); others once their checks pass. Once the whole
            // revision qualifies, it serves alone.
            let (ours, others): (Vec<_>, Vec<_>) = replicas
                .iter()
                .filter(|replica| replica.is_running())
                .filter_map(|replica| Some((replica, proxy::endpoint(&rollout, replica)?)))
                .filter(|(replica, address)| {
                    let verdict = tracker.verdict(&replica.key());
                    match replica.revision == rollout.revision {
                        true if serving_before.contains(address) => verdict != Some(Verdict::Failed),
                        true => verdict == Some(Verdict::Healthy),
                        false => serving_before.contains(address),
                    }
                })
                .partition(|(replica, _)| replica.revision == rollout.revision);
            let complete = ours.len() >= desired as usize;
            let serving: Vec<std::net::SocketAddr> =
                ours.into_iter().chain(others.into_iter().filter(|_| !complete)).map(|(_, address)| address).collect();
            if routed.as_ref() != Some(&serving) {
                proxy.route(&rollout, &serving).await?;
                routed = Some(serving);
            }
        }
        let step = rolling::next_step(&snapshot);
        if step.done {
            return Ok(());
        }
        if now >= deadline {
            let starting: Vec<&DockerReplica> = replicas
                .iter()
                .filter(|r| r.revision == rollout.revision && tracker.verdict(&r.key()) != Some(Verdict::Healthy))
                .collect();
            let reason = format!(
                "the rollout did not finish within {}: {} of {desired} new replicas healthy{}",
                format_duration(timeout),
                snapshot.new.iter().filter(|r| r.health == Health::Healthy).count(),
                starting
                    .first()
                    .and_then(|r| tracker.last_error(&r.key()))
                    .map(|error| format!(" (last probe: {error})"))
                    .unwrap_or_default()
            );
            let logs = match starting.first().and_then(|r| r.primary.as_ref()) {
                Some(primary) => replicas::log_tail(&target.docker, &primary.id, LOG_LINES).await,
                None => Vec::new(),
            };
            return Err(RolloutError::TimedOut { reason, logs });
        }

        if !step.stop.is_empty() || !step.start.is_empty() {
            let stopping: Vec<&DockerReplica> = replicas.iter().filter(|r| step.stop.contains(&r.key())).collect();
            if let (Some(proxy), Some(serving)) = (&proxy, &mut routed) {
                // No new request for them, and those under way finish, before they stop.
                let leaving: Vec<std::net::SocketAddr> =
                    stopping.iter().filter_map(|replica| proxy::endpoint(&rollout, replica)).collect();
                serving.retain(|address| !leaving.contains(address));
                proxy.route(&rollout, serving).await?;
                let drains = leaving.iter().map(|address| proxy.drain(*address, rollout.spec.stop_grace_period));
                for drained in join_all(drains).await {
                    drained?;
                }
            }
            removed.extend(stopping.iter().flat_map(|replica| replica.containers().map(|c| c.id.clone())));
            let removals = stopping.iter().map(|replica| timed(replicas::remove(&target.docker, replica, grace)));
            for (replica, (result, took)) in stopping.iter().zip(join_all(removals).await) {
                result?;
                tracker.forget(&replica.key());
                healthy_since.remove(&replica.key());
                let message = if replica.revision == rollout.revision {
                    format!("removed {}", replica.name())
                } else {
                    format!("stopped {} (revision {})", replica.name(), replica.revision)
                };
                let stopped = TargetReport::ReplicaStopped(replica_ref(replica, Some(took)));
                progress.report(TargetEvent::new(stopped, message)).await;
            }
            let starts = step.start.iter().map(|&slot| timed(replicas::start(target, &network_id, &rollout, slot)));
            for (slot, (result, took)) in step.start.iter().zip(join_all(starts).await) {
                result?;
                let key = format!("{}/{slot}", rollout.revision);
                let started_now = Instant::now();
                started_at.insert(key.clone(), started_now);
                seen.insert(key.clone());
                tracker.track(&key, started_now);
                let name = replicas::container_name(&rollout, *slot, rollout.spec.primary(), true);
                progress
                    .report(TargetEvent::new(
                        TargetReport::ReplicaStarted(ReplicaRef {
                            name: name.clone(),
                            slot: *slot,
                            revision: rollout.revision.to_owned(),
                            took_ms: Some(took.as_millis() as u64),
                        }),
                        format!("started {name} ({} of {desired})", slot + 1),
                    ))
                    .await;
            }
            continue;
        }

        // Nothing to do until a probe is due or something happens on the engine.
        let due = tracker.due(now);
        if !due.is_empty() {
            probe(target, &rollout, &replicas, &due, &mut tracker, &started_at, progress).await;
            continue;
        }
        let settle_due = match settled {
            Some(false) => healthy_since.values().map(|since| *since + window).min(),
            _ => None,
        };
        let wake = tracker
            .next_due()
            .into_iter()
            .chain(settle_due)
            .min()
            .unwrap_or(now + Duration::from_secs(1))
            .min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            Some((died, exit_code)) = deaths.next() => {
                if removed.contains(&died) || broken.contains(&died) {
                    continue;
                }
                // A new replica's container dying is a failed release, even if the
                // restart policy brings it back before the next listing would show it.
                let current = replicas::list(&target.docker, rollout.env, Some(rollout.app)).await?;
                let dead = current
                    .iter()
                    .filter(|replica| replica.revision == rollout.revision)
                    .find(|replica| replica.containers().any(|container| container.id == died));
                if let Some(replica) = dead {
                    let reason = format!(
                        "replica {} exited with code {} during the rollout",
                        replica.name(),
                        exit_code.map_or_else(|| "unknown".to_owned(), |code| code.to_string())
                    );
                    return Err(unhealthy(target, replica, reason).await);
                }
            }
        }
    }
}

/// Container ids of the revision's replicas that are broken as the rollout begins:
/// restarted after crashing, or not running. Each is reported as about to be replaced.
async fn broken_replicas(
    target: &DockerTarget,
    rollout: &ServiceRollout<'_>,
    progress: &dyn Progress,
) -> Result<HashSet<String>, RolloutError> {
    let replicas = replicas::list(&target.docker, rollout.env, Some(rollout.app)).await?;
    let mut broken = HashSet::new();
    for replica in replicas.iter().filter(|r| r.revision == rollout.revision) {
        let containers: Vec<String> = replica.containers().map(|container| container.id.clone()).collect();
        let restarts = replicas::replica_restarts(&target.docker, &containers).await?;
        let why = if !replica.is_running() {
            let code = replica.stopped_container().and_then(|container| container.exit_code);
            format!("is not running{}", code.map(|code| format!(" (exit code {code})")).unwrap_or_default())
        } else if restarts > 0 {
            format!("was restarted {restarts} time{} after crashing", if restarts == 1 { "" } else { "s" })
        } else {
            continue;
        };
        broken.extend(containers);
        let message = format!("{} {why}: replacing it", replica.name());
        progress.report(TargetEvent::new(TargetReport::ReplicaReplacing(replica_ref(replica, None)), message)).await;
    }
    Ok(broken)
}

/// Probes the due replicas at once and records the results.
async fn probe(
    target: &DockerTarget,
    rollout: &ServiceRollout<'_>,
    replicas: &[DockerReplica],
    due: &[String],
    tracker: &mut HealthTracker,
    started_at: &HashMap<String, Instant>,
    progress: &dyn Progress,
) {
    let Some(check) = &rollout.spec.health else {
        return;
    };
    let probes = due.iter().filter_map(|key| {
        let replica = replicas.iter().find(|r| &r.key() == key)?;
        Some(async move {
            let result = match replica.host_port(check.port) {
                Some(port) => health::probe(&target.http, port, check).await,
                None => Err(format!("port {} is not published", check.port)),
            };
            (replica, result)
        })
    });
    for (replica, result) in join_all(probes).await {
        let key = replica.key();
        let error = result.as_ref().err().cloned();
        match tracker.record(&key, result, Instant::now()) {
            Some(Verdict::Healthy) => {
                let after = started_at.get(&key).map(|at| at.elapsed());
                let message = match after {
                    Some(after) => format!("{} is healthy after {}", replica.name(), format_duration(after)),
                    None => format!("{} is healthy", replica.name()),
                };
                progress
                    .report(TargetEvent::new(TargetReport::ReplicaHealthy(replica_ref(replica, after)), message))
                    .await;
            }
            Some(Verdict::Failed) => {
                let message = format!("{} is unhealthy: {}", replica.name(), error.unwrap_or_default());
                progress
                    .report(TargetEvent::new(TargetReport::ReplicaUnhealthy(replica_ref(replica, None)), message))
                    .await;
            }
            _ => {}
        }
    }
}

/// Runs a Docker call and says how long the engine took over it: the deploy-overhead
/// benchmark tells launchway's own time from the engine's with this.
async fn timed<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = call.await;
    (result, started.elapsed())
}

async fn unhealthy(target: &DockerTarget, replica: &DockerReplica, reason: String) -> RolloutError {
    let logs = match &replica.primary {
        Some(primary) => replicas::log_tail(&target.docker, &primary.id, LOG_LINES).await,
        None => Vec::new(),
    };
    RolloutError::Unhealthy { reason, logs }
}

fn view(replica: &DockerReplica, health: Health) -> ReplicaView {
    ReplicaView { id: replica.key(), slot: replica.slot, health }
}

/// The replica as a report names it; `took` is how long the action on it took.
pub(crate) fn replica_ref(replica: &DockerReplica, took: Option<Duration>) -> ReplicaRef {
    ReplicaRef {
        name: replica.name(),
        slot: replica.slot,
        revision: replica.revision.clone(),
        took_ms: took.map(|took| took.as_millis() as u64),
    }
}
