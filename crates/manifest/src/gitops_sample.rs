//! The `deployment.yaml` of aws-samples/gitops-amazon-ecs-sample, accepted unmodified.
//!
//! ```yaml
//! release: 4.0
//! services:                 # image swaps on ECS services
//!   - service: service-a    # the container (by name, else the one whose image names it)
//!     clusterName: demo
//!     serviceName: demo-service-a
//!     image: 1111.dkr.ecr.us-east-1.amazonaws.com/service-a:2.0.0
//! tasks:                    # optional: image swaps on scheduled tasks' EventBridge rules
//!   - service: service-x
//!     cwRuleName: service-x-cw-rule
//!     image: 1111.dkr.ecr.us-west-2.amazonaws.com/service-x:2.0.0
//! ```
//!
//! A config repo holding only this file deploys with the ambient AWS configuration, in
//! one environment, `default`. Entries naming the same ECS service (or the same rule)
//! become one app with several containers, so a multi-container task gets one new
//! revision and one deployment, not one per container.
//!
//! An optional top-level `launchway:` block (which the sample's own tooling ignores)
//! holds launchway's settings for these apps: `timeout` and `settle_window` of their
//! deployments, and, when a `launchway.yaml` sits beside the file, the `environments`
//! they run in (otherwise every ECS environment it declares).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::image;
use crate::model::{AppSpec, EcsDefinition, EcsServiceSpec, EcsTaskSpec};
use crate::node::{Node, Pos, Value};
use crate::reader::{Key, Reader};

pub const SAMPLE_FILE: &str = "deployment.yaml";
/// The one environment a sample file deploys to.
pub const SAMPLE_ENVIRONMENT: &str = "default";

const TOP_FIELDS: &[&str] = &["release", "services", "tasks", "launchway"];
const SETTINGS_FIELDS: &[&str] = &["timeout", "settle_window", "environments"];

/// How long an ECS deployment may take when nothing says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

const SERVICE_FIELDS: &[&str] = &["service", "clusterName", "serviceName", "image"];
const TASK_FIELDS: &[&str] = &["service", "cwRuleName", "image"];

/// What a sample file declares.
#[derive(Default)]
pub(crate) struct SampleDraft {
    pub apps: Vec<(Key, AppSpec)>,
    /// `launchway.environments`, and where the block is written.
    pub environments: Option<Vec<Key>>,
    pub settings_pos: Option<Pos>,
}

/// Entries that become one app: what groups them, the first entry's key, the images.
type Group<By> = (By, Key, BTreeMap<String, String>);

/// The apps a sample file declares, each with the key naming it, and its `launchway:`
/// settings.
pub(crate) fn read(reader: &mut Reader<'_>, root: &Node) -> SampleDraft {
    let Some(fields) = reader.fields(root, "", TOP_FIELDS) else {
        return SampleDraft::default();
    };
    let mut draft = SampleDraft::default();
    let (mut timeout, mut settle_window) = (DEFAULT_TIMEOUT, None);
    if let Some(node) = fields.get("launchway") {
        draft.settings_pos = Some(node.pos);
        if let Some(settings) = reader.fields(node, "launchway", SETTINGS_FIELDS) {
            if let Some(node) = settings.get("timeout") {
                timeout = reader.duration(node, "launchway.timeout").unwrap_or(timeout);
            }
            if let Some(node) = settings.get("settle_window") {
                settle_window = reader.duration(node, "launchway.settle_window");
            }
            if let Some(node) = settings.get("environments") {
                let names = reader.string_list(node, "launchway.environments").unwrap_or_default();
                draft.environments = Some(names.into_iter().map(|name| Key { name, pos: node.pos }).collect());
            }
        }
    }
    // One app per ECS service, and one per rule, in the order they first appear.
    let mut services: Vec<Group<(String, String)>> = Vec::new();
    let mut rules: Vec<Group<String>> = Vec::new();
    match fields.get("services") {
        Some(node) => {
            for (index, entry) in entries(reader, node, "services") {
                let path = format!("services[{index}]");
                let Some(values) = required_strings(reader, entry, &path, SERVICE_FIELDS) else { continue };
                let [container, cluster, service, image] = values.as_slice() else { continue };
                let group = (cluster.clone(), service.clone());
                match services.iter_mut().find(|(existing, _, _)| *existing == group) {
                    Some((_, _, images)) => add_image(reader, images, container, image, entry.pos, &path),
                    None => {
                        let mut images = BTreeMap::new();
                        add_image(reader, &mut images, container, image, entry.pos, &path);
                        services.push((group, Key { name: app_name(service), pos: entry.pos }, images));
                    }
                }
            }
        }
        None => reader.error(fields.pos(), "", "missing field \"services\""),
    }
    if let Some(node) = fields.get("tasks") {
        for (index, entry) in entries(reader, node, "tasks") {
            let path = format!("tasks[{index}]");
            let Some(values) = required_strings(reader, entry, &path, TASK_FIELDS) else { continue };
            let [container, rule, image] = values.as_slice() else { continue };
            match rules.iter_mut().find(|(existing, _, _)| existing == rule) {
                Some((_, _, images)) => add_image(reader, images, container, image, entry.pos, &path),
                None => {
                    let mut images = BTreeMap::new();
                    add_image(reader, &mut images, container, image, entry.pos, &path);
                    rules.push((rule.clone(), Key { name: app_name(rule), pos: entry.pos }, images));
                }
            }
        }
    }

    let mut apps: Vec<(Key, AppSpec)> = Vec::new();
    for ((cluster, service), key, images) in services {
        let spec = AppSpec::EcsService(EcsServiceSpec {
            cluster,
            service,
            definition: EcsDefinition { images, document: None },
            desired_count: None,
            deployment: None,
            timeout,
            settle_window,
            health_check_grace_period: None,
            strategy: None,
            alarms: None,
            load_balancer: None,
        });
        push_unique(reader, &mut apps, key, spec);
    }
    for (rule, key, images) in rules {
        let spec = AppSpec::EcsTask(EcsTaskSpec {
            definition: EcsDefinition { images, document: None },
            rule: Some(rule),
            schedule: None,
            cluster: None,
            on_deploy: None,
        });
        push_unique(reader, &mut apps, key, spec);
    }
    draft.apps = apps;
    draft
}

