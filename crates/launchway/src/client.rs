//! Talking to a launchway server (`--server`, `--token`) instead of the local database,
//! with the API's own wire types (`launchway-api`).

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use launchway_api::RunDetail;
use launchway_store::{Run, RunState};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::Output;

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// How often a followed run is looked at again: a person is watching, not a pipeline.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Client {
    /// Follows a run the server drives, printing its events as they come, until it ends
    /// or waits for someone (approval).
    pub async fn follow_run(&self, run_id: i64, output: Output, started: Instant) -> Result<Run> {
        let mut shown = 0;
        let mut printer = crate::output::EventPrinter::new(output, started);
        loop {
            let detail: RunDetail = self.get(&format!("/api/v1/runs/{run_id}")).await?;
            for event in detail.events.iter().skip(shown) {
                printer.print(event);
            }
            shown = detail.events.len();
            if detail.run.state.is_terminal() || detail.run.state == RunState::AwaitingApproval {
                printer.finish();
                return Ok(detail.run);
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }

    pub fn new(base: &str, token: Option<&str>) -> Result<Client> {
        let token = token
            .filter(|token| !token.is_empty())
            .ok_or_else(|| anyhow!("--server needs a token: pass --token or set LAUNCHWAY_TOKEN"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("launchway/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("could not create an HTTP client")?;
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    pub async fn get<A: DeserializeOwned>(&self, path: &str) -> Result<A> {
        self.call(Method::GET, path, &[], None::<&()>).await
    }

    /// GET with query parameters (those without a value are left out).
    pub async fn get_query<A: DeserializeOwned>(&self, path: &str, query: &[(&str, Option<String>)]) -> Result<A> {
        self.call(Method::GET, path, query, None::<&()>).await
    }

    pub async fn post<B: Serialize, A: DeserializeOwned>(&self, path: &str, body: &B) -> Result<A> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    pub async fn delete<A: DeserializeOwned>(&self, path: &str) -> Result<A> {
        self.call(Method::DELETE, path, &[], None::<&()>).await
    }

    async fn call<B: Serialize, A: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<&B>,
    ) -> Result<A> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("--server {} is not a URL", self.base))?;
        for (name, value) in query {
            if let Some(value) = value {
                url.query_pairs_mut().append_pair(name, value);
            }
        }
        let mut request = self.http.request(method.clone(), url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("could not reach {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let message = value["error"].as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            bail!("the server answered {status} to {method} {path}: {message}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("the server's answer to {method} {path} is not what this version reads"))
    }
}
