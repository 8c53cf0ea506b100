//! `launchway rollback --app A`: back to the last good release before the current one.

use std::time::Instant;

use anyhow::{Result, anyhow};

use super::deploy::{drive_all, exit_code, print_summary};
use crate::cli::Output;
use crate::context::Context;
use crate::output::{LiveProgress, print_json};

pub async fn run(context: &Context, app: &str, env: Option<&str>, to: Option<i64>) -> Result<u8> {
    let started = Instant::now();
    let engine = context.engine().await?;
    let env = match env {
        Some(env) => env.to_owned(),
        None => {
            let deployed: Vec<String> = engine
                .store()
                .deployments()
                .await?
                .into_iter()
                .filter(|record| record.app == app)
                .map(|record| record.env)
                .collect();
            match deployed.as_slice() {
                [only] => only.clone(),
                [] => return Err(anyhow!("nothing has been deployed for {app}")),
                several => {
                    return Err(anyhow!("{app} is deployed in {}; choose one with --env", several.join(", ")));
                }
            }
        }
    };
    let progress = LiveProgress::start(&engine, context.output(), started);
    let run = engine.prepare_rollback(app, &env, to, &context.trigger("rollback")).await?;
    let finished = drive_all(&engine, &[run.id]).await?;
    progress.finish().await;
    match context.output() {
        Output::Json => print_json(&finished),
        Output::Text => {
            print_summary(&finished, started.elapsed());
            println!(
                "note: the config repo still asks for what it asked before; the next `launchway deploy` brings that back unless the repo changes"
            );
        }
    }
    Ok(exit_code(&finished, &[]))
}
