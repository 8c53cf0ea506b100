//! The Amazon ECS target, through the official AWS SDK for Rust.
//!
//! launchway updates what exists: ECS services (a new task definition revision, desired
//! count and deployment settings) and scheduled tasks (the task definition an
//! EventBridge rule or Scheduler schedule starts). It never creates or deletes services,
//! rules or schedules, and never deregisters a task definition revision.
//!
//! Analyses of its deployments may read CloudWatch metrics and alarms.
//!
//! Credentials come from the standard AWS chain, optionally through a role assumed per
//! environment (another account); launchway stores none of them.

mod cloudwatch;
mod definitions;
mod ecr;
mod error;
mod logs;
mod lookup;
mod native;
mod plan;
mod raw;
mod runs;
mod schedules;
mod secrets;
mod services;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_ecs::config::Region;
use futures_util::{StreamExt as _, TryStreamExt as _};
use launchway_manifest::{AppSpec, CloudWatchAnalysis, EcsTarget};
use launchway_target::planning::PlanRequest;
use launchway_target::{
    Advance, AppPlan, AppRef, ContainerLogs, LiveApp, LiveDefinition, LiveEnvironment, Progress, Rollout, RolloutError,
    Target, TargetError, TaskExecution, TaskOutcome,
};

pub use ecr::{RegistryLogin, ecr_login};
pub use lookup::Polling;
pub use secrets::SsmParameters;

/// Apps observed at once.
const OBSERVE_CONCURRENCY: usize = 8;

/// One ECS environment: a region, an account (through its credentials) and a default
/// cluster.
pub struct Ecs {
    ecs: aws_sdk_ecs::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch Logs, where awslogs containers write (the app page's recent logs).
    logs: aws_sdk_cloudwatchlogs::Client,
    events: aws_sdk_eventbridge::Client,
    scheduler: aws_sdk_scheduler::Client,
    description: String,
    polling: Polling,
    /// The last stage reported of each service's native deployment, so that a stage is
    /// reported once however often the engine looks.
    reported: std::sync::Mutex<std::collections::BTreeMap<String, native::Stage>>,
}

impl Ecs {
    /// One app's live definition, if it exists.
    async fn observe_app(&self, app: &AppRef<'_>) -> Result<(String, Option<LiveDefinition>), TargetError> {
        let definition = match app.spec {
            AppSpec::EcsService(service) => services::observe(&self.ecs, service).await?,
            AppSpec::EcsTask(task) => schedules::observe(&self.schedule_clients(), task).await?,
            AppSpec::Service(_) | AppSpec::Task(_) => None,
        };
        Ok((app.app.to_owned(), definition))
    }

