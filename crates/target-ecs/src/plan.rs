//! Plans for ECS apps: what would change in a task definition (images, and the whole
//! document when the manifest gives one) and in a service's settings. Only settings the
//! manifest states are compared; what it leaves out, ECS keeps. The setting names here
//! are the ones `services.rs` and `definitions.rs` flatten live state into.

use std::collections::BTreeMap;
use std::time::Duration;

use launchway_manifest::{AppSpec, EcsDefinition};
use launchway_target::planning::{self, PlanRequest};
use launchway_target::settings::{flatten as flatten_json, select_container};
use launchway_target::{AppPlan, Change, LiveDefinition, PlanAction};

/// The plan of an ECS service or scheduled task against what runs, with what changes in
/// the settings only launchway acts on (against the release deployed now).
pub(crate) fn compute(request: PlanRequest<'_>) -> AppPlan {
    let mut plan = compute_on_ecs(request);
    if let Some(current) = request.current {
        let own =
            planning::changes_between(&planning::own_settings(current.spec), &planning::own_settings(request.desired));
        plan.changes.extend(own);
        plan.changes.sort_by(|a, b| a.path.cmp(&b.path));
    }
    plan
}

/// The plan of what ECS itself would change.
fn compute_on_ecs(request: PlanRequest<'_>) -> AppPlan {
    let PlanRequest { app, env, desired, live, current } = request;
    let to_revision = desired.revision().0;
    let live = live.and_then(|live| live.definition.as_ref());
    // The release deployed now was registered with the definition it holds: moving back
    // to that definition reuses its revision (registration is idempotent).
    let registered = |definition: &EcsDefinition| match current.map(|deployed| deployed.spec) {
        Some(AppSpec::EcsService(deployed)) => deployed.definition == *definition,
        Some(AppSpec::EcsTask(deployed)) => deployed.definition == *definition,
        _ => false,
    };
    match desired {
        AppSpec::EcsService(service) => plan_definition(
            EcsPlanInput {
                app,
                env,
                kind: "service",
                what: format!("ECS service {} in cluster {}", service.service, service.cluster),
                definition: &service.definition,
                desired_count: service.desired_count,
                stated: crate::native::stated_settings(service),
                grace_period: service.health_check_grace_period,
                to_revision,
                registered: registered(&service.definition),
            },
            live,
        ),
        // A task run on deploy runs nothing between deploys: what it ran last is the
        // release deployed.
        AppSpec::EcsTask(task) if task.on_deploy.is_some() => {
            let cluster = task.cluster.as_deref().unwrap_or("?");
            // Its definition's settings: the images it sets and the document it gives.
            let settings = |definition: &EcsDefinition| -> BTreeMap<String, String> {
                let mut flat: BTreeMap<String, String> = definition
                    .images
                    .iter()
                    .map(|(container, image)| (format!("containers.{container}.image"), image.clone()))
                    .collect();
                if let Some(document) = &definition.document {
                    flatten_json("task_definition", &document.document, &mut flat);
                }
                flat
            };
            let before = match current.map(|deployed| deployed.spec) {
                Some(AppSpec::EcsTask(before)) => settings(&before.definition),
                _ => BTreeMap::new(),
            };
            let changes: Vec<Change> = settings(&task.definition)
                .into_iter()
                .filter(|(path, image)| before.get(path) != Some(image))
                .map(|(path, to)| Change { from: before.get(&path).cloned(), path, to: Some(to) })
                .collect();
            match current {
                Some(deployed) if deployed.revision == to_revision => AppPlan::no_change(app, env, "task", to_revision),
                Some(deployed) => AppPlan {
                    from_revision: Some(deployed.revision.to_owned()),
                    changes,
                    summary: format!("run the new release of the task once in cluster {cluster}"),
                    ..AppPlan::new(app, env, "task", PlanAction::Update, to_revision)
                },
                None => AppPlan {
                    changes,
                    summary: format!("run the task once in cluster {cluster}"),
                    ..AppPlan::new(app, env, "task", PlanAction::Create, to_revision)
                },
            }
        }
        AppSpec::EcsTask(task) => {
            let mut targets = Vec::new();
            if let Some(rule) = &task.rule {
                targets.push(format!("EventBridge rule {rule}"));
            }
            if let Some(schedule) = &task.schedule {
                targets.push(format!("Scheduler schedule {}", schedule.name));
            }
            plan_definition(
                EcsPlanInput {
                    app,
                    env,
                    kind: "task",
                    what: targets.join(" and "),
                    definition: &task.definition,
                    desired_count: None,
                    stated: BTreeMap::new(),
                    grace_period: None,
                    to_revision,
                    registered: registered(&task.definition),
                },
                live,
            )
        }
        // Refused by `check`: ECS runs only ECS specs.
        AppSpec::Service(_) | AppSpec::Task(_) => AppPlan {
            summary: "a Docker service or task: ECS does not run it".to_owned(),
            ..AppPlan::new(app, env, "service", PlanAction::Create, to_revision)
        },
    }
}

