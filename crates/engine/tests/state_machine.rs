//! The run state machine against a real SQLite store and a scripted fake target.
//!
//! The target here is testkit's [`FakeTarget`], whose answers each test scripts: these
//! tests are about the engine's decisions (what happens after a failure, a lost lease,
//! a request to stop). What a real target does is covered by the target conformance
//! tests and end to end against the Docker engine in `crates/launchway/tests`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use launchway_engine::{
    Clock, Decision, DeployRequest, Engine, EngineConfig, EngineError, ManualClock, Selection, SystemClock,
    TargetProvider,
};
use launchway_manifest::{Manifest, SourceFile, TargetSpec};
use launchway_store::{ControlAction, EventFilter, ReleaseSource, Run, RunState, Store, StoreError};
use launchway_store_sqlite::SqliteStore;
use launchway_target::{Target, TargetError};
use launchway_testkit::FakeTarget;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

struct Provider(Arc<FakeTarget>);

#[async_trait]
impl TargetProvider for Provider {
    async fn target(&self, _spec: &TargetSpec) -> Result<Arc<dyn Target>, TargetError> {
        Ok(self.0.clone())
    }
}

struct Setup {
    target: Arc<FakeTarget>,
    store: Arc<SqliteStore>,
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn setup(lease_ttl: Duration) -> Setup {
    setup_with_clock(lease_ttl, Arc::new(SystemClock)).await
}

/// A setup whose engine takes the time from `clock`.
async fn setup_with_clock(lease_ttl: Duration, clock: Arc<dyn Clock>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("db").to_str().unwrap()).await.unwrap());
    let target = Arc::new(FakeTarget::default());
    let config = EngineConfig { lease_ttl, clock, ..EngineConfig::default() };
    let engine = Engine::new(store.clone(), Arc::new(Provider(target.clone())), config);
    Setup { target, store, engine, _dir: dir }
}

fn engine(store: &Arc<SqliteStore>, target: &Arc<FakeTarget>, lease_ttl: Duration) -> Engine {
    Engine::new(
        store.clone(),
        Arc::new(Provider(target.clone())),
        EngineConfig { lease_ttl, ..EngineConfig::default() },
    )
}

fn manifest(image: &str) -> Manifest {
    let text =
        format!("environments: {{dev: {{target: docker}}}}\nservices: {{web: {{image: {image}, port: 8080}}}}\n");
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.into_bytes() }];
    launchway_manifest::load(&files, &files).expect("valid").manifest
}

/// Creates the run a deploy of `image` would create, and returns its id.
async fn start(engine: &Engine, image: &str) -> i64 {
    start_manifest(engine, &manifest(image), ReleaseSource::default()).await
}

/// Creates the one run deploying `manifest` must create, and returns its id.
async fn start_manifest(engine: &Engine, manifest: &Manifest, source: ReleaseSource) -> i64 {
    let decisions = engine
        .prepare_deploys(&DeployRequest {
            manifest,
            images: Default::default(),
            published: &[],
            source,
            selection: &Selection::default(),
            retry_failed: false,
            trigger: "test".into(),
        })
        .await
        .expect("decisions");
    match decisions.as_slice() {
        [Decision::Started { run, .. }] => run.id,
        other => panic!("expected one started run, got {other:?}"),
    }
}

fn revision(image: &str) -> String {
    manifest(image).apps["web"].specs["dev"].revision().0
}

#[tokio::test]
async fn deploying_one_app_observes_only_that_app() {
    // On ECS every observed app costs API calls: a push that changed one app of a
    // thousand must not describe the other 999.
    let setup = setup(Duration::from_secs(15)).await;
    let text = "environments: {dev: {target: docker}}
services: {web: {image: example/web:1, port: 8080}, api: {image: example/api:1, port: 8080}}
";
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.as_bytes().to_vec() }];
    let manifest = launchway_manifest::load(&files, &files).expect("valid").manifest;
    let selection = Selection { env: None, apps: vec!["api".into()] };
    let request = DeployRequest {
        manifest: &manifest,
        images: Default::default(),
        published: &[],
        source: ReleaseSource::default(),
        selection: &selection,
        retry_failed: false,
        trigger: "test".into(),
    };
    let decisions = setup.engine.prepare_deploys(&request).await.expect("decisions");
    assert!(matches!(decisions.as_slice(), [Decision::Started { .. }]), "{decisions:?}");
    setup.engine.plan(&manifest, &selection).await.expect("planned");
    assert_eq!(setup.target.observed(), [["api"], ["api"]]);
}

