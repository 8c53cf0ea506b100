//! The manifest schema: reads one file's tree into drafts, reporting every problem.
//!
//! A draft is what one file says before cross-file checks (duplicate app names,
//! references to environments declared in `launchway.yaml`) and before defaults that
//! depend on the environment (replicas, and so rolling percentages) are resolved.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{
    ApprovalPolicy, CircuitBreaker, ContainerSpec, DEFAULT_ROLLING_MAX_SURGE, DEFAULT_ROLLING_MAX_UNAVAILABLE,
    DEFAULT_ROLLING_TIMEOUT, DEFAULT_STOP_GRACE_PERIOD, EcsTarget, EnvSource, ForgeStatuses, Ingress, Notification,
    NotificationSink, NotifyOn, Schedule, SlackApp, TargetSpec,
};
use crate::node::{Node, Pos, Value};
use crate::reader::{Key, Reader};
use crate::{image, schedule};

pub(crate) const MAX_REPLICAS: i64 = 1000;

/// What one file declares.
#[derive(Default)]
pub(crate) struct FileDraft {
    /// Every environment name written, valid or not: references to an environment
    /// that has its own error must not cause a second one.
    pub environment_names: Vec<String>,
    /// The target each environment was meant to have, even when its settings or name
    /// are wrong: its apps are still checked against that kind of target.
    pub attempted_targets: Vec<(String, TargetSpec)>,
    /// Each `promote_from` written as text, even where the environment has other
    /// errors: a bad reference is reported in the same pass as those.
    pub attempted_promotions: Vec<AttemptedPromotion>,
    pub environments: Vec<(Key, EnvironmentDraft)>,
    pub notifications: Vec<(Pos, NotificationDraft)>,
    pub services: Vec<(Key, ServiceDraft)>,
    pub tasks: Vec<(Key, TaskDraft)>,
}

pub(crate) struct AttemptedPromotion {
    /// The environment that promotes, and where it is declared.
    pub env: Key,
    pub from: String,
    /// Where `promote_from` is written.
    pub pos: Pos,
}

pub(crate) struct EnvironmentDraft {
    pub target: TargetSpec,
    pub source: EnvSource,
    pub approval: Option<ApprovalPolicy>,
}

pub(crate) struct NotificationDraft {
    pub notification: Notification,
    /// Where `environments:` is written, to report names that are not declared.
    pub environments_pos: Option<Pos>,
}

pub(crate) struct ServiceDraft {
    /// `None` when the app names no image: fine for an ECS service deploying a task
    /// definition file as it is, an error elsewhere.
    pub containers: Option<Vec<ContainerSpec>>,
    /// The containers had errors (reported): nothing more is said about them.
    pub containers_failed: bool,
    /// `None` when not written: Docker defaults to 1, ECS keeps the live count.
    pub replicas: Option<u32>,
    pub health: Option<HealthDraft>,
    pub strategy: RollingDraft,
    /// Whether a rolling `strategy` was written and read (ECS keeps its live settings otherwise).
    pub strategy_written: bool,
    /// `blue_green`, `canary` or `linear`, in place of `strategy` (which then holds the defaults).
    pub progressive: Option<(Pos, crate::model::Strategy)>,
    /// Whether a blue/green's `bake` was written (on ECS, one not written is ECS's own).
    pub bake_written: bool,
    /// Whether `ingress` was written (read or not: one with errors was reported).
    pub ingress_written: bool,
    pub stop_grace_period: Duration,
    /// How long new replicas must stay healthy before a release counts as verified.
    pub settle_window: Option<Duration>,
    /// With where it is written: only Docker services have one.
    pub ingress: Option<(Pos, Ingress)>,
    pub placement: Placement,
    pub ecs: Option<EcsDraft>,
    pub images_from: Option<(Pos, String)>,
    pub build: Option<(Pos, crate::build::AppBuild)>,
}

/// Where an app runs and what changes per environment: `environments: [stg, prod]`
/// (absent: every declared environment) and `overrides: {prod: {replicas: 3}}`.
/// Two keys, so that changing a setting for one environment can never also decide,
/// silently, where the app runs.
#[derive(Default)]
pub(crate) struct Placement {
    /// The environments listed, with where each is written; `None`: every environment.
    pub runs_in: Option<Vec<Key>>,
    /// Where `environments:` is written, for problems about the list as a whole.
    pub runs_in_pos: Option<Pos>,
    pub overrides: Vec<(Key, OverrideDraft)>,
    /// The apps it deploys after (`depends_on:`), each where it is written.
    pub depends_on: Vec<Key>,
}

pub(crate) struct TaskDraft {
    pub containers: Option<Vec<ContainerSpec>>,
    pub containers_failed: bool,
    /// Required on Docker (unless `run: on_deploy`); on ECS the rule or schedule keeps
    /// its own expression.
    pub schedule: Option<Schedule>,
    /// `run: on_deploy`: run once each time a change to it deploys (`Some(false)`: a
    /// `run:` that was refused).
    pub on_deploy: Option<bool>,
    pub timeout: Option<Duration>,
    pub placement: Placement,
    pub ecs: Option<EcsDraft>,
    pub images_from: Option<(Pos, String)>,
    pub build: Option<(Pos, crate::build::AppBuild)>,
}

/// An app's `ecs:` block: how it maps onto ECS in environments whose target is ECS.
#[derive(Default)]
pub(crate) struct EcsDraft {
    pub pos: Pos,
    pub service: Option<String>,
    pub cluster: Option<String>,
    pub task_definition: Option<(Pos, String)>,
    pub circuit_breaker: Option<crate::model::CircuitBreaker>,
    /// How long ECS ignores failing load balancer health checks of a new task.
    pub health_check_grace_period: Option<Duration>,
    pub alarms: Option<crate::model::EcsAlarms>,
    pub load_balancer: Option<crate::model::EcsLoadBalancer>,
    pub rule: Option<String>,
    pub schedule: Option<String>,
    pub schedule_group: Option<String>,
    /// How a task run on deploy is started (RunTask's launch type and awsvpc network).
    pub launch_type: Option<String>,
    pub network: Option<crate::model::EcsNetwork>,
}

