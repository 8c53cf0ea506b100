//! The rules that decide what a deploy does for one (app, environment), as pure
//! functions of facts: no store, no target, no clock of their own. `sync.rs` gathers the
//! facts and acts on the verdicts.
//!
//! The decision goes in stages, each with the facts it needs, so that what a later stage
//! needs is read only when an earlier one goes on (an app that runs as desired costs no
//! look at its failed runs):
//! 1. [`on_unfinished`]: an unfinished run is waited for, resumed or superseded;
//! 2. [`on_settled`]: a pin holds the app; what runs as desired is left alone;
//! 3. [`on_change`]: a revision that failed is not deployed again unless asked; drift from
//!    the verified release is repaired; anything else deploys.
//!
//! [`repair_wait`] holds repairs back when the app was repaired recently.

use std::time::Duration;

use launchway_store::{AppPlan, Pin, PlanAction, Release, Run, RunId, RunState};
use serde::Serialize;

use crate::steps::dependencies::ParkedBehind;

/// The wait before repairing an app again that was repaired within the last hour; it
/// doubles with each further repair in that hour, up to [`REPAIR_BACKOFF_MAX`]. A
/// release that keeps dying is not replaced in a tight loop.
pub(crate) const REPAIR_BACKOFF: Duration = Duration::from_secs(60);
pub(crate) const REPAIR_BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);
/// How far back repairs count toward the back-off.
pub(crate) const REPAIR_MEMORY: Duration = Duration::from_secs(3600);

/// What `deploy` does for one (app, environment).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A run was created.
    Started {
        run: Box<Run>,
        plan: Box<AppPlan>,
    },
    /// A run interrupted earlier is resumed first.
    #[serde(rename = "resumed")]
    Resume {
        run: Box<Run>,
    },
    Unchanged {
        app: String,
        env: String,
        revision: String,
    },
    Skipped {
        app: String,
        env: String,
        reason: String,
        /// How the revision's last run ended.
        previous_state: RunState,
    },
    /// A run for the same desired state waits for approval: its own, or (still
    /// pending) that of a run it depends on.
    #[serde(rename = "waiting_for_approval")]
    Waiting {
        run: Box<Run>,
        /// The run to approve for this one to move: itself, or one it depends on.
        approval_run: RunId,
        /// What it waits for when that is not its own approval ("api's run 4, which
        /// waits for approval").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        behind: Option<String>,
    },
    /// A run for the app is being driven by another live process.
    Busy {
        app: String,
        env: String,
        run_id: i64,
        owner: String,
    },
    /// A manual rollback holds the app at a release: nothing newer deploys until the
    /// pin is lifted. `wants` is the revision the repo asks for, when it differs.
    Pinned {
        app: String,
        env: String,
        pin: Pin,
        wants: Option<String>,
    },
    /// What runs drifted from the last verified release, which was repaired recently:
    /// the next repair waits until `retry_at` (Unix ms).
    RepairLater {
        app: String,
        env: String,
        reason: String,
        retry_at: i64,
    },
}

/// Whether what runs is what launchway would deploy (`revision`): the target plans no
/// change from live state, and the release the store says runs is that revision. The
/// one rule behind both "unchanged" (no run) and "in sync".
pub(crate) fn runs_as_desired(plan: &AppPlan, current: Option<&Release>, revision: &str) -> bool {
    plan.is_no_op() && current.is_some_and(|release| release.revision == revision)
}

/// Who holds an unfinished run's lease, as this process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// No lease, or one this process holds, or one that ran out.
    Nobody,
    /// Another process, alive as far as this one can tell, until `expires_at`.
    Other { expires_at: i64 },
    /// A process on this host that no longer runs.
    Dead,
}

/// Whether another live process drives the run now.
pub(crate) fn held_elsewhere(holder: Holder, now: i64) -> bool {
    matches!(holder, Holder::Other { expires_at } if expires_at > now)
}

