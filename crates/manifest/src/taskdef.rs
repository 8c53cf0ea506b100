//! Task definition documents from the config repo, in the JSON shape
//! `aws ecs describe-task-definition` prints: with or without its `{"taskDefinition": …}`
//! wrapper (whose `tags` are kept), read-only fields dropped. Nothing else is touched:
//! the document goes to ECS as written, so no field is ever lost on the way.

use serde_json::Value;

/// Fields ECS fills in and refuses on registration: dropped from task definition files
/// here, and from described task definitions by the ECS target.
pub const READ_ONLY_TASK_DEFINITION_FIELDS: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// A problem in a JSON file, at a line and column of that file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JsonProblem {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl JsonProblem {
    fn at_start(message: String) -> JsonProblem {
        JsonProblem { line: 1, column: 1, message }
    }
}

/// Parses JSON, locating syntax errors.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, JsonProblem> {
    serde_json::from_slice(bytes).map_err(|error| JsonProblem {
        line: error.line().max(1) as u32,
        column: error.column().max(1) as u32,
        message: format!("invalid JSON: {}", strip_position(&error.to_string())),
    })
}

/// serde_json appends " at line L column C"; the position is printed in front instead.
fn strip_position(message: &str) -> &str {
    message.rfind(" at line ").map_or(message, |index| &message[..index])
}

/// The registrable document, with `tags` from the wrapper when there was one.
pub(crate) fn normalize(bytes: &[u8]) -> Result<Value, JsonProblem> {
    let value = parse_json(bytes)?;
    let Value::Object(mut outer) = value else {
        return Err(JsonProblem::at_start("a task definition is a JSON object".to_owned()));
    };
    let (mut definition, tags) = match outer.remove("taskDefinition") {
        Some(Value::Object(inner)) => (inner, outer.remove("tags")),
        Some(_) => return Err(JsonProblem::at_start("\"taskDefinition\" must be an object".to_owned())),
        None => (outer, None),
    };
    for field in READ_ONLY_TASK_DEFINITION_FIELDS {
        definition.remove(*field);
    }
    if let Some(tags) = tags.filter(|tags| tags.as_array().is_some_and(|tags| !tags.is_empty())) {
        definition.insert("tags".to_owned(), tags);
    }
    // launchway's own tags name the revision a definition was registered as; a file
    // exported from such a revision must not carry them (they are set on registration,
    // and the old ones would make every plan see a change).
    if let Some(Value::Array(tags)) = definition.get_mut("tags") {
        let before = tags.len();
        tags.retain(|tag| !tag["key"].as_str().is_some_and(|key| key.starts_with("launchway:")));
        if tags.is_empty() && before > 0 {
            definition.remove("tags");
        }
    }
    if !definition.get("family").is_some_and(Value::is_string) {
        return Err(JsonProblem::at_start("the task definition has no \"family\"".to_owned()));
    }
    let containers = definition.get("containerDefinitions").and_then(Value::as_array);
    match containers {
        Some(containers) if !containers.is_empty() => {
            if containers.iter().any(|container| !container.get("name").is_some_and(Value::is_string)) {
                return Err(JsonProblem::at_start("every container definition needs a \"name\"".to_owned()));
            }
        }
        _ => return Err(JsonProblem::at_start("the task definition has no \"containerDefinitions\"".to_owned())),
    }
    Ok(Value::Object(definition))
}

/// The names of a document's containers.
pub(crate) fn container_names(document: &Value) -> Vec<&str> {
    document["containerDefinitions"]
        .as_array()
        .map(|containers| containers.iter().filter_map(|container| container["name"].as_str()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_describe_output_is_accepted_as_printed() {
        let printed = br#"{
            "taskDefinition": {
                "taskDefinitionArn": "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/web:7",
                "family": "web", "revision": 7, "status": "ACTIVE",
                "containerDefinitions": [{"name": "web", "image": "web:1", "secrets": [{"name": "A", "valueFrom": "arn:x"}]}],
                "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
                "compatibilities": ["EC2", "FARGATE"], "registeredAt": "2026-11-01T00:00:00Z", "registeredBy": "arn:x",
                "ephemeralStorage": {"sizeInGiB": 30}
            },
            "tags": [{"key": "team", "value": "web"}]
        }"#;
        let document = normalize(printed).expect("valid");
        let keys: Vec<&str> = document.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, ["containerDefinitions", "ephemeralStorage", "family", "tags"]);
        assert_eq!(document["containerDefinitions"][0]["secrets"][0]["valueFrom"], "arn:x");
        assert_eq!(container_names(&document), ["web"]);
    }

    /// Regression (issue 8): a file exported from a revision launchway registered
    /// carried its launchway:revision tag, which then differed from every later one.
    #[test]
    fn launchways_own_tags_are_dropped_from_files_and_the_rest_kept() {
        let printed = br#"{"taskDefinition": {"family": "web", "containerDefinitions": [{"name": "web"}]},
            "tags": [{"key": "launchway:revision", "value": "0123abcd4567"}, {"key": "team", "value": "web"},
                     {"key": "launchway:app", "value": "web"}]}"#;
        assert_eq!(normalize(printed).expect("valid")["tags"], serde_json::json!([{"key": "team", "value": "web"}]));
        let only_ours = br#"{"family": "web", "containerDefinitions": [{"name": "web"}],
            "tags": [{"key": "launchway:previous", "value": "arn:x"}]}"#;
        assert!(normalize(only_ours).expect("valid").get("tags").is_none());
    }

    #[test]
    fn a_bare_definition_is_accepted_too() {
        let document = normalize(br#"{"family": "web", "containerDefinitions": [{"name": "web"}]}"#).expect("valid");
        assert_eq!(document["family"], "web");
    }

    #[test]
    fn problems_are_located() {
        assert_eq!(
            normalize(b"{\n  \"family\": \"web\",\n  \"containerDefinitions\": [,]\n}"),
            Err(JsonProblem { line: 3, column: 28, message: "invalid JSON: expected value".into() })
        );
        assert!(normalize(br#"{"containerDefinitions": [{"name": "web"}]}"#).unwrap_err().message.contains("family"));
        assert!(
            normalize(br#"{"family": "web", "containerDefinitions": []}"#)
                .unwrap_err()
                .message
                .contains("containerDefinitions")
        );
    }
}
