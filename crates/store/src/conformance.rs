//! The behaviour every store backend must show. Each backend's tests call these
//! functions with a fresh, empty store; a panic is a failed expectation.

use std::collections::BTreeMap;
use std::time::Duration;

use launchway_manifest::{AppSpec, ContainerSpec, ServiceSpec, Strategy, TargetSpec};

use crate::*;

fn service(image: &str) -> AppSpec {
    AppSpec::Service(ServiceSpec {
        containers: vec![ContainerSpec {
            name: "web".into(),
            image: image.into(),
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            port: Some(8080),
        }],
        replicas: 2,
        health: None,
        strategy: Strategy::Rolling { max_surge: 1, max_unavailable: 0, timeout: Duration::from_secs(60) },
        stop_grace_period: Duration::from_secs(5),
        settle_window: None,
        ingress: None,
    })
}

async fn release(store: &dyn Store, app: &str, image: &str) -> Release {
    store
        .create_release(NewRelease {
            app: app.into(),
            env: "dev".into(),
            spec: service(image),
            target: TargetSpec::Docker { host: None },
            source: ReleaseSource {
                commit: Some("0123abcd".into()),
                summary: Some("bump web".into()),
                author: Some("alice".into()),
                committed_at: Some(1_700_000_000_000),
                origin: None,
            },
            build: None,
        })
        .await
        .expect("release is created")
}

async fn run(store: &dyn Store, release: &Release) -> Result<Run> {
    run_waiting_for(store, release, Vec::new()).await
}

async fn run_waiting_for(store: &dyn Store, release: &Release, waits_for: Vec<RunId>) -> Result<Run> {
    let (run, event) = store
        .create_run(
            NewRun {
                app: release.app.clone(),
                env: release.env.clone(),
                kind: RunKind::Deploy,
                release_id: release.id,
                previous_release_id: None,
                trigger: "test".into(),
                approval_policy: None,
                pin: None,
                decided_after: None,
                waits_for,
            },
            NewEvent::for_app(&release.app, &release.env, created(release.id), "created"),
        )
        .await?;
    assert_eq!(event.run_id, Some(run.id), "the creation event names the run");
    Ok(run)
}

fn created(release: ReleaseId) -> EventBody {
    EventBody::RunCreated(RunCreated { release, revision: "r".into(), trigger: "test".into(), kind: RunKind::Deploy })
}

fn entered(state: RunState) -> EventBody {
    EventBody::RunEntered { state, detail: TransitionDetail::default() }
}

fn to(state: RunState, run: &Run) -> Transition {
    Transition {
        to: state,
        reason: None,
        plan: None,
        event: NewEvent::for_run(run, entered(state), state.as_str()),
        deployment: None,
        approval: None,
        release: None,
    }
}

/// Releases keep their spec exactly; runs start pending with their creation event.
pub async fn releases_and_runs_round_trip(store: &dyn Store) {
    let created = release(store, "web", "example/web:1").await;
    let read = store.release(created.id).await.expect("release is read");
    assert_eq!(read, created);
    assert_eq!(read.spec.revision().0, read.revision);

    let run = run(store, &created).await.expect("run is created");
    assert_eq!(run.state, RunState::Pending);
    assert_eq!(run.attempt, 0);
    assert_eq!(store.run(run.id).await.expect("run is read"), run);
    let events = store.events(&EventFilter { run_id: Some(run.id), ..Default::default() }).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "run.created");
    assert_eq!(events[0].data["release"], created.id);
    assert!(matches!(store.run(9999).await, Err(StoreError::NotFound { what: "run", id: 9999 })));

    // A run of an app that depends on web's keeps which runs it waits for.
    let api = release(store, "api", "example/api:1").await;
    let waiting = run_waiting_for(store, &api, vec![run.id]).await.expect("run is created");
    assert_eq!(waiting.waits_for, [run.id]);
    assert_eq!(store.run(waiting.id).await.expect("run is read").waits_for, [run.id]);
}

