//! Messages as chat shows them, and delivery against a real local HTTP receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

use super::*;

fn approval_needed() -> Notification {
    Notification {
        event: NotifyOn::ApprovalNeeded,
        kind: "deploy".into(),
        trigger: "push to main".into(),
        actor: None,
        at: 1_780_000_000_000,
        app: "web".into(),
        env: "prod".into(),
        run_id: 12,
        release_id: 7,
        revision: "3f9a1c2b4d5e".into(),
        commit: Some("a1b2c3d4e5".into()),
        commit_id: Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678".into()),
        summary: Some("web: <b>bump</b> to 1.4".into()),
        author: Some("Alice <alice@example.com>".into()),
        origin: Some("promoted from stg (run 11)".into()),
        plan_summary: Some("update web: image example/web:1.3 → example/web:1.4".into()),
        changes: vec!["~ image: example/web:1.3 → example/web:1.4".into()],
        reason: None,
        logs: Vec::new(),
        run_url: Some("http://launchway.internal/runs/12".into()),
        approve_url: Some("http://launchway.internal/runs/12#approve".into()),
        reject_url: Some("http://launchway.internal/runs/12#reject".into()),
        expires_at: None,
        interactive: false,
        nothing_changed: false,
        decided: None,
    }
}

#[test]
fn an_approval_message_has_the_release_the_plan_and_a_link() {
    let message = slack_message(&approval_needed());
    assert_eq!(message["text"], "⏸ web@prod deploy waits for approval: run 12 (revision 3f9a1c2b4d5e)");
    let text = message["blocks"].to_string();
    for expected in
        ["*App*\\nweb", "*Environment*\\nprod", "revision `3f9a1c2b4d5e`", "example/web:1.4", "promoted from stg"]
    {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(text.contains("&lt;b&gt;bump&lt;/b&gt;"), "mrkdwn is escaped: {text}");
    let actions = message["blocks"].as_array().unwrap().iter().find(|block| block["type"] == "actions").unwrap();
    let urls: Vec<&str> = actions["elements"].as_array().unwrap().iter().filter_map(|b| b["url"].as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://launchway.internal/runs/12#approve",
            "http://launchway.internal/runs/12#reject",
            "http://launchway.internal/runs/12"
        ],
        "each action has its own link"
    );
    assert!(text.contains("launchway approve 12"));
}

#[test]
fn a_failure_message_carries_the_reason_and_the_last_log_lines() {
    let logs: Vec<String> = (1..=30).map(|line| format!("line {line}")).collect();
    let failed = Notification {
        event: NotifyOn::Failed,
        reason: Some("replica web-prod-0 exited with code 3".into()),
        logs,
        approve_url: None,
        ..approval_needed()
    };
    let message = slack_message(&failed);
    let text = message["blocks"].to_string();
    assert!(text.contains("exited with code 3"));
    assert!(text.contains("*Last log lines*"), "{text}");
    assert!(text.contains("… 10 earlier lines"), "{text}");
    assert!(text.contains("line 30") && !text.contains("line 10\\n"));
    let payload = webhook_payload(&failed);
    assert_eq!(payload["event"], "failed");
    assert_eq!(payload["notification"]["logs"].as_array().unwrap().len(), 30, "webhooks get every line");
}

#[test]
fn a_crash_loops_identical_lines_are_folded_and_counted() {
    let mut logs: Vec<String> = vec!["starting".into()];
    logs.extend(std::iter::repeat_n("panic: no DATABASE_URL".to_owned(), 20));
    logs.push("exited".into());
    assert_eq!(fold_repeats(&logs), ["starting", "panic: no DATABASE_URL   (×20)", "exited"]);
    let failed = Notification { event: NotifyOn::Failed, logs, ..approval_needed() };
    let text = slack_message(&failed)["blocks"].to_string();
    assert_eq!(text.matches("panic: no DATABASE_URL").count(), 1, "{text}");
}

