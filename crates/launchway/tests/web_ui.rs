//! The web page in a real browser: headless Chromium (Debian's, through
//! chromium-driver) against the real `launchway server`, which deploys to the local
//! Docker engine.

mod support;

use serde_json::{Value, json};
use support::World;
use support::browser::Browser;
use support::server::{Api, ServerProcess, token, web_manifest};

fn web(replicas: u32) -> String {
    web_manifest("approval: true", replicas)
}

/// Sign in, see the board, open the waiting run, approve it and watch it succeed
/// without the page being loaded again, then roll back from the app's page. A change
/// without the session's CSRF token is refused, and the page runs no inline script.
#[tokio::test]
async fn an_approver_signs_in_approves_a_run_watches_it_live_and_rolls_back() {
    let world = World::new().await;
    world.commit(&web(1), "one replica");
    let server = ServerProcess::start(&world);
    let secret = token(&world, "approver", "approver@example.com", &[]).await;
    let api = Api::new(&server, Some(&secret));
    let first = api.wait_for_runs("", |runs| runs.iter().any(|run| run["state"] == "awaiting_approval")).await;
    let first = first[0]["id"].as_i64().unwrap();

    let browser = Browser::start().await;
    browser.open(&server.url("/")).await;
    browser.type_into("#token", &secret).await;
    browser.click("#sign-in button[type=submit]").await;
    browser.find(&format!("#board tr[data-app=web] td[data-env='{}']", world.env)).await;
    browser.wait_for_text("#who", "approver@example.com (approver)").await;
    let cookies = browser.script("return document.cookie").await;
    assert!(!cookies.as_str().unwrap_or_default().contains("lw_session"), "the session cookie is HttpOnly: {cookies}");

    browser.open(&server.url(&format!("/runs/{first}"))).await;
    browser.find("#graph [data-stage=approve][data-status=waiting]").await;
    browser.script("window.stillTheSamePage = true; return null").await;
    browser.type_into("#comment", "looks right").await;
    browser.click("#approve").await;
    browser.find("#run-head [data-state=succeeded]").await;
    browser.find("#graph [data-stage=verify][data-status=done]").await;
    browser.wait_for_text("#events", "run.succeeded").await;
    assert_eq!(
        browser.script("return window.stillTheSamePage === true").await,
        Value::Bool(true),
        "the run was followed live, without loading the page again"
    );
    assert_eq!(world.live("web").await.replicas.len(), 1);

    // A second release, approved through the API; then back to the first from the page.
    world.commit(&web(2), "two replicas");
    let synced = api.post("/api/v1/sync", json!({})).await;
    assert!(synced.status < 300, "{synced:?}");
    let runs = api.wait_for_runs("", |runs| runs[0]["state"] == "awaiting_approval" && runs[0]["id"] != first).await;
    let second = runs[0]["id"].as_i64().unwrap();
    assert_eq!(api.post(&format!("/api/v1/runs/{second}/approve"), json!({})).await.status, 200);
    api.wait_for_run(second, &["succeeded"]).await;
    assert_eq!(world.live("web").await.replicas.len(), 2);

    browser.open(&server.url(&format!("/apps/web/{}", world.env))).await;
    browser.wait_for_text("#release", "2").await;
    // What the replicas wrote, read from the Docker engine.
    browser.wait_for_text("#recent-logs", "sample-app: listening on port 8080").await;
    let logs = api.get(&format!("/api/v1/apps/web/{}/logs?lines=5", world.env)).await;
    assert_eq!(logs.body.as_array().map(Vec::len), Some(2), "two replicas: {:?}", logs.body);
    assert!(logs.body[0]["lines"].to_string().contains("listening on port"), "{:?}", logs.body);
    let first_release = api.get(&format!("/api/v1/runs/{first}")).await.body["run"]["release_id"].clone();
    browser.click(&format!("[data-rollback='{first_release}']")).await;
    browser.click(&format!("[data-confirm-rollback='{first_release}']")).await;
    browser.find("#run-head [data-state=succeeded]").await;
    browser.wait_for_text("#run-head", "rollback of").await;
    assert_eq!(world.live("web").await.replicas.len(), 1, "back at the first release");

    // The cookie alone does not change anything: the CSRF token must come with it.
    let refused = browser
        .async_script(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/sync', {method: 'POST', body: '{}', headers: {'content-type': 'application/json'}})
               .then((response) => done(response.status));",
        )
        .await;
    assert_eq!(refused, json!(403), "a change without the CSRF token is refused");
    let allowed = browser.async_script(
        "const done = arguments[arguments.length - 1];
         fetch('/api/v1/session').then((r) => r.json()).then((session) =>
           fetch('/api/v1/sync', {method: 'POST', body: '{}', headers: {'content-type': 'application/json', 'x-csrf-token': session.csrf}}))
           .then((response) => done(response.status));",
    );
    assert!(allowed.await.as_u64().is_some_and(|status| status < 300), "with the token it goes through");

    // The Content-Security-Policy admits no inline script.
    let inline = browser
        .script(
            "const script = document.createElement('script');
             script.textContent = 'window.inlineRan = true';
             document.body.append(script);
             return window.inlineRan === true;",
        )
        .await;
    assert_eq!(inline, Value::Bool(false), "an inline script was run");
    browser.close().await;
}
