//! `launchway unpin --app A`: lift the pin a manual rollback left, so that the repo's
//! desired state deploys there again.

use anyhow::Result;
use launchway_api::{ReconcileAnswer, UnpinRequest};

use super::sole_environment;

use crate::cli::Output;
use crate::client::Client;
use crate::context::Context;
use crate::exit;
use crate::output::{ago, print_json};

pub async fn run(context: &Context, app: &str, env: Option<&str>) -> Result<u8> {
    let env = match env {
        Some(env) => env.to_owned(),
        None => sole_environment(context, app, "pinned", |record| record.pin.is_some()).await?,
    };
    if let Some(server) = context.server()? {
        return through_server(context, &server, app, &env).await;
    }
    let engine = context.engine().await?;
    let pin = engine.unpin(app, &env, &context.identity()).await?;
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

/// The server lifts the pin and reconciles the app at once.
async fn through_server(context: &Context, server: &Client, app: &str, env: &str) -> Result<u8> {
    let answer: ReconcileAnswer =
        server.post("/api/v1/unpin", &UnpinRequest { app: app.to_owned(), env: env.to_owned() }).await?;
    match context.output() {
        Output::Json => print_json(&answer),
        Output::Text => {
            let lifted =
                answer.unpinned.as_ref().map(|pin| format!(" (release {}, pinned by {})", pin.release_id, pin.by));
            println!("{app} in {env} is no longer pinned{}", lifted.unwrap_or_default());
            for decision in &answer.runs {
                println!("  {}@{}  {}", decision.app, decision.env, decision.describe());
            }
        }
    }
    Ok(super::deploy::exit_code_of_answer(&answer))
}
