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
            if only_desired_running && running == service.replicas && stopped == 0 && restarted == 0 {
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
                (PlanAction::Converge, converge_summary(&counts, running_by_revision.len()))
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
                summary: "record the new task definition for its next scheduled run".to_owned(),
                ..AppPlan::new(app, env, "task", PlanAction::Update, to_revision)
            },
            None => AppPlan {
                changes: additions(desired),
                summary: "record the task definition for its scheduled runs".to_owned(),
                ..AppPlan::new(app, env, "task", PlanAction::Create, to_revision)
            },
        },
        AppSpec::EcsService(_) | AppSpec::EcsTask(_) => AppPlan {
            summary: "an ECS service or task: this target does not run it".to_owned(),
            ..AppPlan::new(app, env, "service", PlanAction::Create, to_revision)
        },
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
            if let Some(ingress) = &service.ingress {
                flat.insert("ingress.port".into(), ingress.port.to_string());
                if let Some(host) = &ingress.host {
                    flat.insert("ingress.host".into(), host.clone());
                }
                if let Some(path) = &ingress.path {
                    flat.insert("ingress.path".into(), path.clone());
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
    let Some(analysis) = strategy.analysis() else { return };
    let prefix = format!("{prefix}.analysis");
    flat.insert(format!("{prefix}.interval"), format_duration(analysis.interval));
    flat.insert(format!("{prefix}.failure_limit"), analysis.failure_limit.to_string());
    if let Some(count) = analysis.count {
        flat.insert(format!("{prefix}.count"), count.to_string());
    }
    if let Some(http) = &analysis.http {
        if let Some(url) = &http.url {
            flat.insert(format!("{prefix}.http.url"), url.clone());
        } else {
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
}
