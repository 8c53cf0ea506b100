//! Plans: the difference between what runs and what the manifest asks for, shown
//! before anything changes (what a CloudFormation change set is to ECS teams).

use std::collections::BTreeMap;
use std::time::Duration;

use launchway_manifest::{AppSpec, ContainerSpec, EcsDefinition, EcsDeployment, HealthCheck, Strategy};
use launchway_store::Release;
use launchway_target::settings::{flatten as flatten_json, select_container};
use launchway_target::{LiveApp, LiveDefinition, ReplicaState};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// Nothing of the app runs yet.
    Create,
    /// A new revision replaces what runs.
    Update,
    /// The revision is right but the replicas are not (some stopped, some missing, an
    /// extra one left over): the rollout puts them right.
    Converge,
    NoChange,
    /// It runs there but the manifest no longer deploys it there. launchway leaves it
    /// running (there is no pruning yet) and says so.
    Unmanaged,
}

/// One changed setting, as `path: from → to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => write!(f, "~ {}: {from} → {to}", self.path),
            (None, Some(to)) => write!(f, "+ {}: {to}", self.path),
            (Some(from), None) => write!(f, "- {}: {from}", self.path),
            (None, None) => write!(f, "  {}", self.path),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounts {
    /// Replicas running now, of any revision.
    pub running: u32,
    /// Replicas there that are not running (exited, never started).
    pub stopped: u32,
    /// Running replicas that the target had to restart after they died.
    #[serde(default)]
    pub restarted: u32,
    pub desired: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlan {
    pub app: String,
    pub env: String,
    pub kind: String,
    pub action: PlanAction,
    pub from_revision: Option<String>,
    pub to_revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
    pub changes: Vec<Change>,
    /// One line saying what deploying would do.
    pub summary: String,
    /// A manual rollback holds the app where it is: deploying changes nothing there
    /// until the pin is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<launchway_store::Pin>,
}

impl AppPlan {
    pub fn is_no_op(&self) -> bool {
        matches!(self.action, PlanAction::NoChange | PlanAction::Unmanaged)
    }

    /// Whether deploying would change what runs: something differs and no pin holds it.
    pub fn would_change(&self) -> bool {
        !self.is_no_op() && self.pinned.is_none()
    }

    /// An app that runs in `env` but is not deployed there by the manifest.
    pub fn unmanaged(app: &str, env: &str, live: &LiveApp) -> AppPlan {
        let revisions: Vec<&str> = live.running_by_revision().into_keys().collect();
        AppPlan {
            app: app.to_owned(),
            env: env.to_owned(),
            kind: "service".to_owned(),
            action: PlanAction::Unmanaged,
            from_revision: revisions.first().map(|revision| (*revision).to_owned()),
            to_revision: String::new(),
            replicas: None,
            changes: Vec::new(),
            summary: format!(
                "not in the manifest for {env}; its {} replica{} keep running (launchway does not prune yet)",
                live.replicas.len(),
                plural(live.replicas.len() as u32)
            ),
            pinned: None,
        }
    }
}

/// Compares the desired spec with what runs.
///
/// `live` is the app's replicas on the target (services); `current` is the release the
/// store says is deployed, whose full spec (health check and strategy included, which
/// containers do not show) is used when its revision is the one running.
pub fn compute(app: &str, env: &str, desired: &AppSpec, live: Option<&LiveApp>, current: Option<&Release>) -> AppPlan {
    let to_revision = desired.revision().0;
    match desired {
        AppSpec::Service(service) => {
            let empty = LiveApp::default();
            let live = live.unwrap_or(&empty);
            let running_by_revision = live.running_by_revision();
            let running: u32 = running_by_revision.values().sum();
            let stopped = live.replicas.iter().filter(|r| r.state != ReplicaState::Running).count() as u32;
            let restarted =
                live.replicas.iter().filter(|r| r.state == ReplicaState::Running && r.restarts > 0).count() as u32;
            // What runs is the revision with the most running replicas.
            let from_revision =
                running_by_revision.iter().max_by_key(|(_, count)| **count).map(|(revision, _)| (*revision).to_owned());
            let counts = ReplicaCounts { running, stopped, restarted, desired: service.replicas };
            let Some(from) = from_revision.clone() else {
                let mut changes = flatten(desired)
                    .into_iter()
                    .map(|(path, to)| Change { path, from: None, to: Some(to) })
                    .collect::<Vec<_>>();
                changes.sort_by(|a, b| a.path.cmp(&b.path));
                return AppPlan {
                    app: app.to_owned(),
                    env: env.to_owned(),
                    kind: "service".to_owned(),
                    action: PlanAction::Create,
                    summary: format!("start {} replica{}", service.replicas, plural(service.replicas)),
                    from_revision: None,
                    to_revision,
                    replicas: Some(counts),
                    changes,
                    pinned: None,
                };
            };
            let only_desired_running = running_by_revision.len() == 1 && from == to_revision;
            if only_desired_running && running == service.replicas && stopped == 0 && restarted == 0 {
                return no_change(app, env, "service", to_revision, Some(counts));
            }
            let live_spec = match current.filter(|release| release.revision == from) {
                Some(release) => flatten(&release.spec),
                None => flatten_containers(
                    live.replicas.iter().find(|r| r.revision == from).map_or(&[][..], |r| &r.containers),
                ),
            };
            let mut changes = diff(&live_spec, &flatten(desired), current.is_some_and(|r| r.revision == from));
            if running != service.replicas {
                changes.retain(|change| change.path != "replicas");
                changes.push(Change {
                    path: "replicas".to_owned(),
                    from: Some(running.to_string()),
                    to: Some(service.replicas.to_string()),
                });
            }
            let (action, summary) = if from == to_revision {
                (PlanAction::Converge, converge_summary(&counts, running_by_revision.len()))
            } else {
                let Strategy::Rolling { max_surge, max_unavailable, .. } = service.strategy;
                (
                    PlanAction::Update,
                    format!(
                        "rolling update of {} replica{} (max surge {max_surge}, max unavailable {max_unavailable})",
                        service.replicas,
                        plural(service.replicas)
                    ),
                )
            };
            AppPlan {
                app: app.to_owned(),
                env: env.to_owned(),
                kind: "service".to_owned(),
                action,
                from_revision,
                to_revision,
                replicas: Some(counts),
                changes,
                summary,
                pinned: None,
            }
        }
        AppSpec::EcsService(service) => ecs_plan(
            EcsPlanInput {
                app,
                env,
                kind: "service",
                what: format!("ECS service {} in cluster {}", service.service, service.cluster),
                definition: &service.definition,
                desired_count: service.desired_count,
                deployment: service.deployment.as_ref(),
                grace_period: service.health_check_grace_period,
                to_revision,
            },
            live.and_then(|live| live.definition.as_ref()),
        ),
        AppSpec::EcsTask(task) => {
            let mut targets = Vec::new();
            if let Some(rule) = &task.rule {
                targets.push(format!("EventBridge rule {rule}"));
            }
            if let Some(schedule) = &task.schedule {
                targets.push(format!("Scheduler schedule {}", schedule.name));
            }
            ecs_plan(
                EcsPlanInput {
                    app,
                    env,
                    kind: "task",
                    what: targets.join(" and "),
                    definition: &task.definition,
                    desired_count: None,
                    deployment: None,
                    grace_period: None,
                    to_revision,
                },
                live.and_then(|live| live.definition.as_ref()),
            )
        }
        AppSpec::Task(_) => match current {
            Some(release) if release.revision == to_revision => no_change(app, env, "task", to_revision, None),
            Some(release) => AppPlan {
                app: app.to_owned(),
                env: env.to_owned(),
                kind: "task".to_owned(),
                action: PlanAction::Update,
                from_revision: Some(release.revision.clone()),
                to_revision,
                replicas: None,
                changes: diff(&flatten(&release.spec), &flatten(desired), true),
                summary: "record the new task definition for its next scheduled run".to_owned(),
                pinned: None,
            },
            None => AppPlan {
                app: app.to_owned(),
                env: env.to_owned(),
                kind: "task".to_owned(),
                action: PlanAction::Create,
                from_revision: None,
                to_revision,
                replicas: None,
                changes: flatten(desired)
                    .into_iter()
                    .map(|(path, to)| Change { path, from: None, to: Some(to) })
                    .collect(),
                summary: "record the task definition for its scheduled runs".to_owned(),
                pinned: None,
            },
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
    deployment: Option<&'a EcsDeployment>,
    grace_period: Option<Duration>,
    to_revision: String,
}

/// A plan for an ECS app: what would change in its task definition and service
/// settings. Only settings the manifest states are compared; what it leaves out, the
/// target keeps.
fn ecs_plan(input: EcsPlanInput<'_>, live: Option<&LiveDefinition>) -> AppPlan {
    let EcsPlanInput { app, env, kind, what, definition, desired_count, deployment, grace_period, to_revision } = input;
    let Some(live) = live else {
        return AppPlan {
            app: app.to_owned(),
            env: env.to_owned(),
            kind: kind.to_owned(),
            action: PlanAction::Create,
            from_revision: None,
            to_revision,
            replicas: None,
            changes: Vec::new(),
            summary: format!(
                "{what} was not found: launchway updates what exists (create it with CloudFormation, Terraform or the console)"
            ),
            pinned: None,
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
    if let Some(deployment) = deployment {
        setting("deployment.maximum_percent", deployment.maximum_percent.map(|p| p.to_string()));
        setting("deployment.minimum_healthy_percent", deployment.minimum_healthy_percent.map(|p| p.to_string()));
        setting("deployment.circuit_breaker.enable", deployment.circuit_breaker.map(|c| c.enable.to_string()));
        setting("deployment.circuit_breaker.rollback", deployment.circuit_breaker.map(|c| c.rollback.to_string()));
    }
    let from_revision = Some(live.revision.clone().unwrap_or_else(|| short_reference(&live.reference)));
    let (action, summary) = match (changes.is_empty(), live.steady) {
        (true, true) => (PlanAction::NoChange, "nothing to change".to_owned()),
        (true, false) => (PlanAction::Converge, format!("{what} is not steady ({}): wait for it", live.status)),
        (false, _) => {
            let registers = changes
                .iter()
                .any(|change| change.path.starts_with("containers.") || change.path.starts_with("task_definition"));
            let verb = if registers { "register a new task definition revision and move" } else { "update" };
            (PlanAction::Update, format!("{verb} {what} (now {})", live.status))
        }
    };
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    AppPlan {
        app: app.to_owned(),
        env: env.to_owned(),
        kind: kind.to_owned(),
        action,
        from_revision,
        to_revision,
        replicas: None,
        changes,
        summary,
        pinned: None,
    }
}

/// `arn:aws:ecs:…:task-definition/web:7` → `web:7`.
fn short_reference(reference: &str) -> String {
    reference.rsplit('/').next().unwrap_or(reference).to_owned()
}

fn no_change(app: &str, env: &str, kind: &str, revision: String, replicas: Option<ReplicaCounts>) -> AppPlan {
    AppPlan {
        app: app.to_owned(),
        env: env.to_owned(),
        kind: kind.to_owned(),
        action: PlanAction::NoChange,
        from_revision: Some(revision.clone()),
        to_revision: revision,
        replicas,
        changes: Vec::new(),
        summary: "nothing to change".to_owned(),
        pinned: None,
    }
}

fn converge_summary(counts: &ReplicaCounts, revisions: usize) -> String {
    let mut parts = Vec::new();
    if counts.running < counts.desired {
        parts.push(format!(
            "start {} missing replica{}",
            counts.desired - counts.running,
            plural(counts.desired - counts.running)
        ));
    }
    if counts.running > counts.desired || revisions > 1 {
        parts.push("remove extra replicas".to_owned());
    }
    if counts.stopped > 0 {
        parts.push(format!("replace {} stopped replica{}", counts.stopped, plural(counts.stopped)));
    }
    if counts.restarted > 0 {
        parts.push(format!(
            "replace {} replica{} that crashed and restarted",
            counts.restarted,
            plural(counts.restarted)
        ));
    }
    if parts.is_empty() {
        parts.push("bring replicas back to the desired revision".to_owned());
    }
    parts.join(", ")
}

fn plural(count: u32) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Compares two flattened specs. When `full` is false, `old` holds only what containers
/// show (no health check, strategy or replica count), so keys missing from it are not
/// reported as additions.
fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>, full: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, to) in new {
        match old.get(path) {
            Some(from) if from == to => {}
            Some(from) => changes.push(Change { path: path.clone(), from: Some(from.clone()), to: Some(to.clone()) }),
            None if full || path.starts_with("containers.") => {
                changes.push(Change { path: path.clone(), from: None, to: Some(to.clone()) })
            }
            None => {}
        }
    }
    for (path, from) in old {
        if !new.contains_key(path) {
            changes.push(Change { path: path.clone(), from: Some(from.clone()), to: None });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

/// A spec as `path → value` lines: `containers.web.image`, `containers.web.env.LOG`,
/// `health.interval`, `replicas`…
fn flatten(spec: &AppSpec) -> BTreeMap<String, String> {
    let containers: &[ContainerSpec] = match spec {
        AppSpec::Service(service) => &service.containers,
        AppSpec::Task(task) => &task.containers,
        AppSpec::EcsService(_) | AppSpec::EcsTask(_) => &[],
    };
    let mut flat = flatten_containers(containers);
    match spec {
        AppSpec::Service(service) => {
            flat.insert("replicas".into(), service.replicas.to_string());
            if let Some(health) = &service.health {
                flatten_health(health, &mut flat);
            }
            let Strategy::Rolling { max_surge, max_unavailable, timeout } = service.strategy;
            flat.insert("strategy.rolling.max_surge".into(), max_surge.to_string());
            flat.insert("strategy.rolling.max_unavailable".into(), max_unavailable.to_string());
            flat.insert("strategy.rolling.timeout".into(), duration(timeout));
            flat.insert("stop_grace_period".into(), duration(service.stop_grace_period));
        }
        AppSpec::Task(task) => {
            flat.insert("schedule".into(), task.schedule.0.clone());
            if let Some(timeout) = task.timeout {
                flat.insert("timeout".into(), duration(timeout));
            }
        }
        // ECS apps are compared with their live definition by `ecs_plan`.
        AppSpec::EcsService(_) | AppSpec::EcsTask(_) => {}
    }
    flat
}

fn flatten_containers(containers: &[ContainerSpec]) -> BTreeMap<String, String> {
    let mut flat = BTreeMap::new();
    for container in containers {
        let prefix = format!("containers.{}", container.name);
        flat.insert(format!("{prefix}.image"), container.image.clone());
        if let Some(command) = &container.command {
            flat.insert(format!("{prefix}.command"), format!("{command:?}"));
        }
        if let Some(entrypoint) = &container.entrypoint {
            flat.insert(format!("{prefix}.entrypoint"), format!("{entrypoint:?}"));
        }
        for (key, value) in &container.env {
            flat.insert(format!("{prefix}.env.{key}"), value.clone());
        }
        if let Some(port) = container.port {
            flat.insert(format!("{prefix}.port"), port.to_string());
        }
    }
    flat
}

fn flatten_health(health: &HealthCheck, flat: &mut BTreeMap<String, String>) {
    flat.insert("health.path".into(), health.path.clone());
    flat.insert("health.port".into(), health.port.to_string());
    flat.insert("health.interval".into(), duration(health.interval));
    flat.insert("health.start_interval".into(), duration(health.start_interval));
    flat.insert("health.timeout".into(), duration(health.timeout));
    flat.insert("health.start_period".into(), duration(health.start_period));
    flat.insert("health.healthy_threshold".into(), health.healthy_threshold.to_string());
    flat.insert("health.unhealthy_threshold".into(), health.unhealthy_threshold.to_string());
}

fn duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use launchway_manifest::{ServiceSpec, TargetSpec};
    use launchway_store::ReleaseSource;
    use launchway_target::LiveReplica;

    use super::*;

    fn service(image: &str, replicas: u32, env: &[(&str, &str)]) -> AppSpec {
        AppSpec::Service(ServiceSpec {
            containers: vec![ContainerSpec {
                name: "web".into(),
                image: image.into(),
                command: None,
                entrypoint: None,
                env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
                port: Some(8080),
            }],
            replicas,
            health: None,
            strategy: Strategy::Rolling { max_surge: 1, max_unavailable: 0, timeout: Duration::from_secs(600) },
            stop_grace_period: Duration::from_secs(10),
            settle_window: None,
        })
    }

    fn live(spec: &AppSpec, running: u32, stopped: u32) -> LiveApp {
        let revision = spec.revision().0;
        LiveApp {
            definition: None,
            replicas: (0..running + stopped)
                .map(|slot| LiveReplica {
                    id: format!("c{slot}"),
                    name: format!("web-{slot}"),
                    revision: revision.clone(),
                    release_id: Some(1),
                    slot,
                    state: if slot < running {
                        ReplicaState::Running
                    } else {
                        ReplicaState::Stopped { exit_code: Some(1) }
                    },
                    containers: match spec {
                        AppSpec::Service(service) => service.containers.clone(),
                        _ => Vec::new(),
                    },
                    endpoints: vec![],
                    restarts: 0,
                })
                .collect(),
        }
    }

    fn release(spec: &AppSpec) -> Release {
        Release {
            id: 1,
            app: "web".into(),
            env: "dev".into(),
            revision: spec.revision().0,
            spec: spec.clone(),
            target: TargetSpec::Docker { host: None },
            source: ReleaseSource::default(),
            created_at: 0,
        }
    }

    #[test]
    fn nothing_running_is_a_create_listing_every_setting() {
        let desired = service("web:1", 3, &[]);
        let plan = compute("web", "dev", &desired, None, None);
        assert_eq!(plan.action, PlanAction::Create);
        assert_eq!(plan.summary, "start 3 replicas");
        assert!(plan.changes.iter().any(|c| c.to_string() == "+ containers.web.image: web:1"));
    }

    #[test]
    fn the_same_revision_fully_running_is_no_change() {
        let desired = service("web:1", 3, &[]);
        let plan = compute("web", "dev", &desired, Some(&live(&desired, 3, 0)), Some(&release(&desired)));
        assert!(plan.is_no_op());
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn an_image_and_env_change_is_an_update_showing_each_difference() {
        let running = service("web:1", 3, &[("LOG", "info"), ("OLD", "x")]);
        let desired = service("web:2", 3, &[("LOG", "debug"), ("NEW", "y")]);
        let plan = compute("web", "dev", &desired, Some(&live(&running, 3, 0)), Some(&release(&running)));
        assert_eq!(plan.action, PlanAction::Update);
        let lines: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ containers.web.env.LOG: info → debug",
                "+ containers.web.env.NEW: y",
                "- containers.web.env.OLD: x",
                "~ containers.web.image: web:1 → web:2",
            ]
        );
        assert_eq!(plan.summary, "rolling update of 3 replicas (max surge 1, max unavailable 0)");
    }

    #[test]
    fn without_the_release_the_plan_diffs_what_containers_show() {
        let running = service("web:1", 3, &[]);
        let desired = service("web:2", 3, &[]);
        let plan = compute("web", "dev", &desired, Some(&live(&running, 3, 0)), None);
        let lines: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["~ containers.web.image: web:1 → web:2"], "no health or strategy noise");
    }

    #[test]
    fn a_stopped_or_missing_replica_of_the_right_revision_is_converged() {
        let desired = service("web:1", 3, &[]);
        let plan = compute("web", "dev", &desired, Some(&live(&desired, 2, 1)), Some(&release(&desired)));
        assert_eq!(plan.action, PlanAction::Converge);
        assert_eq!(plan.summary, "start 1 missing replica, replace 1 stopped replica");
        assert_eq!(plan.changes.iter().map(ToString::to_string).collect::<Vec<_>>(), ["~ replicas: 2 → 3"]);
    }
}
