//! A service's stable entry point on the Docker host (`ingress:`), through launchway's
//! proxy running in a container of its own: clients keep one address while replicas
//! are replaced under them. Each test has its own proxy (its own admin port), removed
//! at the end.

mod support;

use std::time::Duration;

use launchway_testkit::{Load, LoadResult, TestCertificate, free_port};
use support::World;
use support::ingress::{TestProxy, WEB, deploy, output, progressive};

#[tokio::test]
async fn clients_of_the_entry_point_see_no_failed_request_while_every_replica_is_replaced() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let manifest = |message: &str| WEB.replace("{message}", message).replace("{ingress}", &ingress.to_string());
    world.commit(&manifest("v1"), "web v1");
    deploy(&world, &proxy).await;

    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.commit(&manifest("v2"), "web v2");
    deploy(&world, &proxy).await;
    // At least 10,000 requests in all (the rollout's own share depends on the build's
    // speed): the clients go on after it if needed.
    load.until_sent(10_000, Duration::from_secs(60)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    eprintln!("{} requests through the entry point, before, during and after the rollout", answers.len());
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.len() >= 10_000, "the clients kept sending through the rollout: {}", answers.len());
    assert!(answers.iter().any(|answer| answer.starts_with("v1 (")), "v1 served first");
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v2 (")), "v2 serves at the end");
}

#[tokio::test]
async fn the_proxy_keeps_its_routes_when_its_container_restarts() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    world.commit(&WEB.replace("{message}", "v1").replace("{ingress}", &ingress.to_string()), "web v1");
    deploy(&world, &proxy).await;

    proxy.docker(&["restart", "-t", "1"]);
    // No launchway process runs now: the routes come back from the proxy's own state.
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("client");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(response) = http.get(format!("http://127.0.0.1:{ingress}/")).send().await
            && response.status().is_success()
        {
            answer = Some(response.text().await.expect("body"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answer.as_deref().is_some_and(|answer| answer.starts_with("v1 (")), "{answer:?}");
}

/// Issue 22, item 5: after `docker kill` of the proxy (Docker does not restart a killed
/// container) the entry point answered nothing while `deploy` said "nothing to deploy"
/// and `status` "healthy, in sync". The entry point is part of what must run: status
/// says it is down, and deploy restores it with its routes.
#[tokio::test]
async fn a_killed_proxy_is_reported_and_restored_by_the_next_deploy() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    world.commit(&WEB.replace("{message}", "v1").replace("{ingress}", &ingress.to_string()), "web v1");
    deploy(&world, &proxy).await;
    proxy.docker(&["kill"]);

    let mut status = world.command(&["status", "--output", "json"]);
    status.env("LAUNCHWAY_PROXY_ADMIN", &proxy.admin);
    let status: serde_json::Value = serde_json::from_slice(&output(status).await.stdout).expect("JSON");
    assert_eq!(status[0]["health"]["state"], "degraded", "{status:#}");
    assert!(status[0]["health"]["summary"].as_str().unwrap().contains("the entry point does not answer"));
    assert_eq!(status[0]["sync"], "out_of_sync");
    assert!(status[0]["sync_reason"].as_str().unwrap().starts_with("restore the entry point"), "{status:#}");

    deploy(&world, &proxy).await;
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("client");
    let answer = http.get(format!("http://127.0.0.1:{ingress}/")).send().await.expect("the entry point answers");
    assert!(answer.text().await.unwrap().starts_with("v1 ("), "served by its routes, restored");
    let runs = world.runs().await;
    assert_eq!((runs[0]["kind"].as_str(), runs[0]["state"].as_str()), (Some("repair"), Some("succeeded")));
}

