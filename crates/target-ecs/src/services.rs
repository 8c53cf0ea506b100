//! ECS services: reading what one runs, moving it to a task definition, and watching
//! the deployment until ECS says it is done, has failed, or the time is up.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::types::{
    Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState, DesiredStatus, LoadBalancer,
    Service,
};
use launchway_manifest::{EcsDeployment, EcsServiceSpec, format_duration};
use launchway_target::settings::{flatten, select_container};
use launchway_target::{
    LiveDefinition, LiveDeployment, Progress, RolloutError, TargetError, TargetEvent, TargetReport,
};
use tokio::time::Instant;

use crate::definitions::{self, Described, TAG_PREVIOUS, short};
use crate::error::sdk_error;
use crate::lookup::{Polling, describe, require};
use crate::native;

/// What the service runs, with everything a plan compares.
pub(crate) async fn observe(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
) -> Result<Option<LiveDefinition>, TargetError> {
    let Some(service) = describe(client, spec).await? else {
        return Ok(None);
    };
    let Some(current) = service.task_definition() else {
        return Ok(None);
    };
    let described = Described::fetch(client, current).await?;
    let mut settings = BTreeMap::new();
    flatten("task_definition", &described.document, &mut settings);
    settings.insert("desired_count".to_owned(), service.desired_count().to_string());
    if let Some(grace) = service.health_check_grace_period_seconds() {
        settings.insert("health_check_grace_period".to_owned(), format!("{grace}s"));
    }
    native::live_settings(spec, &service, &mut settings);
    let (steady, status) = steadiness(&service, current);
    let primary = primary_deployment(&service);
    let lifecycle = native::lifecycle(client, &service).await?;
    Ok(Some(LiveDefinition {
        reference: current.to_owned(),
        revision: described.tag(definitions::TAG_REVISION).map(str::to_owned),
        images: described.containers().into_iter().collect(),
        settings,
        steady,
        status,
        running: Some(service.running_count().max(0) as u32),
        desired: Some(service.desired_count().max(0) as u32),
        failed: primary.is_some_and(|primary| primary.rollout_state() == Some(&DeploymentRolloutState::Failed)),
        deployments: service.deployments().iter().map(live_deployment).collect(),
        lifecycle,
    }))
}

/// One of the service's deployments (PRIMARY, ACTIVE) as the app page and API show it.
fn live_deployment(deployment: &Deployment) -> LiveDeployment {
    let count = |count: i32| count.max(0) as u32;
    LiveDeployment {
        role: deployment.status().unwrap_or("UNKNOWN").to_owned(),
        definition: short(deployment.task_definition().unwrap_or("none")).to_owned(),
        rollout_state: deployment.rollout_state().map(|state| state.as_str().to_owned()),
        running: count(deployment.running_count()),
        desired: count(deployment.desired_count()),
        pending: count(deployment.pending_count()),
        created_at: deployment.created_at().and_then(|at| at.to_millis().ok()),
    }
}

/// The deployment ECS is moving the service to (or keeps it on).
fn primary_deployment(service: &Service) -> Option<&Deployment> {
    service.deployments().iter().find(|deployment| deployment.status() == Some("PRIMARY"))
}

/// Whether the service has finished moving to `task_definition`, and a line saying how
/// it is doing.
fn steadiness(service: &Service, task_definition: &str) -> (bool, String) {
    let deployments = service.deployments();
    let primary = primary_deployment(service);
    match primary {
        None => (
            false,
            format!("no primary deployment, {} of {} running", service.running_count(), service.desired_count()),
        ),
        Some(primary) => {
            // The primary deployment's own counts: the service's include old tasks.
            let running = format!("{} of {} running", primary.running_count(), primary.desired_count());
            let on_it = primary.task_definition() == Some(task_definition);
            let state = primary.rollout_state();
            let done = match state {
                // Completed, and as many tasks running as wanted (a count raised since
                // leaves the deployment completed while tasks start).
                Some(DeploymentRolloutState::Completed) => primary.running_count() >= primary.desired_count(),
                // Without a rollout state (old accounts, circuit breaker off): one deployment, all running.
                None => deployments.len() == 1 && service.running_count() == service.desired_count(),
                Some(_) => false,
            };
            let state = state.map_or("no rollout state".to_owned(), |state| state.as_str().to_owned());
            (on_it && done, format!("{state}: {running}"))
        }
    }
}

