//! Verification: a rolled-out release counts as verified only once every new replica
//! has stayed up and healthy for the service's settle window.
//!
//! A release whose containers pass their first health check and die seconds later is
//! the failure users fear most from a deploy tool, so the window is watched, not
//! waited out: container deaths come from Docker's event stream the moment they
//! happen, every replica is probed throughout, and restart counts are compared before
//! and after (a death between two looks, or while nothing was watching, still shows).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use launchway_target::{Progress, RolloutError, TargetEvent, TargetReport};
use tokio::time::Instant;

use crate::health;
use crate::replicas::{self, DockerReplica};
use crate::rollout::replica_ref;
use crate::{DockerTarget, ServiceRollout};
use launchway_manifest::format_duration;

/// How many log lines of a failing replica are kept for the report.
const LOG_LINES: usize = 20;

/// Probes during the window come this often at most, and at least ten times a window.
const MIN_PROBE_GAP: Duration = Duration::from_millis(100);

pub(crate) async fn run(
    target: &DockerTarget,
    rollout: ServiceRollout<'_>,
    progress: &dyn Progress,
) -> Result<(), RolloutError> {
    // Subscribed before the first look: a death after it is in the stream, one before
    // it shows in the listing or in the restart counts.
    let mut deaths = Box::pin(target.container_deaths(rollout.app, rollout.env));
    let replicas = replicas::list(&target.docker, rollout.env, Some(rollout.app)).await?;
    let current = expected_replicas(&rollout, &replicas)?;
    let started_counts = restart_counts(target, &current).await?;
    let containers: HashMap<String, &DockerReplica> = current
        .iter()
        .flat_map(|replica| replica.containers().map(move |container| (container.id.clone(), *replica)))
        .collect();

    let window = rollout.spec.settle_window();
    let started = Instant::now();
    let deadline = started + window;
    let total = current.len();
    progress
        .report(TargetEvent::new(
            TargetReport::VerifyWatching {
                what: format!("revision {}", rollout.revision),
                window_ms: window.as_millis() as u64,
            },
            format!(
                "watching {} for {}: {total}/{total} replicas {}",
                rollout.revision,
                format_duration(window),
                if rollout.spec.health.is_some() { "healthy" } else { "running" }
            ),
        ))
        .await;

    let check = rollout.spec.health.as_ref();
    let probe_gap = check.map(|check| probe_gap(window, check.start_interval, check.interval));
    // Consecutive failed probes per replica; the window ends only with none pending.
    let mut failing: HashMap<String, (u32, String)> = HashMap::new();
    let mut next_probe = started;
    loop {
        let now = Instant::now();
        if now >= deadline && failing.is_empty() && (check.is_none() || next_probe > deadline) {
            break;
        }
        let wake = match probe_gap {
            Some(_) => next_probe,
            None => deadline,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            Some((died, exit_code)) = deaths.next() => {
                if let Some(replica) = containers.get(&died) {
                    let reason = format!(
                        "replica {} exited with code {} {} after the rollout, while it was being verified",
                        replica.name(),
                        exit_code.map_or_else(|| "unknown".to_owned(), |code| code.to_string()),
                        format_duration(started.elapsed()),
                    );
                    return Err(unhealthy(target, replica, reason).await);
                }
                continue;
            }
        }
        let (Some(check), Some(gap)) = (check, probe_gap) else { continue };
        if Instant::now() < next_probe {
            continue;
        }
        let probes = current.iter().map(|replica| async move {
            let result = match replica.host_port(check.port) {
                Some(port) => health::probe(&target.http, port, check).await,
                None => Err(format!("port {} is not published", check.port)),
            };
            (*replica, result)
        });
        for (replica, result) in join_all(probes).await {
            let key = replica.key();
            match result {
                Ok(()) => {
                    failing.remove(&key);
                }
                Err(error) => {
                    let entry = failing.entry(key).or_insert((0, String::new()));
                    entry.0 += 1;
                    entry.1 = error.clone();
                    if entry.0 == 1 {
                        progress
                            .report(TargetEvent::new(
                                TargetReport::ReplicaUnhealthy(replica_ref(replica, None)),
                                format!("{} failed a health check while being verified: {error}", replica.name()),
                            ))
                            .await;
                    }
                    if entry.0 >= check.unhealthy_threshold {
                        let reason = format!(
                            "replica {} failed its health check {} times in a row {} after the rollout: {error}",
                            replica.name(),
                            entry.0,
                            format_duration(started.elapsed()),
                        );
                        return Err(unhealthy(target, replica, reason).await);
                    }
                }
            }
        }
        next_probe = Instant::now() + gap;
    }

    // Still the same containers, all running, none restarted meanwhile.
    let after = replicas::list(&target.docker, rollout.env, Some(rollout.app)).await?;
    let now_current = expected_replicas(&rollout, &after)?;
    let ended_counts = restart_counts(target, &now_current).await?;
    for replica in &now_current {
        for container in replica.containers() {
            let before = started_counts.get(&container.id);
            let Some(before) = before else {
                let reason = format!("replica {} was replaced while it was being verified", replica.name());
                return Err(RolloutError::Unhealthy { reason, logs: Vec::new() });
            };
            let after = ended_counts.get(&container.id).copied().unwrap_or_default();
            if after > *before {
                let reason = format!(
                    "replica {} restarted {} time{} while it was being verified (last exit code {})",
                    replica.name(),
                    after - before,
                    if after - before == 1 { "" } else { "s" },
                    container.exit_code.map_or_else(|| "unknown".to_owned(), |code| code.to_string()),
                );
                return Err(unhealthy(target, replica, reason).await);
            }
        }
    }
    progress
        .report(TargetEvent::new(
            TargetReport::VerifyPassed {
                what: format!("revision {}", rollout.revision),
                watched_ms: started.elapsed().as_millis() as u64,
            },
            format!(
                "{total}/{total} replicas of revision {} {} for {}",
                rollout.revision,
                if check.is_some() { "stayed healthy" } else { "kept running" },
                format_duration(started.elapsed())
            ),
        ))
        .await;
    Ok(())
}

