//! `launchway promote RUN` / `launchway abort RUN`: steer a run that moves traffic step
//! by step. The request goes into the audit log, where the process driving the run
//! (a server, or the `deploy` that started it) picks it up; when no process drives it,
//! this command carries the run on itself.

use std::time::Instant;

use anyhow::Result;
use launchway_api::ControlAnswer;
use launchway_engine::EngineError;
use launchway_store::ControlAction;
use serde_json::json;

use super::deploy::{exit_code, print_summary};
use crate::cli::{ControlArgs, Output};
use crate::context::Context;
use crate::exit;
use crate::output::{LiveProgress, print_json};

pub async fn run(context: &Context, args: &ControlArgs, action: ControlAction) -> Result<u8> {
    let verb = action.as_str();
    if let Some(server) = context.server()? {
        let answer: ControlAnswer = server.post(&format!("/api/v1/runs/{}/{verb}", args.run), &json!({})).await?;
        match context.output() {
            Output::Json => print_json(&answer),
            Output::Text => println!("run {}: {}; the server acts on it now", args.run, answer.event.message),
        }
        return Ok(exit::SUCCESS);
    }

    let engine = context.engine().await?;
    crate::notify::before_runs(&engine).await;
    let identity = context.identity();
    let event = engine.control(args.run, action, &identity).await?;
    let started = Instant::now();
    if context.output() == Output::Text {
        println!("run {}: {}", args.run, event.message);
    }
    let progress = LiveProgress::start(&engine, context.output(), started);
    let driven = engine.drive(args.run).await;
    crate::notify::after_runs(context, &engine, None).await;
    progress.finish().await;
    match driven {
        Err(EngineError::Busy { owner, .. }) => {
            match context.output() {
                Output::Json => print_json(&json!({"event": event, "driven_by": owner})),
                Output::Text => println!("{owner} drives run {} and acts on it now", args.run),
            }
            Ok(exit::SUCCESS)
        }
        Err(error) => Err(error.into()),
        Ok(run) => {
            let runs = [run];
            match context.output() {
                Output::Json => print_json(&json!({"event": event, "run": runs[0]})),
                Output::Text => print_summary(&runs, started.elapsed()),
            }
            Ok(exit_code(&runs, &[]))
        }
    }
}
