//! How results look: live progress while runs move, tables, JSON.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anstyle::{AnsiColor, Style};
use launchway_engine::{AppPlan, Change, Engine, PlanAction};
use launchway_manifest::{Diagnostic, format_duration};
use launchway_store::{Event, EventBody, RunState, StepOutcome};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::Output;

/// Colours for text output. Lines are written with them and printed through
/// `anstream`, which drops them unless the stream is a terminal (and `NO_COLOR` is not
/// set; `CLICOLOR_FORCE` keeps them in a pipe).
pub mod paint {
    use super::*;

    pub const ADDED: Style = AnsiColor::Green.on_default();
    pub const CHANGED: Style = AnsiColor::Yellow.on_default();
    pub const REMOVED: Style = AnsiColor::Red.on_default();
    pub const QUIET: Style = Style::new().dimmed();
    pub const GOOD: Style = AnsiColor::Green.on_default().bold();
    pub const BAD: Style = AnsiColor::Red.on_default().bold();

    /// `text` in `style`.
    pub fn styled(style: Style, text: impl std::fmt::Display) -> String {
        format!("{style}{text}{style:#}")
    }
}

/// A line to stdout (text output) or stderr (JSON output, whose stdout is one document),
/// with colour only where the stream is a terminal.
pub fn say(output: Output, line: &str) {
    match output {
        Output::Text => anstream::println!("{line}"),
        Output::Json => anstream::eprintln!("{line}"),
    }
}

/// A plan's heading and its changes, coloured by what they do: the lines `plan` and
/// `deploy` show.
pub fn plan_lines(plan: &AppPlan) -> Vec<String> {
    let mut lines = vec![plan_heading(plan)];
    lines.extend(plan.written_changes().map(|change| format!("      {}", change_line(change))));
    let defaults: Vec<String> = plan
        .default_changes()
        .map(|change| format!("{} {}", change.path, change.to.as_deref().unwrap_or("-")))
        .collect();
    if !defaults.is_empty() {
        let folded = format!("      ({} more at their defaults: {})", defaults.len(), defaults.join(", "));
        lines.push(paint::styled(paint::QUIET, folded));
    }
    lines
}

fn change_line(change: &Change) -> String {
    let style = match (&change.from, &change.to) {
        (Some(_), Some(_)) => paint::CHANGED,
        (None, Some(_)) => paint::ADDED,
        (Some(_), None) => paint::REMOVED,
        (None, None) => Style::new(),
    };
    paint::styled(style, change)
}

fn plan_heading(plan: &AppPlan) -> String {
    let who = format!("{}@{}", plan.app, plan.env);
    match plan.action {
        PlanAction::NoChange if plan.changes.is_empty() => {
            paint::styled(paint::QUIET, format!("  = {who}  no change (revision {})", plan.to_revision))
        }
        // Settings only launchway acts on (an ECS service's settle window): the target
        // keeps what it runs, the release is recorded and verified.
        PlanAction::NoChange => format!(
            "  {} {who}  revision {} → {}: nothing changes on the target; launchway's own settings do",
            paint::styled(paint::CHANGED, "~"),
            plan.from_revision.as_deref().unwrap_or("none"),
            plan.to_revision,
        ),
        PlanAction::Create => format!(
            "  {} {who}  create revision {}: {}",
            paint::styled(paint::ADDED, "+"),
            plan.to_revision,
            plan.summary
        ),
        PlanAction::Update => format!(
            "  {} {who}  revision {} → {}: {}",
            paint::styled(paint::CHANGED, "~"),
            plan.from_revision.as_deref().unwrap_or("none"),
            plan.to_revision,
            plan.summary
        ),
        PlanAction::Converge => {
            format!("  {} {who}  revision {}: {}", paint::styled(paint::CHANGED, "~"), plan.to_revision, plan.summary)
        }
        PlanAction::Unmanaged => format!("  ? {who}  {}", plan.summary),
    }
}

/// Prints JSON to stdout, pretty.
pub fn print_json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("output values serialize");
    println!("{text}");
}

/// A manifest with problems: printed as `file:line:col: message`, exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("the manifest is invalid")]
pub struct InvalidManifest {
    /// Where it was read from: a commit, or a folder on disk.
    pub location: String,
    pub diagnostics: Vec<Diagnostic>,
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
    stop: tokio::sync::oneshot::Sender<()>,
}