#[tokio::test]
async fn a_release_the_target_refuses_fails_in_validation_and_nothing_is_rolled_out() {
    let setup = setup(Duration::from_secs(15)).await;
    setup.target.refuse_checks("image example/web:1 is not on the engine");
    let run_id = start(&setup.engine, "example/web:1").await;
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.reason.as_deref(), Some("image example/web:1 is not on the engine"));
    assert_eq!(setup.target.calls(), ["check web"]);
    assert!(setup.store.deployment("web", "dev").await.unwrap().is_none(), "nothing recorded as deployed");
}

#[tokio::test]
async fn a_failed_rollout_rolls_back_to_the_last_verified_release() {
    let setup = setup(Duration::from_secs(15)).await;
    let first = start(&setup.engine, "example/web:1").await;
    assert_eq!(setup.engine.drive(first).await.unwrap().state, RunState::Succeeded);

    setup.target.fail_revision(&revision("example/web:2"));
    let second = start(&setup.engine, "example/web:2").await;
    let run = setup.engine.drive(second).await.expect("driven");
    assert_eq!(run.state, RunState::RolledBack);
    assert!(run.reason.unwrap().contains("failed its health check"));
    let (v1, v2) = (revision("example/web:1"), revision("example/web:2"));
    assert_eq!(
        setup.target.calls()[3..],
        ["check web".to_owned(), format!("rollout web {v2}"), format!("rollout web {v1}"), format!("verify web {v1}")]
    );
    let record = setup.store.deployment("web", "dev").await.unwrap().unwrap();
    assert_eq!(setup.store.release(record.current_release_id).await.unwrap().revision, v1);

    // The rolled-back revision is skipped on the next deploy unless retried.
    let manifest = manifest("example/web:2");
    let decisions = setup
        .engine
        .prepare_deploys(&DeployRequest {
            manifest: &manifest,
            images: Default::default(),
            published: &[],
            source: ReleaseSource::default(),
            selection: &Selection::default(),
            retry_failed: false,
            trigger: "test".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(&decisions[..], [Decision::Skipped { previous_state: RunState::RolledBack, .. }]),
        "{decisions:?}"
    );
}

#[tokio::test]
async fn a_first_release_that_fails_has_its_replicas_removed() {
    let setup = setup(Duration::from_secs(15)).await;
    setup.target.fail_revision(&revision("example/web:1"));
    let run_id = start(&setup.engine, "example/web:1").await;
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(setup.target.calls().last().unwrap(), &format!("retire web {}", revision("example/web:1")));
}

/// Starts driving a run in the background and returns once its rollout is under way
/// and held there until `hold` is notified.
async fn drive_until_rolling_out(setup: &Setup, run_id: i64) -> (JoinHandle<Result<Run, EngineError>>, Arc<Notify>) {
    let hold = setup.target.hold_rollouts();
    let driving = tokio::spawn({
        let engine = setup.engine.clone();
        async move { engine.drive(run_id).await }
    });
    while !setup.target.calls().iter().any(|call| call.starts_with("rollout")) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (driving, hold)
}

#[tokio::test]
async fn a_driver_that_loses_its_lease_stops_acting() {
    let setup = setup(Duration::from_millis(300)).await;
    let run_id = start(&setup.engine, "example/web:1").await;
    // Once the rollout is under way, another worker takes the run over.
    let (driving, hold) = drive_until_rolling_out(&setup, run_id).await;
    let holder = setup.store.run(run_id).await.unwrap().lease_owner.unwrap();
    let intruder = setup.store.claim_run(run_id, "intruder", 60_000, Some(&holder)).await.unwrap();
    assert!(intruder.is_some(), "taken over");

    let result = tokio::time::timeout(Duration::from_secs(5), driving).await.expect("the driver stops").unwrap();
    assert!(matches!(result, Err(EngineError::Store(StoreError::LeaseLost { .. }))), "{result:?}");
    hold.notify_one();
    let run = setup.store.run(run_id).await.unwrap();
    assert_eq!(run.state, RunState::Deploying, "the stale driver persisted nothing after losing the lease");
    assert_eq!(run.lease_owner.as_deref(), Some("intruder"));
}

#[tokio::test]
async fn a_run_asked_to_stop_pauses_at_a_step_boundary_and_resumes_elsewhere() {
    let setup = setup(Duration::from_secs(15)).await;
    let run_id = start(&setup.engine, "example/web:1").await;
    setup.engine.stop_token().cancel();
    let result = setup.engine.drive(run_id).await;
    assert!(matches!(result, Err(EngineError::Interrupted { .. })), "{result:?}");
    assert!(setup.target.calls().is_empty());

    // Another engine takes it at once (the lease was given up) and finishes it.
    let other = engine(&setup.store, &setup.target, Duration::from_secs(15));
    let run = other.drive(run_id).await.expect("resumed");
    assert_eq!(run.state, RunState::Succeeded);
    let events = setup.store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
    assert!(events.iter().any(|event| event.kind == "run.resumed"));
}

#[tokio::test]
async fn a_run_held_by_a_live_engine_is_not_driven_twice() {
    let setup = setup(Duration::from_secs(15)).await;
    let run_id = start(&setup.engine, "example/web:1").await;
    let (driving, hold) = drive_until_rolling_out(&setup, run_id).await;
    let other = engine(&setup.store, &setup.target, Duration::from_secs(15));
    assert!(matches!(other.drive(run_id).await, Err(EngineError::Busy { .. })));
    hold.notify_one();
    assert_eq!(driving.await.unwrap().unwrap().state, RunState::Succeeded);
    assert_eq!(setup.target.calls().iter().filter(|call| call.starts_with("rollout")).count(), 1);
}

#[tokio::test]
async fn driving_a_run_another_process_finished_returns_its_outcome_without_acting() {
    // Two deploys of one change started together: the second may reach the run only
    // after the first drove it to the end. It reports that end; it does not fail.
    let setup = setup(Duration::from_secs(15)).await;
    let run_id = start(&setup.engine, "example/web:1").await;
    assert_eq!(setup.engine.drive(run_id).await.unwrap().state, RunState::Succeeded);
    let calls = setup.target.calls().len();
    let other = engine(&setup.store, &setup.target, Duration::from_secs(15));
    assert_eq!(other.drive(run_id).await.expect("the finished run").state, RunState::Succeeded);
    assert_eq!(setup.target.calls().len(), calls, "nothing acted a second time");
}

/// Issue 22, item 3: after v1, v2, v3, `rollback` served v2, the next `rollback` v3 (the
/// release the first had left), the next v2; a replayed Slack press did the same. A
/// rollback goes to the verified release deployed before the current one, never to one a
/// rollback left; a request naming the release it leaves does nothing once another runs.
#[tokio::test]
async fn rolling_back_twice_goes_further_back_and_a_replay_does_nothing() {
    let setup = setup(Duration::from_secs(15)).await;
    for image in ["example/web:1", "example/web:2", "example/web:3"] {
        let run = start(&setup.engine, image).await;
        assert_eq!(setup.engine.drive(run).await.unwrap().state, RunState::Succeeded);
    }
    let current = async || setup.store.deployment("web", "dev").await.unwrap().unwrap().current_release_id;
    let (v1, v2, v3) = (1, 2, 3);
    assert_eq!(current().await, v3);
    let rollback = |from: Option<i64>| launchway_engine::RollbackRequest {
        app: "web",
        env: "dev",
        to: None,
        from,
        by: "alice@example.com",
        trigger: "test rollback by alice@example.com",
        reason: None,
    };

    let first = setup.engine.prepare_rollback(rollback(Some(v3))).await.expect("from v3");
    assert_eq!(setup.engine.drive(first.id).await.unwrap().state, RunState::Succeeded);
    assert_eq!(current().await, v2);
    // The same request again (a replay, a second press): done already, nothing happens.
    let replay = setup.engine.prepare_rollback(rollback(Some(v3))).await;
    assert!(matches!(&replay, Err(EngineError::Invalid(why)) if why.contains("done already")), "{replay:?}");

    // Asked again on purpose: further back, never forth to v3.
    let second = setup.engine.prepare_rollback(rollback(None)).await.expect("from v2");
    assert_eq!(setup.engine.drive(second.id).await.unwrap().state, RunState::Succeeded);
    assert_eq!(current().await, v1);
    let third = setup.engine.prepare_rollback(rollback(None)).await;
    assert!(matches!(&third, Err(EngineError::Invalid(why)) if why.contains("nothing to roll back to")), "{third:?}");
    let pin = setup.store.deployment("web", "dev").await.unwrap().unwrap().pin.expect("pinned");
    assert_eq!((pin.release_id, pin.by.as_str()), (v1, "alice@example.com"));

    // Named outright, a verified release is still a choice someone may make.
    let back_to = launchway_engine::RollbackRequest { to: Some(v3), ..rollback(None) };
    let chosen = setup.engine.prepare_rollback(back_to).await.expect("to v3, as asked");
    assert_eq!(setup.engine.drive(chosen.id).await.unwrap().state, RunState::Succeeded);
    assert_eq!(current().await, v3);
}

// ---- approvals

fn gated_manifest(image: &str, approval: &str) -> Manifest {
    let text = format!(
        "environments: {{prod: {{target: docker, approval: {approval}}}}}\nservices: {{web: {{image: {image}, port: 8080}}}}\n"
    );
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.into_bytes() }];
    launchway_manifest::load(&files, &files).expect("valid").manifest
}

