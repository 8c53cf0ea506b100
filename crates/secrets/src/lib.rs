//! Secrets launchway itself needs (chat webhook URLs, API tokens, build secrets) may be
//! given as references, resolved when used: never logged, never stored.
//!
//! This crate knows the reference syntax and resolves `env:` and plain values; reading
//! `ssm:` parameters is a [`ParameterStore`] the binary plugs in (the ECS target's), so
//! that a crate which only needs a secret does not depend on a cloud SDK.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

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
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

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

/// Why a secret could not be had. The message names where it was looked for, never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError(pub String);

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SecretError {}

/// Where `ssm:` references are read (AWS Systems Manager Parameter Store, SecureString
/// parameters decrypted).
#[async_trait]
pub trait ParameterStore: Send + Sync {
    async fn read(&self, name: &str) -> Result<Secret, SecretError>;
}

/// Resolves references; `ssm:` ones only when a [`ParameterStore`] was given.
#[derive(Clone, Default)]
pub struct Secrets {
    parameters: Option<Arc<dyn ParameterStore>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").field("parameter_store", &self.parameters.is_some()).finish()
    }
}

impl Secrets {
    /// `env:` and plain values only.
    pub fn without_parameter_store() -> Secrets {
        Secrets::default()
    }

    pub fn with_parameter_store(parameters: Arc<dyn ParameterStore>) -> Secrets {
        Secrets { parameters: Some(parameters) }
    }

    pub async fn resolve(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        match reference {
            SecretRef::Plain(value) => Ok(Secret(value.clone())),
            SecretRef::Env(variable) => std::env::var(variable)
                .map(Secret)
                .map_err(|_| SecretError(format!("environment variable {variable} is not set"))),
            SecretRef::Ssm(name) => match &self.parameters {
                Some(parameters) => parameters.read(name).await,
                None => Err(SecretError(format!("cannot read SSM parameter {name}: no parameter store is configured"))),
            },
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
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(<redacted>)");
    }

    struct OneParameter;

    #[async_trait]
    impl ParameterStore for OneParameter {
        async fn read(&self, name: &str) -> Result<Secret, SecretError> {
            match name {
                "/launchway/slack" => Ok(Secret::new("https://hooks.example/T0")),
                _ => Err(SecretError(format!("SSM parameter {name} not found"))),
            }
        }
    }

    #[tokio::test]
    async fn ssm_references_need_a_parameter_store_and_are_read_from_it() {
        let reference = SecretRef::parse("ssm:/launchway/slack");
        let refused = Secrets::without_parameter_store().resolve(&reference).await.unwrap_err();
        assert_eq!(refused.0, "cannot read SSM parameter /launchway/slack: no parameter store is configured");
        let secrets = Secrets::with_parameter_store(Arc::new(OneParameter));
        assert_eq!(secrets.resolve(&reference).await.unwrap().expose(), "https://hooks.example/T0");
        assert_eq!(secrets.resolve(&SecretRef::parse("plain")).await.unwrap().expose(), "plain");
        let missing = secrets.resolve(&SecretRef::parse("env:LAUNCHWAY_TEST_SURELY_UNSET")).await.unwrap_err();
        assert_eq!(missing.0, "environment variable LAUNCHWAY_TEST_SURELY_UNSET is not set");
    }
}
