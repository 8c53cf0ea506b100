//! `launchway ci tag --path DIR`: the image tag that changes only when DIR does.

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::cli::{CiCommand, Output};
use crate::context::Context;
use crate::exit;
use crate::output::print_json;

pub async fn run(context: &Context, command: CiCommand) -> Result<u8> {
    let CiCommand::Tag { path, git_ref, length, env } = command;
    let lookup = (path.clone(), git_ref.clone());
    let commit = tokio::task::spawn_blocking(move || launchway_source::last_change(&lookup.0, &lookup.1))
        .await?
        .with_context(|| format!("could not find the last change to {} at {git_ref}", path.display()))?;
    let short = &commit.id[..length.clamp(4, commit.id.len())];
    let tag = match &env {
        Some(env) => format!("{env}-{short}"),
        None => short.to_owned(),
    };
    match context.output() {
        Output::Json => print_json(&json!({
            "tag": tag, "commit": commit.id, "summary": commit.summary, "author": commit.author,
            "time": commit.time, "path": path,
        })),
        Output::Text => println!("{tag}"),
    }
    Ok(exit::SUCCESS)
}