async fn start_gated(engine: &Engine, image: &str, approval: &str) -> i64 {
    let source = ReleaseSource { author: Some("Alice <alice@example.com>".into()), ..ReleaseSource::default() };
    start_manifest(engine, &gated_manifest(image, approval), source).await
}

#[tokio::test]
async fn a_run_needing_approval_waits_parked_with_its_plan_until_someone_else_approves() {
    let setup = setup(Duration::from_secs(15)).await;
    let run_id = start_gated(&setup.engine, "example/web:1", "true").await;
    let parked = setup.engine.drive(run_id).await.expect("driven as far as it goes");
    assert_eq!(parked.state, RunState::AwaitingApproval);
    assert!(parked.plan.is_some(), "the plan is attached for the approver");
    assert!(parked.lease_owner.is_none(), "nobody holds a parked run");
    assert_eq!(setup.target.calls(), ["check web"], "nothing rolled out");

    // The author may not approve their own release.
    let refused = setup.engine.decide(run_id, launchway_store::Decision::Approved, "alice@example.com", None).await;
    assert!(matches!(refused, Err(EngineError::Forbidden(_))), "{refused:?}");

    // Another process (the server after a restart) takes the decision and the run.
    let other = engine(&setup.store, &setup.target, Duration::from_secs(15));
    other
        .decide(run_id, launchway_store::Decision::Approved, "bob@example.com", Some("looks good".into()))
        .await
        .expect("approved");
    let run = other.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Succeeded);
    assert!(setup.target.calls().iter().any(|call| call.starts_with("rollout")));
    let events = setup.store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
    let granted = events.iter().find(|event| event.kind == "approval.granted").expect("recorded");
    assert_eq!(granted.message, "approved by bob@example.com: looks good");
    assert_eq!(granted.data["by"], "bob@example.com");

    // A second decision is refused.
    let again = other.decide(run_id, launchway_store::Decision::Rejected, "carol@example.com", None).await;
    assert!(again.is_err());
}

