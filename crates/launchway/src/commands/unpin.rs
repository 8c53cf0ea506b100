//! `launchway unpin --app A`: lift the pin a manual rollback left, so that the repo's
//! desired state deploys there again.

use anyhow::Result;

use super::sole_environment;

use crate::cli::Output;
use crate::context::Context;
use crate::exit;
use crate::output::{ago, print_json};

pub async fn run(context: &Context, app: &str, env: Option<&str>) -> Result<u8> {
    let engine = context.engine().await?;
    let env = match env {
        Some(env) => env.to_owned(),
        None => sole_environment(&engine, app, "pinned", |record| record.pin.is_some()).await?,
    };
    let by = format!("{} ({})", context.identity(None), context.trigger("unpin"));
    let pin = engine.unpin(app, &env, &by).await?;
    match context.output() {
        Output::Json => print_json(&serde_json::json!({"app": app, "env": env, "unpinned": pin})),
        Output::Text => println!(
            "{app} in {env} is no longer pinned to release {} (pinned by {} {}); `launchway deploy --app {app} --env {env}` deploys the repo's state now, `launchway server` does at its next look",
            pin.release_id,
            pin.by,
            ago(pin.at)
        ),
    }
    Ok(exit::SUCCESS)
}