/// Checks, without changing anything, that the service exists and the containers the
/// manifest names are in what it runs.
pub(crate) async fn check(client: &aws_sdk_ecs::Client, spec: &EcsServiceSpec) -> Result<Vec<String>, TargetError> {
    let service = require(client, spec).await?;
    if spec.definition.document.is_none() {
        let current = service.task_definition().unwrap_or_default();
        let described = Described::fetch(client, current).await?;
        let containers = described.containers();
        for selector in spec.definition.images.keys() {
            select_container(selector, &containers)
                .map_err(|problem| TargetError::Invalid(format!("in {}: {problem}", described.short())))?;
        }
    }
    Ok(vec![format!("ECS service {} runs {}", spec.service, short(service.task_definition().unwrap_or("nothing")))])
}

/// Moves the service to the app's revision and waits for ECS to finish the deployment.
pub(crate) async fn rollout(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    spec: &EcsServiceSpec,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), RolloutError> {
    let started = Instant::now();
    let service = require(client, spec).await?;
    let current = match service.task_definition() {
        Some(arn) => Some(Described::fetch(client, arn).await?),
        None => None,
    };
    let target = definitions::ensure(client, app, revision, &spec.definition, current.as_ref(), progress).await?;
    move_service(client, spec, &service, &target, Settings::of(spec, &service)?, progress).await?;
    let Some(strategy) = &spec.strategy else {
        return watch(client, spec, &target, started + spec.timeout, progress, polling).await;
    };
    // ECS runs the strategy; launchway follows it to its first gate (or its end).
    let until = strategy.gates().first().map_or(native::Until::Done, |gate| native::Until::Gate(gate.at));
    let deadline = started + spec.timeout + native::baking(strategy);
    native::follow(client, spec, &target, until, deadline, progress, polling).await
}

/// The task definition of the app's revision, when the service runs it now.
async fn running_revision(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    spec: &EcsServiceSpec,
) -> Result<Option<String>, TargetError> {
    let service = require(client, spec).await?;
    let Some(current) = service.task_definition() else { return Ok(None) };
    let described = Described::fetch(client, current).await?;
    Ok(definitions::runs_revision(&described, app, revision, &spec.definition)?.then(|| current.to_owned()))
}

/// One look on the way to a progressive rollout's step `step` (an index into the
/// strategy's gates): ECS goes on from the gates before it, and the step is reached
/// once the deployment waits at its gate, or has finished.
pub(crate) async fn advance(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    spec: &EcsServiceSpec,
    step: usize,
    progress: &dyn Progress,
    reported: &std::sync::Mutex<BTreeMap<String, native::Stage>>,
) -> Result<bool, RolloutError> {
    let gate = spec.strategy.as_ref().and_then(|strategy| strategy.gates().get(step)).ok_or_else(|| {
        TargetError::Invalid(format!("ECS service {} has no gate {} in its strategy", spec.service, step + 1))
    })?;
    let Some(task_definition) = running_revision(client, app, revision, spec).await? else {
        return Err(RolloutError::Unhealthy {
            reason: format!("ECS service {} no longer runs revision {revision}: ECS rolled it back", spec.service),
            logs: Vec::new(),
        });
    };
    match native::look(client, spec, &task_definition, native::Until::Gate(gate.at), progress).await? {
        native::Look::Reached => {
            native::report_pause(spec, gate.at, progress).await;
            Ok(true)
        }
        native::Look::Finished => Ok(true),
        native::Look::Moving(stage) => {
            // Reported when it changes: the engine asks again and again.
            let changed = {
                let mut reported = reported.lock().expect("not poisoned");
                reported.insert(spec.service.clone(), stage.clone()).as_ref() != Some(&stage)
            };
            if changed {
                native::report_stage(spec, &stage, progress).await;
            }
            Ok(false)
        }
    }
}