/// Runs list newest first, a page at a time: each page goes on below the last one's
/// oldest run, so a run created meanwhile never shifts a page.
pub async fn runs_are_listed_newest_first_a_page_at_a_time(store: &dyn Store) {
    let mut ids = Vec::new();
    for app in ["a1", "a2", "a3", "a4", "a5"] {
        let release = release(store, app, "example/web:1").await;
        ids.push(run(store, &release).await.expect("run").id);
    }
    ids.reverse();
    let page = |before_id| RunFilter { before_id, limit: Some(2), ..Default::default() };
    let listed = |runs: Vec<Run>| runs.iter().map(|run| run.id).collect::<Vec<_>>();
    let first = listed(store.runs(&page(None)).await.expect("runs"));
    assert_eq!(first, ids[..2]);
    let second = listed(store.runs(&page(first.last().copied())).await.expect("runs"));
    assert_eq!(second, ids[2..4]);
    let last = listed(store.runs(&page(second.last().copied())).await.expect("runs"));
    assert_eq!(last, ids[4..]);
}

/// What a board reads at once: releases by their ids, and each pair's newest run.
pub async fn releases_and_latest_runs_are_read_in_one_go(store: &dyn Store) {
    let web = release(store, "web", "example/web:1").await;
    let api = release(store, "api", "example/api:1").await;
    let mut found = store.releases(&[api.id, web.id, 9999]).await.expect("releases");
    found.sort_by_key(|release| release.id);
    assert_eq!(found, [web.clone(), api.clone()], "the unknown id is left out");
    assert!(store.releases(&[]).await.expect("none").is_empty());

    let first = run(store, &web).await.expect("run");
    let lease = store.claim_run(first.id, "w", 30_000, None).await.expect("claim").expect("free");
    store.transition(&lease, to(RunState::Failed, &first)).await.expect("finished");
    let newer = run(store, &web).await.expect("run");
    let only = run(store, &api).await.expect("run");
    let mut latest: Vec<i64> = store.latest_runs().await.expect("latest").iter().map(|run| run.id).collect();
    latest.sort();
    assert_eq!(latest, [newer.id, only.id]);
}

/// Two runs never act on the same (app, environment) at once.
pub async fn one_unfinished_run_per_app_and_environment(store: &dyn Store) {
    let web = release(store, "web", "example/web:1").await;
    let first = run(store, &web).await.expect("first run");
    match run(store, &web).await {
        Err(StoreError::RunInProgress { run_id, app, env }) => {
            assert_eq!((run_id, app.as_str(), env.as_str()), (first.id, "web", "dev"));
        }
        other => panic!("expected RunInProgress, got {other:?}"),
    }
    // Another app is independent.
    let api = release(store, "api", "example/api:1").await;
    run(store, &api).await.expect("a run for another app");
    // Once the first run finishes, a new one may start.
    let lease = store.claim_run(first.id, "worker-a", 30_000, None).await.expect("claim").expect("free");
    store.transition(&lease, to(RunState::Failed, &first)).await.expect("finish");
    run(store, &web).await.expect("a run after the first finished");
    let unfinished = store.runs(&RunFilter { unfinished_only: true, ..Default::default() }).await.expect("runs");
    assert_eq!(unfinished.len(), 2);
}

/// A lease is exclusive until it expires or its holder is known dead, and a claim
/// fences out the previous holder.
pub async fn leases_are_exclusive_and_fence_out_stale_holders(store: &dyn Store) {
    let web = release(store, "web", "example/web:1").await;
    let created = run(store, &web).await.expect("run");

    let first = store.claim_run(created.id, "worker-a", 30_000, None).await.expect("claim").expect("free");
    assert_eq!(first.attempt, 1);
    assert!(store.claim_run(created.id, "worker-b", 30_000, None).await.expect("claim").is_none(), "held by a");
    store.renew_lease(&first, 30_000).await.expect("the holder renews");

    // worker-b has seen worker-a's process die and takes the run over.
    let second =
        store.claim_run(created.id, "worker-b", 30_000, Some("worker-a")).await.expect("claim").expect("taken over");
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        store.transition(&first, to(RunState::Validating, &created)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(store.renew_lease(&first, 30_000).await, Err(StoreError::LeaseLost { .. })));
    let (moved, event) = store.transition(&second, to(RunState::Validating, &created)).await.expect("b acts");
    assert_eq!(event.message, "validating");
    assert_eq!(moved.state, RunState::Validating);

    // An expired lease is free for anyone.
    store.renew_lease(&second, -1).await.expect("renew to the past");
    let third = store.claim_run(created.id, "worker-c", 30_000, None).await.expect("claim").expect("expired");
    assert_eq!(third.attempt, 3);

    // A released lease is free at once.
    store.release_lease(&third).await.expect("release");
    let fourth = store.claim_run(created.id, "worker-d", 30_000, None).await.expect("claim").expect("released");
    assert_eq!(fourth.attempt, 4);

    // A finished run cannot be claimed.
    store.transition(&fourth, to(RunState::Succeeded, &created)).await.expect("finish");
    assert!(store.claim_run(created.id, "worker-d", 30_000, None).await.expect("claim").is_none());
}

