//! From an app's draft to one spec per environment it deploys to, shaped for that
//! environment's target: a Docker service or task, or an ECS service or scheduled task.
//! Here live the checks that need the whole manifest (environment names, containers
//! named in overrides, rolling arithmetic) or files the manifest refers to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::build::AppBuild;
use crate::image_files::{self, ImageFile};
use crate::model::{
    AppSpec, ContainerSpec, DEFAULT_REPLICAS, EcsDefinition, EcsDeployment, EcsRunOnce, EcsServiceSpec, EcsTarget,
    EcsTaskSpec, EnvSource, Environment, HealthCheck, ScheduleRef, ServiceSpec, Strategy, TargetSpec,
    TaskDefinitionDocument, TaskSpec,
};
use crate::node::Pos;
use crate::reader::{self, Key, Reader};
use crate::schema::{Amount, EcsDraft, HealthDraft, OverrideDraft, Placement, RollingDraft, ServiceDraft, TaskDraft};
use crate::{Diagnostic, ROOT_FILE, RepoFiles, image, taskdef};

pub(crate) enum Draft<'d> {
    Service(&'d ServiceDraft),
    Task(&'d TaskDraft),
}

/// One app in one environment, as every resolution step needs it.
#[derive(Clone, Copy)]
struct AppAt<'a> {
    key: &'a Key,
    overrides: &'a OverrideDraft,
    /// `services.web`, for problems of the app.
    path: &'a str,
    /// `services.web in prod`, for problems of the app in this environment.
    env_path: &'a str,
    /// `services.web.overrides.prod`, for problems in what it overrides there.
    override_path: &'a str,
    /// `build:`, which sets the images of the containers it builds.
    build: Option<&'a (Pos, AppBuild)>,
}

/// Files read once for the whole manifest, whatever refers to them.
#[derive(Default)]
pub(crate) struct ReadFiles {
    documents: BTreeMap<String, Option<Value>>,
    image_files: BTreeMap<String, Option<ImageFile>>,
}

pub(crate) struct Resolver<'a> {
    pub reader: Reader<'a>,
    /// Environments that are valid.
    pub environments: &'a BTreeMap<String, Environment>,
    /// The target kinds of environments with errors of their own, so that their apps
    /// are still checked (the manifest is refused anyway).
    pub attempted: &'a BTreeMap<String, TargetSpec>,
    /// Every environment name declared, including those with errors of their own.
    pub declared: &'a BTreeSet<String>,
    pub warnings: &'a mut Vec<Diagnostic>,
    pub files: &'a dyn RepoFiles,
    pub read: &'a mut ReadFiles,
}

