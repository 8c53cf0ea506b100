//! The Docker task scheduler with its clock in the test's hands: a real store and
//! engine, and testkit's fake target, which records what it runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use launchway_engine::{Decision, DeployRequest, Engine, EngineConfig, Selection, TargetProvider};
use launchway_manifest::{SourceFile, TargetSpec};
use launchway_store::{RunFilter, RunKind, RunState, Store};
use launchway_store_sqlite::SqliteStore;
use launchway_target::{Target, TargetError};
use launchway_testkit::FakeTarget;

use crate::runtime::Runtime;
use crate::scheduler::Scheduler;

struct Provider(Arc<FakeTarget>);

#[async_trait]
impl TargetProvider for Provider {
    async fn target(&self, _: &TargetSpec) -> Result<Arc<dyn Target>, TargetError> {
        Ok(self.0.clone())
    }
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn a_deployed_task_fires_on_its_schedule_once_per_firing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("db").to_str().unwrap()).await.expect("store"));
    let target = Arc::new(FakeTarget::default());
    let engine = Engine::new(store.clone(), Arc::new(Provider(target.clone())), EngineConfig::default());
    let (runtime, _ended) = Runtime::new(engine.clone(), 4);

    // Deploying a task only records it.
    let text =
        "environments: {dev: {target: docker}}\ntasks: {report: {image: example/report:1, schedule: rate(1 hour)}}\n";
    let files = vec![SourceFile { path: "launchway.yaml".into(), bytes: text.as_bytes().to_vec() }];
    let manifest = launchway_manifest::load(&files, &files).expect("valid").manifest;
    let request = DeployRequest {
        manifest: &manifest,
        images: Default::default(),
        published: &[],
        source: Default::default(),
        selection: &Selection::default(),
        retry_failed: false,
        trigger: "test".into(),
    };
    let decisions = engine.prepare_deploys(&request).await.unwrap();
    let [Decision::Started { run, .. }] = decisions.as_slice() else { panic!("{decisions:?}") };
    assert_eq!(engine.drive(run.id).await.unwrap().state, RunState::Succeeded);
    let deployed_at = store.deployment("report", "dev").await.unwrap().unwrap().updated_at;

    let mut scheduler = Scheduler::default();
    let (started, next) = scheduler.tick(&runtime, deployed_at).await.unwrap();
    assert!(started.is_empty());
    assert_eq!(next, Some(deployed_at + HOUR), "an hour after it was deployed");
    let (started, _) = scheduler.tick(&runtime, deployed_at + HOUR - 1).await.unwrap();
    assert!(started.is_empty(), "not a millisecond early");

    let (started, next) = scheduler.tick(&runtime, deployed_at + HOUR).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(next, Some(deployed_at + 2 * HOUR));
    let (again, _) = scheduler.tick(&runtime, deployed_at + HOUR + 10).await.unwrap();
    assert!(again.is_empty(), "one run per firing");

    let run_id = started[0];
    for _ in 0..200 {
        if store.run(run_id).await.unwrap().state.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = store.run(run_id).await.unwrap();
    assert_eq!((run.kind, run.state), (RunKind::Scheduled, RunState::Succeeded));
    assert_eq!(run.trigger, "schedule rate(1 hour)");
    assert_eq!(target.executions(), [run_id]);
    let scheduled = store.runs(&RunFilter { app: Some("report".into()), ..RunFilter::default() }).await.unwrap();
    assert_eq!(scheduled.len(), 2, "the deploy and one execution");
}