/// A release and its run are recorded together or not at all: losing the race for an
/// (app, environment) leaves no release behind.
pub async fn a_release_and_its_run_are_created_together_or_not_at_all(store: &dyn Store) {
    let new_release = |image: &str| NewRelease {
        app: "web".into(),
        env: "dev".into(),
        spec: service(image),
        target: TargetSpec::Docker { host: None },
        source: ReleaseSource::default(),
        build: None,
    };
    let new_run = || NewRun {
        app: "web".into(),
        env: "dev".into(),
        kind: RunKind::Deploy,
        release_id: 0,
        previous_release_id: None,
        trigger: "test".into(),
        approval_policy: None,
        pin: None,
        decided_after: Some(0),
        waits_for: Vec::new(),
    };
    let event = NewEvent::for_app("web", "dev", created(0), "created");
    let (release, run, created) = store
        .create_release_with_run(new_release("example/web:1"), new_run(), event.clone())
        .await
        .expect("created together");
    assert_eq!(run.release_id, release.id);
    assert_eq!(store.release(release.id).await.expect("the release is kept"), release);
    assert!(matches!(created.body(), EventBody::RunCreated(body) if body.release == release.id), "{created:?}");
    assert_eq!(created.data["trigger"], "test");

    match store.create_release_with_run(new_release("example/web:2"), new_run(), event.clone()).await {
        Err(StoreError::RunInProgress { run_id, .. }) => assert_eq!(run_id, run.id),
        other => panic!("expected RunInProgress, got {other:?}"),
    }
    assert!(
        matches!(store.release(release.id + 1).await, Err(StoreError::NotFound { .. })),
        "the refused run's release was not kept"
    );

    // Decided from a state that is gone: a run was created (and finished) meanwhile.
    let lease = store.claim_run(run.id, "w", 30_000, None).await.expect("claim").expect("free");
    store.transition(&lease, to(RunState::Succeeded, &run)).await.expect("finish");
    let stale = store
        .create_release_with_run(
            new_release("example/web:3"),
            NewRun { decided_after: Some(0), ..new_run() },
            event.clone(),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::DecidedOnStale { .. })), "{stale:?}");
    assert!(matches!(store.release(release.id + 1).await, Err(StoreError::NotFound { .. })));
    let (_, fresh, _) = store
        .create_release_with_run(
            new_release("example/web:3"),
            NewRun { decided_after: Some(run.id), ..new_run() },
            event,
        )
        .await
        .expect("decided from the newest run");
    assert!(fresh.id > run.id);
}

/// Terminal transitions record what is deployed; only verified releases become the
/// rollback target.
pub async fn finished_runs_record_the_deployment(store: &dyn Store) {
    let v1 = release(store, "web", "example/web:1").await;
    let run1 = run(store, &v1).await.expect("run");
    let lease = store.claim_run(run1.id, "w", 30_000, None).await.expect("claim").expect("free");
    let mut finish = to(RunState::Succeeded, &run1);
    finish.deployment = Some(DeploymentUpdate { current_release_id: v1.id, verified: true });
    finish.reason = Some("deployed".into());
    let plan = AppPlan::no_change("web", "dev", "service", v1.revision.clone());
    finish.plan = Some(plan.clone());
    let (done, _) = store.transition(&lease, finish).await.expect("finish");
    assert!(done.finished_at.is_some());
    assert_eq!(done.reason.as_deref(), Some("deployed"));
    assert_eq!(done.plan, Some(plan));

    let record = store.deployment("web", "dev").await.expect("read").expect("recorded");
    assert_eq!((record.current_release_id, record.good_release_id), (v1.id, Some(v1.id)));
    assert_eq!(record.commit.as_deref(), Some("0123abcd"));

    let v2 = release(store, "web", "example/web:2").await;
    let run2 = run(store, &v2).await.expect("run");
    let lease = store.claim_run(run2.id, "w", 30_000, None).await.expect("claim").expect("free");
    let mut unverified = to(RunState::Failed, &run2);
    unverified.deployment = Some(DeploymentUpdate { current_release_id: v2.id, verified: false });
    store.transition(&lease, unverified).await.expect("finish");
    let record = store.deployment("web", "dev").await.expect("read").expect("recorded");
    assert_eq!((record.current_release_id, record.good_release_id), (v2.id, Some(v1.id)));
    assert_eq!(store.deployments().await.expect("all").len(), 1);
}