impl Resolver<'_> {
    pub fn resolve(&mut self, key: &Key, draft: Draft<'_>) -> Option<BTreeMap<String, Box<AppSpec>>> {
        let (kind, placement, build) = match draft {
            Draft::Service(service) => ("services", &service.placement, service.build.as_ref()),
            Draft::Task(task) => ("tasks", &task.placement, task.build.as_ref()),
        };
        let path = format!("{kind}.{}", key.name);
        let empty = OverrideDraft::default();
        let override_for = |name: &str| {
            placement.overrides.iter().find(|(key, _)| key.name == name).map_or(&empty, |(_, draft)| draft)
        };
        // Where it runs: the environments it lists, else every one declared.
        let targets: Vec<(&str, &OverrideDraft, Option<&Key>)> = match &placement.runs_in {
            None => self.declared.iter().map(|name| (name.as_str(), override_for(name), None)).collect(),
            Some(listed) => listed.iter().map(|key| (key.name.as_str(), override_for(&key.name), Some(key))).collect(),
        };
        let mut ok = true;
        for (override_key, _) in &placement.overrides {
            let name = override_key.name.as_str();
            if !self.declared.contains(name) {
                self.undeclared(override_key, &format!("{path}.overrides"));
                ok = false;
            } else if !targets.iter().any(|(target, _, _)| *target == name) {
                let listed: Vec<&str> = targets.iter().map(|(target, _, _)| *target).collect();
                self.reader.error(
                    override_key.pos,
                    &format!("{path}.overrides"),
                    format!(
                        "{} does not run in {name:?} (its environments are {}): add {name} to `environments`, or remove these overrides",
                        key.name,
                        listed.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let mut specs = BTreeMap::new();
        let mut warned_ecs = false;
        for (name, overrides, env_key) in targets {
            if !self.declared.contains(name) {
                let env_key = env_key.cloned().unwrap_or_else(|| key.clone());
                self.undeclared(&env_key, &format!("{path}.environments"));
                ok = false;
                continue;
            }
            // An environment with errors of its own (reported already) is checked against
            // the kind of target it meant; one whose kind is unknown cannot be.
            let target = match (self.environments.get(name), self.attempted.get(name)) {
                (Some(environment), _) => environment.target.clone(),
                (None, Some(attempted)) => attempted.clone(),
                (None, None) => {
                    ok = false;
                    continue;
                }
            };
            let env_path = format!("{path} in {name}");
            let override_path = format!("{path}.overrides.{name}");
            let at = AppAt { key, overrides, path: &path, env_path: &env_path, override_path: &override_path, build };
            let spec = match (&draft, &target) {
                (Draft::Service(service), TargetSpec::Docker { .. }) => self.docker_service(at, service),
                (Draft::Task(task), TargetSpec::Docker { .. }) => self.docker_task(at, task),
                (Draft::Service(service), TargetSpec::Ecs(target)) => {
                    if !warned_ecs {
                        self.warn_about_ignored_on_ecs(
                            key,
                            &path,
                            name,
                            service.containers.as_deref(),
                            service.health.is_some(),
                        );
                        warned_ecs = true;
                    }
                    self.ecs_service(at, service, target, name)
                }
                (Draft::Task(task), TargetSpec::Ecs(target)) => {
                    if !warned_ecs {
                        self.warn_about_ignored_on_ecs(key, &path, name, task.containers.as_deref(), false);
                        warned_ecs = true;
                    }
                    self.ecs_task(at, task, target)
                }
            };
            match spec {
                Some(spec) => {
                    specs.insert(name.to_owned(), Box::new(spec));
                }
                None => ok = false,
            }
        }
        if ok {
            self.check_promotions(key, placement, &path, &specs);
            warn_about_floating_images(self.warnings, self.reader.file, key, &path, &specs);
            warn_about_unwatched_releases(self.warnings, self.reader.file, key, &path, &specs);
        }
        ok.then_some(specs)
    }

    /// An environment fed by promotion gets the app only from its source environment:
    /// an app that runs there but not in the source would never be deployed.
    fn check_promotions(
        &mut self,
        key: &Key,
        placement: &Placement,
        path: &str,
        specs: &BTreeMap<String, Box<AppSpec>>,
    ) {
        let runs_in: Vec<&str> = specs.keys().map(String::as_str).collect();
        for (name, from) in promotions_never_fed(self.environments, self.declared, &runs_in) {
            self.reader.error(
                placement.runs_in_pos.unwrap_or(key.pos),
                path,
                format!(
                    "{} runs in {name}, which is deployed only by promotion from {from}, where {} does not run: nothing would ever reach {name}; add {from} to its environments",
                    key.name, key.name
                ),
            );
        }
    }

    fn undeclared(&mut self, key: &Key, path: &str) {
        let name = key.name.as_str();
        let known: Vec<&str> = self.declared.iter().map(String::as_str).collect();
        let mut message = format!("environment {name:?} is not declared in {ROOT_FILE}");
        if let Some(suggestion) = reader::closest(name, &known) {
            message.push_str(&format!(", did you mean {suggestion:?}?"));
        }
        self.reader.error(key.pos, path, message);
    }

    fn docker_service(&mut self, at: AppAt<'_>, draft: &ServiceDraft) -> Option<AppSpec> {
        if draft.containers_failed {
            return None;
        }
        let containers = self.docker_containers(at, draft.containers.as_deref(), draft.images_from.as_ref())?;
        let replicas = at.overrides.replicas.or(draft.replicas).unwrap_or(DEFAULT_REPLICAS);
        let strategy = match &draft.progressive {
            // An ingress written wrong was reported as it is.
            Some(_) if draft.ingress.is_none() && draft.ingress_written => return None,
            Some((pos, strategy)) if draft.ingress.is_none() => {
                self.reader.error(
                    *pos,
                    &format!("{}.strategy", at.path),
                    format!(
                        "{} moves traffic between releases through launchway's proxy: declare `ingress:` (the host port clients use)",
                        strategy.name()
                    ),
                );
                return None;
            }
            Some((pos, strategy)) if !strategy.gates().is_empty() => {
                self.reader.error(
                    *pos,
                    &format!("{}.strategy", at.path),
                    "`gates` are the pauses of ECS's own deployments; on Docker each traffic step's pause is its gate",
                );
                return None;
            }
            Some((pos, strategy))
                if strategy
                    .analysis()
                    .is_some_and(|analysis| analysis.cloudwatch.is_some() || !analysis.alarms.is_empty()) =>
            {
                self.reader.error(
                    *pos,
                    &format!("{}.strategy", at.path),
                    "CloudWatch metrics and alarms are read with an ECS environment's AWS credentials: \
                     on Docker, measure through `prometheus` or `http`",
                );
                return None;
            }
            Some((_, strategy)) => strategy.clone(),
            None => self.rolling(draft.strategy, replicas, at.env_path)?,
        };
        let health = draft.health.as_ref().map(|health| health_check(health, &containers[0]));
        Some(AppSpec::Service(ServiceSpec {
            containers,
            replicas,
            health,
            strategy,
            stop_grace_period: draft.stop_grace_period,
            settle_window: at.overrides.settle_window.or(draft.settle_window),
            ingress: draft.ingress.as_ref().map(|(_, ingress)| ingress.clone()),
        }))
    }

    fn docker_task(&mut self, at: AppAt<'_>, draft: &TaskDraft) -> Option<AppSpec> {
        let containers = if draft.containers_failed {
            None
        } else {
            self.docker_containers(at, draft.containers.as_deref(), draft.images_from.as_ref())
        };
        let schedule = at.overrides.schedule.clone().or_else(|| draft.schedule.clone());
        if draft.on_deploy == Some(false) {
            return None;
        }
        if draft.on_deploy == Some(true) {
            if at.overrides.schedule.is_some() {
                self.reader.error(
                    at.key.pos,
                    at.override_path,
                    "the task runs on deploy (`run: on_deploy`): it takes no schedule",
                );
                return None;
            }
            return Some(AppSpec::Task(TaskSpec { schedule: None, containers: containers?, timeout: draft.timeout }));
        }
        if schedule.is_none() {
            self.reader.error(
                at.key.pos,
                at.path,
                "missing field \"schedule\" (for example \"0 3 * * *\" or \"rate(5 minutes)\"), or `run: on_deploy` for a task run once each time it changes, such as a migration",
            );
        }
        Some(AppSpec::Task(TaskSpec { schedule: Some(schedule?), containers: containers?, timeout: draft.timeout }))
    }

    /// A Docker app's containers with images from `images_from` and the environment's
    /// overrides applied.
    fn docker_containers(
        &mut self,
        at: AppAt<'_>,
        containers: Option<&[ContainerSpec]>,
        images_from: Option<&(Pos, String)>,
    ) -> Option<Vec<ContainerSpec>> {
        let mut containers = match (containers, images_from) {
            (Some(containers), _) => containers.to_vec(),
            // Only `images_from`: its containers, as CodePipeline's file names them (one
            // named as the app for an imageDetail.json).
            (None, Some((pos, file))) => {
                let named = self.images_from_file(*pos, file, &[], at.path)?;
                named
                    .into_keys()
                    .map(|name| ContainerSpec {
                        // "": an imageDetail.json's one image, for no container in particular.
                        name: if name.is_empty() { at.key.name.clone() } else { name },
                        image: String::new(),
                        command: None,
                        entrypoint: None,
                        env: BTreeMap::new(),
                        port: None,
                    })
                    .collect()
            }
            // Only `build`: the containers it builds.
            (None, None) if at.build.is_some() => at
                .build
                .into_iter()
                .flat_map(|(_, build)| build.images.keys())
                .map(|name| ContainerSpec {
                    name: name.clone(),
                    image: String::new(),
                    command: None,
                    entrypoint: None,
                    env: BTreeMap::new(),
                    port: None,
                })
                .collect(),
            (None, None) => {
                self.reader.error(
                    at.key.pos,
                    at.path,
                    "missing field \"image\" (or a `containers` mapping, `images_from` or `build`)",
                );
                return None;
            }
        };
        let names: Vec<String> = containers.iter().map(|c| c.name.clone()).collect();
        self.built_containers_exist(at, &names, false)?;
        let mut images = BTreeMap::new();
        if let Some((pos, file)) = images_from {
            images = self.images_from_file(*pos, file, &names, at.path)?;
        }
        images.extend(self.override_images(at.overrides, &names, at.override_path)?);
        for container in &mut containers {
            if let Some(image) = images.remove(&container.name) {
                container.image = image;
            }
            container.env.extend(at.overrides.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.every_container_has_an_image(at, &containers, images_from)?;
        Some(containers)
    }

    /// Every container `build:` names is one of the app's (`names`); on ECS, each built
    /// image names the repository ECS will pull it from.
    fn built_containers_exist(&mut self, at: AppAt<'_>, names: &[String], ecs: bool) -> Option<()> {
        let Some((pos, build)) = at.build else {
            return Some(());
        };
        let mut ok = true;
        let known: Vec<&str> = names.iter().map(String::as_str).collect();
        for (container, image) in &build.images {
            if !known.contains(&container.as_str()) {
                let mut message = format!("{} has no container {container:?} to build", at.key.name);
                match reader::closest(container, &known) {
                    Some(suggestion) => message.push_str(&format!(", did you mean {suggestion:?}?")),
                    None => message.push_str(&format!(" (its containers: {})", known.join(", "))),
                }
                self.reader.error(*pos, &format!("{}.build.images", at.path), message);
                ok = false;
            } else if ecs && image.repository.is_none() {
                self.reader.error(
                    *pos,
                    &format!("{}.build.images.{container}", at.path),
                    format!(
                        "{} needs a `repository` to push {container:?} to: ECS pulls images from a registry",
                        at.env_path
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(())
    }

    /// A container that left out `image` for `images_from` to set, which it did not.
    fn every_container_has_an_image(
        &mut self,
        at: AppAt<'_>,
        containers: &[ContainerSpec],
        images_from: Option<&(Pos, String)>,
    ) -> Option<()> {
        let mut ok = true;
        let built = |name: &str| at.build.is_some_and(|(_, build)| build.images.contains_key(name));
        for container in containers.iter().filter(|container| container.image.is_empty() && !built(&container.name)) {
            let (pos, file) = images_from.map_or((at.key.pos, ""), |(pos, file)| (*pos, file.as_str()));
            self.reader.error(
                pos,
                &format!("{}.images_from", at.path),
                format!("{file} sets no image for container {:?}, which declares no `image`", container.name),
            );
            ok = false;
        }
        ok.then_some(())
    }

    fn ecs_service(
        &mut self,
        at: AppAt<'_>,
        draft: &ServiceDraft,
        target: &EcsTarget,
        environment: &str,
    ) -> Option<AppSpec> {
        if draft.containers_failed {
            return None;
        }
        if let Some((pos, _)) = &draft.ingress {
            self.reader.error(
                *pos,
                &format!("{}.ingress", at.path),
                format!(
                    "{} runs on ECS, where traffic comes through its load balancer: `ingress` is for Docker environments",
                    at.env_path
                ),
            );
            return None;
        }
        let strategy = match &draft.progressive {
            // Docker's default bake (for its instant way back) is not ECS's to take.
            Some((pos, Strategy::BlueGreen { timeout, analysis, gates, .. })) if !draft.bake_written => {
                let strategy = Strategy::BlueGreen {
                    bake: Duration::ZERO,
                    timeout: *timeout,
                    analysis: analysis.clone(),
                    gates: gates.clone(),
                };
                Some(self.ecs_strategy(*pos, &strategy, &format!("{}.strategy", at.path))?)
            }
            Some((pos, strategy)) => Some(self.ecs_strategy(*pos, strategy, &format!("{}.strategy", at.path))?),
            None => None,
        };
        let ecs = draft.ecs.as_ref();
        let definition = self.ecs_definition(at, draft.containers.as_deref(), draft.images_from.as_ref(), ecs);
        let cluster = self.ecs_cluster(at, ecs, target, environment);
        let desired_count = at.overrides.replicas.or(draft.replicas);
        let deployment = self.ecs_deployment(draft, ecs, desired_count, at.env_path);
        Some(AppSpec::EcsService(EcsServiceSpec {
            cluster: cluster?,
            service: ecs.and_then(|ecs| ecs.service.clone()).unwrap_or_else(|| at.key.name.clone()),
            definition: definition?,
            desired_count,
            deployment: deployment?,
            timeout: draft.strategy.timeout,
            settle_window: at.overrides.settle_window.or(draft.settle_window),
            health_check_grace_period: ecs.and_then(|ecs| ecs.health_check_grace_period),
            strategy,
            alarms: ecs.and_then(|ecs| ecs.alarms.clone()),
            load_balancer: ecs.and_then(|ecs| ecs.load_balancer.clone()),
        }))
    }

    /// A progressive strategy as ECS runs it natively: ECS counts bake times in whole
    /// minutes, shifts a canary once and a linear deployment in steps of at least 3%.
    /// launchway checks through the deployment's pauses (`gates`), not through replicas.
    fn ecs_strategy(&mut self, pos: Pos, strategy: &Strategy, path: &str) -> Option<Strategy> {
        let mut ok = true;
        let minutes = |reader: &mut Reader<'_>, what: &str, duration: Duration, max: u64| {
            let whole = duration.as_secs().is_multiple_of(60) && duration.subsec_nanos() == 0;
            if !whole || duration.as_secs() / 60 > max {
                reader.error(
                    pos,
                    path,
                    format!(
                        "ECS counts {what} in whole minutes, up to {max}: {} is not",
                        crate::duration::format_duration(duration)
                    ),
                );
                return false;
            }
            true
        };
        match strategy {
            Strategy::Rolling { .. } => {}
            Strategy::BlueGreen { bake, .. } => ok &= minutes(&mut self.reader, "bake", *bake, 1440),
            Strategy::Canary { steps, .. } => {
                let shape_ok = match steps.as_slice() {
                    [canary] => canary.weight < 100,
                    [canary, all] => canary.weight < 100 && all.weight == 100,
                    _ => false,
                };
                if !shape_ok {
                    self.reader.error(
                        pos,
                        path,
                        "ECS shifts a canary once: one step (its weight under 100, its pause ECS's canary bake time), \
                         optionally followed by {weight: 100, pause: <bake>}; for more steps, use linear",
                    );
                    return None;
                }
                for step in steps {
                    ok &= minutes(&mut self.reader, "a canary's pause", step.pause, 1440);
                }
                if steps.iter().any(|step| step.approval) {
                    self.reader.error(
                        pos,
                        path,
                        "ECS times its canary itself: wait for an approval at a gate instead, \
                         like gates: [{at: post_production_traffic_shift, approval: true}]",
                    );
                    ok = false;
                }
            }
            Strategy::Linear { step, pause, bake, .. } => {
                if *step < 3 {
                    self.reader.error(
                        pos,
                        path,
                        format!("ECS moves linear traffic in steps of 3% to 99%, not {step}%"),
                    );
                    ok = false;
                }
                ok &= minutes(&mut self.reader, "a linear step's pause", *pause, 1440);
                ok &= minutes(&mut self.reader, "bake", *bake, 1440);
            }
        }
        for gate in strategy.gates() {
            if gate.timeout.is_zero() {
                self.reader.error(
                    pos,
                    path,
                    format!("the gate at {} needs a timeout of a minute or more", gate.at.as_str()),
                );
                ok = false;
            }
            ok &= minutes(&mut self.reader, "a gate's timeout", gate.timeout, 20160);
        }
        if strategy.analysis().and_then(|analysis| analysis.http.as_ref()).is_some_and(|http| http.url.is_none()) {
            self.reader.error(
                pos,
                path,
                "on ECS, an `http` analysis asks one address, the load balancer's test listener: give `url`, \
                 like \"https://test.example.com:8443/healthz\" (`path` alone asks each replica, on Docker)",
            );
            ok = false;
        }
        if strategy.analysis().is_some() && strategy.gates().is_empty() {
            self.reader.error(
                pos,
                path,
                "on ECS the analysis runs while the deployment waits at its gates: add `gates:`, \
                 like [{at: post_production_traffic_shift, hold: 5m}]",
            );
            ok = false;
        }
        ok.then(|| strategy.clone())
    }

    fn ecs_task(&mut self, at: AppAt<'_>, draft: &TaskDraft, target: &EcsTarget) -> Option<AppSpec> {
        if draft.containers_failed {
            return None;
        }
        if draft.on_deploy == Some(false) {
            return None;
        }
        let ecs = draft.ecs.as_ref();
        let definition = self.ecs_definition(at, draft.containers.as_deref(), draft.images_from.as_ref(), ecs);
        let rule = ecs.and_then(|ecs| ecs.rule.clone());
        let schedule =
            ecs.and_then(|ecs| Some(ScheduleRef { name: ecs.schedule.clone()?, group: ecs.schedule_group.clone() }));
        let cluster = ecs.and_then(|ecs| ecs.cluster.clone()).or_else(|| target.cluster.clone());
        if draft.on_deploy == Some(true) {
            return self.ecs_task_on_deploy(at, draft, ecs, definition?, cluster, rule.is_some() || schedule.is_some());
        }
        if ecs.is_some_and(|ecs| ecs.launch_type.is_some() || ecs.network.is_some()) {
            self.reader.error(
                ecs.map_or(at.key.pos, |ecs| ecs.pos),
                at.path,
                "ecs.launch_type and ecs.network say how a task run on deploy starts (`run: on_deploy`); a scheduled task starts as its rule or schedule says",
            );
            return None;
        }
        if rule.is_none() && schedule.is_none() {
            self.reader.error(
                ecs.map_or(at.key.pos, |ecs| ecs.pos),
                at.path,
                "on ECS a scheduled task runs from an EventBridge rule or Scheduler schedule: name it with ecs.rule or ecs.schedule",
            );
            return None;
        }
        Some(AppSpec::EcsTask(EcsTaskSpec { definition: definition?, rule, schedule, cluster, on_deploy: None }))
    }

    /// An ECS task run once on deploy (a migration): RunTask in its cluster, with a
    /// whole task definition from the repo (nothing runs it yet to take one from).
    fn ecs_task_on_deploy(
        &mut self,
        at: AppAt<'_>,
        draft: &TaskDraft,
        ecs: Option<&EcsDraft>,
        definition: EcsDefinition,
        cluster: Option<String>,
        scheduled: bool,
    ) -> Option<AppSpec> {
        let pos = ecs.map_or(at.key.pos, |ecs| ecs.pos);
        let mut ok = true;
        if scheduled {
            self.reader.error(
                pos,
                at.path,
                "the task runs on deploy (`run: on_deploy`): it takes no ecs.rule or ecs.schedule",
            );
            ok = false;
        }
        if definition.document.is_none() {
            self.reader.error(
                pos,
                at.path,
                "a task run on deploy on ECS needs ecs.task_definition (a whole task definition: nothing runs it yet to take one from)",
            );
            ok = false;
        }
        if cluster.is_none() {
            self.reader.error(
                pos,
                at.path,
                "no ECS cluster to run the task in: set ecs.cluster on the app, or cluster on the environment's target",
            );
            ok = false;
        }
        let on_deploy = EcsRunOnce {
            launch_type: ecs.and_then(|ecs| ecs.launch_type.clone()),
            network: ecs.and_then(|ecs| ecs.network.clone()),
            timeout: draft.timeout,
        };
        let spec = EcsTaskSpec { definition, rule: None, schedule: None, cluster, on_deploy: Some(on_deploy) };
        ok.then_some(AppSpec::EcsTask(spec))
    }

    fn ecs_cluster(
        &mut self,
        at: AppAt<'_>,
        ecs: Option<&EcsDraft>,
        target: &EcsTarget,
        environment: &str,
    ) -> Option<String> {
        let cluster = ecs.and_then(|ecs| ecs.cluster.clone()).or_else(|| target.cluster.clone());
        if cluster.is_none() {
            self.reader.error(
                at.key.pos,
                at.path,
                format!(
                    "no ECS cluster: set ecs.cluster on the app, or cluster on environment {environment:?}'s target"
                ),
            );
        }
        cluster
    }

    /// The task definition an ECS app wants: images to set, and the document from the
    /// config repo when it names one.
    fn ecs_definition(
        &mut self,
        at: AppAt<'_>,
        containers: Option<&[ContainerSpec]>,
        images_from: Option<&(Pos, String)>,
        ecs: Option<&EcsDraft>,
    ) -> Option<EcsDefinition> {
        let AppAt { key, overrides, path, override_path, .. } = at;
        let document = match ecs.and_then(|ecs| ecs.task_definition.as_ref()) {
            Some((pos, file)) => Some((file.clone(), self.task_definition(*pos, file, path)?)),
            None => None,
        };
        // Containers images may name: the app's, else the document's.
        let mut names: Vec<String> = containers.unwrap_or_default().iter().map(|c| c.name.clone()).collect();
        if names.is_empty()
            && let Some((_, document)) = &document
        {
            names = taskdef::container_names(document).into_iter().map(str::to_owned).collect();
        }
        // Only `build:`: the containers it builds, swapped into what runs.
        if names.is_empty()
            && let Some((_, build)) = at.build
        {
            names = build.images.keys().cloned().collect();
        }
        let mut images: BTreeMap<String, String> = containers
            .unwrap_or_default()
            .iter()
            .filter(|c| !c.image.is_empty())
            .map(|c| (c.name.clone(), c.image.clone()))
            .collect();
        if let Some((pos, file)) = images_from {
            images.extend(self.images_from_file(*pos, file, &names, path)?);
        }
        images.extend(self.override_images(overrides, &names, override_path)?);
        self.built_containers_exist(at, &names, true)?;
        let unset: Vec<ContainerSpec> = containers
            .unwrap_or_default()
            .iter()
            .filter(|c| !images.contains_key(&c.name))
            .map(|c| ContainerSpec { image: String::new(), ..c.clone() })
            .collect();
        self.every_container_has_an_image(at, &unset, images_from)?;
        match &document {
            Some((file, document)) => {
                let in_document = taskdef::container_names(document);
                let mut ok = true;
                for container in images.keys() {
                    if !in_document.contains(&container.as_str()) {
                        let mut message = format!("container {container:?} is not in {file}");
                        match reader::closest(container, &in_document) {
                            Some(suggestion) => message.push_str(&format!(", did you mean {suggestion:?}?")),
                            None => message.push_str(&format!(" (it has {})", in_document.join(", "))),
                        }
                        self.reader.error(key.pos, path, message);
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
            }
            None if images.is_empty() && at.build.is_none() => {
                self.reader.error(
                    key.pos,
                    path,
                    "an ECS app needs images to set (image, containers, images_from or build) or a whole ecs.task_definition",
                );
                return None;
            }
            None => {}
        }
        Some(EcsDefinition {
            images,
            document: document.map(|(path, document)| TaskDefinitionDocument { path, document }),
        })
    }

    fn ecs_deployment(
        &mut self,
        draft: &ServiceDraft,
        ecs: Option<&EcsDraft>,
        desired_count: Option<u32>,
        path: &str,
    ) -> Option<Option<EcsDeployment>> {
        let circuit_breaker = ecs.and_then(|ecs| ecs.circuit_breaker);
        if !draft.strategy_written && circuit_breaker.is_none() {
            return Some(None);
        }
        let mut deployment = EcsDeployment { maximum_percent: None, minimum_healthy_percent: None, circuit_breaker };
        if draft.strategy_written {
            let RollingDraft { max_surge, max_unavailable, pos, .. } = draft.strategy;
            let percent_of = |amount: Amount| -> Option<u32> {
                match amount {
                    Amount::Percent(percent) => Some(percent),
                    Amount::Count(count) => {
                        desired_count.map(|desired| if desired == 0 { 0 } else { (count * 100).div_ceil(desired) })
                    }
                }
            };
            let (Some(surge), Some(unavailable)) = (percent_of(max_surge), percent_of(max_unavailable)) else {
                self.reader.error(
                    pos,
                    path,
                    "on ECS, give max_surge and max_unavailable as percentages (ECS works in percent of the desired count), or set replicas",
                );
                return None;
            };
            if surge == 0 && unavailable == 0 {
                self.reader.error(
                    pos,
                    path,
                    "max_surge and max_unavailable both come to 0%: ECS could never replace a task",
                );
                return None;
            }
            deployment.maximum_percent = Some(100 + surge);
            deployment.minimum_healthy_percent = Some(100u32.saturating_sub(unavailable));
        }
        Some(Some(deployment))
    }

    /// A task definition file, read and checked once however many apps refer to it.
    fn task_definition(&mut self, pos: Pos, file: &str, path: &str) -> Option<Value> {
        if !self.read.documents.contains_key(file) {
            let document = self.read_json(pos, file, &format!("{path}.ecs.task_definition"), taskdef::normalize);
            self.read.documents.insert(file.to_owned(), document);
        }
        self.read.documents[file].clone()
    }

    /// Images from an `imagedefinitions.json` or `imageDetail.json` in the repo, by
    /// container, for an app whose containers are `names`.
    fn images_from_file(
        &mut self,
        pos: Pos,
        file: &str,
        names: &[String],
        path: &str,
    ) -> Option<BTreeMap<String, String>> {
        if !self.read.image_files.contains_key(file) {
            let parsed = self.read_json(pos, file, &format!("{path}.images_from"), image_files::parse);
            self.read.image_files.insert(file.to_owned(), parsed);
        }
        let entries: Vec<(String, String)> = match self.read.image_files[file].as_ref()? {
            ImageFile::Definitions(entries) => entries.clone(),
            ImageFile::Detail(image) => match names {
                [only] => vec![(only.clone(), image.clone())],
                // An ECS image swap whose containers are known only to the live task
                // definition: "" selects its only container, checked at deploy time.
                [] => vec![(String::new(), image.clone())],
                _ => {
                    self.reader.error(
                        pos,
                        &format!("{path}.images_from"),
                        format!(
                            "{file} holds one image for no container in particular, and this app has {} containers; use an imagedefinitions.json",
                            names.len()
                        ),
                    );
                    return None;
                }
            },
        };
        let mut images = BTreeMap::new();
        let mut ok = true;
        for (container, uri) in entries {
            if let Err(problem) = image::check(&uri) {
                self.reader.error(
                    pos,
                    &format!("{path}.images_from"),
                    format!("{file}: invalid image reference {uri:?}: {problem}"),
                );
                ok = false;
            } else if !names.is_empty() && !names.contains(&container) {
                self.reader.error(
                    pos,
                    &format!("{path}.images_from"),
                    format!(
                        "{file} sets the image of container {container:?}, which the app does not have (it has {})",
                        names.join(", ")
                    ),
                );
                ok = false;
            } else {
                images.insert(container, uri);
            }
        }
        ok.then_some(images)
    }

    /// A JSON file the manifest refers to, read and parsed; a problem in it is reported
    /// at its own line and column.
    fn read_json<T>(
        &mut self,
        pos: Pos,
        file: &str,
        path: &str,
        parse: fn(&[u8]) -> Result<T, taskdef::JsonProblem>,
    ) -> Option<T> {
        let bytes = self.read_referenced(pos, file, path)?;
        match parse(&bytes) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                let at = Pos { line: problem.line, column: problem.column };
                self.reader.diagnostics.push(Diagnostic::new(file, at, problem.message));
                None
            }
        }
    }

    fn read_referenced(&mut self, pos: Pos, file: &str, path: &str) -> Option<Vec<u8>> {
        match self.files.read(file) {
            Ok(Some(bytes)) => Some(bytes),
            Ok(None) => {
                self.reader.error(pos, path, format!("{file} is not in the config repo"));
                None
            }
            Err(problem) => {
                self.reader.error(pos, path, format!("could not read {file}: {problem}"));
                None
            }
        }
    }

    /// An environment's `image:`/`images:` overrides, by container. `image:` (stored
    /// with no container name) needs an app with exactly one container.
    fn override_images(
        &mut self,
        overrides: &OverrideDraft,
        names: &[String],
        path: &str,
    ) -> Option<BTreeMap<String, String>> {
        let mut images = BTreeMap::new();
        let mut ok = true;
        for (pos, container, image) in &overrides.images {
            if container.is_empty() {
                match names {
                    [only] => {
                        images.insert(only.clone(), image.clone());
                    }
                    _ => {
                        self.reader.error(
                            *pos,
                            path,
                            format!(
                                "this app has {} containers ({}); set their images with `images: {{name: image}}`",
                                names.len(),
                                names.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
            } else if names.is_empty() || names.contains(container) {
                images.insert(container.clone(), image.clone());
            } else {
                let known: Vec<&str> = names.iter().map(String::as_str).collect();
                let mut message = format!("no container named {container:?}");
                match reader::closest(container, &known) {
                    Some(suggestion) => message.push_str(&format!(", did you mean {suggestion:?}?")),
                    None => message.push_str(&format!(", the app has {}", known.join(", "))),
                }
                self.reader.error(*pos, &format!("{path}.images"), message);
                ok = false;
            }
        }
        ok.then_some(images)
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

    /// On ECS the task definition says how containers run; settings that mean something
    /// on Docker only are pointed out once per app, not silently dropped.
    fn warn_about_ignored_on_ecs(
        &mut self,
        key: &Key,
        path: &str,
        environment: &str,
        containers: Option<&[ContainerSpec]>,
        has_health: bool,
    ) {
        let mut ignored: Vec<&str> = Vec::new();
        for container in containers.unwrap_or_default() {
            if container.command.is_some() {
                ignored.push("command");
            }
            if container.entrypoint.is_some() {
                ignored.push("entrypoint");
            }
            if !container.env.is_empty() {
                ignored.push("env");
            }
            if container.port.is_some() {
                ignored.push("port");
            }
        }
        if has_health {
            ignored.push("health");
        }
        ignored.sort_unstable();
        ignored.dedup();
        if !ignored.is_empty() {
            self.warnings.push(Diagnostic::new(
                self.reader.file,
                key.pos,
                format!(
                    "{path}: {} {} not used in environment {environment:?} (ECS): the task definition says how containers run there",
                    ignored.join(", "),
                    if ignored.len() == 1 { "is" } else { "are" }
                ),
            ));
        }
    }
}

/// The environments among `runs_in` that only promotion deploys, each with its source,
/// when the app does not run in that source: nothing would ever reach them.
pub(crate) fn promotions_never_fed<'a>(
    environments: &'a BTreeMap<String, Environment>,
    declared: &BTreeSet<String>,
    runs_in: &[&'a str],
) -> Vec<(&'a str, &'a str)> {
    runs_in
        .iter()
        .filter_map(|name| match &environments.get(*name)?.source {
            EnvSource::Promotion { from } if declared.contains(from) && !runs_in.contains(&from.as_str()) => {
                Some((*name, from.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// A settle window of zero verifies a release the instant it is healthy: a crash a
/// second later goes unnoticed by the run. Allowed (tests, trivial apps), but said.
fn warn_about_unwatched_releases(
    warnings: &mut Vec<Diagnostic>,
    file: &str,
    key: &Key,
    path: &str,
    specs: &BTreeMap<String, Box<AppSpec>>,
) {
    let unwatched = specs.values().any(|spec| match &**spec {
        AppSpec::Service(service) => service.settle_window == Some(std::time::Duration::ZERO),
        AppSpec::EcsService(service) => service.settle_window == Some(std::time::Duration::ZERO),
        AppSpec::Task(_) | AppSpec::EcsTask(_) => false,
    });
    if unwatched {
        warnings.push(Diagnostic::new(
            file,
            key.pos,
            format!(
                "{path}: settle_window is 0s: a release counts as verified the moment it is healthy, so a crash seconds later would not roll it back"
            ),
        ));
    }
}

/// Sample apps come resolved already; they only get the floating-image check.
pub(crate) fn warn_about_floating_images(
    warnings: &mut Vec<Diagnostic>,
    file: &str,
    key: &Key,
    path: &str,
    specs: &BTreeMap<String, Box<AppSpec>>,
) {
    let floating: BTreeSet<&str> =
        specs.values().flat_map(|spec| spec.images().into_values()).filter(|image| image::is_floating(image)).collect();
    for image in floating {
        warnings.push(Diagnostic::new(
            file,
            key.pos,
            format!(
                "{path}: image {image:?} has no tag or uses \"latest\"; a new image under the same name is not a change launchway can see"
            ),
        ));
    }
}

fn health_check(draft: &HealthDraft, primary: &ContainerSpec) -> HealthCheck {
    HealthCheck {
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
