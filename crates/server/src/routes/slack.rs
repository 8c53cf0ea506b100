//! `POST /hooks/slack/interactions`: a press of a button of launchway's Slack messages,
//! checked (`slack.rs`: signature, freshness, who pressed) and acted on.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use launchway_store::{AuditKind, Decision, NewEvent, Role};
use serde_json::json;

use crate::http::{AppState, Caller, too_many};
use crate::limits::{Audit, Failure, Standing};
use crate::slack::{Action, Press, SlackInteractivity, now_secs, read, replaced, role_of, verify};

/// `POST /hooks/slack/interactions`
pub async fn interactions(State(state): State<AppState>, caller: Caller, body: Bytes) -> Response {
    let Some(slack) = state.slack.clone() else {
        return (StatusCode::NOT_FOUND, "Slack interactivity is off: the server has no Slack signing secret")
            .into_response();
    };
    if let Err(refusal) = verify(&slack.signing_secret, &caller.headers, &body, now_secs()) {
        // Only a press that does not verify is held back: a signed one always gets in.
        if let Standing::Limited { retry_after } =
            state.limiter.standing(Failure::Webhook, caller.source, Instant::now())
        {
            return too_many(Failure::Webhook, retry_after).into_response();
        }
        if state.limiter.failed(Failure::Webhook, caller.source, Instant::now()) == Audit::Each {
            let message = format!("refused a Slack interaction from {}: {refusal}", caller.source);
            let data = json!({"provider": "slack", "reason": refusal.to_string(), "source": caller.source});
            let _ = state.runtime.engine().record(NewEvent::audit(AuditKind::WebhookRefused, message, data)).await;
        }
        return (StatusCode::UNAUTHORIZED, refusal.to_string()).into_response();
    }
    let press = match read(&body) {
        Ok(press) => press,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    // Slack wants an answer within three seconds; the outcome goes to response_url.
    let outcome = act(&state, &slack, &press).await;
    if let Err(refused) = &outcome {
        // Signed by Slack, but not something this user may do (unmapped, a viewer…):
        // an attempt the audit log keeps.
        let message = format!("refused a Slack press by {}: {refused}", press.user);
        let data = json!({"provider": "slack", "user": press.user, "reason": refused, "source": caller.source});
        let _ = state.runtime.engine().record(NewEvent::audit(AuditKind::WebhookRefused, message, data)).await;
    }
    let reply = match &outcome {
        Ok(done) => replaced(press.message.as_ref(), done),
        Err(refused) => json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": format!("launchway did not do it: {refused}"),
        }),
    };
    if let Some(url) = press.response_url.clone() {
        let notifier = slack.notifier.clone();
        tokio::spawn(async move {
            let delivery = notifier.post(&url, &reply).await;
            if !delivery.delivered {
                tracing::warn!(error = ?delivery.error, "could not answer a Slack interaction");
            }
        });
    }
    StatusCode::OK.into_response()
}

/// Does what the button asks, as the identity the Slack user maps to; the line to show
/// where the buttons were, or why not.
async fn act(state: &AppState, slack: &SlackInteractivity, press: &Press) -> Result<String, String> {
    let identity = slack.users.get(&press.user).ok_or_else(|| {
        format!("Slack user {} is not mapped to a launchway identity (--slack-user {}=EMAIL)", press.user, press.user)
    })?;
    let engine = state.runtime.engine();
    let tokens = engine.store().tokens().await.map_err(|error| error.to_string())?;
    let role = role_of(&tokens, identity).ok_or_else(|| format!("{identity} has no launchway token, so no role"))?;
    let needed = match press.action {
        Action::Approve(_) | Action::Reject(_) => Role::Approver,
        Action::RollBack(_) => Role::Deployer,
    };
    if role < needed {
        return Err(format!("{identity} is a {}; this needs the {} role", role.as_str(), needed.as_str()));
    }
    let via = format!("{identity} (Slack {})", press.user);
    match press.action {
        Action::Approve(run) | Action::Reject(run) => {
            // Decided elsewhere (the CLI, the page, another message) or ended: the
            // message's buttons are stale, and it is brought up to date instead.
            if let Some(outcome) = decided_elsewhere(engine, run).await? {
                return Ok(outcome);
            }
            let decision =
                if matches!(press.action, Action::Approve(_)) { Decision::Approved } else { Decision::Rejected };
            engine
                .decide(run, decision, identity, Some("from Slack".to_owned()))
                .await
                .map_err(|error| error.to_string())?;
            state.runtime.drive(run);
            let verb = if decision == Decision::Approved { "✅ Approved" } else { "🚫 Rejected" };
            Ok(format!("{verb} by {via}"))
        }
        Action::RollBack(run) => {
            let run = engine.store().run(run).await.map_err(|error| error.to_string())?;
            let reason = format!("from Slack, after run {}", run.id);
            let trigger = format!("slack rollback by {via}");
            // From the release the message is about, once: a second press (or a replay)
            // finds another release running and does nothing.
            let rollback = engine
                .prepare_rollback(launchway_engine::RollbackRequest {
                    app: &run.app,
                    env: &run.env,
                    to: None,
                    from: Some(run.release_id),
                    by: identity,
                    trigger: &trigger,
                    reason: Some(&reason),
                })
                .await
                .map_err(|error| error.to_string())?;
            state.runtime.drive(rollback.id);
            Ok(format!("↩️ Rolling back {}@{} (run {}), asked by {via}", run.app, run.env, rollback.id))
        }
    }
}

/// What became of a run whose approval buttons were pressed, when it no longer waits
/// for a decision: who decided, or how it ended.
async fn decided_elsewhere(engine: &launchway_engine::Engine, run_id: i64) -> Result<Option<String>, String> {
    let store = engine.store();
    let run = store.run(run_id).await.map_err(|error| error.to_string())?;
    let approval = store.approval(run_id).await.map_err(|error| error.to_string())?;
    let decided = approval.as_ref().and_then(|approval| Some((approval.decision?, approval.decided_by.clone()?)));
    Ok(match decided {
        Some((Decision::Approved, by)) => Some(format!("✅ Already approved by {by}: run {run_id} is {}", run.state)),
        Some((Decision::Rejected, by)) => Some(format!("🚫 Already rejected by {by}: nothing was changed")),
        None if run.state == launchway_store::RunState::AwaitingApproval => None,
        None => Some(format!(
            "Run {run_id} no longer waits for approval: it is {}{}",
            run.state,
            run.reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default()
        )),
    })
}