/// Ends a rollout: the revision's deployment goes on from every gate to its end. For
/// the release a rollback returns to, a native deployment still under way is rolled
/// back by ECS first (straight back to what served); if the service is still not on
/// it, it is rolled out again.
pub(crate) async fn promote(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    spec: &EcsServiceSpec,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), RolloutError> {
    let started = Instant::now();
    if let Some(task_definition) = running_revision(client, app, revision, spec).await? {
        if native::roll_back_in_progress(client, spec, &task_definition, progress, polling).await? {
            progress
                .report(TargetEvent::new(
                    TargetReport::DeploymentProgress { running: 0, desired: 0, status: "rolled back".to_owned() },
                    format!("ECS rolled service {} back to {}", spec.service, short(&task_definition)),
                ))
                .await;
        }
        return finish(client, spec, &task_definition, started, progress, polling).await;
    }
    // Not on it: roll back whatever ECS is deploying (that is where a rollback goes),
    // then see again.
    native::roll_back_in_progress(client, spec, "", progress, polling).await?;
    if running_revision(client, app, revision, spec).await?.is_some() {
        return Box::pin(promote(client, app, revision, spec, progress, polling)).await;
    }
    rollout(client, app, revision, spec, progress, polling).await?;
    match running_revision(client, app, revision, spec).await? {
        Some(task_definition) if spec.strategy.is_some() => {
            finish(client, spec, &task_definition, Instant::now(), progress, polling).await
        }
        _ => Ok(()),
    }
}

/// Follows a native deployment to its end (going on from every gate), allowing the
/// rollout's timeout and every bake time from `started`.
async fn finish(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
    task_definition: &str,
    started: Instant,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), RolloutError> {
    let baking = spec.strategy.as_ref().map_or(Duration::ZERO, native::baking);
    let deadline = started + spec.timeout + baking;
    native::follow(client, spec, task_definition, native::Until::Done, deadline, progress, polling).await
}

/// What the manifest states about a service besides its task definition, where it
/// differs from what the service has; what it leaves out, the service keeps.
#[derive(Debug, Clone, Default)]
struct Settings {
    desired_count: Option<u32>,
    configuration: Option<DeploymentConfiguration>,
    load_balancers: Option<Vec<LoadBalancer>>,
    grace_period: Option<Duration>,
}

impl Settings {
    fn of(spec: &EcsServiceSpec, service: &Service) -> Result<Settings, TargetError> {
        let stated = native::stated_settings(spec);
        let mut live = BTreeMap::new();
        native::live_settings(spec, service, &mut live);
        let configuration_differs =
            stated.iter().any(|(name, value)| name.starts_with("deployment.") && live.get(name) != Some(value));
        let configuration = configuration_differs.then(|| {
            let base = match &spec.deployment {
                Some(deployment) => Some(rolling_configuration(deployment, service.deployment_configuration())),
                None => service.deployment_configuration().cloned(),
            };
            native::wanted_native(spec, base.as_ref())
        });
        Ok(Settings {
            desired_count: spec.desired_count,
            configuration,
            load_balancers: native::wanted_load_balancers(spec, service)?,
            grace_period: spec.health_check_grace_period,
        })
    }
}