#[tokio::test]
async fn a_rejected_run_changes_nothing() {
    let setup = setup(Duration::from_secs(15)).await;
    let run_id = start_gated(&setup.engine, "example/web:1", "true").await;
    setup.engine.drive(run_id).await.expect("parked");
    setup
        .engine
        .decide(run_id, launchway_store::Decision::Rejected, "bob@example.com", Some("not today".into()))
        .await
        .unwrap();
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Rejected);
    assert_eq!(run.reason.as_deref(), Some("rejected by bob@example.com: not today"));
    assert_eq!(setup.target.calls(), ["check web"]);
    assert!(setup.store.deployment("web", "prod").await.unwrap().is_none());
}

#[tokio::test]
async fn an_approval_not_given_in_time_expires() {
    let clock = Arc::new(ManualClock::starting_now());
    let setup = setup_with_clock(Duration::from_secs(15), clock.clone()).await;
    let run_id = start_gated(&setup.engine, "example/web:1", "{expires: 50ms}").await;
    assert_eq!(setup.engine.drive(run_id).await.unwrap().state, RunState::AwaitingApproval);
    assert_eq!(setup.engine.approvals_due().await.unwrap(), Vec::<i64>::new(), "in time, it stays parked");
    clock.advance(Duration::from_millis(80));
    // Out of time, it is no longer parked: the next deploy drives it to its end.
    let request = DeployRequest {
        manifest: &gated_manifest("example/web:1", "{expires: 50ms}"),
        images: Default::default(),
        published: &[],
        source: ReleaseSource::default(),
        selection: &Selection::default(),
        retry_failed: false,
        trigger: "test".into(),
    };
    let decisions = setup.engine.prepare_deploys(&request).await.unwrap();
    assert!(matches!(decisions.as_slice(), [Decision::Resume { run }] if run.id == run_id), "{decisions:?}");
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Rejected);
    assert_eq!(run.reason.as_deref(), Some("approval expired"));
    let late = setup.engine.decide(run_id, launchway_store::Decision::Approved, "bob@example.com", None).await;
    assert!(late.is_err(), "too late");
}

#[tokio::test]
async fn the_author_may_approve_when_the_environment_allows_it() {
    let setup = setup(Duration::from_secs(15)).await;
    let run_id = start_gated(&setup.engine, "example/web:1", "{forbid_author: false}").await;
    setup.engine.drive(run_id).await.expect("parked");
    setup.engine.decide(run_id, launchway_store::Decision::Approved, "alice@example.com", None).await.expect("allowed");
    assert_eq!(setup.engine.drive(run_id).await.unwrap().state, RunState::Succeeded);
}

