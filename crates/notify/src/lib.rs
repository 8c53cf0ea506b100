//! Notifications: what a run tells chat and webhooks, and delivering it.
//!
//! Two shapes: a Slack-compatible incoming-webhook message (Block Kit, with a plain
//! `text` fallback that Mattermost, Rocket.Chat and Teams' Slack bridges show), and
//! launchway's own JSON for anything else. Delivery retries with backoff on network
//! errors, 429 and 5xx; it never fails what it reports on: the caller gets an outcome
//! to record, not an error to propagate.

use std::time::Duration;

use launchway_manifest::NotifyOn;
use serde::Serialize;
use serde_json::{Value, json};

/// Everything a message may say about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub event: NotifyOn,
    /// What the run is, in words: "deploy", "rollback", "promotion", "drift repair",
    /// "scheduled task".
    pub kind: String,
    /// What started it ("push to main", "api rollback by alice@example.com (token …)").
    pub trigger: String,
    /// Who made it happen, when a person did: who rolled back, who approved.
    pub actor: Option<String>,
    /// When the event happened (Unix ms).
    pub at: i64,
    pub app: String,
    pub env: String,
    pub run_id: i64,
    pub release_id: i64,
    pub revision: String,
    /// The config commit (short id), its first line and author, when known.
    pub commit: Option<String>,
    /// The config commit's full id: where commit statuses go.
    #[serde(skip)]
    pub commit_id: Option<String>,
    pub summary: Option<String>,
    pub author: Option<String>,
    /// "published by ci-web", "promoted from stg (run 12)".
    pub origin: Option<String>,
    /// The plan's one-line summary and its changes, images and environment first.
    pub plan_summary: Option<String>,
    pub changes: Vec<String>,
    /// Why it failed or was rolled back; who approved; how long it took.
    pub reason: Option<String>,
    /// The last log lines, or the stopped tasks' reasons.
    pub logs: Vec<String>,
    /// Where to see the run, and to approve or reject it (when approval is needed).
    pub run_url: Option<String>,
    pub approve_url: Option<String>,
    pub reject_url: Option<String>,
    /// When an approval expires (Unix ms).
    pub expires_at: Option<i64>,
    /// Slack messages carry buttons that act (Approve, Reject, Roll back) rather than
    /// links: the server takes Slack's interactivity requests.
    #[serde(skip)]
    pub interactive: bool,
    /// A run that succeeded having changed nothing (the target already ran it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nothing_changed: bool,
    /// For an approval's message brought up to date: how it was decided ("✅ Approved
    /// by bob@example.com"); the message then offers no buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<String>,
}

impl Notification {
    /// One line for chat clients that show no blocks, and for logs.
    pub fn headline(&self) -> String {
        let who = format!("{}@{}", self.app, self.env);
        let by = self.actor.as_deref().map(|actor| format!(" by {actor}")).unwrap_or_default();
        match (self.event, self.kind.as_str()) {
            (NotifyOn::Started, kind) => {
                format!("▶️ {who} {kind} started: run {} (revision {})", self.run_id, self.revision)
            }
            (NotifyOn::ApprovalNeeded, kind) => {
                format!("⏸ {who} {kind} waits for approval: run {} (revision {})", self.run_id, self.revision)
            }
            (NotifyOn::Succeeded, "rollback") => {
                format!("↩️ {who} rolled back to release {}{by}: run {}", self.release_id, self.run_id)
            }
            (NotifyOn::Succeeded, "promotion") => {
                format!("✅ {who} promoted: run {} (revision {})", self.run_id, self.revision)
            }
            (NotifyOn::Succeeded, "drift repair") => {
                format!("🔧 {who} repaired: run {} (revision {})", self.run_id, self.revision)
            }
            (NotifyOn::Succeeded, "scheduled task") => format!("✅ {who} scheduled task ran: run {}", self.run_id),
            (NotifyOn::Succeeded, kind) if self.nothing_changed => format!(
                "✅ {who} {kind}: nothing to change, the target already runs it: run {} (revision {})",
                self.run_id, self.revision
            ),
            (NotifyOn::Succeeded, _) => format!("✅ {who} deployed: run {} (revision {})", self.run_id, self.revision),
            (NotifyOn::Failed, kind) => format!("❌ {who} {kind} failed: run {}", self.run_id),
            (NotifyOn::RolledBack, kind) => format!("↩️ {who} {kind} rolled back: run {}", self.run_id),
            (NotifyOn::Rejected, kind) if self.actor.is_some() => {
                format!("🚫 {who} {kind} rejected{by}: run {}, nothing was changed", self.run_id)
            }
            (NotifyOn::Rejected, kind) => format!(
                "🚫 {who} {kind} not deployed ({}): run {}, nothing was changed",
                self.reason.as_deref().unwrap_or("it ended before it was approved"),
                self.run_id
            ),
        }
    }
}

