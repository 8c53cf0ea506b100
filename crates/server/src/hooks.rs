//! Push webhooks from GitHub and GitLab: checking that they come from who holds the
//! secret, and reading which ref moved.
//!
//! GitHub signs the raw body with HMAC-SHA256 (`X-Hub-Signature-256: sha256=<hex>`);
//! GitLab sends the secret itself (`X-Gitlab-Token`). Both are compared in constant
//! time. Each delivery carries an id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`), which
//! the server records so that a redelivery starts nothing.

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use launchway_engine::access::constant_time_eq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
        }
    }
}

/// A verified webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A ref moved: `refs/heads/main`, `refs/tags/v1.2.0`.
    Push { git_ref: String, commit: Option<String>, delivery: Option<String> },
    /// A pull request (GitHub) or merge request (GitLab) opened or pushed to: its plan
    /// goes on it as a comment.
    PullRequest(PullRequest),
    /// Anything else that verified (GitHub's `ping`, other events): answered, ignored.
    Other { event: String, delivery: Option<String> },
}

/// What a pull or merge request webhook says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub's pull request number; GitLab's merge request iid.
    pub number: u64,
    /// The commit at its head: what would be merged.
    pub head: String,
    /// The branch it would merge into.
    pub base_branch: String,
    pub delivery: Option<String>,
}

/// Why a webhook was refused: 401, and nothing starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("webhooks are disabled: the server has no webhook secret (set LAUNCHWAY_WEBHOOK_SECRET)")]
    NoSecretConfigured,
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("the token does not match")]
    BadToken,
    #[error("the body is not a push event: {0}")]
    BadBody(String),
}

/// What can be verified of a webhook before its body is read: a secret is configured,
/// GitHub's signature is there, GitLab's token is there and right. Answers the secret.
pub fn precheck<'s>(provider: Provider, secret: Option<&'s str>, headers: &HeaderMap) -> Result<&'s str, Refusal> {
    let secret = secret.filter(|secret| !secret.is_empty()).ok_or(Refusal::NoSecretConfigured)?;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    match provider {
        Provider::GitHub => {
            header("x-hub-signature-256").ok_or(Refusal::Missing("X-Hub-Signature-256"))?;
        }
        Provider::GitLab => {
            let token = header("x-gitlab-token").ok_or(Refusal::Missing("X-Gitlab-Token"))?;
            if !constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                return Err(Refusal::BadToken);
            }
        }
    }
    Ok(secret)
}

/// Verifies and reads a webhook.
pub fn read(provider: Provider, secret: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Hook, Refusal> {
    let secret = precheck(provider, secret, headers)?;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let (event, delivery) = match provider {
        Provider::GitHub => {
            let signature = header("x-hub-signature-256").ok_or(Refusal::Missing("X-Hub-Signature-256"))?;
            verify_github(secret, signature, body)?;
            (header("x-github-event").unwrap_or("push"), header("x-github-delivery"))
        }
        Provider::GitLab => {
            let delivery = header("x-gitlab-event-uuid").or_else(|| header("x-gitlab-webhook-uuid"));
            (header("x-gitlab-event").unwrap_or("Push Hook"), delivery)
        }
    };
    let delivery = delivery.map(str::to_owned);
    let is_push = matches!(event, "push" | "Push Hook" | "Tag Push Hook");
    let is_pull_request = matches!(event, "pull_request" | "Merge Request Hook");
    if !is_push && !is_pull_request {
        return Ok(Hook::Other { event: event.to_owned(), delivery });
    }
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| Refusal::BadBody(error.to_string()))?;
    if is_pull_request {
        return Ok(pull_request(provider, &payload, delivery)
            .unwrap_or_else(|| Hook::Other { event: event.to_owned(), delivery: None }));
    }
    let git_ref = payload["ref"].as_str().ok_or_else(|| Refusal::BadBody("it has no \"ref\"".to_owned()))?;
    // A deleted branch or tag has an all-zero "after": there is nothing to deploy.
    let commit = payload["after"]
        .as_str()
        .or_else(|| payload["checkout_sha"].as_str())
        .filter(|commit| !commit.bytes().all(|byte| byte == b'0'))
        .map(str::to_owned);
    Ok(Hook::Push { git_ref: git_ref.to_owned(), commit, delivery })
}

/// A pull request opened, reopened or pushed to; `None` for the other actions (closed,
/// labelled, approved…), which change no plan.
fn pull_request(provider: Provider, payload: &serde_json::Value, delivery: Option<String>) -> Option<Hook> {
    let (number, head, base_branch, action) = match provider {
        Provider::GitHub => (
            payload["number"].as_u64()?,
            payload["pull_request"]["head"]["sha"].as_str()?,
            payload["pull_request"]["base"]["ref"].as_str()?,
            payload["action"].as_str()?,
        ),
        Provider::GitLab => {
            let attributes = &payload["object_attributes"];
            (
                attributes["iid"].as_u64()?,
                attributes["last_commit"]["id"].as_str()?,
                attributes["target_branch"].as_str()?,
                attributes["action"].as_str()?,
            )
        }
    };
    let wanted = matches!(action, "opened" | "synchronize" | "reopened" | "open" | "update" | "reopen");
    wanted.then(|| {
        Hook::PullRequest(PullRequest { number, head: head.to_owned(), base_branch: base_branch.to_owned(), delivery })
    })
}

