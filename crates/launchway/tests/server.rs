//! `launchway server` end to end: the real binary serving real HTTP on 127.0.0.1, a
//! real git repo, SQLite, and the local Docker engine.

mod support;

use std::time::{Duration, Instant};

use launchway_target::Target;
use serde_json::{Value, json};
use support::World;
use support::server::{
    Api, Receiver, ServerProcess, WEBHOOK_SECRET, github_push, token, unused_local_address, web_manifest,
};

/// One service in one environment, fed by `source` (`branch: dev`, `approval: true`…).
fn web(source: &str) -> String {
    web_manifest(source, 1)
}

fn run_ids(runs: &[Value]) -> Vec<i64> {
    runs.iter().map(|run| run["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn webhooks_that_do_not_verify_get_401_and_start_nothing_and_redeliveries_start_one_run() {
    let world = World::new().await;
    world.commit(&web("branch: dev"), "web follows the dev branch");
    let server = ServerProcess::start(&world);
    let viewer = Api::new(&server, Some(&token(&world, "viewer", "ops@example.com", &[]).await));
    assert_eq!(viewer.get("/api/v1/runs").await.body, json!([]), "no dev branch yet, nothing to deploy");

    world.repo.git(&["checkout", "--quiet", "-b", "dev"]);
    world.repo.write("README.md", "dev");
    let commit = world.repo.commit("first dev change");
    let body = github_push("refs/heads/dev", &commit);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let hook = |provider: &str| http.post(server.url(&format!("/hooks/{provider}"))).body(body.clone());

    let signed_with = |secret: &str| launchway_server::hooks::github_signature(secret, &body);
    for refused in [
        hook("github").header("x-hub-signature-256", signed_with("wrong")).header("x-github-delivery", "d-0"),
        hook("github").header("x-github-delivery", "d-0"),
        hook("gitlab").header("x-gitlab-token", "wrong").header("x-gitlab-event", "Push Hook"),
        hook("gitlab").header("x-gitlab-event", "Push Hook"),
    ] {
        let response = refused.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"].as_str().is_some(), "{answer}");
    }
    assert_eq!(viewer.get("/api/v1/runs").await.body, json!([]), "nothing started");

    let good =
        || hook("github").header("x-hub-signature-256", signed_with(WEBHOOK_SECRET)).header("x-github-event", "push");
    let first: Value = good().header("x-github-delivery", "d-1").send().await.unwrap().json().await.unwrap();
    assert_eq!(first["status"], "reconciled", "{first}");
    assert_eq!(first["runs"][0]["decision"], "started", "{first}");
    let run = first["runs"][0]["run"].as_i64().unwrap();

    // The same delivery again, and another delivery of the same push.
    let again: Value = good().header("x-github-delivery", "d-1").send().await.unwrap().json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    let other: Value = good().header("x-github-delivery", "d-2").send().await.unwrap().json().await.unwrap();
    assert_ne!(other["runs"][0]["decision"], "started", "{other}");

    viewer.wait_for_run(run, &["succeeded"]).await;
    let runs = viewer.get("/api/v1/runs").await.body;
    assert_eq!(run_ids(runs.as_array().unwrap()), [run], "one run for one change");
    let audit = viewer.get("/api/v1/audit?limit=1000").await.body;
    let count = |kind: &str| audit.as_array().unwrap().iter().filter(|event| event["kind"] == kind).count();
    assert_eq!(count("webhook.refused"), 4);
    assert_eq!(count("webhook.accepted"), 2);
    assert_eq!(count("webhook.duplicate"), 1);
    assert_eq!(world.running_ids("web").await.len(), 1);
}

#[tokio::test]
async fn each_role_may_do_what_it_is_for_and_nothing_more() {
    let world = World::new().await;
    world.commit(&web("approval: true"), "web, approved by hand");
    let server = ServerProcess::start(&world);
    let env = world.env.clone();
    let viewer = Api::new(&server, Some(&token(&world, "viewer", "viewer@example.com", &[]).await));
    let deployer = Api::new(&server, Some(&token(&world, "deployer", "deployer@example.com", &[]).await));
    let approver = Api::new(&server, Some(&token(&world, "approver", "approver@example.com", &[]).await));
    let admin = Api::new(&server, Some(&token(&world, "admin", "admin@example.com", &[]).await));
    let ci_scope = [("--app", "web"), ("--env", env.as_str())];
    let ci = Api::new(&server, Some(&token(&world, "ci-publisher", "ci-publisher@example.com", &ci_scope).await));
    let nobody = Api::new(&server, None);
    let forged = Api::new(&server, Some("lw_000000000000_0000"));

    let runs = viewer.wait_for_runs("", |runs| runs.iter().any(|run| run["state"] == "awaiting_approval")).await;
    let waiting = runs[0]["id"].as_i64().unwrap();
    let publication = json!({"app": "web", "env": env, "file": [{"name": "web", "imageUri": support::IMAGE}]});
    let other_env = json!({"app": "web", "env": "elsewhere", "file": {"ImageURI": support::IMAGE}});

    // (who, method, path, body, expected status)
    let cases: Vec<(&Api, &str, String, Value, u16)> = vec![
        (&nobody, "GET", "/api/v1/runs".into(), Value::Null, 401),
        (&forged, "GET", "/api/v1/runs".into(), Value::Null, 401),
        (&ci, "GET", "/api/v1/runs".into(), Value::Null, 403),
        (&ci, "GET", "/api/v1/audit".into(), Value::Null, 403),
        (&ci, "POST", format!("/api/v1/runs/{waiting}/approve"), json!({}), 403),
        (&ci, "POST", "/api/v1/sync".into(), json!({}), 403),
        (&ci, "POST", "/api/v1/rollback".into(), json!({"app": "web", "env": env}), 403),
        (&ci, "GET", "/api/v1/tokens".into(), Value::Null, 403),
        (&ci, "POST", "/api/v1/releases".into(), other_env.clone(), 403),
        (&viewer, "GET", "/api/v1/runs".into(), Value::Null, 200),
        (&viewer, "GET", "/api/v1/dora".into(), Value::Null, 200),
        (&viewer, "POST", "/api/v1/sync".into(), json!({}), 403),
        (&viewer, "POST", "/api/v1/releases".into(), publication.clone(), 403),
        (&deployer, "POST", format!("/api/v1/runs/{waiting}/approve"), json!({}), 403),
        (&deployer, "POST", "/api/v1/sync".into(), json!({}), 200),
        (&deployer, "GET", "/api/v1/tokens".into(), Value::Null, 403),
        (&approver, "GET", "/api/v1/tokens".into(), Value::Null, 403),
        (&admin, "GET", "/api/v1/tokens".into(), Value::Null, 200),
    ];
    for (who, method, path, body, expected) in cases {
        let answer = if method == "GET" { who.get(&path).await } else { who.post(&path, body.clone()).await };
        assert_eq!(answer.status, expected, "{method} {path} {body}: {}", answer.body);
    }

    // The CI token publishes in its scope (the release waits for approval, like any).
    let published = ci.post("/api/v1/releases", publication).await;
    assert_eq!(published.status, 200, "{}", published.body);
    // The approver approves; the run deploys.
    let approved = approver.post(&format!("/api/v1/runs/{waiting}/approve"), json!({"comment": "ok"})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["approval"]["decided_by"], "approver@example.com");
    viewer.wait_for_run(waiting, &["succeeded"]).await;

    // A revoked token stops working at once.
    let tokens = admin.get("/api/v1/tokens").await.body;
    let viewer_id = tokens.as_array().unwrap().iter().find(|token| token["role"] == "viewer").unwrap()["id"].clone();
    let revoked = admin.delete(&format!("/api/v1/tokens/{}", viewer_id.as_str().unwrap())).await;
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(viewer.get("/api/v1/runs").await.status, 401);
    let audit = admin.get("/api/v1/audit?limit=1000").await.body;
    assert!(audit.as_array().unwrap().iter().any(|event| event["kind"] == "token.revoked"));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["kind"] == "release.published" && event["data"]["by"] == "ci-publisher@example.com")
    );
}