#[test]
fn a_long_plan_keeps_its_first_changes_the_images() {
    let mut changes = vec!["~ containers.web.image: example/web:1.3 → example/web:1.4".to_owned()];
    changes.extend((1..=30).map(|n| format!("+ containers.web.env.VAR_{n}: x")));
    let asking = Notification { changes, ..approval_needed() };
    let text = slack_message(&asking)["blocks"].to_string();
    assert!(text.contains("example/web:1.4"), "the image change is kept: {text}");
    assert!(text.contains("… 16 more"), "{text}");
}

#[test]
fn a_manual_rollback_names_who_rolled_back_and_webhooks_say_what_and_when() {
    let rollback = Notification {
        event: NotifyOn::Succeeded,
        kind: "rollback".into(),
        trigger: "api rollback by carol@example.com (token 3f9a)".into(),
        actor: Some("carol@example.com".into()),
        approve_url: None,
        reject_url: None,
        ..approval_needed()
    };
    let message = slack_message(&rollback);
    assert_eq!(message["text"], "↩️ web@prod rolled back to release 7 by carol@example.com: run 12");
    let text = message["blocks"].to_string();
    assert!(text.contains("*Release author*\\nAlice") && text.contains("*By*\\ncarol@example.com"), "{text}");
    let payload = webhook_payload(&rollback);
    assert_eq!(
        (&payload["kind"], &payload["trigger"], &payload["actor"], &payload["at"]),
        (
            &json!("rollback"),
            &json!("api rollback by carol@example.com (token 3f9a)"),
            &json!("carol@example.com"),
            &json!(1_780_000_000_000_i64)
        )
    );
}

#[test]
fn a_discord_message_is_an_embed_within_discords_limits() {
    let logs: Vec<String> = (0..400).map(|n| format!("a long log line number {n} {}", "x".repeat(40))).collect();
    let failed =
        Notification { event: NotifyOn::Failed, logs, approve_url: None, reject_url: None, ..approval_needed() };
    let message = discord_message(&failed);
    assert_eq!(message["content"], "❌ web@prod deploy failed: run 12");
    let embed = &message["embeds"][0];
    assert_eq!(embed["url"], "http://launchway.internal/runs/12");
    assert!(embed["description"].as_str().unwrap().chars().count() <= 4096);
    assert!(
        embed["description"].as_str().unwrap().contains("a long log line number 399"),
        "the end of the log is kept"
    );
    assert_eq!(message["allowed_mentions"]["parse"], json!([]), "a log line cannot ping @everyone");
    let asking = discord_message(&approval_needed());
    let text = asking["embeds"][0]["description"].as_str().unwrap();
    assert!(text.contains("[Review and approve](http://launchway.internal/runs/12#approve)"), "{text}");
    assert!(text.contains("[Reject](http://launchway.internal/runs/12#reject)"), "{text}");
}

#[test]
fn destinations_never_show_their_url() {
    let slack = Destination::Slack { url: "https://hooks.slack.com/services/T000/B000/SECRET".into() };
    assert_eq!(slack.describe(), "slack webhook at hooks.slack.com");
    assert!(!format!("{slack:?}").contains("SECRET"));
}

/// A receiver that answers with the given statuses in turn (then 200) and keeps bodies.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    #[derive(Clone)]
    struct Receiver {
        statuses: Arc<Mutex<Vec<u16>>>,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    }
    let state = Receiver { statuses: Arc::new(Mutex::new(statuses)), bodies: Arc::default() };
    let bodies = state.bodies.clone();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(state): State<Receiver>, body: axum::Json<serde_json::Value>| async move {
                state.bodies.lock().unwrap().push(body.0);
                let mut statuses = state.statuses.lock().unwrap();
                let status = if statuses.is_empty() { 200 } else { statuses.remove(0) };
                StatusCode::from_u16(status).unwrap()
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, bodies)
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let (url, bodies) = receiver(vec![503, 429]).await;
    let delivery =
        Notifier::new(quick(), OutboundPolicy::default()).send(&Destination::Slack { url }, &approval_needed()).await;
    assert_eq!(delivery, Delivery { delivered: true, attempts: 3, error: None, message: None });
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(bodies[2]["blocks"].is_array());
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_an_absent_receiver_is_given_up_on() {
    let (url, bodies) = receiver(vec![404]).await;
    let delivery =
        Notifier::new(quick(), OutboundPolicy::default()).send(&Destination::Webhook { url }, &approval_needed()).await;
    assert_eq!((delivery.delivered, delivery.attempts), (false, 1));
    assert_eq!(delivery.error.as_deref(), Some("HTTP 404 Not Found"));
    assert_eq!(bodies.lock().unwrap()[0]["event"], "approval_needed");

    // Nothing listens on this port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let delivery =
        Notifier::new(quick(), OutboundPolicy::default()).send(&Destination::Webhook { url }, &approval_needed()).await;
    assert_eq!((delivery.delivered, delivery.attempts), (false, 4));
    assert!(delivery.error.is_some());
}

