//! DORA metrics from the run history, per app and environment.
//!
//! - **Deployment frequency**: deploy runs that changed something and succeeded.
//! - **Lead time for changes**: from the release's commit to its verified deployment.
//! - **Change failure rate**: of the deploys that reached the target, those that failed,
//!   were rolled back automatically, or were rolled back by hand as the next run.
//! - **Time to restore**: from a failure to the service running a good release again.
//!   An automatic rollback restores when its run ends, counted from when the bad release
//!   began deploying; a failed deploy or a bad release rolled back by hand restores at
//!   the next run that succeeds, counted from when the failure ended its run.
//!
//! Runs that changed nothing (a no-op plan), were rejected, or are still going are left
//! out. [`compute`] is pure, so the figures can be checked against a scripted history.

use std::collections::BTreeMap;

use launchway_store::{RunFilter, RunKind, RunState, now_ms};
use serde::{Deserialize, Serialize};

use crate::{Engine, Result};

const DAY_MS: i64 = 86_400_000;

/// One finished run, as the metrics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub app: String,
    pub env: String,
    pub kind: RunKind,
    pub state: RunState,
    /// The run ended with nothing to change.
    pub no_op: bool,
    pub created_at: i64,
    /// When its deploy step first started, if it got that far.
    pub deploy_started_at: Option<i64>,
    pub finished_at: i64,
    /// When the release's change was committed.
    pub committed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoraFigures {
    pub app: String,
    pub env: String,
    pub window_days: u32,
    /// Deploys that changed something and succeeded.
    pub deployments: u32,
    pub deployments_per_day: f64,
    /// Median commit → verified, in seconds.
    pub lead_time_median_s: Option<f64>,
    pub lead_time_p90_s: Option<f64>,
    /// Failed changes over changes that reached the target (0..1).
    pub change_failure_rate: Option<f64>,
    pub failed_changes: u32,
    /// Median time to restore, in seconds, over the failures restored.
    pub time_to_restore_median_s: Option<f64>,
    /// Failures not followed (yet) by a good run.
    pub unrestored_failures: u32,
}

/// Figures for each (app, environment) in `records`, over a window of `window_days`
/// ending at `now`. Records may come in any order.
pub fn compute(records: &[RunRecord], window_days: u32, now: i64) -> Vec<DoraFigures> {
    let since = now - i64::from(window_days) * DAY_MS;
    let mut by_pair: BTreeMap<(&str, &str), Vec<&RunRecord>> = BTreeMap::new();
    for record in records.iter().filter(|record| record.created_at >= since && record.state.is_terminal()) {
        by_pair.entry((&record.app, &record.env)).or_default().push(record);
    }
    by_pair
        .into_iter()
        .map(|((app, env), mut runs)| {
            runs.sort_by_key(|run| (run.created_at, run.finished_at));
            figures(app, env, &runs, window_days)
        })
        .collect()
}

