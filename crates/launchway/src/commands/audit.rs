//! `launchway audit`: the append-only event log, newest last.

use anyhow::Result;
use launchway_store::{Event, EventFilter};

use crate::cli::{Output, Scope};
use crate::context::Context;
use crate::exit;
use crate::output::{print_json, timestamp};

pub async fn run(context: &Context, scope: &Scope, run: Option<i64>, limit: u32) -> Result<u8> {
    let events: Vec<Event> = if let Some(server) = context.server()? {
        let query = [
            ("limit", Some(limit.to_string())),
            ("env", scope.env.clone()),
            ("app", scope.apps.first().cloned()),
            ("run", run.map(|run| run.to_string())),
        ];
        server.get_query("/api/v1/audit", &query).await?
    } else {
        let engine = context.engine().await?;
        engine
            .store()
            .events(&EventFilter {
                run_id: run,
                app: scope.apps.first().cloned(),
                env: scope.env.clone(),
                last: Some(limit),
                ..EventFilter::default()
            })
            .await?
    };
    if context.output() == Output::Json {
        print_json(&events);
        return Ok(exit::SUCCESS);
    }
    if events.is_empty() {
        println!(
            "the audit log has no entries{}",
            if scope.env.is_some() || !scope.apps.is_empty() || run.is_some() { " matching" } else { " yet" }
        );
    }
    for event in &events {
        let who = match (&event.app, &event.env) {
            (Some(app), Some(env)) => format!("{app}@{env}"),
            _ => String::new(),
        };
        let run = event.run_id.map(|run| format!("run {run}")).unwrap_or_default();
        println!("{}  {:<20} {:<16} {:<8} {}", timestamp(event.at), event.kind, who, run, event.message);
    }
    Ok(exit::SUCCESS)
}
