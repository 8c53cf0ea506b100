//! Rollouts you can trust: a release is good only once verification watched it settle,
//! what drifts from the last verified release is repaired toward it, a manual rollback
//! sticks until someone lifts it, and `status` says what it saw, or that it could not
//! see. Real Docker engine, real git, real SQLite; the server as a real process.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::World;
use support::server::{Api, ServerProcess, token};

/// Two replicas answering {message}, watched for a second after each rollout.
const WEB: &str = "
environments:
  {env}:
    target: docker
services:
  web:
    image: {image}
    port: 8080
    replicas: 2
    env:
      SAMPLE_MESSAGE: {message}
{extra}    health: {path: /healthz, interval: 1s, timeout: 500ms, start_interval: 50ms}
    stop_grace_period: 1s
    settle_window: 1s
";

/// The web service saying `message`, with extra env lines (indented six spaces).
fn web(message: &str, extra_env: &str) -> String {
    WEB.replace("{message}", message).replace("{extra}", extra_env)
}

async fn status(world: &World) -> Vec<Value> {
    let run = world.launchway(&["status", "--output", "json"]).await;
    run.assert_exit(0);
    serde_json::from_str(&run.stdout()).expect("status prints JSON")
}

/// Waits until the world's `status` for web satisfies `ready`.
async fn wait_for_status(world: &World, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = world.launchway(&["status", "--output", "json"]).await;
        let statuses: Value = serde_json::from_str(&run.stdout()).unwrap_or_default();
        let web = statuses.as_array().into_iter().flatten().find(|status| status["app"] == "web").cloned();
        if let Some(web) = web.filter(|web| ready(web)) {
            return web;
        }
        assert!(Instant::now() < deadline, "status never got there: {statuses:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn answers_with(answers: &[String], message: &str) -> bool {
    !answers.is_empty() && answers.iter().all(|answer| answer.starts_with(&format!("{message} (")))
}

#[tokio::test]
async fn status_is_unknown_with_a_non_zero_exit_when_the_docker_engine_cannot_be_reached() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let healthy = &status(&world).await[0];
    assert_eq!(healthy["health"]["state"], "healthy", "{healthy:#}");
    assert_eq!(healthy["health"]["summary"], "2/2 running");
    assert_eq!(healthy["sync"], "in_sync");

    let closed = tempfile::tempdir().expect("temp dir");
    let socket = format!("unix://{}", closed.path().join("docker.sock").display());
    let mut command = world.command(&["status", "--output", "json"]);
    command.env("DOCKER_HOST", &socket);
    let output = command.output().expect("launchway runs");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let statuses: Value = serde_json::from_slice(&output.stdout).expect("JSON all the same");
    let web = &statuses[0];
    assert_eq!(web["health"]["state"], "unknown", "{web:#}");
    assert_eq!(web["sync"], "unknown", "not \"in sync\": nothing was seen");
    assert!(web["live_error"].as_str().unwrap().contains(&format!("could not reach the Docker engine at {socket}")));

    let mut command = world.command(&["status"]);
    command.env("DOCKER_HOST", &socket);
    let output = command.output().expect("launchway runs");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("unknown"), "{stdout}");
    assert!(!stdout.contains("in sync"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("could not reach the Docker engine"));
}

#[tokio::test]
async fn containers_removed_by_hand_are_drift_and_deploy_repairs_them_toward_the_verified_release() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let removed = world.live("web").await.replicas[0].id.clone();
    let rm = std::process::Command::new("docker").args(["rm", "-f", &removed]).stdout(Stdio::null()).status();
    assert!(rm.expect("docker runs").success());

    let drifted = &status(&world).await[0];
    assert_eq!(drifted["health"]["state"], "degraded", "{drifted:#}");
    assert_eq!(drifted["health"]["summary"], "1/2 running");
    let plan = world.launchway(&["plan", "--output", "json"]).await;
    let plan: Value = serde_json::from_str(&plan.stdout()).expect("JSON");
    assert_eq!(plan["plans"][0]["action"], "converge", "{plan:#}");

    let repair = world.launchway(&["deploy"]).await;
    repair.assert_exit(0);
    let runs = world.runs().await;
    assert_eq!((runs[0]["kind"].as_str(), runs[0]["state"].as_str()), (Some("repair"), Some("succeeded")));
    assert_eq!(runs[0]["release_id"], runs[1]["release_id"], "repaired toward the release that was verified");
    assert_eq!(world.running_ids("web").await.len(), 2);
    assert_eq!(status(&world).await[0]["health"]["state"], "healthy");
}

