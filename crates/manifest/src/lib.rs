//! `launchway.yaml` (and `apps/*.yaml`) to validated desired state.
//!
//! This crate does no IO and no async: callers hand it file contents (and a way to read
//! the files a manifest refers to) and get back either a [`Manifest`] or every problem
//! found, each as `file:line:col: message`.

mod build;
mod dependencies;
mod duration;
mod gitops_sample;
mod image;
mod image_files;
mod model;
mod node;
mod progressive;
mod reader;
mod resolve;
mod schedule;
mod schema;
mod taskdef;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use build::{
    AppBuild, BuildSource, BuildSources, ImageBuild, LOCAL_REPOSITORY_PREFIX, TAG_COMMIT_LENGTH, TagScheme,
};
pub use duration::format_duration;
pub use gitops_sample::{SAMPLE_ENVIRONMENT, SAMPLE_FILE};
pub use image_files::images_for as published_images_for;
pub use model::{
    Analysis, App, AppSpec, ApprovalPolicy, CanaryStep, CircuitBreaker, CloudWatchAnalysis, ContainerSpec,
    DEFAULT_REPLICAS, DEFAULT_SETTLE_WINDOW, DEFAULT_STOP_GRACE_PERIOD, DEFAULT_STRATEGY, Deployment, EcsAlarms,
    EcsDefinition, EcsDeployment, EcsLoadBalancer, EcsNetwork, EcsRunOnce, EcsServiceSpec, EcsTarget, EcsTaskSpec,
    EnvSource, Environment, ForgeStatuses, Gate, GateStage, HealthCheck, HttpAnalysis, Ingress, IngressTls, Manifest,
    Notification, NotificationSink, NotifyOn, ProgressStep, PrometheusAnalysis, Revision, Schedule, ScheduleRef,
    ServiceSpec, SlackApp, Strategy, TargetSpec, TaskDefinitionDocument, TaskSpec, tag_matches, tag_version,
};
pub use node::{MAX_FILE_BYTES, Pos};
pub use schedule::next_after as next_scheduled_after;
pub use taskdef::READ_ONLY_TASK_DEFINITION_FIELDS;

use dependencies::DependencyDraft;
use reader::Reader;
use resolve::{Draft, ReadFiles, Resolver};
use schema::FileDraft;

/// The file at the root of a config repo that declares environments (and usually apps).
pub const ROOT_FILE: &str = "launchway.yaml";
/// The folder whose `.yaml`/`.yml` files declare more apps.
pub const APPS_DIR: &str = "apps";

/// Whether a path in a config repo is part of the manifest itself (files it refers to,
/// like task definitions, are read through [`RepoFiles`]).
pub fn is_manifest_path(path: &str) -> bool {
    path == ROOT_FILE
        || path == SAMPLE_FILE
        || (path.starts_with("apps/") && (path.ends_with(".yaml") || path.ends_with(".yml")))
}

/// One file of a config repo: its path relative to the repo root and its bytes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Reads the files a manifest refers to (task definitions, image files), by path
/// relative to the repo root, from wherever the manifest came from.
pub trait RepoFiles {
    /// `Ok(None)` when the repo has no such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String>;
}

/// Files in memory: what tests, and manifests that refer to nothing, need.
impl RepoFiles for Vec<SourceFile> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.iter().find(|file| file.path == path).map(|file| file.bytes.clone()))
    }
}

/// A problem (or, among warnings, a risk) at a place in a manifest file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(file: &str, pos: Pos, message: String) -> Diagnostic {
        Diagnostic { file: file.to_owned(), line: pos.line, column: pos.column, message }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// A manifest that passed validation, and what it might want to reconsider.
#[derive(Debug, Clone)]
pub struct Validated {
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
}

