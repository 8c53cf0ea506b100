//! Answers that stay true off the happy path (issue 21), end to end through the binary,
//! a real git repo, SQLite and the local Docker engine: a chain of dependencies behind an
//! approval, `status` after a CI publication, `status` of a repo that is not there.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{IMAGE, World};

/// Three migrations, each depending on the one before, in an environment that needs an
/// approval for every run.
const CHAIN: &str = "
environments:
  {env}: {target: docker, approval: true}
tasks:
  a:
    image: {image}
    run: on_deploy
    env: {SAMPLE_MESSAGE: a, SAMPLE_EXIT_AFTER: 50ms, SAMPLE_EXIT_CODE: '0'}
  b:
    image: {image}
    run: on_deploy
    depends_on: [a]
    env: {SAMPLE_MESSAGE: b, SAMPLE_EXIT_AFTER: 50ms, SAMPLE_EXIT_CODE: '0'}
  c:
    image: {image}
    run: on_deploy
    depends_on: [b]
    env: {SAMPLE_MESSAGE: c, SAMPLE_EXIT_AFTER: 50ms, SAMPLE_EXIT_CODE: '0'}
";

/// Issue 21, item 1: `deploy` of a chain behind an approval never exited; after an
/// approval the next one printed "resuming run 3" a thousand times, and the audit log
/// filled with resumptions. Each command now ends, says what waits for what once, and
/// an approval carries the chain as far as the next approval.
#[tokio::test]
async fn a_chain_of_dependencies_behind_an_approval_waits_and_moves_one_approval_at_a_time() {
    let world = World::new().await;
    world.commit(CHAIN, "a, b after a, c after b");
    let first = world.launchway_within(&["deploy"], Duration::from_secs(120)).await;
    first.assert_exit(6);
    let out = first.stdout();
    assert!(out.contains("waits for approval: `launchway approve 1`"), "{out}");
    assert_no_line_repeats(&out);

    // Deploying again changes nothing and says who waits for what.
    let again = world.launchway_within(&["deploy"], Duration::from_secs(120)).await;
    again.assert_exit(6);
    let out = again.stdout();
    assert!(
        out.contains(
            "run 3 waits for b's run 2, which waits for a's run 1, which waits for approval: `launchway approve 1`"
        ),
        "{out}"
    );
    assert!(!out.contains("resuming"), "{out}");
    assert_no_line_repeats(&out);

    // Approved, a runs, and b moves on to its own approval, which c then waits for.
    let approved = world.launchway_within(&["approve", "1", "--as", "bob@example.com"], Duration::from_secs(120)).await;
    approved.assert_exit(6);
    assert_no_line_repeats(&approved.stdout());
    let runs = world.runs().await;
    let state = |app: &str| runs.iter().find(|run| run["app"] == app).unwrap()["state"].clone();
    assert_eq!(
        (state("a"), state("b"), state("c")),
        ("succeeded".into(), "awaiting_approval".into(), "pending".into())
    );
    let then = world.launchway_within(&["deploy"], Duration::from_secs(120)).await;
    then.assert_exit(6);
    assert!(then.stdout().contains("run 3 waits for b's run 2, which waits for approval: `launchway approve 2`"));
    assert_no_line_repeats(&then.stdout());

    let approved = world.launchway_within(&["approve", "2", "--as", "bob@example.com"], Duration::from_secs(120)).await;
    approved.assert_exit(6);
    let approved = world.launchway_within(&["approve", "3", "--as", "bob@example.com"], Duration::from_secs(120)).await;
    approved.assert_exit(0);
    let runs = world.runs().await;
    assert!(runs.iter().all(|run| run["state"] == "succeeded"), "{runs:#?}");
    assert_eq!(runs.len(), 3, "one run each");
    let audit = world.launchway(&["audit", "--output", "json", "--limit", "1000"]).await;
    let mut audit: Vec<Value> = serde_json::from_str(&audit.stdout()).expect("JSON");
    audit.sort_by_key(|event| event["id"].as_i64());
    // A run is resumed when it can move (its approval decided, or its dependency's), and
    // then moves: never resumed only to park again.
    for run in 1..=3 {
        let kinds: Vec<&str> =
            audit.iter().filter(|event| event["run_id"] == run).map(|event| event["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"run.succeeded"), "run {run}: {kinds:?}");
        for pair in kinds.windows(2) {
            assert!(!(pair[0] == "run.resumed" && pair[1] == "run.resumed"), "run {run}: {kinds:?}");
        }
        let resumed = kinds.iter().filter(|kind| **kind == "run.resumed").count();
        assert!(resumed <= 2, "run {run} resumed {resumed} times: {kinds:?}");
    }
}

/// Issue 21, item 2: after `release publish` deployed CI's images, `status` said "out of
/// sync (wants <the manifest's revision>)", although nothing would deploy. Status now
/// compares with what would deploy: the manifest with the publication applied.
#[tokio::test]
async fn status_is_in_sync_once_a_publication_is_deployed() {
    let world = World::new().await;
    let published = format!("{}-published", IMAGE.replace(':', "-"));
    let published = format!("{published}:ci");
    let tagged = std::process::Command::new("docker").args(["tag", IMAGE, &published]).status().expect("docker");
    assert!(tagged.success());
    world.commit(
        "
environments:
  {env}: {target: docker}
services:
  web:
    image: {image}
    port: 8080
    health: {path: /healthz}
    settle_window: 200ms
",
        "web",
    );
    world.launchway(&["deploy"]).await.assert_exit(0);
    let file = world.db.path().join("imagedefinitions.json");
    std::fs::write(&file, format!(r#"[{{"name": "web", "imageUri": "{published}"}}]"#)).unwrap();
    let env = world.env.clone();
    world
        .launchway(&["release", "publish", "--app", "web", "--env", &env, "--file", file.to_str().unwrap()])
        .await
        .assert_exit(0);
    let live = world.live("web").await;
    assert!(live.replicas.iter().all(|replica| replica.containers[0].image == published), "CI's image runs");

    let status = world.launchway(&["status", "--output", "json"]).await;
    status.assert_exit(0);
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status[0]["sync"], "in_sync", "{status:#}");
    assert_eq!(status[0]["desired_revision"], status[0]["current_release"]["revision"]);
    let text = world.launchway(&["status"]).await;
    assert!(text.stdout().contains("in sync"), "{}", text.stdout());
    assert!(world.launchway(&["deploy"]).await.stdout().contains("nothing to deploy"), "and deploy agrees");

    // A change of the manifest beside it is out of sync, saying what a deploy would do.
    world.commit(
        "
environments:
  {env}: {target: docker}
services:
  web:
    image: {image}
    port: 8080
    replicas: 2
    health: {path: /healthz}
    settle_window: 200ms
",
        "web on two replicas",
    );
    let status = world.launchway(&["status", "--output", "json"]).await;
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status[0]["sync"], "out_of_sync");
    assert!(status[0]["sync_reason"].as_str().unwrap().starts_with("rolling update of 2 replicas"), "{status:#}");
    let _ = std::process::Command::new("docker").args(["rmi", &published]).output();
}

/// Issue 21, item 4: `status --repo /does/not/exist` printed every app with sync
/// "unknown", no message, and exit 0.
#[tokio::test]
async fn status_of_a_repo_that_cannot_be_read_says_why_and_fails() {
    let world = World::new().await;
    let nowhere = world.db.path().join("does-not-exist");
    let nowhere = nowhere.to_str().unwrap();

    // Nothing deployed yet: the repo's own error.
    let empty = world.launchway(&["status", "--repo", nowhere]).await;
    empty.assert_exit(1);
    assert!(empty.stderr().contains("could not open the config repo"), "{}", empty.stderr());

    world.commit(&crate_web(), "web");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let status = world.launchway(&["status", "--repo", nowhere]).await;
    status.assert_exit(1);
    assert!(status.stdout().contains("unknown"), "{}", status.stdout());
    let stderr = status.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "said once: {errors:?}");
    assert!(errors[0].contains("could not open the config repo"), "{errors:?}");
    let json = world.launchway(&["status", "--repo", nowhere, "--output", "json"]).await;
    json.assert_exit(1);
    let json: Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(json[0]["sync"], "unknown");
    assert!(json[0]["sync_reason"].as_str().unwrap().contains("could not open the config repo"), "{json:#}");
    assert_eq!(json[0]["health"]["state"], "healthy", "what runs is still read");
}

fn crate_web() -> String {
    "
environments:
  {env}: {target: docker}
services:
  web:
    image: {image}
    port: 8080
    settle_window: 200ms
"
    .to_owned()
}

/// No line of a command's output comes twice (issue 21: "no command loops on its own
/// output").
#[track_caller]
fn assert_no_line_repeats(output: &str) {
    let mut seen = std::collections::BTreeSet::new();
    // A plan's lines under each app (`+ run: on_deploy`) may be the same for two apps.
    let plan_line = |line: &str| ["+ ", "~ ", "- ", "("].iter().any(|marker| line.starts_with(marker));
    for line in output.lines().map(str::trim).filter(|line| !line.is_empty() && !plan_line(line)) {
        assert!(seen.insert(line.to_owned()), "repeated: {line:?}\n{output}");
    }
}
