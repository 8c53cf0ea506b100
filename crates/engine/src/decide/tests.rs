//! Every rule of a deploy's decision, as a table of facts and the verdict they must give:
//! no store, no target, no clock.

use launchway_manifest::SourceFile;
use launchway_store::{AppPlan, Pin, PlanAction, Release, ReleaseSource, Run, RunKind, RunState};

use super::*;

const NOW: i64 = 1_000_000_000;

fn release(id: i64, revision: &str) -> Release {
    let text = "environments: {dev: {target: docker}}\nservices: {web: {image: example/web:1, port: 8080}}\n";
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.as_bytes().to_vec() }];
    let manifest = launchway_manifest::load(&files, &files).expect("valid").manifest;
    let deployment = manifest.deployments().next().expect("one app");
    Release {
        id,
        app: "web".into(),
        env: "dev".into(),
        revision: revision.into(),
        spec: deployment.spec.clone(),
        target: manifest.environments["dev"].target.clone(),
        source: ReleaseSource::default(),
        build: None,
        created_at: 0,
    }
}

fn run(id: i64, state: RunState, release_id: i64) -> Run {
    Run {
        id,
        app: "web".into(),
        env: "dev".into(),
        kind: RunKind::Deploy,
        state,
        release_id,
        previous_release_id: None,
        reason: None,
        plan: None,
        trigger: "test".into(),
        approval_policy: None,
        waits_for: Vec::new(),
        attempt: 1,
        lease_owner: None,
        lease_expires_at: None,
        created_at: 0,
        updated_at: 0,
        finished_at: None,
    }
}

fn plan(action: PlanAction, to: &str) -> AppPlan {
    AppPlan { summary: format!("{action:?} to {to}"), ..AppPlan::new("web", "dev", "service", action, to.into()) }
}

fn pin(release_id: i64) -> Pin {
    Pin { release_id, by: "alice".into(), at: 0, reason: None }
}

fn unfinished(run: &Run, holder: Holder, parked: Option<&ParkedBehind>, same_revision: bool) -> OnUnfinished {
    on_unfinished(&UnfinishedFacts { run, holder, parked, same_revision, now: NOW })
}

#[test]
fn an_unfinished_run_is_resumed_unless_another_live_process_drives_it() {
    let going = Run { lease_owner: Some("launchway:host:7:1".into()), ..run(3, RunState::Deploying, 1) };
    let cases = [
        (Holder::Nobody, "resumed"),
        (Holder::Dead, "resumed"),
        (Holder::Other { expires_at: NOW - 1 }, "resumed"),
        (Holder::Other { expires_at: NOW + 15_000 }, "busy"),
    ];
    for (holder, expected) in cases {
        let decided = match unfinished(&going, holder, None, true) {
            OnUnfinished::Decided(Decision::Resume { run }) if run.id == 3 => "resumed",
            OnUnfinished::Decided(Decision::Busy { run_id: 3, owner, .. }) if owner == "launchway:host:7:1" => "busy",
            other => panic!("{holder:?}: {other:?}"),
        };
        assert_eq!(decided, expected, "{holder:?}");
    }
}

#[test]
fn a_run_parked_behind_an_approval_waits_for_it_or_is_superseded_by_a_newer_change() {
    let parked_run = run(5, RunState::Pending, 2);
    let own = ParkedBehind { what: "approval".into(), approval_run: 5 };
    let dependency = ParkedBehind { what: "api's run 4, which waits for approval".into(), approval_run: 4 };

    match unfinished(&parked_run, Holder::Nobody, Some(&own), true) {
        OnUnfinished::Decided(Decision::Waiting { approval_run: 5, behind: None, .. }) => {}
        other => panic!("its own approval: {other:?}"),
    }
    match unfinished(&parked_run, Holder::Nobody, Some(&dependency), true) {
        OnUnfinished::Decided(Decision::Waiting { approval_run: 4, behind: Some(behind), .. }) => {
            assert_eq!(behind, "api's run 4, which waits for approval");
        }
        other => panic!("a dependency's approval: {other:?}"),
    }
    assert!(matches!(unfinished(&parked_run, Holder::Nobody, Some(&own), false), OnUnfinished::Supersede));
    // Not parked any more (approved, or out of time): driven to its end.
    assert!(matches!(
        unfinished(&parked_run, Holder::Nobody, None, false),
        OnUnfinished::Decided(Decision::Resume { .. })
    ));
}

