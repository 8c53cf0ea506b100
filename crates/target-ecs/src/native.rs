//! ECS's own blue/green, canary and linear deployments: the configuration that asks
//! for them (strategy, bake times, pause hooks at launchway's gates, alarms, the load
//! balancer's advanced configuration), read back under the names plans compare, and
//! the deployment followed through DescribeServiceDeployments — its lifecycle stage,
//! its traffic weights, the pause hook it waits at — continued or rolled back with
//! ContinueServiceDeployment (StopServiceDeployment when it waits at no hook).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::types::{
    AdvancedConfiguration, CanaryConfiguration, DeploymentAlarms, DeploymentConfiguration, DeploymentLifecycleHook,
    DeploymentLifecycleHookAction, DeploymentLifecycleHookStage, DeploymentLifecycleHookStatus,
    DeploymentLifecycleHookTargetType, DeploymentLifecycleHookTimeoutConfiguration, DeploymentStrategy,
    LinearConfiguration, LoadBalancer, Service, ServiceDeployment, ServiceDeploymentStatus,
    StopServiceDeploymentStopType,
};
use launchway_manifest::{EcsServiceSpec, GateStage, Strategy, format_duration};
use launchway_target::{LiveLifecycle, Progress, RolloutError, TargetError, TargetEvent, TargetReport};
use tokio::time::Instant;

use crate::definitions::short;
use crate::error::sdk_error;
use crate::lookup::{self, Polling};

/// What the manifest states about the service's deployment configuration and load
/// balancer, under the names [`live_settings`] reads them by; what it leaves out, ECS
/// keeps.
pub(crate) fn stated_settings(spec: &EcsServiceSpec) -> BTreeMap<String, String> {
    let mut stated = BTreeMap::new();
    if let Some(deployment) = &spec.deployment {
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                stated.insert(format!("deployment.{name}"), value);
            }
        };
        put("maximum_percent", deployment.maximum_percent.map(|p| p.to_string()));
        put("minimum_healthy_percent", deployment.minimum_healthy_percent.map(|p| p.to_string()));
        put("circuit_breaker.enable", deployment.circuit_breaker.map(|c| c.enable.to_string()));
        put("circuit_breaker.rollback", deployment.circuit_breaker.and_then(|c| c.rollback).map(|r| r.to_string()));
    }
    flatten_configuration(&wanted_native(spec, None), &mut stated, false);
    if let Some(balancer) = &spec.load_balancer {
        let advanced = advanced_configuration(balancer);
        flatten_advanced(Some(&advanced), &mut stated);
    }
    stated
}

/// The service's deployment configuration and load balancer, as [`stated_settings`]
/// names them.
pub(crate) fn live_settings(spec: &EcsServiceSpec, service: &Service, settings: &mut BTreeMap<String, String>) {
    if let Some(configuration) = service.deployment_configuration() {
        flatten_configuration(configuration, settings, true);
    }
    if let Ok(Some(balancer)) = chosen_load_balancer(spec, service.load_balancers()) {
        flatten_advanced(balancer.advanced_configuration(), settings);
    }
}

/// The strategy-related part of a configuration, flattened; with `rolling`, the
/// percentages and circuit breaker too (a live configuration).
fn flatten_configuration(configuration: &DeploymentConfiguration, out: &mut BTreeMap<String, String>, rolling: bool) {
    let mut put = |name: &str, value: String| {
        out.insert(format!("deployment.{name}"), value);
    };
    if rolling {
        if let Some(maximum) = configuration.maximum_percent() {
            put("maximum_percent", maximum.to_string());
        }
        if let Some(minimum) = configuration.minimum_healthy_percent() {
            put("minimum_healthy_percent", minimum.to_string());
        }
        if let Some(breaker) = configuration.deployment_circuit_breaker() {
            put("circuit_breaker.enable", breaker.enable().to_string());
            put("circuit_breaker.rollback", breaker.rollback().to_string());
        }
    }
    let minutes = |minutes: i32| format_duration(Duration::from_secs(minutes.max(0) as u64 * 60));
    if let Some(strategy) = configuration.strategy() {
        put("strategy", strategy.as_str().to_lowercase());
    }
    if let Some(bake) = configuration.bake_time_in_minutes() {
        put("bake", minutes(bake));
    }
    if let Some(canary) = configuration.canary_configuration() {
        put(
            "canary",
            format!(
                "{}% for {}",
                canary.canary_percent().unwrap_or_default(),
                minutes(canary.canary_bake_time_in_minutes().unwrap_or_default())
            ),
        );
    }
    if let Some(linear) = configuration.linear_configuration() {
        put(
            "linear",
            format!(
                "{}% every {}",
                linear.step_percent().unwrap_or_default(),
                minutes(linear.step_bake_time_in_minutes().unwrap_or_default())
            ),
        );
    }
    let gates: Vec<String> = configuration
        .lifecycle_hooks()
        .iter()
        .filter(|hook| hook.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause))
        .flat_map(|hook| {
            let timeout = hook.timeout_configuration().and_then(|t| t.timeout_in_minutes()).unwrap_or(1440);
            hook.lifecycle_stages().iter().map(move |stage| {
                format!("{} (ECS rolls back after {})", stage.as_str().to_lowercase(), minutes(timeout))
            })
        })
        .collect();
    if !gates.is_empty() {
        put("gates", gates.join(", "));
    }
    if let Some(alarms) = configuration.alarms().filter(|alarms| alarms.enable()) {
        put("alarms", alarms.alarm_names().join(", "));
        put("alarms.rollback", alarms.rollback().to_string());
    }
}

