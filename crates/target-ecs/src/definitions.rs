//! Which task definition revision an app's revision runs, registered at most once.
//!
//! Every revision launchway registers carries three tags: the app, the definition's
//! revision (the content hash of the app's task definition, `EcsDefinition::revision`:
//! service settings are not part of it) and the ARN of the revision it replaced. With
//! them:
//! - a run resumed after a crash finds the revision it registered before and does not
//!   register another;
//! - a rollback to an earlier release moves back to the very revision that ran then;
//! - a first deploy that failed can put the service back on what it ran before.
//!
//! launchway never deregisters revisions, so none that is still in use is ever lost.

use launchway_manifest::EcsDefinition;
use launchway_target::settings::select_container;
use launchway_target::{Progress, TargetError, TargetEvent, TargetReport};
use serde_json::{Value, json};

use crate::error::sdk_error;
use crate::raw;

pub(crate) const TAG_APP: &str = "launchway:app";
pub(crate) const TAG_REVISION: &str = "launchway:revision";
pub(crate) const TAG_PREVIOUS: &str = "launchway:previous";

/// How many of a family's newest revisions are searched for one already registered: a
/// run resumed after a crash between registering and updating finds its revision there.
const SEARCH_DEPTH: i32 = 3;

/// A task definition revision as ECS describes it.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    pub arn: String,
    /// The registrable document: read-only fields removed, `tags` included.
    pub document: Value,
}

impl Described {
    pub async fn fetch(client: &aws_sdk_ecs::Client, task_definition: &str) -> Result<Described, TargetError> {
        let mut described = raw::describe_document(client, task_definition).await?;
        let mut document = described["taskDefinition"].take();
        let arn = document["taskDefinitionArn"].as_str().unwrap_or(task_definition).to_owned();
        if let Some(fields) = document.as_object_mut() {
            for field in launchway_manifest::READ_ONLY_TASK_DEFINITION_FIELDS {
                fields.remove(*field);
            }
            if let Some(tags) = described["tags"].as_array().filter(|tags| !tags.is_empty()) {
                fields.insert("tags".to_owned(), Value::Array(tags.clone()));
            }
        }
        Ok(Described { arn, document })
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        tag(&self.document, key)
    }

    /// `(name, image)` of each container.
    pub fn containers(&self) -> Vec<(String, String)> {
        containers(&self.document)
    }

    /// `web:7`, for messages.
    pub fn short(&self) -> &str {
        short(&self.arn)
    }
}

pub(crate) fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn tag<'a>(document: &'a Value, key: &str) -> Option<&'a str> {
    document["tags"].as_array()?.iter().find(|tag| tag["key"] == key)?["value"].as_str()
}

