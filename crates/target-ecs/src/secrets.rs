//! `ssm:` secret references read from AWS Systems Manager Parameter Store: the
//! [`ParameterStore`] the binary gives to whoever resolves secrets.

use async_trait::async_trait;
use launchway_secrets::{ParameterStore, Secret, SecretError};
use tokio::sync::OnceCell;

use crate::error::sdk_error;

/// Reads parameters with an AWS configuration: given, or launchway's own (its
/// environment, profile or instance role), loaded the first time a parameter is read so
/// that a server with no `ssm:` reference never looks for credentials.
#[derive(Debug, Default)]
pub struct SsmParameters {
    config: OnceCell<aws_config::SdkConfig>,
}

impl SsmParameters {
    /// With launchway's own AWS configuration, loaded when first needed.
    pub fn from_default_chain() -> SsmParameters {
        SsmParameters::default()
    }

    pub fn with_config(config: aws_config::SdkConfig) -> SsmParameters {
        SsmParameters { config: OnceCell::new_with(Some(config)) }
    }
}

#[async_trait]
impl ParameterStore for SsmParameters {
    async fn read(&self, name: &str) -> Result<Secret, SecretError> {
        let config =
            self.config.get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load()).await;
        let output =
            aws_sdk_ssm::Client::new(config).get_parameter().name(name).with_decryption(true).send().await.map_err(
                |error| {
                    SecretError(launchway_target::describe(&sdk_error(&format!("read SSM parameter {name}"), error)))
                },
            )?;
        output
            .parameter
            .and_then(|parameter| parameter.value)
            .map(Secret::new)
            .ok_or_else(|| SecretError(format!("SSM parameter {name} has no value")))
    }
}
