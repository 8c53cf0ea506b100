//! Finding an ECS service, and how often a deployment is looked at: what the service
//! rollout (`services.rs`), ECS's own deployments (`native.rs`) and the logs share.

use std::time::Duration;

use aws_sdk_ecs::types::Service;
use launchway_manifest::EcsServiceSpec;
use launchway_target::TargetError;

use crate::error::sdk_error;

/// How often a deployment is looked at: soon after it starts, then less often, up to
/// `max`, which bounds how late launchway notices that ECS is done; after `slow_after`
/// (a long deployment) up to `slow_max`. At most four DescribeServices a second per
/// deploying service, then two, stay well inside ECS's API rate limits, and launchway
/// sees a deployment done sooner than ecs-deploy (which looks every second) or the AWS
/// CLI's waiter (every fifteen).
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub first: Duration,
    pub max: Duration,
    pub slow_after: Duration,
    pub slow_max: Duration,
}

impl Default for Polling {
    fn default() -> Polling {
        Polling {
            first: Duration::from_millis(100),
            max: Duration::from_millis(250),
            slow_after: Duration::from_secs(60),
            slow_max: Duration::from_millis(500),
        }
    }
}

/// The service, or `None` when it does not exist (or is being deleted).
pub(crate) async fn describe(
    client: &aws_sdk_ecs::Client,
    spec: &EcsServiceSpec,
) -> Result<Option<Service>, TargetError> {
    let output =
        client.describe_services().cluster(&spec.cluster).services(&spec.service).send().await.map_err(|error| {
            sdk_error(&format!("describe ECS service {} in cluster {}", spec.service, spec.cluster), error)
        })?;
    Ok(output.services.unwrap_or_default().into_iter().find(|service| service.status() == Some("ACTIVE")))
}

pub(crate) async fn require(client: &aws_sdk_ecs::Client, spec: &EcsServiceSpec) -> Result<Service, TargetError> {
    describe(client, spec).await?.ok_or_else(|| {
        TargetError::Invalid(format!(
            "ECS service {} was not found in cluster {}: launchway updates existing services",
            spec.service, spec.cluster
        ))
    })
}
