//! `launchway rollback --app A`: back to the last verified release before the current
//! one, pinned there until `launchway unpin`.

use std::time::Instant;

use anyhow::Result;

use super::deploy::{drive_all, exit_code, print_summary};
use super::sole_environment;
use crate::cli::Output;
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
    let engine = context.engine().await?;
    let env = match env {
        Some(env) => env.to_owned(),
        None => sole_environment(&engine, app, "deployed", |_| true).await?,
    };
    let progress = LiveProgress::start(&engine, context.output(), started);
    let by = format!("{} ({})", context.identity(None), context.trigger("rollback"));
    let run = engine.prepare_rollback(app, &env, to, &by, reason).await?;
    let finished = drive_all(&engine, &[run.id]).await?;
    progress.finish().await;
    match context.output() {
        Output::Json => print_json(&finished),
        Output::Text => {
            print_summary(&finished, started.elapsed());
            println!(
                "{app} in {env} is pinned to release {}: `launchway deploy` and `launchway server` leave it there; `launchway unpin --app {app} --env {env}` lifts the pin",
                run.release_id
            );
        }
    }
    Ok(exit_code(&finished, &[]))
}