/// Regression (issue 9): a notification URL from the config repo could make the server
/// call the cloud metadata service for credentials.
#[tokio::test]
async fn link_local_destinations_are_never_contacted_and_redirects_are_not_followed() {
    let notifier = Notifier::new(quick(), OutboundPolicy::default());
    let metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_owned();
    let delivery = notifier.send(&Destination::Webhook { url: metadata }, &approval_needed()).await;
    assert_eq!((delivery.delivered, delivery.attempts), (false, 0), "not even tried");
    assert!(delivery.error.unwrap().contains("link-local"));

    // A receiver that redirects (say, to the metadata service): its answer is final.
    let (url, bodies) = receiver(vec![302]).await;
    let delivery = notifier.send(&Destination::Webhook { url }, &approval_needed()).await;
    assert_eq!((delivery.delivered, delivery.attempts), (false, 1));
    assert_eq!(bodies.lock().unwrap().len(), 1);

    let restricted = Notifier::new(quick(), OutboundPolicy { allow: vec!["hooks.slack.com".into()] });
    let (url, bodies) = receiver(vec![200]).await;
    let delivery = restricted.send(&Destination::Slack { url }, &approval_needed()).await;
    assert_eq!((delivery.delivered, delivery.attempts), (false, 0));
    assert!(delivery.error.unwrap().contains("127.0.0.1 is not among the hosts"));
    assert!(bodies.lock().unwrap().is_empty());
}

