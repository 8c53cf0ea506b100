//! The validated desired state: what `launchway.yaml` means once every default is filled
//! in and every per-environment override applied.
//!
//! These types are stored verbatim in releases (as JSON) and hashed into revisions, so a
//! field added later must be `Option` with `skip_serializing_if`, or every app would
//! look changed after an upgrade.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A whole config repo at one commit, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub environments: BTreeMap<String, Environment>,
    pub apps: BTreeMap<String, App>,
    /// Where `launchway server` tells people what happens.
    pub notifications: Vec<Notification>,
}

impl Manifest {
    /// The apps `app` waits for in `env`: those it depends on that run there too.
    pub fn dependencies_in(&self, app: &str, env: &str) -> Vec<&str> {
        let Some(declared) = self.apps.get(app) else { return Vec::new() };
        declared
            .depends_on
            .iter()
            .filter(|dependency| self.apps.get(*dependency).is_some_and(|other| other.specs.contains_key(env)))
            .map(String::as_str)
            .collect()
    }

    /// `apps` in an order in which each comes after every app of `apps` it depends on in
    /// `env`, directly or through others; otherwise by name. (A valid manifest has no
    /// cycle; were there one, its apps would come by name.)
    pub fn in_dependency_order<'a>(&self, env: &str, apps: &[&'a str]) -> Vec<&'a str> {
        fn visit<'m>(
            manifest: &'m Manifest,
            env: &str,
            app: &'m str,
            visiting: &mut BTreeSet<&'m str>,
            done: &mut Vec<&'m str>,
        ) {
            if done.contains(&app) || !visiting.insert(app) {
                return;
            }
            for dependency in manifest.dependencies_in(app, env) {
                visit(manifest, env, dependency, visiting, done);
            }
            done.push(app);
        }
        let mut names: Vec<&str> = apps.to_vec();
        names.sort_unstable();
        let (mut visiting, mut done) = (BTreeSet::new(), Vec::new());
        for app in names.iter().filter_map(|app| self.apps.get_key_value(*app).map(|(name, _)| name.as_str())) {
            visit(self, env, app, &mut visiting, &mut done);
        }
        let mut ordered: Vec<&'a str> =
            done.iter().filter_map(|app| names.iter().find(|name| **name == *app).copied()).collect();
        // Apps the manifest does not declare (deployed before, removed since) keep no order.
        ordered.extend(names.iter().filter(|name| !self.apps.contains_key(**name)));
        ordered
    }

    /// Sets the image of every container an app builds (and its environment does not
    /// override) to the reference its build will have, given the commit deployed and
    /// what git says through `sources`: the commit a build's `source:` ref names now
    /// (kept in the build), and the last commit that touched each context folder.
    ///
    /// # Errors
    /// What `sources` could not say (a context folder not in the commit, a source
    /// repository that cannot be read), at the `build:` concerned.
    pub fn set_build_references(
        &mut self,
        commit: &str,
        sources: &mut dyn crate::BuildSources,
    ) -> Result<(), crate::Diagnostic> {
        for app in self.apps.values_mut() {
            let Some(build) = &mut app.build else {
                continue;
            };
            let at = |message: String| crate::Diagnostic {
                file: app.file.clone(),
                line: app.build_at.line,
                column: app.build_at.column,
                message,
            };
            let source_commit = match &mut build.source {
                Some(source) => {
                    let resolved = sources.resolve(&source.repo, &source.git_ref).map_err(|problem| {
                        at(format!("the build source {} at {:?}: {problem}", source.repo, source.git_ref))
                    })?;
                    source.commit = Some(resolved.clone());
                    resolved
                }
                None => commit.to_owned(),
            };
            let repo = build.source.as_ref().map(|source| source.repo.as_str());
            let mut context_commits = BTreeMap::new();
            for (container, image) in &build.images {
                if build.tag == crate::TagScheme::Context {
                    let last = sources.last_change(repo, &source_commit, &image.context).map_err(|problem| {
                        at(format!("the build context of {container}, {:?}: {problem}", image.context))
                    })?;
                    context_commits.insert(container.clone(), last);
                }
            }
            let build = &*build;
            for (env, spec) in &mut app.specs {
                // Every container it builds that the environment does not give an image
                // (on ECS, a container not named yet is one swapped into what runs).
                let set = spec.images();
                let images: BTreeMap<String, String> = build
                    .images
                    .keys()
                    .map(String::as_str)
                    .filter(|container| set.get(container).is_none_or(|image| image.is_empty()))
                    .map(|container| {
                        let context_commit = context_commits.get(container).unwrap_or(&source_commit);
                        let reference = build.reference(&app.name, container, env, &source_commit, context_commit);
                        (container.to_owned(), reference)
                    })
                    .collect();
                if !images.is_empty() {
                    **spec = spec.with_images(&images);
                }
            }
        }
        Ok(())
    }

    /// Every (app, environment) pair the manifest deploys, with its resolved spec.
    pub fn deployments(&self) -> impl Iterator<Item = Deployment<'_>> {
        self.apps.values().flat_map(|app| {
            app.specs.iter().map(move |(environment, spec)| Deployment { app: &app.name, environment, spec })
        })
    }
}