#[tokio::test]
async fn a_newer_change_supersedes_a_run_still_waiting_for_approval() {
    let setup = setup(Duration::from_secs(15)).await;
    let first = start_gated(&setup.engine, "example/web:1", "true").await;
    setup.engine.drive(first).await.expect("parked");

    // The same desired state again: the waiting run stands.
    let same = gated_manifest("example/web:1", "true");
    let everything = Selection::default();
    let request = |manifest| DeployRequest {
        manifest,
        images: Default::default(),
        published: &[],
        source: ReleaseSource::default(),
        selection: &everything,
        retry_failed: false,
        trigger: "test".into(),
    };
    let decisions = setup.engine.prepare_deploys(&request(&same)).await.unwrap();
    assert!(matches!(decisions.as_slice(), [Decision::Waiting { run, .. }] if run.id == first), "{decisions:?}");

    // A newer one replaces it.
    let newer = gated_manifest("example/web:2", "true");
    let decisions = setup.engine.prepare_deploys(&request(&newer)).await.unwrap();
    let [Decision::Started { run: second, .. }] = decisions.as_slice() else { panic!("{decisions:?}") };
    let superseded = setup.store.run(first).await.unwrap();
    assert_eq!(superseded.state, RunState::Rejected);
    assert!(superseded.reason.as_deref().unwrap().starts_with("superseded by revision"), "{:?}", superseded.reason);
    assert_ne!(second.id, first);
    assert_eq!(setup.target.calls(), ["check web"], "nothing rolled out meanwhile");
}

/// Issue 21, item 1: behind an approval, a chain of `depends_on` (c waits for b, which
/// waits for a) hung `deploy` (c waited for b, which was parked and never moved), and
/// each later deploy or sweep resumed the parked runs again and again. A run whose
/// dependency waits for an approval, directly or down the chain, is parked too: not
/// resumed, reported as waiting for that approval, and driven once it is decided.
#[tokio::test]
async fn a_chain_of_dependencies_behind_an_approval_parks_and_moves_once_decided() {
    let setup = setup(Duration::from_secs(15)).await;
    let text = "environments: {prod: {target: docker, approval: true}}
services:
  a: {image: example/a:1, port: 8080}
  b: {image: example/b:1, port: 8080, depends_on: [a]}
  c: {image: example/c:1, port: 8080, depends_on: [b]}
";
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.as_bytes().to_vec() }];
    let manifest = launchway_manifest::load(&files, &files).expect("valid").manifest;
    let everything = Selection::default();
    let request = DeployRequest {
        manifest: &manifest,
        images: Default::default(),
        published: &[],
        source: ReleaseSource { author: Some("alice@example.com".into()), ..ReleaseSource::default() },
        selection: &everything,
        retry_failed: false,
        trigger: "test".into(),
    };
    let decisions = setup.engine.prepare_deploys(&request).await.unwrap();
    let ids: Vec<i64> = decisions
        .iter()
        .map(|decision| match decision {
            Decision::Started { run, .. } => run.id,
            other => panic!("{other:?}"),
        })
        .collect();
    let [a, b, c] = ids[..] else { panic!("{ids:?}") };

    // Driven together, as `deploy` drives them: each comes back parked (a hang here is
    // the defect; the timeout only turns it into a failure).
    let drive = |id: i64| {
        let engine = setup.engine.clone();
        tokio::spawn(async move { engine.drive(id).await })
    };
    let handles = [drive(a), drive(b), drive(c)];
    let mut states = Vec::new();
    for handle in handles {
        let run = tokio::time::timeout(Duration::from_secs(60), handle).await.expect("parks, not hangs");
        states.push(run.unwrap().expect("driven").state);
    }
    assert_eq!(states, [RunState::AwaitingApproval, RunState::Pending, RunState::Pending]);

    // Nothing resumes them meanwhile: a deploy reports each as waiting for a's approval,
    // a sweep finds nothing to drive, and no run was resumed.
    let decisions = setup.engine.prepare_deploys(&request).await.unwrap();
    let waiting: Vec<(i64, i64, Option<String>)> = decisions
        .iter()
        .map(|decision| match decision {
            Decision::Waiting { run, approval_run, behind } => (run.id, *approval_run, behind.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        waiting,
        [
            (a, a, None),
            (b, a, Some(format!("a's run {a}, which waits for approval"))),
            (c, a, Some(format!("b's run {b}, which waits for a's run {a}, which waits for approval"))),
        ]
    );
    assert!(setup.engine.orphaned_runs().await.unwrap().is_empty());
    let resumed = |events: &[launchway_store::Event]| events.iter().filter(|e| e.kind == "run.resumed").count();
    let all = setup.store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(resumed(&all), 0);
    let mut waits: Vec<(i64, &str)> = all
        .iter()
        .filter(|event| event.kind == "run.waiting")
        .map(|event| (event.run_id.unwrap(), event.message.as_str()))
        .collect();
    assert!(waits.iter().any(|(run, said)| *run == c && said.ends_with("which waits for approval")), "{waits:?}");
    let said = waits.len();
    waits.dedup();
    assert_eq!(waits.len(), said, "each fact said once");

    // Approved, a deploys; then b is free to move, and stops at its own approval, which
    // c now waits for.
    setup.engine.decide(a, launchway_store::Decision::Approved, "bob@example.com", None).await.unwrap();
    assert_eq!(setup.engine.drive(a).await.unwrap().state, RunState::Succeeded);
    let mut free: Vec<i64> = setup.engine.orphaned_runs().await.unwrap().iter().map(|run| run.id).collect();
    free.sort();
    assert_eq!(free, [b, c], "b can start; c waits for b, which is no longer parked");
    assert_eq!(setup.engine.drive(b).await.unwrap().state, RunState::AwaitingApproval);
    assert!(setup.engine.orphaned_runs().await.unwrap().is_empty(), "c waits for b's approval");

    // Rejected, b's dependent fails, having changed nothing.
    setup.engine.decide(b, launchway_store::Decision::Rejected, "bob@example.com", None).await.unwrap();
    assert_eq!(setup.engine.drive(b).await.unwrap().state, RunState::Rejected);
    let free: Vec<i64> = setup.engine.orphaned_runs().await.unwrap().iter().map(|run| run.id).collect();
    assert_eq!(free, [c]);
    let c_run = setup.engine.drive(c).await.unwrap();
    assert_eq!(c_run.state, RunState::Failed);
    assert!(c_run.reason.unwrap().starts_with(&format!("not deployed: c depends on b, whose run {b} was rejected")));
}

// ---- progressive delivery

fn canary_manifest(image: &str, analysis: &str) -> Manifest {
    let text = format!(
        "environments: {{dev: {{target: docker}}}}
services:
  web:
    image: {image}
    port: 8080
    ingress: {{port: 8000}}
    strategy:
      canary:
        steps: [{{weight: 20, pause: 300ms}}, {{weight: 60}}]
{analysis}"
    );
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.into_bytes() }];
    launchway_manifest::load(&files, &files).expect("valid").manifest
}

