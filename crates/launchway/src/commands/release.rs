//! `launchway release publish`: CI hands over the images it built, and nothing else.

use anyhow::{Context as _, Result, anyhow, bail};
use launchway_api::{DecisionKind, PublishRequest, ReconcileAnswer, ReconcileStatus};
use launchway_engine::Selection;
use launchway_manifest::EnvSource;
use launchway_store::{AuditKind, EventBody, NewEvent, Published, now_ms};
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
        let body = PublishRequest { app: app.clone(), env: env.clone(), file: parsed, commit, author, retry };
        let answer: ReconcileAnswer = server.post("/api/v1/releases", &body).await?;
        match context.output() {
            Output::Json => print_json(&answer),
            Output::Text => {
                println!("published {} for {app} in {env}", file.display());
                if answer.status == ReconcileStatus::Accepted {
                    println!("  the server is still deciding: `launchway --server … history` shows the runs");
                }
                for decision in &answer.runs {
                    let run = decision.run.unwrap_or_default();
                    let what = match decision.decision {
                        DecisionKind::Started => {
                            format!("run {run} started: {}", decision.plan.as_deref().unwrap_or(""))
                        }
                        DecisionKind::WaitingForApproval => {
                            format!("run {run} waits for approval: `launchway approve {run}`")
                        }
                        DecisionKind::Unchanged => "already running these images".to_owned(),
                        other => other.words().to_owned(),
                    };
                    println!("  {}@{}  {what}", decision.app, decision.env);
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
        .record(NewEvent::for_app(
            &app,
            &env,
            EventBody::Audit {
                kind: AuditKind::ReleasePublished,
                data: json!({"images": images, "by": by, "commit": commit, "author": author, "retry": retry}),
            },
            format!("{by} published {} for {app} in {env} (cli)", file.display()),
        ))
        .await?;
    let selection = Selection { env: Some(env), apps: vec![app] };
    let report = deploy(context, &engine, &loaded, &selection, retry).await?;
    if context.output() == Output::Json {
        print_json(&report);
    }
    Ok(report.exit_code)
}
