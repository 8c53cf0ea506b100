//! Planning, as targets share it: the question a target answers with [`crate::Target::plan`],
//! and the plan of launchway's own service and task specs (replicas of containers),
//! which any target that runs those specs itself (Docker) uses. Targets with settings
//! of their own (ECS task definitions and services) plan them in their own crate.

use std::collections::BTreeMap;

use launchway_manifest::{
    AppSpec, ContainerSpec, DEFAULT_REPLICAS, DEFAULT_STOP_GRACE_PERIOD, DEFAULT_STRATEGY, HealthCheck, ServiceSpec,
    Strategy, format_duration,
};
use launchway_store::{AppPlan, Change, PlanAction, ReplicaCounts};

use crate::{LiveApp, ReplicaState};

/// What a target is asked to plan: `desired` against what it observed (`live`), knowing
/// what the store says is deployed (`current`).
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub desired: &'a AppSpec,
    pub live: Option<&'a LiveApp>,
    pub current: Option<Deployed<'a>>,
}

/// The release the store says is deployed: its whole spec (health check and strategy
/// included, which running containers do not show).
#[derive(Debug, Clone, Copy)]
pub struct Deployed<'a> {
    pub revision: &'a str,
    pub spec: &'a AppSpec,
}

/// An app that runs in `env` but is not deployed there by the manifest.
pub fn unmanaged(app: &str, env: &str, live: &LiveApp) -> AppPlan {
    let revisions: Vec<&str> = live.running_by_revision().into_keys().collect();
    AppPlan {
        from_revision: revisions.first().map(|revision| (*revision).to_owned()),
        summary: format!(
            "not in the manifest for {env}; its {} replica{} keep running (launchway does not prune yet)",
            live.replicas.len(),
            plural(live.replicas.len() as u32)
        ),
        ..AppPlan::new(app, env, "service", PlanAction::Unmanaged, String::new())
    }
}

/// Plans launchway's own specs: a service's replicas compared with the live ones (by
/// revision, then setting by setting), a task's definition with the deployed one. An
/// ECS spec is not one: its plan says so, and the target's `check` refuses it.
pub fn native_plan(request: PlanRequest<'_>) -> AppPlan {
    let PlanRequest { app, env, desired, live, current } = request;
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
                return AppPlan {
                    summary: format!("start {} replica{}", service.replicas, plural(service.replicas)),
                    replicas: Some(counts),
                    changes: additions(desired),
                    defaults: at_defaults(desired),
                    ..AppPlan::new(app, env, "service", PlanAction::Create, to_revision)
                };
            };
            let only_desired_running = running_by_revision.len() == 1 && from == to_revision;
            // An entry point that does not answer is drift like a missing replica: the
            // rollout that converges it starts it again, with its routes.
            let entry_point_down =
                live.entry_point.as_ref().filter(|entry| !entry.answering && service.ingress.is_some());
            if only_desired_running
                && running == service.replicas
                && stopped == 0
                && restarted == 0
                && entry_point_down.is_none()
            {
                return AppPlan { replicas: Some(counts), ..AppPlan::no_change(app, env, "service", to_revision) };
            }
            let deployed = current.filter(|deployed| deployed.revision == from);
            let live_spec = match deployed {
                Some(deployed) => flatten(deployed.spec),
                None => flatten_containers(
                    live.replicas.iter().find(|r| r.revision == from).map_or(&[][..], |r| &r.containers),
                ),
            };
            let mut changes = diff(&live_spec, &flatten(desired), deployed.is_some());
            if running != service.replicas {
                changes.retain(|change| change.path != "replicas");
                changes.push(Change {
                    path: "replicas".to_owned(),
                    from: Some(running.to_string()),
                    to: Some(service.replicas.to_string()),
                });
            }
            let (action, summary) = if from == to_revision {
                let mut summary = converge_summary(&counts, running_by_revision.len());
                if let Some(entry) = entry_point_down {
                    summary = match (counts.running, counts.stopped, counts.restarted) {
                        (running, 0, 0) if running == counts.desired && running_by_revision.len() == 1 => {
                            format!("restore the entry point: {} does not answer", entry.what)
                        }
                        _ => format!("{summary}, and restore the entry point: {} does not answer", entry.what),
                    };
                }
                (PlanAction::Converge, summary)
            } else {
                (PlanAction::Update, update_summary(service.replicas, &service.strategy))
            };
            AppPlan {
                from_revision,
                replicas: Some(counts),
                changes,
                summary,
                ..AppPlan::new(app, env, "service", action, to_revision)
            }
        }
        AppSpec::Task(_) => match current {
            Some(deployed) if deployed.revision == to_revision => AppPlan::no_change(app, env, "task", to_revision),
            Some(deployed) => AppPlan {
                from_revision: Some(deployed.revision.to_owned()),
                changes: diff(&flatten(deployed.spec), &flatten(desired), true),
                summary: task_summary(desired, "record the new task definition for its next scheduled run"),
                ..AppPlan::new(app, env, "task", PlanAction::Update, to_revision)
            },
            None => AppPlan {
                changes: additions(desired),
                summary: task_summary(desired, "record the task definition for its scheduled runs"),
                ..AppPlan::new(app, env, "task", PlanAction::Create, to_revision)
            },
        },
        AppSpec::EcsService(_) | AppSpec::EcsTask(_) => AppPlan {
            summary: "an ECS service or task: this target does not run it".to_owned(),
            ..AppPlan::new(app, env, "service", PlanAction::Create, to_revision)
        },
    }
}