/// A first release, deployed, then a second one with the canary strategy.
async fn start_canary(setup: &Setup, analysis: &str) -> (i64, String, String) {
    let first =
        start_manifest(&setup.engine, &canary_manifest("example/web:1", analysis), ReleaseSource::default()).await;
    assert_eq!(setup.engine.drive(first).await.unwrap().state, RunState::Succeeded);
    let second =
        start_manifest(&setup.engine, &canary_manifest("example/web:2", analysis), ReleaseSource::default()).await;
    let revision = |image: &str| canary_manifest(image, analysis).apps["web"].specs["dev"].revision().0;
    (second, revision("example/web:1"), revision("example/web:2"))
}

/// An HTTP server on loopback answering every request with `status`.
async fn answering(status: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    address
}

async fn step_names(setup: &Setup, run_id: i64) -> Vec<String> {
    setup.store.steps(run_id).await.unwrap().into_iter().map(|step| step.name).collect()
}

#[tokio::test]
async fn a_canary_moves_traffic_step_by_step_then_takes_everything() {
    let setup = setup(Duration::from_secs(15)).await;
    let (run_id, _, v2) = start_canary(&setup, "").await;
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.reason);
    let calls = setup.target.calls();
    let from_second = &calls[calls.iter().rposition(|call| call == "check web").unwrap() + 1..];
    assert_eq!(
        from_second,
        [
            format!("rollout web {v2}"),
            format!("shift web {v2} 20"),
            format!("shift web {v2} 60"),
            format!("rollout web {v2}"),
            format!("verify web {v2}")
        ]
    );
    assert_eq!(
        step_names(&setup, run_id).await,
        ["validate", "plan", "deploy", "traffic 1", "traffic 2", "promote", "verify"]
    );
}

#[tokio::test]
async fn a_failing_analysis_sends_the_traffic_back_and_rolls_back() {
    let setup = setup(Duration::from_secs(15)).await;
    setup.target.set_endpoints(vec![answering(500).await]);
    let analysis = "        analysis: {interval: 100ms, http: {path: /work}}\n";
    let (run_id, v1, v2) = start_canary(&setup, analysis).await;
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::RolledBack);
    let reason = run.reason.unwrap();
    assert!(
        reason.contains("the analysis failed at step 1: 1 of 1 measurements failed (limit 0): http GET http://"),
        "{reason}"
    );
    let calls = setup.target.calls();
    assert_eq!(
        calls[calls.len() - 3..],
        [format!("shift web {v2} 20"), format!("rollout web {v1}"), format!("verify web {v1}")]
    );
    let events = setup.store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
    let measured: Vec<_> = events.iter().filter(|event| event.kind == "analysis.measured").collect();
    assert_eq!(measured.len(), 1);
    assert!(measured[0].message.contains("500"), "{}", measured[0].message);
}