/// Validates a config repo's manifest files: `launchway.yaml` and `apps/*.yaml`, and
/// the gitops sample's `deployment.yaml` (alone, or beside `launchway.yaml`, which then
/// declares the environments its apps run in). `files` is what the manifest refers to.
///
/// # Errors
/// Every problem found in every file, sorted by file and position. Nothing is returned
/// for a manifest with any problem: a half-valid manifest must never be deployed.
pub fn load(manifest_files: &[SourceFile], files: &dyn RepoFiles) -> Result<Validated, Vec<Diagnostic>> {
    load_with(manifest_files, files, &mut |file, is_root, diagnostics| {
        read_one(file, is_root, diagnostics).map(Arc::new)
    })
}

/// Loads manifests one commit after another, parsing again only the files whose bytes
/// changed since the last load: what the server does with each push, which usually
/// changes one file of many. What spans files (environments, promotions, app names
/// declared twice, the files apps refer to) is checked whole every time, so a load
/// gives exactly what [`load`] gives.
#[derive(Default)]
pub struct Loader {
    /// By path: the digest of the bytes last read there, and what reading them gave.
    parsed: HashMap<String, ParsedFile>,
}

struct ParsedFile {
    digest: [u8; 32],
    draft: Option<Arc<FileDraft>>,
    diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("files", &self.parsed.len()).finish()
    }
}

impl Loader {
    /// As [`load`].
    ///
    /// # Errors
    /// As [`load`].
    pub fn load(&mut self, manifest_files: &[SourceFile], files: &dyn RepoFiles) -> Result<Validated, Vec<Diagnostic>> {
        let validated = load_with(manifest_files, files, &mut |file, is_root, diagnostics| {
            let digest: [u8; 32] = Sha256::digest(&file.bytes).into();
            match self.parsed.get(&file.path) {
                Some(parsed) if parsed.digest == digest => {
                    diagnostics.extend(parsed.diagnostics.iter().cloned());
                    parsed.draft.clone()
                }
                _ => {
                    let mut own = Vec::new();
                    let draft = read_one(file, is_root, &mut own).map(Arc::new);
                    diagnostics.extend(own.iter().cloned());
                    self.parsed
                        .insert(file.path.clone(), ParsedFile { digest, draft: draft.clone(), diagnostics: own });
                    draft
                }
            }
        });
        self.parsed.retain(|path, _| manifest_files.iter().any(|file| &file.path == path));
        validated
    }
}

/// How a file is read: parsed, or taken from a cache.
type ReadFile<'r> = dyn FnMut(&SourceFile, bool, &mut Vec<Diagnostic>) -> Option<Arc<FileDraft>> + 'r;

