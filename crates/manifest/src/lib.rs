//! `launchway.yaml` (and `apps/*.yaml`) to validated desired state.
//!
//! This crate does no IO and no async: callers hand it file contents and get back either
//! a [`Manifest`] or every problem found, each as `file:line:col: message`.

mod image;
mod model;
mod node;
mod reader;
mod schedule;
mod schema;

use std::collections::{BTreeMap, BTreeSet};

pub use model::{
    App, AppSpec, ContainerSpec, Deployment, Environment, HealthCheck, Manifest, Revision, Schedule, ServiceSpec,
    Strategy, TargetSpec, TaskSpec,
};
pub use node::{MAX_FILE_BYTES, Pos};

use model::{ContainerSpec as Container, HealthCheck as Health};
use reader::{Key, Reader};
use schema::{Amount, FileDraft, HealthDraft, OverrideDraft, RollingDraft};

/// The file at the root of a config repo that declares environments (and usually apps).
pub const ROOT_FILE: &str = "launchway.yaml";
/// The folder whose `.yaml`/`.yml` files declare more apps.
pub const APPS_DIR: &str = "apps";

/// Whether a path in a config repo is part of the manifest.
pub fn is_manifest_path(path: &str) -> bool {
    path == ROOT_FILE || (path.starts_with("apps/") && (path.ends_with(".yaml") || path.ends_with(".yml")))
}

/// One file of a config repo: its path relative to the repo root and its bytes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub bytes: Vec<u8>,
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