struct EcsPlanInput<'a> {
    app: &'a str,
    env: &'a str,
    kind: &'a str,
    /// "ECS service web in cluster prod", "EventBridge rule nightly".
    what: String,
    definition: &'a EcsDefinition,
    desired_count: Option<u32>,
    /// The service settings the manifest states, by name.
    stated: BTreeMap<String, String>,
    grace_period: Option<Duration>,
    to_revision: String,
    /// The definition is the one the release deployed now holds: its revision exists.
    registered: bool,
}

/// A plan for an ECS app: what would change in its task definition and service
/// settings. Only settings the manifest states are compared; what it leaves out, the
/// target keeps.
fn plan_definition(input: EcsPlanInput<'_>, live: Option<&LiveDefinition>) -> AppPlan {
    let EcsPlanInput { app, env, kind, what, definition, desired_count, stated, grace_period, to_revision, registered } =
        input;
    let Some(live) = live else {
        return AppPlan {
            summary: format!(
                "{what} was not found: launchway updates what exists (create it with CloudFormation, Terraform or the console)"
            ),
            ..AppPlan::new(app, env, kind, PlanAction::Create, to_revision)
        };
    };
    let mut changes = Vec::new();
    // The images wanted: a whole document's own, or what runs, with the manifest's set.
    let mut desired_images: BTreeMap<String, String> = match &definition.document {
        Some(document) => document.document["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["image"].as_str().unwrap_or_default().to_owned())))
            .collect(),
        None => live.images.clone(),
    };
    let containers: Vec<(String, String)> = desired_images.iter().map(|(n, i)| (n.clone(), i.clone())).collect();
    for (selector, image) in &definition.images {
        let name = select_container(selector, &containers).map_or_else(|_| selector.clone(), str::to_owned);
        desired_images.insert(name, image.clone());
    }
    for (name, image) in &desired_images {
        let from = live.images.get(name).cloned();
        if from.as_deref() != Some(image.as_str()) {
            changes.push(Change { path: format!("containers.{name}.image"), from, to: Some(image.clone()) });
        }
    }
    if let Some(document) = &definition.document {
        let mut wanted = BTreeMap::new();
        flatten_json("task_definition", &document.document, &mut wanted);
        for (name, image) in &desired_images {
            wanted.insert(format!("task_definition.containerDefinitions.{name}.image"), image.clone());
        }
        let mut document_changes = 0;
        for (path, to) in wanted {
            // Images are shown once, above.
            if path.ends_with(".image") && path.starts_with("task_definition.containerDefinitions.") {
                continue;
            }
            let from = live.settings.get(&path).cloned();
            if from.as_ref() != Some(&to) {
                changes.push(Change { path, from, to: Some(to) });
                document_changes += 1;
            }
        }
        // Revisions launchway registers are named by their definition's own content.
        let definition_revision = definition.revision().0;
        if document_changes == 0 && changes.is_empty() && live.revision.as_deref() != Some(definition_revision.as_str())
        {
            changes.push(Change {
                path: "task_definition".to_owned(),
                from: Some(live.reference.clone()),
                to: Some(format!("a new revision from {}", document.path)),
            });
        }
    }
    let mut setting = |path: &str, to: Option<String>| {
        if let Some(to) = to {
            let from = live.settings.get(path).cloned();
            if from.as_ref() != Some(&to) {
                changes.push(Change { path: path.to_owned(), from, to: Some(to) });
            }
        }
    };
    setting("desired_count", desired_count.map(|count| count.to_string()));
    setting("health_check_grace_period", grace_period.map(|grace| format!("{}s", grace.as_secs())));
    for (path, value) in stated {
        setting(&path, Some(value));
    }
    let from_revision = Some(live.revision.clone().unwrap_or_else(|| short_reference(&live.reference)));
    let (action, summary) = match (changes.is_empty(), live.steady) {
        (true, true) => (PlanAction::NoChange, "nothing to change".to_owned()),
        (true, false) => (PlanAction::Converge, format!("{what} is not steady ({}): wait for it", live.status)),
        (false, _) => {
            let registers = changes
                .iter()
                .any(|change| change.path.starts_with("containers.") || change.path.starts_with("task_definition"));
            let summary = match (registers, registered) {
                (true, false) => {
                    format!("register a new task definition revision and move {what} (now {})", live.status)
                }
                (true, true) => format!(
                    "move {what} back to the task definition revision registered for its release (now {})",
                    live.status
                ),
                (false, _) => format!("update {what} (now {})", live.status),
            };
            (PlanAction::Update, summary)
        }
    };
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    AppPlan { from_revision, changes, summary, ..AppPlan::new(app, env, kind, action, to_revision) }
}

/// `arn:aws:ecs:…:task-definition/web:7` → `web:7`.
fn short_reference(reference: &str) -> String {
    reference.rsplit('/').next().unwrap_or(reference).to_owned()
}