/// Rule: a run another live process drives is left to it (busy); any other unfinished
/// run is resumed here.
pub(crate) fn busy_or_resume(run: &Run, holder: Holder, now: i64) -> Decision {
    match held_elsewhere(holder, now) {
        true => Decision::Busy {
            app: run.app.clone(),
            env: run.env.clone(),
            run_id: run.id,
            owner: run.lease_owner.clone().unwrap_or_default(),
        },
        false => Decision::Resume { run: Box::new(run.clone()) },
    }
}

/// What is known of the app's unfinished run.
pub(crate) struct UnfinishedFacts<'a> {
    pub run: &'a Run,
    pub holder: Holder,
    /// What it is parked behind: its own approval, or one a dependency waits for.
    pub parked: Option<&'a ParkedBehind>,
    /// Whether the run deploys the revision the repo asks for now.
    pub same_revision: bool,
    pub now: i64,
}

/// What to do about an unfinished run.
#[derive(Debug)]
pub(crate) enum OnUnfinished {
    /// Said, and nothing more for this app.
    Decided(Decision),
    /// A newer change replaces the parked run, which is superseded; the decision goes on.
    Supersede,
}

/// Rule: an unfinished run is resumed (or waited for, while another process drives it)
/// before anything new starts; a run parked behind an approval for the same revision
/// waits for it, and one parked for another revision is superseded, since approving it
/// later would deploy a state nobody wants any more.
pub(crate) fn on_unfinished(facts: &UnfinishedFacts<'_>) -> OnUnfinished {
    let run = facts.run;
    if held_elsewhere(facts.holder, facts.now) {
        return OnUnfinished::Decided(busy_or_resume(run, facts.holder, facts.now));
    }
    match facts.parked {
        // Driving it again would only park it again.
        Some(parked) if facts.same_revision => OnUnfinished::Decided(Decision::Waiting {
            run: Box::new(run.clone()),
            approval_run: parked.approval_run,
            behind: (parked.approval_run != run.id).then(|| parked.what.clone()),
        }),
        Some(_) => OnUnfinished::Supersede,
        None => OnUnfinished::Decided(Decision::Resume { run: Box::new(run.clone()) }),
    }
}

/// A release and what bringing it back would do (`None`: nothing drifted from it).
pub(crate) struct ReleaseDrift<'a> {
    pub release: &'a Release,
    pub drift: Option<&'a AppPlan>,
}

/// What is known once no run is under way.
pub(crate) struct SettledFacts<'a> {
    pub app: &'a str,
    pub env: &'a str,
    /// The revision the repo (and what CI published) asks for.
    pub revision: &'a str,
    /// A manual rollback's pin, with the pinned release.
    pub pin: Option<(&'a Pin, ReleaseDrift<'a>)>,
    /// What deploying `revision` would do to what runs.
    pub plan: &'a AppPlan,
    /// The release the store says runs.
    pub current: Option<&'a Release>,
    /// A publication that was held back, and how the run that tried it ended.
    pub held_back: Option<&'a (String, RunState)>,
}

/// A verdict that starts a run, or says why none.
#[derive(Debug)]
pub(crate) enum Verdict<'a> {
    Decided(Decision),
    /// A repair run that brings `release` back with `plan` (unless repaired too
    /// recently).
    Repair {
        release: &'a Release,
        plan: &'a AppPlan,
    },
    /// A release of the desired revision, and its deploy run.
    Deploy,
    /// The next stage decides.
    GoOn,
}

/// Rules: a pinned app gets nothing newer, and only drift from its pinned release is
/// repaired; what runs as desired is left alone (a held-back publication is said, not
/// hidden).
pub(crate) fn on_settled<'a>(facts: &SettledFacts<'a>) -> Verdict<'a> {
    let (app, env) = (facts.app.to_owned(), facts.env.to_owned());
    if let Some((pin, pinned)) = &facts.pin {
        return match pinned.drift {
            Some(plan) => Verdict::Repair { release: pinned.release, plan },
            None => Verdict::Decided(Decision::Pinned {
                app,
                env,
                wants: (pinned.release.revision != facts.revision).then(|| facts.revision.to_owned()),
                pin: (*pin).clone(),
            }),
        };
    }
    if runs_as_desired(facts.plan, facts.current, facts.revision) {
        return Verdict::Decided(match facts.held_back {
            Some((reason, previous_state)) => {
                Decision::Skipped { app, env, reason: reason.clone(), previous_state: *previous_state }
            }
            None => Decision::Unchanged { app, env, revision: facts.revision.to_owned() },
        });
    }
    Verdict::GoOn
}