/// Issue 22: a proxy started by an older launchway is replaced by the new version without
/// a gap. The older launchway is this one's executable copied with an earlier
/// modification time: the same code, an older build to the newer one. The newer one's
/// first deploy replaces the proxy (its container takes the old one's sockets) and rolls
/// the service out under load: no request fails, and the old proxy ends, not to restart.
#[tokio::test]
async fn a_proxy_from_an_older_launchway_is_replaced_without_a_failed_request() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let builds = tempfile::tempdir().expect("dir");
    let older = builds.path().join("launchway");
    std::fs::copy(support::binary(), &older).expect("copied");
    let built = std::fs::metadata(support::binary()).and_then(|metadata| metadata.modified()).expect("mtime");
    let file = std::fs::File::options().write(true).open(&older).expect("opened");
    file.set_modified(built - Duration::from_secs(24 * 3600)).expect("an older build");
    drop(file);

    let manifest = |message: &str| WEB.replace("{message}", message).replace("{ingress}", &ingress.to_string());
    world.commit(&manifest("v1"), "web v1");
    let mut first = world.command_of(&older, &["deploy"]);
    first.env("LAUNCHWAY_PROXY_ADMIN", &proxy.admin);
    let first = output(first).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let old_container = proxy.containers(false);
    assert_eq!(old_container.len(), 1, "the older launchway's proxy runs");

    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);
    load.until_sent(500, Duration::from_secs(30)).await;
    world.commit(&manifest("v2"), "web v2");
    deploy(&world, &proxy).await;
    let sent = load.sent();
    load.until_sent(sent + 500, Duration::from_secs(30)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v2 (")), "v2 serves at the end");

    let running = proxy.containers(false);
    assert_eq!(running.len(), 1, "one proxy serves: {running:?}");
    assert_ne!(running, old_container, "the newer launchway's proxy serves");
    let inspect = |format: &str| support::ingress::docker(&["inspect", "-f", format, &old_container[0]]);
    assert_eq!(inspect("{{.HostConfig.RestartPolicy.Name}}"), "no", "the old proxy is not restarted once it ends");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while inspect("{{.State.Running}}") == "true" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(inspect("{{.State.Running}}"), "false", "the old proxy ended once its clients moved over");
}

/// Issue 22: a proxy started by a launchway from before proxies handed their sockets
/// over is replaced too, without a gap: its listening sockets are copied out of it (by a
/// short-lived container with ptrace rights over it) and handed to the new proxy, so no
/// connection is refused, and the old one is stopped, finishing what it serves. Stopping,
/// that old version closes its idle keep-alive connections at once (it cannot be told to
/// close them after their next answer, as a proxy that hands over itself does), so a
/// client that sends on one at that moment sees it closed: at most one request per
/// connection it held. Such a proxy is made here as that launchway made it (its container
/// name, no label but its role) from this launchway's image, its hand-over socket removed
/// so that it offers nothing.
#[tokio::test]
async fn a_proxy_that_cannot_hand_over_is_replaced_refusing_no_connection() {
    use support::ingress::docker;
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let manifest = |message: &str| WEB.replace("{message}", message).replace("{ingress}", &ingress.to_string());
    world.commit(&manifest("v1"), "web v1");
    deploy(&world, &proxy).await;
    let made = proxy.containers(false);
    assert_eq!(made.len(), 1);
    let environment = docker(&["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", &made[0]]);
    let token = environment.lines().find(|line| line.starts_with("LAUNCHWAY_PROXY_TOKEN=")).expect("a token");
    docker(&["rm", "-f", &made[0]]);

    let port = proxy.admin.rsplit(':').next().unwrap_or_default().to_owned();
    let (legacy, volume) = (format!("launchway-proxy-{port}"), format!("launchway-proxy-state-{port}"));
    docker(&[
        "run",
        "-d",
        "--name",
        &legacy,
        "--network",
        "host",
        "-v",
        &format!("{volume}:/state"),
        "--label",
        "launchway.role=proxy",
        "--restart",
        "unless-stopped",
        "-e",
        token,
        "launchway/proxy:local",
    ]);
    let socket =
        std::path::Path::new(&docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume])).join("handover.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !socket.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(&socket).expect("the old proxy's hand-over socket, removed");

    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);
    load.until_sent(500, Duration::from_secs(30)).await;
    world.commit(&manifest("v2"), "web v2");
    deploy(&world, &proxy).await;
    let sent = load.sent();
    load.until_sent(sent + 500, Duration::from_secs(30)).await;
    let LoadResult { answers, failed, refused } = load.stop().await;
    assert_eq!(refused, 0, "no connection was refused out of {}", answers.len());
    assert!(failed <= 4, "at most one request per client's kept-alive connection: {failed}");
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v2 (")), "v2 serves at the end");

    assert_eq!(proxy.containers(false).len(), 1, "the new proxy serves");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}} {{.HostConfig.RestartPolicy.Name}}", &legacy]),
        "false no"
    );
}