fn flatten_advanced(advanced: Option<&AdvancedConfiguration>, out: &mut BTreeMap<String, String>) {
    let Some(advanced) = advanced else { return };
    let fields = [
        ("alternate_target_group", advanced.alternate_target_group_arn()),
        ("production_listener_rule", advanced.production_listener_rule()),
        ("test_listener_rule", advanced.test_listener_rule()),
        ("role", advanced.role_arn()),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            out.insert(format!("load_balancer.{name}"), value.to_owned());
        }
    }
}

/// The configuration a native strategy asks for, over `live` (ECS keeps what the
/// manifest leaves out, and every Lambda hook someone else set).
pub(crate) fn wanted_native(spec: &EcsServiceSpec, live: Option<&DeploymentConfiguration>) -> DeploymentConfiguration {
    let mut configuration = live.cloned().unwrap_or_else(|| DeploymentConfiguration::builder().build());
    if let Some(alarms) = &spec.alarms
        && let Ok(alarms) = DeploymentAlarms::builder()
            .set_alarm_names(Some(alarms.names.clone()))
            .enable(true)
            .rollback(alarms.rollback)
            .build()
    {
        configuration.alarms = Some(alarms);
    }
    let Some(strategy) = &spec.strategy else { return configuration };
    let minutes = |duration: Duration| Some((duration.as_secs() / 60) as i32);
    match strategy {
        Strategy::Rolling { .. } => configuration.strategy = Some(DeploymentStrategy::Rolling),
        Strategy::BlueGreen { bake, .. } => {
            configuration.strategy = Some(DeploymentStrategy::BlueGreen);
            configuration.bake_time_in_minutes = minutes(*bake);
        }
        Strategy::Canary { steps, .. } => {
            let canary = steps[0];
            let bake = steps.get(1).map_or(Duration::ZERO, |all| all.pause);
            configuration.strategy = Some(DeploymentStrategy::Canary);
            configuration.bake_time_in_minutes = minutes(bake);
            configuration.canary_configuration = Some(
                CanaryConfiguration::builder()
                    .canary_percent(f64::from(canary.weight))
                    .set_canary_bake_time_in_minutes(minutes(canary.pause))
                    .build(),
            );
        }
        Strategy::Linear { step, pause, bake, .. } => {
            configuration.strategy = Some(DeploymentStrategy::Linear);
            configuration.bake_time_in_minutes = minutes(*bake);
            configuration.linear_configuration = Some(
                LinearConfiguration::builder()
                    .step_percent(f64::from(*step))
                    .set_step_bake_time_in_minutes(minutes(*pause))
                    .build(),
            );
        }
    }
    // launchway's gates replace the PAUSE hooks; Lambda hooks stay as they are.
    let mut hooks: Vec<DeploymentLifecycleHook> = live
        .map(|live| live.lifecycle_hooks())
        .unwrap_or_default()
        .iter()
        .filter(|hook| hook.target_type() != Some(&DeploymentLifecycleHookTargetType::Pause))
        .cloned()
        .collect();
    for gate in strategy.gates() {
        hooks.push(
            DeploymentLifecycleHook::builder()
                .target_type(DeploymentLifecycleHookTargetType::Pause)
                .lifecycle_stages(DeploymentLifecycleHookStage::from(gate.at.ecs_name().as_str()))
                .timeout_configuration(
                    DeploymentLifecycleHookTimeoutConfiguration::builder()
                        .set_timeout_in_minutes(minutes(gate.timeout))
                        .action(DeploymentLifecycleHookAction::Rollback)
                        .build(),
                )
                .build(),
        );
    }
    configuration.lifecycle_hooks = Some(hooks);
    configuration
}