/// One app in one environment, as the manifest wants it.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    pub spec: &'a AppSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    pub target: TargetSpec,
    /// Which changes `launchway server` deploys here.
    #[serde(default)]
    pub source: EnvSource,
    /// Runs wait for someone to approve them before deploying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPolicy>,
}

impl Environment {
    /// An environment of `target` fed by the default branch, with no approval.
    pub fn new(name: &str, target: TargetSpec) -> Environment {
        Environment { name: name.to_owned(), target, source: EnvSource::DefaultBranch, approval: None }
    }
}

/// Where an environment's desired state comes from when the server watches the repo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnvSource {
    /// Commits on the branch the server follows (its `--ref`, usually the default one).
    #[default]
    DefaultBranch,
    /// Commits on this branch.
    Branch { name: String },
    /// Tags matching the pattern: `semver` (v1.2.3, 1.2.3-rc.1) or a glob (`release-*`).
    Tags { pattern: String },
    /// Releases verified in another environment.
    Promotion { from: String },
}

impl EnvSource {
    /// Whether a push of `git_ref` (`refs/heads/dev`, `refs/tags/v1.2.0`) feeds the
    /// environment; `default_branch` is the branch the server follows.
    pub fn accepts(&self, git_ref: &str, default_branch: &str) -> bool {
        match self {
            EnvSource::DefaultBranch => git_ref.strip_prefix("refs/heads/") == Some(default_branch),
            EnvSource::Branch { name } => git_ref.strip_prefix("refs/heads/") == Some(name.as_str()),
            EnvSource::Tags { pattern } => {
                git_ref.strip_prefix("refs/tags/").is_some_and(|tag| tag_matches(pattern, tag))
            }
            EnvSource::Promotion { .. } => false,
        }
    }
}

/// `semver` matches tags that name a semantic version (`v1.2.3` or `1.2.3`, with an
/// optional pre-release and build); anything else is a glob (`*` matches any run of
/// characters, `/` included; `?` one character; `[0-9]` one of a set). A pattern that is
/// not a glob matches nothing (validation refuses it first).
pub fn tag_matches(pattern: &str, tag: &str) -> bool {
    if pattern == "semver" {
        return tag_version(tag).is_some();
    }
    glob::Pattern::new(pattern).is_ok_and(|glob| glob.matches(tag))
}

/// The semantic version a tag names, `v` prefix or not: what orders `semver` tags
/// (`v1.10.0-rc.10` after `v1.10.0-rc.2`, a release after its pre-releases).
pub fn tag_version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// Who may let a run through, and for how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// The release's author may not approve it.
    pub forbid_author: bool,
    /// A run not approved in this long is rejected.
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub expires: Option<Duration>,
}