#[tokio::test]
async fn killing_launchway_in_the_middle_of_a_rollout_fails_no_request() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let manifest = |message: &str, delay: &str| {
        WEB.replace("{message}", message)
            .replace("{ingress}", &ingress.to_string())
            .replace("      SAMPLE_MESSAGE:", &format!("      SAMPLE_START_DELAY: {delay}\n      SAMPLE_MESSAGE:"))
    };
    world.commit(&manifest("v1", "0s"), "web v1");
    deploy(&world, &proxy).await;
    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);

    // v2 starts slowly: the rollout is killed while it is under way.
    world.commit(&manifest("v2", "800ms"), "web v2");
    let mut command = proxy.deploy_command(&world);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut interrupted = command.spawn().expect("launchway starts");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    interrupted.kill().expect("killed");
    let _ = interrupted.wait();
    // Half a second of traffic with no launchway process at all, mid-rollout.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The next deploy resumes the run and finishes the rollout.
    deploy(&world, &proxy).await;
    load.until_sent(10_000, Duration::from_secs(60)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v2 (")), "v2 serves at the end");
}

#[tokio::test]
async fn a_release_failing_its_health_check_is_rolled_back_without_a_failed_request() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let manifest = |message: &str, extra: &str| {
        WEB.replace("{message}", message)
            .replace("{ingress}", &ingress.to_string())
            .replace("      SAMPLE_MESSAGE:", &format!("{extra}      SAMPLE_MESSAGE:"))
    };
    world.commit(&manifest("v1", ""), "web v1");
    deploy(&world, &proxy).await;
    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);

    world.commit(&manifest("v2", "      SAMPLE_HEALTH: fail\n"), "web v2, unhealthy");
    let output = output(proxy.deploy_command(&world)).await;
    assert_eq!(output.status.code(), Some(5), "rolled back: {}", String::from_utf8_lossy(&output.stdout));

    load.until_sent(10_000, Duration::from_secs(60)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.iter().all(|answer| answer.starts_with("v1 (")), "v2 never got a request");
}

// ---- progressive delivery through the entry point

#[tokio::test]
async fn blue_green_moves_all_traffic_at_once_without_a_failed_request() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let strategy = "      blue_green: {bake: 1s}\n";
    world.commit(&progressive(ingress, "v1", "", strategy), "web v1");
    deploy(&world, &proxy).await;
    let url = format!("http://127.0.0.1:{ingress}/");
    let load = Load::start(&url, 3);
    // One client on its own: what it sees is in the order things happened.
    let in_order = Load::start(&url, 1);

    world.commit(&progressive(ingress, "v2", "", strategy), "web v2, blue/green");
    let started = std::time::Instant::now();
    deploy(&world, &proxy).await;
    eprintln!("blue/green deploy took {:?}", started.elapsed());
    load.until_sent(10_000, Duration::from_secs(60)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    let LoadResult { answers: sequence, failed: failed_in_order, .. } = in_order.stop().await;
    assert_eq!(failed + failed_in_order, 0, "no request failed out of {}", answers.len() + sequence.len());
    let first_v2 = sequence.iter().position(|answer| answer.starts_with("v2 (")).expect("v2 served");
    assert!(sequence[..first_v2].iter().all(|answer| answer.starts_with("v1 (")));
    // All at once: after its first answer from v2, the client never hears from v1 again.
    assert!(sequence[first_v2..].iter().all(|answer| answer.starts_with("v2 (")), "v1 answered after the switch");
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v2 (")));
}

#[tokio::test]
async fn a_canary_gives_the_new_release_its_weight_then_everything() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    // A long pause, ended by `launchway promote` once sampled: however slow the machine,
    // every sampled request is sent while the 20% step holds.
    let strategy = "      canary: {steps: [{weight: 20, pause: 5m}]}\n";
    world.commit(&progressive(ingress, "v1", "", strategy), "web v1");
    deploy(&world, &proxy).await;
    let url = format!("http://127.0.0.1:{ingress}/");
    let load = Load::start(&url, 3);

    world.commit(&progressive(ingress, "v2", "", strategy), "web v2, canary");
    let deploying = tokio::spawn(output(proxy.deploy_command(&world)));
    // Once v2 answers, the canary's step holds 20%: 1,000 requests in a row sent then
    // must split 20/80, within 5 points.
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    let ask = async || http.get(&url).send().await.expect("answer").text().await.expect("body");
    let mut first = String::new();
    for _ in 0..2_000 {
        first = ask().await;
        if first.starts_with("v2 (") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(first.starts_with("v2 ("), "v2 never answered");
    let mut v2 = 0;
    for _ in 0..1_000 {
        v2 += usize::from(ask().await.starts_with("v2 ("));
    }
    let share = v2 as f64 / 10.0;
    eprintln!("v2 took {share}% of 1,000 requests during the 20% step");
    assert!((15.0..=25.0).contains(&share), "v2 took {share}%, not 20% ± 5");
    let run = world.runs().await[0]["id"].as_i64().expect("a run").to_string();
    world.launchway(&["promote", &run]).await.assert_exit(0);

    let done = deploying.await.expect("deploy ran");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stdout));
    load.until_sent(10_000, Duration::from_secs(60)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v2 (")), "v2 takes everything at the end");
}

#[tokio::test]
async fn a_canary_whose_work_fails_the_analysis_is_rolled_back_without_a_failed_request() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    let strategy = "      canary:\n        steps: [{weight: 25, pause: 3s}]\n        analysis: {interval: 500ms, http: {path: /work}}\n";
    world.commit(&progressive(ingress, "v1", "", strategy), "web v1");
    deploy(&world, &proxy).await;
    let load = Load::start(&format!("http://127.0.0.1:{ingress}/"), 4);

    // Healthy by its health check, failing at its work: only the analysis sees it.
    world.commit(&progressive(ingress, "v2", "      SAMPLE_ERRORS: '1'\n", strategy), "web v2, failing work");
    let result = output(proxy.deploy_command(&world)).await;
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(result.status.code(), Some(5), "rolled back: {stdout}");
    assert!(stdout.contains("the analysis failed at step 1"), "{stdout}");

    load.until_sent(10_000, Duration::from_secs(60)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.last().is_some_and(|answer| answer.starts_with("v1 (")), "v1 serves again");
}