#[test]
fn a_pinned_app_gets_nothing_newer_and_only_drift_from_its_pin_is_repaired() {
    let pinned = release(2, "r2");
    let (the_pin, drift) = (pin(2), plan(PlanAction::Converge, "r2"));
    let desired = plan(PlanAction::Update, "r3");
    let facts = |drift| SettledFacts {
        app: "web",
        env: "dev",
        revision: "r3",
        pin: Some((&the_pin, ReleaseDrift { release: &pinned, drift })),
        plan: &desired,
        current: Some(&pinned),
        held_back: None,
    };
    match on_settled(&facts(None)) {
        Verdict::Decided(Decision::Pinned { pin, wants, .. }) => {
            assert_eq!((pin.release_id, wants.as_deref()), (2, Some("r3")));
        }
        other => panic!("{other:?}"),
    }
    match on_settled(&facts(Some(&drift))) {
        Verdict::Repair { release, plan } => assert_eq!((release.id, plan.action), (2, PlanAction::Converge)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_runs_as_desired_is_left_alone_and_a_held_back_publication_is_said() {
    let current = release(1, "r1");
    let (same, other) = (AppPlan::no_change("web", "dev", "service", "r1".into()), plan(PlanAction::Update, "r2"));
    let held_back = ("the images published for commit abc failed in run 4".to_owned(), RunState::Failed);
    let facts = |plan, revision, held_back| SettledFacts {
        app: "web",
        env: "dev",
        revision,
        pin: None,
        plan,
        current: Some(&current),
        held_back,
    };
    assert!(matches!(
        on_settled(&facts(&same, "r1", None)),
        Verdict::Decided(Decision::Unchanged { revision, .. }) if revision == "r1"
    ));
    assert!(matches!(
        on_settled(&facts(&same, "r1", Some(&held_back))),
        Verdict::Decided(Decision::Skipped { previous_state: RunState::Failed, reason, .. }) if reason == held_back.0
    ));
    // The target plans no change but the store says another release runs: not as desired.
    assert!(matches!(on_settled(&facts(&same, "r2", None)), Verdict::GoOn));
    assert!(matches!(on_settled(&facts(&other, "r2", None)), Verdict::GoOn));
}

#[test]
fn a_failed_revision_is_not_deployed_again_unless_a_retry_is_asked_for() {
    let good = release(1, "r1");
    let desired = plan(PlanAction::Update, "r2");
    let drift = plan(PlanAction::Converge, "r1");
    let failed = Run { reason: Some("health check failed".into()), ..run(4, RunState::RolledBack, 2) };
    let facts = |good_drift, failed_before, retry_failed| ChangeFacts {
        app: "web",
        env: "dev",
        revision: "r2",
        plan: &desired,
        good: Some(ReleaseDrift { release: &good, drift: good_drift }),
        failed_before,
        retry_failed,
    };
    match on_change(&facts(None, Some(&failed), false)) {
        Verdict::Decided(Decision::Skipped { previous_state, reason, .. }) => {
            assert_eq!(previous_state, RunState::RolledBack);
            assert_eq!(
                reason,
                "revision r2 was rolled back in run 4 (health check failed); change the manifest, or pass --retry \
                 to deploy it again"
            );
        }
        other => panic!("{other:?}"),
    }
    // Left alone, but what drifted from the last verified release is repaired.
    match on_change(&facts(Some(&drift), Some(&failed), false)) {
        Verdict::Repair { release, .. } => assert_eq!(release.id, 1),
        other => panic!("{other:?}"),
    }
    assert!(matches!(on_change(&facts(None, Some(&failed), true)), Verdict::Deploy), "a retry deploys it");
    assert!(matches!(on_change(&facts(None, None, false)), Verdict::Deploy), "a new revision deploys");
}

#[test]
fn drift_of_the_verified_desired_revision_is_repaired_and_of_an_unverified_one_redeployed() {
    let verified = release(1, "r1");
    let converge = plan(PlanAction::Converge, "r1");
    let facts = |revision| ChangeFacts {
        app: "web",
        env: "dev",
        revision,
        plan: &converge,
        good: Some(ReleaseDrift { release: &verified, drift: Some(&converge) }),
        failed_before: None,
        retry_failed: false,
    };
    match on_change(&facts("r1")) {
        Verdict::Repair { release, plan } => assert_eq!((release.id, plan.summary.as_str()), (1, "Converge to r1")),
        other => panic!("{other:?}"),
    }
    // Never repaired toward a release that was not verified: it is deployed as new.
    assert!(matches!(on_change(&facts("r9")), Verdict::Deploy));
}

#[test]
fn repairs_back_off_doubling_within_the_hour_up_to_half_an_hour() {
    let repaired_at = |id: i64, finished: i64| Run { finished_at: Some(finished), ..run(id, RunState::Succeeded, 1) };
    let minute = 60_000;
    assert_eq!(repair_wait(&[], false, NOW), None, "never repaired: now");
    assert_eq!(repair_wait(&[repaired_at(1, NOW - 10_000)], false, NOW), Some(NOW - 10_000 + minute));
    assert_eq!(repair_wait(&[repaired_at(1, NOW - minute)], false, NOW), None, "a minute after one repair");
    let three = [repaired_at(3, NOW - minute), repaired_at(2, NOW - 20 * minute), repaired_at(1, NOW - 30 * minute)];
    assert_eq!(repair_wait(&three, false, NOW), Some(NOW + 3 * minute), "three repairs: four minutes after the last");
    let many: Vec<Run> = (0..12).map(|id| repaired_at(id, NOW - minute)).collect();
    assert_eq!(repair_wait(&many, false, NOW), Some(NOW - minute + 30 * minute), "at most half an hour");
    assert_eq!(repair_wait(&three, true, NOW), None, "a retry asked for waits for nothing");
}

#[test]
fn a_planned_run_deploys_a_change_waits_for_its_approval_and_only_verifies_what_already_runs() {
    let (none, change) = (AppPlan::no_change("web", "dev", "service", "r1".into()), plan(PlanAction::Update, "r2"));
    assert_eq!(after_plan(&none, true, true), AfterPlan::AlreadyVerified, "no approval asked for nothing");
    assert_eq!(after_plan(&none, false, false), AfterPlan::VerifyOnly, "never watched: verified now");
    assert_eq!(after_plan(&change, true, true), AfterPlan::AwaitApproval);
    assert_eq!(after_plan(&change, false, false), AfterPlan::Deploy);
}
