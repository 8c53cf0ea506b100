//! The proxy's figures in BENCHMARKS.md: `cargo bench -p launchway --bench proxy`.
//!
//! One backend (`launchway sample-app`, its own process) and, in front of it, each proxy
//! in turn, every one its own process on loopback: `launchway proxy`, nginx and HAProxy
//! (Debian's packages; a proxy that is not installed is left out and said so). For each,
//! requests sent at a steady 1,000 per second for 5 s (after 1 s not counted) give the
//! latency p50 and p99, compared with the same requests sent to the backend directly;
//! then 32 clients sending back to back for 3 s give the throughput; then the proxy's
//! resident memory. The client runs in this process, on the same two cores as the
//! proxies and the backend: every proxy is measured under the same conditions.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Process, ms, percentile, spawn, wait_for};
use launchway_testkit::free_port;

const RATE: u64 = 1000;
const MEASURED: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

impl Process {
    /// Resident memory of the process and its children (nginx's workers), in MiB.
    fn resident_mib(&self) -> f64 {
        let pid = self.0.id();
        let mut pids = vec![pid];
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            pids.extend(children.split_whitespace().filter_map(|child| child.parse::<u32>().ok()));
        }
        let kib: u64 = pids
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                status.lines().find_map(|line| {
                    line.strip_prefix("VmRSS:")?.trim().trim_end_matches(" kB").trim().parse::<u64>().ok()
                })
            })
            .sum();
        kib as f64 / 1024.0
    }
}

fn nginx(dir: &Path, port: u16, backend: u16) -> Option<Process> {
    if !Path::new("/usr/sbin/nginx").exists() {
        return None;
    }
    let config = format!(
        "daemon off; worker_processes auto; pid {dir}/nginx.pid; error_log {dir}/nginx.log;
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
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).expect("config");
    Some(spawn(Command::new("/usr/sbin/nginx").arg("-p").arg(dir).arg("-c").arg(&path)))
}

fn haproxy(dir: &Path, port: u16, backend: u16) -> Option<Process> {
    if !Path::new("/usr/sbin/haproxy").exists() {
        return None;
    }
    let config = format!(
        "global
  nbthread 2
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
  server replica 127.0.0.1:{backend}
"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("config");
    Some(spawn(Command::new("/usr/sbin/haproxy").arg("-db").arg("-f").arg(&path)))
}

/// Latencies of requests sent at a steady rate, the warm-up left out, sorted.
async fn steady(url: &str) -> Vec<Duration> {
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(256).build().expect("client");
    let started = Instant::now();
    let total = (WARM_UP + MEASURED).as_millis() as u64 * RATE / 1000;
    let mut tasks = Vec::with_capacity(total as usize);
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..total {
        ticks.tick().await;
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = http.get(&url).send().await.expect("answered");
            assert!(answer.status().is_success(), "{url}: {}", answer.status());
            answer.bytes().await.expect("body");
            (sent, sent.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        let (sent, took) = task.await.expect("request");
        if sent.duration_since(started) >= WARM_UP {
            latencies.push(took);
        }
    }
    latencies.sort();
    latencies
}

/// Requests per second from 32 clients sending back to back for 3 s.
async fn throughput(url: &str) -> f64 {
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let running = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (http, url, running, done) = (http.clone(), url.to_owned(), running.clone(), done.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    if let Ok(answer) = http.get(&url).send().await
                        && answer.bytes().await.is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    done.load(Ordering::Relaxed) as f64 / 3.0
}

async fn run() {
    let dir = tempfile::tempdir().expect("dir");
    let backend_port = free_port();
    let _backend = spawn(
        Command::new(support::binary())
            .arg("sample-app")
            .env("PORT", backend_port.to_string())
            .env("SAMPLE_MESSAGE", "bench"),
    );
    let direct = format!("http://127.0.0.1:{backend_port}/");
    wait_for(&direct).await;

    let (launchway_port, admin_port) = (free_port(), free_port());
    let launchway = spawn(
        Command::new(support::binary())
            .args(["proxy", "--listen-ip", "127.0.0.1", "--admin", &format!("127.0.0.1:{admin_port}"), "--state"])
            .arg(dir.path().join("routes.json")),
    );
    wait_for(&format!("http://127.0.0.1:{admin_port}/healthz")).await;
    let route = serde_json::json!({"name": "bench", "port": launchway_port,
        "backends": [{"address": format!("127.0.0.1:{backend_port}")}]});
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let routed = http.put(format!("http://127.0.0.1:{admin_port}/routes")).json(&route).send().await.expect("answered");
    assert!(routed.status().is_success(), "{}", routed.status());

    let nginx_port = free_port();
    let nginx = nginx(dir.path(), nginx_port, backend_port);
    let haproxy_port = free_port();
    let haproxy = haproxy(dir.path(), haproxy_port, backend_port);

    let mut targets: Vec<(&str, String, Option<&Process>)> = vec![
        ("direct to the backend", direct.clone(), None),
        ("launchway proxy", format!("http://127.0.0.1:{launchway_port}/"), Some(&launchway)),
    ];
    match &nginx {
        Some(process) => {
            targets.push(("nginx 1.22 (Debian)", format!("http://127.0.0.1:{nginx_port}/"), Some(process)))
        }
        None => println!("nginx is not installed (/usr/sbin/nginx): left out"),
    }
    match &haproxy {
        Some(process) => {
            targets.push(("HAProxy 2.6 (Debian)", format!("http://127.0.0.1:{haproxy_port}/"), Some(process)))
        }
        None => println!("HAProxy is not installed (/usr/sbin/haproxy): left out"),
    }
    for (_, url, _) in &targets {
        wait_for(url).await;
    }

    println!(
        "proxy overhead on loopback: {RATE} requests/s for {}s (latency), 32 clients for 3s (throughput)",
        MEASURED.as_secs()
    );
    println!(
        "{:<24} {:>9} {:>9} {:>12} {:>12} {:>12} {:>10}",
        "", "p50", "p99", "added p50", "added p99", "requests/s", "memory"
    );
    let mut baseline = None;
    for (name, url, process) in &targets {
        let latencies = steady(url).await;
        let (p50, p99) = (percentile(&latencies, 50), percentile(&latencies, 99));
        let (base50, base99) = *baseline.get_or_insert((p50, p99));
        let rate = throughput(url).await;
        let memory = process.map_or_else(|| "-".to_owned(), |process| format!("{:.1} MiB", process.resident_mib()));
        println!(
            "{name:<24} {:>7.2}ms {:>7.2}ms {:>10.2}ms {:>10.2}ms {rate:>12.0} {memory:>10}",
            ms(p50),
            ms(p99),
            ms(p50) - ms(base50),
            ms(p99) - ms(base99)
        );
    }
}