/// What deploying a task does: a task run on deploy runs once (issue 21: it was planned
/// as "record the task definition for its scheduled runs"); a scheduled one is recorded
/// for its runs.
fn task_summary(desired: &AppSpec, scheduled: &str) -> String {
    match desired {
        AppSpec::Task(task) if task.schedule.is_none() => {
            "run the task once, as its deploy (run: on_deploy); exit 0 deploys it".to_owned()
        }
        _ => scheduled.to_owned(),
    }
}

/// The settings of a service that are what it gets when its manifest leaves them out
/// (its containers' settings are always its own).
fn at_defaults(desired: &AppSpec) -> Vec<String> {
    let defaults = ServiceSpec {
        containers: Vec::new(),
        replicas: DEFAULT_REPLICAS,
        health: None,
        strategy: DEFAULT_STRATEGY,
        stop_grace_period: DEFAULT_STOP_GRACE_PERIOD,
        settle_window: None,
        ingress: None,
    };
    let defaults = flatten(&AppSpec::Service(defaults));
    flatten(desired)
        .into_iter()
        .filter(|(path, value)| defaults.get(path) == Some(value))
        .map(|(path, _)| path)
        .collect()
}

/// Every setting of a new app, as additions.
fn additions(desired: &AppSpec) -> Vec<Change> {
    flatten(desired).into_iter().map(|(path, to)| Change { path, from: None, to: Some(to) }).collect()
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
            flatten_strategy(&service.strategy, &mut flat);
            flat.insert("stop_grace_period".into(), format_duration(service.stop_grace_period));
            flat.insert("settle_window".into(), format_duration(service.settle_window()));
            if let Some(ingress) = &service.ingress {
                flat.insert("ingress.port".into(), ingress.port.to_string());
                if let Some(host) = &ingress.host {
                    flat.insert("ingress.host".into(), host.clone());
                }
                if let Some(path) = &ingress.path {
                    flat.insert("ingress.path".into(), path.clone());
                }
                if let Some(tls) = &ingress.tls {
                    flat.insert("ingress.tls.certificate".into(), tls.certificate.clone());
                    flat.insert("ingress.tls.key".into(), tls.key.clone());
                }
            }
        }
        AppSpec::Task(task) => {
            match &task.schedule {
                Some(schedule) => flat.insert("schedule".into(), schedule.0.clone()),
                None => flat.insert("run".into(), "on_deploy".into()),
            };
            if let Some(timeout) = task.timeout {
                flat.insert("timeout".into(), format_duration(timeout));
            }
        }
        AppSpec::EcsService(_) | AppSpec::EcsTask(_) => {}
    }
    flat
}

