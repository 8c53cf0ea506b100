//! One module per subcommand.

mod approval;
mod audit;
mod ci;
mod control;
mod demo;
mod deploy;
mod dora;
mod history;
mod plan;
mod proxy;
mod release;
mod rollback;
mod server;
mod status;
mod token;
mod unpin;
mod validate;

use anyhow::{Result, anyhow};
use launchway_engine::Engine;
use launchway_store::DeploymentRecord;

use crate::cli::Command;
use crate::context::Context;

/// Runs a command; returns the process exit code.
pub async fn run(context: &Context, command: Command) -> Result<u8> {
    match command {
        Command::Validate { path } => validate::run(context, path).await,
        Command::Plan { scope } => plan::run(context, &scope).await,
        Command::Deploy { scope, retry } => deploy::run(context, &scope, retry).await,
        Command::Status { scope } => status::run(context, &scope).await,
        Command::History { run, scope, limit } => history::run(context, run, &scope, limit).await,
        Command::Rollback { app, env, to, reason } => rollback::run(context, &app, env.as_deref(), to, reason).await,
        Command::Unpin { app, env } => unpin::run(context, &app, env.as_deref()).await,
        Command::Demo { keep, with_failure } => demo::run(context, keep, with_failure).await,
        Command::Server(args) => server::run(context, args).await,
        Command::Promote(args) => control::run(context, &args, launchway_store::ControlAction::Promote).await,
        Command::Abort(args) => control::run(context, &args, launchway_store::ControlAction::Abort).await,
        Command::Approve(args) => approval::run(context, &args, launchway_store::Decision::Approved).await,
        Command::Reject(args) => approval::run(context, &args, launchway_store::Decision::Rejected).await,
        Command::Token { command } => token::run(context, command).await,
        Command::Release { command } => release::run(context, command).await,
        Command::Ci { command } => ci::run(context, command).await,
        Command::Audit { scope, run, limit } => audit::run(context, &scope, run, limit).await,
        Command::Dora { scope, days } => dora::run(context, &scope, days).await,
        Command::Proxy(args) => proxy::run(context, args).await,
        Command::SampleApp => unreachable!("handled before the runtime starts"),
    }
}

/// The one environment `app` is `what` in (its deployment records that `keep`), for
/// commands whose `--env` may be left out when there is no choice.
async fn sole_environment(
    engine: &Engine,
    app: &str,
    what: &str,
    keep: impl Fn(&DeploymentRecord) -> bool,
) -> Result<String> {
    let envs: Vec<String> = engine
        .store()
        .deployments()
        .await?
        .into_iter()
        .filter(|record| record.app == app && keep(record))
        .map(|record| record.env)
        .collect();
    match envs.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(anyhow!("{app} is not {what} anywhere")),
        several => Err(anyhow!("{app} is {what} in {}; choose one with --env", several.join(", "))),
    }
}
