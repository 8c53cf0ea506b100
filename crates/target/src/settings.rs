//! Settings as `path → value` lines, so that plans can compare what runs with what is
//! wanted whatever shape the target keeps them in; and how a container is found by the
//! name a manifest gives it.

use std::collections::BTreeMap;

use serde_json::Value;

/// Flattens JSON into `prefix.key.key`-style paths. Arrays of objects that have a
/// `name` are keyed by it (`containerDefinitions.web.image`), other arrays by index.
pub fn flatten(prefix: &str, value: &Value, into: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                flatten(&join(prefix, key), value, into);
            }
        }
        Value::Array(items) => {
            let named = !items.is_empty() && items.iter().all(|item| item.get("name").is_some_and(Value::is_string));
            for (index, item) in items.iter().enumerate() {
                let key = match item.get("name").and_then(Value::as_str) {
                    Some(name) if named => name.to_owned(),
                    _ => index.to_string(),
                };
                flatten(&join(prefix, &key), item, into);
            }
        }
        Value::String(text) => {
            into.insert(prefix.to_owned(), text.clone());
        }
        other => {
            into.insert(prefix.to_owned(), other.to_string());
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

/// The container a manifest means by `selector`, among `(name, image)` pairs: the one
/// named so, else the one whose image repository contains the word (what the gitops
/// sample's Lambda does with its `service` key).
///
/// No container, or more than one, is what a selector means; the message names those
/// there are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoSuchContainer(pub String);

/// # Errors
/// [`NoSuchContainer`] when none or several match.
pub fn select_container<'a>(selector: &str, containers: &'a [(String, String)]) -> Result<&'a str, NoSuchContainer> {
    if selector.is_empty() {
        return match containers {
            [(only, _)] => Ok(only),
            _ => Err(NoSuchContainer(format!(
                "an image given for no container in particular (imageDetail.json) needs a task definition with one container; it has {}",
                containers.len()
            ))),
        };
    }
    if let Some((name, _)) = containers.iter().find(|(name, _)| name == selector) {
        return Ok(name);
    }
    let repository =
        |image: &str| image.split(['@', ':']).next().unwrap_or(image).rsplit('/').next().unwrap_or("").to_owned();
    let matching: Vec<&str> = containers
        .iter()
        .filter(|(_, image)| repository(image).contains(selector) || image.contains(&format!("/{selector}")))
        .map(|(name, _)| name.as_str())
        .collect();
    let names = containers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ");
    match matching.as_slice() {
        [only] => Ok(only),
        [] => Err(NoSuchContainer(format!(
            "no container is named {selector:?} or runs an image of that name (the containers are {names})"
        ))),
        several => {
            Err(NoSuchContainer(format!("{selector:?} could mean any of {}; name the container", several.join(", "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_definitions_flatten_by_container_name() {
        let mut flat = BTreeMap::new();
        let document = json!({
            "family": "web", "cpu": "256",
            "containerDefinitions": [{"name": "web", "image": "web:1", "memory": 512, "environment": [{"name": "LOG", "value": "info"}]}],
            "requiresCompatibilities": ["FARGATE"]
        });
        flatten("task_definition", &document, &mut flat);
        assert_eq!(flat["task_definition.containerDefinitions.web.memory"], "512");
        assert_eq!(flat["task_definition.containerDefinitions.web.environment.LOG.value"], "info");
        assert_eq!(flat["task_definition.requiresCompatibilities.0"], "FARGATE");
        assert_eq!(flat["task_definition.cpu"], "256");
    }

    #[test]
    fn containers_are_found_by_name_or_by_their_image() {
        let containers = vec![
            ("app".to_owned(), "1111.dkr.ecr.us-east-1.amazonaws.com/service-a:1.0.0".to_owned()),
            ("log-router".to_owned(), "public.ecr.aws/aws-observability/aws-for-fluent-bit:2".to_owned()),
        ];
        assert_eq!(select_container("log-router", &containers), Ok("log-router"));
        assert_eq!(select_container("service-a", &containers), Ok("app"));
        assert!(select_container("service-b", &containers).unwrap_err().0.contains("app, log-router"));
        assert!(select_container("", &containers).is_err(), "\"\" needs a single container");
        assert_eq!(select_container("", &containers[..1]), Ok("app"));
    }
}
