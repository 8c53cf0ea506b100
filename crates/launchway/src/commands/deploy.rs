//! `launchway deploy`: a run for each app whose desired state differs from what runs,
//! driven to its end with live progress.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use launchway_engine::{Decision, DeployRequest, Engine, EngineError, Selection};
use launchway_manifest::format_duration;
use launchway_store::{Run, RunState};
use serde::Serialize;

use crate::cli::{Output, Scope};
use crate::context::{Context, Loaded};
use crate::exit;
use crate::output::{LiveProgress, ago, in_time, plan_lines, print_json, table};

pub async fn run(context: &Context, scope: &Scope, retry: bool) -> Result<u8> {
    let loaded = context.load().await?;
    let selection = context.selection(scope, &loaded.manifest, true)?;
    let engine = context.engine().await?;
    let report = deploy(context, &engine, &loaded, &selection, retry).await?;
    if context.output() == Output::Json {
        print_json(&report);
    }
    Ok(report.exit_code)
}

/// What a deploy did.
#[derive(Debug, Serialize)]
pub struct DeployReport {
    pub commit: String,
    pub decisions: Vec<Decision>,
    /// Every run driven, as it finished.
    pub runs: Vec<Run>,
    pub elapsed_ms: u64,
    #[serde(skip)]
    pub exit_code: u8,
}

/// Deploys `loaded` to the selection, printing progress (to stderr in JSON mode).
pub async fn deploy(
    context: &Context,
    engine: &Engine,
    loaded: &Loaded,
    selection: &Selection,
    retry: bool,
) -> Result<DeployReport> {
    let started = Instant::now();
    let output = context.output();
    let say = |line: String| crate::output::say(output, &line);
    say(format!("deploying commit {} \"{}\"", loaded.commit.short_id(), loaded.commit.summary));
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }

    for orphan in engine.orphaned_runs().await? {
        if !selection.includes(&orphan.app, &orphan.env) {
            say(format!(
                "note: run {} for {}@{} was interrupted at {}; `launchway deploy --env {} --app {}` resumes it",
                orphan.id, orphan.app, orphan.env, orphan.state, orphan.env, orphan.app
            ));
        }
    }
    crate::notify::before_runs(engine).await;
    let progress = LiveProgress::start(engine, output, started);
    let mut all_decisions = Vec::new();
    let mut finished: Vec<Run> = Vec::new();
    let mut selection = selection.clone();
    let mut waiting_announced: BTreeSet<i64> = BTreeSet::new();
    let trigger = context.trigger("deploy");
    let published = engine.store().published_images().await?;
    // Each round resumes interrupted runs or waits for busy ones, then deploys; later
    // rounds only revisit the apps that had to wait.
    for _round in 0..1000 {
        let request = DeployRequest {
            manifest: &loaded.manifest,
            images: Default::default(),
            published: &published,
            source: loaded.release_source(),
            selection: &selection,
            retry_failed: retry,
            trigger: trigger.clone(),
        };
        let decisions = engine.prepare_deploys(&request).await?;
        let mut to_drive = Vec::new();
        let mut revisit = Vec::new();
        for decision in &decisions {
            match decision {
                Decision::Started { run, plan } => {
                    plan_lines(plan).into_iter().for_each(say);
                    to_drive.push(run.id);
                }
                Decision::Resume { run } => {
                    say(format!("  ↻ {}@{}  resuming interrupted run {} (at {})", run.app, run.env, run.id, run.state));
                    to_drive.push(run.id);
                    revisit.push(run.app.clone());
                }
                Decision::Unchanged { app, env, revision } => {
                    say(format!("  = {app}@{env}  unchanged (revision {revision})"));
                }
                Decision::Skipped { app, env, reason, .. } => {
                    say(format!("  ! {app}@{env}  skipped: {reason}"));
                }
                Decision::Waiting { run, approval_run, behind } => {
                    let what = behind.as_deref().unwrap_or("approval");
                    say(format!(
                        "  ⏸ {}@{}  run {} waits for {what}: `launchway approve {approval_run}`",
                        run.app, run.env, run.id
                    ));
                }
                Decision::Busy { app, env, run_id, owner } => {
                    if *run_id == 0 {
                        say(format!("  … {app}@{env}  {owner} deployed it meanwhile; looking again"));
                    } else if waiting_announced.insert(*run_id) {
                        say(format!("  … {app}@{env}  run {run_id} is being driven by {owner}; waiting for it"));
                    }
                    revisit.push(app.clone());
                }
                Decision::Pinned { app, env, pin, wants } => {
                    let wants = wants
                        .as_ref()
                        .map(|revision| format!("; the repo asks for revision {revision}"))
                        .unwrap_or_default();
                    say(format!(
                        "  📌 {app}@{env}  pinned to release {} by {} ({}){}{wants}: `launchway unpin --app {app} --env {env}` to deploy it",
                        pin.release_id,
                        pin.by,
                        ago(pin.at),
                        pin.reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default()
                    ));
                }
                Decision::RepairLater { app, env, reason, retry_at } => {
                    say(format!(
                        "  ! {app}@{env}  drifted: {reason}; the next repair is due in {} (or pass --retry)",
                        in_time(*retry_at)
                    ));
                }
            }
        }
        let busy = decisions.iter().any(|decision| matches!(decision, Decision::Busy { .. }));
        all_decisions.extend(decisions.into_iter().filter(|d| !matches!(d, Decision::Busy { .. })));
        for run in drive_all(engine, &to_drive).await? {
            // A resumed app is looked at again (the repo may ask for more than its run
            // brought) only once its run has ended: one that parked for an approval would
            // only park again.
            if !run.state.is_terminal() {
                revisit.retain(|app| *app != run.app);
            }
            finished.retain(|earlier: &Run| earlier.id != run.id);
            finished.push(run);
        }
        if revisit.is_empty() {
            break;
        }
        if busy && to_drive.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        selection.apps = revisit;
    }
    crate::notify::after_runs(context, engine, Some(loaded.manifest.notifications.clone())).await;
    progress.finish().await;

    let exit_code = exit_code(&finished, &all_decisions);
    if output == Output::Text {
        print_summary(&finished, started.elapsed());
    }
    Ok(DeployReport {
        commit: loaded.commit.id.clone(),
        decisions: all_decisions,
        runs: finished,
        elapsed_ms: started.elapsed().as_millis() as u64,
        exit_code,
    })
}

