//! `launchway demo`: the whole job on this machine, with nothing to set up.
//!
//! It builds an HTTP server image from this very binary (no registry is needed), makes
//! a throwaway config repo and database, deploys v1 of a three-replica service to the
//! local Docker engine, commits v2 and rolls it out, shows what runs and how long each
//! part took, and removes everything unless asked to keep it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use launchway_engine::{Engine, Selection};
use launchway_manifest::format_duration;
use launchway_store::RunState;
use launchway_target::ReplicaState;
use launchway_target_docker::{ExecutableImage, build_executable_image, label};

use super::deploy::{DeployReport, deploy};
use crate::cli::{Global, Output};
use crate::context::Context;
use crate::exit;

const APP: &str = "hello";
const IMAGE: &str = "launchway-demo/hello";

pub async fn run(context: &Context, keep: bool, with_failure: bool) -> Result<u8> {
    let started = Instant::now();
    let docker = context.targets.docker(None).await.context(
        "launchway demo deploys to the local Docker engine, and none answered (is the daemon running, and may this user use its socket?)",
    )?;

    let work =
        tempfile::Builder::new().prefix("launchway-demo-").tempdir().context("could not create a work directory")?;
    let work_dir = work.path().to_path_buf();
    // A fresh environment name per demo, so a kept earlier demo is never touched.
    let env = format!("demo-{:04x}", std::process::id() % 0x10000);
    let repo = work_dir.join("config.git");
    let db = work_dir.join("launchway.db");

    heading(&format!("1. building the demo image from this binary ({})", std::env::current_exe()?.display()));
    let build_started = Instant::now();
    let executable = std::env::current_exe().context("could not find this program's own file")?;
    for version in ["v1", "v2"] {
        let image = ExecutableImage {
            tag: format!("{IMAGE}:{version}"),
            executable: executable.clone(),
            args: vec!["sample-app".to_owned()],
            env: vec![("SAMPLE_MESSAGE".to_owned(), format!("hello from {version}"))],
        };
        build_executable_image(docker.client(), &image).await?;
        println!("   built {IMAGE}:{version}");
    }
    let build_time = build_started.elapsed();
    println!(
        "   {} (FROM scratch: the binary and the libraries it links, nothing pulled)",
        format_duration(build_time)
    );

    heading(&format!("2. a config repo at {}", repo.display()));
    let manifest_v1 = manifest(&env, "v1", None);
    let commit = commit_manifest(&repo, &manifest_v1, "deploy hello v1").await?;
    println!("   commit {} \"deploy hello v1\":", &commit[..10]);
    for line in manifest_v1.lines() {
        println!("   | {line}");
    }

    let mut demo = Context::new(Global {
        repo: repo.display().to_string(),
        git_ref: "HEAD".to_owned(),
        db: Some(db.display().to_string()),
        output: Output::Text,
        server: None,
        token: None,
        identity: context.global.identity.clone(),
    });
    demo.stop = context.stop.clone();
    let engine = demo.engine().await?;
    let selection = Selection { env: Some(env.clone()), apps: vec![APP.to_owned()] };

    heading("3. deploying v1: 3 replicas, health-checked");
    let first = deploy_head(&demo, &engine, &selection).await?;
    show_replicas(&engine, &env).await?;

    heading("4. committing v2 (a new image) and rolling it out: one replica at a time, never fewer than 3 healthy");
    let commit = commit_manifest(&repo, &manifest(&env, "v2", None), "deploy hello v2").await?;
    println!("   commit {} \"deploy hello v2\"", &commit[..10]);
    let second = deploy_head(&demo, &engine, &selection).await?;
    show_replicas(&engine, &env).await?;

    let mut third = None;
    if with_failure {
        heading(
            "5. committing a broken v3 (it crashes a second after turning healthy): caught while v2 still serves, rolled back",
        );
        let broken = manifest(&env, "v2", Some("SAMPLE_EXIT_AFTER: 1500ms"));
        let commit = commit_manifest(&repo, &broken, "deploy hello v3 (broken)").await?;
        println!("   commit {} \"deploy hello v3 (broken)\"", &commit[..10]);
        third = Some(deploy_head(&demo, &engine, &selection).await?);
        show_replicas(&engine, &env).await?;
    }

    heading("timings");
    let row = |what: &str, took: Duration| println!("   {what:<28} {:>7}", format_duration(took));
    row("image build", build_time);
    row("v1: 3 new replicas", Duration::from_millis(first.elapsed_ms));
    row("v2: rolling update", Duration::from_millis(second.elapsed_ms));
    if let Some(third) = &third {
        row("v3: failed and rolled back", Duration::from_millis(third.elapsed_ms));
    }
    row("whole demo", started.elapsed());

    let expected = [&first, &second].iter().all(|report| report.exit_code == exit::SUCCESS)
        && third.as_ref().is_none_or(|report| report.runs.iter().all(|run| run.state == RunState::RolledBack));

    if keep {
        let kept = work.keep();
        heading("kept");
        println!("   config repo  {}", kept.join("config.git").display());
        println!("   database     {}", kept.join("launchway.db").display());
        println!("   look around:");
        let flags =
            format!("--repo {} --db {}", kept.join("config.git").display(), kept.join("launchway.db").display());
        println!("     launchway status {flags}");
        println!("     launchway history {flags}");
        println!("     launchway history 2 {flags}");
        println!("     docker ps --filter label={}={env}", label::ENV);
        println!(
            "   clean up: docker rm -f $(docker ps -aq --filter label={}={env}); docker network rm launchway-{env}",
            label::ENV
        );
    } else {
        heading("cleaning up (pass --keep to look around instead)");
        clean_up(&demo, &env).await?;
        drop(work);
        println!("   removed the containers, the network, the repo and the database");
        println!("   the images {IMAGE}:v1 and :v2 stay, so the next demo starts faster (docker rmi them to remove)");
    }
    if expected { Ok(exit::SUCCESS) } else { Err(anyhow!("the demo did not go as expected; see the runs above")) }
}