#[tokio::test]
async fn a_prometheus_query_decides_whether_a_canary_goes_on() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    // Prometheus scrapes the service through its entry point, so it sees each release
    // in proportion to its traffic.
    let prometheus = launchway_testkit::Prometheus::start(&format!("127.0.0.1:{ingress}")).await;
    let strategy = format!(
        "      canary:\n        steps: [{{weight: 50, pause: 4s}}]\n        analysis:\n          interval: 500ms\n          prometheus: {{address: '{}', query: 'max(max_over_time(sample_app_errors[3s]))', max: 0}}\n",
        prometheus.address
    );
    world.commit(&progressive(ingress, "v1", "", &strategy), "web v1");
    deploy(&world, &proxy).await;
    prometheus.wait_for("sample_app_errors").await;

    world.commit(&progressive(ingress, "v2", "      SAMPLE_ERRORS: '1'\n", &strategy), "web v2, erring");
    let failing = output(proxy.deploy_command(&world)).await;
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert_eq!(failing.status.code(), Some(5), "a failing query rolls the canary back: {stdout}");
    assert!(stdout.contains("above the maximum 0"), "{stdout}");

    // Past the query's window, so v2's errors no longer count.
    tokio::time::sleep(Duration::from_secs(4)).await;
    world.commit(&progressive(ingress, "v3", "", &strategy), "web v3, fixed");
    let passing = output(proxy.deploy_command(&world)).await;
    let stdout = String::from_utf8_lossy(&passing.stdout);
    assert!(passing.status.success(), "a passing query promotes the canary: {stdout}");
    assert!(stdout.contains("within bounds"), "{stdout}");
}

#[tokio::test]
async fn the_entry_point_serves_tls_with_the_certificate_files_the_manifest_names() {
    let world = World::new().await;
    let proxy = TestProxy::new().await;
    let ingress = free_port();
    // A certificate for web.test, signed by a CA of the test's own, in files outside the repo.
    let files = tempfile::tempdir().expect("dir");
    let issued = TestCertificate::for_host("web.test");
    let (certificate, key_file) = (files.path().join("web.pem"), files.path().join("web.key"));
    std::fs::write(&certificate, &issued.certificate_pem).unwrap();
    std::fs::write(&key_file, &issued.key_pem).unwrap();
    let tls = format!(
        "      host: web.test\n      tls: {{certificate: {}, key: {}}}\n",
        certificate.display(),
        key_file.display()
    );
    let manifest = |message: &str| {
        WEB.replace("{message}", message)
            .replace("{ingress}", &ingress.to_string())
            .replace(&format!("      port: {ingress}\n"), &format!("      port: {ingress}\n{tls}"))
    };
    world.commit(&manifest("v1"), "web v1, over TLS");
    deploy(&world, &proxy).await;

    let http = issued.client("web.test", format!("127.0.0.1:{ingress}").parse().unwrap());
    let answer = http.get(format!("https://web.test:{ingress}/")).send().await.expect("a TLS answer");
    assert!(answer.text().await.expect("body").starts_with("v1 ("));
    // The proxy's admin API (which holds the key) answers only launchway, which finds
    // the token in the proxy container's environment.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = plain.get(format!("http://{}/routes", proxy.admin)).send().await.expect("answered");
    assert_eq!(refused.status(), 401);

    // A key file that cannot be read stops the next run before anything changes.
    std::fs::remove_file(&key_file).unwrap();
    world.commit(&manifest("v2"), "web v2");
    let refused = output(proxy.deploy_command(&world)).await;
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("cannot read the entry point's TLS key"), "{stdout}");
    let answer = http.get(format!("https://web.test:{ingress}/")).send().await.expect("still served");
    assert!(answer.text().await.expect("body").starts_with("v1 ("), "v1 still serves");
}