/// UpdateService, when the task definition or the settings the manifest states differ.
async fn move_service(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
    service: &Service,
    task_definition: &str,
    settings: Settings,
    progress: &dyn Progress,
) -> Result<(), TargetError> {
    let Settings { desired_count, configuration: new_configuration, load_balancers, grace_period } = settings;
    let new_definition = service.task_definition() != Some(task_definition);
    let new_count = desired_count.filter(|count| i64::from(*count) != i64::from(service.desired_count()));
    let new_grace = grace_period
        .map(|grace| grace.as_secs() as i32)
        .filter(|grace| Some(*grace) != service.health_check_grace_period_seconds());
    if !new_definition
        && new_count.is_none()
        && new_configuration.is_none()
        && new_grace.is_none()
        && load_balancers.is_none()
    {
        return Ok(());
    }
    let configuration_changed = new_configuration.is_some();
    let balancers_changed = load_balancers.is_some();
    // The task definition is named only when it changes: naming the same one again
    // would be harmless on ECS, but says nothing.
    let mut update = client.update_service().cluster(&spec.cluster).service(&spec.service);
    if new_definition {
        update = update.task_definition(task_definition);
    }
    if let Some(count) = new_count {
        update = update.desired_count(count as i32);
    }
    if let Some(grace) = new_grace {
        update = update.health_check_grace_period_seconds(grace);
    }
    if let Some(configuration) = new_configuration {
        update = update.deployment_configuration(configuration);
    }
    if let Some(balancers) = load_balancers {
        update = update.set_load_balancers(Some(balancers));
    }
    update.send().await.map_err(|error| sdk_error(&format!("update ECS service {}", spec.service), error))?;
    let mut changes = Vec::new();
    if new_definition {
        changes.push(format!(
            "task definition {} → {}",
            short(service.task_definition().unwrap_or("none")),
            short(task_definition)
        ));
    }
    if let Some(count) = new_count {
        changes.push(format!("desired count {} → {count}", service.desired_count()));
    }
    if configuration_changed {
        changes.push("deployment configuration".to_owned());
    }
    if balancers_changed {
        changes.push("load balancer".to_owned());
    }
    if let Some(grace) = new_grace {
        changes.push(format!(
            "health check grace period {}s → {grace}s",
            service.health_check_grace_period_seconds().unwrap_or_default()
        ));
    }
    progress
        .report(TargetEvent::new(
            TargetReport::ServiceUpdated {
                service: spec.service.clone(),
                cluster: spec.cluster.clone(),
                task_definition: task_definition.to_owned(),
            },
            format!("updated ECS service {}: {}", spec.service, changes.join(", ")),
        ))
        .await;
    Ok(())
}

/// The service's deployment configuration with the rolling settings the manifest
/// states.
fn rolling_configuration(wanted: &EcsDeployment, live: Option<&DeploymentConfiguration>) -> DeploymentConfiguration {
    let live_breaker = live.and_then(|live| live.deployment_circuit_breaker());
    let maximum = wanted.maximum_percent.map(|p| p as i32).or(live.and_then(|live| live.maximum_percent()));
    let minimum =
        wanted.minimum_healthy_percent.map(|p| p as i32).or(live.and_then(|live| live.minimum_healthy_percent()));
    // What the manifest leaves out of the breaker (its rollback, after `circuit_breaker:
    // true`) stays as the service has it.
    let live_rollback = live_breaker.is_some_and(|breaker| breaker.rollback());
    let breaker = wanted
        .circuit_breaker
        .map(|breaker| (breaker.enable, breaker.rollback.unwrap_or(live_rollback)))
        .or(live_breaker.map(|breaker| (breaker.enable(), breaker.rollback())));
    let mut configuration = live.cloned().unwrap_or_else(|| DeploymentConfiguration::builder().build());
    configuration.maximum_percent = maximum;
    configuration.minimum_healthy_percent = minimum;
    if let Some((enable, rollback)) = breaker {
        configuration.deployment_circuit_breaker =
            Some(DeploymentCircuitBreaker::builder().enable(enable).rollback(rollback).build());
    }
    configuration
}

