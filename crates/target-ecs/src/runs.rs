//! A task run once on deploy (`run: on_deploy`: a migration). Its release's task
//! definition is registered (or found) as for any ECS app, then RunTask starts it with
//! `startedBy` naming the run, so a run resumed after a crash finds the task it started
//! rather than starting a second; the task is followed until it stops, and its
//! containers' exit codes are the outcome (every container that ran exited 0).

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{AssignPublicIp, AwsVpcConfiguration, DesiredStatus, LaunchType, NetworkConfiguration};
use launchway_manifest::{EcsRunOnce, EcsTaskSpec};
use launchway_target::{Progress, RolloutError, TargetError, TargetEvent, TargetReport, TaskExecution, TaskOutcome};

use crate::definitions::{self, Described};
use crate::error::sdk_error;
use crate::lookup::Polling;

/// How long a task run on deploy may take when its manifest says nothing.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Log lines kept with the outcome.
const LOG_LINES: usize = 50;

pub(crate) struct Clients<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub logs: &'a aws_sdk_cloudwatchlogs::Client,
}

/// Runs the task once (or finds it started by this run) and waits for it to stop.
pub(crate) async fn run_once(
    clients: Clients<'_>,
    execution: &TaskExecution<'_>,
    spec: &EcsTaskSpec,
    how: &EcsRunOnce,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<TaskOutcome, RolloutError> {
    let cluster = spec
        .cluster
        .as_deref()
        .ok_or_else(|| TargetError::Invalid(format!("{} names no cluster to run in", execution.app)))?;
    let revision = spec.definition.revision().0;
    let task_definition =
        definitions::ensure(clients.ecs, execution.app, &revision, &spec.definition, None, progress).await?;
    let started_by = format!("launchway-run-{}", execution.run_id);
    let started = Instant::now();
    let task_arn = match started_before(clients.ecs, cluster, &started_by).await? {
        Some(arn) => arn,
        None => start(clients.ecs, cluster, &task_definition, &started_by, how).await?,
    };
    let image = spec.definition.images.values().next().cloned().unwrap_or_else(|| task_definition.clone());
    let message =
        format!("started task {} of {} in cluster {cluster}", short(&task_arn), definitions::short(&task_definition));
    progress
        .report(TargetEvent::new(TargetReport::TaskStarted { container: short(&task_arn).to_owned(), image }, message))
        .await;

    let timeout = how.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut wait = polling.first;
    let task = loop {
        let task = describe(clients.ecs, cluster, &task_arn).await?;
        if task.last_status() == Some("STOPPED") {
            break task;
        }
        if started.elapsed() >= timeout {
            let _ = clients
                .ecs
                .stop_task()
                .cluster(cluster)
                .task(&task_arn)
                .reason(format!("launchway: the run's timeout ({}s) passed", timeout.as_secs()))
                .send()
                .await;
            let reason =
                format!("task {} did not stop within {}s; it was stopped", short(&task_arn), timeout.as_secs());
            return Err(RolloutError::TimedOut { reason, logs: Vec::new() });
        }
        tokio::time::sleep(wait).await;
        wait = if started.elapsed() > polling.slow_after { polling.slow_max } else { (wait * 2).min(polling.max) };
    };
    let document = Described::fetch(clients.ecs, &task_definition).await.map(|described| described.document);
    let logs = match &document {
        Ok(document) => crate::logs::of_task(clients.logs, document, &task_arn, LOG_LINES).await,
        Err(_) => Vec::new(),
    };
    let failed: Vec<String> = task
        .containers()
        .iter()
        .filter(|container| container.exit_code() != Some(0))
        .map(|container| {
            let name = container.name().unwrap_or("?");
            match (container.exit_code(), container.reason()) {
                (Some(code), _) => format!("{name} exited {code}"),
                (None, Some(reason)) => format!("{name} did not run: {reason}"),
                (None, None) => format!("{name} did not run"),
            }
        })
        .collect();
    if task.containers().is_empty() || !failed.is_empty() {
        let stopped = task.stopped_reason().map(|reason| format!(" ({reason})")).unwrap_or_default();
        let reason = format!("task {} failed: {}{stopped}", short(&task_arn), failed.join(", "));
        return Err(RolloutError::Unhealthy { reason, logs });
    }
    Ok(TaskOutcome { exit_code: 0, elapsed: started.elapsed(), logs })
}

/// The task this run started before, if any (running or stopped).
async fn started_before(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    started_by: &str,
) -> Result<Option<String>, TargetError> {
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let listed = ecs
            .list_tasks()
            .cluster(cluster)
            .started_by(started_by)
            .desired_status(status)
            .send()
            .await
            .map_err(|error| sdk_error("list the tasks this run started", error))?;
        if let Some(arn) = listed.task_arns().first() {
            return Ok(Some(arn.clone()));
        }
    }
    Ok(None)
}

async fn start(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task_definition: &str,
    started_by: &str,
    how: &EcsRunOnce,
) -> Result<String, TargetError> {
    let mut request = ecs.run_task().cluster(cluster).task_definition(task_definition).count(1).started_by(started_by);
    if let Some(launch_type) = &how.launch_type {
        request = request.launch_type(LaunchType::from(launch_type.as_str()));
    }
    if let Some(network) = &how.network {
        let awsvpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(network.subnets.clone()))
            .set_security_groups(Some(network.security_groups.clone()))
            .assign_public_ip(if network.public_ip { AssignPublicIp::Enabled } else { AssignPublicIp::Disabled })
            .build()
            .map_err(|error| TargetError::local("the task's network is incomplete", error))?;
        request = request.network_configuration(NetworkConfiguration::builder().awsvpc_configuration(awsvpc).build());
    }
    let answer = request.send().await.map_err(|error| sdk_error("run the task (RunTask)", error))?;
    if let Some(failure) = answer.failures().first() {
        return Err(TargetError::Invalid(format!(
            "ECS could not run the task: {} ({})",
            failure.reason().unwrap_or("no reason given"),
            failure.detail().or(failure.arn()).unwrap_or_default()
        )));
    }
    answer
        .tasks()
        .first()
        .and_then(|task| task.task_arn())
        .map(str::to_owned)
        .ok_or_else(|| TargetError::Invalid("ECS answered RunTask with no task".to_owned()))
}

async fn describe(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task: &str,
) -> Result<aws_sdk_ecs::types::Task, TargetError> {
    let answer = ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|error| sdk_error("describe the task", error))?;
    answer.tasks().first().cloned().ok_or_else(|| TargetError::Invalid(format!("task {} is gone", short(task))))
}

fn short(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}
