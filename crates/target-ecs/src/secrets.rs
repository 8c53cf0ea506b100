//! Secrets launchway itself needs (chat webhook URLs, tokens) may be given as
//! references to SSM Parameter Store, resolved when used: never logged, never stored.

use std::fmt;

use launchway_target::TargetError;

use crate::error::sdk_error;

/// A secret as configured: the value itself, `ssm:NAME` (a parameter name like
/// `/launchway/slack-webhook`, or its ARN), read decrypted when needed, or
/// `env:VARIABLE`, read from launchway's own environment.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Plain(String),
    Ssm(String),
    Env(String),
}

impl SecretRef {
    pub fn parse(text: &str) -> SecretRef {
        if let Some(name) = text.strip_prefix("ssm:") {
            SecretRef::Ssm(name.to_owned())
        } else if let Some(variable) = text.strip_prefix("env:") {
            SecretRef::Env(variable.to_owned())
        } else {
            SecretRef::Plain(text.to_owned())
        }
    }

    /// Whether resolving it needs AWS.
    pub fn needs_aws(&self) -> bool {
        matches!(self, SecretRef::Ssm(_))
    }
}

/// Never shows a plain secret, only where a referenced one lives.
impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Plain(_) => f.write_str("SecretRef::Plain(<redacted>)"),
            SecretRef::Ssm(name) => write!(f, "SecretRef::Ssm({name:?})"),
            SecretRef::Env(variable) => write!(f, "SecretRef::Env({variable:?})"),
        }
    }
}

/// A resolved secret, kept out of logs and debug output.
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Resolves a secret; an SSM reference is read with launchway's own AWS configuration
/// (its environment, profile or instance role).
pub async fn resolve_secret_default(reference: &SecretRef) -> Result<Secret, TargetError> {
    if !reference.needs_aws() {
        return resolve_secret(reference, &aws_config::SdkConfig::builder().build()).await;
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    resolve_secret(reference, &config).await
}

/// Resolves a secret with the given AWS configuration (SecureString parameters are
/// decrypted).
pub async fn resolve_secret(reference: &SecretRef, config: &aws_config::SdkConfig) -> Result<Secret, TargetError> {
    match reference {
        SecretRef::Plain(value) => Ok(Secret(value.clone())),
        SecretRef::Env(variable) => std::env::var(variable)
            .map(Secret)
            .map_err(|_| TargetError::Invalid(format!("environment variable {variable} is not set"))),
        SecretRef::Ssm(name) => {
            let client = aws_sdk_ssm::Client::new(config);
            let output = client
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|error| sdk_error(&format!("read SSM parameter {name}"), error))?;
            output
                .parameter
                .and_then(|parameter| parameter.value)
                .map(Secret)
                .ok_or_else(|| TargetError::Invalid(format!("SSM parameter {name} has no value")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_never_print_plain_values() {
        assert_eq!(SecretRef::parse("ssm:/launchway/slack"), SecretRef::Ssm("/launchway/slack".into()));
        assert_eq!(SecretRef::parse("env:SLACK_URL"), SecretRef::Env("SLACK_URL".into()));
        let plain = SecretRef::parse("https://hooks.slack.com/services/T000/B000/XXXX");
        assert_eq!(format!("{plain:?}"), "SecretRef::Plain(<redacted>)");
        assert_eq!(format!("{:?}", Secret("x".into())), "Secret(<redacted>)");
    }
}
