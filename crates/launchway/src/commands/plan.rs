//! `launchway plan`: what a deploy would change, changing nothing.

use anyhow::Result;
use launchway_engine::{AppPlan, PlanAction};

use crate::cli::{Output, Scope};
use crate::context::Context;
use crate::exit;
use crate::output::print_json;

pub async fn run(context: &Context, scope: &Scope) -> Result<u8> {
    let loaded = context.load().await?;
    let selection = context.selection(scope, &loaded.manifest, false)?;
    let engine = context.engine().await?;
    let plans = engine.plan(&loaded.manifest, &selection).await?;
    match context.output() {
        Output::Json => print_json(&serde_json::json!({
            "commit": {"id": loaded.commit.id, "summary": loaded.commit.summary},
            "plans": plans,
        })),
        Output::Text => {
            println!("plan for commit {} \"{}\"", loaded.commit.short_id(), loaded.commit.summary);
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print_plans(&plans);
        }
    }
    Ok(exit::SUCCESS)
}

pub fn print_plans(plans: &[AppPlan]) {
    let changing = plans.iter().filter(|plan| plan.would_change()).count();
    for plan in plans {
        println!("{}", plan_heading(plan));
        if let Some(pin) = plan.pinned.as_ref().filter(|_| !plan.is_no_op()) {
            println!(
                "      pinned to release {} by {}: deploy leaves it there; `launchway unpin --app {} --env {}` first",
                pin.release_id, pin.by, plan.app, plan.env
            );
        }
        for change in &plan.changes {
            println!("      {change}");
        }
    }
    println!("{changing} of {} app{} would change", plans.len(), if plans.len() == 1 { "" } else { "s" });
}

pub fn plan_heading(plan: &AppPlan) -> String {
    let who = format!("{}@{}", plan.app, plan.env);
    match plan.action {
        PlanAction::NoChange => format!("  = {who}  no change (revision {})", plan.to_revision),
        PlanAction::Create => format!("  + {who}  create revision {}: {}", plan.to_revision, plan.summary),
        PlanAction::Update => format!(
            "  ~ {who}  revision {} → {}: {}",
            plan.from_revision.as_deref().unwrap_or("none"),
            plan.to_revision,
            plan.summary
        ),
        PlanAction::Converge => format!("  ~ {who}  revision {}: {}", plan.to_revision, plan.summary),
        PlanAction::Unmanaged => format!("  ? {who}  {}", plan.summary),
    }
}
