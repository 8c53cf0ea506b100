//! Task definitions as the JSON documents ECS speaks, through the SDK.
//!
//! A task definition is a document its owners write (sidecars, `secrets`, log
//! configuration, health checks, volumes, runtime platform, proxy configuration…),
//! and ECS's wire format for it is exactly the JSON `aws ecs describe-task-definition`
//! prints. Copying it field by field through typed structs is how other tools lose
//! fields; instead launchway keeps it as JSON end to end, still using the SDK for
//! everything else (credentials, signing, retries, endpoints, errors):
//!
//! - [`CaptureBody`] keeps the response body of a call (DescribeTaskDefinition);
//! - [`register_document`] sends a document as the body of RegisterTaskDefinition,
//!   replacing the SDK's serialization before the request is signed.

use std::sync::{Arc, Mutex};

use aws_sdk_ecs::types::ContainerDefinition;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

use crate::error::{EcsError, sdk_error};

/// Keeps the raw response body of the call it is attached to.
#[derive(Debug, Clone, Default)]
pub(crate) struct CaptureBody(Arc<Mutex<Option<Vec<u8>>>>);

impl CaptureBody {
    pub fn json(&self) -> Result<Value, EcsError> {
        let body = self.0.lock().expect("not poisoned").take().unwrap_or_default();
        serde_json::from_slice(&body)
            .map_err(|error| EcsError::Invalid(format!("ECS answered with invalid JSON: {error}")))
    }
}

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "launchway::CaptureBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The orchestrator has read the body into memory by now.
        if let Some(bytes) = context.response().body().bytes() {
            *self.0.lock().expect("not poisoned") = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// A task definition and its tags, as `describe-task-definition --include TAGS` prints
/// them: `{"taskDefinition": {…}, "tags": […]}`.
pub(crate) async fn describe_document(client: &aws_sdk_ecs::Client, task_definition: &str) -> Result<Value, EcsError> {
    let capture = CaptureBody::default();
    client
        .describe_task_definition()
        .task_definition(task_definition)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .customize()
        .interceptor(capture.clone())
        .send()
        .await
        .map_err(|error| sdk_error(&format!("describe task definition {task_definition}"), error))?;
    capture.json()
}

/// Registers `document` (registrable fields and `tags`, camelCase) exactly as given;
/// returns the new revision's ARN.
pub(crate) async fn register_document(client: &aws_sdk_ecs::Client, document: &Value) -> Result<String, EcsError> {
    let family = document["family"].as_str().unwrap_or_default().to_owned();
    let body = serde_json::to_vec(document).expect("documents serialize");
    // The builder wants its required fields; the body replaces what it serializes.
    let placeholder = ContainerDefinition::builder().name("placeholder").build();
    let output = client
        .register_task_definition()
        .family(&family)
        .container_definitions(placeholder)
        .customize()
        .mutate_request(move |request| {
            request.headers_mut().insert("content-length", body.len().to_string());
            *request.body_mut() = SdkBody::from(body.clone());
        })
        .send()
        .await
        .map_err(|error| sdk_error(&format!("register a task definition in family {family}"), error))?;
    output
        .task_definition
        .and_then(|definition| definition.task_definition_arn)
        .ok_or_else(|| EcsError::Invalid("ECS registered a task definition without an ARN".to_owned()))
}