/// Follows the deployment to `task_definition` until it completes, fails, or the
/// deadline passes. No fixed sleep: the first look comes at once, then the wait between
/// looks doubles from `polling.first` to `polling.max` (100 to 250 ms by default, then
/// 500 ms after a minute).
async fn watch(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
    task_definition: &str,
    deadline: Instant,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), RolloutError> {
    let started = Instant::now();
    let mut wait = polling.first;
    let mut last_status = String::new();
    loop {
        let service = require(client, spec).await?;
        let deployments = service.deployments();
        let primary = primary_deployment(&service);
        if service.task_definition() != Some(task_definition) {
            // The circuit breaker's rollback (or someone else) moved the service away;
            // the deployment that failed, when ECS still lists it, says why.
            let failed = deployments.iter().find(|deployment| deployment.task_definition() == Some(task_definition));
            let reasons = failure_reasons(client, spec, failed.and_then(|d| d.id())).await;
            let why = failed.and_then(|d| d.rollout_state_reason()).map(|why| format!(": {why}")).unwrap_or_default();
            return Err(RolloutError::Unhealthy {
                reason: format!(
                    "the deployment of {} failed and ECS's circuit breaker rolled service {} back to {}{why}",
                    short(task_definition),
                    spec.service,
                    short(service.task_definition().unwrap_or("none"))
                ),
                logs: reasons,
            });
        }
        let (steady, status) = steadiness(&service, task_definition);
        if steady {
            return Ok(());
        }
        if let Some(primary) = primary
            && primary.rollout_state() == Some(&DeploymentRolloutState::Failed)
        {
            let reasons = failure_reasons(client, spec, primary.id()).await;
            return Err(RolloutError::Unhealthy {
                reason: format!(
                    "the deployment of {} failed: {}",
                    short(task_definition),
                    primary.rollout_state_reason().unwrap_or("no reason given")
                ),
                logs: reasons,
            });
        }
        if let Some(primary) = primary
            && primary.running_count() == 0
            && primary.failed_tasks() >= failed_task_threshold(primary.desired_count())
        {
            // Without a circuit breaker ECS retries failing tasks for ever; waiting out
            // the timeout would only launch more of them.
            let reasons = failure_reasons(client, spec, primary.id()).await;
            return Err(RolloutError::Unhealthy {
                reason: format!(
                    "the deployment of {} is failing: {} tasks failed and none is running",
                    short(task_definition),
                    primary.failed_tasks()
                ),
                logs: reasons,
            });
        }
        if status != last_status {
            progress
                .report(TargetEvent::new(
                    TargetReport::DeploymentProgress {
                        running: service.running_count(),
                        desired: service.desired_count(),
                        status: status.clone(),
                    },
                    format!("ECS service {}: {status}", spec.service),
                ))
                .await;
            last_status = status.clone();
        }
        let now = Instant::now();
        if now >= deadline {
            let reasons = failure_reasons(client, spec, primary.and_then(|p| p.id())).await;
            return Err(RolloutError::TimedOut {
                reason: format!("ECS service {} was not steady in time: {status}", spec.service),
                logs: reasons,
            });
        }
        tokio::time::sleep_until((now + wait).min(deadline)).await;
        let max = if started.elapsed() < polling.slow_after { polling.max } else { polling.slow_max };
        wait = (wait * 2).min(max);
    }
}

/// How many failed tasks, with none running, fail a deployment: the threshold ECS's
/// own circuit breaker uses (half the desired count, at least 3, at most 200).
fn failed_task_threshold(desired: i32) -> i32 {
    ((desired + 1) / 2).clamp(3, 200)
}

/// Why tasks of the deployment stopped, and what ECS said lately: the lines a failed
/// run shows as its "logs".
async fn failure_reasons(client: &aws_sdk_ecs::Client, spec: &EcsServiceSpec, deployment: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut listing =
        client.list_tasks().cluster(&spec.cluster).service_name(&spec.service).desired_status(DesiredStatus::Stopped);
    if let Some(deployment) = deployment {
        listing = listing.started_by(deployment);
    }
    if let Ok(listed) = listing.send().await {
        let arns: Vec<String> = listed.task_arns().iter().take(10).cloned().collect();
        if !arns.is_empty()
            && let Ok(described) = client.describe_tasks().cluster(&spec.cluster).set_tasks(Some(arns)).send().await
        {
            for task in described.tasks() {
                let id = task.task_arn().unwrap_or_default().rsplit('/').next().unwrap_or_default();
                let mut line = format!("task {id} stopped: {}", task.stopped_reason().unwrap_or("no reason given"));
                for container in task.containers() {
                    if container.reason().is_some() || container.exit_code().is_some_and(|code| code != 0) {
                        line.push_str(&format!(
                            "; container {} {}{}",
                            container.name().unwrap_or("?"),
                            container.reason().unwrap_or(""),
                            container.exit_code().map(|code| format!(" (exit code {code})")).unwrap_or_default()
                        ));
                    }
                }
                lines.push(line);
            }
        }
    }
    if let Ok(Some(service)) = describe(client, spec).await {
        lines.extend(service.events().iter().take(5).filter_map(|event| event.message().map(str::to_owned)));
    }
    lines
}

