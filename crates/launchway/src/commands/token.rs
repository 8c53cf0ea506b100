//! `launchway token create|list|revoke`.

use anyhow::{Result, anyhow};
use launchway_api::{IssuedToken, RevokedToken, TokenRequest as ApiTokenRequest};
use launchway_engine::access::{self as auth, TokenRequest};
use launchway_store::{AuditKind, Role, Token};
use serde::Serialize;

use crate::cli::{Output, TokenCommand};
use crate::context::Context;
use crate::exit;
use crate::output::{print_json, table, timestamp};

/// What a token command answers, from the server or the local database alike.
#[derive(Serialize)]
#[serde(untagged)]
enum TokenAnswer {
    Issued(IssuedToken),
    Listed(Vec<Token>),
    Revoked(RevokedToken),
}

pub async fn run(context: &Context, command: TokenCommand) -> Result<u8> {
    if let Some(server) = context.server()? {
        let answer = match &command {
            TokenCommand::Create { name, subject, role, apps, envs } => {
                let request = ApiTokenRequest {
                    name: name.clone(),
                    subject: subject.clone(),
                    role: role.clone(),
                    apps: apps.clone(),
                    envs: envs.clone(),
                };
                TokenAnswer::Issued(server.post("/api/v1/tokens", &request).await?)
            }
            TokenCommand::List => TokenAnswer::Listed(server.get("/api/v1/tokens").await?),
            TokenCommand::Revoke { id } => TokenAnswer::Revoked(server.delete(&format!("/api/v1/tokens/{id}")).await?),
        };
        return print_answer(context, &answer);
    }

    let engine = context.engine().await?;
    let store = engine.store();
    let by = context.identity();
    let answer = match &command {
        TokenCommand::Create { name, subject, role, apps, envs } => {
            let role = Role::parse(role).ok_or_else(|| {
                anyhow!("unknown role {role:?}: use viewer, deployer, approver, admin or ci-publisher")
            })?;
            let request = TokenRequest {
                name: name.clone(),
                subject: subject.clone(),
                role,
                apps: apps.clone(),
                envs: envs.clone(),
            };
            let issued = auth::issue(store.as_ref(), request).await.map_err(|error| anyhow!("{error}"))?;
            engine.record(auth::token_event(AuditKind::TokenCreated, &issued.token, &by, "cli")).await?;
            TokenAnswer::Issued(IssuedToken { token: issued.token, secret: issued.presented })
        }
        TokenCommand::List => TokenAnswer::Listed(store.tokens().await?),
        TokenCommand::Revoke { id } => {
            let token = store.token(id).await?.ok_or_else(|| anyhow!("no token {id}"))?;
            let revoked = store.revoke_token(id).await?;
            if revoked {
                engine.record(auth::token_event(AuditKind::TokenRevoked, &token, &by, "cli")).await?;
            }
            TokenAnswer::Revoked(RevokedToken { id: id.clone(), revoked })
        }
    };
    print_answer(context, &answer)
}

fn print_answer(context: &Context, answer: &TokenAnswer) -> Result<u8> {
    if context.output() == Output::Json {
        print_json(answer);
        return Ok(exit::SUCCESS);
    }
    match answer {
        TokenAnswer::Issued(issued) => {
            println!("{}", issued.secret);
            eprintln!(
                "created {} token {} for {}: the secret above is shown only now; keep it somewhere safe",
                issued.token.role.as_str(),
                issued.token.id,
                issued.token.subject,
            );
        }
        TokenAnswer::Listed(tokens) => {
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|token| {
                    let scope = if token.apps.is_empty() {
                        String::new()
                    } else {
                        format!("{} in {}", token.apps.join(","), token.envs.join(","))
                    };
                    vec![
                        token.id.clone(),
                        token.name.clone(),
                        token.subject.clone(),
                        token.role.as_str().to_owned(),
                        scope,
                        token.last_used_at.map(timestamp).unwrap_or_else(|| "never".to_owned()),
                        if token.revoked_at.is_some() { "revoked".to_owned() } else { "live".to_owned() },
                    ]
                })
                .collect();
            println!("{}", table(&["ID", "NAME", "SUBJECT", "ROLE", "SCOPE", "LAST USED", "STATE"], &rows));
        }
        TokenAnswer::Revoked(RevokedToken { id, revoked }) => {
            if *revoked {
                println!("revoked token {id}");
            } else {
                println!("token {id} was already revoked");
            }
        }
    }
    Ok(exit::SUCCESS)
}
