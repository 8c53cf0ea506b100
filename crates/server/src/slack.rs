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
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use launchway_notify::Notifier;
use launchway_store::{Role, RunId, Token};
use serde_json::{Value, json};
use sha2::Sha256;

use launchway_engine::access::constant_time_eq;

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

/// The highest role of the live tokens issued to `identity` (never ci-publisher's).
pub(crate) fn role_of(tokens: &[Token], identity: &str) -> Option<Role> {
    tokens
        .iter()
        .filter(|token| token.subject == identity && token.revoked_at.is_none() && token.role != Role::CiPublisher)
        .map(|token| token.role)
        .max()
}

/// The message the buttons were on, without them, saying what was done.
pub(crate) fn replaced(original: Option<&Value>, done: &str) -> Value {
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
