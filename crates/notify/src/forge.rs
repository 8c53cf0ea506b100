//! What launchway tells GitHub and GitLab: commit statuses (a deploy run's, on the commit
//! it deploys; a pull request's plan, on its head) and, on a pull (or merge) request, one
//! comment holding the plan, found again by a marker and edited in place, so a request
//! pushed to ten times has one comment. Through the forge a notification destination
//! names (`github:` / `gitlab:` with their token).

use launchway_manifest::NotifyOn;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Delivery, Destination, Notification, Notifier};

/// How [`Notifier::upsert_comment`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOutcome {
    Created,
    Updated,
}

/// Where a commit stands, in words both forges have (each names them its own way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusState {
    /// Under way, or waiting for an approval.
    Going,
    Success,
    Failure,
    /// Ended without deploying (rejected, expired, superseded).
    Dropped,
}

/// One forge's REST API, as a destination names it: its URLs and its token's header.
struct ForgeApi<'a> {
    github: bool,
    base: &'a str,
    repo: &'a str,
    /// The header carrying the token (never logged).
    auth: (&'static str, String),
}

impl<'a> ForgeApi<'a> {
    fn of(destination: &'a Destination) -> Option<ForgeApi<'a>> {
        match destination {
            Destination::GitHubStatus { api_url, repo, token } => Some(ForgeApi {
                github: true,
                base: api_url.trim_end_matches('/'),
                repo,
                auth: ("authorization", format!("Bearer {token}")),
            }),
            Destination::GitLabStatus { api_url, repo, token } => Some(ForgeApi {
                github: false,
                base: api_url.trim_end_matches('/'),
                repo,
                auth: ("private-token", token.clone()),
            }),
            _ => None,
        }
    }

    /// The repository's part of a URL: `/repos/o/r`, or `/projects/group%2Fname`.
    fn project(&self) -> String {
        match self.github {
            true => format!("{}/repos/{}", self.base, self.repo),
            false => format!("{}/projects/{}", self.base, url_encoded_path(self.repo)),
        }
    }

    fn statuses(&self, sha: &str) -> String {
        format!("{}/statuses/{sha}", self.project())
    }

    fn comments(&self, number: u64) -> String {
        match self.github {
            true => format!("{}/issues/{number}/comments", self.project()),
            false => format!("{}/merge_requests/{number}/notes", self.project()),
        }
    }

    /// How one comment is edited: GitHub's comments have ids of their own, GitLab's notes
    /// live under their merge request.
    fn edit(&self, number: u64, id: u64) -> (Method, String) {
        match self.github {
            true => (Method::PATCH, format!("{}/issues/comments/{id}", self.project())),
            false => (Method::PUT, format!("{}/{id}", self.comments(number))),
        }
    }
}

/// A commit status's body, for GitHub or GitLab. GitLab calls a status under way
/// "running" (a run waiting for approval stays running: GitLab takes no step back to
/// pending).
fn status_body(github: bool, state: StatusState, context: &str, description: &str, target_url: Option<&str>) -> Value {
    let state = match (github, state) {
        (true, StatusState::Going) => "pending",
        (false, StatusState::Going) => "running",
        (_, StatusState::Success) => "success",
        (true, StatusState::Failure) => "failure",
        (false, StatusState::Failure) => "failed",
        // GitHub has no "cancelled": "error" says it did not complete.
        (true, StatusState::Dropped) => "error",
        (false, StatusState::Dropped) => "canceled",
    };
    let name = if github { "context" } else { "name" };
    json!({"state": state, name: context, "description": within_140(description), "target_url": target_url})
}

/// `group/name` as one path segment, as GitLab's API takes a project.
pub(crate) fn url_encoded_path(project: &str) -> String {
    project.replace('%', "%25").replace('/', "%2F")
}

/// Both forges keep at most 140 characters of a status's line (GitHub refuses more).
fn within_140(text: &str) -> String {
    match text.char_indices().nth(139) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn run_state(event: NotifyOn) -> StatusState {
    match event {
        NotifyOn::Started | NotifyOn::ApprovalNeeded => StatusState::Going,
        NotifyOn::Succeeded => StatusState::Success,
        NotifyOn::Failed | NotifyOn::RolledBack => StatusState::Failure,
        NotifyOn::Rejected => StatusState::Dropped,
    }
}

/// A run's status line.
fn run_description(notification: &Notification) -> String {
    let reason = notification.reason.as_deref().unwrap_or("no reason recorded");
    match notification.event {
        NotifyOn::Started => format!("deploying to {} (run {})", notification.env, notification.run_id),
        NotifyOn::ApprovalNeeded => format!("waits for approval (run {})", notification.run_id),
        NotifyOn::Succeeded if notification.nothing_changed => {
            format!("already runs in {}, verified (run {})", notification.env, notification.run_id)
        }
        NotifyOn::Succeeded => format!("deployed and verified in {} (run {})", notification.env, notification.run_id),
        NotifyOn::Failed => format!("failed: {reason}"),
        NotifyOn::RolledBack => format!("rolled back: {reason}"),
        NotifyOn::Rejected => format!("not deployed: {reason}"),
    }
}

/// A run's commit status: one context per app and environment.
fn run_status_body(github: bool, notification: &Notification) -> Value {
    let context = format!("launchway/{}/{}", notification.env, notification.app);
    let state = run_state(notification.event);
    status_body(github, state, &context, &run_description(notification), notification.run_url.as_deref())
}

/// GitHub's commit status for a run: pending, success or failure.
pub fn github_status(notification: &Notification) -> Value {
    run_status_body(true, notification)
}

/// GitLab's commit status for a run: running, success or failed.
pub fn gitlab_status(notification: &Notification) -> Value {
    run_status_body(false, notification)
}

impl Notifier {
    /// A run's commit status on the config commit it deploys.
    pub(crate) async fn run_status(&self, destination: &Destination, notification: &Notification) -> Delivery {
        let Some(api) = ForgeApi::of(destination) else {
            return Delivery::failed(0, format!("not sent: {} keeps no commit statuses", destination.describe()));
        };
        let Some(sha) = &notification.commit_id else {
            return Delivery::failed(0, "not sent: the release names no config commit to set a status on".to_owned());
        };
        let body = run_status_body(api.github, notification);
        self.post_with(&api.statuses(sha), &body, std::slice::from_ref(&api.auth)).await
    }

    /// A commit status on `sha` under `context`, outside any run (a pull request's plan).
    pub async fn commit_status(
        &self,
        destination: &Destination,
        sha: &str,
        context: &str,
        succeeded: bool,
        description: &str,
        target_url: Option<&str>,
    ) -> Delivery {
        let Some(api) = ForgeApi::of(destination) else {
            return Delivery::failed(0, format!("not sent: {} keeps no commit statuses", destination.describe()));
        };
        let state = if succeeded { StatusState::Success } else { StatusState::Failure };
        let body = status_body(api.github, state, context, description, target_url);
        self.post_with(&api.statuses(sha), &body, std::slice::from_ref(&api.auth)).await
    }

    /// Puts `body` on pull request `number` as the one comment carrying `marker`:
    /// edited when there is one, created otherwise. The forge's answer on failure.
    pub async fn upsert_comment(
        &self,
        destination: &Destination,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, String> {
        let api = ForgeApi::of(destination).ok_or_else(|| format!("{} keeps no comments", destination.describe()))?;
        let headers = std::slice::from_ref(&api.auth);
        let comments = api.comments(number);
        let listed = self.call(Method::GET, &format!("{comments}?per_page=100"), None, headers).await?;
        let ours = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|comment| comment["body"].as_str().is_some_and(|text| text.contains(marker)));
        let payload = json!({ "body": body });
        match ours.and_then(|comment| comment["id"].as_u64()) {
            Some(id) => {
                let (method, url) = api.edit(number, id);
                self.call(method, &url, Some(&payload), headers).await?;
                Ok(CommentOutcome::Updated)
            }
            None => {
                self.call(Method::POST, &comments, Some(&payload), headers).await?;
                Ok(CommentOutcome::Created)
            }
        }
    }

    /// One request to a forge's API, within the outbound policy: its JSON answer, or
    /// what went wrong (never the token).
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "the forge's URL is not valid".to_owned())?;
        if let Some(refusal) = self.outbound.refuse(&parsed) {
            return Err(format!("not sent: {refusal}"));
        }
        let mut request = self.http.request(method.clone(), url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.map_err(|error| error.without_url().to_string())?;
        let status = answer.status();
        if !status.is_success() {
            return Err(format!("{method} {} answered HTTP {status}", parsed.path()));
        }
        Ok(answer.json().await.unwrap_or(Value::Null))
    }
}
