//! Scheduled tasks on ECS: the task definition an EventBridge rule's ECS targets and an
//! EventBridge Scheduler schedule's target start. Moving one to a new revision changes
//! only the target's `TaskDefinitionArn`; every other setting of the rule's targets and
//! of the schedule (its expression, time zone, window, state, retry policy, network
//! configuration…) is written back as it was read.

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::Target as RuleTarget;
use launchway_manifest::{EcsTaskSpec, ScheduleRef};
use launchway_target::settings::flatten;
use launchway_target::{LiveDefinition, Progress, RolloutError, TargetError, TargetEvent, TargetReport};

use crate::definitions::{self, Described, TAG_PREVIOUS, short};
use crate::error::sdk_error;

pub(crate) struct Clients<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub events: &'a aws_sdk_eventbridge::Client,
    pub scheduler: &'a aws_sdk_scheduler::Client,
}

/// The rule's targets that start ECS tasks.
async fn rule_targets(clients: &Clients<'_>, rule: &str) -> Result<Vec<RuleTarget>, TargetError> {
    let listed = clients
        .events
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("list the targets of EventBridge rule {rule}"), error))?;
    let targets: Vec<RuleTarget> =
        listed.targets.unwrap_or_default().into_iter().filter(|target| target.ecs_parameters.is_some()).collect();
    if targets.is_empty() {
        return Err(TargetError::Invalid(format!("EventBridge rule {rule} has no ECS task target")));
    }
    Ok(targets)
}

async fn schedule(
    clients: &Clients<'_>,
    schedule: &ScheduleRef,
) -> Result<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput, TargetError> {
    let output = clients
        .scheduler
        .get_schedule()
        .name(&schedule.name)
        .set_group_name(schedule.group.clone())
        .send()
        .await
        .map_err(|error| sdk_error(&format!("read EventBridge Scheduler schedule {}", schedule.name), error))?;
    if output.target.as_ref().and_then(|target| target.ecs_parameters.as_ref()).is_none() {
        return Err(TargetError::Invalid(format!("Scheduler schedule {} does not start an ECS task", schedule.name)));
    }
    Ok(output)
}

/// The task definition ARNs the task's rule and schedule start now, named by where.
async fn current(clients: &Clients<'_>, spec: &EcsTaskSpec) -> Result<Vec<(String, String)>, TargetError> {
    let mut current = Vec::new();
    if let Some(rule) = &spec.rule {
        for target in rule_targets(clients, rule).await? {
            let arn = target.ecs_parameters.map(|ecs| ecs.task_definition_arn).unwrap_or_default();
            current.push((format!("rule {rule} (target {})", target.id), arn));
        }
    }
    if let Some(reference) = &spec.schedule {
        let output = schedule(clients, reference).await?;
        let arn = output
            .target
            .and_then(|target| target.ecs_parameters)
            .map(|ecs| ecs.task_definition_arn)
            .unwrap_or_default();
        current.push((format!("schedule {}", reference.name), arn));
    }
    Ok(current)
}

pub(crate) async fn observe(clients: &Clients<'_>, spec: &EcsTaskSpec) -> Result<Option<LiveDefinition>, TargetError> {
    let current = match current(clients, spec).await {
        Ok(current) => current,
        // A rule or schedule that does not exist (yet) is what a plan reports.
        Err(TargetError::Invalid(_)) => return Ok(None),
        Err(error) if is_not_found(&error) => return Ok(None),
        Err(error) => return Err(error),
    };
    let Some((_, reference)) = current.first().cloned() else { return Ok(None) };
    let described = Described::fetch(clients.ecs, &reference).await?;
    let mut settings = BTreeMap::new();
    flatten("task_definition", &described.document, &mut settings);
    let agree = current.iter().all(|(_, arn)| *arn == reference);
    let status = current.iter().map(|(place, arn)| format!("{place} → {}", short(arn))).collect::<Vec<_>>().join(", ");
    Ok(Some(LiveDefinition {
        reference,
        revision: described.tag(definitions::TAG_REVISION).map(str::to_owned),
        images: described.containers().into_iter().collect(),
        settings,
        steady: agree,
        status,
        running: None,
        desired: None,
        failed: false,
        deployments: Vec::new(),
        lifecycle: None,
    }))
}

fn is_not_found(error: &TargetError) -> bool {
    matches!(error, TargetError::Api { source, .. } if source.to_string().contains("ResourceNotFoundException"))
}

pub(crate) async fn check(clients: &Clients<'_>, spec: &EcsTaskSpec) -> Result<Vec<String>, TargetError> {
    let current = current(clients, spec).await?;
    Ok(current.iter().map(|(place, arn)| format!("{place} starts {}", short(arn))).collect())
}