/// Validates a config repo's manifest files.
///
/// # Errors
/// Every problem found in every file, sorted by file and position. Nothing is returned
/// for a manifest with any problem: a half-valid manifest must never be deployed.
pub fn load(files: &[SourceFile]) -> Result<Validated, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();

    let Some(root) = files.iter().find(|file| file.path == ROOT_FILE) else {
        return Err(vec![Diagnostic::new(
            ROOT_FILE,
            Pos { line: 1, column: 1 },
            "not found at the root of the config repo; it declares the environments".to_owned(),
        )]);
    };
    let root_draft = read_one(root, true, &mut diagnostics);
    let mut app_files: Vec<&SourceFile> = files.iter().filter(|file| file.path != ROOT_FILE).collect();
    app_files.sort_by(|a, b| a.path.cmp(&b.path));
    let app_drafts: Vec<(&SourceFile, FileDraft)> =
        app_files.into_iter().filter_map(|file| Some((file, read_one(file, false, &mut diagnostics)?))).collect();

    let mut environments = BTreeMap::new();
    if let Some(draft) = &root_draft {
        for (key, target) in &draft.environments {
            environments.insert(key.name.clone(), Environment { name: key.name.clone(), target: target.clone() });
        }
        if draft.environment_names.is_empty() {
            diagnostics.push(Diagnostic::new(
                ROOT_FILE,
                Pos { line: 1, column: 1 },
                "declare at least one environment under `environments:`".to_owned(),
            ));
        }
    }

    let environment_names: BTreeSet<String> =
        root_draft.iter().flat_map(|draft| draft.environment_names.iter().cloned()).collect();
    let mut apps: BTreeMap<String, App> = BTreeMap::new();
    let mut declared_at: BTreeMap<String, (String, Pos)> = BTreeMap::new();
    let drafts = root_draft.iter().map(|draft| (root, draft)).chain(app_drafts.iter().map(|(f, d)| (*f, d)));
    for (file, draft) in drafts {
        let mut resolver = Resolver {
            reader: Reader { file: &file.path, diagnostics: &mut diagnostics },
            environments: &environment_names,
            warnings: &mut warnings,
        };
        let declared = draft
            .services
            .iter()
            .map(|(key, service)| (key, Draft::Service(service)))
            .chain(draft.tasks.iter().map(|(key, task)| (key, Draft::Task(task))));
        for (key, app_draft) in declared {
            if let Some((first_file, first)) = declared_at.get(&key.name) {
                resolver.reader.error(
                    key.pos,
                    "",
                    format!("app {:?} is already declared at {}:{}:{}", key.name, first_file, first.line, first.column),
                );
                continue;
            }
            declared_at.insert(key.name.clone(), (file.path.clone(), key.pos));
            if let Some(specs) = resolver.resolve(key, app_draft) {
                apps.insert(key.name.clone(), App { name: key.name.clone(), file: file.path.clone(), specs });
            }
        }
    }

    if diagnostics.is_empty() {
        warnings.sort();
        Ok(Validated { manifest: Manifest { environments, apps }, warnings })
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

enum Draft<'d> {
    Service(&'d schema::ServiceDraft),
    Task(&'d schema::TaskDraft),
}

/// Turns an app draft into one spec per environment, checking what needs the whole
/// manifest: environment names, container names in overrides, rolling arithmetic.
struct Resolver<'a, 'd> {
    reader: Reader<'a>,
    /// Every environment name declared, including those with errors of their own.
    environments: &'d BTreeSet<String>,
    warnings: &'a mut Vec<Diagnostic>,
}

impl Resolver<'_, '_> {
    fn resolve(&mut self, key: &Key, draft: Draft<'_>) -> Option<BTreeMap<String, AppSpec>> {
        let (kind, overrides) = match draft {
            Draft::Service(service) => ("services", &service.environments),
            Draft::Task(task) => ("tasks", &task.environments),
        };
        let path = format!("{kind}.{}", key.name);
        let empty = OverrideDraft::default();
        let targets: Vec<(&str, &OverrideDraft, Option<&Key>)> = match overrides {
            None => self.environments.iter().map(|name| (name.as_str(), &empty, None)).collect(),
            Some(overrides) => overrides.iter().map(|(key, draft)| (key.name.as_str(), draft, Some(key))).collect(),
        };
        let mut specs = BTreeMap::new();
        let mut ok = true;
        for (environment, override_draft, key) in targets {
            if !self.environments.contains(environment) {
                let known: Vec<&str> = self.environments.iter().map(String::as_str).collect();
                let pos = key.map_or(Pos::default(), |key| key.pos);
                let mut message = format!("environment {environment:?} is not declared in {ROOT_FILE}");
                if let Some(suggestion) = reader::closest(environment, &known) {
                    message.push_str(&format!(", did you mean {suggestion:?}?"));
                }
                self.reader.error(pos, &format!("{path}.environments"), message);
                ok = false;
                continue;
            }
            let env_path = format!("{path}.environments.{environment}");
            let spec = match draft {
                Draft::Service(service) => self.service_spec(service, override_draft, &env_path),
                Draft::Task(task) => self.task_spec(task, override_draft, &env_path),
            };
            match spec {
                Some(spec) => {
                    specs.insert(environment.to_owned(), spec);
                }
                None => ok = false,
            }
        }
        if ok {
            self.warn_about_floating_images(key, &path, &specs);
        }
        ok.then_some(specs)
    }

    fn service_spec(&mut self, draft: &schema::ServiceDraft, overrides: &OverrideDraft, path: &str) -> Option<AppSpec> {
        let containers = self.apply_overrides(&draft.containers, overrides, path)?;
        let replicas = overrides.replicas.unwrap_or(draft.replicas);
        let strategy = self.rolling(draft.strategy, replicas, path)?;
        let health = draft.health.as_ref().map(|health| health_check(health, &containers[0]));
        Some(AppSpec::Service(ServiceSpec {
            containers,
            replicas,
            health,
            strategy,
            stop_grace_period: draft.stop_grace_period,
        }))
    }

    fn task_spec(&mut self, draft: &schema::TaskDraft, overrides: &OverrideDraft, path: &str) -> Option<AppSpec> {
        let containers = self.apply_overrides(&draft.containers, overrides, path)?;
        Some(AppSpec::Task(TaskSpec {
            schedule: overrides.schedule.clone().unwrap_or_else(|| draft.schedule.clone()),
            containers,
            timeout: draft.timeout,
        }))
    }

    fn apply_overrides(
        &mut self,
        containers: &[Container],
        overrides: &OverrideDraft,
        path: &str,
    ) -> Option<Vec<Container>> {
        let mut containers = containers.to_vec();
        let mut ok = true;
        for (pos, container_name, image) in &overrides.images {
            // `image:` (stored with no container name) only makes sense with one container.
            let target = if container_name.is_empty() {
                if containers.len() != 1 {
                    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                    self.reader.error(
                        *pos,
                        path,
                        format!(
                            "this app has {} containers ({}); set their images with `images: {{name: image}}`",
                            containers.len(),
                            names.join(", ")
                        ),
                    );
                    ok = false;
                    continue;
                }
                containers.first_mut()
            } else {
                containers.iter_mut().find(|c| &c.name == container_name)
            };
            match target {
                Some(container) => container.image = image.clone(),
                None => {
                    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                    let mut message = format!("no container named {container_name:?}");
                    match reader::closest(container_name, &names) {
                        Some(suggestion) => message.push_str(&format!(", did you mean {suggestion:?}?")),
                        None => message.push_str(&format!(", the app has {}", names.join(", "))),
                    }
                    self.reader.error(*pos, &format!("{path}.images"), message);
                    ok = false;
                }
            }
        }
        for container in &mut containers {
            container.env.extend(overrides.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        ok.then_some(containers)
    }

    fn rolling(&mut self, draft: RollingDraft, replicas: u32, path: &str) -> Option<Strategy> {
        let max_surge = match draft.max_surge {
            Amount::Count(count) => count,
            Amount::Percent(percent) => (replicas * percent).div_ceil(100),
        };
        let max_unavailable = match draft.max_unavailable {
            Amount::Count(count) => count,
            Amount::Percent(percent) => replicas * percent / 100,
        };
        if replicas > 0 && max_surge == 0 && max_unavailable == 0 {
            self.reader.error(
                draft.pos,
                path,
                format!(
                    "with {replicas} replicas, max_surge and max_unavailable both come to 0, so a rolling update could never start or stop a replica"
                ),
            );
            return None;
        }
        Some(Strategy::Rolling { max_surge, max_unavailable, timeout: draft.timeout })
    }

    fn warn_about_floating_images(&mut self, key: &Key, path: &str, specs: &BTreeMap<String, AppSpec>) {
        let floating: BTreeSet<&str> = specs
            .values()
            .flat_map(|spec| spec.containers())
            .map(|container| container.image.as_str())
            .filter(|image| image::is_floating(image))
            .collect();
        for image in floating {
            self.warnings.push(Diagnostic::new(
                self.reader.file,
                key.pos,
                format!(
                    "{path}: image {image:?} has no tag or uses \"latest\"; a new image under the same name is not a change launchway can see"
                ),
            ));
        }
    }
}

fn health_check(draft: &HealthDraft, primary: &Container) -> Health {
    Health {
        path: draft.path.clone(),
        // read_service refused a health check with neither port.
        port: draft.port.or(primary.port).unwrap_or_default(),
        interval: draft.interval,
        start_interval: draft.start_interval,
        timeout: draft.timeout,
        start_period: draft.start_period,
        healthy_threshold: draft.healthy_threshold,
        unhealthy_threshold: draft.unhealthy_threshold,
    }
}

#[cfg(test)]
mod tests;
