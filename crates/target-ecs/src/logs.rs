//! What an ECS service's containers wrote last, for the app page: read from CloudWatch
//! Logs, where the `awslogs` log driver puts each task's container output in the stream
//! `<awslogs-stream-prefix>/<container>/<task id>` of the container's log group. Other
//! drivers (FireLens, Splunk…) send lines where launchway cannot read them.

use aws_sdk_ecs::types::DesiredStatus;
use launchway_manifest::EcsServiceSpec;
use launchway_target::{ContainerLogs, TargetError};
use serde_json::Value;

use crate::definitions::Described;
use crate::error::sdk_error;
use crate::lookup;

/// The tasks read at most: a page is for people, and each stream is one request.
const MAX_TASKS: usize = 10;

/// A container whose output goes to CloudWatch Logs, and where.
#[derive(Debug, PartialEq, Eq)]
struct AwsLogs {
    container: String,
    group: String,
    prefix: String,
}

/// The last `lines` lines of each awslogs container of each running task of the service
/// (at most [`MAX_TASKS`] tasks), oldest line first.
pub(crate) async fn recent(
    ecs: &aws_sdk_ecs::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    spec: &EcsServiceSpec,
    lines: usize,
) -> Result<Vec<ContainerLogs>, TargetError> {
    let service = lookup::require(ecs, spec).await?;
    let Some(task_definition) = service.task_definition() else { return Ok(Vec::new()) };
    let described = Described::fetch(ecs, task_definition).await?;
    let containers = awslogs_containers(&described.document);
    if containers.is_empty() {
        return Err(TargetError::Invalid(format!(
            "no container of {} logs to CloudWatch Logs with an awslogs-stream-prefix (the awslogs driver), the only ECS logs launchway reads",
            described.short()
        )));
    }
    let listed = ecs
        .list_tasks()
        .cluster(&spec.cluster)
        .service_name(&spec.service)
        .desired_status(DesiredStatus::Running)
        .send()
        .await
        .map_err(|error| sdk_error("list the ECS service's tasks", error))?;
    let limit = i32::try_from(lines.clamp(1, 10_000)).unwrap_or(10_000);
    let mut found = Vec::new();
    for arn in listed.task_arns().iter().take(MAX_TASKS) {
        let task = arn.rsplit('/').next().unwrap_or(arn);
        for container in &containers {
            let lines = stream_lines(logs, container, task, limit).await?;
            found.push(ContainerLogs {
                replica: task.to_owned(),
                container: container.container.clone(),
                running: true,
                lines,
            });
        }
    }
    Ok(found)
}

/// The last lines (up to `limit`) one container of one task wrote, oldest first; none
/// when it has written nothing (no stream yet).
async fn stream_lines(
    logs: &aws_sdk_cloudwatchlogs::Client,
    container: &AwsLogs,
    task: &str,
    limit: i32,
) -> Result<Vec<String>, TargetError> {
    let stream = format!("{}/{}/{task}", container.prefix, container.container);
    let answer = logs
        .get_log_events()
        .log_group_name(&container.group)
        .log_stream_name(&stream)
        .limit(limit)
        .start_from_head(false)
        .send()
        .await;
    match answer {
        Ok(events) => Ok(events
            .events()
            .iter()
            .filter_map(|event| event.message())
            .map(|line| line.trim_end().to_owned())
            .collect()),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_resource_not_found_exception()) => {
            Ok(Vec::new())
        }
        Err(error) => Err(sdk_error("read the task's log stream from CloudWatch Logs", error)),
    }
}

/// What a task that ran once wrote last, `container | line`, when its containers log to
/// CloudWatch Logs with the awslogs driver (else nothing can be read, and nothing is
/// said: the run's outcome does not depend on it).
pub(crate) async fn of_task(
    logs: &aws_sdk_cloudwatchlogs::Client,
    document: &Value,
    task_arn: &str,
    lines: usize,
) -> Vec<String> {
    let task = task_arn.rsplit('/').next().unwrap_or(task_arn);
    let limit = i32::try_from(lines.clamp(1, 10_000)).unwrap_or(10_000);
    let mut found = Vec::new();
    for container in awslogs_containers(document) {
        if let Ok(lines) = stream_lines(logs, &container, task, limit).await {
            found.extend(lines.into_iter().map(|line| format!("{} | {line}", container.container)));
        }
    }
    found
}

/// The containers of a task definition document that use the awslogs driver with a
/// stream prefix (without one, the stream is named after the container instance, which
/// the task does not tell).
fn awslogs_containers(document: &Value) -> Vec<AwsLogs> {
    let definitions = document["containerDefinitions"].as_array().map(Vec::as_slice).unwrap_or_default();
    definitions
        .iter()
        .filter(|container| container["logConfiguration"]["logDriver"] == "awslogs")
        .filter_map(|container| {
            let options = &container["logConfiguration"]["options"];
            Some(AwsLogs {
                container: container["name"].as_str()?.to_owned(),
                group: options["awslogs-group"].as_str()?.to_owned(),
                prefix: options["awslogs-stream-prefix"].as_str()?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_awslogs_containers_with_a_stream_prefix_can_be_read() {
        let document = json!({"containerDefinitions": [
            {"name": "web", "logConfiguration": {"logDriver": "awslogs",
                "options": {"awslogs-group": "/ecs/web", "awslogs-stream-prefix": "ecs"}}},
            {"name": "no-prefix", "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web"}}},
            {"name": "router", "logConfiguration": {"logDriver": "awsfirelens"}},
            {"name": "plain"}
        ]});
        assert_eq!(
            awslogs_containers(&document),
            [AwsLogs { container: "web".into(), group: "/ecs/web".into(), prefix: "ecs".into() }]
        );
    }
}
