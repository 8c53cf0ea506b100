//! `launchway plan`: what a deploy would change, changing nothing.

use anyhow::{Result, bail};
use launchway_engine::AppPlan;

use crate::cli::{Output, Scope};
use crate::context::Context;
use crate::exit;
use crate::output::{plan_lines, print_json, say};

pub struct PlanOptions {
    /// Exit 2 when something would change (Terraform's `-detailed-exitcode`).
    pub detailed_exitcode: bool,
    /// Plan the files on disk rather than `--ref`.
    pub work_tree: bool,
}

pub async fn run(context: &Context, scope: &Scope, options: &PlanOptions) -> Result<u8> {
    let output = context.output();
    let (manifest, warnings, source) = if options.work_tree {
        if context.global.git_ref != "HEAD" {
            bail!("--work-tree plans the files on disk; it cannot be combined with --ref {}", context.global.git_ref);
        }
        let loaded = context.load_work_tree().await?;
        let head = loaded.head.as_ref().map(|commit| commit.short_id().to_owned());
        let line = format!(
            "plan for the files in {} (uncommitted edits included; HEAD is {})",
            loaded.root.display(),
            head.as_deref().unwrap_or("not committed yet")
        );
        let json = serde_json::json!({"work_tree": loaded.root, "head": loaded.head.as_ref().map(|commit| &commit.id)});
        (loaded.manifest, loaded.warnings, (line, json))
    } else {
        let loaded = context.load().await?;
        let edited = context.uncommitted_edits(&loaded.commit).await;
        if !edited.is_empty() {
            eprintln!(
                "warning: uncommitted edits to {} are not in this plan (it is of HEAD {}): commit them, or plan the files on disk with --work-tree",
                edited.join(", "),
                loaded.commit.short_id()
            );
        }
        let line = format!("plan for commit {} \"{}\"", loaded.commit.short_id(), loaded.commit.summary);
        let json = serde_json::json!({"commit": {"id": loaded.commit.id, "summary": loaded.commit.summary}});
        (loaded.manifest, loaded.warnings, (line, json))
    };
    let selection = context.selection(scope, &manifest, false)?;
    let engine = context.engine().await?;
    let plans = engine.plan(&manifest, &selection).await?;
    match output {
        Output::Json => {
            let mut document = source.1;
            document["plans"] = serde_json::to_value(&plans)?;
            print_json(&document);
        }
        Output::Text => {
            say(output, &source.0);
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            print_plans(output, &plans);
        }
    }
    let changes = plans.iter().any(AppPlan::would_change);
    Ok(if options.detailed_exitcode && changes { exit::CHANGES } else { exit::SUCCESS })
}

fn print_plans(output: Output, plans: &[AppPlan]) {
    let changing = plans.iter().filter(|plan| plan.would_change()).count();
    for plan in plans {
        let mut lines = plan_lines(plan).into_iter();
        if let Some(heading) = lines.next() {
            say(output, &heading);
        }
        if let Some(pin) = plan.pinned.as_ref().filter(|_| !plan.is_no_op()) {
            say(
                output,
                &format!(
                    "      pinned to release {} by {}: deploy leaves it there; `launchway unpin --app {} --env {}` first",
                    pin.release_id, pin.by, plan.app, plan.env
                ),
            );
        }
        for line in lines {
            say(output, &line);
        }
    }
    say(output, &format!("{changing} of {} app{} would change", plans.len(), if plans.len() == 1 { "" } else { "s" }));
}