/// A chat or webhook destination, with what it hears about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub sink: NotificationSink,
    /// Empty: every event.
    pub events: Vec<NotifyOn>,
    /// Empty: every environment.
    pub environments: Vec<String>,
}

impl Notification {
    pub fn wants(&self, event: NotifyOn, environment: &str) -> bool {
        // A commit status follows a deploy from its start; chat hears about starts only
        // when asked to. GitLab refuses a status going back from running to pending, so
        // its statuses skip the wait for an approval.
        let by_default = match (&self.sink, event) {
            (NotificationSink::GitLab(_), NotifyOn::ApprovalNeeded) => false,
            (sink, NotifyOn::Started) => sink.is_commit_status(),
            _ => true,
        };
        (if self.events.is_empty() { by_default } else { self.events.contains(&event) })
            && (self.environments.is_empty() || self.environments.iter().any(|e| e == environment))
    }
}

/// Where to send. URLs may be secrets: `ssm:/name` or `env:VARIABLE` are resolved when used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotificationSink {
    /// A Slack-compatible incoming webhook (Block Kit messages).
    Slack { url: String },
    /// A Slack app's bot, posting with `chat.postMessage`: unlike an incoming webhook's,
    /// its messages can be edited, so an approval's message is brought up to date when
    /// the run is decided anywhere.
    #[serde(rename = "slack_app")]
    SlackApp(SlackApp),
    /// Any HTTP endpoint taking launchway's JSON.
    Webhook { url: String },
    /// A Discord channel's webhook (embeds).
    Discord { url: String },
    /// Commit statuses on GitHub: each deploy's state on the config commit it deploys.
    #[serde(rename = "github")]
    GitHub(ForgeStatuses),
    /// Commit statuses on GitLab (the project is its path or numeric id).
    #[serde(rename = "gitlab")]
    GitLab(ForgeStatuses),
}

impl NotificationSink {
    /// Commit statuses on a forge, rather than a message.
    pub fn is_commit_status(&self) -> bool {
        matches!(self, NotificationSink::GitHub(_) | NotificationSink::GitLab(_))
    }
}

/// A Slack app: its bot token (a reference: `env:SLACK_BOT_TOKEN`), the channel it posts
/// to, and the Web API's base URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackApp {
    pub token: String,
    /// A channel id (`C0123ABCD`) or name.
    pub channel: String,
    /// `https://slack.com/api`, or a server of one's own.
    pub api_url: String,
}

/// Where a forge keeps commit statuses, and the token that may write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeStatuses {
    /// `owner/name` on GitHub; `group/name` (or the numeric id) on GitLab.
    pub repo: String,
    /// A reference to the token (`env:GITHUB_TOKEN`, `ssm:/launchway/github-token`).
    pub token: String,
    /// The API's base URL: `https://api.github.com`, `https://gitlab.com/api/v4`, or a
    /// server of one's own.
    pub api_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// A run was created (commit statuses go pending; chat only when asked).
    Started,
    ApprovalNeeded,
    Succeeded,
    Failed,
    RolledBack,
    /// It ended without deploying anything: rejected by someone, its approval expired,
    /// or a newer change superseded it while it waited.
    Rejected,
}

impl NotifyOn {
    pub const ALL: [NotifyOn; 6] = [
        NotifyOn::Started,
        NotifyOn::ApprovalNeeded,
        NotifyOn::Succeeded,
        NotifyOn::Failed,
        NotifyOn::RolledBack,
        NotifyOn::Rejected,
    ];

    /// Whether a run ends with this event.
    pub fn ends_run(self) -> bool {
        matches!(self, NotifyOn::Succeeded | NotifyOn::Failed | NotifyOn::RolledBack | NotifyOn::Rejected)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Started => "started",
            NotifyOn::ApprovalNeeded => "approval_needed",
            NotifyOn::Succeeded => "succeeded",
            NotifyOn::Failed => "failed",
            NotifyOn::RolledBack => "rolled_back",
            NotifyOn::Rejected => "rejected",
        }
    }
}