fn entries<'n>(reader: &mut Reader<'_>, node: &'n Node, path: &str) -> Vec<(usize, &'n Node)> {
    match &node.value {
        Value::Seq(items) => items.iter().enumerate().collect(),
        // `tasks:` with nothing under it, as the sample's comments suggest.
        Value::Null => Vec::new(),
        _ => {
            reader.error(node.pos, path, "expected a list");
            Vec::new()
        }
    }
}

/// The values of `names`, all required strings, in order.
fn required_strings(reader: &mut Reader<'_>, node: &Node, path: &str, names: &[&'static str]) -> Option<Vec<String>> {
    let fields = reader.fields(node, path, names)?;
    let mut values = Vec::with_capacity(names.len());
    let mut ok = true;
    for name in names {
        match fields.get(name) {
            Some(value) => match reader.scalar_as_string(value, &format!("{path}.{name}")) {
                Some(text) if *name == "image" => match image::check(&text) {
                    Ok(()) => values.push(text),
                    Err(problem) => {
                        reader.error(
                            value.pos,
                            &format!("{path}.image"),
                            format!("invalid image reference {text:?}: {problem}"),
                        );
                        ok = false;
                    }
                },
                Some(text) => values.push(text),
                None => ok = false,
            },
            None => {
                reader.error(fields.pos(), path, format!("missing field {name:?}"));
                ok = false;
            }
        }
    }
    ok.then_some(values)
}

fn add_image(
    reader: &mut Reader<'_>,
    images: &mut BTreeMap<String, String>,
    container: &str,
    image: &str,
    pos: Pos,
    path: &str,
) {
    if images.insert(container.to_owned(), image.to_owned()).is_some() {
        reader.error(pos, path, format!("container {container:?} of this service is listed twice"));
    }
}

fn push_unique(reader: &mut Reader<'_>, apps: &mut Vec<(Key, AppSpec)>, key: Key, spec: AppSpec) {
    if let Some((first, _)) = apps.iter().find(|(existing, _)| existing.name == key.name) {
        let message = format!(
            "its app name {:?} is already taken by the entry at line {}; rename the service or rule",
            key.name, first.pos.line
        );
        reader.error(key.pos, "", message);
        return;
    }
    apps.push((key, spec));
}

/// ECS names allow capitals and underscores; app names are DNS labels.
fn app_name(name: &str) -> String {
    let mut label = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            label.push(c);
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let label = label.trim_matches('-');
    let label = &label[..label.len().min(63)];
    let label = label.trim_end_matches('-');
    if label.is_empty() { "app".to_owned() } else { label.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::app_name;

    #[test]
    fn ecs_names_become_app_names() {
        assert_eq!(
            app_name("demo-service-a-TS6BT1U6VQBG-Service-HTco3SKTy2J1"),
            "demo-service-a-ts6bt1u6vqbg-service-htco3skty2j1"
        );
        assert_eq!(app_name("service_y.cw--rule"), "service-y-cw-rule");
        assert_eq!(app_name("--"), "app");
        assert!(app_name(&"x".repeat(100)).len() == 63);
    }
}