/// Checks that the service runs the app's revision, steadily, and keeps doing so for
/// the settle window: no task of the deployment fails or stops, the running count does
/// not drop, no other deployment starts and ECS does not move the service away.
pub(crate) async fn verify(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    spec: &EcsServiceSpec,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), RolloutError> {
    let service = require(client, spec).await?;
    let current = service.task_definition().unwrap_or_default().to_owned();
    let described = Described::fetch(client, &current).await?;
    if !definitions::runs_revision(&described, app, revision, &spec.definition)? {
        return Err(RolloutError::Unhealthy {
            reason: format!("ECS service {} runs {}, not revision {revision}", spec.service, described.short()),
            logs: Vec::new(),
        });
    }
    let (steady, status) = steadiness(&service, &current);
    let primary = primary_deployment(&service);
    let all_running = primary.is_some_and(|primary| primary.running_count() >= primary.desired_count());
    if !steady || !all_running {
        let logs = failure_reasons(client, spec, primary.and_then(|primary| primary.id())).await;
        return Err(RolloutError::Unhealthy {
            reason: format!("ECS service {} is not steady: {status}", spec.service),
            logs,
        });
    }
    let Some(baseline) = Watched::of(&service) else {
        return Err(RolloutError::Unhealthy {
            reason: format!("ECS service {} has no primary deployment", spec.service),
            logs: Vec::new(),
        });
    };
    let window = spec.settle_window();
    let started = Instant::now();
    let deadline = started + window;
    progress
        .report(TargetEvent::new(
            TargetReport::VerifyWatching {
                what: format!("ECS service {}", spec.service),
                window_ms: window.as_millis() as u64,
            },
            format!("watching ECS service {} for {}: {status}", spec.service, format_duration(window)),
        ))
        .await;
    let gap = (window / 10).clamp(polling.max, SETTLE_POLL_MAX);
    while Instant::now() < deadline {
        tokio::time::sleep_until((Instant::now() + gap).min(deadline)).await;
        let service = require(client, spec).await?;
        if let Some(problem) = baseline.problem(&service, &current) {
            let deployment = service.deployments().iter().find(|d| d.id() == Some(baseline.deployment_id.as_str()));
            let logs = failure_reasons(client, spec, deployment.and_then(|d| d.id())).await;
            return Err(RolloutError::Unhealthy {
                reason: format!(
                    "ECS service {} {problem} {} after its deployment completed, while it was being verified",
                    spec.service,
                    format_duration(started.elapsed())
                ),
                logs,
            });
        }
    }
    progress
        .report(TargetEvent::new(
            TargetReport::VerifyPassed {
                what: format!("ECS service {} on {}", spec.service, described.short()),
                watched_ms: started.elapsed().as_millis() as u64,
            },
            format!(
                "ECS service {} ran {} steadily for {} ({status})",
                spec.service,
                described.short(),
                format_duration(started.elapsed())
            ),
        ))
        .await;
    Ok(())
}

/// Looks at a service during the settle window are at most this far apart.
const SETTLE_POLL_MAX: Duration = Duration::from_secs(2);

/// What verification saw when the window opened: anything worse later is a failure.
struct Watched {
    deployment_id: String,
    failed_tasks: i32,
    desired: i32,
}

impl Watched {
    fn of(service: &Service) -> Option<Watched> {
        let primary = primary_deployment(service)?;
        Some(Watched {
            deployment_id: primary.id()?.to_owned(),
            failed_tasks: primary.failed_tasks(),
            desired: primary.desired_count(),
        })
    }

    /// What went wrong since the window opened, as the end of "ECS service web …".
    fn problem(&self, service: &Service, task_definition: &str) -> Option<String> {
        if service.task_definition() != Some(task_definition) {
            return Some(format!(
                "was moved from {} to {}",
                short(task_definition),
                short(service.task_definition().unwrap_or("nothing"))
            ));
        }
        let primary = primary_deployment(service);
        let Some(primary) = primary else {
            return Some("lost its primary deployment".to_owned());
        };
        if primary.id() != Some(self.deployment_id.as_str()) {
            return Some(format!("started another deployment ({})", primary.id().unwrap_or("?")));
        }
        if primary.rollout_state() == Some(&DeploymentRolloutState::Failed) {
            return Some(format!("deployment failed: {}", primary.rollout_state_reason().unwrap_or("no reason given")));
        }
        let failed = primary.failed_tasks() - self.failed_tasks;
        if failed > 0 {
            return Some(format!("had {failed} task{} fail", if failed == 1 { "" } else { "s" }));
        }
        if primary.running_count() < self.desired.min(primary.desired_count()) {
            return Some(format!(
                "dropped to {} of {} running tasks",
                primary.running_count(),
                primary.desired_count()
            ));
        }
        None
    }
}