/// Where an environment's apps run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetSpec {
    /// A Docker engine: the local one unless `host` names another
    /// (`unix:///path/docker.sock`, `tcp://host:2375`).
    Docker {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// Amazon ECS, reached with the standard AWS credential chain. Everything left out
    /// comes from the ambient configuration (`AWS_REGION`, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`…).
    Ecs(EcsTarget),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The cluster of apps that do not name their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A role to assume for this environment (another account, least privilege).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// For emulators and VPC endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// A deployable unit: a long-running service or a scheduled task.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub name: String,
    /// The file that declares it, relative to the repo root.
    pub file: String,
    /// The resolved spec for each environment the app is deployed to.
    pub specs: BTreeMap<String, Box<AppSpec>>,
    /// The apps whose changes deploy before its own (`depends_on:`), where both run.
    pub depends_on: Vec<String>,
    /// How its images are built (`build:`), when launchway builds them.
    pub build: Option<crate::AppBuild>,
    /// Where `build:` is written, for problems found once the commit is read.
    pub build_at: crate::Pos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppSpec {
    Service(ServiceSpec),
    Task(TaskSpec),
    EcsService(EcsServiceSpec),
    EcsTask(EcsTaskSpec),
}

impl AppSpec {
    /// A progressive delivery's strategy and the steps a run holds, one by one: on
    /// Docker its traffic steps, on ECS the gates where ECS's own deployment pauses.
    /// `None` for rolling updates and tasks.
    pub fn progressive(&self) -> Option<(&Strategy, Vec<ProgressStep>)> {
        match self {
            AppSpec::Service(service) if service.strategy.is_progressive() => {
                let steps =
                    service.strategy.traffic_steps().into_iter().enumerate().map(|(index, step)| ProgressStep {
                        name: format!("traffic {}", index + 1),
                        what: match step.weight {
                            100 => "all traffic".to_owned(),
                            weight => format!("{weight}% of traffic"),
                        },
                        pause: step.pause,
                        approval: step.approval,
                    });
                Some((&service.strategy, steps.collect()))
            }
            AppSpec::EcsService(EcsServiceSpec { strategy: Some(strategy), .. }) => {
                let steps = strategy.gates().iter().enumerate().map(|(index, gate)| ProgressStep {
                    name: format!("gate {}", index + 1),
                    what: format!("the ECS deployment paused at {}", gate.at.as_str()),
                    pause: gate.hold,
                    approval: gate.approval,
                });
                Some((strategy, steps.collect()))
            }
            _ => None,
        }
    }

    /// A short content hash: two specs with the same revision deploy the same thing.
    pub fn revision(&self) -> Revision {
        // serde_json writes struct fields in declaration order and BTreeMaps sorted,
        // so the encoding, and therefore the hash, is canonical.
        let encoded = serde_json::to_vec(self).expect("specs always serialize");
        let digest = Sha256::digest(&encoded);
        Revision(hex::encode(&digest[..6]))
    }

    /// The image of every container the spec sets, by container.
    pub fn images(&self) -> BTreeMap<&str, &str> {
        match self {
            AppSpec::Service(ServiceSpec { containers, .. }) | AppSpec::Task(TaskSpec { containers, .. }) => {
                containers.iter().map(|c| (c.name.as_str(), c.image.as_str())).collect()
            }
            AppSpec::EcsService(EcsServiceSpec { definition, .. })
            | AppSpec::EcsTask(EcsTaskSpec { definition, .. }) => {
                definition.images.iter().map(|(name, image)| (name.as_str(), image.as_str())).collect()
            }
        }
    }

    /// A task run once each time a change to it deploys (`run: on_deploy`, a migration):
    /// running it is its deploy, and its exit code the verification.
    pub fn runs_on_deploy(&self) -> bool {
        match self {
            AppSpec::Task(task) => task.schedule.is_none(),
            AppSpec::EcsTask(task) => task.on_deploy.is_some(),
            AppSpec::Service(_) | AppSpec::EcsService(_) => false,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AppSpec::Service(_) | AppSpec::EcsService(_) => "service",
            AppSpec::Task(_) | AppSpec::EcsTask(_) => "task",
        }
    }

    /// The same spec with some containers' images replaced: how a release published by
    /// CI, or promoted from another environment, applies to what the manifest says.
    pub fn with_images(&self, images: &BTreeMap<String, String>) -> AppSpec {
        let mut spec = self.clone();
        match &mut spec {
            AppSpec::Service(ServiceSpec { containers, .. }) | AppSpec::Task(TaskSpec { containers, .. }) => {
                for container in containers.iter_mut() {
                    if let Some(image) = images.get(&container.name) {
                        container.image = image.clone();
                    }
                }
            }
            AppSpec::EcsService(EcsServiceSpec { definition, .. })
            | AppSpec::EcsTask(EcsTaskSpec { definition, .. }) => {
                definition.images.extend(images.iter().map(|(container, image)| (container.clone(), image.clone())));
            }
        }
        spec
    }
}

/// Content hash of an [`AppSpec`], 12 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub String);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a release is watched after its rollout, when the manifest does not say.
pub const DEFAULT_SETTLE_WINDOW: Duration = Duration::from_secs(10);

/// What a service runs with when its manifest leaves a setting out (plans fold settings
/// equal to these, so that a new app's plan shows what its author wrote).
pub const DEFAULT_REPLICAS: u32 = 1;
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_ROLLING_MAX_SURGE: u32 = 1;
pub const DEFAULT_ROLLING_MAX_UNAVAILABLE: u32 = 0;
pub const DEFAULT_ROLLING_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_STRATEGY: Strategy = Strategy::Rolling {
    max_surge: DEFAULT_ROLLING_MAX_SURGE,
    max_unavailable: DEFAULT_ROLLING_MAX_UNAVAILABLE,
    timeout: DEFAULT_ROLLING_TIMEOUT,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub containers: Vec<ContainerSpec>,
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    pub strategy: Strategy,
    #[serde(with = "millis")]
    pub stop_grace_period: Duration,
    /// As written; `None` (the default window) keeps revisions made before the setting
    /// existed unchanged.
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub settle_window: Option<Duration>,
    /// Where clients reach it on the Docker host, through launchway's proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
}

/// A service's stable entry point on a Docker host: a host port, optionally shared with
/// other services by host name or path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
}