fn advanced_configuration(balancer: &launchway_manifest::EcsLoadBalancer) -> AdvancedConfiguration {
    AdvancedConfiguration::builder()
        .alternate_target_group_arn(&balancer.alternate_target_group)
        .production_listener_rule(&balancer.production_listener_rule)
        .set_test_listener_rule(balancer.test_listener_rule.clone())
        .role_arn(&balancer.role)
        .build()
}

/// The service's load balancer the manifest's `load_balancer` is about: the one with
/// its target group, or the only one.
fn chosen_load_balancer<'a>(
    spec: &EcsServiceSpec,
    balancers: &'a [LoadBalancer],
) -> Result<Option<&'a LoadBalancer>, TargetError> {
    let Some(wanted) = &spec.load_balancer else { return Ok(None) };
    let chosen = match &wanted.target_group {
        Some(group) => balancers.iter().find(|balancer| balancer.target_group_arn() == Some(group.as_str())),
        None if balancers.len() == 1 => balancers.first(),
        None => {
            return Err(TargetError::Invalid(format!(
                "ECS service {} has {} load balancers: say which with ecs.load_balancer.target_group",
                spec.service,
                balancers.len()
            )));
        }
    };
    chosen.map(Some).ok_or_else(|| {
        TargetError::Invalid(format!(
            "ECS service {} has no load balancer{} for ECS to shift traffic with",
            spec.service,
            wanted.target_group.as_deref().map(|group| format!(" with target group {group}")).unwrap_or_default()
        ))
    })
}

/// The service's load balancers with the manifest's advanced configuration, when it
/// states one that differs.
pub(crate) fn wanted_load_balancers(
    spec: &EcsServiceSpec,
    service: &Service,
) -> Result<Option<Vec<LoadBalancer>>, TargetError> {
    let Some(wanted) = &spec.load_balancer else { return Ok(None) };
    let balancers = service.load_balancers();
    let chosen = chosen_load_balancer(spec, balancers)?.cloned();
    let advanced = advanced_configuration(wanted);
    if chosen.as_ref().and_then(LoadBalancer::advanced_configuration) == Some(&advanced) {
        return Ok(None);
    }
    Ok(Some(
        balancers
            .iter()
            .map(|balancer| match Some(balancer) == chosen.as_ref() {
                true => {
                    let mut balancer = balancer.clone();
                    balancer.advanced_configuration = Some(advanced.clone());
                    balancer
                }
                false => balancer.clone(),
            })
            .collect(),
    ))
}

/// How far [`follow`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Until the deployment waits at this gate (or has finished without stopping
    /// there); gates before it are continued.
    Gate(GateStage),
    /// Until it has finished, continuing every gate.
    Done,
}

/// What one look at a native deployment found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Look {
    /// Waiting at the gate asked for.
    Reached,
    /// Finished: nothing is left to wait for.
    Finished,
    /// Still going, and where it is.
    Moving(Stage),
}

/// Where a native deployment is: what `deployment.stage` events report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stage {
    /// ECS's status of the deployment (`IN_PROGRESS`), or `STARTING` before ECS names it.
    pub status: String,
    /// Its lifecycle stage, as a manifest writes stages (`post_test_traffic_shift`).
    pub stage: String,
    /// The new revision's share of production traffic, in percent.
    pub production_weight: Option<f64>,
    /// The task definition deployed, short (`web:7`).
    pub to: String,
}

impl Stage {
    fn line(&self) -> String {
        let weight = self
            .production_weight
            .map(|weight| format!(", {weight}% of production traffic on {}", self.to))
            .unwrap_or_default();
        format!("{} {}{weight}", self.status, self.stage)
    }
}

