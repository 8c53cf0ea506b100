//! The figures in BENCHMARKS.md: `cargo bench -p launchway --bench figures`.
//!
//! 1. Deploy overhead: the wall time of `launchway deploy` for a rolling update of 3
//!    replicas, minus the time spent inside the Docker engine and the containers
//!    (creating, starting and stopping containers, and the app starting until its
//!    health check passes), which launchway records for each replica in its events.
//! 2. Validating and planning 1,000 apps from one config repo: wall time and peak
//!    memory of `launchway validate` and `launchway plan`.
//!
//! 3. `launchway server`: webhook received → run started, for a repo of 10 apps and one
//!    of 1,000 (each push changes one app), and the server's memory once idle with the
//!    1,000 apps loaded; for 1,000 apps, also what reading a pushed commit costs in
//!    process (git, then the manifest load), the part of each push before any decision.
//!
//! 4. The build stage: `launchway server`'s webhook → run started for a repo of 10 apps
//!    that build their images, each push changing an app but not its build context
//!    (beside 3.'s 10 apps, which build nothing); and a rebuild's wall time (the run's
//!    build step after a commit that changes the context's last layers) beside `docker
//!    build` run by hand on the same context and engine.
//!
//! Needs a Docker engine, like the tests; prints a table, asserts nothing. Sections can
//! be chosen: `cargo bench -p launchway --bench figures -- deploy apps server`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use launchway_store::{Event, EventBody, TargetReport};
use support::World;

