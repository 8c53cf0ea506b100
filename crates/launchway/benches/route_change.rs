//! Behaviour on a route change, in BENCHMARKS.md: `cargo bench -p launchway --bench route_change`.
//!
//! Two backends (`launchway sample-app`, each its own process, answering "a" and "b") and,
//! in front of them, each proxy in turn: `launchway proxy` (the route replaced through its
//! admin API), HAProxy (both servers configured, the switch made through its runtime API:
//! b `ready`, a `maint`) and nginx (its upstream rewritten and the configuration reloaded
//! with SIGHUP, as a deploy tool driving nginx does). Requests go at a steady 1,000 a
//! second for 4 s; 1.5 s in, traffic moves from a to b (the switch made beside the
//! requests, which go on at their rate). Printed per proxy: how long the switch call took,
//! requests, failed requests, when (by the time it was sent, from the switch's start) the
//! last request a answered and the first b answered went out, and the p99 latency in the
//! second before and the second after the switch.
//! Proxies that are not installed are left out and said so.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Process, spawn, wait_for};
use launchway_testkit::free_port;

const RATE: u64 = 1000;
const RUN: Duration = Duration::from_secs(4);
const SWITCH_AT: Duration = Duration::from_millis(1500);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

/// How a proxy is told to move traffic from a to b.
enum Switch {
    /// (The admin API's client is made beforehand, as launchway's is.)
    Launchway {
        admin: u16,
        port: u16,
        b: u16,
        http: reqwest::Client,
    },
    HaProxy {
        socket: std::path::PathBuf,
    },
    Nginx {
        pid: u32,
        config: std::path::PathBuf,
        text: String,
    },
}

impl Switch {
    async fn apply(&self) {
        match self {
            Switch::Launchway { admin, port, b, http } => {
                let route = serde_json::json!({"name": "bench", "port": port,
                    "backends": [{"address": format!("127.0.0.1:{b}")}]});
                let answer =
                    http.put(format!("http://127.0.0.1:{admin}/routes")).json(&route).send().await.expect("answered");
                assert!(answer.status().is_success());
            }
            Switch::HaProxy { socket } => {
                for command in ["set server replicas/b state ready\n", "set server replicas/a state maint\n"] {
                    let mut stream = UnixStream::connect(socket).expect("HAProxy's runtime API");
                    stream.write_all(command.as_bytes()).expect("sent");
                    let mut answer = String::new();
                    std::io::Read::read_to_string(&mut stream, &mut answer).expect("answer");
                }
            }
            Switch::Nginx { pid, config, text } => {
                std::fs::write(config, text).expect("config");
                let sent = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");
                assert!(sent.success());
            }
        }
    }
}

fn haproxy(dir: &Path, port: u16, a: u16, b: u16) -> Option<(Process, Switch)> {
    if !Path::new("/usr/sbin/haproxy").exists() {
        return None;
    }
    let socket = dir.join("haproxy.sock");
    let config = format!(
        "global
  nbthread 2
  stats socket {} mode 600 level admin
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend entry
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  http-reuse always
  server a 127.0.0.1:{a}
  server b 127.0.0.1:{b} disabled
",
        socket.display()
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("config");
    let process = spawn(Command::new("/usr/sbin/haproxy").arg("-db").arg("-f").arg(&path));
    Some((process, Switch::HaProxy { socket }))
}

fn nginx_config(dir: &Path, port: u16, backend: u16) -> String {
    format!(
        "daemon off; worker_processes 2; pid {dir}/nginx.pid; error_log {dir}/nginx.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}
}}
",
        dir = dir.display()
    )
}

fn nginx(dir: &Path, port: u16, a: u16, b: u16) -> Option<(Process, Switch)> {
    if !Path::new("/usr/sbin/nginx").exists() {
        return None;
    }
    let config = dir.join("nginx.conf");
    std::fs::write(&config, nginx_config(dir, port, a)).expect("config");
    let process = spawn(Command::new("/usr/sbin/nginx").arg("-p").arg(dir).arg("-c").arg(&config));
    let pid = process.0.id();
    Some((process, Switch::Nginx { pid, config, text: nginx_config(dir, port, b) }))
}

/// One request's fate: when it was sent (from the run's start), how long it took, and
/// which backend answered (`None`: it failed).
struct Sent {
    at: Duration,
    took: Duration,
    from: Option<char>,
}

