//! `launchway dora`: the four DORA metrics per app and environment.

use anyhow::Result;
use launchway_engine::DoraFigures;
use launchway_manifest::format_duration;

use crate::cli::{Output, Scope};
use crate::context::Context;
use crate::exit;
use crate::output::{print_json, table};

pub async fn run(context: &Context, scope: &Scope, days: u32) -> Result<u8> {
    let figures: Vec<DoraFigures> = if let Some(server) = context.server()? {
        let query =
            [("days", Some(days.to_string())), ("env", scope.env.clone()), ("app", scope.apps.first().cloned())];
        server.get_query("/api/v1/dora", &query).await?
    } else {
        let engine = context.engine().await?;
        let local: Vec<DoraFigures> =
            engine.dora(scope.apps.first().map(String::as_str), scope.env.as_deref(), days).await?;
        serde_json::from_value(serde_json::to_value(local)?)?
    };
    if context.output() == Output::Json {
        print_json(&figures);
        return Ok(exit::SUCCESS);
    }
    if figures.is_empty() {
        println!("no finished runs in the last {days} days");
        return Ok(exit::SUCCESS);
    }
    let rows: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            vec![
                f.app.clone(),
                f.env.clone(),
                format!("{} ({:.2}/day)", f.deployments, f.deployments_per_day),
                f.lead_time_median_s.map(seconds).unwrap_or_else(|| "-".to_owned()),
                f.change_failure_rate
                    .map(|rate| format!("{:.0}% ({})", rate * 100.0, f.failed_changes))
                    .unwrap_or_else(|| "-".to_owned()),
                match (f.time_to_restore_median_s, f.unrestored_failures) {
                    (Some(restore), 0) => seconds(restore),
                    (Some(restore), open) => format!("{} ({open} open)", seconds(restore)),
                    (None, 0) => "-".to_owned(),
                    (None, open) => format!("({open} open)"),
                },
            ]
        })
        .collect();
    println!("last {days} days");
    println!("{}", table(&["APP", "ENV", "DEPLOYS", "LEAD TIME", "CHANGE FAILURES", "TIME TO RESTORE"], &rows));
    Ok(exit::SUCCESS)
}

fn seconds(seconds: f64) -> String {
    format_duration(std::time::Duration::from_secs_f64(seconds.max(0.0)))
}
