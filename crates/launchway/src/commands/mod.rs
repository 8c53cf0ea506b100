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
use launchway_engine::AppStatus;
use launchway_store::DeploymentRecord;

use crate::cli::Command;
use crate::context::Context;

/// Runs a command; returns the process exit code.
pub async fn run(context: &Context, command: Command) -> Result<u8> {
    let local_only = match &command {
        Command::Validate { .. } => Some(("validate", "it checks the files on disk")),
        Command::Plan { .. } => Some(("plan", "it reads the config repo and the targets from this machine")),
        Command::Deploy { .. } => {
            Some(("deploy", "it drives the runs from this machine (the server deploys what the repo says by itself)"))
        }
        Command::Demo { .. } => Some(("demo", "it runs everything on this machine")),
        _ => None,
    };
    if let Some((name, why)) = local_only {
        context.note_server_unused(name, why);
    }
    match command {
        Command::Validate { path } => validate::run(context, path).await,
        Command::Plan { scope, detailed_exitcode, work_tree } => {
            plan::run(context, &scope, &plan::PlanOptions { detailed_exitcode, work_tree }).await
        }
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
        Command::ProxyLend(args) => proxy::lend(args).await,
        Command::Version => {
            match context.output() {
                crate::cli::Output::Json => crate::output::print_json(&serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "target": std::env::consts::ARCH.to_owned() + "-" + std::env::consts::OS,
                })),
                crate::cli::Output::Text => println!("launchway {}", env!("CARGO_PKG_VERSION")),
            }
            Ok(crate::exit::SUCCESS)
        }
        Command::SampleApp | Command::Completion { .. } => unreachable!("handled before the runtime starts"),
    }
}

/// The one environment `app` is `what` in (its deployment records that `keep`), for
/// commands whose `--env` may be left out when there is no choice: from the server
/// when there is one, else from the local database.
async fn sole_environment(
    context: &Context,
    app: &str,
    what: &str,
    keep: impl Fn(&DeploymentRecord) -> bool,
) -> Result<String> {
    let records: Vec<DeploymentRecord> = match context.server()? {
        Some(server) => {
            let statuses: Vec<AppStatus> = server.get_query("/api/v1/status", &[("app", Some(app.to_owned()))]).await?;
            statuses.into_iter().filter_map(|status| status.deployment).collect()
        }
        None => context.engine().await?.store().deployments().await?,
    };
    let envs: Vec<String> =
        records.into_iter().filter(|record| record.app == app && keep(record)).map(|record| record.env).collect();
    match envs.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(anyhow!("{app} is not {what} anywhere")),
        several => Err(anyhow!("{app} is {what} in {}; choose one with --env", several.join(", "))),
    }
}