/// A run's build step moves it to a release with the images it built, in the
/// transition's own transaction; a reference is built once, and the first record stays.
pub async fn builds_are_recorded_once_and_move_the_run_to_what_they_built(store: &dyn Store) {
    let to_build = release(store, "web", "launchway/web/web:0123abcd").await;
    let run = run(store, &to_build).await.expect("run");
    let lease = store.claim_run(run.id, "w", 30_000, None).await.expect("claim").expect("free");
    let built = |image: &str| BuiltImage {
        reference: "launchway/web/web:0123abcd".into(),
        image: image.into(),
        app: "web".into(),
        container: "web".into(),
        run_id: run.id,
        built_at: now_ms(),
    };
    assert_eq!(store.record_built_image(built("sha256:aaa")).await.expect("recorded").image, "sha256:aaa");
    assert_eq!(
        store.record_built_image(built("sha256:bbb")).await.expect("recorded").image,
        "sha256:aaa",
        "a reference is built once: the first record stays"
    );
    let known = store
        .built_images(&["launchway/web/web:0123abcd".into(), "launchway/web/web:other".into()])
        .await
        .expect("read");
    assert_eq!(known.keys().collect::<Vec<_>>(), ["launchway/web/web:0123abcd"]);

    let mut planning = to(RunState::Planning, &run);
    planning.release = Some(NewRelease {
        app: "web".into(),
        env: "dev".into(),
        spec: service("sha256:aaa"),
        target: TargetSpec::Docker { host: None },
        source: to_build.source.clone(),
        build: None,
    });
    let (moved, _) = store.transition(&lease, planning).await.expect("transition");
    assert_ne!(moved.release_id, to_build.id);
    let resolved = store.release(moved.release_id).await.expect("the new release");
    assert_eq!(resolved.spec, service("sha256:aaa"));
    assert_eq!(resolved.source, to_build.source);
}

/// A manual rollback pins the app to its release in the run's own transaction; lifting
/// the pin is recorded with its event, once.
pub async fn rollbacks_pin_and_unpin_lifts_the_pin(store: &dyn Store) {
    let v1 = release(store, "web", "example/web:1").await;
    let first = run(store, &v1).await.expect("run");
    let lease = store.claim_run(first.id, "w", 30_000, None).await.expect("claim").expect("free");
    let mut finish = to(RunState::Succeeded, &first);
    finish.deployment = Some(DeploymentUpdate { current_release_id: v1.id, verified: true });
    store.transition(&lease, finish).await.expect("finish");
    assert_eq!(store.deployment("web", "dev").await.expect("read").expect("recorded").pin, None);

    let created = NewEvent::for_app("web", "dev", created(v1.id), "roll back");
    let (rollback, _) = store
        .create_run(
            NewRun {
                app: "web".into(),
                env: "dev".into(),
                kind: RunKind::Rollback,
                release_id: v1.id,
                previous_release_id: Some(v1.id),
                trigger: "rollback by alice".into(),
                approval_policy: None,
                pin: Some(NewPin { by: "alice".into(), reason: Some("v2 leaks memory".into()) }),
                decided_after: None,
                waits_for: Vec::new(),
            },
            created.clone(),
        )
        .await
        .expect("rollback run");
    let pin = store.deployment("web", "dev").await.expect("read").expect("recorded").pin.expect("pinned");
    assert_eq!((pin.release_id, pin.by.as_str(), pin.reason.as_deref()), (v1.id, "alice", Some("v2 leaks memory")));
    assert!(pin.at > 0);
    assert_eq!(rollback.kind, RunKind::Rollback);

    let unpinned = NewEvent::for_app(
        "web",
        "dev",
        EventBody::Audit { kind: AuditKind::DeploymentUnpinned, data: serde_json::Value::Null },
        "unpinned by bob",
    );
    let (lifted, event) = store.unpin("web", "dev", unpinned.clone()).await.expect("unpin").expect("was pinned");
    assert_eq!(lifted, pin);
    assert_eq!(event.kind, "deployment.unpinned");
    assert_eq!(store.deployment("web", "dev").await.expect("read").expect("recorded").pin, None);
    let events_before = store.events(&EventFilter::default()).await.expect("events").len();
    assert!(store.unpin("web", "dev", unpinned).await.expect("unpin").is_none(), "nothing to lift");
    assert_eq!(
        store.events(&EventFilter::default()).await.expect("events").len(),
        events_before,
        "and nothing recorded"
    );

    // Pinning needs something deployed to pin.
    let api = release(store, "api", "example/api:1").await;
    let pinned_nothing = store
        .create_run(
            NewRun {
                app: "api".into(),
                env: "dev".into(),
                kind: RunKind::Rollback,
                release_id: api.id,
                previous_release_id: None,
                trigger: "test".into(),
                approval_policy: None,
                pin: Some(NewPin { by: "alice".into(), reason: None }),
                decided_after: None,
                waits_for: Vec::new(),
            },
            NewEvent { app: Some("api".into()), ..created },
        )
        .await;
    assert!(matches!(pinned_nothing, Err(StoreError::NotFound { .. })), "{pinned_nothing:?}");
    assert!(store.runs(&RunFilter { app: Some("api".into()), ..Default::default() }).await.expect("runs").is_empty());
}

