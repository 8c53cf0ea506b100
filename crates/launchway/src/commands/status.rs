//! `launchway status`: what runs where, how healthy it is, and whether it is what the
//! repo asks for. Live state that cannot be read is reported as unknown, with a
//! non-zero exit, never guessed from the database.

use anyhow::Result;
use launchway_engine::{AppStatus, DesiredSources, HealthState, Selection, SyncState};

use crate::cli::{Output, Scope};
use crate::context::Context;
use crate::exit;
use crate::output::InvalidManifest;
use crate::output::{ago, print_json, table};

pub async fn run(context: &Context, scope: &Scope) -> Result<u8> {
    let statuses = match context.server()? {
        Some(server) => {
            // The server's view (its latest read of the repo, its targets), narrowed by
            // the server when one app or environment is asked for.
            let query = [("app", (scope.apps.len() == 1).then(|| scope.apps[0].clone())), ("env", scope.env.clone())];
            let all: Vec<AppStatus> = server.get_query("/api/v1/status", &query).await?;
            let selection = Selection { env: scope.env.clone(), apps: scope.apps.clone() };
            all.into_iter().filter(|status| selection.includes(&status.app, &status.env)).collect()
        }
        None => local_statuses(context, scope).await?,
    };
    let unknown: Vec<&AppStatus> = statuses.iter().filter(|status| status.live_error.is_some()).collect();
    let sync_unknown = statuses.iter().any(|status| status.sync == SyncState::Unknown);
    let code = if unknown.is_empty() && !sync_unknown { exit::SUCCESS } else { exit::ERROR };
    if context.output() == Output::Json {
        print_json(&statuses);
        return Ok(code);
    }
    if statuses.is_empty() {
        println!("nothing deployed yet");
    }
    let rows: Vec<Vec<String>> = statuses.iter().map(row).collect();
    if !rows.is_empty() {
        println!(
            "{}",
            table(&["APP", "ENV", "HEALTH", "SYNC", "RELEASE", "REVISION", "COMMIT", "LAST RUN", "ENDPOINTS"], &rows)
        );
    }
    for status in statuses.iter().filter(|status| status.sync == SyncState::OutOfSync) {
        if let Some(reason) = &status.sync_reason {
            println!("{}@{} is out of sync: {reason}", status.app, status.env);
        }
    }
    for status in &statuses {
        if let Some(pin) = status.deployment.as_ref().and_then(|record| record.pin.as_ref()) {
            println!(
                "{}@{} is pinned to release {} by {} ({}){}: `launchway unpin --app {} --env {}` lifts it",
                status.app,
                status.env,
                pin.release_id,
                pin.by,
                ago(pin.at),
                pin.reason.as_deref().map(|reason| format!(", {reason}")).unwrap_or_default(),
                status.app,
                status.env
            );
        }
    }
    for status in unknown {
        eprintln!(
            "error: {}@{}: {}",
            status.app,
            status.env,
            status.live_error.as_deref().unwrap_or("live state could not be read")
        );
    }
    // Why desired state could not be read is the same for every app it concerns: said
    // once. (Unreadable live state is said above, per app.)
    let mut said: Vec<&str> = Vec::new();
    for status in statuses.iter().filter(|status| status.sync == SyncState::Unknown && status.live_error.is_none()) {
        let reason = status.sync_reason.as_deref().unwrap_or("desired state could not be read");
        if !said.contains(&reason) {
            said.push(reason);
        }
    }
    for reason in said {
        eprintln!("error: sync is unknown: {reason}");
    }
    Ok(code)
}

async fn local_statuses(context: &Context, scope: &Scope) -> Result<Vec<AppStatus>> {
    // Status works from the store and the targets alone; the config repo, when it can be
    // read, says whether each app runs what launchway would deploy. When it cannot, sync
    // is unknown, with why (and a non-zero exit).
    let loaded = context.load().await;
    let sources = match &loaded {
        Ok(loaded) => DesiredSources::manifest(&loaded.manifest),
        Err(error) => match error.downcast_ref::<InvalidManifest>() {
            Some(invalid) => DesiredSources::unreadable(format!(
                "the manifest at {} is invalid ({} problem{}; `launchway validate` lists them)",
                invalid.location,
                invalid.diagnostics.len(),
                if invalid.diagnostics.len() == 1 { "" } else { "s" }
            )),
            None => DesiredSources::unreadable(format!("{error:#}")),
        },
    };
    let selection = match &loaded {
        Ok(loaded) => context.selection(scope, &loaded.manifest, false)?,
        Err(_) => Selection { env: scope.env.clone(), apps: scope.apps.clone() },
    };
    let engine = context.engine().await?;
    let statuses = engine.status(&sources, &selection).await?;
    match loaded {
        // Nothing deployed, so no row would say it: the repo's error is the answer.
        Err(error) if statuses.is_empty() => Err(error),
        _ => Ok(statuses),
    }
}

fn row(status: &AppStatus) -> Vec<String> {
    let revision = status.current_release.as_ref().map(|release| release.revision.clone());
    let health = match status.health.state {
        // The reason is printed below the table.
        HealthState::Unknown => "unknown".to_owned(),
        state => format!("{}: {}", state.as_str(), status.health.summary),
    };
    let sync = match (status.sync, &status.desired_revision) {
        (SyncState::OutOfSync, Some(desired)) => format!("out of sync (wants {desired})"),
        (SyncState::OutOfSync, None) => "out of sync".to_owned(),
        (SyncState::Pinned, _) => {
            let pinned = status.deployment.as_ref().and_then(|record| record.pin.as_ref());
            format!("pinned to {}", pinned.map_or("?".to_owned(), |pin| pin.release_id.to_string()))
        }
        (sync, _) => sync.as_str().to_owned(),
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
        health,
        sync,
        status.current_release.as_ref().map_or("-".to_owned(), |release| release.id.to_string()),
        revision.unwrap_or_else(|| "-".to_owned()),
        status
            .current_release
            .as_ref()
            .and_then(|release| release.source.commit.as_deref())
            .map_or("-".to_owned(), |commit| commit[..commit.len().min(10)].to_owned()),
        status
            .last_run
            .as_ref()
            .map(|run| format!("{} {} {} ({})", run.id, run.kind.as_str(), run.state, ago(run.updated_at)))
            .unwrap_or_default(),
        endpoints.join(" "),
    ]
}