/// Where the service's native deployment is, while one is under way (the app page's
/// "lifecycle stage"); nothing for a rolling service, or once the deployment ended.
/// Looks only: it continues no hook (the run that waits at it decides).
pub(crate) async fn lifecycle(
    client: &aws_sdk_ecs::Client,
    service: &Service,
) -> Result<Option<LiveLifecycle>, TargetError> {
    let native = service
        .deployment_configuration()
        .and_then(|configuration| configuration.strategy())
        .is_some_and(|strategy| *strategy != DeploymentStrategy::Rolling);
    if !native {
        return Ok(None);
    }
    let Some(deployment) = current(client, service).await? else { return Ok(None) };
    let under_way = matches!(
        deployment.status(),
        Some(
            ServiceDeploymentStatus::Pending
                | ServiceDeploymentStatus::InProgress
                | ServiceDeploymentStatus::StopRequested
                | ServiceDeploymentStatus::RollbackRequested
                | ServiceDeploymentStatus::RollbackInProgress
        )
    );
    if !under_way {
        return Ok(None);
    }
    let target = deployment.target_service_revision();
    let to = match target.and_then(|revision| revision.arn()) {
        Some(arn) => revision_task_definition(client, arn).await?.map(|definition| short(&definition).to_owned()),
        None => None,
    };
    Ok(Some(LiveLifecycle {
        status: deployment.status().map_or("UNKNOWN", |status| status.as_str()).to_owned(),
        stage: deployment.lifecycle_stage().map(|stage| stage.as_str().to_lowercase()).unwrap_or_default(),
        production_weight: target.and_then(|revision| revision.requested_production_traffic_weight()),
        to: to.unwrap_or_default(),
        paused: awaiting(&deployment).is_some(),
    }))
}

/// The deployment ECS runs for the service, when it runs one of a native strategy.
async fn current(client: &aws_sdk_ecs::Client, service: &Service) -> Result<Option<ServiceDeployment>, TargetError> {
    let Some(arn) = service.current_service_deployment() else { return Ok(None) };
    let described = client
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .map_err(|error| sdk_error("describe the ECS service deployment", error))?;
    Ok(described.service_deployments.unwrap_or_default().into_iter().next())
}

/// The task definition a service revision runs.
async fn revision_task_definition(client: &aws_sdk_ecs::Client, arn: &str) -> Result<Option<String>, TargetError> {
    let described = client
        .describe_service_revisions()
        .service_revision_arns(arn)
        .send()
        .await
        .map_err(|error| sdk_error("describe the ECS service revision", error))?;
    Ok(described.service_revisions.unwrap_or_default().into_iter().next().and_then(|revision| revision.task_definition))
}

/// One look at the service's deployment to `task_definition`, continuing a gate it
/// waits at before `until`. Fails when ECS rolled it back, stopped it, or moved the
/// service elsewhere.
pub(crate) async fn look(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
    task_definition: &str,
    until: Until,
    progress: &dyn Progress,
) -> Result<Look, RolloutError> {
    let service = lookup::require(client, spec).await?;
    let deployment = current(client, &service).await?;
    let target = match deployment.as_ref().and_then(|d| d.target_service_revision()).and_then(|r| r.arn()) {
        Some(arn) => revision_task_definition(client, arn).await?,
        None => None,
    };
    let ours = target.as_deref() == Some(task_definition);
    let moving = deployment.as_ref().is_some_and(|deployment| {
        matches!(deployment.status(), Some(ServiceDeploymentStatus::InProgress | ServiceDeploymentStatus::Pending))
    });
    let Some(deployment) = deployment.filter(|_| ours) else {
        // Back on it after ECS rolled another deployment back, or never deployed
        // natively: done once its tasks are.
        if service.task_definition() == Some(task_definition) && !moving && primary_done(&service, task_definition) {
            return Ok(Look::Finished);
        }
        // Just updated: ECS may name the deployment it finished before as current for a
        // moment, while the primary one, ours, starts.
        if service.task_definition() == Some(task_definition) && !moving && primary_starting(&service, task_definition)
        {
            return Ok(Look::Moving(Stage {
                status: "STARTING".to_owned(),
                stage: "waiting for ECS to start the deployment".to_owned(),
                production_weight: None,
                to: short(task_definition).to_owned(),
            }));
        }
        return Err(RolloutError::Unhealthy {
            reason: format!(
                "ECS service {} is not deploying {} (it runs {}): ECS rolled it back or someone moved it",
                spec.service,
                short(task_definition),
                short(service.task_definition().unwrap_or("nothing"))
            ),
            logs: service_events(&service),
        });
    };
    let status = deployment.status().cloned();
    let stage = deployment.lifecycle_stage().map(|stage| stage.as_str().to_lowercase()).unwrap_or_default();
    let weight =
        deployment.target_service_revision().and_then(|revision| revision.requested_production_traffic_weight());
    let where_it_is = Stage {
        status: status.as_ref().map_or("UNKNOWN", |status| status.as_str()).to_owned(),
        stage,
        production_weight: weight,
        to: short(task_definition).to_owned(),
    };
    match status {
        Some(ServiceDeploymentStatus::Successful) => return Ok(Look::Finished),
        Some(ServiceDeploymentStatus::InProgress | ServiceDeploymentStatus::Pending) => {}
        Some(other) => {
            return Err(RolloutError::Unhealthy {
                reason: format!(
                    "ECS's deployment of {} is {}: {}",
                    short(task_definition),
                    other.as_str(),
                    deployment.status_reason().unwrap_or("no reason given")
                ),
                logs: service_events(&service),
            });
        }
        None => {}
    }
    let Some((hook, at)) = awaiting(&deployment) else { return Ok(Look::Moving(where_it_is)) };
    match until {
        Until::Gate(gate) if at >= gate => Ok(Look::Reached),
        _ => {
            decide(client, &deployment, &hook, at, DeploymentLifecycleHookAction::Continue, progress).await?;
            Ok(Look::Moving(where_it_is))
        }
    }
}