/// The settings of an ECS spec that only launchway acts on (how long it waits, how
/// long a release must stay healthy, what its analyses measure): nothing on ECS shows
/// them, so an ECS plan compares them with the release deployed now.
pub fn own_settings(spec: &AppSpec) -> BTreeMap<String, String> {
    let mut flat = BTreeMap::new();
    match spec {
        AppSpec::EcsService(service) => {
            flat.insert("timeout".into(), format_duration(service.timeout));
            flat.insert(
                "settle_window".into(),
                format_duration(service.settle_window.unwrap_or(launchway_manifest::DEFAULT_SETTLE_WINDOW)),
            );
            if let Some(strategy) = &service.strategy {
                let mut strategy_settings = BTreeMap::new();
                flatten_strategy(strategy, &mut strategy_settings);
                // What ECS does (bake times, gates) is compared with the service; what
                // launchway measures is not on the service.
                let analysis = format!("strategy.{}.analysis.", strategy.name());
                flat.extend(strategy_settings.into_iter().filter(|(path, _)| path.starts_with(&analysis)));
            }
        }
        AppSpec::EcsTask(task) => {
            if let Some(timeout) = task.on_deploy.as_ref().and_then(|once| once.timeout) {
                flat.insert("timeout".into(), format_duration(timeout));
            }
        }
        AppSpec::Service(_) | AppSpec::Task(_) => {}
    }
    flat
}

/// What differs between two sets of settings, as plan changes.
pub fn changes_between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<Change> {
    diff(old, new, true)
}

/// How an update of `replicas` goes, in one line.
fn update_summary(replicas: u32, strategy: &Strategy) -> String {
    let set = format!("{replicas} replica{}", plural(replicas));
    match strategy {
        Strategy::Rolling { max_surge, max_unavailable, .. } => {
            format!("rolling update of {set} (max surge {max_surge}, max unavailable {max_unavailable})")
        }
        Strategy::BlueGreen { bake, .. } => format!(
            "blue/green: start {set} beside those serving, move all traffic at once, keep the old set for {}",
            format_duration(*bake)
        ),
        Strategy::Canary { steps, .. } => {
            format!("canary of {set}: {}, then 100%", canary_steps(steps))
        }
        Strategy::Linear { .. } => {
            format!("linear canary of {set}: {}, then 100%", canary_steps(&strategy.traffic_steps()))
        }
    }
}

/// `20% for 2s, 60%`.
fn canary_steps(steps: &[launchway_manifest::CanaryStep]) -> String {
    let steps: Vec<String> = steps
        .iter()
        .map(|step| {
            let held = match step.pause.is_zero() {
                true => format!("{}%", step.weight),
                false => format!("{}% for {}", step.weight, format_duration(step.pause)),
            };
            match step.approval {
                true => format!("{held} until promoted"),
                false => held,
            }
        })
        .collect();
    steps.join(", ")
}

