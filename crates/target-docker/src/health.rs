//! Health of the replicas being rolled out, with the meaning Docker's HEALTHCHECK
//! gives the same settings: probe failures during `start_period` do not count, a
//! replica is healthy after `healthy_threshold` consecutive passes and failed after
//! `unhealthy_threshold` consecutive failures. Until a replica has passed, probes come
//! quickly: 10 ms after it starts, then twice as long each time up to `start_interval`,
//! so a fast app is seen healthy within milliseconds; afterwards every `interval`.
//! Quick probing only speeds up noticing success: while a replica starts, at most one
//! failure per `interval` counts, so a slow starter fails no sooner than Docker would
//! fail it (`unhealthy_threshold` intervals).

use std::collections::HashMap;
use std::time::Duration;

use launchway_manifest::{HealthCheck, format_duration};
use tokio::time::Instant;

/// The wait before the second probe of a starting replica; it doubles from there.
const FIRST_START_PROBE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Starting,
    Healthy,
    Failed,
}

#[derive(Debug, Clone)]
struct Tracked {
    started: Instant,
    next_probe: Instant,
    probes: u32,
    passes: u32,
    failures: u32,
    /// When the last failure that counted happened (the start, before any).
    last_counted_failure: Instant,
    verdict: Verdict,
    last_error: Option<String>,
}

/// What the tracker knows of each replica being rolled out, by key.
pub(crate) struct HealthTracker {
    check: Option<HealthCheck>,
    replicas: HashMap<String, Tracked>,
}

impl HealthTracker {
    pub fn new(check: Option<HealthCheck>) -> HealthTracker {
        HealthTracker { check, replicas: HashMap::new() }
    }

    /// Starts tracking a running replica (seen for the first time: just started, or
    /// found running after a resume, when its health is unknown and probed afresh).
    pub fn track(&mut self, key: &str, now: Instant) {
        let verdict = if self.check.is_some() {
            Verdict::Starting
        } else {
            // Without a health check, running is all that can be known.
            Verdict::Healthy
        };
        self.replicas.entry(key.to_owned()).or_insert(Tracked {
            started: now,
            next_probe: now,
            probes: 0,
            passes: 0,
            failures: 0,
            last_counted_failure: now,
            verdict,
            last_error: None,
        });
    }

    pub fn forget(&mut self, key: &str) {
        self.replicas.remove(key);
    }

    pub fn verdict(&self, key: &str) -> Option<Verdict> {
        self.replicas.get(key).map(|tracked| tracked.verdict)
    }

    pub fn last_error(&self, key: &str) -> Option<&str> {
        self.replicas.get(key).and_then(|tracked| tracked.last_error.as_deref())
    }

    /// Keys whose probe is due at `now`.
    pub fn due(&self, now: Instant) -> Vec<String> {
        if self.check.is_none() {
            return Vec::new();
        }
        self.replicas
            .iter()
            .filter(|(_, tracked)| tracked.verdict != Verdict::Failed && tracked.next_probe <= now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// When the next probe is due, if any is.
    pub fn next_due(&self) -> Option<Instant> {
        self.check.as_ref()?;
        self.replicas
            .values()
            .filter(|tracked| tracked.verdict != Verdict::Failed)
            .map(|tracked| tracked.next_probe)
            .min()
    }

    /// Records a probe result; returns the verdict when it changed.
    pub fn record(&mut self, key: &str, result: Result<(), String>, now: Instant) -> Option<Verdict> {
        let check = self.check.as_ref()?;
        let tracked = self.replicas.get_mut(key)?;
        let before = tracked.verdict;
        tracked.probes += 1;
        match result {
            Ok(()) => {
                tracked.passes += 1;
                tracked.failures = 0;
                if tracked.passes >= check.healthy_threshold {
                    tracked.verdict = Verdict::Healthy;
                }
            }
            Err(error) => {
                tracked.passes = 0;
                tracked.last_error = Some(error);
                let starting = tracked.verdict == Verdict::Starting;
                let in_start_period = now < tracked.started + check.start_period;
                let too_soon = now < tracked.last_counted_failure + check.interval;
                if !(starting && (in_start_period || too_soon)) {
                    tracked.failures += 1;
                    tracked.last_counted_failure = now;
                }
                if tracked.failures >= check.unhealthy_threshold {
                    tracked.verdict = Verdict::Failed;
                }
            }
        }
        let interval = if tracked.verdict == Verdict::Starting {
            let backoff = FIRST_START_PROBE.saturating_mul(1 << tracked.probes.min(16));
            backoff.min(check.start_interval)
        } else {
            check.interval
        };
        tracked.next_probe = now + interval;
        (tracked.verdict != before).then_some(tracked.verdict)
    }
}

/// Probes `http://127.0.0.1:{host_port}{path}`: any 2xx or 3xx answer within the
/// timeout passes.
pub(crate) async fn probe(client: &reqwest::Client, host_port: u16, check: &HealthCheck) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{host_port}{}", check.path);
    let response = client
        .get(&url)
        .timeout(check.timeout)
        .send()
        .await
        .map_err(|error| describe_request_error(&error, check.timeout))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {} answered {status}", check.path))
    }
}