#[tokio::test]
async fn a_manual_rollback_pins_the_app_until_someone_unpins_it() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.commit(&web("v2", ""), "web v2");
    world.launchway(&["deploy"]).await.assert_exit(0);

    let rollback = world.launchway(&["rollback", "--app", "web", "--reason", "v2 leaks memory"]).await;
    rollback.assert_exit(0);
    assert!(rollback.stdout().contains("pinned to release 1"), "{}", rollback.stdout());
    assert!(answers_with(&world.answers("web").await, "v1"));

    // The repo still asks for v2: plan and deploy leave the pin alone and say why.
    let plan = world.launchway(&["plan"]).await;
    assert!(plan.stdout().contains("pinned to release 1 by"), "{}", plan.stdout());
    assert!(plan.stdout().contains("0 of 1 app would change"), "{}", plan.stdout());
    let runs = world.runs().await.len();
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(0);
    assert!(deploy.stdout().contains("pinned to release 1 by"), "{}", deploy.stdout());
    assert!(deploy.stdout().contains("v2 leaks memory"), "{}", deploy.stdout());
    assert!(deploy.stdout().contains("launchway unpin --app web"), "{}", deploy.stdout());
    assert_eq!(world.runs().await.len(), runs, "no run");
    assert!(answers_with(&world.answers("web").await, "v1"));

    let pinned = &status(&world).await[0];
    assert_eq!(pinned["sync"], "pinned", "{pinned:#}");
    assert_eq!(pinned["deployment"]["pin"]["release_id"], 1);
    assert_eq!(pinned["deployment"]["pin"]["reason"], "v2 leaks memory");
    assert!(pinned["deployment"]["pin"]["at"].as_i64().unwrap() > 0);
    let text = world.launchway(&["status"]).await;
    assert!(text.stdout().contains("pinned to release 1 by"), "{}", text.stdout());

    world.launchway(&["unpin", "--app", "web"]).await.assert_exit(0);
    world.launchway(&["deploy"]).await.assert_exit(0);
    assert!(answers_with(&world.answers("web").await, "v2"), "the repo's state again");
    assert_eq!(status(&world).await[0]["sync"], "in_sync");
    world.launchway(&["unpin", "--app", "web"]).await.assert_exit(1);
}

#[tokio::test]
async fn a_rollback_goes_only_to_a_release_that_was_verified() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.commit(&web("v2", "      SAMPLE_HEALTH: fail\n"), "web v2, broken");
    world.launchway(&["deploy"]).await.assert_exit(5);
    world.commit(&web("v3", ""), "web v3");
    world.launchway(&["deploy"]).await.assert_exit(0);

    // Release 2 (v2) never passed verification.
    let refused = world.launchway(&["rollback", "--app", "web", "--to", "2"]).await;
    refused.assert_exit(1);
    assert!(refused.stderr().contains("release 2 (revision"), "{}", refused.stderr());
    assert!(refused.stderr().contains("was never verified"), "{}", refused.stderr());
    // Without --to: the last verified release before the current one, v1.
    world.launchway(&["rollback", "--app", "web"]).await.assert_exit(0);
    assert!(answers_with(&world.answers("web").await, "v1"));
}

/// The release dies 8 s after each start: after its settle window, so it is verified.
/// Docker's restart policy brings it back; that restart is drift, which `status`
/// reports and the server repairs toward the last verified release.
#[tokio::test]
async fn a_release_that_dies_after_its_window_is_degraded_and_the_server_repairs_it() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.commit(&web("v2", "      SAMPLE_EXIT_AFTER: 8s\n"), "web v2, dies later");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let verified = world.runs().await[0]["release_id"].clone();

    // Both replicas crashed and were restarted by Docker: what runs drifted from what
    // was verified, and status says so.
    let degraded = wait_for_status(&world, |web| {
        web["health"]["summary"].as_str().unwrap_or_default().matches("restarted").count() == 2
    })
    .await;
    assert_eq!(degraded["health"]["state"], "degraded", "{degraded:#}");
    let summary = degraded["health"]["summary"].as_str().unwrap();
    assert!(summary.contains("restarted 1 time after crashing"), "{summary}");

    let server = ServerProcess::start_polling(&world, "500ms");
    let api = Api::new(&server, Some(&token(&world, "viewer", "ops@example.com", &[]).await));
    let runs = api
        .wait_for_runs("", |runs| runs.iter().any(|run| run["kind"] == "repair" && run["state"] == "succeeded"))
        .await;
    let repair = runs.iter().find(|run| run["kind"] == "repair").unwrap();
    assert_eq!(repair["release_id"], verified, "toward the last verified release");
    assert_eq!(runs.len(), 3, "one repair, no redeploy: {runs:#?}");
    let details = api.get(&format!("/api/v1/runs/{}", repair["id"])).await.body;
    let replaced = details["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "replica.replacing").count();
    assert!(replaced >= 1, "{details:#}");
    let healthy = api.get("/api/v1/status").await.body;
    assert_eq!(healthy[0]["health"]["state"], "healthy", "{healthy:#}");
}