pub(crate) struct HealthDraft {
    pub pos: Pos,
    pub path: String,
    pub port: Option<u16>,
    pub interval: Duration,
    pub start_interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A strategy as read: rolling (resolved per environment, as its percentages depend on
/// the replicas), or progressive (whole already), with where it is written.
pub(crate) enum StrategyDraft {
    Rolling(RollingDraft),
    Progressive(Pos, crate::model::Strategy),
}

#[derive(Clone, Copy)]
pub(crate) struct RollingDraft {
    pub pos: Pos,
    pub max_surge: Amount,
    pub max_unavailable: Amount,
    pub timeout: Duration,
}

/// A replica count, or a percentage of the desired replicas.
#[derive(Clone, Copy)]
pub(crate) enum Amount {
    Count(u32),
    Percent(u32),
}

/// What an app changes in one environment.
#[derive(Default)]
pub(crate) struct OverrideDraft {
    pub replicas: Option<u32>,
    /// Image per container name; `image:` is stored under the only container's name.
    pub images: Vec<(Pos, String, String)>,
    pub env: BTreeMap<String, String>,
    pub schedule: Option<Schedule>,
    pub settle_window: Option<Duration>,
}

const ROOT_FIELDS: &[&str] = &["version", "environments", "notifications", "services", "tasks"];
const APPS_FILE_FIELDS: &[&str] = &["services", "tasks"];
const ENVIRONMENT_FIELDS: &[&str] = &["target", "branch", "tags", "promote_from", "approval"];
const APPROVAL_FIELDS: &[&str] = &["required", "forbid_author", "expires"];
const NOTIFICATION_FIELDS: &[&str] = &["slack", "discord", "webhook", "github", "gitlab", "events", "environments"];
const FORGE_FIELDS: &[&str] = &["repo", "token", "api_url"];
const SLACK_APP_FIELDS: &[&str] = &["token", "channel", "api_url"];
const TARGET_KINDS: &[&str] = &["docker", "ecs"];
const DOCKER_TARGET_FIELDS: &[&str] = &["host"];
const ECS_TARGET_FIELDS: &[&str] = &["region", "cluster", "role_arn", "external_id", "profile", "endpoint_url"];
const ECS_SERVICE_FIELDS: &[&str] = &[
    "service",
    "cluster",
    "task_definition",
    "circuit_breaker",
    "health_check_grace_period",
    "alarms",
    "load_balancer",
];
const ALARMS_FIELDS: &[&str] = &["names", "rollback"];
const LOAD_BALANCER_FIELDS: &[&str] =
    &["target_group", "alternate_target_group", "production_listener_rule", "test_listener_rule", "role"];
const ECS_TASK_FIELDS: &[&str] =
    &["rule", "schedule", "schedule_group", "task_definition", "cluster", "launch_type", "network"];
const NETWORK_FIELDS: &[&str] = &["subnets", "security_groups", "public_ip"];
const LAUNCH_TYPES: &[&str] = &["FARGATE", "EC2", "EXTERNAL"];
const CIRCUIT_BREAKER_FIELDS: &[&str] = &["rollback"];
const CONTAINER_FIELDS: &[&str] = &["image", "command", "entrypoint", "env", "port"];
const SERVICE_FIELDS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "env",
    "port",
    "containers",
    "replicas",
    "health",
    "strategy",
    "stop_grace_period",
    "settle_window",
    "ingress",
    "environments",
    "overrides",
    "ecs",
    "images_from",
    "depends_on",
    "build",
];
const INGRESS_FIELDS: &[&str] = &["port", "host", "path", "tls"];
const INGRESS_TLS_FIELDS: &[&str] = &["certificate", "key"];
const TASK_FIELDS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "env",
    "containers",
    "schedule",
    "run",
    "timeout",
    "environments",
    "overrides",
    "ecs",
    "images_from",
    "depends_on",
    "build",
];
const HEALTH_FIELDS: &[&str] = &[
    "path",
    "port",
    "interval",
    "start_interval",
    "timeout",
    "start_period",
    "healthy_threshold",
    "unhealthy_threshold",
];
const STRATEGY_KINDS: &[&str] = &["rolling", "blue_green", "canary", "linear"];
const ROLLING_FIELDS: &[&str] = &["max_surge", "max_unavailable", "timeout"];
const SERVICE_OVERRIDE_FIELDS: &[&str] = &["replicas", "image", "images", "env", "settle_window"];
const TASK_OVERRIDE_FIELDS: &[&str] = &["image", "images", "env", "schedule"];

/// Reads `launchway.yaml` (`is_root`) or a file under `apps/`.
pub(crate) fn read_file(reader: &mut Reader<'_>, root: &Node, is_root: bool) -> FileDraft {
    let mut draft = FileDraft::default();
    let known = if is_root { ROOT_FIELDS } else { APPS_FILE_FIELDS };
    if !is_root && let Value::Map(pairs) = &root.value {
        for (key, _) in pairs {
            if matches!(&key.value, Value::Str(name) if name == "environments") {
                reader.error(key.pos, "", "environments may only be declared in launchway.yaml");
            }
        }
    }
    let Some(fields) = reader.fields(root, "", known) else {
        return draft;
    };
    if let Some(version) = fields.get("version") {
        reader.integer(version, "version", 1, 1);
    }
    if let Some(environments) = fields.get("environments") {
        for entry in reader.named_entries(environments, "environments") {
            let path = format!("environments.{}", entry.key.name);
            draft.environment_names.push(entry.key.name.clone());
            if let Some(target) = attempted_target(entry.value) {
                draft.attempted_targets.push((entry.key.name.clone(), target));
            }
            if let Some((from, pos)) = attempted_promotion(entry.value) {
                draft.attempted_promotions.push(AttemptedPromotion { env: entry.key.clone(), from, pos });
            }
            if check_name(reader, &entry.key, "environments")
                && let Some(environment) = read_environment(reader, entry.value, &path, entry.key.pos)
            {
                draft.environments.push((entry.key, environment));
            }
        }
    }
    if let Some(notifications) = fields.get("notifications") {
        match &notifications.value {
            Value::Seq(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Some(notification) = read_notification(reader, item, &format!("notifications[{index}]")) {
                        draft.notifications.push((item.pos, notification));
                    }
                }
            }
            Value::Null => {}
            _ => reader.error(notifications.pos, "notifications", "expected a list of destinations"),
        }
    }
    if let Some(services) = fields.get("services") {
        for entry in reader.named_entries(services, "services") {
            let path = format!("services.{}", entry.key.name);
            let name_ok = check_name(reader, &entry.key, "services");
            if let Some(service) = read_service(reader, entry.value, &path, &entry.key)
                && name_ok
            {
                draft.services.push((entry.key, service));
            }
        }
    }
    if let Some(tasks) = fields.get("tasks") {
        for entry in reader.named_entries(tasks, "tasks") {
            let path = format!("tasks.{}", entry.key.name);
            let name_ok = check_name(reader, &entry.key, "tasks");
            if let Some(task) = read_task(reader, entry.value, &path, &entry.key)
                && name_ok
            {
                draft.tasks.push((entry.key, task));
            }
        }
    }
    draft
}

/// App, environment and container names become parts of container names, DNS aliases
/// and (on ECS) resource names, so they are held to DNS-label rules.
fn check_name(reader: &mut Reader<'_>, key: &Key, path: &str) -> bool {
    let name = &key.name;
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        reader.error(
            key.pos,
            path,
            format!(
                "invalid name {name:?}: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
            ),
        );
    }
    valid
}

