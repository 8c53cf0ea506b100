//! The strategies' figures in BENCHMARKS.md: `cargo bench -p launchway --bench strategies`.
//!
//! On the local Docker engine, through launchway's entry point: v1 of a two-replica web
//! service is deployed behind `ingress:`; four clients send requests back to back through
//! the entry point; v2 is deployed with each strategy in turn (and once as a release
//! that fails its health check, which rolls back); the clients go on until 10,000
//! requests have been sent. Printed per strategy: requests and failed requests, how long
//! `launchway deploy` took, and when v2 had all the traffic (the run's `traffic.shifted`
//! event at 100% or its `promote` step's end, or, for a rolling update, the run's end),
//! from the deploy's start.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use launchway_testkit::{Load, LoadResult, free_port};
use support::World;
use support::ingress::{TestProxy, WEB, deploy, output, progressive};

struct Scenario {
    name: &'static str,
    /// Under `strategy:`; empty for the rolling update.
    strategy: &'static str,
    /// v2's extra environment lines.
    v2_extra: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario { name: "rolling update (1 at a time)", strategy: "", v2_extra: "" },
    Scenario { name: "blue/green, bake 1s", strategy: "      blue_green: {bake: 1s}\n", v2_extra: "" },
    Scenario {
        name: "canary 20% for 2s, 60% for 2s",
        strategy: "      canary: {steps: [{weight: 20, pause: 2s}, {weight: 60, pause: 2s}]}\n",
        v2_extra: "",
    },
    Scenario { name: "linear 25% every 1s", strategy: "      linear: {step: 25, pause: 1s}\n", v2_extra: "" },
    Scenario { name: "rollback: v2 fails its health check", strategy: "", v2_extra: "      SAMPLE_HEALTH: fail\n" },
];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("| strategy | requests | failed | deploy took | v2 has all traffic after |");
        println!("|---|---|---|---|---|");
        for scenario in SCENARIOS {
            run(scenario).await;
        }
    });
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

async fn run(scenario: &Scenario) {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let manifest = |message: &str, extra: &str| match scenario.strategy {
        "" => WEB
            .replace("{message}", message)
            .replace("{ingress}", &ingress.to_string())
            .replace("      SAMPLE_MESSAGE:", &format!("{extra}      SAMPLE_MESSAGE:")),
        strategy => progressive(ingress, message, extra, strategy),
    };
    world.commit(&manifest("v1", ""), "web v1");
    deploy(&world, &proxy).await;
    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    world.commit(&manifest("v2", scenario.v2_extra), "web v2");
    let since = now_ms();
    let started = Instant::now();
    let deployed = output(proxy.deploy_command(&world)).await;
    let took = started.elapsed();
    load.until_sent(10_000, Duration::from_secs(120)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;

    let audit = world.launchway(&["audit", "--output", "json", "--limit", "1000"]).await;
    let events: Vec<serde_json::Value> = serde_json::from_str(&audit.stdout()).expect("the audit log as JSON");
    let switched = events
        .iter()
        .filter(|event| event["at"].as_i64().is_some_and(|at| at >= since))
        .filter(|event| match scenario.strategy {
            "" => event["kind"] == "run.succeeded",
            // Blue/green gives it everything at its step; a canary when it is promoted.
            _ => {
                (event["kind"] == "traffic.shifted" && event["data"]["weight"] == 100)
                    || (event["kind"] == "step.finished" && event["data"]["step"] == "promote")
            }
        })
        .filter_map(|event| event["at"].as_i64())
        .min();
    let switched = match (deployed.status.code(), switched) {
        (Some(5), _) => "never (rolled back)".to_owned(),
        (_, Some(at)) => format!("{:.2} s", (at - since) as f64 / 1000.0),
        (code, None) => format!("not seen (exit {code:?})"),
    };
    println!("| {} | {} | {failed} | {:.2} s | {switched} |", scenario.name, answers.len(), took.as_secs_f64());
}
