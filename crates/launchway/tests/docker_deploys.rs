//! GitOps to the local Docker engine, end to end, through the `launchway` binary:
//! a real git repo, a real SQLite file, real containers.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use launchway_target::ReplicaState;
use support::World;

const WEB: &str = "
environments:
  {env}:
    target: docker
services:
  web:
    image: {image}
    port: 8080
    replicas: 3
    env:
      SAMPLE_MESSAGE: {message}
{extra}    health:
      path: /healthz
      interval: 1s
      timeout: 500ms
      start_interval: 50ms
    stop_grace_period: 2s
    settle_window: {settle}
    strategy:
      rolling: {max_surge: 1, max_unavailable: 0}
";

/// The web service saying `message`, with extra env lines (already indented).
fn web(message: &str, extra_env: &str) -> String {
    web_watched(message, extra_env, "500ms")
}

/// The web service, verified over a settle window of `settle`.
fn web_watched(message: &str, extra_env: &str, settle: &str) -> String {
    WEB.replace("{message}", message).replace("{extra}", extra_env).replace("{settle}", settle)
}

#[tokio::test]
async fn a_rolling_update_replaces_every_replica_without_ever_dropping_below_the_minimum() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let v1 = world.running_ids("web").await;
    assert_eq!(v1.len(), 3);

    // v2 starts slowly, so the rollout takes a while and the watcher sees all of it.
    world.commit(&web("v2", "      SAMPLE_START_DELAY: 300ms\n"), "web v2");
    let watcher = world.watch("web");
    let deploy = world.launchway(&["deploy"]).await;
    let samples = watcher.samples().await;
    deploy.assert_exit(0);

    let v2 = world.running_ids("web").await;
    assert_eq!(v2.len(), 3, "three replicas in the end");
    assert!(v1.is_disjoint(&v2), "every container was replaced");
    for answer in world.answers("web").await {
        assert!(answer.starts_with("v2 ("), "{answer}");
    }
    // max_unavailable 0: three healthy replicas at every instant.
    assert!(samples.len() >= 10, "the rollout was sampled ({} samples)", samples.len());
    assert_eq!(samples.iter().min(), Some(&3), "healthy replicas sampled: {samples:?}");
    let live = world.live("web").await;
    assert!(live.replicas.iter().all(|replica| replica.state == ReplicaState::Running));
    assert_eq!(live.replicas.iter().map(|r| r.slot).collect::<BTreeSet<_>>(), BTreeSet::from([0, 1, 2]));
}

#[tokio::test]
async fn a_release_failing_its_health_check_is_rolled_back_and_the_old_replicas_keep_serving() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let v1 = world.running_ids("web").await;

    world.commit(&web("v2", "      SAMPLE_HEALTH: fail\n"), "web v2, broken");
    let watcher = world.watch("web");
    let deploy = world.launchway(&["deploy"]).await;
    let samples = watcher.samples().await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("failed its health check: GET /healthz answered 500"), "{stdout}");
    assert!(stdout.contains("health check failing on purpose"), "the failing replica's log is shown: {stdout}");
    assert!(stdout.contains("rolled_back"), "{stdout}");

    assert_eq!(world.running_ids("web").await, v1, "the very same v1 containers are running");
    for answer in world.answers("web").await {
        assert!(answer.starts_with("v1 ("), "{answer}");
    }
    assert_eq!(samples.iter().min(), Some(&3), "v1 served throughout: {samples:?}");

    let runs = world.runs().await;
    assert_eq!(runs[0]["state"], "rolled_back");
    let reason = runs[0]["reason"].as_str().expect("a reason");
    assert!(reason.contains("failed its health check"), "{reason}");

    // The same broken revision is not deployed again on the next deploy…
    let again = world.launchway(&["deploy"]).await;
    again.assert_exit(5);
    assert!(again.stdout().contains("was rolled back in run"), "{}", again.stdout());
    assert_eq!(world.runs().await.len(), runs.len(), "no new run");
    // …unless asked.
    world.launchway(&["deploy", "--retry"]).await.assert_exit(5);
    assert_eq!(world.runs().await.len(), runs.len() + 1);
}