fn read_environment(reader: &mut Reader<'_>, node: &Node, path: &str, key: Pos) -> Option<EnvironmentDraft> {
    let fields = reader.fields(node, path, ENVIRONMENT_FIELDS)?.owned_by(key);
    let target = match fields.get("target") {
        Some(target) => read_target(reader, target, &format!("{path}.target")),
        None => {
            reader.error(fields.pos(), path, "missing field \"target\" (for example `target: docker`)");
            None
        }
    };
    let mut ok = true;
    let mut text = |name: &str| -> Option<String> {
        let node = fields.get(name)?;
        let value = reader.string(node, &format!("{path}.{name}"));
        ok &= value.is_some();
        value
    };
    let branch = text("branch");
    let tags = text("tags");
    let promote_from = text("promote_from");
    let written: Vec<&str> = ["branch", "tags", "promote_from"].into_iter().filter(|name| fields.has(name)).collect();
    if written.len() > 1 {
        let pos = fields.key_pos(written[1]).unwrap_or(fields.pos());
        reader.error(pos, path, format!("an environment has one source: {} cannot be combined", written.join(" and ")));
        ok = false;
    }
    if let (Some(pattern), Some(node)) = (&tags, fields.get("tags"))
        && pattern != "semver"
        && (pattern.is_empty()
            || !pattern.chars().all(|c| c.is_ascii_alphanumeric() || "._-/*?[]!".contains(c))
            || glob::Pattern::new(pattern).is_err())
    {
        reader.error(
            node.pos,
            &format!("{path}.tags"),
            format!("{pattern:?} is not a tag pattern: use semver, or a glob like release-*"),
        );
        ok = false;
    }
    let source = match (branch, tags, promote_from.clone()) {
        (Some(name), _, _) => EnvSource::Branch { name },
        (_, Some(pattern), _) => EnvSource::Tags { pattern },
        (_, _, Some(from)) => EnvSource::Promotion { from },
        _ => EnvSource::DefaultBranch,
    };
    let approval = match fields.get("approval") {
        Some(node) => read_approval(reader, node, &format!("{path}.approval")),
        None => Some(None),
    };
    let target = target?;
    let approval = approval?;
    ok.then_some(EnvironmentDraft { target, source, approval })
}

/// `approval: true`, or `approval: {required, forbid_author, expires}`. The author may
/// not approve their own release unless the environment says so.
fn read_approval(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Option<ApprovalPolicy>> {
    if let Value::Bool(required) = node.value {
        return Some(required.then_some(ApprovalPolicy { forbid_author: true, expires: None }));
    }
    let fields = reader.fields(node, path, APPROVAL_FIELDS)?;
    let flag = |reader: &mut Reader<'_>, name: &str, default: bool| -> Option<bool> {
        match fields.get(name) {
            Some(node) => match node.value {
                Value::Bool(value) => Some(value),
                _ => {
                    reader.error(node.pos, &format!("{path}.{name}"), "expected true or false");
                    None
                }
            },
            None => Some(default),
        }
    };
    let required = flag(reader, "required", true);
    let forbid_author = flag(reader, "forbid_author", true);
    let expires = match fields.get("expires") {
        Some(node) => reader.duration(node, &format!("{path}.expires")).map(Some),
        None => Some(None),
    };
    let (required, forbid_author, expires) = (required?, forbid_author?, expires?);
    Some(required.then_some(ApprovalPolicy { forbid_author, expires }))
}

fn read_notification(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<NotificationDraft> {
    let fields = reader.fields(node, path, NOTIFICATION_FIELDS)?;
    let url = |reader: &mut Reader<'_>, name: &str| -> Option<String> {
        let node = fields.get(name)?;
        let url = reader.string(node, &format!("{path}.{name}"))?;
        let valid = url.starts_with("https://")
            || url.starts_with("http://")
            || url.starts_with("ssm:")
            || url.starts_with("env:");
        if !valid {
            reader.error(
                node.pos,
                &format!("{path}.{name}"),
                "expected an http(s) URL, or a reference to one: ssm:/parameter/name or env:VARIABLE",
            );
            return None;
        }
        Some(url)
    };
    let named: Vec<&str> =
        ["slack", "discord", "webhook", "github", "gitlab"].into_iter().filter(|name| fields.has(name)).collect();
    let sink = match named.as_slice() {
        // A mapping is a Slack app (a bot token), a text an incoming webhook.
        ["slack"] if matches!(fields.get("slack")?.value, Value::Map(_)) => {
            NotificationSink::SlackApp(read_slack_app(reader, fields.get("slack")?, path)?)
        }
        ["slack"] => NotificationSink::Slack { url: url(reader, "slack")? },
        ["discord"] => NotificationSink::Discord { url: url(reader, "discord")? },
        ["webhook"] => NotificationSink::Webhook { url: url(reader, "webhook")? },
        ["github"] => NotificationSink::GitHub(read_forge(reader, fields.get("github")?, path, "github")?),
        ["gitlab"] => NotificationSink::GitLab(read_forge(reader, fields.get("gitlab")?, path, "gitlab")?),
        _ => {
            reader.error(
                fields.pos(),
                path,
                "name one destination: slack (an incoming webhook, or an app: {token, channel}), discord (a channel webhook), webhook, or github / gitlab (commit statuses)",
            );
            return None;
        }
    };
    let mut events = Vec::new();
    if let Some(node) = fields.get("events") {
        for name in reader.string_list(node, &format!("{path}.events"))? {
            match NotifyOn::ALL.into_iter().find(|event| event.as_str() == name) {
                Some(event) => events.push(event),
                None => {
                    let known: Vec<&str> = NotifyOn::ALL.iter().map(|event| event.as_str()).collect();
                    unknown_kind(reader, node.pos, &format!("{path}.events"), "event", &name, &known);
                    return None;
                }
            }
        }
    }
    let environments = match fields.get("environments") {
        Some(node) => reader.string_list(node, &format!("{path}.environments"))?,
        None => Vec::new(),
    };
    Some(NotificationDraft {
        notification: Notification { sink, events, environments },
        environments_pos: fields.get("environments").map(|node| node.pos),
    })
}

