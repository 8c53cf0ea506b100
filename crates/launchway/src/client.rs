//! Talking to a launchway server (`--server`, `--token`) instead of the local database,
//! with the API's own wire types (`launchway-api`).

use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
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
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, A: DeserializeOwned>(&self, path: &str, body: &B) -> Result<A> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete<A: DeserializeOwned>(&self, path: &str) -> Result<A> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    async fn call<B: Serialize, A: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<A> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.token);
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