/// Points the rule's ECS targets and the schedule's target at the app's revision.
pub(crate) async fn rollout(
    clients: &Clients<'_>,
    app: &str,
    revision: &str,
    spec: &EcsTaskSpec,
    progress: &dyn Progress,
) -> Result<(), RolloutError> {
    let current = current(clients, spec).await?;
    let base = match current.first() {
        Some((_, arn)) => Some(Described::fetch(clients.ecs, arn).await?),
        None => None,
    };
    let target = definitions::ensure(clients.ecs, app, revision, &spec.definition, base.as_ref(), progress).await?;
    point_at(clients, spec, &target, progress).await?;
    Ok(())
}

async fn point_at(
    clients: &Clients<'_>,
    spec: &EcsTaskSpec,
    task_definition: &str,
    progress: &dyn Progress,
) -> Result<(), TargetError> {
    if let Some(rule) = &spec.rule {
        let mut targets = rule_targets(clients, rule).await?;
        if targets
            .iter()
            .any(|target| target.ecs_parameters.as_ref().is_some_and(|ecs| ecs.task_definition_arn != task_definition))
        {
            for target in &mut targets {
                if let Some(ecs) = target.ecs_parameters.as_mut() {
                    ecs.task_definition_arn = task_definition.to_owned();
                }
            }
            let output = clients
                .events
                .put_targets()
                .rule(rule)
                .set_targets(Some(targets))
                .send()
                .await
                .map_err(|error| sdk_error(&format!("update the targets of EventBridge rule {rule}"), error))?;
            if output.failed_entry_count() > 0 {
                let failures: Vec<String> = output
                    .failed_entries()
                    .iter()
                    .map(|entry| {
                        format!("{}: {}", entry.target_id().unwrap_or("?"), entry.error_message().unwrap_or("failed"))
                    })
                    .collect();
                return Err(TargetError::Invalid(format!(
                    "EventBridge refused targets of rule {rule}: {}",
                    failures.join("; ")
                )));
            }
            progress
                .report(TargetEvent::new(
                    TargetReport::RuleUpdated { rule: rule.to_string(), task_definition: task_definition.to_owned() },
                    format!("EventBridge rule {rule} now starts {}", short(task_definition)),
                ))
                .await;
        }
    }
    if let Some(reference) = &spec.schedule {
        let output = schedule(clients, reference).await?;
        let mut target = output.target.clone().expect("checked by schedule()");
        let ecs = target.ecs_parameters.as_mut().expect("checked by schedule()");
        if ecs.task_definition_arn != task_definition {
            ecs.task_definition_arn = task_definition.to_owned();
            // UpdateSchedule replaces the whole schedule: every field goes back as read.
            clients
                .scheduler
                .update_schedule()
                .name(&reference.name)
                .set_group_name(output.group_name.clone())
                .set_schedule_expression(output.schedule_expression.clone())
                .set_schedule_expression_timezone(output.schedule_expression_timezone.clone())
                .set_start_date(output.start_date)
                .set_end_date(output.end_date)
                .set_description(output.description.clone())
                .set_state(output.state.clone())
                .set_kms_key_arn(output.kms_key_arn.clone())
                .set_flexible_time_window(output.flexible_time_window.clone())
                .set_action_after_completion(output.action_after_completion.clone())
                .target(target)
                .send()
                .await
                .map_err(|error| sdk_error(&format!("update Scheduler schedule {}", reference.name), error))?;
            progress
                .report(TargetEvent::new(
                    TargetReport::ScheduleUpdated {
                        schedule: reference.name.clone(),
                        task_definition: task_definition.to_owned(),
                    },
                    format!("Scheduler schedule {} now starts {}", reference.name, short(task_definition)),
                ))
                .await;
        }
    }
    Ok(())
}

pub(crate) async fn verify(
    clients: &Clients<'_>,
    app: &str,
    revision: &str,
    spec: &EcsTaskSpec,
    progress: &dyn Progress,
) -> Result<(), RolloutError> {
    for (place, arn) in current(clients, spec).await? {
        let described = Described::fetch(clients.ecs, &arn).await?;
        if !definitions::runs_revision(&described, app, revision, &spec.definition)? {
            return Err(RolloutError::Unhealthy {
                reason: format!("{place} starts {}, not revision {revision}", described.short()),
                logs: Vec::new(),
            });
        }
        progress
            .report(TargetEvent::new(
                TargetReport::VerifyPassed { what: place.to_string(), watched_ms: 0 },
                format!("{place} starts {}", described.short()),
            ))
            .await;
    }
    Ok(())
}

/// Points the rule and schedule back at what they started before `revision`.
pub(crate) async fn retire(
    clients: &Clients<'_>,
    app: &str,
    revision: &str,
    spec: &EcsTaskSpec,
    progress: &dyn Progress,
) -> Result<(), TargetError> {
    let current = current(clients, spec).await?;
    let Some((_, arn)) = current.first() else { return Ok(()) };
    let described = Described::fetch(clients.ecs, arn).await?;
    if !definitions::is_revision(&described, app, revision) {
        return Ok(());
    }
    let Some(previous) = described.tag(TAG_PREVIOUS) else {
        return Err(TargetError::Invalid(format!("{} does not record what it replaced", described.short())));
    };
    point_at(clients, spec, previous, progress).await
}