/// TLS on the entry point: PEM files on the machine launchway runs on, read each time
/// the route is set (a renewed certificate at the same path is served from the next
/// rollout on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressTls {
    /// The certificate chain, leaf first.
    pub certificate: String,
    pub key: String,
}

impl ServiceSpec {
    /// The container that carries the service's port and health check: the first one
    /// declared. Other containers are sidecars sharing its network namespace.
    pub fn primary(&self) -> &ContainerSpec {
        &self.containers[0]
    }

    /// How long every new replica must stay healthy after the rollout for the release
    /// to count as verified.
    pub fn settle_window(&self) -> Duration {
        self.settle_window.unwrap_or(DEFAULT_SETTLE_WINDOW)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// An HTTP health check, with the meaning Docker's HEALTHCHECK gives the same words:
/// failures during `start_period` do not count, and a replica is unhealthy after
/// `unhealthy_threshold` consecutive failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub port: u16,
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Probe interval while a replica has not yet passed: short, so a deploy does not
    /// wait a whole `interval` for a replica that is already up.
    #[serde(with = "millis")]
    pub start_interval: Duration,
    #[serde(with = "millis")]
    pub timeout: Duration,
    #[serde(with = "millis")]
    pub start_period: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// Replace replicas a few at a time. Counts are resolved from percentages
    /// against `replicas` (surge rounds up, unavailable rounds down, as Kubernetes does).
    Rolling {
        max_surge: u32,
        max_unavailable: u32,
        #[serde(with = "millis")]
        timeout: Duration,
    },
    /// The whole new set started and checked beside the serving one, then all traffic
    /// moved at once; the old set is kept for `bake` (an instant way back), then removed.
    BlueGreen {
        #[serde(with = "millis")]
        bake: Duration,
        #[serde(with = "millis")]
        timeout: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<Box<Analysis>>,
        /// ECS only: where its deployment pauses for launchway to decide.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<Gate>,
    },
    /// The whole new set started beside the serving one, then given a growing share of
    /// the traffic, step by step, each step held for its pause and checked by the
    /// analysis; after the last step it takes everything.
    Canary {
        steps: Vec<CanaryStep>,
        #[serde(with = "millis")]
        timeout: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<Box<Analysis>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<Gate>,
    },
    /// A canary in equal steps: `step` percent more traffic every `pause`, then, once
    /// everything has moved, the old set kept for `bake`.
    Linear {
        step: u8,
        #[serde(with = "millis")]
        pause: Duration,
        #[serde(with = "millis")]
        bake: Duration,
        #[serde(with = "millis")]
        timeout: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<Box<Analysis>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<Gate>,
    },
}

/// One step a progressive run holds: reached, then held for `pause` while the
/// analysis measures, and, with `approval`, until someone promotes the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressStep {
    /// The run's step: `traffic 1`, `gate 2`.
    pub name: String,
    /// What holds, for people: `20% of traffic`, `the ECS deployment paused at …`.
    pub what: String,
    pub pause: Duration,
    pub approval: bool,
}