/// Consecutive identical lines as one, with how many there were: a crash loop's twenty
/// identical lines read as one line "(×20)".
pub fn fold_repeats(lines: &[String]) -> Vec<String> {
    let mut folded: Vec<(String, usize)> = Vec::new();
    for line in lines {
        match folded.last_mut() {
            Some((last, count)) if last == line => *count += 1,
            _ => folded.push((line.clone(), 1)),
        }
    }
    folded.into_iter().map(|(line, count)| if count > 1 { format!("{line}   (×{count})") } else { line }).collect()
}

/// A Slack Block Kit message.
pub fn slack_message(notification: &Notification) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&notification.headline()))},
    })];
    let mut fields = vec![
        field("App", &notification.app),
        field("Environment", &notification.env),
        field("Release", &format!("{} (revision `{}`)", notification.release_id, notification.revision)),
    ];
    if let Some(commit) = &notification.commit {
        let summary =
            notification.summary.as_deref().map(|summary| format!(" {}", escape(summary))).unwrap_or_default();
        fields.push(json!({"type": "mrkdwn", "text": format!("*Commit*\n`{commit}`{summary}")}));
    }
    if let Some(author) = &notification.author {
        // A rollback's news is who rolled back, not who wrote the release it returns to.
        let name = if notification.kind == "rollback" { "Release author" } else { "Author" };
        fields.push(field(name, author));
    }
    if let Some(actor) = &notification.actor {
        fields.push(field("By", actor));
    }
    fields.push(field("Kind", &notification.kind));
    fields.push(field("Trigger", &notification.trigger));
    if let Some(origin) = &notification.origin {
        fields.push(field("Origin", origin));
    }
    blocks.push(json!({"type": "section", "fields": fields}));
    if let Some(plan) = &notification.plan_summary {
        let mut text = format!("*Plan*: {}", escape(plan));
        if !notification.changes.is_empty() {
            // The first changes are the ones that matter (images, then environment).
            text.push_str(&format!("\n```{}```", escape(&first_lines(&notification.changes, 15))));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    if let Some(reason) = &notification.reason {
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Why*: {}", escape(reason))}}));
    }
    if !notification.logs.is_empty() {
        let logs = fold_repeats(&notification.logs);
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*Last log lines*\n```{}```", escape(&last_lines(&logs, 20)))},
        }));
    }
    let mut buttons = Vec::new();
    let run = notification.run_id.to_string();
    let action = |id: &str, label: &str, style: Option<&str>| {
        let mut button =
            json!({"type": "button", "action_id": id, "value": run, "text": {"type": "plain_text", "text": label}});
        if let Some(style) = style {
            button["style"] = json!(style);
        }
        button
    };
    let deciding = notification.decided.is_none();
    if notification.interactive && notification.event == NotifyOn::ApprovalNeeded && deciding {
        buttons.push(action("approve", "Approve", Some("primary")));
        buttons.push(action("reject", "Reject", Some("danger")));
    } else if let Some(url) = notification.approve_url.as_ref().filter(|_| deciding) {
        buttons.push(json!({
            "type": "button", "style": "primary", "url": url,
            "text": {"type": "plain_text", "text": "Review and approve"},
        }));
    }
    if let Some(url) = notification.reject_url.as_ref().filter(|_| !notification.interactive && deciding) {
        buttons.push(json!({
            "type": "button", "style": "danger", "url": url,
            "text": {"type": "plain_text", "text": "Reject"},
        }));
    }
    if let Some(url) = &notification.run_url {
        buttons.push(json!({"type": "button", "url": url, "text": {"type": "plain_text", "text": "View run"}}));
    }
    if notification.interactive && notification.event == NotifyOn::Succeeded && notification.kind != "rollback" {
        let mut roll_back = action("rollback", "Roll back", Some("danger"));
        roll_back["confirm"] = json!({
            "title": {"type": "plain_text", "text": "Roll back?"},
            "text": {"type": "mrkdwn", "text": format!(
                "{}@{} goes back to its last verified release before this one, and stays there until unpinned.",
                escape(&notification.app), escape(&notification.env)
            )},
            "confirm": {"type": "plain_text", "text": "Roll back"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        });
        buttons.push(roll_back);
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    match &notification.decided {
        Some(decided) => blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape(decided)}],
        })),
        None if notification.event == NotifyOn::ApprovalNeeded => blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!(
                "or `launchway approve {id}` / `launchway reject {id}`", id = notification.run_id
            )}],
        })),
        None => {}
    }
    json!({"text": notification.headline(), "blocks": blocks})
}