/// Drives runs at once; returns them finished, in the order given.
pub async fn drive_all(engine: &Engine, run_ids: &[i64]) -> Result<Vec<Run>> {
    let handles: Vec<_> = run_ids
        .iter()
        .map(|&run_id| {
            let engine = engine.clone();
            tokio::spawn(async move { drive_waiting(&engine, run_id).await })
        })
        .collect();
    let mut runs = Vec::new();
    for handle in handles {
        runs.push(handle.await??);
    }
    Ok(runs)
}

/// Drives a run, waiting while another live process holds it.
async fn drive_waiting(engine: &Engine, run_id: i64) -> Result<Run, EngineError> {
    loop {
        match engine.drive(run_id).await {
            Err(EngineError::Busy { expires_in_ms, .. }) => {
                tokio::time::sleep(Duration::from_millis(expires_in_ms.clamp(200, 2_000) as u64)).await;
            }
            other => return other,
        }
    }
}

/// The exit code of a server's reconcile answer, by the rules of [`exit_code`]: what it
/// skipped because it failed before, or left waiting for approval, says so.
pub fn exit_code_of_answer(answer: &launchway_api::ReconcileAnswer) -> u8 {
    use launchway_api::DecisionKind;
    let skipped = |state: RunState| {
        answer.runs.iter().any(|d| d.decision == DecisionKind::Skipped && d.previous_state == Some(state))
    };
    if skipped(RunState::Failed) {
        exit::RUN_FAILED
    } else if skipped(RunState::RolledBack) {
        exit::ROLLED_BACK
    } else if answer.runs.iter().any(|d| d.decision == DecisionKind::WaitingForApproval) {
        exit::AWAITING_APPROVAL
    } else {
        exit::SUCCESS
    }
}

pub fn exit_code(runs: &[Run], decisions: &[Decision]) -> u8 {
    let skipped = |state: RunState| {
        decisions.iter().any(|d| matches!(d, Decision::Skipped { previous_state, .. } if *previous_state == state))
    };
    if runs.iter().any(|run| run.state == RunState::Failed) || skipped(RunState::Failed) {
        exit::RUN_FAILED
    } else if runs.iter().any(|run| run.state == RunState::RolledBack) || skipped(RunState::RolledBack) {
        exit::ROLLED_BACK
    } else if runs.iter().any(parked) || decisions.iter().any(|decision| matches!(decision, Decision::Waiting { .. })) {
        exit::AWAITING_APPROVAL
    } else {
        exit::SUCCESS
    }
}

/// A run that came back from being driven without finishing: it waits for a person
/// (its own approval, or, pending, one that a run it depends on waits for).
fn parked(run: &Run) -> bool {
    matches!(run.state, RunState::AwaitingApproval | RunState::Pending)
}

pub fn print_summary(runs: &[Run], elapsed: Duration) {
    if runs.is_empty() {
        println!("nothing to deploy ({})", format_duration(elapsed));
        return;
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            vec![
                run.id.to_string(),
                format!("{}@{}", run.app, run.env),
                run.state.to_string(),
                run.finished_at
                    .map(|finished| format_duration(Duration::from_millis((finished - run.created_at).max(0) as u64)))
                    .unwrap_or_default(),
                run.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!();
    println!("{}", table(&["RUN", "APP", "STATE", "TOOK", "RESULT"], &rows));
    for run in runs.iter().filter(|run| run.state == RunState::AwaitingApproval) {
        println!(
            "run {} waits for approval: `launchway approve {}` (or `launchway reject {}`) by someone allowed to",
            run.id, run.id, run.id
        );
    }
    for run in runs.iter().filter(|run| run.state == RunState::Pending) {
        println!(
            "run {} ({}@{}) waits for the runs it depends on ({}), one of which waits for approval; it starts once they succeed",
            run.id,
            run.app,
            run.env,
            run.waits_for.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    println!("done in {}", format_duration(elapsed));
}