/// A point of an ECS deployment where ECS pauses (a PAUSE lifecycle hook) until
/// launchway continues it or rolls it back: after `hold`, with the analysis measuring
/// meanwhile, and, with `approval`, once someone promotes the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub at: GateStage,
    #[serde(with = "millis")]
    pub hold: Duration,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval: bool,
    /// ECS's own limit (whole minutes): past it, ECS rolls the deployment back.
    #[serde(with = "millis")]
    pub timeout: Duration,
}

/// The lifecycle stages of an ECS deployment where a PAUSE hook can wait and
/// DescribeServiceDeployments names the stage it waits at, in the order they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStage {
    PreScaleUp,
    PostScaleUp,
    PostTestTrafficShift,
    PostProductionTrafficShift,
}

impl GateStage {
    pub const ALL: [GateStage; 4] = [
        GateStage::PreScaleUp,
        GateStage::PostScaleUp,
        GateStage::PostTestTrafficShift,
        GateStage::PostProductionTrafficShift,
    ];

    /// As a manifest writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            GateStage::PreScaleUp => "pre_scale_up",
            GateStage::PostScaleUp => "post_scale_up",
            GateStage::PostTestTrafficShift => "post_test_traffic_shift",
            GateStage::PostProductionTrafficShift => "post_production_traffic_shift",
        }
    }

    /// As ECS writes it.
    pub fn ecs_name(self) -> String {
        self.as_str().to_uppercase()
    }

    pub fn parse(text: &str) -> Option<GateStage> {
        GateStage::ALL.into_iter().find(|stage| stage.as_str() == text)
    }
}

/// One step of a progressive delivery: the new release's share of the traffic, held
/// for `pause` while the analysis measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStep {
    /// Percent of requests, 1 to 100.
    pub weight: u8,
    #[serde(with = "millis")]
    pub pause: Duration,
    /// Once the pause is over, held until someone promotes the run (`pause` alone is
    /// timed; Argo Rollouts' `pause: {}`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval: bool,
}

impl CanaryStep {
    /// A step held for `pause`, then passed.
    pub fn timed(weight: u8, pause: Duration) -> CanaryStep {
        CanaryStep { weight, pause, approval: false }
    }
}