fn describe_request_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}", format_duration(timeout));
    }
    if error.is_connect() {
        return "connection refused".to_owned();
    }
    // reqwest's own text is "error sending request for url (…)"; the innermost cause
    // says what happened ("connection closed before message completed": Docker's port
    // proxy accepted the connection but nothing in the container listens yet).
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            port: 8080,
            interval: Duration::from_secs(5),
            start_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            start_period: Duration::from_secs(10),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn passes_the_healthy_threshold_in_a_row_to_become_healthy() {
        let mut tracker = HealthTracker::new(Some(check()));
        let start = Instant::now();
        tracker.track("a", start);
        assert_eq!(tracker.due(start), vec!["a".to_owned()]);
        assert_eq!(tracker.record("a", Ok(()), start), None);
        assert_eq!(tracker.next_due(), Some(start + Duration::from_millis(10)), "quickly while starting");
        assert_eq!(tracker.record("a", Ok(()), start), Some(Verdict::Healthy));
        assert_eq!(tracker.next_due(), Some(start + Duration::from_secs(5)), "interval once healthy");
    }

    #[test]
    fn starting_replicas_are_probed_ever_less_often_up_to_the_start_interval() {
        let mut tracker = HealthTracker::new(Some(check()));
        let start = Instant::now();
        tracker.track("a", start);
        let mut waits = Vec::new();
        for _ in 0..7 {
            tracker.record("a", Err("connection refused".into()), start);
            waits.push(tracker.next_due().expect("due") - start);
        }
        let millis: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [10, 20, 40, 80, 100, 100, 100]);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut tracker = HealthTracker::new(Some(check()));
        let start = Instant::now();
        tracker.track("a", start);
        for _ in 0..10 {
            tracker.record("a", Err("connection refused".into()), start + Duration::from_secs(1));
        }
        assert_eq!(tracker.verdict("a"), Some(Verdict::Starting));
        let after = start + Duration::from_secs(11);
        tracker.record("a", Err("connection refused".into()), after);
        tracker.record("a", Err("connection refused".into()), after + Duration::from_secs(5));
        assert_eq!(
            tracker.record("a", Err("GET /healthz answered 500".into()), after + Duration::from_secs(10)),
            Some(Verdict::Failed)
        );
        assert_eq!(tracker.last_error("a"), Some("GET /healthz answered 500"));
        assert!(tracker.due(after + Duration::from_secs(60)).is_empty(), "failed replicas are not probed");
    }

    #[test]
    fn quick_start_up_probes_do_not_fail_a_slow_starter_early() {
        let mut tracker = HealthTracker::new(Some(HealthCheck { start_period: Duration::ZERO, ..check() }));
        let start = Instant::now();
        tracker.track("a", start);
        // Many failed probes within the first interval count as none.
        for millis in [10, 30, 70, 150, 250, 4_000] {
            tracker.record("a", Err("connection refused".into()), start + Duration::from_millis(millis));
        }
        assert_eq!(tracker.verdict("a"), Some(Verdict::Starting));
        // One per interval counts: the third counted failure, at 15 s, fails it.
        tracker.record("a", Err("x".into()), start + Duration::from_secs(5));
        tracker.record("a", Err("x".into()), start + Duration::from_secs(7));
        tracker.record("a", Err("x".into()), start + Duration::from_secs(10));
        assert_eq!(tracker.verdict("a"), Some(Verdict::Starting));
        assert_eq!(tracker.record("a", Err("x".into()), start + Duration::from_secs(15)), Some(Verdict::Failed));
    }

    #[test]
    fn a_pass_resets_the_failure_count() {
        let mut tracker = HealthTracker::new(Some(HealthCheck { start_period: Duration::ZERO, ..check() }));
        let start = Instant::now();
        tracker.track("a", start);
        let at = |secs| start + Duration::from_secs(secs);
        tracker.record("a", Err("x".into()), at(5));
        tracker.record("a", Err("x".into()), at(10));
        tracker.record("a", Ok(()), at(11));
        tracker.record("a", Ok(()), at(12));
        tracker.record("a", Err("x".into()), at(16));
        tracker.record("a", Err("x".into()), at(21));
        assert_eq!(tracker.verdict("a"), Some(Verdict::Healthy), "healthy after two passes");
        assert_eq!(tracker.record("a", Err("x".into()), at(26)), Some(Verdict::Failed));
    }

    #[test]
    fn without_a_health_check_a_running_replica_is_healthy() {
        let mut tracker = HealthTracker::new(None);
        tracker.track("a", Instant::now());
        assert_eq!(tracker.verdict("a"), Some(Verdict::Healthy));
        assert_eq!(tracker.next_due(), None);
    }
}