#[tokio::test]
async fn a_passing_analysis_measures_each_step_and_lets_it_go_on() {
    let setup = setup(Duration::from_secs(15)).await;
    setup.target.set_endpoints(vec![answering(200).await]);
    let analysis = "        analysis: {interval: 100ms, http: {path: /work, status: 200}}\n";
    let (run_id, _, _) = start_canary(&setup, analysis).await;
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.reason);
    let events = setup.store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
    let measured = events.iter().filter(|event| event.kind == "analysis.measured").count();
    // About three during step 1's 300 ms, at least one during step 2 (no pause).
    assert!(measured >= 3, "{measured} measurements");
}

#[tokio::test]
async fn promote_ends_a_pause_and_abort_rolls_back_at_once() {
    let setup = setup(Duration::from_secs(15)).await;
    let long = |image: &str| {
        let text = format!(
            "environments: {{dev: {{target: docker}}}}
services:
  web: {{image: {image}, port: 8080, ingress: {{port: 8000}}, strategy: {{canary: {{steps: [{{weight: 20, pause: 1h}}, {{weight: 50, pause: 1h}}]}}}}}}
"
        );
        let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.into_bytes() }];
        launchway_manifest::load(&files, &files).expect("valid").manifest
    };
    let first = start_manifest(&setup.engine, &long("example/web:1"), ReleaseSource::default()).await;
    assert_eq!(setup.engine.drive(first).await.unwrap().state, RunState::Succeeded);
    let second = start_manifest(&setup.engine, &long("example/web:2"), ReleaseSource::default()).await;
    assert!(
        matches!(setup.engine.control(second, ControlAction::Promote, "ann").await, Err(EngineError::Invalid(_))),
        "not progressing yet"
    );
    let engine = setup.engine.clone();
    let driving = tokio::spawn(async move { engine.drive(second).await });
    let waiting_at = |step: &'static str| {
        let store = setup.store.clone();
        async move {
            loop {
                let steps = store.steps(second).await.unwrap();
                if steps.iter().any(|s| s.name == step && s.finished_at.is_none()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting_at("traffic 1")).await.expect("reached step 1");
    // Another process (another engine on the same store) asks to go on.
    let other = engine_for(&setup);
    other.control(second, ControlAction::Promote, "ann").await.expect("asked");
    tokio::time::timeout(Duration::from_secs(10), waiting_at("traffic 2")).await.expect("step 1 ended early");
    other.control(second, ControlAction::Abort, "bob").await.expect("asked");
    let run = tokio::time::timeout(Duration::from_secs(10), driving).await.expect("ended at once").unwrap().unwrap();
    assert_eq!(run.state, RunState::RolledBack);
    assert_eq!(run.reason.as_deref(), Some("aborted by bob at step 2"));
}

fn engine_for(setup: &Setup) -> Engine {
    engine(&setup.store, &setup.target, Duration::from_secs(15))
}

/// An ECS service on its own blue/green strategy, with an approval gate where ECS's
/// deployment pauses (the fake target answers `Moving` a few times before each gate, as
/// ECS does while it scales up and shifts test traffic).
fn gated_ecs_manifest(image: &str) -> Manifest {
    let text = format!(
        "environments: {{prod: {{target: {{ecs: {{cluster: main}}}}}}}}
services:
  web:
    image: {image}
    strategy:
      blue_green:
        bake: 1m
        gates: [{{at: post_test_traffic_shift, approval: true}}]
"
    );
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.into_bytes() }];
    launchway_manifest::load(&files, &files).expect("valid").manifest
}

