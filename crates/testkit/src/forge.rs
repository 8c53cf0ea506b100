//! A stand-in for GitHub's and GitLab's REST APIs, and for Slack's Web API, on loopback,
//! recording every request it receives (method, path, headers, JSON body), for tests of
//! what launchway tells a forge or a chat: commit statuses, pull request comments, Slack
//! messages posted and edited. It keeps what was posted to a path and lists it back on a
//! GET of that path, with ids, as both forges list comments and statuses; Slack's
//! `chat.postMessage` and `chat.update` are answered as Slack does (`ok`, `channel`,
//! `ts`; a channel named `C-MISSING` is refused with `channel_not_found`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct ForgeRequest {
    pub method: String,
    /// The path, query left out (`/repos/o/r/statuses/3f9a…`).
    pub path: String,
    /// Header names lowercase.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Recorded {
    requests: Vec<ForgeRequest>,
}

/// The fake forge; it stops with the test's runtime.
pub struct FakeForge {
    /// Its API base URL: `http://127.0.0.1:PORT`.
    pub url: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl FakeForge {
    pub async fn start() -> FakeForge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let recorded: Arc<Mutex<Recorded>> = Arc::default();
        let app = Router::new().fallback(answer).with_state(recorded.clone());
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the fake forge serves") });
        FakeForge { url, recorded }
    }

    /// Every request so far, in the order received.
    pub fn requests(&self) -> Vec<ForgeRequest> {
        self.recorded.lock().expect("not poisoned").requests.clone()
    }

    /// Waits until the requests so far satisfy `enough` (for 60 s at most), and returns them.
    pub async fn wait_for(&self, enough: impl Fn(&[ForgeRequest]) -> bool) -> Vec<ForgeRequest> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let requests = self.requests();
            if enough(&requests) {
                return requests;
            }
            assert!(Instant::now() < deadline, "the forge never got what was expected; it got {requests:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    let path = uri.path().to_owned();
    let mut recorded = recorded.lock().expect("not poisoned");
    let request = ForgeRequest { method: method.to_string(), path: path.clone(), headers, body: body.clone() };
    recorded.requests.push(request);
    if method == Method::GET {
        // What was posted here, with ids, as the forges list what a path holds.
        let listed: Vec<Value> = recorded
            .requests
            .iter()
            .enumerate()
            .filter(|(_, request)| request.method == "POST" && request.path == path)
            .map(|(index, request)| json!({"id": index + 1, "body": request.body.get("body"), "state": request.body.get("state")}))
            .collect();
        return (StatusCode::OK, axum::Json(Value::Array(listed)));
    }
    let id = recorded.requests.len();
    if path.ends_with("/chat.postMessage") || path.ends_with("/chat.update") {
        let channel = body["channel"].clone();
        if channel == "C-MISSING" {
            return (StatusCode::OK, axum::Json(json!({"ok": false, "error": "channel_not_found"})));
        }
        let ts = match body.get("ts") {
            Some(ts) => ts.clone(),
            None => json!(format!("{id}.000100")),
        };
        return (StatusCode::OK, axum::Json(json!({"ok": true, "channel": channel, "ts": ts})));
    }
    let mut created = body;
    if let Some(object) = created.as_object_mut() {
        object.insert("id".to_owned(), json!(id));
    }
    (StatusCode::CREATED, axum::Json(created))
}