/// A Discord webhook message: the headline, and one embed with the details (within
/// Discord's limits: 4096 characters of description, 1024 per field).
pub fn discord_message(notification: &Notification) -> Value {
    let colour = match notification.event {
        NotifyOn::Started => 0x1D_4E_D8,
        NotifyOn::ApprovalNeeded => 0xB4_53_09,
        NotifyOn::Succeeded => 0x15_80_3D,
        NotifyOn::Failed | NotifyOn::RolledBack => 0xB9_1C_1C,
        NotifyOn::Rejected => 0x6B_72_80,
    };
    let mut description = String::new();
    if let Some(plan) = &notification.plan_summary {
        description.push_str(&format!("**Plan**: {plan}\n"));
        if !notification.changes.is_empty() {
            description.push_str(&format!("```\n{}\n```\n", first_lines(&notification.changes, 15)));
        }
    }
    if let Some(reason) = &notification.reason {
        description.push_str(&format!("**Why**: {reason}\n"));
    }
    if !notification.logs.is_empty() {
        let logs = fold_repeats(&notification.logs);
        description.push_str(&format!("**Last log lines**\n```\n{}\n```\n", last_lines(&logs, 20)));
    }
    if let Some(url) = &notification.approve_url {
        description.push_str(&format!("[Review and approve]({url})"));
        if let Some(reject) = &notification.reject_url {
            description.push_str(&format!(" · [Reject]({reject})"));
        }
        description.push_str(&format!(" · or `launchway approve {}`\n", notification.run_id));
    }
    let mut fields = vec![
        json!({"name": "Release", "value": format!("{} (revision `{}`)", notification.release_id, notification.revision), "inline": true}),
        json!({"name": "Kind", "value": notification.kind, "inline": true}),
        json!({"name": "Trigger", "value": clip(&notification.trigger, 1024), "inline": false}),
    ];
    if let Some(commit) = &notification.commit {
        let summary = notification.summary.as_deref().unwrap_or_default();
        fields.push(json!({"name": "Commit", "value": clip(&format!("`{commit}` {summary}"), 1024), "inline": false}));
    }
    if let Some(actor) = &notification.actor {
        fields.push(json!({"name": "By", "value": clip(actor, 1024), "inline": true}));
    }
    let mut embed = json!({
        "title": clip(&notification.headline(), 256),
        "description": clip(&description, 4096),
        "color": colour,
        "fields": fields,
    });
    if let Some(url) = &notification.run_url {
        embed["url"] = json!(url);
    }
    json!({"content": clip(&notification.headline(), 2000), "embeds": [embed], "allowed_mentions": {"parse": []}})
}

/// At most `most` characters, cut on a character boundary.
fn clip(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(most.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// launchway's JSON for generic webhooks.
pub fn webhook_payload(notification: &Notification) -> Value {
    json!({
        "event": notification.event.as_str(),
        "kind": notification.kind,
        "trigger": notification.trigger,
        "actor": notification.actor,
        "at": notification.at,
        "headline": notification.headline(),
        "notification": notification,
    })
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", escape(value))})
}

/// Slack's mrkdwn needs only these three escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The last `most` lines (a log's end is where it failed).
fn last_lines(lines: &[String], most: usize) -> String {
    let skipped = lines.len().saturating_sub(most);
    let mut text = String::new();
    if skipped > 0 {
        text.push_str(&format!("… {skipped} earlier lines\n"));
    }
    text.push_str(&lines[skipped..].join("\n"));
    text
}

/// The first `most` lines (a plan's first changes are the ones that matter).
fn first_lines(lines: &[String], most: usize) -> String {
    let kept = lines.len().min(most);
    let mut text = lines[..kept].join("\n");
    if lines.len() > kept {
        text.push_str(&format!("\n… {} more", lines.len() - kept));
    }
    text
}

/// Where a notification goes, with its URL resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    Slack {
        url: String,
    },
    /// A Slack app's bot: `chat.postMessage` to `channel`, and `chat.update` later.
    SlackApp {
        api_url: String,
        token: String,
        channel: String,
    },
    Discord {
        url: String,
    },
    Webhook {
        url: String,
    },
    /// Commit statuses through GitHub's REST API (`POST /repos/{repo}/statuses/{sha}`).
    GitHubStatus {
        api_url: String,
        repo: String,
        token: String,
    },
    /// Commit statuses through GitLab's (`POST /projects/{id}/statuses/{sha}`).
    GitLabStatus {
        api_url: String,
        repo: String,
        token: String,
    },
}