fn heading(text: &str) {
    println!();
    println!("== {text}");
}

/// The demo's manifest: one service, three replicas, an HTTP health check, each release
/// watched for 3 s before it counts as verified. `misbehave` is an environment line for
/// the sample app (a crash, a failing health check).
fn manifest(env: &str, version: &str, misbehave: Option<&str>) -> String {
    let health_env = misbehave.map(|line| format!("\n    env:\n      {line}")).unwrap_or_default();
    format!(
        "# launchway demo: desired state of the demo environment
environments:
  {env}:
    target: docker
services:
  {APP}:
    image: {IMAGE}:{version}
    port: 8080{health_env}
    replicas: 3
    health:
      path: /healthz
      interval: 2s
      timeout: 1s
    settle_window: 3s              # each release is watched this long before it counts as good
    strategy:
      rolling: {{max_surge: 1, max_unavailable: 0}}
"
    )
}

async fn commit_manifest(repo: &Path, manifest: &str, message: &str) -> Result<String> {
    let repo = repo.to_path_buf();
    let manifest = manifest.to_owned();
    let message = message.to_owned();
    tokio::task::spawn_blocking(move || {
        launchway_source::commit_files(&repo, &[(launchway_manifest::ROOT_FILE, &manifest)], &message)
    })
    .await?
    .context("could not commit to the demo repo")
}

async fn deploy_head(demo: &Context, engine: &Engine, selection: &Selection) -> Result<DeployReport> {
    let loaded = demo.load().await?;
    deploy(demo, engine, &loaded, selection, false).await
}

/// Lists the replicas and asks each one over HTTP who it is.
async fn show_replicas(engine: &Engine, env: &str) -> Result<()> {
    let statuses = engine
        .status(
            &launchway_engine::DesiredSources::default(),
            &Selection { env: Some(env.to_owned()), apps: vec![APP.to_owned()] },
        )
        .await?;
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    for status in statuses {
        let Some(live) = status.live else { continue };
        let mut replicas = live.replicas;
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        for replica in replicas.iter().filter(|replica| replica.state == ReplicaState::Running) {
            let endpoint = replica.endpoints.first().cloned().unwrap_or_default();
            let answer = match client.get(format!("http://{endpoint}/")).send().await {
                Ok(response) => response.text().await.unwrap_or_default().trim().to_owned(),
                Err(error) => format!("no answer: {error}"),
            };
            println!("   {:<40} {endpoint:<17} says \"{answer}\"", replica.name);
        }
    }
    Ok(())
}

/// Removes every container and the network of the demo's environment.
async fn clean_up(demo: &Context, env: &str) -> Result<()> {
    demo.targets.docker(None).await?.remove_environment(env).await?;
    Ok(())
}