fn figures(app: &str, env: &str, runs: &[&RunRecord], window_days: u32) -> DoraFigures {
    let changed = |run: &RunRecord| !run.no_op && run.state != RunState::Rejected;
    let deploys: Vec<(usize, &RunRecord)> =
        runs.iter().copied().enumerate().filter(|(_, run)| run.kind == RunKind::Deploy && changed(run)).collect();
    let succeeded: Vec<&RunRecord> =
        deploys.iter().map(|(_, run)| *run).filter(|run| run.state == RunState::Succeeded).collect();

    let mut lead_times: Vec<f64> = succeeded
        .iter()
        .filter_map(|run| run.committed_at.map(|committed| (run.finished_at - committed).max(0) as f64 / 1000.0))
        .collect();
    lead_times.sort_by(f64::total_cmp);

    let mut failed_changes = 0;
    let mut restore_times = Vec::new();
    let mut unrestored = 0;
    for &(index, run) in &deploys {
        let later = &runs[index + 1..];
        let restored_at = |from: usize| {
            later[from..]
                .iter()
                .find(|next| matches!(next.state, RunState::Succeeded | RunState::RolledBack) && changed(next))
                .map(|next| next.finished_at)
        };
        let (failure_at, restored) = match run.state {
            RunState::RolledBack => (run.deploy_started_at.unwrap_or(run.created_at), Some(run.finished_at)),
            RunState::Failed => (run.finished_at, restored_at(0)),
            RunState::Succeeded => match later.first() {
                Some(next) if next.kind == RunKind::Rollback => {
                    (run.finished_at, Some(next.finished_at).filter(|_| next.state == RunState::Succeeded))
                }
                _ => continue,
            },
            _ => continue,
        };
        failed_changes += 1;
        match restored {
            Some(at) => restore_times.push((at - failure_at).max(0) as f64 / 1000.0),
            None => unrestored += 1,
        }
    }
    restore_times.sort_by(f64::total_cmp);

    let deployments = succeeded.len() as u32;
    DoraFigures {
        app: app.to_owned(),
        env: env.to_owned(),
        window_days,
        deployments,
        deployments_per_day: f64::from(deployments) / f64::from(window_days.max(1)),
        lead_time_median_s: percentile(&lead_times, 50),
        lead_time_p90_s: percentile(&lead_times, 90),
        change_failure_rate: (!deploys.is_empty()).then(|| f64::from(failed_changes) / deploys.len() as f64),
        failed_changes,
        time_to_restore_median_s: percentile(&restore_times, 50),
        unrestored_failures: unrestored,
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], percent: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

impl Engine {
    /// DORA figures for every (app, environment) with runs in the last `window_days`,
    /// optionally narrowed to one app or environment.
    pub async fn dora(&self, app: Option<&str>, env: Option<&str>, window_days: u32) -> Result<Vec<DoraFigures>> {
        let store = &self.inner.store;
        let now = now_ms();
        let runs = store
            .runs(&RunFilter {
                app: app.map(str::to_owned),
                env: env.map(str::to_owned),
                since: Some(now - i64::from(window_days) * DAY_MS),
                ..RunFilter::default()
            })
            .await?;
        let mut records = Vec::with_capacity(runs.len());
        let mut commits: BTreeMap<i64, Option<i64>> = BTreeMap::new();
        for run in runs.iter().filter(|run| run.state.is_terminal() && run.kind != RunKind::Scheduled) {
            let committed_at = match commits.get(&run.release_id) {
                Some(known) => *known,
                None => {
                    let committed = store.release(run.release_id).await?.source.committed_at;
                    commits.insert(run.release_id, committed);
                    committed
                }
            };
            let deploy_started_at = if run.state == RunState::RolledBack {
                store.steps(run.id).await?.iter().find(|step| step.name == "deploy").map(|step| step.started_at)
            } else {
                None
            };
            records.push(RunRecord {
                app: run.app.clone(),
                env: run.env.clone(),
                kind: run.kind,
                state: run.state,
                no_op: run.reason.as_deref() == Some(NO_OP_REASON),
                created_at: run.created_at,
                deploy_started_at,
                finished_at: run.finished_at.unwrap_or(run.updated_at),
                committed_at,
            });
        }
        Ok(compute(&records, window_days, now))
    }
}

/// The reason a run that had nothing to change ends with.
pub const NO_OP_REASON: &str = "nothing to change";

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const NOW: i64 = 100 * DAY_MS;

    fn run(kind: RunKind, state: RunState, created_min: i64, took_min: i64, committed_min: Option<i64>) -> RunRecord {
        let created_at = NOW - 10 * DAY_MS + created_min * MIN;
        RunRecord {
            app: "web".into(),
            env: "prod".into(),
            kind,
            state,
            no_op: false,
            created_at,
            deploy_started_at: Some(created_at + MIN),
            finished_at: created_at + took_min * MIN,
            committed_at: committed_min.map(|minutes| NOW - 10 * DAY_MS + minutes * MIN),
        }
    }

    /// Ten days ago: four good deploys, one rolled back automatically, one failed and
    /// fixed by the next deploy, one good deploy rolled back by hand, a no-op and a
    /// rejection (neither counts).
    #[test]
    fn figures_from_a_scripted_history() {
        use RunKind::{Deploy, Rollback};
        use RunState::{Failed, Rejected, RolledBack, Succeeded};
        let mut no_op = run(Deploy, Succeeded, 500, 1, Some(490));
        no_op.no_op = true;
        let history = vec![
            run(Deploy, Succeeded, 0, 5, Some(-55)),    // lead 60 min
            run(Deploy, Succeeded, 100, 5, Some(95)),   // lead 10 min
            run(Deploy, RolledBack, 200, 8, Some(190)), // restore: deploy start (201) → 208 = 7 min
            run(Deploy, Failed, 300, 4, Some(290)),     // fails at 304
            run(Deploy, Succeeded, 330, 5, Some(320)),  // restores at 335: 31 min; lead 15 min
            run(Deploy, Succeeded, 400, 5, Some(385)),  // lead 20 min, then rolled back by hand
            run(Rollback, Succeeded, 420, 3, None),     // restores at 423: 423 - 405 = 18 min
            no_op,
            run(Deploy, Rejected, 600, 1, Some(590)),
            // Outside the 30-day window.
            RunRecord { created_at: NOW - 40 * DAY_MS, ..run(Deploy, Failed, 0, 1, None) },
        ];
        let figures = compute(&history, 30, NOW);
        assert_eq!(figures.len(), 1);
        let web = &figures[0];
        assert_eq!(web.deployments, 4);
        assert!((web.deployments_per_day - 4.0 / 30.0).abs() < 1e-9);
        // Lead times: 10, 15, 20, 60 minutes.
        assert_eq!(web.lead_time_median_s, Some(15.0 * 60.0));
        assert_eq!(web.lead_time_p90_s, Some(60.0 * 60.0));
        // 3 failed changes out of 6 deploys that changed something.
        assert_eq!(web.failed_changes, 3);
        assert_eq!(web.change_failure_rate, Some(0.5));
        // Restores: 7, 18, 31 minutes.
        assert_eq!(web.time_to_restore_median_s, Some(18.0 * 60.0));
        assert_eq!(web.unrestored_failures, 0);
    }

    #[test]
    fn a_failure_not_yet_fixed_is_unrestored() {
        let history = vec![run(RunKind::Deploy, RunState::Failed, 0, 2, Some(-5))];
        let web = &compute(&history, 30, NOW)[0];
        assert_eq!((web.deployments, web.failed_changes, web.unrestored_failures), (0, 1, 1));
        assert_eq!(web.change_failure_rate, Some(1.0));
        assert_eq!(web.lead_time_median_s, None);
        assert_eq!(web.time_to_restore_median_s, None);
    }
}