#[tokio::test]
async fn an_approval_gate_holds_until_someone_promotes_and_survives_a_restart() {
    let setup = setup(Duration::from_secs(15)).await;
    setup.target.set_looks_per_step(3);
    let run_id = start_manifest(&setup.engine, &gated_ecs_manifest("example/web:2"), ReleaseSource::default()).await;
    let awaiting = |count: usize| {
        let store = setup.store.clone();
        async move {
            loop {
                let events =
                    store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
                if events.iter().filter(|event| event.kind == "gate.awaiting").count() >= count {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The first driver reaches the gate and waits; it stops (a restart) while waiting.
    let first = engine_for(&setup);
    let stop = first.stop_token().clone();
    let driving = tokio::spawn(async move { first.drive(run_id).await });
    tokio::time::timeout(Duration::from_secs(10), awaiting(1)).await.expect("waits at the gate");
    assert_eq!(setup.store.run(run_id).await.unwrap().state, RunState::Progressing);
    stop.cancel();
    assert!(matches!(driving.await.unwrap(), Err(EngineError::Interrupted { .. })));
    // A second driver picks the run up at the same gate (announced once: chat hears of
    // it once) and goes on once someone promotes the run.
    let second = engine_for(&setup);
    let driving = tokio::spawn(async move { second.drive(run_id).await });
    let gate_attempts = || {
        let store = setup.store.clone();
        async move {
            loop {
                let steps = store.steps(run_id).await.unwrap();
                if steps.iter().filter(|step| step.name == "gate 1").count() == 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gate_attempts()).await.expect("at the gate again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!driving.is_finished(), "an approval gate has no end of its own");
    engine_for(&setup).control(run_id, ControlAction::Promote, "ann").await.expect("asked");
    let run = tokio::time::timeout(Duration::from_secs(10), driving).await.expect("went on").unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.reason);
    let names = step_names(&setup, run_id).await;
    assert_eq!(names.iter().filter(|name| *name == "gate 1").count(), 2, "one attempt per driver: {names:?}");
    assert!(names.ends_with(&["promote".to_owned(), "verify".to_owned()]), "{names:?}");
    let events = setup.store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
    let passed = events.iter().find(|event| event.kind == "step.finished" && event.message.contains("approved by ann"));
    assert!(passed.is_some(), "the gate says who approved it");
    assert_eq!(events.iter().filter(|event| event.kind == "gate.awaiting").count(), 1);
}

#[tokio::test]
async fn a_canary_step_with_approval_holds_until_promoted_and_an_http_url_is_asked_as_it_is() {
    let setup = setup(Duration::from_secs(15)).await;
    let good = answering(200).await;
    let manifest = |image: &str| {
        let text = format!(
            "environments: {{dev: {{target: docker}}}}
services:
  web:
    image: {image}
    port: 8080
    ingress: {{port: 8000}}
    strategy:
      canary:
        steps: [{{weight: 20, approval: true}}]
        analysis: {{interval: 100ms, http: {{url: 'http://{good}/ready', status: 200}}}}
"
        );
        let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.into_bytes() }];
        launchway_manifest::load(&files, &files).expect("valid").manifest
    };
    let first = start_manifest(&setup.engine, &manifest("example/web:1"), ReleaseSource::default()).await;
    assert_eq!(setup.engine.drive(first).await.unwrap().state, RunState::Succeeded);
    let second = start_manifest(&setup.engine, &manifest("example/web:2"), ReleaseSource::default()).await;
    let engine = setup.engine.clone();
    let driving = tokio::spawn(async move { engine.drive(second).await });
    let store = setup.store.clone();
    let awaiting = async move {
        loop {
            let events = store.events(&EventFilter { run_id: Some(second), ..EventFilter::default() }).await.unwrap();
            if events.iter().any(|event| event.kind == "gate.awaiting") {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let Ok(events) = tokio::time::timeout(Duration::from_secs(10), awaiting).await else {
        let events = setup.store.events(&EventFilter { run_id: Some(second), ..EventFilter::default() }).await.unwrap();
        panic!("never waited: {:#?}", events.iter().map(|event| &event.message).collect::<Vec<_>>());
    };
    let measured = events.iter().find(|event| event.kind == "analysis.measured").expect("measured before waiting");
    assert!(measured.message.contains(&format!("GET http://{good}/ready answered")), "{}", measured.message);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!driving.is_finished(), "the step has no end of its own");
    engine_for(&setup).control(second, ControlAction::Promote, "ann").await.expect("asked");
    let run = tokio::time::timeout(Duration::from_secs(10), driving).await.expect("went on").unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.reason);
}

#[tokio::test]
async fn an_analysis_count_holds_a_step_until_that_many_measurements_were_taken() {
    let setup = setup(Duration::from_secs(15)).await;
    setup.target.set_endpoints(vec![answering(200).await]);
    // Step 1 pauses 300 ms, step 2 not at all: each still takes four measurements.
    let analysis = "        analysis: {interval: 50ms, count: 4, http: {path: /work}}\n";
    let (run_id, _, _) = start_canary(&setup, analysis).await;
    let run = setup.engine.drive(run_id).await.expect("driven");
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.reason);
    let events = setup.store.events(&EventFilter { run_id: Some(run_id), ..EventFilter::default() }).await.unwrap();
    let at_step = |step: u64| {
        events
            .iter()
            .filter(|event| event.kind == "analysis.measured" && event.data["step"].as_u64() == Some(step))
            .count()
    };
    assert!(at_step(1) >= 4 && at_step(2) >= 4, "step 1: {}, step 2: {}", at_step(1), at_step(2));
}
