//! The proxy with real sockets on loopback: backends are small HTTP servers, clients send
//! requests without pause while routes change under them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use launchway_proxy::admin::{DrainAnswer, DrainRequest};
use launchway_proxy::{Backend, Proxy, ProxyConfig, Route, RouteTable, RouteTls};
use launchway_testkit::{Load, LoadResult, TestCertificate, free_port};
use tokio_util::sync::CancellationToken;

/// A backend that answers its name after `delay`, and can be stopped.
struct Replica {
    address: SocketAddr,
    stop: CancellationToken,
}

impl Replica {
    async fn start(name: &'static str, delay: Duration) -> Replica {
        Replica::serve(axum::Router::new().fallback(move || async move {
            tokio::time::sleep(delay).await;
            name
        }))
        .await
    }

    async fn serve(app: axum::Router) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await }).await
        });
        Replica { address, stop }
    }
}

/// A replica whose health check answers 200 while `healthy`, 500 otherwise.
async fn replica_with_health(name: &'static str, healthy: Arc<AtomicBool>) -> Replica {
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || async move {
                if healthy.load(Ordering::Relaxed) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                }
            }),
        )
        .fallback(move || async move { name });
    Replica::serve(app).await
}

fn route(port: u16, backends: &[(&Replica, u32)]) -> Route {
    Route {
        name: "web@test".into(),
        port,
        host: None,
        path_prefix: None,
        health: None,
        tls: None,
        backends: backends
            .iter()
            .map(|(replica, weight)| Backend { weight: *weight, ..Backend::new(replica.address) })
            .collect(),
    }
}

