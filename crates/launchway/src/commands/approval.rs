//! `launchway approve RUN` / `launchway reject RUN`.

use std::time::Instant;

use anyhow::Result;
use launchway_api::{DecideAnswer, DecideRequest};
use launchway_store::Decision;
use serde_json::json;

use super::deploy::{drive_all, exit_code, print_summary};
use crate::cli::{DecisionArgs, Output};
use crate::context::Context;
use crate::exit;
use crate::output::{LiveProgress, print_json};

pub async fn run(context: &Context, args: &DecisionArgs, decision: Decision) -> Result<u8> {
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    };
    if let Some(server) = context.server()? {
        let body = DecideRequest { comment: args.comment.clone() };
        let answer: DecideAnswer = server.post(&format!("/api/v1/runs/{}/{verb}", args.run), &body).await?;
        match context.output() {
            Output::Json => print_json(&answer),
            Output::Text => println!(
                "run {} {} by {}; the server carries it on (`launchway --server … audit --run {}` to follow)",
                args.run,
                decision.as_str(),
                answer.approval.decided_by.as_deref().unwrap_or("you"),
                args.run
            ),
        }
        return Ok(exit::SUCCESS);
    }

    let engine = context.engine().await?;
    crate::notify::before_runs(&engine).await;
    let identity = context.identity();
    let approval = engine.decide(args.run, decision, &identity, args.comment.clone()).await?;
    let started = Instant::now();
    if context.output() == Output::Text {
        println!("run {} {} by {identity}", args.run, decision.as_str());
    }
    // Carry the run on from here, as a server would, and then the runs that waited for
    // it (their dependency), each once it can move.
    let progress = LiveProgress::start(&engine, context.output(), started);
    let mut runs = drive_all(&engine, &[args.run]).await?;
    loop {
        let driven: Vec<i64> = runs.iter().map(|run| run.id).collect();
        let dependents: Vec<i64> = engine
            .orphaned_runs()
            .await?
            .into_iter()
            .filter(|run| run.waits_for.iter().any(|id| driven.contains(id)) && !driven.contains(&run.id))
            .map(|run| run.id)
            .collect();
        if dependents.is_empty() {
            break;
        }
        runs.extend(drive_all(&engine, &dependents).await?);
    }
    crate::notify::after_runs(context, &engine, None).await;
    progress.finish().await;
    match context.output() {
        Output::Json => print_json(&json!({"approval": approval, "run": runs.first(), "runs": runs})),
        Output::Text => print_summary(&runs, started.elapsed()),
    }
    Ok(exit_code(&runs, &[]))
}
