//! How results look: live progress while runs move, tables, JSON.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use launchway_engine::Engine;
use launchway_manifest::format_duration;
use launchway_store::{Event, EventBody, RunState, StepOutcome};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::Output;
use crate::context::InvalidManifest;

/// Prints JSON to stdout, pretty.
pub fn print_json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("output values serialize");
    println!("{text}");
}

pub fn print_invalid_manifest(output: Output, invalid: &InvalidManifest) {
    match output {
        Output::Json => print_json(&serde_json::json!({
            "valid": false,
            "source": invalid.location,
            "diagnostics": invalid.diagnostics,
        })),
        Output::Text => {
            let count = invalid.diagnostics.len();
            eprintln!(
                "error: the manifest at {} is invalid ({count} problem{}); nothing was changed",
                invalid.location,
                if count == 1 { "" } else { "s" }
            );
            for diagnostic in &invalid.diagnostics {
                eprintln!("{diagnostic}");
            }
        }
    }
}

/// Prints the engine's events as they happen, until dropped. In JSON mode the lines go
/// to stderr, keeping stdout for the final JSON document.
pub struct LiveProgress {
    task: tokio::task::JoinHandle<()>,
}

impl LiveProgress {
    pub fn start(engine: &Engine, output: Output, started: Instant) -> LiveProgress {
        let mut events = engine.subscribe();
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => print_event(&event, output, started),
                    Err(RecvError::Lagged(missed)) => {
                        eprintln!("({missed} progress lines were skipped; `launchway history RUN` has them all)");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        LiveProgress { task }
    }

    /// Lets the printer catch up with events already sent, then stops it.
    pub async fn finish(self) {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}

fn print_event(event: &Event, output: Output, started: Instant) {
    let Some(line) = event_line(event) else {
        return;
    };
    let who = match (&event.app, &event.env) {
        (Some(app), Some(env)) => format!("{app}@{env}"),
        _ => String::new(),
    };
    let text = format!("{:>8}  {who:<16} {line}", format_duration(started.elapsed()));
    let logs: Vec<String> = event.logs().iter().map(|line| format!("{:>8}  {:<16}   | {line}", "", "")).collect();
    let mut sink: Box<dyn Write> = match output {
        Output::Text => Box::new(std::io::stdout().lock()),
        Output::Json => Box::new(std::io::stderr().lock()),
    };
    let _ = writeln!(sink, "{text}");
    for log in logs {
        let _ = writeln!(sink, "{log}");
    }
    let _ = sink.flush();
}

/// The line shown for an event, or nothing for those too chatty to show live.
fn event_line(event: &Event) -> Option<String> {
    Some(match event.body() {
        // Commands print the plan that creates a run themselves.
        EventBody::RunCreated(_) | EventBody::StepStarted { .. } => return None,
        EventBody::RunResumed { .. } => format!("↻ {}", event.message),
        EventBody::StepFinished(finished) => format!(
            "{} {} ({} ms): {}",
            if finished.outcome == StepOutcome::Succeeded { "✓" } else { "✗" },
            finished.step,
            finished.elapsed_ms,
            finished.detail
        ),
        EventBody::RunEntered { state, .. } => match state {
            // Entering a step is shown by the step's own line when it finishes.
            RunState::Validating
            | RunState::Planning
            | RunState::Deploying
            | RunState::Progressing
            | RunState::Verifying => return None,
            RunState::RollingBack => "▸ rolling back".to_owned(),
            state => format!("▸ {state}: {}", event.message),
        },
        _ => format!("  • {}", event.message),
    })
}

/// A time stored as Unix milliseconds, as RFC 3339 to the second.
pub fn timestamp(millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// How long ago a stored time was, roughly: "3m ago".
pub fn ago(millis: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let elapsed = Duration::from_millis((now - millis).max(0) as u64);
    let secs = elapsed.as_secs();
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// How long until a stored time, roughly: "in 2m" (or "now").
pub fn in_time(millis: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let secs = ((millis - now).max(0) / 1000) as u64;
    match secs {
        0 => "now".to_owned(),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let line: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        line.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![render(headers.to_vec())];
    for row in rows {
        lines.push(render(row.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rendered = table(
            &["APP", "STATE"],
            &[vec!["web".into(), "succeeded".into()], vec!["worker-long".into(), "failed".into()]],
        );
        assert_eq!(rendered, "APP          STATE\nweb          succeeded\nworker-long  failed");
    }
}
