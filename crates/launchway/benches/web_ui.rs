//! The web page's figures in BENCHMARKS.md: `cargo bench -p launchway --bench web_ui`.
//!
//! 1. The board with 1,000 apps × 3 environments: in headless Chromium (Debian's, as in
//!    the tests), the time from navigation start to the board populated (the page's
//!    `board-ready` performance mark), and `GET /api/v1/status` alone, whole and as
//!    the board reads it (`?brief=true`).
//! 2. The runs API over 10,000 runs: every page of 100 (`before=`), newest first, and a
//!    filtered first page (one app in one environment).
//! 3. `launchway status` of the same 3,000 pairs from the CLI once the environments
//!    follow the default branch: each pair's sync planned against live state.
//!
//! The environments follow a branch that does not exist, so the server deploys nothing
//! (the apps are declared, not running: what the board draws is the same). The runs
//! are written straight into the store before the server starts. Needs Docker (the
//! status reads the environments' live state) and chromium-driver; prints a table,
//! asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{ms, percentile};
use launchway_manifest::{AppSpec, ContainerSpec, ServiceSpec, Strategy, TargetSpec};
use launchway_store::{
    DeploymentUpdate, EventBody, NewEvent, NewRelease, NewRun, ReleaseSource, RunCreated, RunKind, RunState, Store,
    Transition, TransitionDetail,
};
use launchway_store_sqlite::SqliteStore;
use support::World;
use support::browser::Browser;
use support::server::{ServerProcess, token};

const APPS: usize = 1000;
const ENVS: [&str; 3] = ["dev", "stg", "prod"];
const RUNS: usize = 10_000;
const BOARD_ROUNDS: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

fn manifest(env_prefix: &str) -> String {
    let mut text = String::from("environments:\n");
    for env in ENVS {
        writeln!(text, "  {env_prefix}-{env}: {{target: docker, branch: never-pushed}}").unwrap();
    }
    text.push_str("services:\n");
    for app in 0..APPS {
        writeln!(text, "  app-{app:04}: {{image: {}, port: 8080}}", support::IMAGE).unwrap();
    }
    text
}

fn spec() -> AppSpec {
    AppSpec::Service(ServiceSpec {
        containers: vec![ContainerSpec {
            name: "web".into(),
            image: support::IMAGE.into(),
            command: None,
            entrypoint: None,
            env: Default::default(),
            port: Some(8080),
        }],
        replicas: 1,
        health: None,
        strategy: Strategy::Rolling { max_surge: 1, max_unavailable: 0, timeout: Duration::from_secs(600) },
        stop_grace_period: Duration::from_secs(10),
        settle_window: None,
        ingress: None,
    })
}

/// 10,000 finished runs, spread over the apps and environments.
async fn populate(store: &SqliteStore, env_prefix: &str) {
    for index in 0..RUNS {
        let (app, env) = (format!("app-{:04}", index % APPS), format!("{env_prefix}-{}", ENVS[index % ENVS.len()]));
        let release = store
            .create_release(NewRelease {
                app: app.clone(),
                env: env.clone(),
                spec: spec(),
                target: TargetSpec::Docker { host: None },
                source: ReleaseSource { commit: Some(format!("{index:040x}")), ..ReleaseSource::default() },
                build: None,
            })
            .await
            .expect("release");
        let created = EventBody::RunCreated(RunCreated {
            release: release.id,
            revision: release.revision.clone(),
            trigger: "benchmark".into(),
            kind: RunKind::Deploy,
        });
        let new_run = NewRun {
            app: app.clone(),
            env: env.clone(),
            kind: RunKind::Deploy,
            release_id: release.id,
            previous_release_id: None,
            trigger: "benchmark".into(),
            approval_policy: None,
            pin: None,
            decided_after: None,
            waits_for: Vec::new(),
        };
        let (run, _) = store.create_run(new_run, NewEvent::for_app(&app, &env, created, "created")).await.expect("run");
        let lease = store.claim_run(run.id, "benchmark", 30_000, None).await.expect("claim").expect("free");
        let entered = EventBody::RunEntered { state: RunState::Succeeded, detail: TransitionDetail::default() };
        let finish = Transition {
            to: RunState::Succeeded,
            reason: Some("deployed".into()),
            plan: None,
            event: NewEvent::for_run(&run, entered, "succeeded"),
            deployment: Some(DeploymentUpdate { current_release_id: release.id, verified: true }),
            approval: None,
            release: None,
        };
        store.transition(&lease, finish).await.expect("finished");
    }
}

