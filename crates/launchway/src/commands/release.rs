//! `launchway release publish`: CI hands over the images it built, and nothing else.

use anyhow::{Context as _, Result, anyhow, bail};
use launchway_engine::Selection;
use launchway_manifest::EnvSource;
use launchway_store::{NewEvent, Published, now_ms};
use serde_json::{Value, json};

use super::deploy::deploy;
use crate::cli::{Output, ReleaseCommand};
use crate::context::Context;
use crate::exit;
use crate::output::print_json;

pub async fn run(context: &Context, command: ReleaseCommand) -> Result<u8> {
    let ReleaseCommand::Publish { app, env, file, commit, author, retry } = command;
    let bytes = std::fs::read(&file).with_context(|| format!("could not read {}", file.display()))?;
    let parsed: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!("{} is not JSON (expected imagedefinitions.json or imageDetail.json)", file.display())
    })?;

    if let Some(server) = context.server()? {
        let body = json!({"app": app, "env": env, "file": parsed, "commit": commit, "author": author, "retry": retry});
        let answer = server.post("/api/v1/releases", body).await?;
        match context.output() {
            Output::Json => print_json(&answer),
            Output::Text => {
                println!("published {} for {app} in {env}", file.display());
                for run in answer["runs"].as_array().into_iter().flatten() {
                    let what = match run["decision"].as_str().unwrap_or_default() {
                        "started" => {
                            format!("run {} started: {}", run["run"], run["plan"].as_str().unwrap_or_default())
                        }
                        "waiting_for_approval" => format!("run {} waits for approval", run["run"]),
                        "unchanged" => "already running these images".to_owned(),
                        other => other.replace('_', " "),
                    };
                    println!(
                        "  {}@{}  {what}",
                        run["app"].as_str().unwrap_or_default(),
                        run["env"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        return Ok(exit::SUCCESS);
    }

    // Local: the same checks the server makes, then a deploy of that one app.
    let loaded = context.load().await?;
    let environment = loaded
        .manifest
        .environments
        .get(&env)
        .ok_or_else(|| anyhow!("environment {env:?} is not declared in the manifest"))?;
    if let EnvSource::Promotion { from } = &environment.source {
        bail!("{env} only takes releases promoted from {from}; publish to {from}");
    }
    let spec = loaded
        .manifest
        .apps
        .get(&app)
        .and_then(|declared| declared.specs.get(&env))
        .ok_or_else(|| anyhow!("app {app:?} is not declared in {env}"))?;
    let images = launchway_manifest::published_images_for(&bytes, &app, spec)
        .map_err(|message| anyhow!("{}: {message}", file.display()))?;
    let engine = context.engine().await?;
    let by = context.identity(None);
    engine
        .store()
        .publish_images(Published {
            app: app.clone(),
            env: env.clone(),
            images: images.clone(),
            published_by: by.clone(),
            published_at: now_ms(),
            commit: commit.clone(),
            author: author.clone(),
        })
        .await?;
    engine
        .record(NewEvent {
            run_id: None,
            app: Some(app.clone()),
            env: Some(env.clone()),
            kind: "release.published".to_owned(),
            message: format!("{by} published {} for {app} in {env} (cli)", file.display()),
            data: json!({"images": images, "by": by, "commit": commit, "author": author, "retry": retry}),
        })
        .await?;
    let selection = Selection { env: Some(env), apps: vec![app] };
    let report = deploy(context, &engine, &loaded, &selection, retry).await?;
    if context.output() == Output::Json {
        print_json(&report);
    }
    Ok(report.exit_code)
}