#[tokio::test]
async fn a_deploy_killed_midway_is_resumed_by_the_next_one_to_a_correct_end() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);

    world.commit(&web("v2", "      SAMPLE_START_DELAY: 1s\n"), "web v2");
    let mut child =
        world.command(&["deploy"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("launchway starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let killed = tokio::task::spawn_blocking(move || {
        // Kill it right after it has started a new replica: mid-rollout.
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            if line.contains("• started web-") {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                return line;
            }
        }
        child.wait().expect("reaped");
        panic!("launchway never started a replica");
    })
    .await
    .expect("the reader finishes");
    assert!(killed.contains("(1 of 3)"), "killed after the first new replica: {killed}");

    let runs = world.runs().await;
    let interrupted = &runs[0];
    assert_eq!(interrupted["state"], "deploying", "the run was interrupted mid-deploy");
    let run_id = interrupted["id"].as_i64().expect("run id");

    let resumed = world.launchway(&["deploy"]).await;
    resumed.assert_exit(0);
    assert!(resumed.stdout().contains(&format!("resuming interrupted run {run_id}")), "{}", resumed.stdout());

    let runs = world.runs().await;
    assert_eq!(runs.len(), 2, "the v2 deploy is still one run");
    assert_eq!(runs[0]["id"], run_id);
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["attempt"], 2);

    let live = world.live("web").await;
    assert_eq!(live.replicas.len(), 3, "no duplicate containers: {:#?}", live.replicas);
    let names: BTreeSet<&str> = live.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 3);
    for answer in world.answers("web").await {
        assert!(answer.starts_with("v2 ("), "{answer}");
    }

    let details = world.run_details(run_id).await;
    let kinds: Vec<&str> =
        details["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    let position =
        |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind} in {kinds:?}"));
    assert!(position("run.created") < position("run.validating"));
    assert!(position("run.validating") < position("run.planning"));
    assert!(position("run.planning") < position("run.deploying"));
    assert!(position("run.deploying") < position("run.resumed"));
    assert!(position("run.resumed") < position("run.verifying"));
    assert!(position("run.verifying") < position("run.succeeded"));
    let deploy_steps: Vec<i64> = details["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["name"] == "deploy")
        .map(|step| step["attempt"].as_i64().expect("attempt"))
        .collect();
    assert_eq!(deploy_steps, [1, 2], "the deploy step ran once per attempt");
    // Every v2 replica's start is in the log, whether started before or after the kill.
    let started = kinds.iter().filter(|k| **k == "replica.started" || **k == "replica.adopted").count();
    assert!(started >= 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "replica.stopped").count(), 3, "{kinds:?}");
}