    /// Loads the AWS configuration the environment asks for: its region, profile and
    /// endpoint, else the ambient ones (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`…);
    /// then assumes its role, when it names one.
    pub async fn connect(target: &EcsTarget) -> Result<Ecs, TargetError> {
        Ecs::connect_with(target, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// As [`Ecs::connect`], starting from `loader` instead of the ambient configuration
    /// (tests give it credentials of their own).
    pub async fn connect_with(target: &EcsTarget, loader: aws_config::ConfigLoader) -> Result<Ecs, TargetError> {
        let config = sdk_config_with(target, loader).await?;
        let region = config.region().map(ToString::to_string).unwrap_or_default();
        let description = match &target.role_arn {
            Some(role) => format!("ECS in {region} as {role}"),
            None => format!("ECS in {region}"),
        };
        Ok(Ecs {
            ecs: aws_sdk_ecs::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            scheduler: aws_sdk_scheduler::Client::new(&config),
            description,
            polling: Polling::default(),
            reported: std::sync::Mutex::default(),
        })
    }

    /// How often deployments are looked at (tests and benchmarks tune it).
    pub fn with_polling(mut self, polling: Polling) -> Ecs {
        self.polling = polling;
        self
    }

    /// The ECS client, for tools that need more than deploys.
    pub fn client(&self) -> &aws_sdk_ecs::Client {
        &self.ecs
    }

    fn schedule_clients(&self) -> schedules::Clients<'_> {
        schedules::Clients { ecs: &self.ecs, events: &self.events, scheduler: &self.scheduler }
    }
}

/// The SDK configuration of an ECS environment, from the ambient configuration.
pub async fn sdk_config(target: &EcsTarget) -> Result<aws_config::SdkConfig, TargetError> {
    sdk_config_with(target, aws_config::defaults(BehaviorVersion::latest())).await
}

/// The SDK configuration of an ECS environment, starting from `loader`.
pub async fn sdk_config_with(
    target: &EcsTarget,
    mut loader: aws_config::ConfigLoader,
) -> Result<aws_config::SdkConfig, TargetError> {
    if let Some(region) = &target.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &target.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let base = loader.load().await;
    if base.region().is_none() {
        return Err(TargetError::Invalid(
            "no AWS region: set region on the environment's ecs target, or AWS_REGION".to_owned(),
        ));
    }
    let Some(role) = &target.role_arn else { return Ok(base) };
    let mut provider = AssumeRoleProvider::builder(role).session_name("launchway").configure(&base);
    if let Some(external_id) = &target.external_id {
        provider = provider.external_id(external_id);
    }
    let provider = provider.build().await;
    Ok(base.into_builder().credentials_provider(aws_sdk_ecs::config::SharedCredentialsProvider::new(provider)).build())
}

#[async_trait]
impl Target for Ecs {
    fn rolled_out(&self, spec: &AppSpec, revision: &str) -> String {
        match spec {
            AppSpec::EcsService(service) => format!("ECS service {} moved to revision {revision}", service.service),
            _ => format!("the schedule's target moved to revision {revision}"),
        }
    }

    fn progressive_start(&self, _spec: &AppSpec, revision: &str, strategy: &str, steps: &str) -> String {
        format!("revision {revision} is being deployed by ECS ({strategy}), pausing at {steps} where launchway decides")
    }

