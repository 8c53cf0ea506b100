//! `launchway token create|list|revoke`.

use anyhow::{Result, anyhow};
use launchway_server::auth::{self, TokenRequest};
use launchway_store::{Role, Token};
use serde_json::{Value, json};

use crate::cli::{Output, TokenCommand};
use crate::context::Context;
use crate::exit;
use crate::output::{print_json, table, timestamp};

pub async fn run(context: &Context, command: TokenCommand) -> Result<u8> {
    if let Some(server) = context.server()? {
        let answer = match &command {
            TokenCommand::Create { name, subject, role, apps, envs } => {
                server
                    .post(
                        "/api/v1/tokens",
                        json!({"name": name, "subject": subject, "role": role, "apps": apps, "envs": envs}),
                    )
                    .await?
            }
            TokenCommand::List => server.get("/api/v1/tokens").await?,
            TokenCommand::Revoke { id } => server.delete(&format!("/api/v1/tokens/{id}")).await?,
        };
        return print_answer(context, &command, answer);
    }

    let engine = context.engine().await?;
    let store = engine.store();
    let by = context.identity(None);
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
            engine.record(auth::token_event("token.created", &issued.token, &by, "cli")).await?;
            json!({"token": issued.token, "secret": issued.presented})
        }
        TokenCommand::List => serde_json::to_value(store.tokens().await?)?,
        TokenCommand::Revoke { id } => {
            let token = store.token(id).await?.ok_or_else(|| anyhow!("no token {id}"))?;
            let revoked = store.revoke_token(id).await?;
            if revoked {
                engine.record(auth::token_event("token.revoked", &token, &by, "cli")).await?;
            }
            json!({"id": id, "revoked": revoked})
        }
    };
    print_answer(context, &command, answer)
}

fn print_answer(context: &Context, command: &TokenCommand, answer: Value) -> Result<u8> {
    if context.output() == Output::Json {
        print_json(&answer);
        return Ok(exit::SUCCESS);
    }
    match command {
        TokenCommand::Create { .. } => {
            println!("{}", answer["secret"].as_str().unwrap_or_default());
            eprintln!(
                "created {} token {} for {}: the secret above is shown only now; keep it somewhere safe",
                answer["token"]["role"].as_str().unwrap_or_default(),
                answer["token"]["id"].as_str().unwrap_or_default(),
                answer["token"]["subject"].as_str().unwrap_or_default(),
            );
        }
        TokenCommand::List => {
            let tokens: Vec<Token> = serde_json::from_value(answer)?;
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
        TokenCommand::Revoke { id } => {
            if answer["revoked"] == true {
                println!("revoked token {id}");
            } else {
                println!("token {id} was already revoked");
            }
        }
    }
    Ok(exit::SUCCESS)
}