/// Whether the service's primary deployment runs `task_definition`, completed.
fn primary_done(service: &Service, task_definition: &str) -> bool {
    service.deployments().iter().any(|deployment| {
        deployment.status() == Some("PRIMARY")
            && deployment.task_definition() == Some(task_definition)
            && deployment.rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
    })
}

/// Whether the service's primary deployment runs `task_definition` and is still going.
fn primary_starting(service: &Service, task_definition: &str) -> bool {
    service.deployments().iter().any(|deployment| {
        deployment.status() == Some("PRIMARY")
            && deployment.task_definition() == Some(task_definition)
            && deployment.rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::InProgress)
    })
}

/// The PAUSE hook the deployment waits at, and its stage.
fn awaiting(deployment: &ServiceDeployment) -> Option<(String, GateStage)> {
    let stage = deployment.lifecycle_stage()?.as_str().to_lowercase();
    let at = GateStage::parse(&stage)?;
    deployment
        .lifecycle_hook_details()
        .iter()
        .find(|hook| {
            hook.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause)
                && hook.status() == Some(&DeploymentLifecycleHookStatus::AwaitingAction)
        })
        .and_then(|hook| hook.hook_id())
        .map(|hook| (hook.to_owned(), at))
}

async fn decide(
    client: &aws_sdk_ecs::Client,
    deployment: &ServiceDeployment,
    hook: &str,
    at: GateStage,
    action: DeploymentLifecycleHookAction,
    progress: &dyn Progress,
) -> Result<(), TargetError> {
    let arn = deployment.service_deployment_arn().unwrap_or_default();
    client
        .continue_service_deployment()
        .service_deployment_arn(arn)
        .hook_id(hook)
        .action(action.clone())
        .send()
        .await
        .map_err(|error| sdk_error("continue the ECS service deployment", error))?;
    let verb = match action {
        DeploymentLifecycleHookAction::Rollback => "to roll back",
        _ => "to go on",
    };
    progress
        .report(TargetEvent::new(
            TargetReport::DeploymentContinued { stage: at.as_str().to_owned(), action: action.as_str().to_owned() },
            format!("told ECS {verb} from its pause at {}", at.as_str()),
        ))
        .await;
    Ok(())
}