/// Exactly the desired number of replicas of the revision, all running, and nothing
/// else: the shape a finished rollout leaves.
fn expected_replicas<'r>(
    rollout: &ServiceRollout<'_>,
    replicas: &'r [DockerReplica],
) -> Result<Vec<&'r DockerReplica>, RolloutError> {
    let (current, others): (Vec<_>, Vec<_>) = replicas.iter().partition(|r| r.revision == rollout.revision);
    if let Some(other) = others.first() {
        return Err(RolloutError::Unhealthy {
            reason: format!("replica {} of revision {} is still there", other.name(), other.revision),
            logs: Vec::new(),
        });
    }
    let running = current.iter().filter(|replica| replica.is_running()).count();
    if running != rollout.spec.replicas as usize || current.len() != running {
        let stopped = current.iter().find(|replica| !replica.is_running());
        let detail = stopped
            .and_then(|replica| {
                let container = replica.stopped_container()?;
                Some(format!(
                    "; {} is not running{}",
                    replica.name(),
                    container.exit_code.map(|code| format!(" (exit code {code})")).unwrap_or_default()
                ))
            })
            .unwrap_or_default();
        return Err(RolloutError::Unhealthy {
            reason: format!(
                "{running} of {} replicas are running ({} exist){detail}",
                rollout.spec.replicas,
                current.len()
            ),
            logs: Vec::new(),
        });
    }
    Ok(current)
}

/// How many times Docker's restart policy has restarted each container, by id.
async fn restart_counts(
    target: &DockerTarget,
    replicas: &[&DockerReplica],
) -> Result<HashMap<String, i64>, RolloutError> {
    let containers: Vec<&str> =
        replicas.iter().flat_map(|replica| replica.containers().map(|container| container.id.as_str())).collect();
    let counts = join_all(containers.iter().map(|id| replicas::restart_count(&target.docker, id))).await;
    let mut by_id = HashMap::new();
    for (id, count) in containers.into_iter().zip(counts) {
        by_id.insert(id.to_owned(), count?);
    }
    Ok(by_id)
}

/// Probes come at least ten times a window, no faster than the start-up probes and no
/// slower than the check's own interval.
fn probe_gap(window: Duration, start_interval: Duration, interval: Duration) -> Duration {
    (window / 10).clamp(start_interval.max(MIN_PROBE_GAP), interval.max(MIN_PROBE_GAP))
}

async fn unhealthy(target: &DockerTarget, replica: &DockerReplica, reason: String) -> RolloutError {
    let logs = match &replica.primary {
        Some(primary) => replicas::log_tail(&target.docker, &primary.id, LOG_LINES).await,
        None => Vec::new(),
    };
    RolloutError::Unhealthy { reason, logs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_come_ten_times_a_window_within_the_checks_own_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(probe_gap(Duration::from_secs(10), ms(100), Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(probe_gap(Duration::from_secs(600), ms(100), Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(probe_gap(ms(500), ms(50), Duration::from_secs(1)), ms(100), "never faster than 100 ms");
        assert_eq!(probe_gap(Duration::ZERO, ms(250), Duration::from_secs(1)), ms(250));
    }
}
