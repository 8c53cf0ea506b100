//! `launchway rollback --app A`: back to the last verified release before the current
//! one, pinned there until `launchway unpin`.

use std::time::Instant;

use anyhow::Result;
use launchway_api::RollbackRequest;
use launchway_store::Run;

use super::deploy::{drive_all, exit_code, print_summary};
use super::sole_environment;
use crate::cli::Output;
use crate::client::Client;
use crate::context::Context;
use crate::output::{LiveProgress, print_json};

pub async fn run(
    context: &Context,
    app: &str,
    env: Option<&str>,
    to: Option<i64>,
    reason: Option<String>,
) -> Result<u8> {
    let started = Instant::now();
    let env = match env {
        Some(env) => env.to_owned(),
        None => sole_environment(context, app, "deployed", |_| true).await?,
    };
    if let Some(server) = context.server()? {
        return through_server(context, &server, app, &env, to, reason, started).await;
    }
    let engine = context.engine().await?;
    crate::notify::before_runs(&engine).await;
    let progress = LiveProgress::start(&engine, context.output(), started);
    let (by, trigger) = (context.identity(), context.trigger("rollback"));
    let request = launchway_engine::RollbackRequest {
        app,
        env: &env,
        to,
        from: None,
        by: &by,
        trigger: &trigger,
        reason: reason.as_deref(),
    };
    let run = engine.prepare_rollback(request).await?;
    let finished = drive_all(&engine, &[run.id]).await?;
    crate::notify::after_runs(context, &engine, None).await;
    progress.finish().await;
    report(context, app, &env, &run, &finished, started)
}

/// The server rolls back (as its token's subject) and drives the run; this follows it.
async fn through_server(
    context: &Context,
    server: &Client,
    app: &str,
    env: &str,
    to: Option<i64>,
    reason: Option<String>,
    started: Instant,
) -> Result<u8> {
    let request = RollbackRequest { app: app.to_owned(), env: env.to_owned(), to, reason, from: None };
    let run: Run = server.post("/api/v1/rollback", &request).await?;
    if context.output() == Output::Text {
        println!("run {} rolls {app}@{env} back to release {}; following it", run.id, run.release_id);
    }
    let finished = server.follow_run(run.id, context.output(), started).await?;
    report(context, app, env, &run, &[finished], started)
}

fn report(context: &Context, app: &str, env: &str, run: &Run, finished: &[Run], started: Instant) -> Result<u8> {
    match context.output() {
        Output::Json => print_json(&finished),
        Output::Text => {
            print_summary(finished, started.elapsed());
            println!(
                "{app} in {env} is pinned to release {}: `launchway deploy` and `launchway server` leave it there; `launchway unpin --app {app} --env {env}` lifts the pin",
                run.release_id
            );
        }
    }
    Ok(exit_code(finished, &[]))
}