#[tokio::test]
async fn the_author_cannot_approve_and_a_waiting_run_survives_a_crash_of_the_server() {
    let world = World::new().await;
    // GitRepo commits as "Test Author <author@example.com>".
    world.commit(&web("approval: {expires: 1h}"), "web, approved by someone else");
    let author = token(&world, "approver", "author@example.com", &[]).await;
    let reviewer = token(&world, "approver", "bob@example.com", &[]).await;

    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&reviewer));
    let runs = api.wait_for_runs("", |runs| runs.iter().any(|run| run["state"] == "awaiting_approval")).await;
    let run = runs[0]["id"].as_i64().unwrap();
    let refused = Api::new(&server, Some(&author)).post(&format!("/api/v1/runs/{run}/approve"), json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body["error"].as_str().unwrap().contains("may not approve it"), "{}", refused.body);
    server.kill();
    assert!(world.running_ids("web").await.is_empty(), "nothing deployed while waiting");

    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&reviewer));
    let details = api.get(&format!("/api/v1/runs/{run}")).await.body;
    assert_eq!(details["run"]["state"], "awaiting_approval", "{details}");
    assert!(details["run"]["plan"]["summary"].as_str().is_some(), "the plan is kept for the approver");
    assert!(details["approval"]["expires_at"].as_i64().is_some());
    let approved = api.post(&format!("/api/v1/runs/{run}/approve"), json!({"comment": "after the restart"})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    api.wait_for_run(run, &["succeeded"]).await;
    assert_eq!(world.running_ids("web").await.len(), 1);
    let granted = api.wait_for_event(run, "approval.granted").await;
    assert_eq!(granted["message"], "approved by bob@example.com: after the restart");
    let audit = api.get("/api/v1/audit?limit=1000").await.body;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["kind"] != "approval.granted" || event["data"]["by"] == "bob@example.com"),
        "only bob approved"
    );
}

#[tokio::test]
async fn a_release_verified_in_stg_is_promoted_to_prod_once_approved_and_ci_publishes_to_stg_only() {
    let world = World::new().await;
    let (stg, prod) = (world.env_named("stg"), world.env_named("prod"));
    let manifest = "
environments:
  STG: {target: docker}
  PROD: {target: docker, promote_from: STG, approval: true}
services:
  web:
    image: {image}
    port: 8080
    replicas: 1
    stop_grace_period: 1s
    settle_window: 300ms
    overrides:
      PROD: {replicas: 2}
"
    .replace("STG", &stg)
    .replace("PROD", &prod);
    world.commit(&manifest, "web in stg, promoted to prod");
    // The image CI "built": the same bits under another tag.
    let ci_image = format!("launchway-test/sample:ci-{}", world.env);
    let (repo, tag) = ci_image.split_once(':').unwrap();
    world
        .docker
        .client()
        .tag_image(
            support::IMAGE,
            Some(bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build()),
        )
        .await
        .expect("tagged");

    let server = ServerProcess::start(&world);
    let approver = Api::new(&server, Some(&token(&world, "approver", "bob@example.com", &[]).await));
    let ci = Api::new(
        &server,
        Some(&token(&world, "ci-publisher", "ci-web", &[("--app", "web"), ("--env", &stg), ("--env", &prod)]).await),
    );

    let runs = approver
        .wait_for_runs("", |runs| {
            runs.iter().any(|run| run["env"] == prod.as_str() && run["state"] == "awaiting_approval")
        })
        .await;
    let stg_run = runs.iter().find(|run| run["env"] == stg.as_str()).unwrap();
    assert_eq!(stg_run["state"], "succeeded");
    let prod_run = runs.iter().find(|run| run["env"] == prod.as_str()).unwrap()["id"].as_i64().unwrap();
    let details = approver.get(&format!("/api/v1/runs/{prod_run}")).await.body;
    assert_eq!(
        details["release"]["source"]["origin"],
        format!("promoted from {stg} (run {})", stg_run["id"]),
        "{details}"
    );
    approver.post(&format!("/api/v1/runs/{prod_run}/approve"), json!({})).await;
    approver.wait_for_run(prod_run, &["succeeded"]).await;

    // CI publishes a new image for stg: stg deploys it, and prod gets it by promotion.
    let refused = ci.post("/api/v1/releases", json!({"app": "web", "env": prod, "file": {"ImageURI": ci_image}})).await;
    assert_eq!(refused.status, 409, "prod takes promotions only: {}", refused.body);
    let published =
        ci.post("/api/v1/releases", json!({"app": "web", "env": stg, "file": {"ImageURI": ci_image}})).await;
    assert_eq!(published.status, 200, "{}", published.body);
    let stg_ci_run = published.body["runs"][0]["run"].as_i64().expect("a run started");
    approver.wait_for_run(stg_ci_run, &["succeeded"]).await;
    let runs = approver
        .wait_for_runs("", |runs| {
            runs.iter().any(|run| run["env"] == prod.as_str() && run["state"] == "awaiting_approval")
        })
        .await;
    let second_prod =
        runs.iter().find(|run| run["env"] == prod.as_str() && run["state"] == "awaiting_approval").unwrap();
    let second_prod = second_prod["id"].as_i64().unwrap();
    // Status compares with what launchway would deploy (issue 21): stg runs CI's
    // publication, so it is in sync; prod waits for the promotion of what stg verified.
    let sync = async |env: &str| {
        let status = approver.get(&format!("/api/v1/status?env={env}")).await.body;
        (status[0]["sync"].as_str().unwrap_or_default().to_owned(), status[0]["sync_reason"].clone())
    };
    assert_eq!(sync(&stg).await.0, "in_sync");
    assert_eq!(sync(&prod).await.0, "out_of_sync");
    approver.post(&format!("/api/v1/runs/{second_prod}/approve"), json!({})).await;
    let done = approver.wait_for_run(second_prod, &["succeeded"]).await;
    assert_eq!(done["release"]["spec"]["containers"][0]["image"], ci_image.as_str(), "{}", done["release"]);

    let live = world.docker.observe(&prod, &[]).await.unwrap();
    let replicas = &live.apps["web"].replicas;
    assert_eq!(replicas.len(), 2, "prod's own replica count");
    assert!(replicas.iter().all(|replica| replica.containers[0].image == ci_image));
    assert_eq!(sync(&prod).await, ("in_sync".to_owned(), serde_json::Value::Null));
    assert_eq!(sync(&stg).await.0, "in_sync");
}