#[tokio::test]
async fn a_manual_rollback_under_the_server_survives_its_polls_and_unpinning_deploys_the_repo_again() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    let server = ServerProcess::start_polling(&world, "300ms");
    let api = Api::new(&server, Some(&token(&world, "deployer", "alice@example.com", &[]).await));
    api.wait_for_runs("", |runs| runs.len() == 1 && runs[0]["state"] == "succeeded").await;
    world.commit(&web("v2", ""), "web v2");
    api.wait_for_runs("", |runs| runs.len() == 2 && runs[0]["state"] == "succeeded").await;

    let env = world.env.clone();
    let rollback = api.post("/api/v1/rollback", json!({"app": "web", "env": env, "reason": "v2 answers slowly"})).await;
    assert_eq!(rollback.status, 202, "{}", rollback.body);
    api.wait_for_run(rollback.body["id"].as_i64().unwrap(), &["succeeded"]).await;
    assert!(answers_with(&world.answers("web").await, "v1"));

    // Three poll intervals and more: the rollback stays.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = api.get("/api/v1/runs").await.body;
    assert_eq!(runs.as_array().unwrap().len(), 3, "nothing redeployed v2: {runs:#}");
    assert!(answers_with(&world.answers("web").await, "v1"));
    let status = api.get("/api/v1/status").await.body;
    assert_eq!(status[0]["sync"], "pinned", "{status:#}");
    let pin = &status[0]["deployment"]["pin"];
    assert!(pin["by"].as_str().unwrap().contains("alice@example.com"), "{pin}");
    assert_eq!(pin["reason"], "v2 answers slowly");

    let unpinned = api.post("/api/v1/unpin", json!({"app": "web", "env": env})).await;
    assert_eq!(unpinned.status, 200, "{}", unpinned.body);
    assert_eq!(unpinned.body["unpinned"]["release_id"], 1);
    api.wait_for_runs("", |runs| runs.len() == 4 && runs[0]["state"] == "succeeded").await;
    assert!(answers_with(&world.answers("web").await, "v2"));
    assert_eq!(api.post("/api/v1/unpin", json!({"app": "web", "env": env})).await.status, 409, "not pinned");
}

/// A release that crashes seconds after it turns healthy is rolled back, and the server,
/// polling all the while, never deploys it again: one failed run, not one per poll.
#[tokio::test]
async fn the_server_does_not_redeploy_a_release_that_was_rolled_back() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    let server = ServerProcess::start_polling(&world, "500ms");
    let api = Api::new(&server, Some(&token(&world, "deployer", "ops@example.com", &[]).await));
    api.wait_for_runs("", |runs| runs.len() == 1 && runs[0]["state"] == "succeeded").await;

    let crashing = web("v2", "      SAMPLE_EXIT_AFTER: 1500ms\n").replace("settle_window: 1s", "settle_window: 3s");
    world.commit(&crashing, "web v2 crashes after start");
    let runs = api.wait_for_runs("", |runs| runs.len() == 2 && runs[0]["state"] == "rolled_back").await;
    assert!(runs[0]["reason"].as_str().unwrap().contains("exited with code 3"), "{:#}", runs[0]);

    // A minute of polls (120 of them).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let runs = api.get("/api/v1/runs").await.body;
        assert_eq!(runs.as_array().unwrap().len(), 2, "no run after the rollback: {runs:#}");
        assert!(answers_with(&world.answers("web").await, "v1"), "v1 serves");
    }

    // Unless someone asks for it.
    let retried = api.post("/api/v1/sync", json!({"apps": ["web"], "retry": true})).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["runs"][0]["decision"], "started", "{}", retried.body);
    api.wait_for_run(retried.body["runs"][0]["run"].as_i64().unwrap(), &["rolled_back"]).await;
}