/// URLs of chat webhooks are secrets: only the host is ever shown.
impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Destination {
    fn url(&self) -> &str {
        match self {
            Destination::Slack { url } | Destination::Discord { url } | Destination::Webhook { url } => url,
            Destination::SlackApp { api_url, .. }
            | Destination::GitHubStatus { api_url, .. }
            | Destination::GitLabStatus { api_url, .. } => api_url,
        }
    }

    /// "slack webhook at hooks.slack.com": safe to log.
    pub fn describe(&self) -> String {
        let kind = match self {
            Destination::Slack { .. } => "slack webhook",
            // A channel is no secret, and tells two apps' destinations apart.
            Destination::SlackApp { channel, .. } => {
                return format!("slack channel {channel} at {}", host_of(self.url()));
            }
            Destination::Discord { .. } => "discord webhook",
            Destination::Webhook { .. } => "webhook",
            Destination::GitHubStatus { .. } => "github commit statuses",
            Destination::GitLabStatus { .. } => "gitlab commit statuses",
        };
        format!("{kind} at {}", host_of(self.url()))
    }
}

/// "hooks.slack.com", "127.0.0.1:8080": what of a URL may be shown.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| {
            url.host_str().map(|host| format!("{host}{}", url.port().map(|p| format!(":{p}")).unwrap_or_default()))
        })
        .unwrap_or_else(|| "an invalid URL".to_owned())
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// The first wait; each next one doubles, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How a delivery went: what the caller records in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u32,
    /// The last HTTP status or error, when it failed.
    pub error: Option<String>,
    /// The message posted, where it can be edited later: "CHANNEL TS" for a Slack app.
    pub message: Option<String>,
}

impl Delivery {
    pub(crate) fn failed(attempts: u32, error: String) -> Delivery {
        Delivery { delivered: false, attempts, error: Some(error), message: None }
    }
}

/// Sends notifications. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    http: reqwest::Client,
    retry: RetryPolicy,
    outbound: OutboundPolicy,
}

impl Notifier {
    pub fn new(retry: RetryPolicy, outbound: OutboundPolicy) -> Notifier {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .user_agent(concat!("launchway/", env!("CARGO_PKG_VERSION")))
            // Every name is resolved without link-local addresses, and a redirect (which
            // could name such an address outright) is an answer, not an instruction.
            .dns_resolver(std::sync::Arc::new(outbound::GuardedResolver))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls builds");
        Notifier { http, retry, outbound }
    }

    /// Delivers one notification, retrying transient failures. Never returns an error:
    /// a notification that cannot be sent is reported, not raised.
    pub async fn send(&self, destination: &Destination, notification: &Notification) -> Delivery {
        let body = match destination {
            Destination::SlackApp { .. } => {
                return self.slack_app_call(destination, "chat.postMessage", notification, None).await;
            }
            Destination::Slack { .. } => slack_message(notification),
            Destination::Discord { .. } => discord_message(notification),
            Destination::Webhook { .. } => webhook_payload(notification),
            Destination::GitHubStatus { .. } | Destination::GitLabStatus { .. } => {
                return self.run_status(destination, notification).await;
            }
        };
        self.post(destination.url(), &body).await
    }

    /// Replaces a message posted before (`message`, as [`Delivery::message`] gave it)
    /// with `notification`: an approval's message once the run is decided. Only a Slack
    /// app's messages can be edited; other destinations answer that they cannot.
    pub async fn update(&self, destination: &Destination, message: &str, notification: &Notification) -> Delivery {
        match destination {
            Destination::SlackApp { .. } => {
                self.slack_app_call(destination, "chat.update", notification, Some(message)).await
            }
            _ => Delivery::failed(0, format!("{} keeps no message to edit", destination.describe())),
        }
    }