/// Looks until `until` is reached or the deadline passes, reporting each new stage
/// and each pause it reaches.
pub(crate) async fn follow(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
    task_definition: &str,
    until: Until,
    deadline: Instant,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<(), RolloutError> {
    let mut wait = polling.first;
    let mut last: Option<Stage> = None;
    loop {
        match look(client, spec, task_definition, until, progress).await? {
            Look::Finished => return Ok(()),
            Look::Reached => {
                if let Until::Gate(gate) = until {
                    report_pause(spec, gate, progress).await;
                }
                return Ok(());
            }
            Look::Moving(stage) => {
                if last.as_ref() != Some(&stage) {
                    report_stage(spec, &stage, progress).await;
                    last = Some(stage);
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RolloutError::TimedOut {
                reason: format!(
                    "ECS's deployment of {} did not get there in time: {}",
                    short(task_definition),
                    last.as_ref().map_or_else(|| "nothing seen yet".to_owned(), Stage::line)
                ),
                logs: Vec::new(),
            });
        }
        tokio::time::sleep_until((now + wait).min(deadline)).await;
        wait = (wait * 2).min(polling.max);
    }
}

pub(crate) async fn report_stage(spec: &EcsServiceSpec, stage: &Stage, progress: &dyn Progress) {
    let report = TargetReport::DeploymentStage {
        stage: stage.stage.clone(),
        status: stage.status.clone(),
        production_weight: stage.production_weight,
    };
    progress.report(TargetEvent::new(report, format!("ECS service {}: {}", spec.service, stage.line()))).await;
}

pub(crate) async fn report_pause(spec: &EcsServiceSpec, gate: GateStage, progress: &dyn Progress) {
    progress
        .report(TargetEvent::new(
            TargetReport::DeploymentPaused { stage: gate.as_str().to_owned(), hook: "PAUSE".to_owned() },
            format!("ECS service {}'s deployment waits at {} for launchway", spec.service, gate.as_str()),
        ))
        .await;
}

/// Rolls back a native deployment still under way that is not to `keep` (the task
/// definition wanted now): through its pause hook when it waits at one, else by
/// stopping it with a rollback; then waits for ECS to finish the rollback. `false`
/// when there was nothing to roll back.
pub(crate) async fn roll_back_in_progress(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
    keep: &str,
    progress: &dyn Progress,
    polling: Polling,
) -> Result<bool, RolloutError> {
    let service = lookup::require(client, spec).await?;
    let Some(deployment) = current(client, &service).await? else { return Ok(false) };
    let arn = deployment.service_deployment_arn().unwrap_or_default().to_owned();
    match deployment.status() {
        // Already going back (ECS's alarms, or a rollback asked before a restart).
        Some(ServiceDeploymentStatus::RollbackRequested | ServiceDeploymentStatus::RollbackInProgress) => {}
        Some(ServiceDeploymentStatus::InProgress | ServiceDeploymentStatus::Pending)
            if service.task_definition() != Some(keep) =>
        {
            match awaiting(&deployment) {
                Some((hook, at)) => {
                    decide(client, &deployment, &hook, at, DeploymentLifecycleHookAction::Rollback, progress).await?;
                }
                None => {
                    client
                        .stop_service_deployment()
                        .service_deployment_arn(&arn)
                        .stop_type(StopServiceDeploymentStopType::Rollback)
                        .send()
                        .await
                        .map_err(|error| sdk_error("stop the ECS service deployment with a rollback", error))?;
                    progress
                        .report(TargetEvent::new(
                            TargetReport::DeploymentContinued {
                                stage: "in progress".to_owned(),
                                action: "ROLLBACK".to_owned(),
                            },
                            format!("stopped ECS service {}'s deployment with a rollback", spec.service),
                        ))
                        .await;
                }
            }
        }
        _ => return Ok(false),
    }
    let deadline = Instant::now() + spec.timeout;
    let mut wait = polling.first;
    loop {
        let described = client
            .describe_service_deployments()
            .service_deployment_arns(&arn)
            .send()
            .await
            .map_err(|error| sdk_error("describe the ECS service deployment", error))?;
        let status = described.service_deployments().first().and_then(|d| d.status()).cloned();
        match status {
            Some(ServiceDeploymentStatus::RollbackSuccessful | ServiceDeploymentStatus::Stopped) => return Ok(true),
            Some(ServiceDeploymentStatus::RollbackFailed) => {
                return Err(RolloutError::Unhealthy {
                    reason: format!("ECS could not roll service {}'s deployment back", spec.service),
                    logs: Vec::new(),
                });
            }
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RolloutError::TimedOut {
                reason: format!("ECS did not finish rolling service {}'s deployment back in time", spec.service),
                logs: Vec::new(),
            });
        }
        tokio::time::sleep_until((now + wait).min(deadline)).await;
        wait = (wait * 2).min(polling.max);
    }
}

fn service_events(service: &Service) -> Vec<String> {
    service.events().iter().take(5).filter_map(|event| event.message().map(str::to_owned)).collect()
}

/// The longest a native deployment may spend in ECS's own bake times, beyond the
/// time its tasks take to start.
pub(crate) fn baking(strategy: &Strategy) -> Duration {
    strategy.traffic_steps().iter().map(|step| step.pause).sum()
}