#[tokio::test]
async fn chat_hears_about_approvals_successes_and_rollbacks_and_a_failing_receiver_fails_nothing() {
    let world = World::new().await;
    let slack = Receiver::start(200).await;
    let discord = Receiver::start(204).await;
    let broken = Receiver::start(500).await;
    let manifest = |health: &str| {
        format!(
            "
environments:
  {{env}}: {{target: docker, approval: true}}
services:
  web:
    image: {{image}}
    port: 8080
    replicas: 1
    stop_grace_period: 1s
    settle_window: 300ms
    env: {{SAMPLE_HEALTH: {health}}}
    health: {{path: /healthz, interval: 1s, timeout: 500ms, start_interval: 50ms, unhealthy_threshold: 2}}
notifications:
  - slack: {}
  - webhook: {}
    events: [succeeded, failed]
  - discord: {}
    events: [rolled_back]
",
            slack.url, broken.url, discord.url
        )
    };
    world.commit(&manifest("ok"), "web v1");
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "approver", "bob@example.com", &[]).await));

    let asks =
        slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("waits for approval"))).await;
    let blocks = asks["blocks"].to_string();
    assert!(blocks.contains("*App*\\nweb") && blocks.contains(&format!("*Environment*\\n{}", world.env)), "{blocks}");
    assert!(blocks.contains("Review and approve"));
    let run = api.wait_for_runs("", |runs| !runs.is_empty()).await[0]["id"].as_i64().unwrap();
    let link = server.url(&format!("/runs/{run}"));
    assert!(blocks.contains(&format!("\"{link}\"")), "the link points at the run's page: {blocks}");
    // The page opens without a token (it asks for one and reads the API with it) and
    // allows no script but its own.
    let page = reqwest::Client::builder().no_proxy().build().unwrap().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(page.text().await.unwrap().contains(r#"<script src="/ui/app.js""#));
    assert!(broken.bodies().is_empty(), "the webhook wants successes and failures only");

    api.post(&format!("/api/v1/runs/{run}/approve"), json!({})).await;
    api.wait_for_run(run, &["succeeded"]).await;
    slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("deployed: run"))).await;
    // The failing receiver was tried, retried, and given up on; the deploy is unaffected.
    let failed = api.wait_for_event(run, "notification.failed").await;
    assert!(failed["message"].as_str().unwrap().contains("HTTP 500"), "{failed}");
    assert!(failed["data"]["attempts"].as_i64().unwrap() > 1);
    assert!(broken.bodies().len() > 1);
    api.wait_for_event(run, "notification.sent").await;

    // A release that fails its health check is rolled back, with the reason and logs.
    world.commit(&manifest("fail"), "web v2, broken");
    let synced = Api::new(&server, Some(&token(&world, "deployer", "ops@example.com", &[]).await))
        .post("/api/v1/sync", json!({}))
        .await;
    let second = synced.body["runs"][0]["run"].as_i64().expect("a run");
    api.wait_for_run(second, &["awaiting_approval"]).await;
    api.post(&format!("/api/v1/runs/{second}/approve"), json!({})).await;
    api.wait_for_run(second, &["rolled_back"]).await;
    let rolled_back =
        slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("rolled back"))).await;
    let text = rolled_back["blocks"].to_string();
    assert!(text.contains("health check"), "the reason: {text}");
    assert!(text.contains("health check failing on purpose"), "the app's own log lines: {text}");
    let embed =
        discord.wait_for(|body| body["embeds"][0]["title"].as_str().is_some_and(|t| t.contains("rolled back"))).await;
    assert!(embed["embeds"][0]["description"].as_str().unwrap().contains("health check"), "{embed}");
    assert_eq!(discord.bodies().len(), 1, "Discord wants rollbacks only");

    // DORA from this history: one good deploy, one failed change restored by its rollback.
    let dora = api.get(&format!("/api/v1/dora?env={}", world.env)).await.body;
    assert_eq!(dora[0]["deployments"], 1, "{dora}");
    assert_eq!(dora[0]["change_failure_rate"], 0.5, "{dora}");
    assert_eq!(dora[0]["unrestored_failures"], 0, "{dora}");
    assert!(dora[0]["time_to_restore_median_s"].as_f64().is_some(), "{dora}");
}

/// Issue 22, item 6: with a receiver that accepts and never answers, a working one got
/// "started" after 57.6 s and "succeeded" after 115.1 s. Each destination has its own
/// queue: a hanging one delays only itself.
#[tokio::test]
async fn a_receiver_that_never_answers_delays_no_other() {
    let world = World::new().await;
    // Accepts connections and holds them, answering nothing.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = hanging.accept().await {
            held.push(connection);
        }
    });
    let slack = Receiver::start(200).await;
    world.commit(
        &format!("{}notifications:\n  - webhook: {hanging_url}\n  - slack: {}\n", web("approval: true"), slack.url),
        "web, told to a receiver that hangs and one that works",
    );
    let started = Instant::now();
    let server = ServerProcess::start(&world);
    slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("waits for approval"))).await;
    let asked_after = started.elapsed();
    assert!(asked_after < Duration::from_secs(20), "asked after {asked_after:?}");

    let api = Api::new(&server, Some(&token(&world, "approver", "bob@example.com", &[]).await));
    let run = api.wait_for_runs("?state=awaiting_approval", |runs| !runs.is_empty()).await[0]["id"].as_i64().unwrap();
    let approved = Instant::now();
    api.post(&format!("/api/v1/runs/{run}/approve"), json!({})).await;
    slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("deployed: run"))).await;
    let told_after = approved.elapsed();
    assert!(told_after < Duration::from_secs(20), "told after {told_after:?}");
}