impl Strategy {
    /// How long starting the new set may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Strategy::Rolling { timeout, .. }
            | Strategy::BlueGreen { timeout, .. }
            | Strategy::Canary { timeout, .. }
            | Strategy::Linear { timeout, .. } => *timeout,
        }
    }

    /// Where an ECS deployment pauses for launchway, in the order ECS reaches them.
    pub fn gates(&self) -> &[Gate] {
        match self {
            Strategy::Rolling { .. } => &[],
            Strategy::BlueGreen { gates, .. } | Strategy::Canary { gates, .. } | Strategy::Linear { gates, .. } => {
                gates
            }
        }
    }

    /// The traffic steps of a progressive strategy (blue/green: all at once, held for
    /// its bake); empty for a rolling update, whose traffic follows its replicas.
    pub fn traffic_steps(&self) -> Vec<CanaryStep> {
        match self {
            Strategy::Rolling { .. } => Vec::new(),
            Strategy::BlueGreen { bake, .. } => vec![CanaryStep::timed(100, *bake)],
            Strategy::Canary { steps, .. } => steps.clone(),
            Strategy::Linear { step, pause, bake, .. } => {
                let mut steps: Vec<CanaryStep> = (1..)
                    .map(|k| u32::from(*step) * k)
                    .take_while(|weight| *weight < 100)
                    .map(|weight| CanaryStep::timed(weight as u8, *pause))
                    .collect();
                if !bake.is_zero() {
                    steps.push(CanaryStep::timed(100, *bake));
                }
                steps
            }
        }
    }

    /// Whether the new set starts beside the serving one and takes traffic in steps.
    pub fn is_progressive(&self) -> bool {
        !matches!(self, Strategy::Rolling { .. })
    }

    pub fn analysis(&self) -> Option<&Analysis> {
        match self {
            Strategy::Rolling { .. } => None,
            Strategy::BlueGreen { analysis, .. }
            | Strategy::Canary { analysis, .. }
            | Strategy::Linear { analysis, .. } => analysis.as_deref(),
        }
    }

    /// The name a manifest gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Rolling { .. } => "rolling",
            Strategy::BlueGreen { .. } => "blue_green",
            Strategy::Canary { .. } => "canary",
            Strategy::Linear { .. } => "linear",
        }
    }
}

/// What decides, at each traffic step, whether the new release goes on (Argo Rollouts'
/// AnalysisTemplate, in short): a measurement every `interval` during each pause (at
/// least one per step), failing the release once more than `failure_limit` failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    #[serde(with = "millis")]
    pub interval: Duration,
    pub failure_limit: u32,
    /// Measurements each step takes at least (its pause is held until then); 1 when
    /// left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusAnalysis>,
    /// ECS only: a CloudWatch metric, read with the environment's AWS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudwatch: Option<CloudWatchAnalysis>,
    /// ECS only: CloudWatch alarms none of which may be in ALARM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// The latest datapoint of a CloudWatch metric, against a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudWatchAnalysis {
    pub namespace: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
    /// `Average`, `Sum`, `Minimum`, `Maximum` or `SampleCount`.
    pub statistic: String,
    #[serde(with = "millis")]
    pub period: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

/// An HTTP request to every replica of the new release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpAnalysis {
    /// Asked of each replica of the new release (empty with `url`).
    pub path: String,
    /// One address asked instead: the load balancer's test listener on ECS, or any
    /// route that reaches the new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The container port asked; the primary container's port when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The status expected; any 2xx when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Duration>,
}

/// A PromQL query through Prometheus' HTTP API; every value it returns must lie within
/// the bounds given. A query that returns nothing fails: nothing was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrometheusAnalysis {
    /// Like `http://127.0.0.1:9090`.
    pub address: String,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// When it runs: on this schedule, or, without one (`run: on_deploy`), once each time
    /// a change to it deploys, before the apps that depend on it (a database migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    pub containers: Vec<ContainerSpec>,
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// An ECS service launchway updates (it never creates or deletes services).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsServiceSpec {
    pub cluster: String,
    pub service: String,
    pub definition: EcsDefinition,
    /// Left out: the service keeps the count it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    /// Left out: the service keeps its deployment configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<EcsDeployment>,
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// As written; see [`ServiceSpec::settle_window`].
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub settle_window: Option<Duration>,
    /// Left out: the service keeps its own. Whole seconds, as ECS keeps it.
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period: Option<Duration>,
    /// ECS's own blue/green, canary or linear deployment, which launchway follows and
    /// gates; never `Rolling` (a rolling update is `deployment`'s percentages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// CloudWatch alarms that fail a deployment while ECS rolls it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<EcsAlarms>,
    /// The load balancer's advanced configuration, which ECS's blue/green, canary and
    /// linear deployments shift traffic with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<EcsLoadBalancer>,
}