fn flatten_strategy(strategy: &Strategy, flat: &mut BTreeMap<String, String>) {
    let prefix = format!("strategy.{}", strategy.name());
    match strategy {
        Strategy::Rolling { max_surge, max_unavailable, .. } => {
            flat.insert(format!("{prefix}.max_surge"), max_surge.to_string());
            flat.insert(format!("{prefix}.max_unavailable"), max_unavailable.to_string());
        }
        Strategy::BlueGreen { bake, .. } => {
            flat.insert(format!("{prefix}.bake"), format_duration(*bake));
        }
        Strategy::Canary { steps, .. } => {
            flat.insert(format!("{prefix}.steps"), canary_steps(steps));
        }
        Strategy::Linear { step, pause, bake, .. } => {
            flat.insert(format!("{prefix}.step"), format!("{step}%"));
            flat.insert(format!("{prefix}.pause"), format_duration(*pause));
            flat.insert(format!("{prefix}.bake"), format_duration(*bake));
        }
    }
    flat.insert(format!("{prefix}.timeout"), format_duration(strategy.timeout()));
    for (index, gate) in strategy.gates().iter().enumerate() {
        let approval = if gate.approval { ", until promoted" } else { "" };
        flat.insert(
            format!("{prefix}.gates.{}", index + 1),
            format!(
                "at {} for {}{approval} (timeout {})",
                gate.at.as_str(),
                format_duration(gate.hold),
                format_duration(gate.timeout)
            ),
        );
    }
    let Some(analysis) = strategy.analysis() else { return };
    let prefix = format!("{prefix}.analysis");
    flat.insert(format!("{prefix}.interval"), format_duration(analysis.interval));
    flat.insert(format!("{prefix}.failure_limit"), analysis.failure_limit.to_string());
    if let Some(count) = analysis.count {
        flat.insert(format!("{prefix}.count"), count.to_string());
    }
    if !analysis.alarms.is_empty() {
        flat.insert(format!("{prefix}.alarms"), analysis.alarms.join(", "));
    }
    if let Some(cloudwatch) = &analysis.cloudwatch {
        let prefix = format!("{prefix}.cloudwatch");
        flat.insert(format!("{prefix}.namespace"), cloudwatch.namespace.clone());
        flat.insert(format!("{prefix}.metric"), cloudwatch.metric.clone());
        flat.insert(format!("{prefix}.statistic"), cloudwatch.statistic.clone());
        flat.insert(format!("{prefix}.period"), format_duration(cloudwatch.period));
        for (name, value) in &cloudwatch.dimensions {
            flat.insert(format!("{prefix}.dimensions.{name}"), value.clone());
        }
        for (name, bound) in [("max", cloudwatch.max), ("min", cloudwatch.min)] {
            if let Some(bound) = bound {
                flat.insert(format!("{prefix}.{name}"), bound.to_string());
            }
        }
    }
    if let Some(http) = &analysis.http {
        if let Some(url) = &http.url {
            flat.insert(format!("{prefix}.http.url"), url.clone());
        }
        if !http.path.is_empty() {
            flat.insert(format!("{prefix}.http.path"), http.path.clone());
        }
        let optional = [
            ("port", http.port.map(|port| port.to_string())),
            ("status", http.status.map(|status| status.to_string())),
            ("max_latency", http.max_latency.map(format_duration)),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                flat.insert(format!("{prefix}.http.{name}"), value);
            }
        }
    }
    if let Some(prometheus) = &analysis.prometheus {
        flat.insert(format!("{prefix}.prometheus.address"), prometheus.address.clone());
        flat.insert(format!("{prefix}.prometheus.query"), prometheus.query.clone());
        for (name, bound) in [("max", prometheus.max), ("min", prometheus.min)] {
            if let Some(bound) = bound {
                flat.insert(format!("{prefix}.prometheus.{name}"), bound.to_string());
            }
        }
    }
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
    flat.insert("health.interval".into(), format_duration(health.interval));
    flat.insert("health.start_interval".into(), format_duration(health.start_interval));
    flat.insert("health.timeout".into(), format_duration(health.timeout));
    flat.insert("health.start_period".into(), format_duration(health.start_period));
    flat.insert("health.healthy_threshold".into(), health.healthy_threshold.to_string());
    flat.insert("health.unhealthy_threshold".into(), health.unhealthy_threshold.to_string());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use launchway_manifest::ServiceSpec;

    use super::*;
    use crate::LiveReplica;

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
            ingress: None,
        })
    }

    fn live(spec: &AppSpec, running: u32, stopped: u32) -> LiveApp {
        let revision = spec.revision().0;
        LiveApp {
            definition: None,
            entry_point: None,
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

    fn plan(desired: &AppSpec, live: Option<&LiveApp>, deployed: Option<&AppSpec>) -> AppPlan {
        let revision = deployed.map(|spec| spec.revision().0);
        native_plan(PlanRequest {
            app: "web",
            env: "dev",
            desired,
            live,
            current: deployed.zip(revision.as_deref()).map(|(spec, revision)| Deployed { revision, spec }),
        })
    }

    #[test]
    fn nothing_running_is_a_create_listing_every_setting() {
        let desired = service("web:1", 3, &[]);
        let plan = plan(&desired, None, None);
        assert_eq!(plan.action, PlanAction::Create);
        assert_eq!(plan.summary, "start 3 replicas");
        assert!(plan.changes.iter().any(|c| c.to_string() == "+ containers.web.image: web:1"));
        assert!(plan.changes.iter().any(|c| c.to_string() == "+ strategy.rolling.timeout: 10m"), "as written");
        // What the manifest did not change from the defaults is folded; replicas: 3 is not.
        let written: Vec<&str> = plan.written_changes().map(|change| change.path.as_str()).collect();
        assert_eq!(written, ["containers.web.image", "containers.web.port", "replicas"]);
        assert_eq!(
            plan.defaults,
            [
                "settle_window",
                "stop_grace_period",
                "strategy.rolling.max_surge",
                "strategy.rolling.max_unavailable",
                "strategy.rolling.timeout"
            ]
        );
    }

    #[test]
    fn the_same_revision_fully_running_is_no_change() {
        let desired = service("web:1", 3, &[]);
        let plan = plan(&desired, Some(&live(&desired, 3, 0)), Some(&desired));
        assert!(plan.is_no_op());
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn an_image_and_env_change_is_an_update_showing_each_difference() {
        let running = service("web:1", 3, &[("LOG", "info"), ("OLD", "x")]);
        let desired = service("web:2", 3, &[("LOG", "debug"), ("NEW", "y")]);
        let plan = plan(&desired, Some(&live(&running, 3, 0)), Some(&running));
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
        let plan = plan(&desired, Some(&live(&running, 3, 0)), None);
        let lines: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["~ containers.web.image: web:1 → web:2"], "no health or strategy noise");
    }

    #[test]
    fn a_stopped_or_missing_replica_of_the_right_revision_is_converged() {
        let desired = service("web:1", 3, &[]);
        let plan = plan(&desired, Some(&live(&desired, 2, 1)), Some(&desired));
        assert_eq!(plan.action, PlanAction::Converge);
        assert_eq!(plan.summary, "start 1 missing replica, replace 1 stopped replica");
        assert_eq!(plan.changes.iter().map(ToString::to_string).collect::<Vec<_>>(), ["~ replicas: 2 → 3"]);
    }

    /// Every leaf of a spec, as a path into its JSON and the value it would take were it
    /// changed (numbers doubled, strings longer, booleans flipped).
    fn mutations(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    path.push(key.clone());
                    mutations(value, path, out);
                    path.pop();
                }
            }
            serde_json::Value::Array(items) => {
                for (index, value) in items.iter().enumerate() {
                    path.push(index.to_string());
                    mutations(value, path, out);
                    path.pop();
                }
            }
            serde_json::Value::Number(number) => {
                let changed = match number.as_u64() {
                    Some(n) => serde_json::json!(if n == 0 { 1 } else { n * 2 }),
                    None => serde_json::json!(number.as_f64().unwrap_or(0.0) + 1.5),
                };
                out.push((path.clone(), changed));
            }
            serde_json::Value::String(text) => out.push((path.clone(), serde_json::json!(format!("{text}x")))),
            serde_json::Value::Bool(flag) => out.push((path.clone(), serde_json::json!(!flag))),
            serde_json::Value::Null => {}
        }
    }

    /// Issue 21, item 5: changing `settle_window` planned "rolling update…" with no line
    /// saying what changed. The rule: whatever setting of a spec differs is listed. Each
    /// leaf of specs that set every field is changed in turn, and the plan must list a
    /// change (a leaf that cannot change alone, an enum's tag, is skipped).
    #[test]
    fn a_plan_lists_every_setting_that_differs() {
        let analysis = serde_json::json!({
            "interval": 2000, "failure_limit": 2, "count": 3,
            "http": {"path": "/ok", "url": "http://127.0.0.1:1/", "port": 81, "status": 204, "max_latency": 300},
            "prometheus": {"address": "http://127.0.0.1:9090", "query": "up", "max": 1.5, "min": 0.5},
            "cloudwatch": {"namespace": "AWS/ELB", "metric": "5xx", "dimensions": {"lb": "a"}, "statistic": "Sum",
                           "period": 60000, "max": 2.0, "min": 1.0},
            "alarms": ["high-latency"],
        });
        let gates = serde_json::json!([{"at": "post_scale_up", "hold": 60000, "approval": true, "timeout": 600000}]);
        let strategies = [
            serde_json::json!({"type": "rolling", "max_surge": 2, "max_unavailable": 1, "timeout": 600000}),
            serde_json::json!({"type": "blue_green", "bake": 30000, "timeout": 600000, "analysis": analysis, "gates": gates}),
            serde_json::json!({"type": "canary", "steps": [{"weight": 20, "pause": 5000, "approval": true}],
                               "timeout": 600000, "analysis": analysis, "gates": gates}),
            serde_json::json!({"type": "linear", "step": 25, "pause": 5000, "bake": 10000, "timeout": 600000,
                               "analysis": analysis, "gates": gates}),
        ];
        let container = serde_json::json!({
            "name": "web", "image": "example/web:1", "command": ["serve"], "entrypoint": ["/app"],
            "env": {"LOG": "info"}, "port": 8080,
        });
        let mut specs: Vec<serde_json::Value> = strategies
            .iter()
            .map(|strategy| {
                serde_json::json!({
                    "kind": "service", "containers": [container], "replicas": 3,
                    "health": {"path": "/healthz", "port": 8080, "interval": 5000, "start_interval": 100,
                               "timeout": 2000, "start_period": 10000, "healthy_threshold": 1, "unhealthy_threshold": 3},
                    "strategy": strategy, "stop_grace_period": 10000, "settle_window": 8000,
                    "ingress": {"port": 80, "host": "shop.example.com", "path": "/", "tls": {"certificate": "/c.pem", "key": "/k.pem"}},
                })
            })
            .collect();
        specs.push(
            serde_json::json!({"kind": "task", "schedule": "0 3 * * *", "containers": [container], "timeout": 60000}),
        );
        specs.push(serde_json::json!({"kind": "task", "containers": [container], "timeout": 60000}));
        let mut checked = 0;
        for json in specs {
            let before: AppSpec = serde_json::from_value(json.clone()).expect("a spec");
            let mut leaves = Vec::new();
            mutations(&json, &mut Vec::new(), &mut leaves);
            for (path, changed) in leaves {
                let mut mutated = json.clone();
                let mut slot = &mut mutated;
                for key in &path {
                    slot = match slot {
                        serde_json::Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
                        other => &mut other[key.as_str()],
                    };
                }
                *slot = changed;
                let Ok(after) = serde_json::from_value::<AppSpec>(mutated) else { continue };
                if after == before {
                    continue;
                }
                let running = live(&before, 3, 0);
                let plan = plan(&after, Some(&running), Some(&before));
                assert!(!plan.changes.is_empty(), "changing {} is not in the plan: {plan:?}", path.join("."));
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} settings were changed");
    }

    /// Issue 21, item 13: a Docker task run on deploy was planned as "record the task
    /// definition for its scheduled runs".
    #[test]
    fn a_task_run_on_deploy_is_planned_as_running_once() {
        let task: AppSpec = serde_json::from_value(serde_json::json!({
            "kind": "task", "containers": [{"name": "migrate", "image": "example/app:1"}],
        }))
        .unwrap();
        assert_eq!(
            plan(&task, None, None).summary,
            "run the task once, as its deploy (run: on_deploy); exit 0 deploys it"
        );
        let scheduled: AppSpec = serde_json::from_value(serde_json::json!({
            "kind": "task", "schedule": "0 3 * * *", "containers": [{"name": "report", "image": "example/app:1"}],
        }))
        .unwrap();
        assert_eq!(plan(&scheduled, None, None).summary, "record the task definition for its scheduled runs");
    }

    /// Issue 22, item 5: a killed proxy left `deploy` saying "nothing to deploy" and
    /// `status` "healthy, in sync". An entry point that does not answer is drift.
    #[test]
    fn an_entry_point_that_does_not_answer_is_converged() {
        let mut desired = service("web:1", 2, &[]);
        if let AppSpec::Service(service) = &mut desired {
            service.ingress = Some(launchway_manifest::Ingress { port: 80, host: None, path: None, tls: None });
        }
        let mut running = live(&desired, 2, 0);
        running.entry_point = Some(crate::EntryPoint { answering: true, what: "the proxy".into() });
        assert!(plan(&desired, Some(&running), Some(&desired)).is_no_op());
        running.entry_point = Some(crate::EntryPoint { answering: false, what: "the proxy".into() });
        let plan = plan(&desired, Some(&running), Some(&desired));
        assert_eq!(plan.action, PlanAction::Converge);
        assert_eq!(plan.summary, "restore the entry point: the proxy does not answer");
    }
}