/// What is known once the desired revision does not run.
pub(crate) struct ChangeFacts<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub revision: &'a str,
    pub plan: &'a AppPlan,
    /// The last verified release.
    pub good: Option<ReleaseDrift<'a>>,
    /// The last deploy or repair, when it tried `revision` and did not succeed (read only
    /// without `retry_failed`).
    pub failed_before: Option<&'a Run>,
    /// `deploy --retry`: deploy again what failed, was rolled back or rejected.
    pub retry_failed: bool,
}

/// Rules: a revision whose last deploy failed, was rolled back or rejected is not
/// deployed again until the desired state changes or a retry is asked for (what drifted
/// from the last verified release is still repaired); drift of the verified desired
/// revision is repaired toward it; anything else deploys.
pub(crate) fn on_change<'a>(facts: &ChangeFacts<'a>) -> Verdict<'a> {
    let repairable = facts.good.as_ref().and_then(|good| Some((good.release, good.drift?)));
    if let Some(failed) = facts.failed_before.filter(|_| !facts.retry_failed) {
        return match repairable {
            Some((release, plan)) => Verdict::Repair { release, plan },
            None => Verdict::Decided(skipped(facts.app, facts.env, facts.revision, failed)),
        };
    }
    let verified_desired = facts.good.as_ref().filter(|good| good.release.revision == facts.revision);
    if facts.plan.action == PlanAction::Converge
        && let Some(good) = verified_desired
    {
        // The desired state runs and was verified; only its replicas drifted.
        return Verdict::Repair { release: good.release, plan: facts.plan };
    }
    Verdict::Deploy
}

/// Where a run goes once planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPlan {
    /// Nothing to change, and this release was verified here before: done.
    AlreadyVerified,
    /// Nothing to change, but launchway never watched it settle: verified now.
    VerifyOnly,
    AwaitApproval,
    Deploy,
}

/// Rules: a plan that changes nothing deploys nothing (a release verified here before is
/// done; otherwise it is verified, so that it becomes the good release only once
/// watched); a change waits for an approval when the run asks for one (deploys only:
/// rollbacks are someone's explicit request); else it deploys.
pub(crate) fn after_plan(plan: &AppPlan, verified_here: bool, wants_approval: bool) -> AfterPlan {
    match (plan.is_no_op(), verified_here, wants_approval) {
        (true, true, _) => AfterPlan::AlreadyVerified,
        (true, false, _) => AfterPlan::VerifyOnly,
        (false, _, true) => AfterPlan::AwaitApproval,
        (false, _, false) => AfterPlan::Deploy,
    }
}

/// When the next repair may start, if not now: `recent` are the app's repairs within
/// [`REPAIR_MEMORY`], newest first. Each repair in that hour doubles the wait after the
/// last one; a retry asked for waits for nothing.
pub(crate) fn repair_wait(recent: &[Run], retry_failed: bool, now: i64) -> Option<i64> {
    let last = recent.first().filter(|_| !retry_failed)?;
    let doublings = (recent.len() - 1).min(10) as u32;
    let backoff = REPAIR_BACKOFF.saturating_mul(1 << doublings).min(REPAIR_BACKOFF_MAX);
    let retry_at = last.finished_at.unwrap_or(last.updated_at) + backoff.as_millis() as i64;
    (now < retry_at).then_some(retry_at)
}

pub(crate) fn skipped(app: &str, env: &str, revision: &str, failed: &Run) -> Decision {
    Decision::Skipped {
        app: app.to_owned(),
        env: env.to_owned(),
        previous_state: failed.state,
        reason: format!(
            "revision {revision} {} in run {}{}; change the manifest, or pass --retry to deploy it again",
            match failed.state {
                RunState::RolledBack => "was rolled back",
                RunState::Rejected => "was rejected",
                _ => "failed",
            },
            failed.id,
            failed.reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests;