/// Regression (issue 8): two `launchway deploy` started at the same instant on a new
/// database. The loser used to exit 1 with "run N … is still in progress", leaving a
/// release with no run; opening the new database at once also failed 8-19 times in 30.
#[tokio::test]
async fn two_deploys_started_at_the_same_instant_both_succeed_with_one_run() {
    let world = World::new().await;
    world.commit(
        "
environments:
  {env}: {target: docker}
tasks:
  report: {image: {image}, schedule: rate(1 hour)}
",
        "a task",
    );
    for trial in 0..30 {
        let db = world.db.path().join(format!("trial-{trial}.db"));
        let start = || {
            let mut command = world.command(&["deploy", "--output", "json"]);
            command.env("LAUNCHWAY_DB", &db).stdout(Stdio::piped()).stderr(Stdio::piped());
            command.spawn().expect("launchway starts")
        };
        let (first, second) = (start(), start());
        for (which, child) in [("first", first), ("second", second)] {
            let output = child.wait_with_output().expect("launchway exits");
            assert_eq!(
                output.status.code(),
                Some(0),
                "trial {trial}, {which}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let store = launchway_store_sqlite::SqliteStore::open(db.to_str().unwrap()).await.expect("opens");
        use launchway_store::Store as _;
        let runs = store.runs(&launchway_store::RunFilter::default()).await.expect("runs");
        assert_eq!(runs.len(), 1, "trial {trial}: one run for the app");
        assert!(store.release(runs[0].release_id).await.is_ok());
        assert!(store.release(runs[0].release_id + 1).await.is_err(), "trial {trial}: no orphan release");
        assert!(store.release(runs[0].release_id - 1).await.is_err(), "trial {trial}: no orphan release");
    }
}

/// Regression (issue 8): a published release that was rolled back stayed the desired
/// state, so an unrelated manifest change later deployed the bad images again.
#[tokio::test]
async fn a_failed_publication_is_not_redeployed_by_an_unrelated_change_but_a_retry_does() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    // What CI "built": the sample app with its health check failing.
    let bad = format!("launchway-test/sample:bad-{}", world.env);
    launchway_target_docker::build_executable_image(
        world.docker.client(),
        &launchway_target_docker::ExecutableImage {
            tag: bad.clone(),
            executable: support::binary(),
            args: vec!["sample-app".to_owned()],
            env: vec![("SAMPLE_HEALTH".to_owned(), "fail".to_owned())],
        },
    )
    .await
    .expect("the bad image builds");
    let file = world.db.path().join("imagedefinitions.json");
    std::fs::write(&file, format!(r#"[{{"name": "web", "imageUri": "{bad}"}}]"#)).unwrap();
    let file = file.to_str().unwrap();
    let env = world.env.clone();
    let publish = ["release", "publish", "--app", "web", "--env", &env, "--file", file];
    let mut with_source = publish.to_vec();
    with_source.extend(["--commit", "0a1b2c3d4e5f6789", "--author", "alice@example.com"]);
    world.launchway(&with_source).await.assert_exit(5);
    let runs = world.runs().await;
    assert_eq!(runs[0]["state"], "rolled_back");
    let details = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
    let source = &details["release"]["source"];
    assert_eq!(source["author"], "alice@example.com", "the application's author wrote this release: {source}");
    assert!(source["origin"].as_str().unwrap().contains("from commit 0a1b2c3d4e5f by alice@example.com"), "{source}");

    // An unrelated change to the manifest: deployed with the last good images.
    world.commit(&web("v1", "      LOG_LEVEL: debug\n"), "more logging");
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(0);
    assert!(deploy.stdout().contains("published failed in run"), "{}", deploy.stdout());
    let details = world.run_details(world.runs().await[0]["id"].as_i64().unwrap()).await;
    let image = details["release"]["spec"]["containers"][0]["image"].as_str().unwrap().to_owned();
    assert_eq!(image, support::IMAGE, "not the images that failed");
    assert!(answers_with(&world.answers("web").await, "v1"));
    // Nothing more to do, and said so.
    let again = world.launchway(&["deploy"]).await;
    assert!(again.stdout().contains("published failed in run"), "{}", again.stdout());
    let runs = world.runs().await.len();

    let mut retry = publish.to_vec();
    retry.push("--retry");
    world.launchway(&retry).await.assert_exit(5);
    let after = world.runs().await;
    assert_eq!(after.len(), runs + 1, "retried");
    let details = world.run_details(after[0]["id"].as_i64().unwrap()).await;
    assert_eq!(details["release"]["spec"]["containers"][0]["image"], bad.as_str());
    assert!(answers_with(&world.answers("web").await, "v1"), "and rolled back again");
}