    /// `chat.postMessage`, or `chat.update` of `message` ("CHANNEL TS"), through a Slack
    /// app's Web API. Slack answers 200 with `ok: false` for what it refuses.
    async fn slack_app_call(
        &self,
        destination: &Destination,
        method: &str,
        notification: &Notification,
        message: Option<&str>,
    ) -> Delivery {
        let Destination::SlackApp { api_url, token, channel } = destination else {
            return Delivery::failed(0, "not a Slack app".to_owned());
        };
        let mut body = slack_message(notification);
        match message.and_then(|message| message.split_once(' ')) {
            Some((channel, ts)) => {
                body["channel"] = json!(channel);
                body["ts"] = json!(ts);
            }
            None => body["channel"] = json!(channel),
        }
        let url = format!("{}/{method}", api_url.trim_end_matches('/'));
        let (mut delivery, reply) =
            self.post_reading(&url, &body, &[("authorization", format!("Bearer {token}"))]).await;
        if delivery.delivered {
            let reply = reply.unwrap_or_default();
            if reply["ok"] == true {
                let posted = (reply["channel"].as_str(), reply["ts"].as_str());
                delivery.message = posted.0.zip(posted.1).map(|(channel, ts)| format!("{channel} {ts}"));
            } else {
                delivery.delivered = false;
                delivery.error =
                    Some(format!("Slack refused it: {}", reply["error"].as_str().unwrap_or("no reason given")));
            }
        }
        delivery
    }

    /// Posts `body` as JSON to `url`, retrying transient failures, within the outbound
    /// policy (a chat service's reply address, for one).
    pub async fn post(&self, url: &str, body: &Value) -> Delivery {
        self.post_with(url, body, &[]).await
    }

    /// As [`Notifier::post`], with more headers (a token: never logged).
    pub(crate) async fn post_with(&self, url: &str, body: &Value, headers: &[(&str, String)]) -> Delivery {
        self.post_reading(url, body, headers).await.0
    }

    /// As [`Notifier::post_with`], also answering the JSON reply of a delivered post.
    async fn post_reading(&self, url: &str, body: &Value, headers: &[(&str, String)]) -> (Delivery, Option<Value>) {
        let parsed = reqwest::Url::parse(url);
        let refusal = match &parsed {
            Ok(parsed) => self.outbound.refuse(parsed),
            Err(_) => Some("the URL is not valid".to_owned()),
        };
        // The URL may be a secret (a chat webhook's): only its host is ever logged.
        let host = parsed.ok().and_then(|parsed| parsed.host_str().map(str::to_owned)).unwrap_or_default();
        if let Some(refusal) = refusal {
            return (Delivery::failed(0, format!("not sent: {refusal}")), None);
        }
        let mut delay = self.retry.first_delay;
        let mut last_error = None;
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(self.retry.max_delay);
            }
            let mut request = self.http.post(url).json(body);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let outcome = request.send().await;
            let retryable = match outcome {
                Ok(response) if response.status().is_success() => {
                    // Most receivers answer nothing worth reading; Slack's Web API
                    // answers whether it took the message, and where it is.
                    let reply = response.json::<Value>().await.ok();
                    return (Delivery { delivered: true, attempts: attempt, error: None, message: None }, reply);
                }
                Ok(response) => {
                    let status = response.status();
                    last_error = Some(format!("HTTP {status}"));
                    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(error) => {
                    // The URL may be a secret: say what failed without it.
                    last_error = Some(error.without_url().to_string());
                    true
                }
            };
            tracing::debug!(%host, attempt, error = ?last_error, "notification not delivered");
            if !retryable {
                return (Delivery { delivered: false, attempts: attempt, error: last_error, message: None }, None);
            }
        }
        let attempts = self.retry.attempts.max(1);
        (Delivery { delivered: false, attempts, error: last_error, message: None }, None)
    }
}

pub mod dispatch;
mod forge;
mod outbound;

#[cfg(test)]
use forge::url_encoded_path;
pub use forge::{CommentOutcome, github_status, gitlab_status};
pub use outbound::OutboundPolicy;

#[cfg(test)]
mod tests;