#[tokio::test]
async fn a_message_due_when_the_server_crashed_is_sent_when_it_starts_again() {
    let world = World::new().await;
    // Chat is down when the run asks for approval: the server retries, then is killed.
    let chat = unused_local_address();
    world.commit(
        &format!("{}notifications:\n  - slack: http://{chat}/hook\n", web("approval: true")),
        "web, approved in chat",
    );
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "viewer", "ops@example.com", &[]).await));
    let run = api.wait_for_runs("?state=awaiting_approval", |runs| !runs.is_empty()).await[0]["id"].as_i64().unwrap();
    server.kill();

    let slack = Receiver::start_at(chat, 200).await;
    let server = ServerProcess::start(&world);
    let asks =
        slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("waits for approval"))).await;
    assert!(asks["blocks"].to_string().contains(&format!("/runs/{run}")), "{asks}");
    let api = Api::new(&server, Some(&token(&world, "viewer", "ops@example.com", &[]).await));
    api.wait_for_event(run, "notification.sent").await;

    // Sent once: after a further restart the log is read on from there, so the next
    // message is the deploy's, and the approval is not announced again.
    server.kill();
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "approver", "bob@example.com", &[]).await));
    api.post(&format!("/api/v1/runs/{run}/approve"), json!({})).await;
    api.wait_for_run(run, &["succeeded"]).await;
    slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("deployed: run"))).await;
    let texts: Vec<String> = slack.bodies().iter().map(|body| body["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(texts.iter().filter(|text| text.contains("waits for approval")).count(), 1, "{texts:#?}");
}

#[tokio::test]
async fn scheduled_tasks_run_on_docker_and_each_execution_is_a_run() {
    let world = World::new().await;
    world.commit(
        "
environments:
  {env}: {target: docker}
tasks:
  report:
    image: {image}
    schedule: rate(1 hour)
    env: {SAMPLE_EXIT_AFTER: 50ms, SAMPLE_EXIT_CODE: '0'}
  broken:
    image: {image}
    schedule: '0 3 * * *'
    env: {SAMPLE_EXIT_AFTER: 50ms, SAMPLE_EXIT_CODE: '7'}
",
        "two tasks",
    );
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "deployer", "ops@example.com", &[]).await));
    api.wait_for_runs("", |runs| runs.len() == 2 && runs.iter().all(|run| run["state"] == "succeeded")).await;

    let report = api.post(&format!("/api/v1/tasks/report/{}/run", world.env), json!({})).await;
    assert_eq!(report.status, 202, "{}", report.body);
    assert_eq!(report.body["kind"], "scheduled");
    let done = api.wait_for_run(report.body["id"].as_i64().unwrap(), &["succeeded", "failed"]).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert!(done["run"]["reason"].as_str().unwrap().starts_with("exited 0 after"), "{}", done["run"]);

    let broken = api.post(&format!("/api/v1/tasks/broken/{}/run", world.env), json!({})).await;
    let done = api.wait_for_run(broken.body["id"].as_i64().unwrap(), &["succeeded", "failed"]).await;
    assert_eq!(done["run"]["state"], "failed");
    assert_eq!(done["run"]["reason"], "task broken exited with code 7");
    let logs = done["events"].as_array().unwrap().iter().find_map(|event| event["data"]["logs"].as_array()).cloned();
    assert!(logs.unwrap_or_default().iter().any(|line| line.as_str().unwrap().contains("exit code 7")), "{done}");
    // Executions leave no containers behind and change no deployment.
    assert!(world.live("report").await.replicas.is_empty());
    let status = api.get("/api/v1/status").await.body;
    assert!(status.as_array().unwrap().iter().all(|app| app["deployment"]["current_release_id"].is_i64()));
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let world = World::new().await;
    world.commit(&web("approval: true"), "web");
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "viewer", "ops@example.com", &[]).await));
    api.wait_for_runs("", |runs| !runs.is_empty()).await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(health["status"], "ok");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// The same workflow without a server: the CLI against the local database.
