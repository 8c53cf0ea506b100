//! AWS errors as target errors, keeping the service's own code and message.

use std::error::Error;
use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use launchway_target::TargetError;

pub(crate) type EcsError = TargetError;

/// `describe ECS service web failed: ClusterNotFoundException: Cluster not found.`
pub(crate) fn sdk_error<E, R>(action: &str, error: SdkError<E, R>) -> TargetError
where
    E: Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let unreachable = matches!(error, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
    let message = match error.as_service_error() {
        // What AWS said: its error code and message, not the SDK's debug dump.
        Some(service) => AwsMessage(match (service.code(), service.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => service.to_string(),
        }),
        None => AwsMessage(DisplayErrorContext(&error).to_string()),
    };
    if unreachable {
        TargetError::Unreachable { target: format!("AWS ({action})"), source: Box::new(message) }
    } else {
        TargetError::Api { action: action.to_owned(), source: Box::new(message) }
    }
}

/// The full text of an AWS error, as one error with no further source.
#[derive(Debug)]
struct AwsMessage(String);

impl fmt::Display for AwsMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for AwsMessage {}