#[tokio::test]
async fn an_invalid_manifest_is_reported_with_positions_and_changes_nothing() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let before = world.running_ids("web").await;
    let runs_before = world.runs().await.len();

    let broken = web("v2", "").replace("replicas: 3", "replica: 3").replace("interval: 1s", "interval: often");
    world.commit(&broken, "broken manifest");
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(3);
    let stderr = deploy.stderr();
    assert!(
        stderr.contains(r#"launchway.yaml:9:5: services.web: unknown field "replica", did you mean "replicas"?"#),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"launchway.yaml:14:17: services.web.health.interval: "often" is not a duration"#),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");

    assert_eq!(world.running_ids("web").await, before, "no container touched");
    assert_eq!(world.runs().await.len(), runs_before, "no run created");

    // The same problems, before committing, from the work tree.
    let validate = world.launchway(&["validate", "--output", "json"]).await;
    validate.assert_exit(3);
    let report: serde_json::Value = serde_json::from_str(&validate.stdout()).expect("JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["diagnostics"].as_array().expect("diagnostics").len(), 2);
    assert_eq!(report["diagnostics"][0]["line"], 9);

    // A path that does not exist is not an invalid manifest: nothing was there to read.
    let missing = world.launchway(&["validate", "/nonexistent/config"]).await;
    missing.assert_exit(1);
    assert!(missing.stderr().contains("/nonexistent/config does not exist"), "{}", missing.stderr());
    assert!(!missing.stderr().contains("launchway.yaml:1:1"), "{}", missing.stderr());
}

#[tokio::test]
async fn a_commit_changing_one_app_deploys_only_that_app() {
    let world = World::new().await;
    world.commit(&two_apps("1", "1", "", ""), "two apps");
    let first = world.launchway(&["deploy"]).await;
    first.assert_exit(0);
    assert_eq!(world.runs().await.len(), 2, "{}", first.stdout());
    let web_before = world.running_ids("web").await;
    let api_before = world.running_ids("api").await;

    world.commit(&two_apps("1", "2", "", ""), "change api only");
    let plan = world.launchway(&["plan", "--output", "json"]).await;
    plan.assert_exit(0);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).expect("JSON");
    let actions: Vec<(&str, &str)> = plan["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| (p["app"].as_str().unwrap_or_default(), p["action"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(actions, [("api", "update"), ("web", "no_change")]);
    assert_eq!(plan["plans"][0]["changes"][0]["path"], "containers.api.env.SAMPLE_MESSAGE");

    // Its log, sent to a pipe as to a file or a journal, is plain text.
    let mut command = world.command(&["deploy"]);
    command.env("LAUNCHWAY_LOG", "info");
    let second = support::Run { output: tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap() };
    second.assert_exit(0);
    let log = second.stderr();
    assert!(log.contains("step started"), "the engine logged its steps: {log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in {log}");
    assert!(second.stdout().contains("web@"), "{}", second.stdout());
    assert!(second.stdout().contains("unchanged"), "{}", second.stdout());
    let runs = world.runs().await;
    assert_eq!(runs.len(), 3, "one new run");
    assert_eq!(runs[0]["app"], "api");
    assert_eq!(world.running_ids("web").await, web_before, "web untouched");
    assert!(world.running_ids("api").await.is_disjoint(&api_before), "api replaced");
    assert!(world.answers("api").await[0].starts_with("api-2"));

    // Nothing changed since: nothing to do.
    let third = world.launchway(&["deploy"]).await;
    third.assert_exit(0);
    assert!(third.stdout().contains("nothing to deploy"), "{}", third.stdout());
    assert_eq!(world.runs().await.len(), 3);
}

/// `depends_on` (issue 12): web's run starts only once api's has succeeded; when api's
/// fails, web's fails too, saying why, and nothing of web changes.
#[tokio::test]
async fn an_app_deploys_after_the_app_it_depends_on_and_not_when_that_one_fails() {
    let world = World::new().await;
    // api starts slowly: were web not waiting, it would be done first.
    let version = |web: &str, api: &str, api_env: &str| {
        two_apps(web, api, "    depends_on: [api]\n", &format!(", SAMPLE_START_DELAY: 500ms{api_env}"))
    };
    world.commit(&version("1", "1", ""), "web and api");
    let first = world.launchway(&["deploy"]).await;
    first.assert_exit(0);
    assert!(first.stdout().contains("waits for api's run"), "{}", first.stdout());
    let runs = world.runs().await;
    let run_of = |app: &str| runs.iter().find(|run| run["app"] == app).expect("a run").clone();
    let (web, api) = (run_of("web"), run_of("api"));
    assert_eq!(web["waits_for"], serde_json::json!([api["id"]]), "{web}");
    let events = world.run_details(web["id"].as_i64().unwrap()).await["events"].clone();
    let validating =
        events.as_array().unwrap().iter().find(|event| event["kind"] == "run.validating").expect("web validated");
    assert!(
        validating["at"].as_i64().unwrap() >= api["finished_at"].as_i64().unwrap(),
        "web started after api finished: {validating} {api}"
    );
    let web_before = world.running_ids("web").await;

    // api's next release fails its health check: web's change waits, then is not deployed.
    world.commit(&version("2", "2", ", SAMPLE_HEALTH: fail"), "both change, api broken");
    let second = world.launchway(&["deploy"]).await;
    second.assert_exit(4);
    assert!(second.stdout().contains("not deployed: web depends on api"), "{}", second.stdout());
    let runs = world.runs().await;
    let (web, api) = (run_of_in(&runs, "web"), run_of_in(&runs, "api"));
    assert_eq!(api["state"], "rolled_back");
    assert_eq!(web["state"], "failed");
    let reason = web["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("not deployed: web depends on api, whose run {} was rolled back", api["id"])),
        "{reason}"
    );
    assert_eq!(world.running_ids("web").await, web_before, "web untouched");
    assert!(world.answers("web").await.iter().all(|answer| answer.starts_with("web-1")));
}

/// Two services, web and api, answering `web-<web>` and `api-<api>`; `web_lines` are
/// more lines of web's (indented), `api_env` more entries of api's env (`, NAME: value`).
fn two_apps(web: &str, api: &str, web_lines: &str, api_env: &str) -> String {
    format!(
        "
environments:
  {{env}}: {{target: docker}}
services:
  web:
    image: {{image}}
    port: 8080
    env: {{SAMPLE_MESSAGE: web-{web}}}
    health: {{path: /healthz}}
    settle_window: 300ms
{web_lines}  api:
    image: {{image}}
    port: 8080
    env: {{SAMPLE_MESSAGE: api-{api}{api_env}}}
    health: {{path: /healthz}}
    settle_window: 300ms
"
    )
}

/// A migration: a task run once each time it changes (`run: on_deploy`), which the
/// service depends on. Its exit code is what is watched: 0 lets the service deploy, any
/// other stops the service's run, which changes nothing.
#[tokio::test]
async fn a_failing_migration_task_stops_the_service_that_depends_on_it() {
    let world = World::new().await;
    let version = |migration: &str, exit_code: &str| {
        two_apps("1", "1", "    depends_on: [migrate]\n", "")
            + &format!(
                "tasks:
  migrate:
    image: {{image}}
    run: on_deploy
    env: {{SAMPLE_MESSAGE: migration-{migration}, SAMPLE_EXIT_AFTER: 100ms, SAMPLE_EXIT_CODE: '{exit_code}'}}
"
            )
    };
    world.commit(&version("1", "0"), "web after its migration");
    let first = world.launchway(&["deploy"]).await;
    first.assert_exit(0);
    let runs = world.runs().await;
    let (migrate, web) = (run_of_in(&runs, "migrate"), run_of_in(&runs, "web"));
    assert_eq!(migrate["state"], "succeeded", "{migrate}");
    assert!(migrate["reason"].as_str().unwrap().starts_with("exited 0"), "{migrate}");
    assert_eq!(web["waits_for"], serde_json::json!([migrate["id"]]));
    assert_eq!(web["state"], "succeeded");
    assert!(world.live("migrate").await.replicas.is_empty(), "the task ran and is gone");
    let status = world.launchway(&["status", "--app", "migrate", "--output", "json"]).await;
    assert!(status.stdout().contains("ran once for release"), "{}", status.stdout());
    let rollback = world.launchway(&["rollback", "--app", "migrate"]).await;
    rollback.assert_exit(1);
    assert!(rollback.stderr().contains("runs once on deploy"), "{}", rollback.stderr());

    // The next migration fails: web's change is not deployed.
    let web_before = world.running_ids("web").await;
    world.commit(&version("2", "1").replace("web-1", "web-2"), "web 2 and a broken migration");
    let second = world.launchway(&["deploy"]).await;
    second.assert_exit(4);
    let runs = world.runs().await;
    let (migrate, web) = (run_of_in(&runs, "migrate"), run_of_in(&runs, "web"));
    assert_eq!(migrate["state"], "failed", "{migrate}");
    assert_eq!(web["state"], "failed");
    let reason = web["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("not deployed: web depends on migrate, whose run {} failed", migrate["id"])),
        "{reason}"
    );
    assert_eq!(world.running_ids("web").await, web_before, "web untouched");
}

fn run_of_in(runs: &[serde_json::Value], app: &str) -> serde_json::Value {
    runs.iter().find(|run| run["app"] == app).expect("a run").clone()
}

#[tokio::test]
async fn rollback_returns_to_the_previous_good_release_and_status_shows_it() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.commit(&web("v2", ""), "web v2");
    world.launchway(&["deploy"]).await.assert_exit(0);

    world.launchway(&["rollback", "--app", "web"]).await.assert_exit(0);
    for answer in world.answers("web").await {
        assert!(answer.starts_with("v1 ("), "{answer}");
    }
    let runs = world.runs().await;
    assert_eq!(runs[0]["kind"], "rollback");
    assert_eq!(runs[0]["state"], "succeeded");

    let status = world.launchway(&["status", "--output", "json"]).await;
    status.assert_exit(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).expect("JSON");
    let web = &status[0];
    assert_eq!(web["app"], "web");
    assert_eq!(web["current_release"]["id"], 1, "release 1 runs again");
    assert_ne!(web["desired_revision"], web["current_release"]["revision"], "the repo still asks for v2");
    assert_eq!(web["live"]["replicas"].as_array().expect("replicas").len(), 3);
}

#[tokio::test]
async fn sidecars_share_the_primary_network_and_are_replaced_with_it() {
    let world = World::new().await;
    let pod = "
environments:
  {env}: {target: docker}
services:
  pod:
    containers:
      main:
        image: {image}
        port: 8080
        env: {SAMPLE_MESSAGE: main}
      sidecar:
        image: {image}
        port: 9090
        env: {SAMPLE_MESSAGE: sidecar-VERSION, PORT: '9090'}
    replicas: 2
    health: {path: /healthz}
    settle_window: 300ms
";
    world.commit(&pod.replace("VERSION", "1"), "pod v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let live = world.live("pod").await;
    assert_eq!(live.replicas.len(), 2);
    for replica in &live.replicas {
        assert_eq!(replica.containers.len(), 2, "{replica:#?}");
        assert_eq!(replica.endpoints.len(), 2, "both ports are published through the primary");
    }
    let mut answers = world.answers_on_every_port("pod").await;
    answers.sort();
    assert_eq!(answers.len(), 4);
    assert!(answers[0].starts_with("main (") && answers[1].starts_with("main ("), "{answers:?}");
    assert!(answers[2].starts_with("sidecar-1 (") && answers[3].starts_with("sidecar-1 ("), "{answers:?}");

    // Changing only the sidecar replaces whole replicas, sidecars included.
    world.commit(&pod.replace("VERSION", "2"), "pod v2");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let live = world.live("pod").await;
    assert_eq!(live.replicas.iter().map(|r| r.containers.len()).sum::<usize>(), 4, "no orphaned sidecars");
    let answers = world.answers_on_every_port("pod").await;
    assert_eq!(answers.iter().filter(|answer| answer.starts_with("sidecar-2 (")).count(), 2, "{answers:?}");
}

#[tokio::test]
async fn a_replica_that_crashes_while_starting_fails_the_release_at_once() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let v1 = world.running_ids("web").await;

    world.commit(&web("v2", "      SAMPLE_START_DELAY: 10s\n      SAMPLE_EXIT_AFTER: 200ms\n"), "web v2 crashes");
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("exited with code 3 during the rollout"), "{stdout}");
    assert!(stdout.contains("crashing on purpose"), "its log is shown: {stdout}");
    assert_eq!(world.running_ids("web").await, v1);
}