/// Steps are recorded per attempt, so a resumed step shows twice.
pub async fn steps_are_recorded_per_attempt(store: &dyn Store) {
    let web = release(store, "web", "example/web:1").await;
    let created = run(store, &web).await.expect("run");
    let first = store.claim_run(created.id, "a", 30_000, None).await.expect("claim").expect("free");
    let started = || NewEvent::for_run(&created, EventBody::StepStarted { step: "deploy".into() }, "deploy started");
    let event = store.start_step(&first, "deploy", started()).await.expect("start");
    assert_eq!((event.run_id, event.kind.as_str()), (Some(created.id), "step.started"), "written with the step");
    let second = store.claim_run(created.id, "b", 30_000, Some("a")).await.expect("claim").expect("taken");
    store.start_step(&second, "deploy", started()).await.expect("start again");
    let finished = StepFinished {
        step: "deploy".into(),
        outcome: StepOutcome::Succeeded,
        elapsed_ms: 5,
        detail: "3 replicas".into(),
    };
    let finished = NewEvent::for_run(&created, EventBody::StepFinished(finished), "deploy succeeded");
    let event = store
        .finish_step(&second, "deploy", StepOutcome::Succeeded, Some("3 replicas".into()), finished)
        .await
        .expect("finish");
    assert!(matches!(event.body(), EventBody::StepFinished(finished) if finished.elapsed_ms == 5), "{event:?}");
    let steps = store.steps(created.id).await.expect("steps");
    assert_eq!(steps.len(), 2);
    // The first attempt's driver is gone: its row says so rather than "running" (issue 21,
    // item 10: a finished run showed "deploy (try 1) running").
    assert_eq!((steps[0].attempt, steps[0].outcome), (1, Some(StepOutcome::Interrupted)));
    assert!(steps[0].finished_at.is_some());
    assert_eq!((steps[1].attempt, steps[1].outcome), (2, Some(StepOutcome::Succeeded)));
    assert_eq!(steps[1].detail.as_deref(), Some("3 replicas"));

    // A run that ends leaves no step unfinished.
    store
        .start_step(
            &second,
            "verify",
            NewEvent::for_run(&created, EventBody::StepStarted { step: "verify".into() }, "verify started"),
        )
        .await
        .expect("start");
    let ended = Transition {
        to: RunState::Failed,
        reason: Some("stopped".into()),
        plan: None,
        event: NewEvent::for_run(
            &created,
            EventBody::RunEntered { state: RunState::Failed, detail: Default::default() },
            "failed",
        ),
        deployment: None,
        approval: None,
        release: None,
    };
    store.transition(&second, ended).await.expect("ended");
    let steps = store.steps(created.id).await.expect("steps");
    assert_eq!(
        steps.last().map(|step| (step.name.as_str(), step.outcome)),
        Some(("verify", Some(StepOutcome::Interrupted)))
    );
}