fn containers(document: &Value) -> Vec<(String, String)> {
    document["containerDefinitions"]
        .as_array()
        .map(|containers| {
            containers
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        c["image"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The document an app's revision should run: the manifest's own document, or the one
/// running now; with the manifest's images set. Nothing else is changed.
///
/// # Errors
/// When an image names a container the document does not have.
pub(crate) fn desired_document(definition: &EcsDefinition, current: Option<&Described>) -> Result<Value, TargetError> {
    let mut document = match (&definition.document, current) {
        (Some(file), _) => file.document.clone(),
        (None, Some(current)) => current.document.clone(),
        (None, None) => {
            return Err(TargetError::Invalid(
                "there is no task definition to swap images in: nothing runs yet and the manifest names no task_definition"
                    .to_owned(),
            ));
        }
    };
    let names = containers(&document);
    for (selector, image) in &definition.images {
        let name = select_container(selector, &names).map_err(|problem| TargetError::Invalid(problem.0))?.to_owned();
        if let Some(container) = document["containerDefinitions"]
            .as_array_mut()
            .and_then(|containers| containers.iter_mut().find(|c| c["name"] == name.as_str()))
        {
            container["image"] = Value::String(image.clone());
        }
    }
    Ok(document)
}

/// Whether `described` was registered by launchway for one app revision.
pub(crate) fn is_revision(described: &Described, app: &str, revision: &str) -> bool {
    described.tag(TAG_REVISION) == Some(revision) && described.tag(TAG_APP) == Some(app)
}

/// Whether `described` is what an app revision runs: registered for it, or (someone
/// else's revision) already holding exactly what it asks for. No copy is registered of
/// a task definition that is already right.
pub(crate) fn runs_revision(
    described: &Described,
    app: &str,
    revision: &str,
    definition: &EcsDefinition,
) -> Result<bool, TargetError> {
    if is_revision(described, app, revision) {
        return Ok(true);
    }
    Ok(same_content(&described.document, &desired_document(definition, Some(described))?))
}

/// The revision of `family` registered for `(app, revision)`, if any, among the most
/// recent ones.
pub(crate) async fn find_registered(
    client: &aws_sdk_ecs::Client,
    family: &str,
    app: &str,
    revision: &str,
) -> Result<Option<Described>, TargetError> {
    let listed = client
        .list_task_definitions()
        .family_prefix(family)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .max_results(SEARCH_DEPTH)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("list task definitions of family {family}"), error))?;
    // The prefix matches other families too (web, web-worker).
    let arns = listed
        .task_definition_arns()
        .iter()
        .filter(|arn| short(arn).rsplit_once(':').map(|(name, _)| name) == Some(family));
    let described = futures_util::future::join_all(arns.map(|arn| Described::fetch(client, arn))).await;
    for described in described {
        let described = described?;
        if is_revision(&described, app, revision) {
            return Ok(Some(described));
        }
    }
    Ok(None)
}

/// The ARN of the task definition `(app, revision)` runs: `current` when it already is
/// that revision, one registered earlier, or a new registration of the desired document
/// tagged with the app, the revision and `current` (the revision it replaces).
pub(crate) async fn ensure(
    client: &aws_sdk_ecs::Client,
    app: &str,
    revision: &str,
    definition: &EcsDefinition,
    current: Option<&Described>,
    progress: &dyn Progress,
) -> Result<String, TargetError> {
    if let Some(current) = current
        && runs_revision(current, app, revision, definition)?
    {
        return Ok(current.arn.clone());
    }
    let mut document = desired_document(definition, current)?;
    // A rollback goes back to the revision the current one replaced, recorded on it:
    // one launchway registered, or, when it was someone else's, the very same one as
    // long as its content is what is wanted (never a copy of it).
    if let Some(previous) = current.and_then(|current| current.tag(TAG_PREVIOUS)) {
        let previous = Described::fetch(client, previous).await?;
        if is_revision(&previous, app, revision) || same_content(&previous.document, &document) {
            return Ok(previous.arn);
        }
    }
    let family = document["family"].as_str().unwrap_or_default().to_owned();
    if let Some(found) = find_registered(client, &family, app, revision).await? {
        progress
            .report(TargetEvent::new(
                TargetReport::TaskDefinitionReused {
                    task_definition: found.arn.clone(),
                    revision: revision.to_owned(),
                },
                format!("task definition {} already holds revision {revision}", found.short()),
            ))
            .await;
        return Ok(found.arn);
    }
    set_identity(&mut document, app, revision, current.map(|current| current.arn.as_str()));
    let arn = raw::register_document(client, &document).await?;
    progress
        .report(TargetEvent::new(
            TargetReport::TaskDefinitionRegistered {
                task_definition: arn.clone(),
                revision: revision.to_owned(),
                previous: current.map(|current| current.arn.clone()),
            },
            format!(
                "registered task definition {}{}",
                short(&arn),
                current.map(|current| format!(" (from {})", current.short())).unwrap_or_default()
            ),
        ))
        .await;
    Ok(arn)
}

/// Whether two documents register the same task definition, launchway's own tags aside.
fn same_content(a: &Value, b: &Value) -> bool {
    without_own_tags(a) == without_own_tags(b)
}

fn without_own_tags(document: &Value) -> Value {
    let tags = others_tags(document);
    let mut document = document.clone();
    if let Some(fields) = document.as_object_mut() {
        if tags.is_empty() {
            fields.remove("tags");
        } else {
            fields.insert("tags".to_owned(), Value::Array(tags));
        }
    }
    document
}

/// A document's tags that are not launchway's own.
fn others_tags(document: &Value) -> Vec<Value> {
    document["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter(|tag| !tag["key"].as_str().unwrap_or_default().starts_with("launchway:"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces launchway's tags on a document, keeping everyone else's.
fn set_identity(document: &mut Value, app: &str, revision: &str, previous: Option<&str>) {
    let mut tags = others_tags(document);
    tags.push(json!({"key": TAG_APP, "value": app}));
    tags.push(json!({"key": TAG_REVISION, "value": revision}));
    if let Some(previous) = previous {
        tags.push(json!({"key": TAG_PREVIOUS, "value": previous}));
    }
    document["tags"] = Value::Array(tags);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use launchway_manifest::TaskDefinitionDocument;

    use super::*;

    fn described(document: Value) -> Described {
        Described { arn: "arn:aws:ecs:ap-northeast-1:1:task-definition/web:3".into(), document }
    }

    #[test]
    fn an_image_swap_changes_the_named_images_and_nothing_else() {
        let current = described(json!({
            "family": "web",
            "containerDefinitions": [
                {"name": "web", "image": "1111.dkr.ecr.us-east-1.amazonaws.com/web:1", "secrets": [{"name": "DB", "valueFrom": "arn:ssm"}]},
                {"name": "log", "image": "fluent-bit:2", "firelensConfiguration": {"type": "fluentbit"}}
            ],
            "runtimePlatform": {"cpuArchitecture": "ARM64"},
            "tags": [{"key": "team", "value": "web"}]
        }));
        let definition = EcsDefinition { images: BTreeMap::from([("web".into(), "web:2".into())]), document: None };
        let mut expected = current.document.clone();
        expected["containerDefinitions"][0]["image"] = json!("web:2");
        assert_eq!(desired_document(&definition, Some(&current)).unwrap(), expected);
    }

    #[test]
    fn a_document_from_the_repo_gets_the_manifest_images() {
        let document = json!({"family": "api", "containerDefinitions": [{"name": "api", "image": "api:placeholder"}]});
        let definition = EcsDefinition {
            images: BTreeMap::from([("api".into(), "api:7".into())]),
            document: Some(TaskDefinitionDocument { path: "ecs/api.json".into(), document }),
        };
        assert_eq!(desired_document(&definition, None).unwrap()["containerDefinitions"][0]["image"], "api:7");
    }

    #[test]
    fn documents_that_differ_only_in_launchways_tags_are_the_same_definition() {
        let theirs = json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "web:1"}]});
        let mut ours = theirs.clone();
        set_identity(&mut ours, "web", "abc", Some("arn:prev"));
        assert!(same_content(&theirs, &ours));
        ours["containerDefinitions"][0]["image"] = json!("web:2");
        assert!(!same_content(&theirs, &ours));
        let tagged = json!({"family": "web", "containerDefinitions": [], "tags": [{"key": "team", "value": "web"}]});
        assert!(!same_content(&tagged, &json!({"family": "web", "containerDefinitions": []})), "their tags count");
    }

    #[test]
    fn identity_tags_replace_launchways_own_and_keep_the_rest() {
        let mut document =
            json!({"tags": [{"key": "team", "value": "web"}, {"key": "launchway:revision", "value": "old"}]});
        set_identity(&mut document, "web", "abc", Some("arn:prev"));
        let current = described(document);
        assert_eq!(current.tag("team"), Some("web"));
        assert!(is_revision(&current, "web", "abc"));
        assert_eq!(current.tag(TAG_PREVIOUS), Some("arn:prev"));
        assert!(!is_revision(&current, "api", "abc"));
    }
}