    fn first_release_skips_steps(&self, spec: &AppSpec) -> bool {
        // The service served something before launchway's first release, and its
        // deployment pauses at its gates either way.
        !matches!(spec, AppSpec::EcsService(_))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn plan(&self, request: PlanRequest<'_>) -> AppPlan {
        plan::compute(request)
    }

    async fn check(&self, _app: &str, _env: &str, spec: &AppSpec) -> Result<Vec<String>, TargetError> {
        match spec {
            AppSpec::EcsService(service) => services::check(&self.ecs, service).await,
            AppSpec::EcsTask(task) if task.on_deploy.is_some() => Ok(Vec::new()),
            AppSpec::EcsTask(task) => schedules::check(&self.schedule_clients(), task).await,
            AppSpec::Service(_) | AppSpec::Task(_) => {
                Err(TargetError::Invalid("an ECS environment runs ECS services and tasks only".to_owned()))
            }
        }
    }

    async fn observe(&self, _env: &str, apps: &[AppRef<'_>]) -> Result<LiveEnvironment, TargetError> {
        // Each app is two or three API calls; a few apps at a time keeps a poll of a
        // large environment short without running into the API's rate limits (the SDK
        // backs off when throttled).
        let lookups: Vec<_> = apps.iter().map(|app| self.observe_app(app)).collect();
        let observed: Vec<_> =
            futures_util::stream::iter(lookups).buffer_unordered(OBSERVE_CONCURRENCY).try_collect().await?;
        let mut live = LiveEnvironment::default();
        for (app, definition) in observed {
            if let Some(definition) = definition {
                live.apps
                    .insert(app, LiveApp { replicas: Vec::new(), definition: Some(definition), entry_point: None });
            }
        }
        Ok(live)
    }

    async fn rollout(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        // Task definitions are named by their own content, not the app's whole spec:
        // a change to service settings alone registers no revision.
        match rollout.spec {
            AppSpec::EcsService(service) => {
                let revision = service.definition.revision().0;
                services::rollout(&self.ecs, rollout.app, &revision, service, progress, self.polling).await
            }
            AppSpec::EcsTask(task) => {
                let revision = task.definition.revision().0;
                schedules::rollout(&self.schedule_clients(), rollout.app, &revision, task, progress).await
            }
            AppSpec::Service(_) | AppSpec::Task(_) => Err(TargetError::Invalid(format!(
                "{} is a Docker app, which an ECS environment does not roll out",
                rollout.app
            ))
            .into()),
        }
    }

    async fn advance(
        &self,
        rollout: Rollout<'_>,
        step: usize,
        progress: &dyn Progress,
    ) -> Result<Advance, RolloutError> {
        let AppSpec::EcsService(service) = rollout.spec else {
            return Err(TargetError::Invalid(format!("{} has no deployment to follow in steps", rollout.app)).into());
        };
        let revision = service.definition.revision().0;
        match services::advance(&self.ecs, rollout.app, &revision, service, step, progress, &self.reported).await? {
            true => Ok(Advance::Reached),
            false => Ok(Advance::Moving),
        }
    }

    /// A native deployment goes on to its end; the release a rollback returns to is
    /// reached by ECS's own rollback of what it is deploying.
    async fn promote(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        match rollout.spec {
            AppSpec::EcsService(service) => {
                let revision = service.definition.revision().0;
                services::promote(&self.ecs, rollout.app, &revision, service, progress, self.polling).await
            }
            _ => self.rollout(rollout, progress).await,
        }
    }

    /// A task run on deploy (`run: on_deploy`): RunTask, followed until it stops.
    async fn run_task(&self, task: TaskExecution<'_>, progress: &dyn Progress) -> Result<TaskOutcome, RolloutError> {
        match task.spec {
            AppSpec::EcsTask(spec) => match &spec.on_deploy {
                Some(how) => {
                    let clients = runs::Clients { ecs: &self.ecs, logs: &self.logs };
                    runs::run_once(clients, &task, spec, how, progress, self.polling).await
                }
                None => Err(TargetError::Invalid(format!(
                    "{} runs from its EventBridge rule or schedule; launchway does not run it itself",
                    task.app
                ))
                .into()),
            },
            _ => Err(TargetError::Invalid(format!("{} is not an ECS task", task.app)).into()),
        }
    }

    async fn cloudwatch_metric(&self, query: &CloudWatchAnalysis) -> Result<Option<f64>, TargetError> {
        cloudwatch::latest(&self.cloudwatch, query).await
    }

    async fn firing_alarms(&self, names: &[String]) -> Result<Vec<String>, TargetError> {
        cloudwatch::firing(&self.cloudwatch, names).await
    }

    /// A service's awslogs containers, from CloudWatch Logs; scheduled tasks run and end,
    /// and their logs are read with the run that ran them.
    async fn recent_logs(&self, _env: &str, app: AppRef<'_>, lines: usize) -> Result<Vec<ContainerLogs>, TargetError> {
        match app.spec {
            AppSpec::EcsService(service) => logs::recent(&self.ecs, &self.logs, service, lines).await,
            _ => Err(TargetError::Invalid(format!(
                "{} is not an ECS service: launchway reads recent logs of services only",
                app.app
            ))),
        }
    }

    async fn verify(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), RolloutError> {
        match rollout.spec {
            AppSpec::EcsService(service) => {
                let revision = service.definition.revision().0;
                services::verify(&self.ecs, rollout.app, &revision, service, progress, self.polling).await
            }
            AppSpec::EcsTask(task) => {
                let revision = task.definition.revision().0;
                schedules::verify(&self.schedule_clients(), rollout.app, &revision, task, progress).await
            }
            AppSpec::Service(_) | AppSpec::Task(_) => Ok(()),
        }
    }

    /// Puts the service, rule or schedule back on the task definition it ran before
    /// the revision (recorded on the revision's tags).
    async fn retire(&self, rollout: Rollout<'_>, progress: &dyn Progress) -> Result<(), TargetError> {
        match rollout.spec {
            AppSpec::EcsService(service) => {
                let revision = service.definition.revision().0;
                services::retire(&self.ecs, rollout.app, &revision, service, progress, self.polling).await
            }
            AppSpec::EcsTask(task) => {
                let revision = task.definition.revision().0;
                schedules::retire(&self.schedule_clients(), rollout.app, &revision, task, progress).await
            }
            AppSpec::Service(_) | AppSpec::Task(_) => Ok(()),
        }
    }
}