/// Events come back in order and can be followed from an id.
pub async fn events_are_ordered_and_followable(store: &dyn Store) {
    for index in 0..5 {
        store
            .append_event(NewEvent::for_app(
                if index % 2 == 0 { "web" } else { "api" },
                "dev",
                EventBody::Other { kind: "test.event".into(), data: serde_json::Value::Null },
                format!("event {index}"),
            ))
            .await
            .expect("append");
    }
    let all = store.events(&EventFilter::default()).await.expect("events");
    let messages: Vec<&str> = all.iter().map(|event| event.message.as_str()).collect();
    assert_eq!(messages, ["event 0", "event 1", "event 2", "event 3", "event 4"]);
    let web = store.events(&EventFilter { app: Some("web".into()), ..Default::default() }).await.expect("events");
    assert_eq!(web.len(), 3);
    let after = store.events(&EventFilter { after_id: Some(all[2].id), ..Default::default() }).await.expect("events");
    assert_eq!(after.len(), 2);
    let last = store.events(&EventFilter { last: Some(2), ..Default::default() }).await.expect("events");
    let messages: Vec<&str> = last.iter().map(|event| event.message.as_str()).collect();
    assert_eq!(messages, ["event 3", "event 4"], "the most recent, oldest first");
}

/// A run's approval is requested with the transition that parks it, decided once, and
/// the decision is recorded with its event.
pub async fn approvals_are_requested_then_decided_once(store: &dyn Store) {
    let web = release(store, "web", "example/web:1").await;
    let created = run(store, &web).await.expect("run");
    assert_eq!(store.approval(created.id).await.expect("read"), None);
    let decided =
        |by: &str, decision| EventBody::ApprovalDecided(ApprovalDecided { by: by.into(), decision, comment: None });
    let event = || NewEvent::for_run(&created, decided("bob", Decision::Approved), "approved by bob");
    assert!(matches!(
        store.decide(created.id, Decision::Approved, "bob", None, event()).await,
        Err(StoreError::NotAwaitingApproval { .. })
    ));

    let lease = store.claim_run(created.id, "worker-a", 30_000, None).await.expect("claim").expect("free");
    let park = Transition {
        approval: Some(ApprovalRequest { expires_at: Some(4_000_000_000_000) }),
        ..to(RunState::AwaitingApproval, &created)
    };
    store.transition(&lease, park).await.expect("parked");
    let requested = store.approval(created.id).await.expect("read").expect("requested");
    assert_eq!(store.approvals_due(now_ms()).await.expect("due"), Vec::<RunId>::new(), "undecided, not expired");
    assert_eq!(store.approvals_due(4_000_000_000_000).await.expect("due"), [created.id], "expired by then");
    let unfinished = RunFilter { unfinished_only: true, exclude_parked: true, ..Default::default() };
    assert!(store.runs(&unfinished).await.expect("runs").is_empty(), "parked runs are left out");
    assert_eq!((requested.decision, requested.expires_at), (None, Some(4_000_000_000_000)));

    let (approval, event) =
        store.decide(created.id, Decision::Approved, "bob", Some("ship it".into()), event()).await.expect("decided");
    assert_eq!(approval.decision, Some(Decision::Approved));
    assert_eq!((approval.decided_by.as_deref(), approval.comment.as_deref()), (Some("bob"), Some("ship it")));
    assert_eq!(event.run_id, Some(created.id));
    assert_eq!(store.approvals_due(now_ms()).await.expect("due"), [created.id], "decided");
    match store
        .decide(
            created.id,
            Decision::Rejected,
            "carol",
            None,
            NewEvent::for_run(&created, decided("carol", Decision::Rejected), "x"),
        )
        .await
    {
        Err(StoreError::AlreadyDecided { decision, by, .. }) => {
            assert_eq!((decision, by.as_str()), ("approved", "bob"))
        }
        other => panic!("expected AlreadyDecided, got {other:?}"),
    }
    let events = store.events(&EventFilter { run_id: Some(created.id), ..Default::default() }).await.expect("events");
    assert_eq!(
        events.iter().filter(|event| event.kind == "approval.granted").count(),
        1,
        "the refused decision left no trace"
    );
}

/// Tokens keep only their hash, are listed, and stay revoked.
pub async fn tokens_are_kept_hashed_and_revocable(store: &dyn Store) {
    let created = store
        .create_token(NewToken {
            id: "abc123".into(),
            name: "ci for web".into(),
            subject: "ci-web".into(),
            role: Role::CiPublisher,
            apps: vec!["web".into()],
            envs: vec!["stg".into(), "prod".into()],
            secret_hash: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
        })
        .await
        .expect("created");
    let read = store.token("abc123").await.expect("read").expect("exists");
    assert_eq!(read, created);
    assert_eq!(read.secret_hash, created.secret_hash);
    assert_eq!(read.envs, ["stg", "prod"]);
    assert_eq!(store.token("nope").await.expect("read"), None);
    store.touch_token("abc123").await.expect("touched");
    assert!(store.token("abc123").await.unwrap().unwrap().last_used_at.is_some());
    assert!(store.revoke_token("abc123").await.expect("revoked"));
    assert!(!store.revoke_token("abc123").await.expect("already revoked"));
    let listed = store.tokens().await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());
}

