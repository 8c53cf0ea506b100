//! A rolling update on one Docker engine.
//!
//! Each turn of the loop reads the app's replicas back from the engine, asks the pure
//! planner what to start and stop, does it, and otherwise waits for whichever comes
//! first: the next health probe, a container dying (Docker's event stream), or the
//! deadline. There is no fixed sleep anywhere; a resumed rollout is just another turn.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use launchway_manifest::Strategy;
use launchway_target::rolling::{self, Health, ReplicaView, Snapshot};
use launchway_target::{Progress, RolloutError, TargetEvent};
use serde_json::json;
use tokio::time::Instant;

use crate::health::{self, HealthTracker, Verdict};
use crate::replicas::{self, DockerReplica};
use crate::{DockerTarget, ServiceRollout};

/// How many log lines of a failing replica are kept for the report.
const LOG_LINES: usize = 20;

pub(crate) async fn run(
    target: &DockerTarget,
    rollout: ServiceRollout<'_>,
    progress: &dyn Progress,
) -> Result<(), RolloutError> {
    let Strategy::Rolling { max_surge, max_unavailable, timeout } = rollout.spec.strategy;
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

    loop {
        let replicas = replicas::list(&target.docker, rollout.env, Some(rollout.app)).await?;
        let now = Instant::now();
        let mut snapshot = Snapshot { desired, max_surge, max_unavailable, new: Vec::new(), old: Vec::new() };
        for replica in &replicas {
            let key = replica.key();
            if replica.revision != rollout.revision {
                let health = if replica.is_running() { Health::Healthy } else { Health::Down };
                snapshot.old.push(view(replica, health));
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
                    .report(event(
                        "replica.adopted",
                        format!("found {} already running, checking its health", replica.name()),
                        replica,
                    ))
                    .await;
            }
            tracker.track(&key, now);
            let health = match tracker.verdict(&key) {
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
                humanize(timeout),
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
            removed.extend(stopping.iter().flat_map(|replica| replica.containers().map(|c| c.id.clone())));
            let removals = stopping.iter().map(|replica| timed(replicas::remove(&target.docker, replica, grace)));
            for (replica, (result, took)) in stopping.iter().zip(join_all(removals).await) {
                result?;
                tracker.forget(&replica.key());
                let message = if replica.revision == rollout.revision {
                    format!("removed {}", replica.name())
                } else {
                    format!("stopped {} (revision {})", replica.name(), replica.revision)
                };
                let mut event = event("replica.stopped", message, replica);
                event.data["took_ms"] = json!(took.as_millis() as u64);
                progress.report(event).await;
            }
            let starts =
                step.start.iter().map(|&slot| timed(replicas::start(&target.docker, &network_id, &rollout, slot)));
            for (slot, (result, took)) in step.start.iter().zip(join_all(starts).await) {
                result?;
                let key = format!("{}/{slot}", rollout.revision);
                let started_now = Instant::now();
                started_at.insert(key.clone(), started_now);
                seen.insert(key.clone());
                tracker.track(&key, started_now);
                let name = replicas::container_name(&rollout, *slot, rollout.spec.primary(), true);
                progress
                    .report(TargetEvent {
                        kind: "replica.started",
                        message: format!("started {name} ({} of {desired})", slot + 1),
                        data: json!({
                            "name": name,
                            "slot": slot,
                            "revision": rollout.revision,
                            "took_ms": took.as_millis() as u64,
                        }),
                    })
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
        let wake = tracker.next_due().unwrap_or(now + Duration::from_secs(1)).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            Some((died, exit_code)) = deaths.next() => {
                if removed.contains(&died) {
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
                    Some(after) => format!("{} is healthy after {}", replica.name(), humanize(after)),
                    None => format!("{} is healthy", replica.name()),
                };
                let mut event = event("replica.healthy", message, replica);
                event.data["after_ms"] = json!(after.map(|after| after.as_millis() as u64));
                progress.report(event).await;
            }
            Some(Verdict::Failed) => {
                let message = format!("{} is unhealthy: {}", replica.name(), error.unwrap_or_default());
                progress.report(event("replica.unhealthy", message, replica)).await;
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

fn event(kind: &'static str, message: String, replica: &DockerReplica) -> TargetEvent {
    TargetEvent {
        kind,
        message,
        data: json!({"name": replica.name(), "slot": replica.slot, "revision": replica.revision}),
    }
}

pub(crate) fn humanize(duration: Duration) -> String {
    if duration >= Duration::from_secs(60) {
        format!("{}m{}s", duration.as_secs() / 60, duration.as_secs() % 60)
    } else {
        format!("{:.2}s", duration.as_secs_f64())
    }
}
