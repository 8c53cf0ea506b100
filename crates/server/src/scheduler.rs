//! Scheduled tasks on Docker: launchway is the scheduler there (ECS has EventBridge).
//!
//! Each deployed task's next firing is worked out from its schedule (UTC; a `rate` is
//! counted from when the task was deployed). When it comes, a run of kind `scheduled`
//! executes the current release to completion and records how it went. Firings missed
//! while the server was down are not made up, as with cron; a firing that finds the app
//! busy (a deploy under way, or the previous execution still running) is skipped and
//! recorded as such.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use launchway_engine::EngineError;
use launchway_manifest::{AppSpec, TargetSpec, next_scheduled_after};
use launchway_store::{AuditKind, EventBody, NewEvent, StoreError, now_ms};

use crate::runtime::Runtime;

/// How often deployments are re-read for tasks added or removed, at most.
const RESCAN: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Scheduler {
    /// (app, env) → (schedule, next firing in Unix ms).
    next: HashMap<(String, String), (String, i64)>,
}

impl Scheduler {
    /// Starts the runs due at `now`, and works out the next firings. Returns the ids of
    /// the runs started and when the next firing is.
    pub async fn tick(&mut self, runtime: &Arc<Runtime>, now: i64) -> Result<(Vec<i64>, Option<i64>)> {
        let store = runtime.engine().store();
        let mut seen = Vec::new();
        let mut started = Vec::new();
        for record in store.deployments().await? {
            let release = store.release(record.current_release_id).await?;
            let (AppSpec::Task(task), TargetSpec::Docker { .. }) = (&release.spec, &release.target) else {
                continue;
            };
            // A task run on deploy ran with its deploy run.
            let Some(schedule) = &task.schedule else { continue };
            let key = (record.app.clone(), record.env.clone());
            seen.push(key.clone());
            let schedule = schedule.0.clone();
            let entry = self.next.entry(key.clone()).or_insert_with(|| {
                let first = next_scheduled_after(&schedule, now - 1, record.updated_at).unwrap_or(i64::MAX);
                (schedule.clone(), first)
            });
            if entry.0 != schedule {
                // The schedule itself changed with a deploy.
                *entry =
                    (schedule.clone(), next_scheduled_after(&schedule, now - 1, record.updated_at).unwrap_or(i64::MAX));
            }
            if entry.1 > now {
                continue;
            }
            entry.1 = next_scheduled_after(&schedule, now, record.updated_at).unwrap_or(i64::MAX);
            let trigger = format!("schedule {schedule}");
            match runtime.engine().start_scheduled(&key.0, &key.1, &trigger).await {
                Ok(run) => {
                    started.push(run.id);
                    runtime.drive(run.id);
                }
                Err(EngineError::Store(StoreError::RunInProgress { run_id, .. })) => {
                    runtime
                        .engine()
                        .record(NewEvent::for_app(
                            &key.0,
                            &key.1,
                            EventBody::Audit {
                                kind: AuditKind::ScheduleSkipped,
                                data: serde_json::json!({"schedule": schedule, "busy_run": run_id}),
                            },
                            format!("skipped a scheduled run of {}: run {run_id} is still going", key.0),
                        ))
                        .await?;
                }
                Err(error) => tracing::warn!(app = %key.0, env = %key.1, %error, "could not start a scheduled run"),
            }
        }
        self.next.retain(|key, _| seen.contains(key));
        let next = self.next.values().map(|(_, at)| *at).filter(|at| *at != i64::MAX).min();
        Ok((started, next))
    }

    /// Fires tasks on time until the server stops.
    pub async fn run(mut self, runtime: Arc<Runtime>) {
        loop {
            let wait = match self.tick(&runtime, now_ms()).await {
                Ok((_, Some(next))) => {
                    Duration::from_millis((next - now_ms()).clamp(0, RESCAN.as_millis() as i64) as u64)
                }
                Ok((_, None)) => RESCAN,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "the scheduler could not read deployments");
                    RESCAN
                }
            };
            tokio::select! {
                () = runtime.stop().cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                // A deploy may have added or changed a task.
                () = runtime.run_finished() => {}
            }
        }
    }
}
