//! Slack's interactive messages: the Approve, Reject and Roll back buttons of
//! launchway's chat messages act directly (`POST /hooks/slack/interactions`).
//!
//! A request counts only when it carries Slack's signature over its timestamp and raw
//! body (`X-Slack-Signature: v0=HMAC-SHA256(signing secret, "v0:{ts}:{body}")`) and the
//! timestamp is within five minutes of now, so a captured request cannot be replayed
//! later. The Slack user is mapped to a launchway identity by the server's
//! `--slack-user SLACK_ID=IDENTITY`; the identity's role is the highest of the live
//! tokens issued to it (the same roles the API enforces), and the identity is who
//! decides — the author rule applies to it as to anyone. The message is then replaced
//! through Slack's `response_url` with who decided; a refusal is answered to the person
//! alone.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use launchway_notify::Notifier;
use launchway_store::{AuditKind, Decision, NewEvent, Role, RunId, Token};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::api::{AppState, Caller, too_many};
use crate::auth::constant_time_eq;
use crate::limits::{Audit, Failure, Standing};

/// How far a request's timestamp may be from now.
const FRESH_FOR_SECS: i64 = 300;

/// The server's side of Slack's interactivity.
#[derive(Debug, Clone)]
pub struct SlackInteractivity {
    /// The app's signing secret (Slack's "Basic Information" page).
    pub signing_secret: String,
    /// Slack user id → launchway identity (a token's subject).
    pub users: BTreeMap<String, String>,
    /// Replies to `response_url`, within the notifications' outbound policy.
    pub notifier: Notifier,
}

/// Why a request was not taken as Slack's: 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the request is older than five minutes (or from the future): a replay is refused")]
    Stale,
    #[error("the signature does not match the body")]
    BadSignature,
}

/// Checks that Slack sent `body` recently (`now` in Unix seconds).
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refusal> {
    let (timestamp, signature) = precheck(headers, now)?;
    if !constant_time_eq(signature.as_bytes(), sign(secret, timestamp, body).as_bytes()) {
        return Err(Refusal::BadSignature);
    }
    Ok(())
}

/// What can be checked of Slack's request before its body is read: the signature and a
/// fresh timestamp are there. Answers them.
pub fn precheck(headers: &HeaderMap, now: i64) -> Result<(&str, &str), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let timestamp = header("x-slack-request-timestamp").ok_or(Refusal::Missing("X-Slack-Request-Timestamp"))?;
    let signature = header("x-slack-signature").ok_or(Refusal::Missing("X-Slack-Signature"))?;
    let sent_at: i64 = timestamp.parse().map_err(|_| Refusal::Stale)?;
    if (now - sent_at).abs() > FRESH_FOR_SECS {
        return Err(Refusal::Stale);
    }
    Ok((timestamp, signature))
}

/// Slack's `v0=` signature of a request.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve(RunId),
    Reject(RunId),
    RollBack(RunId),
}

/// One button press, as Slack describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Press {
    pub user: String,
    pub action: Action,
    pub response_url: Option<String>,
    /// The message the button is on, to replace it with the outcome.
    pub message: Option<Value>,
}

/// Reads `payload=<JSON>` (a form body) into a button press.
pub fn read(body: &[u8]) -> Result<Press, String> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or("no payload")?;
    let payload: Value = serde_json::from_str(&payload).map_err(|_| "the payload is not JSON")?;
    let user = payload["user"]["id"].as_str().ok_or("no user")?.to_owned();
    let action = &payload["actions"][0];
    let run: RunId = action["value"].as_str().and_then(|value| value.parse().ok()).ok_or("no run in the action")?;
    let action = match action["action_id"].as_str() {
        Some("approve") => Action::Approve(run),
        Some("reject") => Action::Reject(run),
        Some("rollback") => Action::RollBack(run),
        other => return Err(format!("unknown action {other:?}")),
    };
    let response_url = payload["response_url"].as_str().map(str::to_owned);
    let message = payload.get("message").cloned();
    Ok(Press { user, action, response_url, message })
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}

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

/// The highest role of the live tokens issued to `identity` (never ci-publisher's).
fn role_of(tokens: &[Token], identity: &str) -> Option<Role> {
    tokens
        .iter()
        .filter(|token| token.subject == identity && token.revoked_at.is_none() && token.role != Role::CiPublisher)
        .map(|token| token.role)
        .max()
}

/// The message the buttons were on, without them, saying what was done.
fn replaced(original: Option<&Value>, done: &str) -> Value {
    let mut blocks: Vec<Value> = original
        .and_then(|message| message["blocks"].as_array())
        .map(|blocks| blocks.iter().filter(|block| block["type"] != "actions").cloned().collect())
        .unwrap_or_default();
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": done}]}));
    let text = original.and_then(|message| message["text"].as_str()).unwrap_or(done);
    json!({"replace_original": true, "text": text, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn signed(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-request-timestamp", HeaderValue::from_str(&timestamp.to_string()).unwrap());
        headers
            .insert("x-slack-signature", HeaderValue::from_str(&sign(secret, &timestamp.to_string(), body)).unwrap());
        headers
    }

    #[test]
    fn only_a_fresh_request_signed_with_the_secret_counts() {
        let body = b"payload=%7B%7D";
        let now = 1_780_000_000;
        assert_eq!(verify("s3cret", &signed("s3cret", now - 10, body), body, now), Ok(()));
        assert_eq!(verify("s3cret", &signed("other", now, body), body, now), Err(Refusal::BadSignature));
        assert_eq!(verify("s3cret", &signed("s3cret", now - 301, body), body, now), Err(Refusal::Stale));
        assert_eq!(verify("s3cret", &signed("s3cret", now, body), b"payload=changed", now), Err(Refusal::BadSignature));
        assert_eq!(verify("s3cret", &HeaderMap::new(), body, now), Err(Refusal::Missing("X-Slack-Request-Timestamp")));
    }

    #[test]
    fn a_press_names_the_user_the_action_and_the_run() {
        let payload = json!({
            "type": "block_actions", "user": {"id": "U1"}, "response_url": "https://hooks.slack.com/actions/x",
            "actions": [{"action_id": "approve", "value": "12"}], "message": {"text": "t", "blocks": []},
        });
        let body = format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
        );
        let press = read(body.as_bytes()).unwrap();
        assert_eq!((press.user.as_str(), press.action), ("U1", Action::Approve(12)));
        assert!(read(b"payload=%7B%7D").is_err());
    }

    #[test]
    fn the_decision_replaces_the_buttons() {
        let original = json!({"text": "waits", "blocks": [{"type": "section"}, {"type": "actions"}]});
        let reply = replaced(Some(&original), "✅ Approved by alice");
        assert_eq!(reply["replace_original"], true);
        let kinds: Vec<&str> =
            reply["blocks"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["section", "context"]);
    }
}
