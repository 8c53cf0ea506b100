//! A `launchway server` process for a test world, and what tests use to talk to it: its
//! API over real HTTP, tokens made with the CLI, and a chat receiver to notify.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use super::World;

pub const WEBHOOK_SECRET: &str = "it-is-a-secret";

/// A running `launchway server`, killed when dropped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts the server on a free port with the webhook secret set and polling
    /// effectively off (tests trigger it), and waits until it listens.
    pub fn start(world: &World) -> ServerProcess {
        ServerProcess::spawn(world.command(&[]))
    }

    /// Starts the server polling the config repo every `poll` (like "500ms").
    pub fn start_polling(world: &World, poll: &str) -> ServerProcess {
        ServerProcess::spawn_with(world.command(&[]), poll, &[])
    }

    /// Starts the server with more arguments (`--max-connections 64`…).
    pub fn start_with(world: &World, args: &[&str]) -> ServerProcess {
        ServerProcess::spawn_with(world.command(&[]), "1h", args)
    }

    /// Starts `launchway server` from a command already pointed at a repo and database.
    pub fn spawn(command: std::process::Command) -> ServerProcess {
        ServerProcess::spawn_with(command, "1h", &[])
    }

    fn spawn_with(mut command: std::process::Command, poll: &str, args: &[&str]) -> ServerProcess {
        command
            .args(["server", "--listen", "127.0.0.1:0", "--poll", poll])
            .args(args)
            .env("LAUNCHWAY_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("LAUNCHWAY_LOG", "launchway=info,launchway_server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("launchway server starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = std::sync::mpsc::channel();
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("launchway server on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = found.send(addr);
                }
                keep.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = match address.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start:\n{}", log.lock().unwrap());
            }
        };
        ServerProcess { addr, child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Resident memory in KiB, from `/proc/PID/status`: `VmRSS`, `RssAnon` (the heap,
    /// stacks) or `RssFile` (the binary's pages read from disk).
    pub fn resident_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// How many file descriptors the server has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    /// SIGKILL: no shutdown, no cleanup, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("the server exits")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON API with one token.
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A response: its status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn new(server: &ServerProcess, token: Option<&str>) -> Api {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        Api { base: format!("http://{}", server.addr), token: token.map(str::to_owned), http }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Answer {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// Waits until `GET /api/v1/runs/{id}` shows the run in one of `states`.
    pub async fn wait_for_run(&self, id: i64, states: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let answer = self.get(&format!("/api/v1/runs/{id}")).await;
            let state = answer.body["run"]["state"].as_str().unwrap_or_default().to_owned();
            if states.contains(&state.as_str()) {
                return answer.body;
            }
            assert!(Instant::now() < deadline, "run {id} is still {state}, not {states:?}: {}", answer.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the runs list (newest first) satisfies `ready`, and returns it.
    pub async fn wait_for_runs(&self, query: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let answer = self.get(&format!("/api/v1/runs{query}")).await;
            let runs = answer.body.as_array().cloned().unwrap_or_default();
            if ready(&runs) {
                return runs;
            }
            assert!(Instant::now() < deadline, "runs never got ready: {}", answer.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the audit log has an entry of `kind` for the run.
    pub async fn wait_for_event(&self, run: i64, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let answer = self.get(&format!("/api/v1/audit?run={run}&limit=1000")).await;
            if let Some(event) = answer.body.as_array().into_iter().flatten().find(|event| event["kind"] == kind) {
                return event.clone();
            }
            assert!(Instant::now() < deadline, "run {run} never logged {kind}: {}", answer.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Creates a token with the CLI against the world's database; returns its secret.
pub async fn token(world: &World, role: &str, subject: &str, scope: &[(&str, &str)]) -> String {
    let mut args = vec!["token", "create", "--name", "test", "--subject", subject, "--role", role, "--output", "json"];
    for (flag, value) in scope {
        args.push(flag);
        args.push(value);
    }
    let run = world.launchway(&args).await;
    run.assert_exit(0);
    let created: Value = serde_json::from_str(&run.stdout()).expect("token create prints JSON");
    created["secret"].as_str().expect("a secret").to_owned()
}

/// A local HTTP endpoint standing in for Slack or a webhook consumer: it keeps every
/// body it receives and answers with `status`.
pub struct Receiver {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        Receiver::start_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), status)
    }

    /// A receiver at an address chosen beforehand (see [`unused_local_address`]).
    pub async fn start_at(addr: SocketAddr, status: u16) -> Receiver {
        Receiver::start_on(tokio::net::TcpListener::bind(addr).await.expect("the address is still free"), status)
    }

    fn start_on(listener: tokio::net::TcpListener, status: u16) -> Receiver {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route(
                "/hook",
                post(move |State(bodies): State<Arc<Mutex<Vec<Value>>>>, body: axum::Json<Value>| async move {
                    bodies.lock().unwrap().push(body.0);
                    StatusCode::from_u16(status).unwrap()
                }),
            )
            .with_state(bodies.clone());
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, bodies }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until a body satisfies `wanted`.
    pub async fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(body) = self.bodies().into_iter().find(|body| wanted(body)) {
                return body;
            }
            assert!(Instant::now() < deadline, "no such notification arrived; got {:#?}", self.bodies());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One web service with `replicas` in one environment, fed by `source` (`branch: dev`,
/// `approval: true`…): the manifest most server tests deploy.
pub fn web_manifest(source: &str, replicas: u32) -> String {
    format!(
        "
environments:
  {{env}}: {{target: docker, {source}}}
services:
  web:
    image: {{image}}
    port: 8080
    replicas: {replicas}
    stop_grace_period: 1s
    settle_window: 300ms
"
    )
}

/// A loopback address nothing listens on (until a test starts something there).
pub fn unused_local_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A GitHub push webhook body for `git_ref` at `commit`.
pub fn github_push(git_ref: &str, commit: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"ref": git_ref, "after": commit, "repository": {"name": "config"}})).unwrap()
}