/// Puts the service back on the task definition it ran before `revision` (recorded on
/// the revision's own tags) and waits for that deployment.
pub(crate) async fn retire(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    spec: &EcsServiceSpec,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), TargetError> {
    let service = require(client, spec).await?;
    let Some(current) = service.task_definition() else { return Ok(()) };
    let described = Described::fetch(client, current).await?;
    if !definitions::is_revision(&described, app, revision) {
        // It never moved to the revision (or was moved back by its circuit breaker).
        return Ok(());
    }
    let Some(previous) = described.tag(TAG_PREVIOUS).map(str::to_owned) else {
        return Err(TargetError::Invalid(format!("{} does not record what it replaced", described.short())));
    };
    // A native deployment under way goes back by ECS's own rollback.
    let rolled_back = native::roll_back_in_progress(client, spec, &previous, progress, polling).await.map_err(
        |error| match error {
            RolloutError::Target(error) => error,
            other => TargetError::Invalid(format!("rolling back ECS's deployment failed: {other}")),
        },
    )?;
    let service = if rolled_back { require(client, spec).await? } else { service };
    if service.task_definition() == Some(previous.as_str()) {
        return Ok(());
    }
    move_service(client, spec, &service, &previous, Settings::default(), progress).await?;
    let deadline = Instant::now() + spec.timeout;
    let moved = match &spec.strategy {
        Some(strategy) => {
            native::follow(
                client,
                spec,
                &previous,
                native::Until::Done,
                deadline + native::baking(strategy),
                progress,
                polling,
            )
            .await
        }
        None => watch(client, spec, &previous, deadline, progress, polling).await,
    };
    moved.map_err(|error| match error {
        RolloutError::Target(error) => error,
        other => TargetError::Invalid(format!("moving back to {} failed too: {other}", short(&previous))),
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};
    use launchway_manifest::{CircuitBreaker, EcsDeployment};

    use super::{failed_task_threshold, rolling_configuration};

    /// Issue 21, item 12: `circuit_breaker: true` turned off the rollback ECS did by
    /// itself. What the manifest leaves out stays as the service has it.
    #[test]
    fn a_circuit_breaker_turned_on_keeps_the_services_own_rollback() {
        let live = |rollback: bool| {
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(rollback).build())
                .build()
        };
        let wanted = |rollback: Option<bool>| EcsDeployment {
            maximum_percent: None,
            minimum_healthy_percent: None,
            circuit_breaker: Some(CircuitBreaker { enable: true, rollback }),
        };
        let breaker = |configuration: DeploymentConfiguration| {
            let breaker = configuration.deployment_circuit_breaker.expect("a breaker");
            (breaker.enable, breaker.rollback)
        };
        assert_eq!(breaker(rolling_configuration(&wanted(None), Some(&live(true)))), (true, true));
        assert_eq!(breaker(rolling_configuration(&wanted(None), Some(&live(false)))), (true, false));
        assert_eq!(
            breaker(rolling_configuration(&wanted(None), None)),
            (true, false),
            "nothing to keep: ECS's default"
        );
        assert_eq!(breaker(rolling_configuration(&wanted(Some(false)), Some(&live(true)))), (true, false));
        assert_eq!(breaker(rolling_configuration(&wanted(Some(true)), Some(&live(false)))), (true, true));
    }

    #[test]
    fn a_deployment_fails_after_as_many_failed_tasks_as_ecss_circuit_breaker_allows() {
        assert_eq!(failed_task_threshold(1), 3);
        assert_eq!(failed_task_threshold(10), 5);
        assert_eq!(failed_task_threshold(11), 6);
        assert_eq!(failed_task_threshold(1000), 200);
    }
}