fn load_with(
    manifest_files: &[SourceFile],
    files: &dyn RepoFiles,
    read_file: &mut ReadFile<'_>,
) -> Result<Validated, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();
    let root = manifest_files.iter().find(|file| file.path == ROOT_FILE);
    let sample = manifest_files.iter().find(|file| file.path == SAMPLE_FILE);
    let root = match (root, sample) {
        (Some(root), _) => root,
        (None, Some(sample)) => return load_sample(sample),
        (None, None) => {
            return Err(vec![Diagnostic::new(
                ROOT_FILE,
                Pos { line: 1, column: 1 },
                format!("not found at the root of the config repo (nor {SAMPLE_FILE}); it declares the environments"),
            )]);
        }
    };
    let root_draft = read_file(root, true, &mut diagnostics);
    let mut app_files: Vec<&SourceFile> =
        manifest_files.iter().filter(|file| file.path != ROOT_FILE && file.path != SAMPLE_FILE).collect();
    app_files.sort_by(|a, b| a.path.cmp(&b.path));
    let app_drafts: Vec<(&SourceFile, Arc<FileDraft>)> =
        app_files.into_iter().filter_map(|file| Some((file, read_file(file, false, &mut diagnostics)?))).collect();

    let mut environments = BTreeMap::new();
    let mut notifications = Vec::new();
    if let Some(draft) = &root_draft {
        for (key, environment) in &draft.environments {
            environments.insert(
                key.name.clone(),
                Environment {
                    name: key.name.clone(),
                    target: environment.target.clone(),
                    source: environment.source.clone(),
                    approval: environment.approval,
                },
            );
        }
        check_promotions(draft, &mut diagnostics);
        for (pos, notification) in &draft.notifications {
            for name in &notification.notification.environments {
                if !draft.environment_names.contains(name) {
                    diagnostics.push(Diagnostic::new(
                        ROOT_FILE,
                        notification.environments_pos.unwrap_or(*pos),
                        format!("notifications: environment {name:?} is not declared"),
                    ));
                }
            }
            notifications.push(notification.notification.clone());
        }
        if draft.environment_names.is_empty() {
            diagnostics.push(Diagnostic::new(
                ROOT_FILE,
                Pos { line: 1, column: 1 },
                "declare at least one environment under `environments:`".to_owned(),
            ));
        }
    }

    let declared: BTreeSet<String> =
        root_draft.iter().flat_map(|draft| draft.environment_names.iter().cloned()).collect();
    let attempted: BTreeMap<String, TargetSpec> =
        root_draft.iter().flat_map(|draft| draft.attempted_targets.iter().cloned()).collect();
    let mut apps: BTreeMap<String, App> = BTreeMap::new();
    let mut declared_at: BTreeMap<String, (String, Pos)> = BTreeMap::new();
    let mut dependencies: Vec<DependencyDraft> = Vec::new();
    let mut read = ReadFiles::default();
    let drafts =
        root_draft.iter().map(|draft| (root, draft.as_ref())).chain(app_drafts.iter().map(|(f, d)| (*f, d.as_ref())));
    for (file, draft) in drafts {
        let mut resolver = Resolver {
            reader: Reader { file: &file.path, diagnostics: &mut diagnostics },
            environments: &environments,
            attempted: &attempted,
            declared: &declared,
            warnings: &mut warnings,
            files,
            read: &mut read,
        };
        let drafts = draft
            .services
            .iter()
            .map(|(key, service)| (key, Draft::Service(service)))
            .chain(draft.tasks.iter().map(|(key, task)| (key, Draft::Task(task))));
        for (key, app_draft) in drafts {
            if let Some((first_file, first)) = declared_at.get(&key.name) {
                resolver.reader.error(
                    key.pos,
                    "",
                    format!("app {:?} is already declared at {}:{}:{}", key.name, first_file, first.line, first.column),
                );
                continue;
            }
            declared_at.insert(key.name.clone(), (file.path.clone(), key.pos));
            let (kind, placement, build) = match &app_draft {
                Draft::Service(service) => ("services", &service.placement, &service.build),
                Draft::Task(task) => ("tasks", &task.placement, &task.build),
            };
            let build_at = build.as_ref().map_or(key.pos, |(pos, _)| *pos);
            let build = build.as_ref().map(|(_, build)| build.clone());
            let depends_on: Vec<String> = placement.depends_on.iter().map(|key| key.name.clone()).collect();
            dependencies.push(DependencyDraft {
                app: key.name.clone(),
                file: file.path.clone(),
                path: format!("{kind}.{}.depends_on", key.name),
                on: placement.depends_on.clone(),
            });
            if let Some(specs) = resolver.resolve(key, app_draft) {
                apps.insert(
                    key.name.clone(),
                    App { name: key.name.clone(), file: file.path.clone(), specs, depends_on, build, build_at },
                );
            }
        }
    }
    dependencies::check(&dependencies, &declared_at, &mut diagnostics);
    if let Some(sample) = sample {
        let context = SampleContext { environments: &environments, attempted: &attempted, declared: &declared };
        add_sample_apps(sample, &context, &mut apps, &declared_at, &mut diagnostics, &mut warnings);
    }
    finish(Manifest { environments, apps, notifications }, diagnostics, warnings)
}

/// What the apps of a `deployment.yaml` beside `launchway.yaml` are checked against.
struct SampleContext<'a> {
    environments: &'a BTreeMap<String, Environment>,
    attempted: &'a BTreeMap<String, TargetSpec>,
    declared: &'a BTreeSet<String>,
}