/// The bug issue 8 opens with: a release whose containers pass their first health
/// checks and die seconds later was reported succeeded, and became the release that
/// drift repair and rollbacks returned to.
#[tokio::test]
async fn a_release_that_crashes_seconds_after_turning_healthy_is_rolled_back_while_the_last_good_one_serves() {
    let world = World::new().await;
    world.commit(&web_watched("v1", "", "3s"), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let v1 = world.running_ids("web").await;

    // v2 is healthy within milliseconds and exits with code 3 1.5 s after it starts.
    world.commit(&web_watched("v2", "      SAMPLE_EXIT_AFTER: 1500ms\n", "3s"), "web v2 crashes after start");
    let watcher = world.watch("web");
    let deploy = world.launchway(&["deploy"]).await;
    let samples = watcher.samples().await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("is healthy after"), "it did pass its health checks first: {stdout}");
    assert!(stdout.contains("exited with code 3 during the rollout"), "{stdout}");
    assert!(stdout.contains("crashing on purpose"), "its log is shown: {stdout}");
    assert!(stdout.contains("rolled_back"), "{stdout}");

    assert_eq!(world.running_ids("web").await, v1, "the very same v1 containers serve");
    assert!(samples.len() >= 10, "the deploy was sampled ({} samples)", samples.len());
    assert!(samples.iter().all(|healthy| *healthy >= 3), "v1 served 3/3 throughout: {samples:?}");
    let runs = world.runs().await;
    assert_eq!(runs[0]["state"], "rolled_back");
    assert!(runs[0]["reason"].as_str().unwrap().contains("exited with code 3"), "{}", runs[0]["reason"]);

    // Deploying again neither redeploys the broken release nor leaves it running.
    world.launchway(&["deploy"]).await.assert_exit(5);
    assert_eq!(world.running_ids("web").await, v1);
    assert_eq!(world.runs().await.len(), runs.len(), "no new run");
}