async fn proxy(state_file: Option<std::path::PathBuf>) -> (Proxy, CancellationToken) {
    let stop = CancellationToken::new();
    let config = ProxyConfig { listen_ip: [127, 0, 0, 1].into(), state_file, stop: stop.clone(), build: None };
    (Proxy::start(config, None).await.expect("the proxy starts"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_route_to_new_replicas_with_drain_fails_no_request() {
    let (v1, v2) =
        (Replica::start("v1", Duration::from_millis(3)).await, Replica::start("v2", Duration::from_millis(3)).await);
    let port = free_port();
    let (proxy, _stop) = proxy(None).await;
    proxy.set_route(route(port, &[(&v1, 1)])).await.expect("routed");
    let load = Load::start(&format!("http://127.0.0.1:{port}/"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What a rolling update does through the proxy: add the new replica, drain the old
    // one, and stop it only once it is idle.
    proxy.set_route(route(port, &[(&v1, 1), (&v2, 1)])).await.expect("both");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.drain(v1.address, Duration::from_secs(5)).await.expect("drained"), "v1 went idle");
    v1.stop.cancel();
    proxy.set_route(route(port, &[(&v2, 1)])).await.expect("v2 only");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let LoadResult { answers, failed, .. } = load.stop().await;
    assert_eq!(failed, 0, "no request failed out of {}", answers.len());
    assert!(answers.len() > 200, "the clients kept sending: {}", answers.len());
    assert!(answers.iter().any(|answer| answer == "v1") && answers.iter().any(|answer| answer == "v2"));
    assert_eq!(answers.last().map(String::as_str), Some("v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_the_traffic_as_asked() {
    let (stable, canary) =
        (Replica::start("stable", Duration::ZERO).await, Replica::start("canary", Duration::ZERO).await);
    let port = free_port();
    let (proxy, _stop) = proxy(None).await;
    proxy.set_route(route(port, &[(&stable, 80), (&canary, 20)])).await.expect("routed");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut canaries = 0;
    for _ in 0..1000 {
        let answer = http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answered");
        if answer.text().await.expect("body") == "canary" {
            canaries += 1;
        }
    }
    assert!((150..=250).contains(&canaries), "20% ± 5 points, got {canaries} of 1000");
}

#[tokio::test]
async fn a_replica_that_refuses_connections_is_skipped_and_unknown_hosts_get_404() {
    let live = Replica::start("live", Duration::ZERO).await;
    let gone = Replica::start("gone", Duration::ZERO).await;
    gone.stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let port = free_port();
    let (proxy, _stop) = proxy(None).await;
    let mut shop = route(port, &[(&gone, 1), (&live, 1)]);
    shop.host = Some("shop.example".into());
    proxy.set_route(shop).await.expect("routed");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    for _ in 0..20 {
        let answer = http
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", "shop.example")
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.text().await.expect("body"), "live");
    }
    let other =
        http.get(format!("http://127.0.0.1:{port}/")).header("host", "other.example").send().await.expect("answered");
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn routes_outlive_the_proxy() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("routes.json");
    let replica = Replica::start("kept", Duration::ZERO).await;
    let port = free_port();
    let (first, stop) = proxy(Some(state.clone())).await;
    first.set_route(route(port, &[(&replica, 1)])).await.expect("routed");
    stop.cancel();
    first.stopped().await;

    let (second, _stop) = proxy(Some(state)).await;
    assert_eq!(second.routes().routes.len(), 1, "read back from its state");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let answer = http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answered");
    assert_eq!(answer.text().await.expect("body"), "kept");
}

#[tokio::test]
async fn the_admin_api_moves_traffic_and_refuses_callers_without_the_token() {
    let (old, new) = (Replica::start("old", Duration::ZERO).await, Replica::start("new", Duration::ZERO).await);
    let port = free_port();
    let (proxy, stop) = proxy(None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = format!("http://{}", listener.local_addr().expect("address"));
    let app = launchway_proxy::admin::router(proxy.clone(), Some("s3cret".into()));
    tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    let http = reqwest::Client::builder().no_proxy().build().expect("client");

    let refused = http.put(format!("{admin}/routes")).json(&route(port, &[(&old, 1)])).send().await.expect("answered");
    assert_eq!(refused.status(), 401, "no token");
    let put = |route: Route| http.put(format!("{admin}/routes")).bearer_auth("s3cret").json(&route).send();
    assert!(put(route(port, &[(&old, 1)])).await.expect("answered").status().is_success());
    let through = |http: reqwest::Client| async move {
        http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answered").text().await.expect("body")
    };
    assert_eq!(through(http.clone()).await, "old");

    assert!(put(route(port, &[(&old, 1), (&new, 1)])).await.expect("answered").status().is_success());
    let drain = DrainRequest { backend: old.address, grace_ms: 2000 };
    let drained: DrainAnswer = http
        .post(format!("{admin}/drain"))
        .bearer_auth("s3cret")
        .json(&drain)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert!(drained.drained);
    for _ in 0..10 {
        assert_eq!(through(http.clone()).await, "new", "a drained replica gets no new request");
    }
    let table: RouteTable = http
        .get(format!("{admin}/routes"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert!(table.routes[0].backends[0].draining, "{table:?}");

    // Issue 22, item 8: 2,000 wrong tokens were all answered. Past ten a minute they
    // are refused with 429, while the right token still gets in.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let wrong = http.get(format!("{admin}/routes")).bearer_auth("guess").send().await.expect("answered");
        statuses.push(wrong.status().as_u16());
    }
    // The call without a token above was the first of the minute's ten.
    assert_eq!(statuses[..9], [401; 9]);
    assert_eq!(statuses[9..], [429, 429, 429]);
    let right = http.get(format!("{admin}/routes")).bearer_auth("s3cret").send().await.expect("answered");
    assert_eq!(right.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_the_proxys_own_checks_gets_no_requests_until_it_passes_again() {
    let (sick_flag, fine_flag) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(true)));
    let sick = replica_with_health("sick", sick_flag.clone()).await;
    let fine = replica_with_health("fine", fine_flag).await;
    let port = free_port();
    let (proxy, _stop) = proxy(None).await;
    let mut checked = route(port, &[(&sick, 1), (&fine, 1)]);
    checked.health =
        Some(launchway_proxy::HealthProbe { path: "/healthz".into(), interval_ms: 50, unhealthy_threshold: 2 });
    proxy.set_route(checked).await.expect("routed");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let answers = |count: usize| {
        let http = http.clone();
        async move {
            let mut answers = Vec::new();
            for _ in 0..count {
                let answer = http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answered");
                answers.push(answer.text().await.expect("body"));
            }
            answers
        }
    };
    assert!(answers(20).await.iter().any(|answer| answer == "sick"), "both serve while both pass");

    // launchway is not there: the proxy's own checks take the replica out.
    // (Two failed checks 50 ms apart: waited for as they happen, at most 5 s.)
    sick_flag.store(false, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while answers(10).await.iter().any(|answer| answer == "sick") && tokio::time::Instant::now() < deadline {}
    assert!(answers(40).await.iter().all(|answer| answer == "fine"), "no request for a failing replica");

    sick_flag.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut back = false;
    while !back && tokio::time::Instant::now() < deadline {
        back = answers(20).await.iter().any(|answer| answer == "sick");
    }
    assert!(back, "back once its check passes");
}

/// A certificate for `host` from a CA of its own: what clients trust, and the route's TLS.
fn certificate_for(host: &str) -> (TestCertificate, RouteTls) {
    let certificate = TestCertificate::for_host(host);
    let tls = RouteTls { certificate_pem: certificate.certificate_pem.clone(), key_pem: certificate.key_pem.clone() };
    (certificate, tls)
}

#[tokio::test]
async fn a_tls_port_serves_each_host_its_own_certificate_and_keys_never_leave_the_proxy() {
    let (shop, blog) = (Replica::start("shop", Duration::ZERO).await, Replica::start("blog", Duration::ZERO).await);
    let port = free_port();
    let (proxy, stop) = proxy(None).await;
    let (shop_ca, shop_tls) = certificate_for("shop.test");
    let (blog_ca, blog_tls) = certificate_for("blog.test");
    let mut shop_route = Route {
        name: "shop@test".into(),
        host: Some("shop.test".into()),
        tls: Some(shop_tls),
        ..route(port, &[(&shop, 1)])
    };
    proxy.set_route(shop_route.clone()).await.expect("routed");
    let blog_route = Route {
        name: "blog@test".into(),
        host: Some("blog.test".into()),
        tls: Some(blog_tls),
        ..route(port, &[(&blog, 1)])
    };
    proxy.set_route(blog_route).await.expect("routed");

    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = |host: &str, ca: &TestCertificate| ca.client(host, address);
    let ask = |http: reqwest::Client, host: &'static str| async move {
        http.get(format!("https://{host}:{port}/")).send().await.map(|answer| answer.status())
    };
    let shop_answer = client("shop.test", &shop_ca).get(format!("https://shop.test:{port}/")).send().await;
    assert_eq!(shop_answer.expect("TLS with the shop's certificate").text().await.expect("body"), "shop");
    let blog_answer = client("blog.test", &blog_ca).get(format!("https://blog.test:{port}/")).send().await;
    assert_eq!(blog_answer.expect("TLS with the blog's certificate").text().await.expect("body"), "blog");
    // The shop's certificate is not the blog's: a client trusting only the shop's CA
    // refuses what the blog's name is served with.
    assert!(ask(client("blog.test", &shop_ca), "blog.test").await.is_err(), "each host its own certificate");
    // Plain HTTP on a TLS port gets no answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(plain.get(format!("http://127.0.0.1:{port}/")).send().await.is_err());

    // A route without a certificate cannot join a TLS port, and a key that does not
    // match its certificate is refused; neither changes the table.
    let plain_route =
        Route { name: "plain@test".into(), host: Some("plain.test".into()), ..route(port, &[(&shop, 1)]) };
    let refused = proxy.set_route(plain_route).await.expect_err("no certificate on a TLS port");
    assert!(refused.to_string().contains("route plain@test has no certificate"), "{refused}");
    let (_, other) = certificate_for("shop.test");
    shop_route.tls.as_mut().unwrap().key_pem = other.key_pem;
    let refused = proxy.set_route(shop_route).await.expect_err("a key that does not match");
    assert!(refused.to_string().contains("does not match"), "{refused}");
    assert_eq!(proxy.routes().routes.len(), 2);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = format!("http://{}", listener.local_addr().expect("address"));
    let app = launchway_proxy::admin::router(proxy.clone(), None);
    tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    let table: RouteTable = plain.get(format!("{admin}/routes")).send().await.unwrap().json().await.unwrap();
    assert!(table.routes.iter().all(|route| route.tls.as_ref().is_some_and(|tls| tls.key_pem.is_empty())));
}

/// A proxy in `state_file`'s folder from `build`, its admin API served on `admin` the way
/// `launchway proxy` serves it (until it stops or hands its sockets over), offering its
/// sockets to a successor.
async fn proxy_offering(
    state_file: &std::path::Path,
    build: &str,
    predecessor: Option<launchway_proxy::handover::Predecessor>,
    admin: tokio::net::TcpListener,
) -> (Proxy, CancellationToken) {
    let stop = CancellationToken::new();
    let config = ProxyConfig {
        listen_ip: [127, 0, 0, 1].into(),
        state_file: Some(state_file.to_owned()),
        stop: stop.clone(),
        build: Some(build.parse().expect("a build")),
    };
    let proxy = Proxy::start(config, predecessor).await.expect("the proxy starts");
    proxy.offer_hand_over(Some(&admin)).expect("offered");
    let (stopped, handing) = (stop.clone(), proxy.clone());
    let app = launchway_proxy::admin::router(proxy.clone(), None);
    tokio::spawn(async move {
        axum::serve(admin, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = stopped.cancelled() => {}
                    () = handing.handed_over() => {}
                }
            })
            .await
    });
    (proxy, stop)
}

/// A proxy of `build` that takes the sockets of the one offering them beside
/// `state_file`, its admin API on the admin socket handed over.
async fn successor(state_file: &std::path::Path, build: &str) -> (Proxy, CancellationToken) {
    use launchway_proxy::handover;
    let mut predecessor = handover::take_over(&handover::socket_path(state_file), Some(&build.parse().unwrap()))
        .await
        .expect("taken over")
        .expect("a proxy offered its sockets");
    let admin = tokio::net::TcpListener::from_std(predecessor.take_admin().expect("the admin socket")).expect("admin");
    proxy_offering(state_file, build, Some(predecessor), admin).await
}

/// Issue 22: a proxy started by an older launchway is replaced by the new version
/// without a gap. The new proxy takes the old one's listening sockets (routes and admin
/// API): under load no request fails, the routes carry over, the admin API's address now
/// reaches the new proxy, the old one changes nothing more and ends once its clients have
/// moved, and an older build is refused the sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_proxy_takes_the_sockets_over_without_a_failed_request() {
    use launchway_proxy::handover;
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("routes.json");
    let (first, second) =
        (Replica::start("first", Duration::from_millis(1)).await, Replica::start("second", Duration::ZERO).await);
    let port = free_port();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_url = format!("http://{}", admin.local_addr().expect("address"));
    let (old, old_stop) = proxy_offering(&state, "0.1.0/100/1", None, admin).await;
    old.set_route(route(port, &[(&first, 1)])).await.expect("routed");

    let load = Load::start(&format!("http://127.0.0.1:{port}/"), 4);
    load.until_sent(300, Duration::from_secs(20)).await;
    let (new, _new_stop) = successor(&state, "0.1.0/200/1").await;
    tokio::time::timeout(Duration::from_secs(10), old.handed_over()).await.expect("the old proxy let go");
    assert_eq!(new.routes(), old.routes(), "the new proxy serves the table the old one had");

    let sent = load.sent();
    load.until_sent(sent + 300, Duration::from_secs(20)).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let moved = http.put(format!("{admin_url}/routes")).json(&route(port, &[(&second, 1)])).send().await.expect("sent");
    assert!(moved.status().is_success(), "{}", moved.status());
    assert_eq!(new.routes().routes[0].backends[0].address, second.address, "the admin address reaches the new proxy");
    assert!(matches!(old.set_route(route(port, &[(&first, 1)])).await, Err(launchway_proxy::ProxyError::HandedOver)));
    tokio::time::timeout(Duration::from_secs(10), old.connections_ended())
        .await
        .expect("the old proxy's clients moved to the new one");
    old_stop.cancel();
    old.stopped().await;
    let sent = load.sent();
    load.until_sent(sent + 300, Duration::from_secs(20)).await;

    let result: LoadResult = load.stop().await;
    assert_eq!(result.failed, 0, "no request failed while the proxy was replaced");
    assert!(result.answers.iter().any(|answer| answer == "second"), "the new route served");

    let refused = handover::take_over(&handover::socket_path(&state), Some(&"0.1.0/150/1".parse().unwrap())).await;
    let error = refused.err().expect("an older build is refused").to_string();
    assert!(error.contains("newer"), "{error}");
    assert!(!new.has_handed_over());
}

/// A proxy that handed its sockets over keeps no copy of them: should the new proxy die,
/// the ports close with it and the one Docker restarts in its place listens again, while
/// the old one still finishes what it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_handed_over_lets_the_ports_go_when_its_successor_dies() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("routes.json");
    let replica = Replica::start("kept", Duration::ZERO).await;
    let port = free_port();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (old, _old_stop) = proxy_offering(&state, "0.1.0/100/1", None, admin).await;
    old.set_route(route(port, &[(&replica, 1)])).await.expect("routed");
    let (new, new_stop) = successor(&state, "0.1.0/200/1").await;
    tokio::time::timeout(Duration::from_secs(10), old.handed_over()).await.expect("handed over");
    new_stop.cancel();
    new.stopped().await;
    drop(new);

    let (restarted, _stop) = proxy(Some(state)).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let answer = http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answered");
    assert_eq!(answer.text().await.expect("body"), "kept");
    assert!(!restarted.has_handed_over() && old.has_handed_over());
}