fn verify_github(secret: &str, signature: &str, body: &[u8]) -> Result<(), Refusal> {
    let expected = signature
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(Refusal::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).map_err(|_| Refusal::BadSignature)
}

/// The `X-Hub-Signature-256` value GitHub would send for `body`: for tests and tools.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c","commits":[]}"#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn github_pushes_verify_by_hmac() {
        let signature = github_signature("s3cret", BODY);
        let hook = read(
            Provider::GitHub,
            Some("s3cret"),
            &headers(&[("x-hub-signature-256", &signature), ("x-github-event", "push"), ("x-github-delivery", "d-1")]),
            BODY,
        );
        assert_eq!(
            hook,
            Ok(Hook::Push {
                git_ref: "refs/heads/main".into(),
                commit: Some("3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c".into()),
                delivery: Some("d-1".into())
            })
        );
        let wrong = github_signature("other", BODY);
        let refused = |headers: HeaderMap| read(Provider::GitHub, Some("s3cret"), &headers, BODY).unwrap_err();
        assert_eq!(refused(headers(&[("x-hub-signature-256", &wrong)])), Refusal::BadSignature);
        assert_eq!(refused(headers(&[("x-hub-signature-256", "sha256=zz")])), Refusal::BadSignature);
        assert_eq!(refused(headers(&[])), Refusal::Missing("X-Hub-Signature-256"));
        // A body changed after signing.
        let tampered = br#"{"ref":"refs/heads/prod","after":"3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c"}"#;
        let hook = read(Provider::GitHub, Some("s3cret"), &headers(&[("x-hub-signature-256", &signature)]), tampered);
        assert_eq!(hook, Err(Refusal::BadSignature));
        // No secret on the server: nothing is accepted.
        let hook = read(Provider::GitHub, None, &headers(&[("x-hub-signature-256", &signature)]), BODY);
        assert_eq!(hook, Err(Refusal::NoSecretConfigured));
    }

    #[test]
    fn gitlab_pushes_verify_by_token_and_tags_and_pings_are_read() {
        let tag = br#"{"object_kind":"tag_push","ref":"refs/tags/v1.2.0","checkout_sha":"abc123"}"#;
        let hook = read(
            Provider::GitLab,
            Some("s3cret"),
            &headers(&[
                ("x-gitlab-token", "s3cret"),
                ("x-gitlab-event", "Tag Push Hook"),
                ("x-gitlab-event-uuid", "u-1"),
            ]),
            tag,
        );
        assert_eq!(
            hook,
            Ok(Hook::Push {
                git_ref: "refs/tags/v1.2.0".into(),
                commit: Some("abc123".into()),
                delivery: Some("u-1".into())
            })
        );
        let hook = read(Provider::GitLab, Some("s3cret"), &headers(&[("x-gitlab-token", "s3cre")]), tag);
        assert_eq!(hook, Err(Refusal::BadToken));
        let ping = read(
            Provider::GitHub,
            Some("s3cret"),
            &headers(&[("x-hub-signature-256", &github_signature("s3cret", b"{}")), ("x-github-event", "ping")]),
            b"{}",
        );
        assert_eq!(ping, Ok(Hook::Other { event: "ping".into(), delivery: None }));
    }

    #[test]
    fn merge_requests_opened_or_pushed_to_are_read_and_the_rest_ignored() {
        let gitlab = |action: &str| {
            let body = serde_json::json!({"object_kind": "merge_request", "object_attributes": {"iid": 12,
                "action": action, "target_branch": "main", "last_commit": {"id": "9f8e7d"}}});
            let headers = headers(&[("x-gitlab-token", "s3cret"), ("x-gitlab-event", "Merge Request Hook")]);
            read(Provider::GitLab, Some("s3cret"), &headers, body.to_string().as_bytes())
        };
        let expected = PullRequest { number: 12, head: "9f8e7d".into(), base_branch: "main".into(), delivery: None };
        assert_eq!(gitlab("update"), Ok(Hook::PullRequest(expected)));
        assert_eq!(gitlab("merge"), Ok(Hook::Other { event: "Merge Request Hook".into(), delivery: None }));
        let closed = br#"{"action":"closed","number":7,"pull_request":{"head":{"sha":"abc"},"base":{"ref":"main"}}}"#;
        let signed = github_signature("s3cret", closed);
        let hook = read(
            Provider::GitHub,
            Some("s3cret"),
            &headers(&[("x-hub-signature-256", &signed), ("x-github-event", "pull_request")]),
            closed,
        );
        assert_eq!(hook, Ok(Hook::Other { event: "pull_request".into(), delivery: None }));
    }
}
