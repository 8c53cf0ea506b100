//! API tokens: `lw_<id>_<secret>`, shown once, kept as a SHA-256 of the secret.
//!
//! The secret is 32 random bytes, so a plain hash is enough (no password stretching is
//! needed for keys nobody chose). The id is public and indexes the token; the hash is
//! compared in constant time.

use launchway_store::{AuditKind, NewEvent, NewToken, Role, Store, StoreError, Token};
use sha2::{Digest, Sha256};

/// A token as created: the secret text is in `presented`, and nowhere else, ever again.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: Token,
    /// What clients send: `lw_<id>_<secret>`.
    pub presented: String,
}

/// What a new token may do.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub name: String,
    /// Who it acts for: an email for people (what approvals compare with the release's
    /// author), a job name for CI.
    pub subject: String,
    pub role: Role,
    /// For `ci-publisher`: the apps and environments it may publish to.
    pub apps: Vec<String>,
    pub envs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a token and stores its hash.
pub async fn issue(store: &dyn Store, request: TokenRequest) -> Result<IssuedToken, TokenError> {
    if request.role == Role::CiPublisher && (request.apps.is_empty() || request.envs.is_empty()) {
        return Err(TokenError::Invalid(
            "a ci-publisher token needs the apps and the environments it may publish to (--app, --env)".to_owned(),
        ));
    }
    if request.role != Role::CiPublisher && (!request.apps.is_empty() || !request.envs.is_empty()) {
        return Err(TokenError::Invalid(format!(
            "only ci-publisher tokens are limited to apps and environments; a {} token is not",
            request.role.as_str()
        )));
    }
    if request.subject.trim().is_empty() || request.name.trim().is_empty() {
        return Err(TokenError::Invalid("a token needs a name and a subject".to_owned()));
    }
    let id = hex::encode(random::<6>());
    let secret = hex::encode(random::<32>());
    let token = store
        .create_token(NewToken {
            id: id.clone(),
            name: request.name,
            subject: request.subject,
            role: request.role,
            apps: request.apps,
            envs: request.envs,
            secret_hash: hash(&secret),
        })
        .await?;
    Ok(IssuedToken { token, presented: format!("lw_{id}_{secret}") })
}

/// The live token a presented one stands for, or `None` when it is unknown, revoked,
/// malformed or wrong.
pub async fn verify(store: &dyn Store, presented: &str) -> Result<Option<Token>, StoreError> {
    let Some((id, secret)) = presented.strip_prefix("lw_").and_then(|rest| rest.split_once('_')) else {
        return Ok(None);
    };
    let Some(token) = store.token(id).await? else {
        return Ok(None);
    };
    if token.revoked_at.is_some() || !constant_time_eq(hash(secret).as_bytes(), token.secret_hash.as_bytes()) {
        return Ok(None);
    }
    Ok(Some(token))
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes
}

/// The audit event of a token created or revoked by `by` (through `via`: "api",
/// "cli"): never its secret.
pub fn token_event(kind: AuditKind, token: &Token, by: &str, via: &str) -> NewEvent {
    let verb = if kind == AuditKind::TokenCreated { "created" } else { "revoked" };
    NewEvent::audit(
        kind,
        format!(
            "{by} {verb} {} token {} ({}) for {} ({via})",
            token.role.as_str(),
            token.id,
            token.name,
            token.subject
        ),
        serde_json::json!({
            "token": token.id, "role": token.role, "subject": token.subject,
            "apps": token.apps, "envs": token.envs, "by": by, "via": via,
        }),
    )
}

/// Equal, without an early exit that would tell an attacker how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// What a request is allowed to do, by the caller's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Read runs, releases, status, audit, metrics.
    Read,
    /// Start deploys, rollbacks and task runs.
    Deploy,
    /// Approve or reject runs.
    Approve,
    /// Manage tokens.
    Admin,
    /// Publish images for one app in one environment.
    Publish { app: String, env: String },
}

/// Why a token may not do something, in words for its holder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

/// Whether `token` may do `permission`, and if not, why not.
pub fn allows(token: &Token, permission: &Permission) -> Result<(), Forbidden> {
    let role = token.role;
    let needed = match permission {
        Permission::Read => Role::Viewer,
        Permission::Deploy => Role::Deployer,
        Permission::Approve => Role::Approver,
        Permission::Admin => Role::Admin,
        Permission::Publish { app, env } => {
            if role == Role::CiPublisher {
                return if token.apps.contains(app) && token.envs.contains(env) {
                    Ok(())
                } else {
                    Err(Forbidden(format!(
                        "token {} may publish only for apps {} in environments {}, not {app} in {env}",
                        token.id,
                        token.apps.join(", "),
                        token.envs.join(", ")
                    )))
                };
            }
            Role::Deployer
        }
    };
    if role != Role::CiPublisher && role >= needed {
        Ok(())
    } else {
        Err(Forbidden(format!("a {} token may not do this (it needs the {} role)", role.as_str(), needed.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, apps: &[&str], envs: &[&str]) -> Token {
        Token {
            id: "abc".into(),
            name: "t".into(),
            subject: "someone".into(),
            role,
            apps: apps.iter().map(|app| app.to_string()).collect(),
            envs: envs.iter().map(|env| env.to_string()).collect(),
            secret_hash: String::new(),
            created_at: 0,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn roles_include_the_ones_below_and_ci_publishers_only_publish_in_scope() {
        let publish = |app: &str, env: &str| Permission::Publish { app: app.into(), env: env.into() };
        let cases = [
            (Role::Viewer, [true, false, false, false, false]),
            (Role::Deployer, [true, true, false, false, true]),
            (Role::Approver, [true, true, true, false, true]),
            (Role::Admin, [true, true, true, true, true]),
        ];
        for (role, expected) in cases {
            let token = token(role, &[], &[]);
            let allowed =
                [Permission::Read, Permission::Deploy, Permission::Approve, Permission::Admin, publish("web", "prod")]
                    .map(|permission| allows(&token, &permission).is_ok());
            assert_eq!(allowed, expected, "{role:?}");
        }
        let ci = token(Role::CiPublisher, &["web"], &["dev", "stg"]);
        assert!(allows(&ci, &publish("web", "stg")).is_ok());
        assert!(allows(&ci, &publish("web", "prod")).is_err());
        assert!(allows(&ci, &publish("api", "dev")).is_err());
        for permission in [Permission::Read, Permission::Deploy, Permission::Approve, Permission::Admin] {
            assert!(allows(&ci, &permission).is_err(), "{permission:?}");
        }
    }

    #[test]
    fn hashes_compare_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