/// One reader of a kind at a time: a lease held is renewed by its holder, refused to
/// others until it expires or is given up, and taken from a holder seen dead.
/// Web sessions: found while they last, gone once ended or expired.
pub async fn sessions_last_until_ended_or_expired(store: &dyn Store) {
    let now = crate::now_ms();
    store.create_session("hash-a", "token-1", now + 60_000).await.expect("created");
    store.create_session("hash-b", "token-1", now + 1).await.expect("created");
    assert_eq!(store.session_token("hash-a", now).await.expect("read").as_deref(), Some("token-1"));
    assert_eq!(store.session_token("hash-b", now + 2).await.expect("read"), None, "expired");
    assert_eq!(store.session_token("hash-c", now).await.expect("read"), None, "never started");
    assert!(store.end_session("hash-a").await.expect("ended"));
    assert_eq!(store.session_token("hash-a", now).await.expect("read"), None, "ended");
    assert!(!store.end_session("hash-a").await.expect("ended"), "ended once");
}

pub async fn reader_leases_admit_one_holder(store: &dyn Store) {
    let lease = |owner: &'static str, ttl_ms: i64, dead: Option<&'static str>| async move {
        store.lease_reader("notifications", owner, ttl_ms, dead).await.expect("lease")
    };
    assert_eq!(lease("server", 30_000, None).await, "server");
    assert_eq!(lease("cli", 30_000, None).await, "server", "held by the server");
    assert_eq!(lease("server", 30_000, None).await, "server", "renewed by its holder");
    assert_eq!(lease("cli", 30_000, Some("server")).await, "cli", "taken from a dead holder");
    store.release_reader("notifications", "server").await.expect("not the holder: nothing happens");
    assert_eq!(lease("server", 30_000, None).await, "cli");
    store.release_reader("notifications", "cli").await.expect("released");
    assert_eq!(lease("server", -1, None).await, "server", "free again");
    assert_eq!(lease("cli", 30_000, None).await, "cli", "an expired lease is taken over");
    assert_eq!(store.lease_reader("other", "server", 30_000, None).await.expect("lease"), "server", "per name");
}

/// A webhook delivery is accepted once per provider.
pub async fn webhook_deliveries_are_seen_once(store: &dyn Store) {
    assert!(store.record_delivery("github", "d-1").await.expect("recorded"));
    assert!(!store.record_delivery("github", "d-1").await.expect("recorded"), "a redelivery");
    assert!(store.record_delivery("gitlab", "d-1").await.expect("recorded"), "another provider's id space");
}

/// A reader's place in the event log is kept, one per reader.
pub async fn cursors_remember_where_each_reader_is(store: &dyn Store) {
    assert_eq!(store.cursor("notifications").await.expect("read"), None, "never set");
    store.set_cursor("notifications", 7).await.expect("set");
    store.set_cursor("notifications", 9).await.expect("moved on");
    store.set_cursor("other", 3).await.expect("set");
    assert_eq!(store.cursor("notifications").await.expect("read"), Some(9));
    assert_eq!(store.cursor("other").await.expect("read"), Some(3));
}

/// The latest publication for an (app, environment) replaces the one before.
pub async fn published_images_replace_earlier_ones(store: &dyn Store) {
    let publish = |tag: &str, at: i64| Published {
        app: "web".into(),
        env: "prod".into(),
        images: [("web".to_string(), format!("example/web:{tag}"))].into(),
        published_by: "ci-web".into(),
        published_at: at,
        commit: (at == 1).then(|| "0a1b2c3d".to_owned()),
        author: (at == 1).then(|| "alice@example.com".to_owned()),
    };
    store.publish_images(publish("1", 1)).await.expect("published");
    assert_eq!(store.published_images().await.expect("read"), [publish("1", 1)], "with its commit and author");
    store.publish_images(publish("2", 2)).await.expect("published");
    assert_eq!(store.published_images().await.expect("read"), [publish("2", 2)], "and without, once replaced");
}
