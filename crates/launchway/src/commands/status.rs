//! `launchway status`: what runs where.

use anyhow::Result;
use launchway_engine::Selection;
use launchway_target::ReplicaState;

use crate::cli::{Output, Scope};
use crate::context::{Context, InvalidManifest};
use crate::exit;
use crate::output::{ago, print_json, table};

pub async fn run(context: &Context, scope: &Scope) -> Result<u8> {
    // Status works from the store alone; the config repo, when readable, adds whether
    // each app is at its desired revision.
    let loaded = match context.load().await {
        Ok(loaded) => Some(loaded),
        Err(error) if error.downcast_ref::<InvalidManifest>().is_some() => {
            eprintln!("note: the manifest at {} is invalid; showing what is deployed only", context.global.repo);
            None
        }
        Err(_) => None,
    };
    let selection = match &loaded {
        Some(loaded) => context.selection(scope, &loaded.manifest, false)?,
        None => Selection { env: scope.env.clone(), apps: scope.apps.clone() },
    };
    let engine = context.engine().await?;
    let statuses = engine.status(loaded.as_ref().map(|loaded| &loaded.manifest), &selection).await?;
    if context.output() == Output::Json {
        print_json(&statuses);
        return Ok(exit::SUCCESS);
    }
    if statuses.is_empty() {
        println!("nothing deployed yet");
        return Ok(exit::SUCCESS);
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|status| {
            let revision = status.current_release.as_ref().map(|release| release.revision.clone());
            let sync = match (&status.desired_revision, &revision) {
                (Some(desired), Some(current)) if desired == current => "in sync".to_owned(),
                (Some(desired), _) => format!("wants {desired}"),
                (None, _) => String::new(),
            };
            let replicas = match status.live.as_ref() {
                // ECS: what its deployment says ("COMPLETED: 3 of 3 running").
                Some(live) if live.definition.is_some() => {
                    live.definition.as_ref().map(|d| d.status.clone()).unwrap_or_default()
                }
                Some(live) => {
                    let running = live.replicas.iter().filter(|r| r.state == ReplicaState::Running).count();
                    format!("{running}/{}", live.replicas.len())
                }
                None => "-".to_owned(),
            };
            let endpoints: Vec<String> = status
                .live
                .iter()
                .flat_map(|live| &live.replicas)
                .flat_map(|replica| replica.endpoints.iter().cloned())
                .collect();
            vec![
                status.app.clone(),
                status.env.clone(),
                revision.unwrap_or_else(|| "-".to_owned()),
                status.current_release.as_ref().map_or("-".to_owned(), |release| release.id.to_string()),
                status
                    .current_release
                    .as_ref()
                    .and_then(|release| release.source.commit.as_deref())
                    .map_or("-".to_owned(), |commit| commit[..commit.len().min(10)].to_owned()),
                replicas,
                sync,
                status
                    .last_run
                    .as_ref()
                    .map(|run| format!("{} {} ({})", run.id, run.state, ago(run.updated_at)))
                    .unwrap_or_default(),
                endpoints.join(" "),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["APP", "ENV", "REVISION", "RELEASE", "COMMIT", "RUNNING", "DESIRED", "LAST RUN", "ENDPOINTS"], &rows)
    );
    Ok(exit::SUCCESS)
}