/// The apps of a `deployment.yaml` beside `launchway.yaml`: in the environments its
/// `launchway:` block lists, else in every ECS environment `launchway.yaml` declares.
fn add_sample_apps(
    file: &SourceFile,
    context: &SampleContext<'_>,
    apps: &mut BTreeMap<String, App>,
    declared_at: &BTreeMap<String, (String, Pos)>,
    diagnostics: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    let tree = match node::parse(&file.path, &file.bytes) {
        Ok(tree) => tree,
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            return;
        }
    };
    let mut reader = Reader { file: &file.path, diagnostics };
    let draft = gitops_sample::read(&mut reader, &tree);
    let target_of = |name: &str| context.environments.get(name).map(|env| &env.target).or(context.attempted.get(name));
    let targets: Vec<String> = match &draft.environments {
        Some(listed) => {
            let mut targets = Vec::new();
            for key in listed {
                match target_of(&key.name) {
                    _ if !context.declared.contains(&key.name) => reader.error(
                        key.pos,
                        "launchway.environments",
                        format!("environment {:?} is not declared in {ROOT_FILE}", key.name),
                    ),
                    Some(TargetSpec::Docker { .. }) => reader.error(
                        key.pos,
                        "launchway.environments",
                        format!(
                            "environment {:?} runs on Docker; the apps of {SAMPLE_FILE} are ECS services and rules",
                            key.name
                        ),
                    ),
                    _ => targets.push(key.name.clone()),
                }
            }
            targets
        }
        None => context
            .declared
            .iter()
            .filter(|name| matches!(target_of(name), Some(TargetSpec::Ecs(_))))
            .cloned()
            .collect(),
    };
    if draft.environments.is_none() && targets.is_empty() {
        reader.error(
            draft.settings_pos.unwrap_or(Pos { line: 1, column: 1 }),
            "",
            format!(
                "the apps of {SAMPLE_FILE} run on ECS, and {ROOT_FILE} declares no ECS environment: declare one, or list where they run with `launchway: {{environments: [..]}}`"
            ),
        );
    }
    for (key, spec) in draft.apps {
        if let Some((first_file, first)) = declared_at.get(&key.name) {
            reader.error(
                key.pos,
                "",
                format!("app {:?} is already declared at {}:{}:{}", key.name, first_file, first.line, first.column),
            );
            continue;
        }
        let runs_in: Vec<&str> = targets.iter().map(String::as_str).collect();
        for (name, from) in resolve::promotions_never_fed(context.environments, context.declared, &runs_in) {
            reader.error(
                draft.settings_pos.unwrap_or(key.pos),
                "launchway.environments",
                format!(
                    "{name} is deployed only by promotion from {from}, where the apps of {SAMPLE_FILE} do not run: add {from}"
                ),
            );
        }
        let specs: BTreeMap<String, Box<AppSpec>> =
            targets.iter().map(|name| (name.clone(), Box::new(spec.clone()))).collect();
        resolve::warn_about_floating_images(warnings, &file.path, &key, &key.name, &specs);
        apps.insert(key.name.clone(), sample_app(key, &file.path, specs));
    }
}