/// `slack: {token: env:SLACK_BOT_TOKEN, channel: C0123ABCD}`, with an optional `api_url`.
fn read_slack_app(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<SlackApp> {
    let path = format!("{path}.slack");
    let (mut text, api_url) =
        read_api_destination(reader, node, &path, SLACK_APP_FIELDS, ["token", "channel"], "https://slack.com/api")?;
    Some(SlackApp { token: text.remove("token")?, channel: text.remove("channel")?, api_url })
}

/// `github: {repo: owner/name, token: env:GITHUB_TOKEN}` (or gitlab's).
fn read_forge(reader: &mut Reader<'_>, node: &Node, path: &str, forge: &str) -> Option<ForgeStatuses> {
    let path = format!("{path}.{forge}");
    let default_api = if forge == "github" { "https://api.github.com" } else { "https://gitlab.com/api/v4" };
    let (mut text, api_url) = read_api_destination(reader, node, &path, FORGE_FIELDS, ["repo", "token"], default_api)?;
    Some(ForgeStatuses { repo: text.remove("repo")?, token: text.remove("token")?, api_url })
}

/// A destination reached through an API with a token: its `required` text fields (a
/// `token` among them must be a reference to a secret, never the secret) and its
/// `api_url` (else `default_api`), every problem reported.
fn read_api_destination<const N: usize>(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    known: &[&'static str],
    required: [&str; N],
    default_api: &str,
) -> Option<(BTreeMap<String, String>, String)> {
    let fields = reader.fields(node, path, known)?;
    let mut text = BTreeMap::new();
    let mut ok = true;
    for name in required {
        match fields.get(name).map(|node| reader.string(node, &format!("{path}.{name}"))) {
            Some(Some(value)) => {
                text.insert(name.to_owned(), value);
            }
            Some(None) => ok = false,
            None => {
                reader.error(fields.pos(), path, format!("missing field {name:?}"));
                ok = false;
            }
        }
    }
    if let (Some(token), Some(node)) = (text.get("token"), fields.get("token"))
        && !(token.starts_with("env:") || token.starts_with("ssm:"))
    {
        reader.error(
            node.pos,
            &format!("{path}.token"),
            "a token is a secret: write a reference to it, env:VARIABLE or ssm:/parameter/name",
        );
        return None;
    }
    let api_url = match fields.get("api_url") {
        Some(node) => {
            let url = reader.string(node, &format!("{path}.api_url"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                reader.error(node.pos, &format!("{path}.api_url"), "expected an http(s) URL");
                return None;
            }
            url
        }
        None => default_api.to_owned(),
    };
    ok.then_some((text, api_url))
}

fn read_target(reader: &mut Reader<'_>, target: &Node, path: &str) -> Option<TargetSpec> {
    let path = path.to_owned();
    // `target: docker` is short for `target: {docker: {}}`; likewise `target: ecs`.
    if let Value::Str(kind) = &target.value {
        return match kind.as_str() {
            "docker" => Some(TargetSpec::Docker { host: None }),
            "ecs" => Some(TargetSpec::Ecs(EcsTarget::default())),
            other => {
                unknown_kind(reader, target.pos, &path, "target kind", other, TARGET_KINDS);
                None
            }
        };
    }
    let kinds = reader.fields(target, &path, TARGET_KINDS)?;
    match (kinds.get("docker"), kinds.get("ecs")) {
        (Some(docker), None) => read_docker_target(reader, docker, &format!("{path}.docker")),
        (None, Some(ecs)) => read_ecs_target(reader, ecs, &format!("{path}.ecs")),
        (Some(_), Some(_)) => {
            reader.error(target.pos, &path, "an environment has one target: docker or ecs, not both");
            None
        }
        (None, None) => {
            // An unknown kind was reported already; an empty mapping was not.
            if is_empty(target) {
                reader.error(target.pos, &path, format!("expected a target kind: {}", TARGET_KINDS.join(", ")));
            }
            None
        }
    }
}

fn read_docker_target(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<TargetSpec> {
    let settings = reader.fields(node, path, DOCKER_TARGET_FIELDS)?;
    let host = match settings.get("host") {
        Some(node) => {
            let host = reader.string(node, &format!("{path}.host"))?;
            if !["unix://", "tcp://", "http://", "https://"].iter().any(|scheme| host.starts_with(scheme)) {
                reader.error(
                    node.pos,
                    &format!("{path}.host"),
                    format!("{host:?} is not a Docker host; expected unix:///path/to/docker.sock or tcp://host:port"),
                );
                return None;
            }
            Some(host)
        }
        None => None,
    };
    Some(TargetSpec::Docker { host })
}

fn read_ecs_target(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<TargetSpec> {
    let settings = reader.fields(node, path, ECS_TARGET_FIELDS)?;
    let mut ok = true;
    let mut text = |name: &str| -> Option<String> {
        let node = settings.get(name)?;
        let value = reader.string(node, &format!("{path}.{name}"));
        ok &= value.is_some();
        value
    };
    let target = EcsTarget {
        region: text("region"),
        cluster: text("cluster"),
        role_arn: text("role_arn"),
        external_id: text("external_id"),
        profile: text("profile"),
        endpoint_url: text("endpoint_url"),
    };
    if let (Some(role), Some(node)) = (&target.role_arn, settings.get("role_arn"))
        && !(role.starts_with("arn:") && role.contains(":role/"))
    {
        reader.error(
            node.pos,
            &format!("{path}.role_arn"),
            format!("{role:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
        );
        ok = false;
    }
    if let (Some(url), Some(node)) = (&target.endpoint_url, settings.get("endpoint_url"))
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        reader.error(node.pos, &format!("{path}.endpoint_url"), format!("{url:?} is not an http(s) URL"));
        ok = false;
    }
    ok.then_some(TargetSpec::Ecs(target))
}

/// What an environment's `promote_from:` names, when it is text, and where.
fn attempted_promotion(environment: &Node) -> Option<(String, Pos)> {
    let Value::Map(fields) = &environment.value else { return None };
    let (_, from) = fields.iter().find(|(key, _)| matches!(&key.value, Value::Str(name) if name == "promote_from"))?;
    match &from.value {
        Value::Str(name) => Some((name.clone(), from.pos)),
        _ => None,
    }
}

/// The kind of target an environment's `target:` names, with default settings.
fn attempted_target(environment: &Node) -> Option<TargetSpec> {
    let Value::Map(fields) = &environment.value else { return None };
    let (_, target) = fields.iter().find(|(key, _)| matches!(&key.value, Value::Str(name) if name == "target"))?;
    let kind = match &target.value {
        Value::Str(kind) => kind.as_str(),
        Value::Map(kinds) => match kinds.as_slice() {
            [(key, _)] => match &key.value {
                Value::Str(kind) => kind.as_str(),
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    };
    match kind {
        "docker" => Some(TargetSpec::Docker { host: None }),
        "ecs" => Some(TargetSpec::Ecs(EcsTarget::default())),
        _ => None,
    }
}

fn is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Map(pairs) => pairs.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

fn unknown_kind(reader: &mut Reader<'_>, pos: Pos, path: &str, what: &str, found: &str, known: &[&'static str]) {
    let mut message = format!("unknown {what} {found:?}");
    match crate::reader::closest(found, known) {
        Some(suggestion) => message.push_str(&format!(", did you mean {suggestion:?}?")),
        None => message.push_str(&format!(", expected {}", crate::reader::quoted_list(known))),
    }
    reader.error(pos, path, message);
}

/// Reads a service. A field with an error (reported) takes its default, so that the
/// rest of the app is still checked; the manifest is refused all the same.
fn read_service(reader: &mut Reader<'_>, node: &Node, path: &str, key: &Key) -> Option<ServiceDraft> {
    let fields = reader.fields(node, path, SERVICE_FIELDS)?.owned_by(key.pos);
    let containers = read_containers(reader, &fields, path, &key.name, true);
    let replicas = match fields.get("replicas") {
        Some(node) => reader.integer(node, &format!("{path}.replicas"), 0, MAX_REPLICAS).map(|n| n as u32),
        None => None,
    };
    let stop_grace_period = match fields.get("stop_grace_period") {
        Some(node) => reader.duration(node, &format!("{path}.stop_grace_period")),
        None => None,
    };
    let health = match fields.get("health") {
        Some(node) => read_health(reader, node, &format!("{path}.health"), fields.key_pos("health")),
        None => None,
    };
    let (strategy, progressive) =
        match fields.get("strategy").and_then(|node| read_strategy(reader, node, &format!("{path}.strategy"))) {
            Some(StrategyDraft::Rolling(rolling)) => (Some(rolling), None),
            Some(StrategyDraft::Progressive(pos, strategy)) => (None, Some((pos, strategy))),
            None => (None, None),
        };
    let settle_window = match fields.get("settle_window") {
        Some(node) => reader.duration(node, &format!("{path}.settle_window")),
        None => None,
    };
    let rolling_written = strategy.is_some();
    let bake_written = fields
        .get("strategy")
        .and_then(|strategy| entry(strategy, "blue_green"))
        .is_some_and(|blue_green| entry(blue_green, "bake").is_some());
    let ingress = match fields.get("ingress") {
        Some(node) => read_ingress(reader, node, &format!("{path}.ingress")).map(|ingress| (node.pos, ingress)),
        None => None,
    };
    let placement = read_placement(reader, &fields, path, SERVICE_OVERRIDE_FIELDS);
    let ecs = read_ecs_block(reader, &fields, path, ECS_SERVICE_FIELDS);
    let images_from = read_images_from(reader, &fields, path);
    let build = crate::build::read_build(reader, &fields, path);
    let primary = containers.as_ref().and_then(|containers| containers.as_ref()?.first());
    if let Some(health) = &health
        && health.port.is_none()
        && primary.is_none_or(|primary| primary.port.is_none())
        && containers.is_some()
    {
        let container = primary.map_or_else(|| key.name.clone(), |primary| primary.name.clone());
        reader.error(
            health.pos,
            &format!("{path}.health"),
            format!("the health check needs a port: set `port` on container {container:?} or on the health check"),
        );
    }
    if let Some((pos, _)) = &ingress
        && containers.is_some()
        && primary.is_none_or(|primary| primary.port.is_none())
    {
        let container = primary.map_or_else(|| key.name.clone(), |primary| primary.name.clone());
        reader.error(
            *pos,
            &format!("{path}.ingress"),
            format!("the entry point sends requests to a port: set `port` on container {container:?}"),
        );
    }
    Some(ServiceDraft {
        containers_failed: containers.is_none(),
        containers: containers.flatten(),
        replicas,
        health,
        strategy: strategy.unwrap_or_else(|| RollingDraft::default_at(fields.pos())),
        strategy_written: rolling_written,
        bake_written,
        ingress_written: fields.has("ingress"),
        progressive,
        stop_grace_period: stop_grace_period.unwrap_or(DEFAULT_STOP_GRACE_PERIOD),
        settle_window,
        ingress,
        placement,
        ecs: ecs.flatten(),
        images_from: images_from.flatten(),
        build: build.flatten(),
    })
}

fn read_task(reader: &mut Reader<'_>, node: &Node, path: &str, key: &Key) -> Option<TaskDraft> {
    let fields = reader.fields(node, path, TASK_FIELDS)?.owned_by(key.pos);
    let containers = read_containers(reader, &fields, path, &key.name, false);
    let schedule = fields.get("schedule").and_then(|node| read_schedule(reader, node, &format!("{path}.schedule")));
    // `Some(false)`: a `run:` with an error (reported), so no schedule is asked for either.
    let on_deploy = match fields.get("run") {
        Some(node) => match reader.string(node, &format!("{path}.run")).as_deref() {
            Some("on_deploy") if fields.has("schedule") => {
                reader.error(node.pos, &format!("{path}.run"), "a task runs on its schedule or on deploy, not both");
                Some(false)
            }
            Some("on_deploy") => Some(true),
            Some(other) => {
                unknown_kind(reader, node.pos, &format!("{path}.run"), "run", other, &["on_deploy"]);
                Some(false)
            }
            None => Some(false),
        },
        None => None,
    };
    let timeout = fields.get("timeout").and_then(|node| reader.duration(node, &format!("{path}.timeout")));
    let placement = read_placement(reader, &fields, path, TASK_OVERRIDE_FIELDS);
    let ecs = read_ecs_block(reader, &fields, path, ECS_TASK_FIELDS);
    let images_from = read_images_from(reader, &fields, path);
    let build = crate::build::read_build(reader, &fields, path);
    Some(TaskDraft {
        containers_failed: containers.is_none(),
        containers: containers.flatten(),
        // A schedule with an error (reported) is not also reported missing.
        schedule: schedule.or_else(|| fields.has("schedule").then(|| Schedule(String::new()))),
        on_deploy,
        timeout,
        placement,
        ecs: ecs.flatten(),
        images_from: images_from.flatten(),
        build: build.flatten(),
    })
}

/// The `ecs:` block of a service (`known` = its fields) or a task.
/// `network: {subnets: [subnet-1], security_groups: [sg-1], public_ip: false}`: where a
/// task run on deploy runs (awsvpc).
fn read_network(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<crate::model::EcsNetwork> {
    let fields = reader.fields(node, path, NETWORK_FIELDS)?;
    let subnets = match fields.get("subnets") {
        Some(node) => reader.string_list(node, &format!("{path}.subnets")),
        None => {
            reader.error(fields.pos(), path, "missing field \"subnets\" (the subnets the task may run in)");
            None
        }
    };
    let security_groups = match fields.get("security_groups") {
        Some(node) => reader.string_list(node, &format!("{path}.security_groups")),
        None => Some(Vec::new()),
    };
    let public_ip = match fields.get("public_ip") {
        Some(node) => reader.boolean(node, &format!("{path}.public_ip")),
        None => Some(false),
    };
    Some(crate::model::EcsNetwork { subnets: subnets?, security_groups: security_groups?, public_ip: public_ip? })
}

fn read_ecs_block(
    reader: &mut Reader<'_>,
    fields: &crate::reader::Fields<'_>,
    path: &str,
    known: &[&'static str],
) -> Option<Option<EcsDraft>> {
    let Some(node) = fields.get("ecs") else {
        return Some(None);
    };
    let path = format!("{path}.ecs");
    let block = reader.fields(node, &path, known)?.owned_by(fields.key_pos("ecs").unwrap_or(node.pos));
    let mut ok = true;
    let mut text = |name: &str| -> Option<String> {
        let node = block.get(name)?;
        let value = reader.string(node, &format!("{path}.{name}"));
        ok &= value.is_some();
        value
    };
    let mut draft = EcsDraft {
        pos: block.pos(),
        service: text("service"),
        cluster: text("cluster"),
        rule: text("rule"),
        schedule: text("schedule"),
        schedule_group: text("schedule_group"),
        ..EcsDraft::default()
    };
    if let Some(node) = block.get("health_check_grace_period") {
        draft.health_check_grace_period = reader.duration(node, &format!("{path}.health_check_grace_period"));
        ok &= draft.health_check_grace_period.is_some();
    }
    if let Some(node) = block.get("task_definition") {
        match reader.string(node, &format!("{path}.task_definition")) {
            Some(file) => match check_repo_path(&file) {
                Ok(()) => draft.task_definition = Some((node.pos, file)),
                Err(problem) => {
                    reader.error(node.pos, &format!("{path}.task_definition"), problem);
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    if let Some(node) = block.get("circuit_breaker") {
        let breaker_path = format!("{path}.circuit_breaker");
        // `circuit_breaker: true` turns it on and leaves ECS's own rollback as the
        // service has it; `{rollback: true}` or `{rollback: false}` says which.
        draft.circuit_breaker = match &node.value {
            Value::Bool(enable) => Some(CircuitBreaker { enable: *enable, rollback: None }),
            _ => reader.fields(node, &breaker_path, CIRCUIT_BREAKER_FIELDS).and_then(|breaker| {
                let rollback = match breaker.get("rollback") {
                    Some(node) => Some(reader.boolean(node, &format!("{breaker_path}.rollback"))?),
                    None => None,
                };
                Some(CircuitBreaker { enable: true, rollback })
            }),
        };
        ok &= draft.circuit_breaker.is_some();
    }
    if let Some(node) = block.get("alarms") {
        draft.alarms = read_alarms(reader, node, &format!("{path}.alarms"));
        ok &= draft.alarms.is_some();
    }
    if let Some(node) = block.get("load_balancer") {
        draft.load_balancer = read_load_balancer(reader, node, &format!("{path}.load_balancer"));
        ok &= draft.load_balancer.is_some();
    }
    if let Some(node) = block.get("launch_type") {
        let launch_type_path = format!("{path}.launch_type");
        draft.launch_type = match reader.string(node, &launch_type_path) {
            Some(kind) if LAUNCH_TYPES.contains(&kind.as_str()) => Some(kind),
            Some(other) => {
                unknown_kind(reader, node.pos, &launch_type_path, "launch type", &other, LAUNCH_TYPES);
                None
            }
            None => None,
        };
        ok &= draft.launch_type.is_some();
    }
    if let Some(node) = block.get("network") {
        draft.network = read_network(reader, node, &format!("{path}.network"));
        ok &= draft.network.is_some();
    }
    if draft.schedule_group.is_some() && draft.schedule.is_none() {
        reader.error(draft.pos, &path, "schedule_group needs schedule (the EventBridge Scheduler schedule's name)");
        ok = false;
    }
    ok.then_some(Some(draft))
}

/// The value under `key` in a mapping node.
fn entry<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    let Value::Map(entries) = &node.value else { return None };
    entries.iter().find(|(name, _)| matches!(&name.value, Value::Str(name) if name == key)).map(|(_, value)| value)
}

/// `alarms: {names: [..], rollback: true}`, or just the list of names (ECS rolls back).
fn read_alarms(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<crate::model::EcsAlarms> {
    if let Value::Seq(_) = &node.value {
        let names = reader.string_list(node, path)?;
        return Some(crate::model::EcsAlarms { names, rollback: true });
    }
    let fields = reader.fields(node, path, ALARMS_FIELDS)?;
    let names = match fields.get("names") {
        Some(node) => reader.string_list(node, &format!("{path}.names")),
        None => {
            reader.error(fields.pos(), path, "`names` is required: the CloudWatch alarms to watch");
            None
        }
    };
    let rollback = match fields.get("rollback") {
        Some(node) => reader.boolean(node, &format!("{path}.rollback")),
        None => Some(true),
    };
    match names? {
        names if names.is_empty() => {
            reader.error(fields.pos(), path, "name at least one alarm");
            None
        }
        names => Some(crate::model::EcsAlarms { names, rollback: rollback? }),
    }
}

fn read_load_balancer(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<crate::model::EcsLoadBalancer> {
    let fields = reader.fields(node, path, LOAD_BALANCER_FIELDS)?;
    let mut ok = true;
    let mut text = |name: &str, required: &str| -> Option<String> {
        match fields.get(name) {
            Some(node) => {
                let value = reader.string(node, &format!("{path}.{name}"));
                ok &= value.is_some();
                value
            }
            None if !required.is_empty() => {
                reader.error(fields.pos(), path, format!("`{name}` is required: {required}"));
                ok = false;
                None
            }
            None => None,
        }
    };
    let target_group = text("target_group", "");
    let alternate_target_group = text("alternate_target_group", "the ARN of the target group the new set starts in");
    let production_listener_rule =
        text("production_listener_rule", "the ARN of the listener rule that carries production traffic");
    let test_listener_rule = text("test_listener_rule", "");
    let role = text("role", "the ARN of the role ECS assumes to change the listener rules");
    if !ok {
        return None;
    }
    Some(crate::model::EcsLoadBalancer {
        target_group,
        alternate_target_group: alternate_target_group?,
        production_listener_rule: production_listener_rule?,
        test_listener_rule,
        role: role?,
    })
}

fn read_images_from(
    reader: &mut Reader<'_>,
    fields: &crate::reader::Fields<'_>,
    path: &str,
) -> Option<Option<(Pos, String)>> {
    let Some(node) = fields.get("images_from") else {
        return Some(None);
    };
    let file = reader.string(node, &format!("{path}.images_from"))?;
    match check_repo_path(&file) {
        Ok(()) => Some(Some((node.pos, file))),
        Err(problem) => {
            reader.error(node.pos, &format!("{path}.images_from"), problem);
            None
        }
    }
}

/// Files a manifest refers to must be inside the config repo.
fn check_repo_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == ".." || part.is_empty()) {
        return Err(format!("{path:?} must be a path inside the config repo, like ecs/web.json"));
    }
    Ok(())
}

fn read_schedule(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Schedule> {
    let expression = reader.string(node, path)?;
    match schedule::check(&expression) {
        Ok(()) => Some(Schedule(expression)),
        Err(problem) => {
            reader.error(node.pos, path, format!("invalid schedule {expression:?}: {problem}"));
            None
        }
    }
}

/// Either the single-container shorthand (`image`, `command`… on the app itself, the
/// container taking the app's name) or a `containers` mapping, the first being primary.
fn read_containers(
    reader: &mut Reader<'_>,
    fields: &crate::reader::Fields<'_>,
    path: &str,
    app_name: &str,
    ports_allowed: bool,
) -> Option<Option<Vec<ContainerSpec>>> {
    let shorthand_fields: Vec<&str> = CONTAINER_FIELDS.iter().copied().filter(|field| fields.has(field)).collect();
    // With `images_from`, the images come from that file, and with `build`, from the
    // build: a container may leave out `image` (the resolver checks that one is set).
    let image_optional = fields.has("images_from") || fields.has("build");
    match (fields.get("containers"), shorthand_fields.is_empty()) {
        (Some(containers), true) => {
            let mut specs = Vec::new();
            let mut ok = true;
            for entry in reader.named_entries(containers, &format!("{path}.containers")) {
                let container_path = format!("{path}.containers.{}", entry.key.name);
                let name_ok = check_name(reader, &entry.key, &format!("{path}.containers"));
                let container_fields = reader
                    .fields(entry.value, &container_path, CONTAINER_FIELDS)
                    .map(|fields| fields.owned_by(entry.key.pos));
                match container_fields.and_then(|f| {
                    read_container(reader, &f, &container_path, &entry.key.name, ports_allowed, image_optional)
                }) {
                    Some(spec) if name_ok => specs.push(spec),
                    _ => ok = false,
                }
            }
            if ok && specs.is_empty() {
                reader.error(containers.pos, &format!("{path}.containers"), "declare at least one container");
                return None;
            }
            ok.then_some(Some(specs))
        }
        (Some(containers), false) => {
            reader.error(
                fields.key_pos("containers").unwrap_or(containers.pos),
                path,
                format!(
                    "use either `containers` or the single-container fields ({}), not both",
                    shorthand_fields.join(", ")
                ),
            );
            None
        }
        (None, false) if fields.has("image") || image_optional => {
            read_container(reader, fields, path, app_name, ports_allowed, image_optional).map(|spec| Some(vec![spec]))
        }
        (None, true) => Some(None),
        (None, false) => {
            reader.error(fields.pos(), path, "missing field \"image\" (the other container fields need one)");
            // The other fields are still checked: every problem is reported in one pass.
            let _ = read_container(reader, fields, path, app_name, ports_allowed, true);
            None
        }
    }
}

fn read_container(
    reader: &mut Reader<'_>,
    fields: &crate::reader::Fields<'_>,
    path: &str,
    name: &str,
    ports_allowed: bool,
    image_optional: bool,
) -> Option<ContainerSpec> {
    let image = match fields.get("image") {
        Some(node) => read_image(reader, node, &format!("{path}.image")),
        // Left empty for `images_from` to set.
        None if image_optional => Some(String::new()),
        None => {
            reader.error(fields.pos(), path, "missing field \"image\"");
            None
        }
    };
    let command = match fields.get("command") {
        Some(node) => reader.string_list(node, &format!("{path}.command")).map(Some),
        None => Some(None),
    };
    let entrypoint = match fields.get("entrypoint") {
        Some(node) => reader.string_list(node, &format!("{path}.entrypoint")).map(Some),
        None => Some(None),
    };
    let env = match fields.get("env") {
        Some(node) => read_env(reader, node, &format!("{path}.env")),
        None => Some(BTreeMap::new()),
    };
    let port = match fields.get("port") {
        Some(node) if !ports_allowed => {
            reader.error(node.pos, path, "scheduled tasks do not take a port");
            None
        }
        Some(node) => reader.integer(node, &format!("{path}.port"), 1, 65535).map(|p| Some(p as u16)),
        None => Some(None),
    };
    Some(ContainerSpec {
        name: name.to_owned(),
        image: image?,
        command: command?,
        entrypoint: entrypoint?,
        env: env?,
        port: port?,
    })
}

fn read_image(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<String> {
    let reference = reader.string(node, path)?;
    match image::check(&reference) {
        Ok(()) => Some(reference),
        Err(problem) => {
            reader.error(node.pos, path, format!("invalid image reference {reference:?}: {problem}"));
            None
        }
    }
}

fn read_env(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let map = reader.string_map(node, path)?;
    let mut ok = true;
    for entry in reader.named_entries(node, path) {
        let name = &entry.key.name;
        let valid = !name.is_empty()
            && !name.contains('=')
            && !name.contains('\0')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            reader.error(entry.key.pos, path, format!("invalid environment variable name {name:?}"));
            ok = false;
        }
    }
    ok.then_some(map)
}

/// `ingress: {port: 80, host: shop.example, path: /api}`; `port` is required.
fn read_ingress(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Ingress> {
    let fields = reader.fields(node, path, INGRESS_FIELDS)?;
    let port = match fields.get("port") {
        Some(node) => reader.integer(node, &format!("{path}.port"), 1, 65535).map(|port| port as u16),
        None => {
            reader.error(node.pos, path, "`port` is required: the host port clients connect to".to_owned());
            None
        }
    };
    let host = fields.get("host").and_then(|node| reader.string(node, &format!("{path}.host")));
    let prefix = fields.get("path").and_then(|node| reader.url_path(node, &format!("{path}.path")));
    let tls = match fields.get("tls") {
        Some(node) => read_ingress_tls(reader, node, &format!("{path}.tls")).map(Some),
        None => Some(None),
    };
    Some(Ingress { port: port?, host, path: prefix, tls: tls? })
}

/// `tls: {certificate: /etc/…/fullchain.pem, key: /etc/…/privkey.pem}`: absolute paths on
/// the machine launchway runs on (never in the repo: a key does not belong in git).
fn read_ingress_tls(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<crate::model::IngressTls> {
    let fields = reader.fields(node, path, INGRESS_TLS_FIELDS)?;
    let mut file = |name: &str, what: &str| match fields.get(name) {
        Some(node) => {
            match reader.string(node, &format!("{path}.{name}")) {
                Some(file) if file.starts_with('/') => Some(file),
                Some(file) => {
                    reader.error(
                    node.pos,
                    &format!("{path}.{name}"),
                    format!("{file:?} is not an absolute path: give where the {what} is on the machine launchway runs on"),
                );
                    None
                }
                None => None,
            }
        }
        None => {
            reader.error(fields.pos(), path, format!("`{name}` is required: the {what}'s PEM file"));
            None
        }
    };
    let certificate = file("certificate", "certificate chain");
    let key = file("key", "private key");
    Some(crate::model::IngressTls { certificate: certificate?, key: key? })
}

fn read_health(reader: &mut Reader<'_>, node: &Node, path: &str, key: Option<Pos>) -> Option<HealthDraft> {
    let fields = reader.fields(node, path, HEALTH_FIELDS)?;
    let fields = fields.owned_by(key.unwrap_or(node.pos));
    let health_path = match fields.get("path") {
        Some(node) => reader.url_path(node, &format!("{path}.path")),
        None => {
            reader.error(fields.pos(), path, "missing field \"path\" (the HTTP path to probe, like \"/healthz\")");
            None
        }
    };
    let port = match fields.get("port") {
        Some(node) => reader.integer(node, &format!("{path}.port"), 1, 65535).map(|p| Some(p as u16)),
        None => Some(None),
    };
    let mut duration = |name: &str, default: Duration| -> Option<Duration> {
        let Some(node) = fields.get(name) else {
            return Some(default);
        };
        let field_path = format!("{path}.{name}");
        let value = reader.duration(node, &field_path)?;
        if value.is_zero() && name != "start_period" {
            reader.error(node.pos, &field_path, "must be greater than zero");
            return None;
        }
        Some(value)
    };
    let interval = duration("interval", Duration::from_secs(5));
    let start_interval = duration("start_interval", Duration::from_millis(100));
    let timeout = duration("timeout", Duration::from_secs(2));
    let start_period = duration("start_period", Duration::ZERO);
    let mut threshold = |name: &str, default: u32| -> Option<u32> {
        match fields.get(name) {
            Some(node) => reader.integer(node, &format!("{path}.{name}"), 1, 100).map(|n| n as u32),
            None => Some(default),
        }
    };
    let healthy_threshold = threshold("healthy_threshold", 1);
    let unhealthy_threshold = threshold("unhealthy_threshold", 3);
    Some(HealthDraft {
        pos: fields.pos(),
        path: health_path?,
        port: port?,
        interval: interval?,
        start_interval: start_interval?,
        timeout: timeout?,
        start_period: start_period?,
        healthy_threshold: healthy_threshold?,
        unhealthy_threshold: unhealthy_threshold?,
    })
}

impl RollingDraft {
    fn default_at(pos: Pos) -> RollingDraft {
        RollingDraft {
            pos,
            max_surge: Amount::Count(DEFAULT_ROLLING_MAX_SURGE),
            max_unavailable: Amount::Count(DEFAULT_ROLLING_MAX_UNAVAILABLE),
            timeout: DEFAULT_ROLLING_TIMEOUT,
        }
    }
}

/// `strategy: rolling`, `strategy: {rolling: {..}}`, `{blue_green: {..}}` or
/// `{canary: {..}}`; progressive ones are read whole by [`crate::progressive`].
fn read_strategy(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<StrategyDraft> {
    // `strategy: rolling` takes every default.
    if let Value::Str(kind) = &node.value {
        if kind == "rolling" {
            return Some(StrategyDraft::Rolling(RollingDraft::default_at(node.pos)));
        }
        if STRATEGY_KINDS.contains(&kind.as_str()) {
            reader.error(node.pos, path, format!("{kind} needs its settings: `strategy: {{{kind}: {{..}}}}`"));
        } else {
            unknown_kind(reader, node.pos, path, "strategy", kind, STRATEGY_KINDS);
        }
        return None;
    }
    let kinds = reader.fields(node, path, STRATEGY_KINDS)?;
    if kinds.get("rolling").is_some() as u8
        + kinds.get("blue_green").is_some() as u8
        + kinds.get("canary").is_some() as u8
        + kinds.get("linear").is_some() as u8
        > 1
    {
        reader.error(node.pos, path, "one strategy only: rolling, blue_green, canary or linear");
        return None;
    }
    if let Some(settings) = kinds.get("blue_green") {
        let strategy = crate::progressive::read_blue_green(reader, settings, &format!("{path}.blue_green"))?;
        return Some(StrategyDraft::Progressive(kinds.key_pos("blue_green").unwrap_or(settings.pos), strategy));
    }
    if let Some(settings) = kinds.get("canary") {
        let strategy = crate::progressive::read_canary(reader, settings, &format!("{path}.canary"))?;
        return Some(StrategyDraft::Progressive(kinds.key_pos("canary").unwrap_or(settings.pos), strategy));
    }
    if let Some(settings) = kinds.get("linear") {
        let strategy = crate::progressive::read_linear(reader, settings, &format!("{path}.linear"))?;
        return Some(StrategyDraft::Progressive(kinds.key_pos("linear").unwrap_or(settings.pos), strategy));
    }
    let Some(rolling) = kinds.get("rolling") else {
        if is_empty(node) {
            reader.error(node.pos, path, format!("expected a strategy: {}", STRATEGY_KINDS.join(", ")));
        }
        return None;
    };
    let rolling_path = format!("{path}.rolling");
    let fields = reader.fields(rolling, &rolling_path, ROLLING_FIELDS)?;
    let defaults = RollingDraft::default_at(rolling.pos);
    let max_surge = match fields.get("max_surge") {
        Some(node) => read_amount(reader, node, &format!("{rolling_path}.max_surge")),
        None => Some(defaults.max_surge),
    };
    let max_unavailable = match fields.get("max_unavailable") {
        Some(node) => read_amount(reader, node, &format!("{rolling_path}.max_unavailable")),
        None => Some(defaults.max_unavailable),
    };
    let timeout = match fields.get("timeout") {
        Some(node) => reader.duration(node, &format!("{rolling_path}.timeout")),
        None => Some(defaults.timeout),
    };
    Some(StrategyDraft::Rolling(RollingDraft {
        pos: rolling.pos,
        max_surge: max_surge?,
        max_unavailable: max_unavailable?,
        timeout: timeout?,
    }))
}

fn read_amount(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<Amount> {
    match &node.value {
        Value::Int(_) => reader.integer(node, path, 0, MAX_REPLICAS).map(|n| Amount::Count(n as u32)),
        Value::Str(text) if text.ends_with('%') => match text.trim_end_matches('%').parse::<u32>() {
            Ok(percent) if percent <= 100 => Some(Amount::Percent(percent)),
            _ => {
                reader.error(node.pos, path, format!("{text:?} is not a percentage from 0% to 100%"));
                None
            }
        },
        _ => {
            reader.error(node.pos, path, "expected a replica count like 1 or a percentage like \"25%\"");
            None
        }
    }
}

/// `environments:` (a list: where the app runs) and `overrides:` (a mapping: what
/// changes per environment). A mapping under `environments:` is refused: it used to
/// mean both, and writing one environment's changes silently removed the app from the
/// others.
fn read_placement(
    reader: &mut Reader<'_>,
    fields: &crate::reader::Fields<'_>,
    path: &str,
    known: &[&'static str],
) -> Placement {
    let mut placement = Placement::default();
    if let Some(node) = fields.get("environments") {
        let list_path = format!("{path}.environments");
        placement.runs_in_pos = Some(node.pos);
        match &node.value {
            Value::Seq(items) => {
                let mut names = Vec::new();
                for item in items {
                    if let Some(name) = reader.string(item, &list_path) {
                        names.push(Key { name, pos: item.pos });
                    }
                }
                // Wrong entries are reported and left out: were they all wrong, the app
                // runs nowhere rather than everywhere.
                placement.runs_in = Some(names);
            }
            Value::Map(pairs) => {
                let names: Vec<String> = pairs
                    .iter()
                    .filter_map(|(key, _)| match &key.value {
                        Value::Str(name) => Some(name.clone()),
                        _ => None,
                    })
                    .collect();
                reader.error(
                    node.pos,
                    &list_path,
                    format!(
                        "a mapping here would both choose where the app runs and change its settings; list where it runs, `environments: [{}]` (leave it out to run everywhere), and put per-environment changes under `overrides:`",
                        names.join(", ")
                    ),
                );
                placement.runs_in = Some(Vec::new());
            }
            _ => {
                reader.error(node.pos, &list_path, "expected a list of environments, like [stg, prod]");
                placement.runs_in = Some(Vec::new());
            }
        }
    }
    if let Some(node) = fields.get("depends_on") {
        let list_path = format!("{path}.depends_on");
        match &node.value {
            Value::Seq(items) => {
                for item in items {
                    if let Some(name) = reader.string(item, &list_path) {
                        placement.depends_on.push(Key { name, pos: item.pos });
                    }
                }
            }
            _ => reader.error(node.pos, &list_path, "expected a list of apps, like [api, migrate]"),
        }
    }
    if let Some(node) = fields.get("overrides") {
        let overrides_path = format!("{path}.overrides");
        for entry in reader.named_entries(node, &overrides_path) {
            let override_path = format!("{overrides_path}.{}", entry.key.name);
            if let Some(draft) = read_override(reader, entry.value, &override_path, known) {
                placement.overrides.push((entry.key, draft));
            }
        }
    }
    placement
}

fn read_override(reader: &mut Reader<'_>, node: &Node, path: &str, known: &[&'static str]) -> Option<OverrideDraft> {
    let fields = reader.fields(node, path, known)?;
    let mut draft = OverrideDraft::default();
    let mut ok = true;
    if let Some(node) = fields.get("replicas") {
        draft.replicas = reader.integer(node, &format!("{path}.replicas"), 0, MAX_REPLICAS).map(|n| n as u32);
        ok &= draft.replicas.is_some();
    }
    if let Some(node) = fields.get("image") {
        match read_image(reader, node, &format!("{path}.image")) {
            // The container name is filled in when the override is applied.
            Some(image) => draft.images.push((node.pos, String::new(), image)),
            None => ok = false,
        }
    }
    if let Some(node) = fields.get("images") {
        for entry in reader.named_entries(node, &format!("{path}.images")) {
            match read_image(reader, entry.value, &format!("{path}.images.{}", entry.key.name)) {
                Some(image) => draft.images.push((entry.key.pos, entry.key.name, image)),
                None => ok = false,
            }
        }
    }
    if let Some(node) = fields.get("env") {
        match read_env(reader, node, &format!("{path}.env")) {
            Some(env) => draft.env = env,
            None => ok = false,
        }
    }
    if let Some(node) = fields.get("schedule") {
        draft.schedule = read_schedule(reader, node, &format!("{path}.schedule"));
        ok &= draft.schedule.is_some();
    }
    if let Some(node) = fields.get("settle_window") {
        draft.settle_window = reader.duration(node, &format!("{path}.settle_window"));
        ok &= draft.settle_window.is_some();
    }
    ok.then_some(draft)
}