#[tokio::test]
async fn approvals_publications_audit_and_dora_work_from_the_cli_alone() {
    let world = World::new().await;
    world.commit(&web("approval: true"), "web, approved by hand");
    let deploy = world.launchway(&["deploy"]).await;
    deploy.assert_exit(6);
    assert!(deploy.stdout().contains("waits for approval: `launchway approve 1`"), "{}", deploy.stdout());

    // The commit's author may not approve; someone else may, and the run carries on.
    world.launchway(&["approve", "1", "--as", "author@example.com"]).await.assert_exit(1);
    let approved = world.launchway(&["approve", "1", "--as", "bob@example.com", "--comment", "ship it"]).await;
    approved.assert_exit(0);
    assert!(approved.stdout().contains("run 1 approved by bob@example.com"), "{}", approved.stdout());
    assert_eq!(world.running_ids("web").await.len(), 1);

    // CI's image file, published locally: a new release, which waits for approval too.
    let ci_image = format!("launchway-test/sample:cli-{}", world.env);
    let (repo, tag) = ci_image.split_once(':').unwrap();
    let options = bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
    world.docker.client().tag_image(support::IMAGE, Some(options)).await.expect("tagged");
    // As CodePipeline's S3 source action carries it: a zip holding imagedefinitions.json.
    let file = world.db.path().join("web-images.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("imagedefinitions.json", deflated).unwrap();
    std::io::Write::write_all(&mut zip, format!(r#"[{{"name": "web", "imageUri": "{ci_image}"}}]"#).as_bytes())
        .unwrap();
    zip.finish().unwrap();
    let published = world
        .launchway(&["release", "publish", "--app", "web", "--env", &world.env, "--file", file.to_str().unwrap()])
        .await;
    published.assert_exit(6);
    let rejected = world.launchway(&["reject", "2", "--as", "bob@example.com", "--comment", "not today"]).await;
    rejected.assert_exit(0);
    assert_eq!(world.runs().await[0]["state"], "rejected");
    assert!(world.live("web").await.replicas.iter().all(|replica| replica.containers[0].image == support::IMAGE));

    let audit = world.launchway(&["audit", "--limit", "500"]).await;
    audit.assert_exit(0);
    for expected in
        ["approval.granted", "approved by bob@example.com: ship it", "release.published", "approval.refused"]
    {
        assert!(audit.stdout().contains(expected), "{expected} missing:\n{}", audit.stdout());
    }
    let dora = world.launchway(&["dora", "--output", "json"]).await;
    dora.assert_exit(0);
    let figures: Value = serde_json::from_str(&dora.stdout()).unwrap();
    assert_eq!(figures[0]["deployments"], 1, "the rejected release is not a deployment: {figures}");

    let tag = world.launchway(&["ci", "tag", "--path", world.repo.path().to_str().unwrap(), "--length", "40"]).await;
    tag.assert_exit(0);
    assert_eq!(tag.stdout().trim(), world.repo.git(&["rev-parse", "HEAD"]).trim());
    let path = world.repo.path().to_str().unwrap();
    let tag = world.launchway(&["ci", "tag", "--path", path, "--env", "prod", "--length", "7"]).await;
    assert_eq!(tag.stdout().trim(), format!("prod-{}", &world.repo.git(&["rev-parse", "HEAD"]).trim()[..7]));
}

/// Regression (issue 8): approvals applied the author rule to whoever last committed to
/// the config repo, while the application's own author could approve their change.
#[tokio::test]
async fn the_author_of_a_published_application_change_may_not_approve_it() {
    let world = World::new().await;
    world.commit(
        "
environments:
  {env}: {target: docker, approval: true}
services:
  web:
    image: {image}
    port: 8080
    stop_grace_period: 1s
    settle_window: 300ms
",
        "web",
    );
    // The image CI "built": the same bits under another tag.
    let built = format!("launchway-test/sample:ci-author-{}", world.env);
    let (repo, tag) = built.split_once(':').unwrap();
    let options = bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
    world.docker.client().tag_image(support::IMAGE, Some(options)).await.expect("tagged");
    let server = ServerProcess::start(&world);
    let ci = Api::new(
        &server,
        Some(&token(&world, "ci-publisher", "ci-web", &[("--app", "web"), ("--env", &world.env)]).await),
    );
    let alice = Api::new(&server, Some(&token(&world, "approver", "alice@example.com", &[]).await));
    let bob = Api::new(&server, Some(&token(&world, "approver", "bob@example.com", &[]).await));
    let published = ci
        .post(
            "/api/v1/releases",
            json!({"app": "web", "env": world.env, "file": [{"name": "web", "imageUri": built}],
                   "commit": "0a1b2c3d4e5f", "author": "alice@example.com"}),
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let run = published.body["runs"][0]["run"].as_i64().expect("a run for the publication");
    alice.wait_for_run(run, &["awaiting_approval"]).await;

    let refused = alice.post(&format!("/api/v1/runs/{run}/approve"), json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body["error"].as_str().unwrap().contains("alice@example.com wrote release"), "{}", refused.body);
    let approved = bob.post(&format!("/api/v1/runs/{run}/approve"), json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    bob.wait_for_run(run, &["succeeded"]).await;

    // Published from the CLI through the server: the answer says the run waits for an
    // approval (it said "started" before it had planned).
    let again = format!("{built}-2");
    let (repo, tag) = again.split_once(':').unwrap();
    let options = bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
    world.docker.client().tag_image(support::IMAGE, Some(options)).await.expect("tagged");
    let file = world.db.path().join("imagedefinitions.json");
    std::fs::write(&file, format!(r#"[{{"name": "web", "imageUri": "{again}"}}]"#)).unwrap();
    let ci_secret = token(&world, "ci-publisher", "ci-web", &[("--app", "web"), ("--env", &world.env)]).await;
    let url = format!("http://{}", server.addr);
    let publish = [
        "--server",
        &url,
        "--token",
        &ci_secret,
        "release",
        "publish",
        "--app",
        "web",
        "--env",
        &world.env,
        "--file",
        file.to_str().unwrap(),
    ];
    let published = world.launchway(&publish).await;
    // Exit 6, as a local publication that waits for approval exits (issue 21, item 11).
    published.assert_exit(6);
    assert!(published.stdout().contains("waits for approval: `launchway approve"), "{}", published.stdout());
}

/// Issue 11: `--server` was silently ignored by status, history and rollback, which read
/// the local database. Here the local database is empty: what they show comes from the
/// server, and the rollback and unpin are the server's runs.
#[tokio::test]
async fn status_history_rollback_and_unpin_go_through_the_server_when_one_is_given() {
    let world = World::new().await;
    world.commit(&web(""), "v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.commit(&web("").replace("replicas: 1", "replicas: 2"), "v2");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let server = ServerProcess::start_with(&world, &["--log-format", "json"]);
    let secret = token(&world, "deployer", "deployer@example.com", &[]).await;
    let empty = tempfile::tempdir().unwrap();
    let empty_db = empty.path().join("elsewhere.db");
    let url = format!("http://{}", server.addr);
    let remote = |args: &[&str]| {
        let mut full = vec!["--server", &url, "--token", &secret, "--db", empty_db.to_str().unwrap()];
        full.extend_from_slice(args);
        full.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let through = async |args: &[&str]| {
        let args = remote(args);
        world.launchway(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
    };

    let status = through(&["status"]).await;
    status.assert_exit(0);
    assert!(status.stdout().contains("healthy: 2/2"), "{}", status.stdout());
    let history = through(&["history"]).await;
    history.assert_exit(0);
    assert_eq!(history.stdout().lines().count(), 3, "a heading and two runs:\n{}", history.stdout());
    let detail = through(&["history", "2"]).await;
    detail.assert_exit(0);
    assert!(detail.stdout().contains("\"v2\""), "{}", detail.stdout());

    let rollback = through(&["rollback", "--app", "web", "--reason", "v2 is slow"]).await;
    rollback.assert_exit(0);
    assert!(rollback.stdout().contains("following it"), "{}", rollback.stdout());
    assert_eq!(world.live("web").await.replicas.len(), 1, "back at v1's one replica");
    let runs = world.runs().await;
    assert_eq!((&runs[0]["kind"], &runs[0]["state"]), (&json!("rollback"), &json!("succeeded")));
    assert!(runs[0]["trigger"].as_str().unwrap().contains("deployer@example.com"), "{}", runs[0]);
    // The server logged the run's transitions, one JSON object per line.
    let transitions: Vec<Value> = server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "launchway::runs" && line["fields"]["run"] == runs[0]["id"])
        .collect();
    let states: Vec<&str> = transitions.iter().filter_map(|line| line["fields"]["state"].as_str()).collect();
    assert_eq!(states.first(), Some(&"created"), "{transitions:?}");
    assert_eq!(states.last(), Some(&"succeeded"), "{transitions:?}");
    assert!(transitions.iter().all(|line| line["fields"]["app"] == "web"), "{transitions:?}");

    let unpin = through(&["unpin", "--app", "web"]).await;
    unpin.assert_exit(0);
    assert!(unpin.stdout().contains("no longer pinned"), "{}", unpin.stdout());
    let local = world.launchway(&["--db", empty_db.to_str().unwrap(), "history"]).await;
    assert!(local.stdout().contains("no runs yet"), "the local database was never used: {}", local.stdout());
}

/// The web page's sign-in: a token becomes an HttpOnly, SameSite=Strict cookie; reads
/// work with it, a change needs the session's CSRF token as well, and bearer tokens
/// need none. A run's events stream over server-sent events until the run ends.
#[tokio::test]
async fn a_session_cookie_reads_and_changes_only_with_its_csrf_token_and_runs_stream_live() {
    let world = World::new().await;
    world.commit(&web("approval: true"), "web");
    let server = ServerProcess::start(&world);
    let secret = token(&world, "approver", "approver@example.com", &[]).await;
    let api = Api::new(&server, Some(&secret));
    let runs = api.wait_for_runs("", |runs| runs.iter().any(|run| run["state"] == "awaiting_approval")).await;
    let waiting = runs[0]["id"].as_i64().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let page = http.get(server.url("/")).send().await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(page.headers()["referrer-policy"], "same-origin");

    // Not a JSON body: a plain form from another site cannot sign anyone in.
    let form = http.post(server.url("/api/v1/session")).body(format!("token={secret}")).send().await.unwrap();
    assert_eq!(form.status(), 415);
    let wrong = http.post(server.url("/api/v1/session")).json(&json!({"token": "lw_0000_0000"})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let signed_in = http.post(server.url("/api/v1/session")).json(&json!({"token": secret})).send().await.unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["lw_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let session: Value = signed_in.json().await.unwrap();
    assert_eq!(
        (session["subject"].as_str(), session["role"].as_str()),
        (Some("approver@example.com"), Some("approver"))
    );
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    assert!(!secret.contains(&csrf), "the CSRF token is not part of the token");
    let session_cookie = cookie.split(';').next().unwrap().to_owned();

    let read = http.get(server.url("/api/v1/runs")).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(read.status(), 200, "the cookie reads");
    let approve = format!("/api/v1/runs/{waiting}/approve");
    let without =
        http.post(server.url(&approve)).header("cookie", &session_cookie).json(&json!({})).send().await.unwrap();
    assert_eq!(without.status(), 403, "no CSRF token, no change");
    let forged = http
        .post(server.url(&approve))
        .header("cookie", &session_cookie)
        .header("x-csrf-token", "0".repeat(40))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(api.get(&format!("/api/v1/runs/{waiting}")).await.body["run"]["state"], "awaiting_approval");

    // The stream, opened before the approval, carries the run to its end.
    let stream = http
        .get(server.url(&format!("/api/v1/runs/{waiting}/events")))
        .header("cookie", &session_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let approved = http
        .post(server.url(&approve))
        .header("cookie", &session_cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"comment": "from the page"}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200, "{:?}", approved.text().await);
    let body = tokio::time::timeout(std::time::Duration::from_secs(90), stream.text()).await.expect("the stream ends");
    let body = body.unwrap();
    let kinds: Vec<String> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|event| event["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run.created"), "{body}");
    for kind in ["approval.granted", "run.succeeded"] {
        assert!(kinds.iter().any(|seen| seen == kind), "{kind} not streamed: {kinds:?}");
    }
    assert!(body.trim_end().ends_with("event: end\ndata: succeeded"), "{body}");

    // Bearer tokens need no CSRF token; signing out forgets the cookie.
    assert_eq!(api.post("/api/v1/sync", json!({})).await.status, 200);
    let out = http
        .delete(server.url("/api/v1/session"))
        .header("cookie", &session_cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));

    // Issue 22, item 8: the cookie was the API token itself, so signing out left it
    // working. It is a session's id now: ended on the server, it reads nothing, and it
    // never was a token.
    let after = http.get(server.url("/api/v1/runs")).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(after.status(), 401, "the session is over");
    let value = session_cookie.split_once('=').unwrap().1;
    assert!(!value.contains(&secret) && !secret.contains(value), "the cookie holds no token");
    let as_bearer = http.get(server.url("/api/v1/runs")).bearer_auth(value).send().await.unwrap();
    assert_eq!(as_bearer.status(), 401, "a session id is no API token");
    // A session of a revoked token ends with it.
    let again = http.post(server.url("/api/v1/session")).json(&json!({"token": secret})).send().await.unwrap();
    let again = again.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(http.get(server.url("/api/v1/runs")).header("cookie", &again).send().await.unwrap().status(), 200);
    let admin = Api::new(&server, Some(&token(&world, "admin", "admin@example.com", &[]).await));
    let id = session["token_id"].as_str().unwrap().to_owned();
    assert_eq!(admin.delete(&format!("/api/v1/tokens/{id}")).await.status, 200);
    assert_eq!(http.get(server.url("/api/v1/runs")).header("cookie", &again).send().await.unwrap().status(), 401);
}

/// Slack's buttons act (issue 11): a signed press by a Slack user mapped to an
/// approver approves the run and replaces the message with who did it; a forged
/// signature, a replay of an old request, an unmapped user and a viewer change nothing.
#[tokio::test]
async fn slack_buttons_act_for_a_mapped_approver_and_nothing_else() {
    const SIGNING_SECRET: &str = "slack-signing-secret";
    let world = World::new().await;
    let slack = Receiver::start(200).await;
    let replies = Receiver::start(200).await;
    world.commit(&format!("{}notifications:\n  - slack: {}\n", web("approval: true"), slack.url), "web");
    let server = ServerProcess::start_with(
        &world,
        &[
            "--slack-signing-secret",
            SIGNING_SECRET,
            "--slack-user",
            "UAPPROVER=approver@example.com,UVIEWER=viewer@example.com",
        ],
    );
    token(&world, "approver", "approver@example.com", &[]).await;
    token(&world, "viewer", "viewer@example.com", &[]).await;
    let api = Api::new(&server, Some(&token(&world, "viewer", "watcher@example.com", &[]).await));

    let asks =
        slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("waits for approval"))).await;
    let actions = asks["blocks"].as_array().unwrap().iter().find(|block| block["type"] == "actions").unwrap().clone();
    let approve = actions["elements"].as_array().unwrap().iter().find(|b| b["action_id"] == "approve").unwrap().clone();
    assert!(actions["elements"].as_array().unwrap().iter().any(|b| b["action_id"] == "reject"), "{actions}");
    let run: i64 = approve["value"].as_str().unwrap().parse().unwrap();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let press = |user: &str, action: &str| {
        let payload = json!({
            "type": "block_actions", "user": {"id": user}, "response_url": replies.url,
            "actions": [{"action_id": action, "value": run.to_string()}], "message": asks,
        });
        format!("payload={}", url::form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>())
    };
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let send = async |body: String, timestamp: i64, secret: &str| {
        let signature = launchway_server::slack::sign(secret, &timestamp.to_string(), body.as_bytes());
        http.post(server.url("/hooks/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    assert_eq!(send(press("UAPPROVER", "approve"), now(), "not-the-secret").await, 401, "a forged signature");
    assert_eq!(send(press("UAPPROVER", "approve"), now() - 600, SIGNING_SECRET).await, 401, "a replay");
    assert_eq!(send(press("UVIEWER", "approve"), now(), SIGNING_SECRET).await, 200);
    let refused = replies.wait_for(|body| body["response_type"] == "ephemeral").await;
    assert!(refused["text"].as_str().unwrap().contains("needs the approver role"), "{refused}");
    assert_eq!(send(press("USTRANGER", "reject"), now(), SIGNING_SECRET).await, 200);
    replies.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("not mapped"))).await;
    assert_eq!(api.get(&format!("/api/v1/runs/{run}")).await.body["run"]["state"], "awaiting_approval");
    let refusals = api.get("/api/v1/audit?limit=100").await.body.to_string();
    assert!(refusals.contains("refused a Slack interaction"), "refusals are audited: {refusals}");
    // Signed presses refused for who pressed are audited too (issue 22, item 8).
    assert!(refusals.contains("refused a Slack press by USTRANGER"), "{refusals}");
    assert!(refusals.contains("needs the approver role"), "{refusals}");

    assert_eq!(send(press("UAPPROVER", "approve"), now(), SIGNING_SECRET).await, 200);
    let replaced = replies.wait_for(|body| body["replace_original"] == true).await;
    let blocks = replaced["blocks"].to_string();
    assert!(blocks.contains("Approved by approver@example.com (Slack UAPPROVER)"), "{blocks}");
    assert!(!blocks.contains("\"actions\""), "the buttons are gone: {blocks}");
    let approved = api.wait_for_run(run, &["succeeded"]).await;
    assert_eq!(approved["approval"]["decided_by"], "approver@example.com");
    // The success message offers a rollback button.
    let done = slack.wait_for(|body| body["text"].as_str().is_some_and(|text| text.contains("deployed: run"))).await;
    assert!(done["blocks"].to_string().contains("\"action_id\":\"rollback\""), "{done}");
}

/// Issue 11: a deploy from the CLI notified nobody unless a server happened to share
/// its database. Now the CLI sends what its runs are due; with a server on the same
/// database the server sends, and each message goes out once.
/// Pull requests (issue 12): opening one, and pushing to it, puts its plan on it as one
/// comment (edited, never duplicated) and a `launchway/plan` status on its head, through
/// the forge the base branch's manifest names (a fake GitHub on loopback, recording what
/// it receives).
#[tokio::test]
async fn a_pull_request_gets_its_plan_as_one_comment_updated_on_every_push() {
    let world = World::new().await;
    let forge = launchway_testkit::FakeForge::start().await;
    let manifest = |replicas| {
        format!(
            "{}notifications:\n  - github: {{repo: shop/config, token: env:LW_TEST_GITHUB_TOKEN, api_url: {}}}\n",
            web_manifest("", replicas),
            forge.url
        )
    };
    world.commit(&manifest(1), "web");
    let base = world.repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]).trim().to_owned();
    let mut command = world.command(&[]);
    command.env("LW_TEST_GITHUB_TOKEN", "ghp_pull_secret");
    let server = ServerProcess::spawn(command);
    let api = Api::new(&server, Some(&token(&world, "viewer", "viewer@example.com", &[]).await));
    api.wait_for_runs("", |runs| runs.first().is_some_and(|run| run["state"] == "succeeded")).await;

    world.repo.git(&["checkout", "--quiet", "-b", "more-replicas"]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let opened = async |action: &str, head: &str, delivery: &str| {
        let body = serde_json::to_vec(&json!({"action": action, "number": 7,
            "pull_request": {"head": {"sha": head}, "base": {"ref": base}}}))
        .unwrap();
        let signature = launchway_server::hooks::github_signature(WEBHOOK_SECRET, &body);
        let response = http
            .post(server.url("/hooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    };
    let comments = "/repos/shop/config/issues/7/comments";
    let first = world.commit(&manifest(2), "two replicas");
    opened("opened", &first, "pr-1").await;
    let requests = forge.wait_for(|requests| requests.iter().any(|r| r.method == "POST" && r.path == comments)).await;
    let at = requests.iter().position(|r| r.method == "POST" && r.path == comments).unwrap();
    let posted = &requests[at];
    // The fake numbers what it keeps by the order it received it.
    let comment_id = at + 1;
    assert_eq!(posted.headers["authorization"], "Bearer ghp_pull_secret");
    let text = posted.body["body"].as_str().unwrap();
    assert!(text.contains(launchway_server::pulls::MARKER), "{text}");
    assert!(text.contains(&format!("**{}**: 1 app would change", world.env)), "{text}");
    assert!(text.contains("~ replicas: 1 → 2"), "the change, against what runs: {text}");
    let status = format!("/repos/shop/config/statuses/{first}");
    let status = forge.wait_for(|requests| requests.iter().any(|r| r.path == status)).await;
    let status = status.iter().find(|r| r.body["context"] == "launchway/plan").expect("a plan status");
    assert_eq!(status.body["state"], "success");

    // Another push to the request: the same comment, edited.
    let second = world.commit(&manifest(3), "three replicas");
    opened("synchronize", &second, "pr-2").await;
    let requests = forge.wait_for(|requests| requests.iter().any(|r| r.method == "PATCH")).await;
    let edited = requests.iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(edited.path, format!("/repos/shop/config/issues/comments/{comment_id}"), "the comment first posted");
    assert!(edited.body["body"].as_str().unwrap().contains("~ replicas: 1 → 3"), "{:?}", edited.body);
    let created = requests.iter().filter(|r| r.method == "POST" && r.path == comments).count();
    assert_eq!(created, 1, "one comment, never two");
    assert_eq!(api.get("/api/v1/runs").await.body.as_array().unwrap().len(), 1, "a request deploys nothing");

    // Issue 22, item 4: the request's own manifest chose what the server contacted while
    // planning it (a Docker host named in the head, a repository in its build.source).
    // Listeners stand for both: nothing reaches them.
    let contacted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push(listener.local_addr().unwrap());
        let contacted = contacted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                contacted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let edits = |requests: &[launchway_testkit::ForgeRequest]| requests.iter().filter(|r| r.method == "PATCH").count();
    let elsewhere =
        manifest(2).replace("{target: docker", &format!("{{target: {{docker: {{host: 'tcp://{}'}}}}", listeners[0]));
    let third = world.commit(&elsewhere, "run it on another host");
    opened("synchronize", &third, "pr-3").await;
    let requests = forge.wait_for(|requests| edits(requests) >= 2).await;
    let text = requests.iter().rev().find(|r| r.method == "PATCH").unwrap().body["body"].as_str().unwrap().to_owned();
    assert!(text.contains(&format!("This request changes where **{}** runs", world.env)), "{text}");
    assert!(text.contains("~ replicas: 1 → 2"), "planned against where it runs now: {text}");
    let source = format!(
        "{}  built:\n    port: 8080\n    build:\n      source: {{repo: 'http://{}/shop.git', ref: main}}\n      images:\n        built: {{context: app}}\n",
        manifest(2).split("notifications:").next().unwrap(),
        listeners[1]
    ) + "notifications:"
        + manifest(2).split("notifications:").nth(1).unwrap();
    let fourth = world.commit(&source, "build from a repository of the request's choosing");
    opened("synchronize", &fourth, "pr-4").await;
    let requests = forge.wait_for(|requests| edits(requests) >= 3).await;
    let text = requests.iter().rev().find(|r| r.method == "PATCH").unwrap().body["body"].as_str().unwrap().to_owned();
    assert!(text.contains("cannot be planned"), "{text}");
    assert!(text.contains("launchway contacts none a pull request adds before it is merged"), "{text}");
    assert_eq!(contacted.load(std::sync::atomic::Ordering::SeqCst), 0, "neither was contacted");
}

/// Commit statuses (issue 12): every deploy marks the config commit it deploys, pending
/// when its run starts and then its outcome, linking to the run's page, on GitHub and on
/// GitLab (a fake of each on loopback, recording what it receives).
#[tokio::test]
async fn a_deploy_sets_commit_statuses_on_the_commit_it_deploys_on_github_and_gitlab() {
    let world = World::new().await;
    let forge = launchway_testkit::FakeForge::start().await;
    let manifest = |image: &str| {
        format!(
            "{}notifications:\n  - github: {{repo: shop/config, token: env:LW_TEST_GITHUB_TOKEN, api_url: {}}}\n  - gitlab: {{repo: shop/config, token: env:LW_TEST_GITLAB_TOKEN, api_url: {}/api/v4}}\n",
            web_manifest("", 1).replace("image: {image}", &format!("image: {image}")),
            forge.url,
            forge.url
        )
    };
    let deploy = async || {
        let mut command = world.command(&["deploy"]);
        command
            .env("LW_TEST_GITHUB_TOKEN", "ghp_test_secret")
            .env("LW_TEST_GITLAB_TOKEN", "glpat-test-secret")
            .env("LAUNCHWAY_PUBLIC_URL", "https://launchway.example.com");
        support::Run { output: tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap() }
    };
    world.commit(&manifest("{image}"), "v1");
    let head = world.repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    deploy().await.assert_exit(0);
    let github_path = format!("/repos/shop/config/statuses/{head}");
    let gitlab_path = format!("/api/v4/projects/shop%2Fconfig/statuses/{head}");
    let requests = forge.wait_for(|requests| requests.len() >= 4).await;
    let states = |path: &str| -> Vec<String> {
        forge
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body["state"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(states(&github_path), ["pending", "success"], "{requests:#?}");
    assert_eq!(states(&gitlab_path), ["running", "success"], "{requests:#?}");
    let github = requests.iter().find(|r| r.path == github_path).unwrap();
    assert_eq!(github.method, "POST");
    assert_eq!(github.headers["authorization"], "Bearer ghp_test_secret");
    assert_eq!(github.body["context"], format!("launchway/{}/web", world.env));
    assert_eq!(github.body["target_url"], "https://launchway.example.com/runs/1");
    let gitlab = requests.iter().find(|r| r.path == gitlab_path).unwrap();
    assert_eq!(gitlab.headers["private-token"], "glpat-test-secret");
    assert_eq!(gitlab.body["name"], format!("launchway/{}/web", world.env));

    // A release whose image does not exist: its commit goes from pending to failure,
    // saying why.
    world.commit(&manifest("launchway-test/never-built:1"), "v2, an image nobody built");
    let broken = world.repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    deploy().await.assert_exit(4);
    let github_path = format!("/repos/shop/config/statuses/{broken}");
    forge.wait_for(|requests| requests.iter().filter(|r| r.path == github_path).count() >= 2).await;
    let outcome = forge.requests().into_iter().rfind(|r| r.path == github_path).unwrap();
    assert_eq!(states(&github_path), ["pending", "failure"]);
    let description = outcome.body["description"].as_str().unwrap();
    assert!(
        description.starts_with("failed: image launchway-test/never-built:1 is not on the engine"),
        "{description}"
    );
    let tokens_in_store = world.launchway(&["audit", "--output", "json", "--limit", "500"]).await.stdout();
    assert!(!tokens_in_store.contains("ghp_test_secret"), "tokens are never recorded");
}

#[tokio::test]
async fn a_cli_deploy_notifies_as_the_server_does_and_once_when_a_server_shares_the_database() {
    let world = World::new().await;
    let chat = Receiver::start(200).await;
    let with_chat = |replicas| format!("{}notifications:\n  - webhook: {}\n", web_manifest("", replicas), chat.url);
    world.commit(&with_chat(1), "v1");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let first = chat.wait_for(|body| body["event"] == "succeeded").await;
    assert_eq!(first["kind"], "deploy");
    assert!(first["trigger"].as_str().unwrap().starts_with("cli deploy"), "{first}");
    assert!(first["at"].as_i64().unwrap() > 0, "{first}");
    let changes = first["notification"]["changes"].as_array().unwrap();
    assert!(changes[0].as_str().unwrap().contains("containers.web.image"), "images first, and not empty: {changes:?}");
    assert_eq!(chat.bodies().len(), 1, "sent once: {:?}", chat.bodies());

    // A server now shares the database: a CLI deploy leaves the sending to it.
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "viewer", "viewer@example.com", &[]).await));
    world.commit(&with_chat(2), "v2");
    world.launchway(&["deploy"]).await.assert_exit(0);
    let second = api.wait_for_runs("", |runs| runs.len() == 2 && runs[0]["state"] == "succeeded").await;
    let run = second[0]["id"].as_i64().unwrap();
    chat.wait_for(|body| body["notification"]["run_id"] == run).await;
    let sent = api.wait_for_event(run, "notification.sent").await;
    assert_eq!(sent["data"]["event"], "succeeded");
    let about_it = chat.bodies().into_iter().filter(|body| body["notification"]["run_id"] == run).count();
    assert_eq!(about_it, 1, "once, by the server: {:?}", chat.bodies());
    let audit = api.get(&format!("/api/v1/audit?run={run}&limit=100")).await.body;
    let sends = audit.as_array().unwrap().iter().filter(|event| event["kind"] == "notification.sent").count();
    assert_eq!(sends, 1, "{audit}");
}