/// With the old replicas gone (a first deploy has none to keep), the window after the
/// rollout is what catches a release that dies once it is up.
#[tokio::test]
async fn a_first_release_that_dies_inside_its_settle_window_fails_and_is_removed() {
    let world = World::new().await;
    world.commit(&web_watched("v1", "      SAMPLE_EXIT_AFTER: 1500ms\n", "4s"), "web v1 crashes after start");
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(4);
    let stdout = deploy.stdout();
    assert!(stdout.contains("watching"), "verification watched: {stdout}");
    assert!(stdout.contains("while it was being verified"), "{stdout}");
    assert!(stdout.contains("there is no earlier release to roll back to, so its replicas were removed"), "{stdout}");
    assert!(world.live("web").await.replicas.is_empty(), "nothing half-deployed is left");
    let status = world.launchway(&["status", "--output", "json"]).await;
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).expect("JSON");
    assert!(status[0]["deployment"].is_null(), "no release ever became current: {status:#}");
}

#[tokio::test]
async fn a_release_that_is_not_healthy_in_time_is_rolled_back_with_the_reason() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let v1 = world.running_ids("web").await;

    let slow = web("v2", "      SAMPLE_START_DELAY: 60s\n")
        .replace("{max_surge: 1, max_unavailable: 0}", "{max_surge: 1, max_unavailable: 0, timeout: 2s}")
        .replace("start_interval: 50ms", "start_interval: 50ms\n      start_period: 60s");
    world.commit(&slow, "web v2 never ready");
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(5);
    let stdout = deploy.stdout();
    assert!(stdout.contains("the rollout did not finish within 2s: 0 of 3 new replicas healthy"), "{stdout}");
    assert!(stdout.contains("starting slowly"), "the slow replica's log is shown: {stdout}");
    assert_eq!(world.running_ids("web").await, v1);
}