async fn run() {
    let world = World::new().await;
    let prefix = world.env.clone();
    world.commit(&manifest(&prefix), "1,000 apps in 3 environments");
    let started = Instant::now();
    {
        let store = SqliteStore::open(world.db.path().join("launchway.db").to_str().unwrap()).await.expect("store");
        populate(&store, &prefix).await;
    }
    println!("({RUNS} finished runs written in {:.1} s)", started.elapsed().as_secs_f64());
    let server = ServerProcess::start(&world);
    let secret = token(&world, "viewer", "viewer@example.com", &[]).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let get = async |path: &str| {
        let started = Instant::now();
        let answer = http.get(server.url(path)).bearer_auth(&secret).send().await.expect("answer");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        let body: serde_json::Value = answer.json().await.expect("JSON");
        (started.elapsed(), body)
    };

    println!("runs API over {RUNS} runs, pages of 100 (newest first, `before=` the last id)");
    let mut pages = Vec::new();
    let mut before: Option<i64> = None;
    let mut listed = 0;
    loop {
        let path = match before {
            Some(id) => format!("/api/v1/runs?limit=100&before={id}"),
            None => "/api/v1/runs?limit=100".to_owned(),
        };
        let (took, body) = get(&path).await;
        let page = body.as_array().expect("a list");
        if page.is_empty() {
            break;
        }
        listed += page.len();
        before = page.last().and_then(|run| run["id"].as_i64());
        pages.push(took);
    }
    let mut filtered = Vec::new();
    for round in 0..100 {
        let path = format!("/api/v1/runs?limit=100&app=app-{:04}&env={prefix}-dev", round * 7 % APPS);
        filtered.push(get(&path).await.0);
    }
    report(&format!("every page ({listed} runs in {} pages)", pages.len()), &mut pages);
    report("one app in one environment, first page", &mut filtered);

    println!("board of {APPS} apps × {} environments", ENVS.len());
    for path in ["/api/v1/status", "/api/v1/status?brief=true"] {
        let mut status = Vec::new();
        let mut size = 0;
        for _ in 0..BOARD_ROUNDS {
            let (took, body) = get(path).await;
            assert_eq!(body.as_array().map(Vec::len), Some(APPS * ENVS.len()));
            size = body.to_string().len();
            status.push(took);
        }
        report(&format!("GET {path} ({} kB)", size / 1000), &mut status);
    }

    let browser = Browser::start().await;
    browser.open(&server.url("/")).await;
    browser.type_into("#token", &secret).await;
    browser.click("#sign-in button[type=submit]").await;
    browser.find("#board").await;
    let (mut populated, mut fetched) = (Vec::new(), Vec::new());
    for _ in 0..BOARD_ROUNDS {
        browser.open(&server.url("/")).await;
        let mark = loop {
            let mark = browser
                .script(
                    "const mark = performance.getEntriesByName('board-ready')[0]; return mark ? mark.startTime : null;",
                )
                .await;
            if let Some(at) = mark.as_f64() {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let rows = browser.script("return document.querySelectorAll('#board tbody tr').length").await;
        assert_eq!(rows.as_u64(), Some(APPS as u64));
        populated.push(Duration::from_secs_f64(mark / 1000.0));
        let data = browser.script("return performance.getEntriesByName('board-data')[0].startTime").await;
        fetched.push(Duration::from_secs_f64(data.as_f64().unwrap_or_default() / 1000.0));
    }
    report("in Chromium: navigation start → data in hand", &mut fetched);
    report("in Chromium: navigation start → board populated", &mut populated);
    browser.close().await;
    drop(server);

    // Sync is the target's plan of what would be deployed against what runs: with the
    // environments on the default branch, every pair is planned (none runs here, so
    // every plan is a whole one, the costliest kind). The CLI, reading the repo itself.
    world.commit(&manifest(&prefix).replace(", branch: never-pushed", ""), "the environments follow main");
    println!("`launchway status --output json`, {} pairs planned against live state", APPS * ENVS.len());
    let mut planned = Vec::new();
    let mut out_of_sync = 0;
    for _ in 0..BOARD_ROUNDS / 2 {
        let mut command = world.command(&["status", "--output", "json"]);
        let started = Instant::now();
        let output = command.output().expect("status runs");
        planned.push(started.elapsed());
        let statuses: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let statuses = statuses.as_array().expect("a list");
        assert_eq!(statuses.len(), APPS * ENVS.len());
        out_of_sync = statuses.iter().filter(|status| status["sync"] == "out_of_sync").count();
    }
    report(&format!("whole command ({out_of_sync} out of sync)"), &mut planned);
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    println!(
        "  {what:<48} p50 {:>7.1} ms   p95 {:>7.1} ms   max {:>7.1} ms   (n={})",
        ms(percentile(latencies, 50)),
        ms(percentile(latencies, 95)),
        ms(*latencies.last().unwrap()),
        latencies.len()
    );
}
