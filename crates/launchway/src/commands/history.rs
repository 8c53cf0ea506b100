//! `launchway history [RUN]`: past runs, or one run in full with its audit trail.

use std::time::Duration;

use anyhow::Result;
use launchway_api::RunDetail;
use launchway_manifest::format_duration;
use launchway_store::{EventFilter, Run, RunFilter};

use crate::cli::{Output, Scope};
use crate::context::Context;
use crate::exit;
use crate::output::{print_json, table, timestamp};

pub async fn run(context: &Context, run_id: Option<i64>, scope: &Scope, limit: u32) -> Result<u8> {
    match run_id {
        Some(run_id) => show_run(context, run_id).await,
        None => list_runs(context, scope, limit).await,
    }
}

/// One run with its release, steps and audit trail, from the server or the database.
async fn run_detail(context: &Context, run_id: i64) -> Result<RunDetail> {
    if let Some(server) = context.server()? {
        return server.get(&format!("/api/v1/runs/{run_id}")).await;
    }
    let engine = context.engine().await?;
    let store = engine.store();
    let run = store.run(run_id).await?;
    let release = store.release(run.release_id).await?;
    Ok(RunDetail::new(
        run,
        release,
        store.approval(run_id).await?,
        store.steps(run_id).await?,
        store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await?,
    ))
}

async fn show_run(context: &Context, run_id: i64) -> Result<u8> {
    let RunDetail { run, kind, release, steps, events, .. } = run_detail(context, run_id).await?;
    if context.output() == Output::Json {
        print_json(
            &serde_json::json!({"run": run, "kind": kind, "release": release, "steps": steps, "events": events}),
        );
        return Ok(exit::SUCCESS);
    }
    println!("run {} — {kind} {}@{}: {}", run.id, run.app, run.env, run.state);
    println!("  release   {} (revision {})", release.id, release.revision);
    if let Some(commit) = &release.source.commit {
        // The config commit's own line; a publication's author (the application
        // commit's) is said with where the images came from, not as this commit's.
        let by = match (&release.source.origin, &release.source.author) {
            (None, Some(author)) => format!(" by {author}"),
            _ => String::new(),
        };
        println!(
            "  commit    {} \"{}\"{by}",
            &commit[..commit.len().min(10)],
            release.source.summary.as_deref().unwrap_or_default(),
        );
    }
    if let Some(origin) = &release.source.origin {
        println!("  origin    {origin}");
    }
    println!("  trigger   {}", run.trigger);
    if let Some(reason) = &run.reason {
        println!("  result    {reason}");
    }
    println!();
    // A step's try: how many times that step ran so far (not the run's lease attempt,
    // which an approval or a resumption moves on without any step running again).
    let mut tries: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    let step_rows: Vec<Vec<String>> = steps
        .iter()
        .map(|step| {
            let try_number = tries.entry(step.name.as_str()).or_default();
            *try_number += 1;
            vec![
                step.name.clone(),
                try_number.to_string(),
                step.outcome.map_or("running".to_owned(), |outcome| outcome.as_str().to_owned()),
                step.finished_at
                    .map(|finished| format_duration(Duration::from_millis((finished - step.started_at).max(0) as u64)))
                    .unwrap_or_default(),
                step.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!("{}", table(&["STEP", "TRY", "OUTCOME", "TOOK", "DETAIL"], &step_rows));
    println!();
    for event in &events {
        println!("{}  {:<18} {}", timestamp(event.at), event.kind, event.message);
        for line in event.logs() {
            println!("{:>20}   | {line}", "");
        }
    }
    Ok(exit::SUCCESS)
}

async fn list_runs(context: &Context, scope: &Scope, limit: u32) -> Result<u8> {
    let (app, env) = (scope.apps.first().cloned(), scope.env.clone());
    let runs: Vec<Run> = match context.server()? {
        Some(server) => {
            let query = [("app", app), ("env", env), ("limit", Some(limit.to_string()))];
            server.get_query("/api/v1/runs", &query).await?
        }
        None => {
            let filter = RunFilter { app, env, limit: Some(limit), ..RunFilter::default() };
            context.engine().await?.store().runs(&filter).await?
        }
    };
    if context.output() == Output::Json {
        print_json(&runs);
        return Ok(exit::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs yet");
        return Ok(exit::SUCCESS);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            vec![
                run.id.to_string(),
                run.app.clone(),
                run.env.clone(),
                run.kind.as_str().to_owned(),
                run.state.to_string(),
                run.release_id.to_string(),
                timestamp(run.created_at),
                run.finished_at
                    .map(|finished| format_duration(Duration::from_millis((finished - run.created_at).max(0) as u64)))
                    .unwrap_or_else(|| "running".to_owned()),
                run.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!("{}", table(&["RUN", "APP", "ENV", "KIND", "STATE", "RELEASE", "STARTED", "TOOK", "RESULT"], &rows));
    Ok(exit::SUCCESS)
}