#[tokio::test]
async fn scheduled_tasks_are_validated_and_recorded_for_their_next_run() {
    let world = World::new().await;
    let task = "
environments:
  {env}: {target: docker}
tasks:
  report:
    image: {image}
    schedule: SCHEDULE
";
    world.commit(&task.replace("SCHEDULE", "'0 3 * * *'"), "nightly report");
    let first = world.launchway(&["deploy"]).await;
    first.assert_exit(0);
    assert!(first.stdout().contains("task definition"), "{}", first.stdout());
    assert!(world.live("report").await.replicas.is_empty(), "a task runs on its schedule, not at deploy");

    world.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(world.runs().await.len(), 1, "unchanged: no second run");

    world.commit(&task.replace("SCHEDULE", "rate(1 hour)"), "hourly report");
    let plan = world.launchway(&["plan"]).await;
    plan.assert_exit(0);
    assert!(plan.stdout().contains("~ schedule: 0 3 * * * → rate(1 hour)"), "{}", plan.stdout());
    world.launchway(&["deploy"]).await.assert_exit(0);
    let runs = world.runs().await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["state"], "succeeded");
}

#[tokio::test]
async fn sigterm_stops_a_deploy_at_the_next_step_boundary_and_the_next_deploy_finishes_it() {
    let world = World::new().await;
    world.commit(&web("v1", ""), "web v1");
    world.launchway(&["deploy"]).await.assert_exit(0);

    world.commit(&web("v2", "      SAMPLE_START_DELAY: 500ms\n"), "web v2");
    let mut child =
        world.command(&["deploy"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("launchway starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("a line");
            let started = line.contains("• started web-");
            seen.push(line);
            if started {
                let terminated = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("kill runs");
                assert!(terminated.success());
                break;
            }
        }
        seen.extend(lines.map_while(Result::ok));
        let output = child.wait_with_output().expect("launchway exits");
        (output.status, seen.join("\n"), String::from_utf8_lossy(&output.stderr).into_owned())
    })
    .await
    .expect("the reader finishes");
    assert_eq!(status.code(), Some(1), "{stdout}");
    // Said once, as an error: no log line beside it (issue 21, item 13).
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(stdout.contains("✓ deploy"), "the step under way was finished: {stdout}");
    assert!(!stdout.contains("✓ verify"), "the next one was not started: {stdout}");

    let runs = world.runs().await;
    assert_eq!(runs[0]["state"], "verifying", "stopped at the boundary, persisted");
    assert!(runs[0]["lease_owner"].is_null(), "the lease was given up");
    let resumed = world.launchway(&["deploy"]).await;
    resumed.assert_exit(0);
    assert!(resumed.stdout().contains("resuming interrupted run"), "{}", resumed.stdout());
    assert_eq!(world.runs().await[0]["state"], "succeeded");
}

