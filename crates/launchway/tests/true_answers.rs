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
    world.commit(&plain_web(""), "web");
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
    world.commit(&plain_web("    replicas: 2\n"), "web on two replicas");
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

    world.commit(&plain_web(""), "web");
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

/// One web service with a health check in this world's environment; `more` are more
/// lines of its settings (indented by four).
fn plain_web(more: &str) -> String {
    format!(
        "
environments:
  {{env}}: {{target: docker}}
services:
  web:
    image: {{image}}
    port: 8080
    health: {{path: /healthz}}
    settle_window: 200ms
{more}"
    )
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

/// web in an environment needing approval, answering `message`, with `notifications`
/// (YAML, or empty) after it.
fn approved_web(message: &str, notifications: &str) -> String {
    format!(
        "
environments:
  {{env}}: {{target: docker, approval: true}}
services:
  web:
    image: {{image}}
    port: 8080
    env: {{SAMPLE_MESSAGE: {message}}}
    stop_grace_period: 1s
    settle_window: 200ms
{notifications}"
    )
}

/// The `event` of each webhook call, in order.
fn events_heard(receiver: &support::server::Receiver) -> Vec<String> {
    receiver.bodies().iter().map(|body| body["event"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Issue 21, items 6 and 8: a rejected run was never announced (its Slack message kept
/// live buttons), and a rollback to a release whose commit predated the `notifications:`
/// section notified no one. Who hears what is the config as it is now, and a run that
/// ends without deploying says so.
#[tokio::test]
async fn rejections_and_rollbacks_to_old_commits_are_announced_to_whom_the_config_names_now() {
    let world = World::new().await;
    let hook = support::server::Receiver::start(200).await;
    let chat = support::server::Receiver::start(200).await;
    let notifications = format!(
        "notifications:\n  - webhook: {}\n    events: [started, approval_needed, succeeded, rejected]\n  - slack: {}\n",
        hook.url, chat.url
    );
    world.commit(&approved_web("v1", ""), "web v1, before anyone is told");
    world.launchway(&["deploy"]).await.assert_exit(6);
    world.launchway(&["approve", "1", "--as", "bob@example.com"]).await.assert_exit(0);
    assert!(hook.bodies().is_empty(), "nobody to tell yet");

    world.commit(&approved_web("v2", &notifications), "web v2, and tell people");
    world.launchway(&["deploy"]).await.assert_exit(6);
    assert_eq!(events_heard(&hook), ["started", "approval_needed"]);
    world.launchway(&["reject", "2", "--as", "bob@example.com", "--comment", "not today"]).await.assert_exit(0);
    assert_eq!(events_heard(&hook), ["started", "approval_needed", "rejected"]);
    let rejected = hook.bodies().last().unwrap().clone();
    assert_eq!(rejected["actor"], "bob@example.com", "{rejected:#}");
    assert!(rejected["headline"].as_str().unwrap().contains("rejected by bob@example.com"), "{rejected:#}");
    let told = chat.bodies().last().unwrap()["text"].as_str().unwrap().to_owned();
    assert!(told.starts_with("🚫"), "chat hears it too: {told}");

    // v2 again, approved; then rolled back to release 1, whose commit had no
    // notifications: the config now has them, so the rollback is announced.
    world.launchway(&["deploy", "--retry"]).await.assert_exit(6);
    world.launchway(&["approve", "3", "--as", "bob@example.com"]).await.assert_exit(0);
    world.launchway(&["rollback", "--app", "web", "--as", "carol@example.com"]).await.assert_exit(0);
    let rolled_back = hook.bodies().last().unwrap().clone();
    assert_eq!(rolled_back["event"], "succeeded");
    assert_eq!(rolled_back["kind"], "rollback", "{rolled_back:#}");
}

/// Issue 21, item 7: a run that found nothing to change announced its start (a commit
/// status went "pending") and never its end. Whoever heard the start hears the end.
#[tokio::test]
async fn a_run_that_changes_nothing_ends_for_whoever_heard_it_start() {
    let world = World::new().await;
    let hook = support::server::Receiver::start(200).await;
    let quiet = support::server::Receiver::start(200).await;
    world.commit(
        &format!(
            "
environments:
  {{env}}: {{target: docker}}
services:
  web:
    image: {{image}}
    port: 8080
    settle_window: 200ms
notifications:
  - webhook: {}
    events: [started, succeeded]
  - webhook: {}
",
            hook.url, quiet.url
        ),
        "web",
    );
    world.launchway(&["deploy"]).await.assert_exit(0);
    assert_eq!(events_heard(&hook), ["started", "succeeded"]);
    assert_eq!(events_heard(&quiet), ["succeeded"]);

    // A second database finds web running as the manifest asks: its run changes
    // nothing, and says so to whoever heard it start; the rest hear nothing of it.
    let fresh = tempfile::tempdir().unwrap();
    let mut command = world.command(&["deploy"]);
    command.env("LAUNCHWAY_DB", fresh.path().join("launchway.db"));
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    support::Run { output }.assert_exit(0);
    assert_eq!(events_heard(&hook), ["started", "succeeded", "started", "succeeded"]);
    let ended = hook.bodies().last().unwrap().clone();
    assert_eq!(ended["notification"]["nothing_changed"], true, "{ended:#}");
    assert!(ended["headline"].as_str().unwrap().contains("nothing to change"), "{ended:#}");
    assert_eq!(events_heard(&quiet), ["succeeded"], "a run that changed nothing is not news to the others");
}

/// Issue 21, item 9: one user's hour of work showed three identities (`cli deploy by
/// unknown@vm`, `pinned by alice (cli rollback by unknown@vm)`, tokens by the machine's
/// global git email), and a promotion was a "deploy" in history. The identity is `--as`
/// (`LAUNCHWAY_USER`), else git's user.email as the config repo sees it, everywhere.
#[tokio::test]
async fn one_identity_for_everything_a_user_does_from_the_cli() {
    let world = World::new().await;
    // GitRepo sets user.email author@example.com in the repo's own config.
    world.commit(&plain_web("    env: {SAMPLE_MESSAGE: v1}\n"), "v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.commit(&plain_web("    env: {SAMPLE_MESSAGE: v2}\n"), "v2");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.launchway(&["rollback", "--app", "web"]).await.assert_exit(0);
    // An empty LAUNCHWAY_SERVER (a script that sets it for some calls) is no server:
    // the token is made locally, not refused for want of a token.
    let mut create =
        world.command(&["token", "create", "--name", "laptop", "--subject", "dana@example.com", "--role", "viewer"]);
    create.env("LAUNCHWAY_SERVER", "");
    let output = tokio::task::spawn_blocking(move || create.output()).await.unwrap().unwrap();
    support::Run { output }.assert_exit(0);

    let runs = world.runs().await;
    let triggers: Vec<&str> = runs.iter().map(|run| run["trigger"].as_str().unwrap()).collect();
    assert_eq!(
        triggers,
        ["cli rollback by author@example.com", "cli deploy by author@example.com", "cli deploy by author@example.com"]
    );
    let status = world.launchway(&["status", "--output", "json"]).await;
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status[0]["deployment"]["pin"]["by"], "author@example.com", "{status:#}");
    let audit = world.launchway(&["audit", "--output", "json", "--limit", "1000"]).await;
    let audit: Vec<Value> = serde_json::from_str(&audit.stdout()).unwrap();
    let created = audit.iter().find(|event| event["kind"] == "token.created").expect("audited");
    assert_eq!(created["data"]["by"], "author@example.com", "{created:#}");
    let everything = audit.iter().map(|event| event.to_string()).collect::<String>();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert!(host.trim().is_empty() || !everything.contains(&format!("@{}", host.trim())), "no host name anywhere");

    // --as (or LAUNCHWAY_USER) is who you say you are, for every command.
    world.launchway(&["unpin", "--app", "web", "--as", "erin@example.com"]).await.assert_exit(0);
    let audit = world.launchway(&["audit", "--output", "json", "--limit", "1"]).await;
    let audit: Vec<Value> = serde_json::from_str(&audit.stdout()).unwrap();
    assert_eq!(audit[0]["data"]["by"], "erin@example.com", "{audit:#?}");
}

/// Issue 21, item 6: Slack kept its "Review and approve" message, buttons live, after
/// the run was rejected elsewhere. A Slack app's approval message is edited once the run
/// is decided, wherever (here the CLI), or ends undecided (superseded, expired).
#[tokio::test]
async fn a_slack_apps_approval_message_is_brought_up_to_date_when_decided_elsewhere() {
    let world = World::new().await;
    let slack = launchway_testkit::FakeForge::start().await;
    let notifications = format!(
        "notifications:\n  - slack: {{token: env:TEST_SLACK_TOKEN, channel: C0123, api_url: {}/api}}\n",
        slack.url
    );
    let launchway = async |args: &[&str]| {
        let mut command = world.command(args);
        command.env("TEST_SLACK_TOKEN", "xoxb-test").env("LAUNCHWAY_PUBLIC_URL", "http://launchway.example");
        let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
        support::Run { output }
    };
    world.commit(&approved_web("v1", &notifications), "web v1");
    launchway(&["deploy"]).await.assert_exit(6);
    let asked = slack.requests();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].path, "/api/chat.postMessage");
    assert!(asked[0].body["blocks"].to_string().contains("Review and approve"));

    launchway(&["reject", "1", "--as", "bob@example.com"]).await.assert_exit(0);
    let requests = slack.requests();
    let edit = requests.iter().find(|request| request.path == "/api/chat.update").expect("the message was edited");
    assert_eq!(edit.body["ts"], "1.000100", "the message asking");
    let blocks = edit.body["blocks"].to_string();
    assert!(blocks.contains("Rejected by bob@example.com") && !blocks.contains("Review and approve"), "{blocks}");
    let told = requests.iter().filter(|request| request.path == "/api/chat.postMessage").count();
    assert_eq!(told, 2, "and the rejection said as a message of its own");

    // A newer change supersedes the next one while it waits: its message says so.
    world.commit(&approved_web("v2", &notifications), "v2");
    launchway(&["deploy"]).await.assert_exit(6);
    world.commit(&approved_web("v3", &notifications), "v3");
    launchway(&["deploy"]).await.assert_exit(6);
    let runs = world.runs().await;
    assert_eq!(runs[1]["state"], "rejected", "{runs:#?}");
    assert!(runs[1]["reason"].as_str().unwrap().starts_with("superseded by revision"), "{runs:#?}");
    let edits: Vec<_> = slack.requests().into_iter().filter(|request| request.path == "/api/chat.update").collect();
    assert_eq!(edits.len(), 2, "{edits:#?}");
    assert!(
        edits[1].body["blocks"].to_string().contains("Not deployed: superseded by revision"),
        "{:#}",
        edits[1].body
    );
}
