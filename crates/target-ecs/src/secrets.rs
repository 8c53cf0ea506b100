//! Secrets launchway itself needs (chat webhook URLs, tokens) may be given as
//! references to SSM Parameter Store, resolved when used: never logged, never stored.

use std::fmt;

use launchway_target::TargetError;

use crate::error::sdk_error;

/// A secret as configured: the value itself, or `ssm:NAME` (a parameter name like
/// `/launchway/slack-webhook`, or its ARN), read decrypted when needed.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Plain(String),
    Ssm(String),
}

impl SecretRef {
    pub fn parse(text: &str) -> SecretRef {
        match text.strip_prefix("ssm:") {
            Some(name) => SecretRef::Ssm(name.to_owned()),
            None => SecretRef::Plain(text.to_owned()),
        }
    }
}

/// Never shows a plain secret, only where a referenced one lives.
impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Plain(_) => f.write_str("SecretRef::Plain(<redacted>)"),
            SecretRef::Ssm(name) => write!(f, "SecretRef::Ssm({name:?})"),
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

/// Resolves a secret with the given AWS configuration (SecureString parameters are
/// decrypted).
pub async fn resolve_secret(reference: &SecretRef, config: &aws_config::SdkConfig) -> Result<Secret, TargetError> {
    match reference {
        SecretRef::Plain(value) => Ok(Secret(value.clone())),
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
        let plain = SecretRef::parse("https://hooks.slack.com/services/T000/B000/XXXX");
        assert_eq!(format!("{plain:?}"), "SecretRef::Plain(<redacted>)");
        assert_eq!(format!("{:?}", Secret("x".into())), "Secret(<redacted>)");
    }
}
