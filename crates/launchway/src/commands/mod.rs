//! One module per subcommand.

mod demo;
mod deploy;
mod history;
mod plan;
mod rollback;
mod status;
mod validate;

use anyhow::Result;

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
        Command::Rollback { app, env, to } => rollback::run(context, &app, env.as_deref(), to).await,
        Command::Demo { keep, with_failure } => demo::run(context, keep, with_failure).await,
        Command::SampleApp => unreachable!("handled before the runtime starts"),
    }
}