/// CloudWatch alarms watched during an ECS deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsAlarms {
    pub names: Vec<String>,
    /// Whether ECS rolls back by itself when one goes off (launchway sees the deployment
    /// fail either way).
    pub rollback: bool,
}

/// How ECS moves traffic between the blue and green task sets behind a load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsLoadBalancer {
    /// Which of the service's load balancers, by target group; left out when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    pub alternate_target_group: String,
    pub production_listener_rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_rule: Option<String>,
    /// The role ECS assumes to change the listener rules.
    pub role: String,
}

impl EcsServiceSpec {
    /// How long the deployment must stay steady after it completes for the release to
    /// count as verified.
    pub fn settle_window(&self) -> Duration {
        self.settle_window.unwrap_or(DEFAULT_SETTLE_WINDOW)
    }
}

/// A scheduled task on ECS: the task definition that an EventBridge rule and/or an
/// EventBridge Scheduler schedule starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsTaskSpec {
    pub definition: EcsDefinition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleRef>,
    /// The cluster the definition's family lives next to, for messages and plans (and
    /// where a task run on deploy runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Run once each time a change to it deploys (`run: on_deploy`), instead of on a
    /// rule's or schedule's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deploy: Option<EcsRunOnce>,
}

/// How an ECS task run on deploy is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsRunOnce {
    /// `FARGATE`, `EC2` or `EXTERNAL`; absent, the cluster's default capacity providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// Its awsvpc network, which Fargate needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<EcsNetwork>,
    /// How long it may run before it fails its run (stopped then).
    #[serde(default, with = "millis_option", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsNetwork {
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub public_ip: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What task definition an ECS app runs: the one it runs now with some images swapped
/// (what CodePipeline's ECS action does), or a whole definition from the config repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsDefinition {
    /// Container → image. Keys are container names, or (for apps read from the
    /// gitops sample's `deployment.yaml`) a word the container's image contains, or ""
    /// for the task definition's only container (a CodeDeploy `imageDetail.json`).
    pub images: BTreeMap<String, String>,
    /// A task definition document in the shape `aws ecs describe-task-definition`
    /// prints, read-only fields removed; `None` means "the one the service runs now".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<TaskDefinitionDocument>,
}

impl EcsDefinition {
    /// A content hash of the task definition alone (images and document): what names a
    /// task definition revision, so that a change to service settings only (desired
    /// count, deployment configuration) registers nothing and replaces no task.
    pub fn revision(&self) -> Revision {
        let encoded = serde_json::to_vec(self).expect("definitions always serialize");
        let digest = Sha256::digest(&encoded);
        Revision(hex::encode(&digest[..6]))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionDocument {
    /// Where it was read from, relative to the repo root.
    pub path: String,
    /// The registrable fields, camelCase as ECS writes them, and `tags`.
    pub document: serde_json::Value,
}

/// ECS deployment settings launchway sets when the manifest says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsDeployment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_percent: Option<u32>,
    /// The deployment circuit breaker: on, and whether ECS rolls back by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    /// Whether ECS rolls a failed deployment back by itself; left out (`circuit_breaker:
    /// true`), the service keeps what it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
}

/// A schedule as written: a five-field cron line, an `@daily` nickname, an AWS
/// `cron(…)` expression with its year field, or `rate(5 minutes)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Schedule(pub String);

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

mod millis_option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&(duration.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|millis| millis.map(Duration::from_millis))
    }
}
