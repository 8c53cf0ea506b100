//! The figures in BENCHMARKS.md: `cargo bench -p launchway --bench figures`.
//!
//! 1. Deploy overhead: the wall time of `launchway deploy` for a rolling update of 3
//!    replicas, minus the time spent inside the Docker engine and the containers
//!    (creating, starting and stopping containers, and the app starting until its
//!    health check passes), which launchway records for each replica in its events.
//! 2. Validating and planning 1,000 apps from one config repo: wall time and peak
//!    memory of `launchway validate` and `launchway plan`.
//!
//! Needs a Docker engine, like the tests; prints a table, asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::World;

const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        deploy_overhead().await;
        thousand_apps().await;
    });
}

fn web(version: usize) -> String {
    format!(
        "
environments:
  {{env}}: {{target: docker}}
services:
  web:
    image: {{image}}
    port: 8080
    replicas: 3
    env: {{SAMPLE_MESSAGE: v{version}}}
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
    stop_grace_period: 2s
    strategy:
      rolling: {{max_surge: 1, max_unavailable: 0}}
"
    )
}

struct Measured {
    wall: Duration,
    engine: Duration,
}

impl Measured {
    fn overhead(&self) -> Duration {
        self.wall.saturating_sub(self.engine)
    }
}

async fn deploy_overhead() {
    let world = World::new().await;
    println!("deploy overhead: `launchway deploy` of a 3-replica service, health-checked");
    println!("{:<22} {:>9} {:>18} {:>10}", "deploy", "wall", "engine+containers", "overhead");
    let mut rolling = Vec::new();
    for version in 0..=ROUNDS {
        world.commit(&web(version), &format!("v{version}"));
        let measured = measure_deploy(&world).await;
        let label = if version == 0 { "create (3 new)".to_owned() } else { format!("rolling update #{version}") };
        println!(
            "{label:<22} {:>8.0}ms {:>16.0}ms {:>8.0}ms",
            ms(measured.wall),
            ms(measured.engine),
            ms(measured.overhead())
        );
        if version > 0 {
            rolling.push(measured);
        }
    }
    let mut overheads: Vec<Duration> = rolling.iter().map(Measured::overhead).collect();
    overheads.sort();
    let mut walls: Vec<Duration> = rolling.iter().map(|m| m.wall).collect();
    walls.sort();
    println!(
        "median of {ROUNDS} rolling updates: wall {:.0} ms, launchway overhead {:.0} ms",
        ms(walls[ROUNDS / 2]),
        ms(overheads[ROUNDS / 2])
    );
    println!();
}

async fn measure_deploy(world: &World) -> Measured {
    let started = Instant::now();
    let deploy = world.launchway(&["deploy", "--output", "json"]).await;
    let wall = started.elapsed();
    deploy.assert_exit(0);
    let report: serde_json::Value = serde_json::from_str(&deploy.stdout()).expect("deploy prints JSON");
    let run_id = report["runs"][0]["id"].as_i64().expect("a run");
    let details = world.run_details(run_id).await;
    Measured { wall, engine: engine_time(&details["events"]) }
}

/// The union of the intervals the run's events attribute to Docker and the containers:
/// each container start and stop call (`took_ms`), and each app's wait from started to
/// healthy (`after_ms`).
fn engine_time(events: &serde_json::Value) -> Duration {
    let mut intervals: Vec<(i64, i64)> = Vec::new();
    for event in events.as_array().expect("events") {
        let at = event["at"].as_i64().expect("time");
        let data = &event["data"];
        let span = match event["kind"].as_str() {
            Some("replica.started" | "replica.stopped") => data["took_ms"].as_i64(),
            Some("replica.healthy") => data["after_ms"].as_i64(),
            _ => None,
        };
        if let Some(span) = span {
            intervals.push((at - span, at));
        }
    }
    intervals.sort();
    let mut total = 0;
    let mut current: Option<(i64, i64)> = None;
    for (start, end) in intervals {
        match current {
            Some((from, to)) if start <= to => current = Some((from, to.max(end))),
            Some((from, to)) => {
                total += to - from;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    if let Some((from, to)) = current {
        total += to - from;
    }
    Duration::from_millis(total.max(0) as u64)
}

async fn thousand_apps() {
    let world = World::new().await;
    let apps = 1000;
    world.repo.write("launchway.yaml", &"environments:\n  {env}: {target: docker}\n".replace("{env}", &world.env));
    for index in 0..apps {
        world.repo.write(
            &format!("apps/app-{index:04}.yaml"),
            &format!(
                "services:
  app-{index:04}:
    image: registry.example.com/team/app-{index:04}:1.{index}
    command: [serve, --port, '8080']
    port: 8080
    replicas: 2
    env: {{LOG_LEVEL: info, REGION: ap-northeast-1, FEATURE_{index}: 'on'}}
    health: {{path: /healthz, interval: 5s, timeout: 2s, start_period: 10s}}
    strategy:
      rolling: {{max_surge: 25%, max_unavailable: 0}}
"
            ),
        );
    }
    world.repo.commit("1,000 apps");
    println!("{apps} apps in one config repo ({} manifest files)", apps + 1);
    println!("{:<40} {:>9} {:>12}", "command", "wall", "peak memory");
    let repo = world.repo.path().display().to_string();
    for args in [vec!["validate", repo.as_str()], vec!["plan", "--output", "json"]] {
        let mut samples = Vec::new();
        for _ in 0..3 {
            let mut command = world.command(&args);
            command.env("LAUNCHWAY_REPORT_RESOURCES", "1");
            let started = Instant::now();
            let output = tokio::task::spawn_blocking(move || command.output()).await.expect("thread").expect("runs");
            let wall = started.elapsed();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let stderr = String::from_utf8_lossy(&output.stderr);
            let peak_kib: u64 = stderr
                .lines()
                .find_map(|line| line.strip_prefix("launchway: peak-rss-kib="))
                .and_then(|value| value.parse().ok())
                .expect("launchway reports its peak memory");
            samples.push((wall, peak_kib));
        }
        samples.sort();
        let (wall, peak_kib) = samples[1];
        let shown = if args[0] == "validate" {
            "launchway validate <repo>".to_owned()
        } else {
            "launchway plan --output json".to_owned()
        };
        println!("{shown:<40} {:>7.0}ms {:>9.1} MiB", ms(wall), peak_kib as f64 / 1024.0);
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