impl LiveProgress {
    pub fn start(engine: &Engine, output: Output, started: Instant) -> LiveProgress {
        let mut events = engine.subscribe();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut printer = EventPrinter::new(output, started);
            loop {
                tokio::select! {
                    received = events.recv() => match received {
                        Ok(event) => printer.print(&event),
                        Err(RecvError::Lagged(missed)) => {
                            eprintln!("({missed} progress lines were skipped; `launchway history RUN` has them all)");
                        }
                        Err(RecvError::Closed) => break,
                    },
                    _ = &mut stopped => break,
                }
            }
            printer.finish();
        });
        LiveProgress { task, stop }
    }

    /// Lets the printer catch up with events already sent, then stops it.
    pub async fn finish(self) {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Prints events as progress lines. A line that repeats the one before it for the same
/// run (an analysis measuring the same thing every interval) is folded: said once, then
/// how many more times it came when something else is said (issue 21: no command loops
/// on its own output).
pub struct EventPrinter {
    output: Output,
    started: Instant,
    /// Per run (or app), the last line said and how many times it came again since.
    last: std::collections::HashMap<String, (String, u32)>,
}

impl EventPrinter {
    pub fn new(output: Output, started: Instant) -> EventPrinter {
        EventPrinter { output, started, last: std::collections::HashMap::new() }
    }

    pub fn print(&mut self, event: &Event) {
        let lines = self.lines_for(event);
        self.write(&lines);
    }

    /// Says how many times each run's last line came again, where that is not said yet.
    pub fn finish(&mut self) {
        let lines = self.pending();
        self.write(&lines);
    }

    /// The lines an event adds to what was printed.
    fn lines_for(&mut self, event: &Event) -> Vec<String> {
        let Some(line) = event_line(event) else {
            return Vec::new();
        };
        let who = match (&event.app, &event.env) {
            (Some(app), Some(env)) => format!("{app}@{env}"),
            _ => String::new(),
        };
        let key = event.run_id.map_or_else(|| who.clone(), |run| run.to_string());
        let logs = event.logs();
        let mut lines = Vec::new();
        match self.last.get_mut(&key) {
            Some((last, again)) if *last == line && logs.is_empty() => {
                *again += 1;
                return lines;
            }
            Some((_, again)) if *again > 0 => lines.push(repeated(&who, *again)),
            _ => {}
        }
        self.last.insert(key, (line.clone(), 0));
        lines.push(format!("{:>8}  {who:<16} {line}", format_duration(self.started.elapsed())));
        lines.extend(logs.iter().map(|line| format!("{:>8}  {:<16}   | {line}", "", "")));
        lines
    }

    fn pending(&mut self) -> Vec<String> {
        let lines = self
            .last
            .iter()
            .filter(|(_, (_, again))| *again > 0)
            .map(|(who, (_, again))| repeated(who, *again))
            .collect();
        self.last.clear();
        lines
    }

    fn write(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let mut sink: Box<dyn Write> = match self.output {
            Output::Text => Box::new(anstream::AutoStream::auto(std::io::stdout().lock())),
            Output::Json => Box::new(anstream::AutoStream::auto(std::io::stderr().lock())),
        };
        for line in lines {
            let _ = writeln!(sink, "{line}");
        }
        let _ = sink.flush();
    }
}

/// "(the line above, 3 more times)", for `who` (an app, or a run's id).
fn repeated(who: &str, again: u32) -> String {
    let who = if who.chars().all(|c| c.is_ascii_digit()) { format!("run {who}") } else { who.to_owned() };
    format!("{:>8}  {who:<16}   (the line above, {again} more time{})", "", if again == 1 { "" } else { "s" })
}

/// The line shown for an event, or nothing for those too chatty to show live.
fn event_line(event: &Event) -> Option<String> {
    Some(match event.body() {
        // Commands print the plan that creates a run themselves.
        EventBody::RunCreated(_) | EventBody::StepStarted { .. } => return None,
        EventBody::RunResumed { .. } => format!("↻ {}", event.message),
        EventBody::StepFinished(finished) => format!(
            "{} {} ({} ms): {}",
            if finished.outcome == StepOutcome::Succeeded {
                paint::styled(paint::GOOD, "✓")
            } else {
                paint::styled(paint::BAD, "✗")
            },
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

    /// Issue 21: an analysis measuring the same thing every interval printed the same
    /// line every 2 s, indefinitely. A repeat is folded into a count, said once something
    /// else is said (or at the end).
    #[test]
    fn a_line_repeated_for_a_run_is_said_once_with_a_count() {
        let event = |id: i64, message: &str| Event {
            id,
            at: 0,
            run_id: Some(7),
            app: Some("web".into()),
            env: Some("prod".into()),
            kind: "analysis.measured".into(),
            message: message.into(),
            data: serde_json::Value::Null,
        };
        let mut printer = EventPrinter::new(Output::Text, Instant::now());
        let mut printed = Vec::new();
        for (id, message) in [(1, "GET / answered 200"), (2, "GET / answered 200"), (3, "GET / answered 200")] {
            printed.extend(printer.lines_for(&event(id, message)));
        }
        assert_eq!(printed.len(), 1, "{printed:?}");
        printed.extend(printer.lines_for(&event(4, "GET / answered 500")));
        assert!(printed[1].ends_with("(the line above, 2 more times)"), "{printed:?}");
        assert!(printed[2].ends_with("GET / answered 500"), "{printed:?}");
        printed.extend(printer.lines_for(&event(5, "GET / answered 500")));
        printed.extend(printer.pending());
        assert!(printed[3].ends_with("(the line above, 1 more time)"), "{printed:?}");
        assert_eq!(printed.len(), 4);
    }

    #[test]
    fn tables_align_columns() {
        let rendered = table(
            &["APP", "STATE"],
            &[vec!["web".into(), "succeeded".into()], vec!["worker-long".into(), "failed".into()]],
        );
        assert_eq!(rendered, "APP          STATE\nweb          succeeded\nworker-long  failed");
    }
}