/// Requests at a steady rate for the run, the switch applied `SWITCH_AT` in.
async fn measure(url: &str, switch: &std::sync::Arc<Switch>) -> (Vec<Sent>, Duration, Duration) {
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(256).build().expect("client");
    let started = Instant::now();
    let total = RUN.as_millis() as u64 * RATE / 1000;
    let mut tasks = Vec::with_capacity(total as usize);
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut switched_at = None;
    let mut applying = None;
    for _ in 0..total {
        ticks.tick().await;
        if switched_at.is_none() && started.elapsed() >= SWITCH_AT {
            switched_at = Some(started.elapsed());
            // Beside the requests, which go on at their rate meanwhile.
            let switch = switch.clone();
            applying = Some(tokio::spawn(async move {
                let began = Instant::now();
                switch.apply().await;
                began.elapsed()
            }));
        }
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let at = started.elapsed();
            let sent = Instant::now();
            let answer = match http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(answer) if answer.status().is_success() => answer.text().await.ok(),
                _ => None,
            };
            Sent { at, took: sent.elapsed(), from: answer.and_then(|body| body.chars().next()) }
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await.expect("request"));
    }
    let applied = applying.expect("switched").await.expect("the switch");
    (sent, switched_at.expect("switched"), applied)
}

fn p99(mut latencies: Vec<Duration>) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort();
    latencies[(99 * latencies.len()).div_ceil(100).max(1) - 1].as_secs_f64() * 1000.0
}

async fn run() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (free_port(), free_port());
    let _backends: Vec<Process> = [(a, "a"), (b, "b")]
        .into_iter()
        .map(|(port, message)| {
            spawn(
                Command::new(support::binary())
                    .arg("sample-app")
                    .env("PORT", port.to_string())
                    .env("SAMPLE_MESSAGE", message),
            )
        })
        .collect();
    wait_for(&format!("http://127.0.0.1:{a}/")).await;
    wait_for(&format!("http://127.0.0.1:{b}/")).await;

    println!(
        "route change under {RATE} requests/s: a → b {:.1}s into a {:.0}s run",
        SWITCH_AT.as_secs_f64(),
        RUN.as_secs_f64()
    );
    println!(
        "| proxy | switch call took | requests | failed | last answer from a | first answer from b | p99 before / after |"
    );
    println!("|---|---|---|---|---|---|---|");

    let (port, admin) = (free_port(), free_port());
    let launchway = spawn(
        Command::new(support::binary())
            .args(["proxy", "--listen-ip", "127.0.0.1", "--admin", &format!("127.0.0.1:{admin}"), "--state"])
            .arg(dir.path().join("routes.json")),
    );
    wait_for(&format!("http://127.0.0.1:{admin}/healthz")).await;
    let route = serde_json::json!({"name": "bench", "port": port, "backends": [{"address": format!("127.0.0.1:{a}")}]});
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    http.put(format!("http://127.0.0.1:{admin}/routes")).json(&route).send().await.expect("routed");
    let mut proxies: Vec<(&str, u16, Process, std::sync::Arc<Switch>)> = vec![(
        "launchway proxy",
        port,
        launchway,
        std::sync::Arc::new(Switch::Launchway { admin, port, b, http: http.clone() }),
    )];
    let haproxy_port = free_port();
    match haproxy(dir.path(), haproxy_port, a, b) {
        Some((process, switch)) => {
            proxies.push(("HAProxy 2.6, runtime API", haproxy_port, process, std::sync::Arc::new(switch)))
        }
        None => println!("HAProxy is not installed (/usr/sbin/haproxy): left out"),
    }
    let nginx_port = free_port();
    match nginx(dir.path(), nginx_port, a, b) {
        Some((process, switch)) => {
            proxies.push(("nginx 1.22, reload", nginx_port, process, std::sync::Arc::new(switch)))
        }
        None => println!("nginx is not installed (/usr/sbin/nginx): left out"),
    }

    for (name, port, _process, switch) in &proxies {
        let url = format!("http://127.0.0.1:{port}/");
        wait_for(&url).await;
        let (sent, switched, applied) = measure(&url, switch).await;
        let failed = sent.iter().filter(|sent| sent.from.is_none()).count();
        let after = |at: Option<Duration>| {
            at.map_or_else(
                || "never".to_owned(),
                |at| format!("{:+.1} ms", (at.as_secs_f64() - switched.as_secs_f64()) * 1000.0),
            )
        };
        let last_a = sent.iter().filter(|sent| sent.from == Some('a')).map(|sent| sent.at).max();
        let first_b = sent.iter().filter(|sent| sent.from == Some('b')).map(|sent| sent.at).min();
        let window = |from: Duration, to: Duration| {
            sent.iter().filter(|sent| sent.at >= from && sent.at < to).map(|sent| sent.took).collect::<Vec<_>>()
        };
        let second = Duration::from_secs(1);
        let (before, after_switch) = (window(switched - second, switched), window(switched, switched + second));
        println!(
            "| {name} | {:.1} ms | {} | {failed} | {} | {} | {:.2} / {:.2} ms |",
            applied.as_secs_f64() * 1000.0,
            sent.len(),
            after(last_a),
            after(first_b),
            p99(before),
            p99(after_switch)
        );
    }
}