const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // `cargo bench --bench figures -- server` runs only the sections named.
    let only: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let wanted = |section: &str| only.is_empty() || only.iter().any(|name| name == section);
    runtime.block_on(async {
        if wanted("deploy") {
            deploy_overhead().await;
        }
        if wanted("apps") {
            thousand_apps().await;
        }
        if wanted("server") {
            for apps in [10, 1000] {
                server_figures(apps, false).await;
            }
        }
        if wanted("build") {
            server_figures(10, false).await;
            server_figures(10, true).await;
            rebuild_figures().await;
        }
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
    # The overhead figure is launchway's own time: no settle window to watch.
    settle_window: 0s
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
    let events: Vec<Event> = serde_json::from_value(details["events"].clone()).expect("events");
    Measured { wall, engine: engine_time(&events) }
}

/// The union of the intervals the run's events attribute to Docker and the containers:
/// each container start and stop call, and each app's wait from started to healthy
/// (what the replica reports say each took).
fn engine_time(events: &[Event]) -> Duration {
    let mut intervals: Vec<(i64, i64)> = Vec::new();
    for event in events {
        let span = match event.body() {
            EventBody::Target(
                TargetReport::ReplicaStarted(replica)
                | TargetReport::ReplicaStopped(replica)
                | TargetReport::ReplicaHealthy(replica),
            ) => replica.took_ms,
            _ => None,
        };
        if let Some(span) = span {
            intervals.push((event.at - span as i64, event.at));
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

/// What the server does with each push before deciding anything, in this process: read
/// the pushed commit's manifest files (reusing the previous commit's blobs) and the
/// files they refer to, and load (parse, check, resolve) the manifest. Each round
/// changes one app in a new commit, as the pushes of the server figures do.
fn commit_read_figures(world: &World, apps: usize) {
    let cache = tempfile::tempdir().expect("cache dir");
    let repo = launchway_source::ConfigRepo::open(&world.repo.path().display().to_string(), cache.path())
        .expect("the config repo opens");
    let (mut reads, mut loads, mut incremental) = (Vec::new(), Vec::new(), Vec::new());
    let mut loader = launchway_manifest::Loader::default();
    for round in 1..=30 {
        world.repo.write("apps/app-0000.yaml", &server_app(0, 1000 + round, false));
        world.repo.commit(&format!("app-0000 read {round}"));
        let commit = repo.resolve("HEAD").expect("HEAD");
        let started = Instant::now();
        let files = repo.manifest_files(&commit).expect("manifest files");
        let referenced = repo.files_at(&commit).expect("files");
        let read = started.elapsed();
        let started = Instant::now();
        let loaded = launchway_manifest::load(&files, &referenced);
        let load = started.elapsed();
        assert!(loaded.is_ok(), "the manifest is valid");
        // What the server does: the files the commit did not change are not parsed again.
        let started = Instant::now();
        let reloaded = loader.load(&files, &referenced);
        let reload = started.elapsed();
        assert_eq!(reloaded.expect("valid").manifest, loaded.expect("valid").manifest);
        if round > 5 {
            reads.push(read);
            loads.push(load);
            incremental.push(reload);
        }
    }
    for samples in [&mut reads, &mut loads, &mut incremental] {
        samples.sort();
    }
    let median = |samples: &[Duration]| ms(samples[samples.len() / 2]);
    println!("reading a pushed commit of {apps} apps, in process (median of {}):", reads.len());
    println!(
        "  manifest files from git: {:.1}ms   load, every file parsed: {:.1}ms   load, only the changed file parsed: {:.1}ms",
        median(&reads),
        median(&loads),
        median(&incremental)
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// An app of the server benchmarks: parked for approval, so that what is measured is
/// the server turning a push into a run, not Docker starting containers.
fn server_app(index: usize, version: usize, built: bool) -> String {
    let image = match built {
        true => format!("    build: {{images: {{app-{index:04}: {{context: services/app-{index:04}}}}}}}\n"),
        false => format!("    image: {}\n", support::IMAGE),
    };
    format!(
        "services:
  app-{index:04}:
{image}    port: 8080
    replicas: 1
    env: {{SAMPLE_MESSAGE: v{version}}}
"
    )
}

/// `apps` apps, each pushed change making one run; with `built`, every app builds its
/// image from a folder of its own (built once at start-up; the pushes leave it alone).
async fn server_figures(apps: usize, built: bool) {
    use support::server::{ServerProcess, WEBHOOK_SECRET, github_push};

    let world = World::new().await;
    world
        .repo
        .write("launchway.yaml", &format!("environments:\n  {}: {{target: docker, approval: true}}\n", world.env));
    for index in 0..apps {
        world.repo.write(&format!("apps/app-{index:04}.yaml"), &server_app(index, 0, built));
        if built {
            let dockerfile = format!("FROM {}\nENV BUILT_FOR={}-{index}\n", support::IMAGE, world.env);
            world.repo.write(&format!("services/app-{index:04}/Dockerfile"), &dockerfile);
        }
    }
    world.repo.commit("apps");
    if apps >= 1000 {
        commit_read_figures(&world, apps);
    }
    let started = Instant::now();
    let server = ServerProcess::start(&world);
    let admin = support::server::token(&world, "viewer", "bench@example.com", &[]).await;
    let api = support::server::Api::new(&server, Some(&admin));
    api.wait_for_runs(&format!("?state=awaiting_approval&limit={apps}"), |runs| runs.len() == apps).await;
    let ready = started.elapsed();

    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut latencies = Vec::new();
    for round in 1..=60 {
        world.repo.write("apps/app-0000.yaml", &server_app(0, round, built));
        let commit = world.repo.commit(&format!("app-0000 v{round}"));
        let body = github_push("refs/heads/main", &commit);
        let signature = launchway_server::hooks::github_signature(WEBHOOK_SECRET, &body);
        let sent = Instant::now();
        let answer: serde_json::Value = http
            .post(server.url("/hooks/github"))
            .header("x-hub-signature-256", signature)
            .header("x-github-delivery", format!("bench-{round}"))
            .body(body)
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON");
        let took = sent.elapsed();
        // The server answers once the run has started; one that parks for approval at
        // once (as these do) is answered as waiting.
        let begun =
            |run: &&serde_json::Value| run["decision"] == "started" || run["decision"] == "waiting_for_approval";
        let started: Vec<&serde_json::Value> = answer["runs"].as_array().into_iter().flatten().filter(begun).collect();
        assert_eq!(started.len(), 1, "round {round}: {answer}");
        // One push at a time: the next waits until this run is parked.
        let run = started[0];
        api.wait_for_run(run["run"].as_i64().unwrap(), &["awaiting_approval"]).await;
        // The first rounds warm caches; they are not counted.
        if round > 10 {
            latencies.push(took);
        }
    }
    latencies.sort();
    let percentile = |p: usize| latencies[(p * latencies.len()).div_ceil(100).max(1) - 1];
    let what = if built { "apps building their images (pushes leave the contexts alone)" } else { "apps" };
    println!("launchway server, {apps} {what} (ready with every app's run planned in {:.1}s)", ready.as_secs_f64());
    println!(
        "  webhook received -> run started ({} pushes): p50 {:.1}ms  p90 {:.1}ms  p99 {:.1}ms  max {:.1}ms",
        latencies.len(),
        ms(percentile(50)),
        ms(percentile(90)),
        ms(percentile(99)),
        ms(*latencies.last().unwrap())
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mib = |field| server.resident_kib(field) as f64 / 1024.0;
    println!(
        "  resident memory, idle: {:.1} MiB ({:.1} MiB anonymous, {:.1} MiB of the binary and other files)",
        mib("VmRSS"),
        mib("RssAnon"),
        mib("RssFile")
    );
}

/// A rebuild: the build step of a run whose commit changed the context's last layers,
/// beside `docker build` by hand of the same folder on the same engine (whose CLI here
/// has no buildx plugin: its legacy builder). Both caches are warmed first.
async fn rebuild_figures() {
    use launchway_target_docker::{ExecutableImage, build_executable_image};

    let world = World::new().await;
    let shell = "launchway-test/sh:bench";
    let executable =
        ExecutableImage { tag: shell.into(), executable: "/bin/sh".into(), args: Vec::new(), env: Vec::new() };
    build_executable_image(world.docker.client(), &executable).await.expect("the shell image");
    let count = |label: &str| {
        format!("[\"/sh\", \"-c\", \"i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo {label} $i > /{label}\"]")
    };
    let dockerfile = format!(
        "FROM {shell} AS work
COPY deps/ /deps/
RUN {deps}
COPY src/ /src/
RUN {src}
FROM {image}
COPY --from=work /deps-built /src-built /src/version /built/
ENV SAMPLE_MESSAGE=rebuilt-{env}
",
        deps = count("deps-built"),
        src = count("src-built"),
        image = support::IMAGE,
        env = world.env
    );
    world.repo.write("services/web/Dockerfile", &dockerfile);
    let block = "x".repeat(64 * 1024);
    for file in 0..160 {
        world.repo.write(&format!("services/web/deps/lib-{file:03}.txt"), &block);
    }
    let manifest = "environments:
  {env}: {target: docker}
services:
  web:
    port: 8080
    replicas: 1
    health: {path: /healthz}
    settle_window: 300ms
    build: {tag: \"${sha}\", images: {web: {context: services/web}}}
";
    let folder = world.repo.path().join("services/web");
    let by_hand = |round: usize| {
        let started = Instant::now();
        let output = std::process::Command::new("docker")
            .args(["build", "-q", "-t", &format!("launchway-bench/by-hand:{round}")])
            .arg(&folder)
            .output()
            .expect("docker build runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        started.elapsed()
    };
    let mut launchway = Vec::new();
    let mut docker = Vec::new();
    for round in 0..=ROUNDS {
        world.repo.write("services/web/src/version", &format!("{round}\n"));
        world.commit(manifest, &format!("round {round}"));
        world.launchway(&["deploy"]).await.assert_exit(0);
        let runs = world.runs().await;
        let run = world.run_details(runs[0]["id"].as_i64().unwrap()).await;
        let step =
            run["steps"].as_array().unwrap().iter().find(|step| step["name"] == "build").expect("a build step").clone();
        let took = Duration::from_millis(
            (step["finished_at"].as_i64().unwrap() - step["started_at"].as_i64().unwrap()) as u64,
        );
        let hand = by_hand(round);
        // Round 0 warms both builders' caches.
        if round > 0 {
            launchway.push(took);
            docker.push(hand);
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let list = |times: &[Duration]| times.iter().map(|time| format!("{:.0}", ms(*time))).collect::<Vec<_>>().join(", ");
    println!("rebuild of a changed context ({ROUNDS} rounds, ms)");
    println!(
        "  launchway's build step (git → context → BuildKit): {} (median {:.0})",
        list(&launchway),
        ms(median(&mut launchway))
    );
    println!(
        "  docker build by hand (legacy builder):             {} (median {:.0})",
        list(&docker),
        ms(median(&mut docker))
    );
    for round in 0..=ROUNDS {
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", &format!("launchway-bench/by-hand:{round}")])
            .output();
    }
}
