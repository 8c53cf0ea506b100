//! What launchway says on a pull (or merge) request: one comment holding the plan,
//! found again by a marker and edited in place, so a request pushed to ten times has one
//! comment, and a commit status on its head commit. Through the forge a notification
//! destination names (`github:` / `gitlab:` with their token).

use reqwest::Method;
use serde_json::{Value, json};

use crate::{Delivery, Destination, Notifier, url_encoded_path};

/// How [`Notifier::upsert_comment`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOutcome {
    Created,
    Updated,
}

impl Notifier {
    /// Puts `body` on pull request `number` as the one comment carrying `marker`:
    /// edited when there is one, created otherwise. The forge's answer on failure.
    pub async fn upsert_comment(
        &self,
        destination: &Destination,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, String> {
        let (comments, auth, github) = match destination {
            Destination::GitHubStatus { api_url, repo, token } => (
                format!("{}/repos/{repo}/issues/{number}/comments", api_url.trim_end_matches('/')),
                ("authorization", format!("Bearer {token}")),
                true,
            ),
            Destination::GitLabStatus { api_url, repo, token } => (
                format!(
                    "{}/projects/{}/merge_requests/{number}/notes",
                    api_url.trim_end_matches('/'),
                    url_encoded_path(repo)
                ),
                ("private-token", token.clone()),
                false,
            ),
            other => return Err(format!("{} keeps no comments", other.describe())),
        };
        let headers = [auth];
        let listed = self.call(Method::GET, &format!("{comments}?per_page=100"), None, &headers).await?;
        let ours = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|comment| comment["body"].as_str().is_some_and(|text| text.contains(marker)));
        let payload = json!({ "body": body });
        match ours.and_then(|comment| comment["id"].as_u64()) {
            Some(id) => {
                let (method, url) = match (github, destination) {
                    (true, Destination::GitHubStatus { api_url, repo, .. }) => {
                        (Method::PATCH, format!("{}/repos/{repo}/issues/comments/{id}", api_url.trim_end_matches('/')))
                    }
                    _ => (Method::PUT, format!("{comments}/{id}")),
                };
                self.call(method, &url, Some(&payload), &headers).await?;
                Ok(CommentOutcome::Updated)
            }
            None => {
                self.call(Method::POST, &comments, Some(&payload), &headers).await?;
                Ok(CommentOutcome::Created)
            }
        }
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
        let description: String = description.chars().take(140).collect();
        let (url, body, auth) = match destination {
            Destination::GitHubStatus { api_url, repo, token } => (
                format!("{}/repos/{repo}/statuses/{sha}", api_url.trim_end_matches('/')),
                json!({"state": if succeeded { "success" } else { "failure" }, "context": context,
                    "description": description, "target_url": target_url}),
                ("authorization", format!("Bearer {token}")),
            ),
            Destination::GitLabStatus { api_url, repo, token } => (
                format!("{}/projects/{}/statuses/{sha}", api_url.trim_end_matches('/'), url_encoded_path(repo)),
                json!({"state": if succeeded { "success" } else { "failed" }, "name": context,
                    "description": description, "target_url": target_url}),
                ("private-token", token.clone()),
            ),
            other => {
                let error = Some(format!("not sent: {} keeps no commit statuses", other.describe()));
                return Delivery { delivered: false, attempts: 0, error };
            }
        };
        self.post_with(&url, &body, &[auth]).await
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