#[tokio::test]
async fn an_app_removed_from_the_manifest_is_reported_and_left_running() {
    let world = World::new().await;
    let both = "
environments:
  {env}: {target: docker}
services:
  web: {image: {image}, port: 8080, settle_window: 300ms}
  api: {image: {image}, port: 8080, settle_window: 300ms}
";
    world.commit(both, "web and api");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let api = world.running_ids("api").await;

    world.commit(&both.replace("  api: {image: {image}, port: 8080, settle_window: 300ms}\n", ""), "drop api");
    let plan = world.launchway(&["plan"]).await;
    plan.assert_exit(0);
    assert!(plan.stdout().contains("? api@"), "{}", plan.stdout());
    assert!(plan.stdout().contains("not in the manifest"), "{}", plan.stdout());
    world.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(world.running_ids("api").await, api, "left running");
}

#[tokio::test]
async fn a_config_repo_given_by_url_is_mirrored_and_followed() {
    let world = World::new().await;
    let cache = tempfile::tempdir().expect("cache dir");
    let url = world.repo.file_url();
    let deploy = |args: &'static [&'static str]| {
        let mut command = world.command(args);
        command.env("LAUNCHWAY_REPO", &url).env("XDG_CACHE_HOME", cache.path());
        tokio::task::spawn_blocking(move || command.output().expect("launchway runs"))
    };
    world.commit(&web("v1", ""), "web v1");
    let first = deploy(&["deploy"]).await.expect("finishes");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stdout));
    world.commit(&web("v2", ""), "web v2");
    let second = deploy(&["deploy"]).await.expect("finishes");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stdout));
    assert!(String::from_utf8_lossy(&second.stdout).contains("\"web v2\""), "the new commit was fetched");
    for answer in world.answers("web").await {
        assert!(answer.starts_with("v2 ("), "{answer}");
    }
    let mirrors: Vec<_> = std::fs::read_dir(cache.path().join("launchway/repos")).expect("mirrors").collect();
    assert_eq!(mirrors.len(), 1, "one bare mirror, no work tree");
}