#[test]
fn commit_statuses_say_where_a_deploy_is_in_each_forges_words() {
    let waiting = approval_needed();
    let github = github_status(&waiting);
    assert_eq!(github["state"], "pending");
    assert_eq!(github["context"], "launchway/prod/web");
    assert_eq!(github["target_url"], "http://launchway.internal/runs/12");
    assert_eq!(github["description"], "waits for approval (run 12)");
    let failed = Notification {
        event: NotifyOn::RolledBack,
        reason: Some(format!("replica web-1 failed its health check: {}", "GET /healthz answered 500; ".repeat(10))),
        ..approval_needed()
    };
    let github = github_status(&failed);
    assert_eq!(github["state"], "failure");
    let description = github["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 140, "GitHub refuses more: {description}");
    assert!(
        description.starts_with("rolled back: replica web-1 failed its health check") && description.ends_with('…')
    );
    let gitlab = gitlab_status(&Notification { event: NotifyOn::Started, ..approval_needed() });
    assert_eq!((gitlab["state"].as_str(), gitlab["name"].as_str()), (Some("running"), Some("launchway/prod/web")));
    assert_eq!(gitlab_status(&failed)["state"], "failed");
    assert_eq!(url_encoded_path("group/sub/name"), "group%2Fsub%2Fname");
}

/// Issue 21, items 6 and 7: a rejected, expired or superseded run, and a run that
/// changed nothing, end their commit status and their message instead of leaving a
/// "pending" or a "started" behind.
#[test]
fn runs_that_end_without_deploying_or_changing_say_so() {
    let rejected = Notification {
        event: NotifyOn::Rejected,
        actor: Some("bob@example.com".into()),
        reason: Some("rejected by bob@example.com: not today".into()),
        ..approval_needed()
    };
    assert_eq!(rejected.headline(), "🚫 web@prod deploy rejected by bob@example.com: run 12, nothing was changed");
    assert_eq!(github_status(&rejected)["state"], "error");
    assert_eq!(github_status(&rejected)["description"], "not deployed: rejected by bob@example.com: not today");
    assert_eq!(gitlab_status(&rejected)["state"], "canceled");
    let expired =
        Notification { event: NotifyOn::Rejected, reason: Some("approval expired".into()), ..approval_needed() };
    assert_eq!(expired.headline(), "🚫 web@prod deploy not deployed (approval expired): run 12, nothing was changed");
    assert!(slack_message(&expired)["blocks"].to_string().contains("approval expired"));

    let unchanged = Notification { event: NotifyOn::Succeeded, nothing_changed: true, ..approval_needed() };
    assert_eq!(
        unchanged.headline(),
        "✅ web@prod deploy: nothing to change, the target already runs it: run 12 (revision 3f9a1c2b4d5e)"
    );
    assert_eq!(github_status(&unchanged)["state"], "success");
    assert_eq!(webhook_payload(&unchanged)["notification"]["nothing_changed"], true);
}

/// Issue 21: a Slack message asking for an approval kept its live buttons after the run
/// was decided elsewhere. A Slack app's message (unlike an incoming webhook's) can be
/// edited: posted with chat.postMessage, where it is comes back, and chat.update turns
/// it into one that says who decided, without buttons.
#[tokio::test]
async fn a_slack_apps_approval_message_is_posted_then_edited_into_its_decision() {
    let slack = launchway_testkit::FakeForge::start().await;
    let app = Destination::SlackApp {
        api_url: format!("{}/api", slack.url),
        token: "xoxb-secret".into(),
        channel: "C0123".into(),
    };
    assert_eq!(app.describe(), format!("slack channel C0123 at {}", slack.url.trim_start_matches("http://")));
    assert!(!format!("{app:?}").contains("xoxb"));
    let notifier = Notifier::new(quick(), OutboundPolicy::default());
    let asking = Notification { interactive: true, ..approval_needed() };
    let posted = notifier.send(&app, &asking).await;
    assert!(posted.delivered, "{posted:?}");
    let message = posted.message.expect("where the message is");
    let requests = slack.requests();
    assert_eq!(requests[0].path, "/api/chat.postMessage");
    assert_eq!(requests[0].headers["authorization"], "Bearer xoxb-secret");
    assert_eq!(requests[0].body["channel"], "C0123");
    assert!(requests[0].body["blocks"].to_string().contains("\"action_id\":\"approve\""), "buttons to decide");

    let decided = Notification { decided: Some("🚫 Rejected by bob@example.com".into()), ..asking };
    let edited = notifier.update(&app, &message, &decided).await;
    assert!(edited.delivered, "{edited:?}");
    let update = &slack.requests()[1];
    assert_eq!(update.path, "/api/chat.update");
    assert_eq!(update.body["channel"].as_str().zip(update.body["ts"].as_str()), message.split_once(' '));
    let blocks = update.body["blocks"].to_string();
    assert!(blocks.contains("Rejected by bob@example.com"), "{blocks}");
    assert!(!blocks.contains("action_id") && !blocks.contains("Review and approve"), "nothing to decide: {blocks}");

    // What Slack refuses (200, ok: false) is a failure, said with Slack's reason.
    let missing = Destination::SlackApp {
        api_url: format!("{}/api", slack.url),
        token: "xoxb-secret".into(),
        channel: "C-MISSING".into(),
    };
    let refused = notifier.send(&missing, &approval_needed()).await;
    assert!(!refused.delivered);
    assert_eq!(refused.error.as_deref(), Some("Slack refused it: channel_not_found"));
    // An incoming webhook's message cannot be edited, and says so.
    let webhook = Destination::Slack { url: format!("{}/hook", slack.url) };
    assert!(!notifier.update(&webhook, "C1 1.1", &decided).await.delivered);
}