/// `promote_from` must name another declared environment, and promotions must not go
/// round in a circle.
fn check_promotions(draft: &FileDraft, diagnostics: &mut Vec<Diagnostic>) {
    // Every `promote_from` written, also in environments with other errors: all of a
    // manifest's problems are reported in one pass.
    let from: BTreeMap<&str, &str> = draft
        .attempted_promotions
        .iter()
        .map(|promotion| (promotion.env.name.as_str(), promotion.from.as_str()))
        .collect();
    for promotion in &draft.attempted_promotions {
        let (key, source, pos) = (&promotion.env, &promotion.from, promotion.pos);
        let path = format!("environments.{}.promote_from", key.name);
        if source == &key.name {
            diagnostics.push(Diagnostic::new(
                ROOT_FILE,
                pos,
                format!("{path}: an environment cannot promote from itself"),
            ));
        } else if !draft.environment_names.contains(source) {
            let known: Vec<&str> = draft.environment_names.iter().map(String::as_str).collect();
            let mut message = format!("{path}: environment {source:?} is not declared");
            if let Some(suggestion) = reader::closest(source, &known) {
                message.push_str(&format!(", did you mean {suggestion:?}?"));
            }
            diagnostics.push(Diagnostic::new(ROOT_FILE, pos, message));
        } else {
            // Follow the chain; coming back here is a cycle.
            let mut seen = vec![key.name.as_str()];
            let mut next = source.as_str();
            while let Some(upstream) = from.get(next) {
                seen.push(next);
                if *upstream == key.name {
                    seen.push(upstream);
                    diagnostics.push(Diagnostic::new(
                        ROOT_FILE,
                        pos,
                        format!("{path}: promotions go round in a circle ({})", seen.join(" ← ")),
                    ));
                    break;
                }
                if seen.contains(upstream) {
                    break;
                }
                next = upstream;
            }
        }
    }
}

/// A repo holding the gitops sample's `deployment.yaml` only: one environment on the
/// ambient AWS configuration.
fn load_sample(file: &SourceFile) -> Result<Validated, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();
    let tree = node::parse(&file.path, &file.bytes).map_err(|diagnostic| vec![diagnostic])?;
    let mut reader = Reader { file: &file.path, diagnostics: &mut diagnostics };
    let draft = gitops_sample::read(&mut reader, &tree);
    for key in draft.environments.iter().flatten().filter(|key| key.name != SAMPLE_ENVIRONMENT) {
        reader.error(
            key.pos,
            "launchway.environments",
            format!(
                "without a {ROOT_FILE}, the apps of {SAMPLE_FILE} deploy to the one environment {SAMPLE_ENVIRONMENT:?}; declare {:?} in a {ROOT_FILE} beside it",
                key.name
            ),
        );
    }
    let mut apps = BTreeMap::new();
    for (key, spec) in draft.apps {
        let specs = BTreeMap::from([(SAMPLE_ENVIRONMENT.to_owned(), Box::new(spec))]);
        resolve::warn_about_floating_images(&mut warnings, &file.path, &key, &key.name, &specs);
        apps.insert(key.name.clone(), sample_app(key, &file.path, specs));
    }
    let environment = Environment::new(SAMPLE_ENVIRONMENT, TargetSpec::Ecs(EcsTarget::default()));
    let environments = BTreeMap::from([(SAMPLE_ENVIRONMENT.to_owned(), environment)]);
    finish(Manifest { environments, apps, notifications: Vec::new() }, diagnostics, warnings)
}

fn finish(
    manifest: Manifest,
    mut diagnostics: Vec<Diagnostic>,
    mut warnings: Vec<Diagnostic>,
) -> Result<Validated, Vec<Diagnostic>> {
    if diagnostics.is_empty() {
        warnings.sort();
        warnings.dedup();
        Ok(Validated { manifest, warnings })
    } else {
        diagnostics.sort();
        diagnostics.dedup();
        Err(diagnostics)
    }
}

fn read_one(file: &SourceFile, is_root: bool, diagnostics: &mut Vec<Diagnostic>) -> Option<FileDraft> {
    match node::parse(&file.path, &file.bytes) {
        Ok(tree) => {
            let mut reader = Reader { file: &file.path, diagnostics };
            Some(schema::read_file(&mut reader, &tree, is_root))
        }
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            None
        }
    }
}

#[cfg(test)]
mod tests;

/// An app of the gitops sample's file: its images set there, never built, no order.
fn sample_app(key: reader::Key, file: &str, specs: BTreeMap<String, Box<AppSpec>>) -> App {
    App { name: key.name, file: file.to_owned(), specs, depends_on: Vec::new(), build: None, build_at: key.pos }
}
