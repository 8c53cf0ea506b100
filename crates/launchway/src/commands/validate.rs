//! `launchway validate [PATH]`: manifest files on disk, before they are committed.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::Output;
use crate::context::{Context, load_from_disk};
use crate::exit;
use crate::output::print_json;

pub async fn run(context: &Context, path: Option<PathBuf>) -> Result<u8> {
    let path = path.unwrap_or_else(|| {
        let repo = &context.global.repo;
        if repo.contains("://") { PathBuf::from(".") } else { PathBuf::from(repo) }
    });
    if !path.exists() {
        // Not a manifest problem (exit 3 would say so): there is nothing to read.
        anyhow::bail!("{} does not exist: give the config repo's directory or its launchway.yaml", path.display());
    }
    let (files, validated) = load_from_disk(&path)?;
    let manifest = &validated.manifest;
    let services = manifest.apps.values().filter(|app| app.specs.values().any(|spec| spec.kind() == "service")).count();
    let tasks = manifest.apps.len() - services;
    match context.output() {
        Output::Json => print_json(&serde_json::json!({
            "valid": true,
            "files": files.iter().map(|file| &file.path).collect::<Vec<_>>(),
            "environments": manifest.environments.keys().collect::<Vec<_>>(),
            "services": services,
            "tasks": tasks,
            "deployments": manifest.deployments().count(),
            "warnings": validated.warnings,
        })),
        Output::Text => {
            for warning in &validated.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{} is valid: {services} service{}, {tasks} task{} in {} environment{} ({}) from {} file{}",
                path.display(),
                plural(services),
                plural(tasks),
                manifest.environments.len(),
                plural(manifest.environments.len()),
                manifest.environments.keys().cloned().collect::<Vec<_>>().join(", "),
                files.len(),
                plural(files.len())
            );
        }
    }
    Ok(exit::SUCCESS)
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}
