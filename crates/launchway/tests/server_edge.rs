//! The server's edge under abuse, probed as an attacker would: connections held open
//! and never used, floods of refused webhooks and wrong tokens, bodies meant to make the
//! server talk. The server is the real binary; the clients are real sockets.

mod support;

use std::io::{BufRead, BufReader, Read, Write};

use futures_util::StreamExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::World;
use support::server::ServerProcess;

/// A helper process holding `count` idle TCP connections to `addr` (each process has its
/// own file descriptor limit: 20,000 connections take two), each helper from a loopback
/// address of its own (issue 22, item 9). Dropping it closes them.
struct IdleConnections {
    child: Child,
}

impl IdleConnections {
    fn open(addr: std::net::SocketAddr, count: usize) -> IdleConnections {
        // From a loopback source address of its own (127.0.0.2, …): one address has
        // about 28,000 ephemeral ports, which other work on a busy machine shares.
        static NEXT_SOURCE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);
        let source = format!("127.0.0.{}", NEXT_SOURCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let script = "import socket, sys\n\
            held = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10, source_address=(sys.argv[4], 0)) for _ in range(int(sys.argv[3]))]\n\
            print('open', len(held), flush=True)\n\
            sys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script, &addr.ip().to_string(), &addr.port().to_string(), &count.to_string(), &source])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a line");
        assert_eq!(line.trim(), format!("open {count}"), "the helper opened its connections");
        IdleConnections { child }
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn health(server: &ServerProcess) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(server.addr).map_err(|error| error.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|error| error.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: launchway\r\nconnection: close\r\n\r\n")
        .map_err(|error| error.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|error| error.to_string())?;
    if answer.starts_with("HTTP/1.1 200") { Ok(started.elapsed()) } else { Err(answer) }
}

/// Regression (issue 9): 19,985 half-open connections from one client exhausted the
/// server's file descriptors and /healthz stopped answering.
#[tokio::test]
async fn twenty_thousand_idle_connections_from_one_client_leave_healthz_answering() {
    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start_with(&world, &["--max-connections", "512"]);
    let addr = server.addr;
    let held = tokio::task::spawn_blocking(move || {
        let first = IdleConnections::open(addr, 10_000);
        let second = IdleConnections::open(addr, 10_000);
        (first, second)
    })
    .await
    .expect("the helpers ran");
    for _ in 0..10 {
        let answered = health(&server);
        assert!(answered.is_ok(), "/healthz with 20,000 idle connections held: {answered:?}");
    }
    // Connections past the cap are closed as others arrive: on a busy machine the closing
    // may trail the accepting for a moment, so the count is read until it settles.
    let mut open = server.open_files();
    let deadline = Instant::now() + Duration::from_secs(10);
    while open >= 512 + 64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = server.open_files();
    }
    assert!(open < 512 + 64, "the server keeps at most its connection cap: {open} files open");
    let resident = server.resident_kib("VmRSS");
    assert!(resident < 200 * 1024, "memory stays bounded: {resident} KiB");
    drop(held);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start_with(&world, &["--header-timeout", "1s"]);
    let addr = server.addr;
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut silent = std::net::TcpStream::connect(addr).expect("connects");
        silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut buffer = [0u8; 256];
        let read = silent.read(&mut buffer);
        (started.elapsed(), read.map_err(|error| error.kind()))
    })
    .await
    .unwrap();
    let (after, read) = closed_after;
    assert!(read.is_ok(), "closed by the server, not timed out here: {read:?}");
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(5), "closed after {after:?}");
    assert!(health(&server).is_ok());
}

/// Regression (issue 9): every refused webhook became an undeletable audit row (20,000
/// bad-signature posts in 7 s, 20,000 rows and a 29 MB write-ahead log).
#[tokio::test]
async fn twenty_thousand_refused_webhooks_add_a_bounded_number_of_audit_rows_and_are_answered_429() {
    use support::server::{Api, token};

    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start(&world);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = server.url("/hooks/github");
    let sends = (0..20_000).map(|round| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let answer = http
                .post(url)
                .header("x-hub-signature-256", "sha256=0000")
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("forged-{round}"))
                .body(r#"{"ref": "refs/heads/main"}"#)
                .send()
                .await
                .expect("answered");
            answer.status().as_u16()
        }
    });
    let statuses: Vec<u16> = futures_util::stream::iter(sends).buffered(32).collect().await;
    let refused = statuses.iter().filter(|status| **status == 401).count();
    let limited = statuses.iter().filter(|status| **status == 429).count();
    // Ten are refused (a few more may be in flight when the limit is reached), the
    // rest answered 429 without being looked at.
    assert!((10..10 + 32).contains(&refused), "{refused} refused");
    assert_eq!(refused + limited, 20_000);

    let admin = Api::new(&server, Some(&token(&world, "admin", "ops@example.com", &[]).await));
    let audit = admin.get("/api/v1/audit?limit=100000").await.body;
    let rows = audit.as_array().unwrap().iter().filter(|event| event["kind"] == "webhook.refused").count();
    assert_eq!(rows, 10, "one row each for the first ten, no more");
    assert!(admin.get("/healthz").await.status == 200);
}

/// Regression (issue 9): 4,000 wrong token secrets in about a second met no limit and
/// were not audited.
#[tokio::test]
async fn wrong_tokens_are_audited_then_limited_per_source() {
    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let valid = support::server::token(&world, "viewer", "ops@example.com", &[]).await;
    let server = ServerProcess::start(&world);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut statuses = Vec::new();
    for guess in 0..50 {
        let answer = http
            .get(server.url("/api/v1/runs"))
            .bearer_auth(format!("lw_0123456789ab_{guess:064}"))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
        if guess == 49 {
            assert!(answer.headers().contains_key("retry-after"), "{:?}", answer.headers());
        }
    }
    assert_eq!(statuses.iter().filter(|status| **status == 401).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 40, "{statuses:?}");
    // Guessing meets 429, but a valid token from the same address is never held back
    // (issue 22: everyone behind one reverse proxy shares an address).
    let allowed = http.get(server.url("/api/v1/runs")).bearer_auth(&valid).send().await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);

    let audit = world.launchway(&["audit", "--output", "json", "--limit", "1000"]).await;
    let events: serde_json::Value = serde_json::from_str(&audit.stdout()).expect("JSON");
    let refused: Vec<&serde_json::Value> =
        events.as_array().unwrap().iter().filter(|event| event["kind"] == "token.refused").collect();
    assert_eq!(refused.len(), 10);
    assert_eq!(refused[0]["data"]["token"], "0123456789ab", "the token's public id, never its secret");
    assert!(!refused[0].to_string().contains("0000000000000000000000"), "{}", refused[0]);
}

/// Regression (issue 9): a 500 answered the whole error chain, with absolute paths on
/// the server and the git library's internals.
#[tokio::test]
async fn an_internal_error_is_answered_without_paths_or_library_text() {
    use support::server::{Api, token};

    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start(&world);
    let api = Api::new(&server, Some(&token(&world, "deployer", "ops@example.com", &[]).await));
    // The config repo disappears under the running server.
    let repo = world.repo.path().to_path_buf();
    let moved = repo.with_extension("gone");
    std::fs::rename(&repo, &moved).unwrap();
    let answer = api.post("/api/v1/sync", serde_json::json!({})).await;
    std::fs::rename(&moved, &repo).unwrap();
    assert_eq!(answer.status, 500, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap();
    assert!(!message.contains(&*repo.to_string_lossy()), "no server path: {message}");
    assert!(!message.contains('/'), "no path at all: {message}");
    assert!(!message.to_lowercase().contains("gix") && !message.contains("git"), "no library text: {message}");
    let id = message.split("error ").nth(1).and_then(|rest| rest.split(';').next()).expect("an error id");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains(id) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.log().contains(id), "the log has the details under the same id");
}

/// Regression (issue 9): `POST /api/v1/releases` parsed its body before checking the
/// token, so a caller without one got parser details instead of 401.
#[tokio::test]
async fn publishing_without_a_token_is_401_whatever_the_body() {
    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start(&world);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for body in ["", "{", "not json at all", r#"{"app": 1}"#, r#"{"app": "web", "env": "x", "file": []}"#] {
        let answer = http.post(server.url("/api/v1/releases")).body(body).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 401, "body {body:?}");
        let text = answer.text().await.unwrap();
        assert!(!text.contains("expected") && !text.contains("line"), "nothing about the body: {text}");
    }
}

/// Regression (issue 9): `validate` followed symbolic links out of the work tree (it
/// read /proc/self/environ, and echoed a value from a JSON file outside the repo).
#[tokio::test]
async fn validate_refuses_a_symbolic_link_out_of_the_repo_at_the_line_that_refers_to_it() {
    let world = World::new().await;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("images.json");
    std::fs::write(&secret, r#"[{"name": "web", "imageUri": "Not-A-Valid/IMAGE:leaked-value"}]"#).unwrap();
    let repo = world.repo.path();
    std::fs::create_dir_all(repo.join("release")).unwrap();
    std::os::unix::fs::symlink(&secret, repo.join("release/images.json")).unwrap();
    std::fs::write(
        repo.join("launchway.yaml"),
        "environments:\n  dev: {target: docker}\nservices:\n  web:\n    image: example/web:1\n    images_from: release/images.json\n",
    )
    .unwrap();
    let validate = world.launchway(&["validate"]).await;
    validate.assert_exit(3);
    let said = format!("{}{}", validate.stdout(), validate.stderr());
    assert!(
        said.contains("launchway.yaml:6:18: services.web.images_from: could not read release/images.json: release/images.json is a symbolic link that leads outside the config repo"),
        "{said}"
    );
    assert!(!said.contains("leaked-value"), "nothing of the file is shown: {said}");

    // An app file that is such a link is refused too; one that stays inside is read.
    std::fs::create_dir_all(repo.join("apps")).unwrap();
    std::fs::write(repo.join("launchway.yaml"), "environments:\n  dev: {target: docker}\n").unwrap();
    std::fs::write(repo.join("shared.yaml"), "services:\n  api: {image: example/api:1}\n").unwrap();
    std::os::unix::fs::symlink(repo.join("shared.yaml"), repo.join("apps/api.yaml")).unwrap();
    world.launchway(&["validate"]).await.assert_exit(0);
    std::os::unix::fs::symlink(&secret, repo.join("apps/web.yaml")).unwrap();
    let validate = world.launchway(&["validate"]).await;
    assert_ne!(validate.code(), 0);
    assert!(
        validate.stderr().contains("apps/web.yaml is a symbolic link that leads outside the config repo"),
        "{}",
        validate.stderr()
    );
}

/// A request promising `length` bytes of body and sending one, with `headers`: what the
/// server answers within `patience` (empty when it closed without a word), or the error.
fn promise_a_body(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
    length: usize,
    patience: Duration,
) -> (Duration, Result<String, std::io::ErrorKind>) {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(patience)).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: launchway\r\ncontent-type: application/json\r\n{headers}content-length: {length}\r\n\r\n{{"
    );
    stream.write_all(request.as_bytes()).expect("sent");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let outcome = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break Ok(String::from_utf8_lossy(&answer).into_owned()),
            Ok(read) => {
                answer.extend_from_slice(&buffer[..read]);
                if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                    break Ok(String::from_utf8_lossy(&answer).into_owned());
                }
            }
            Err(error) => break Err(error.kind()),
        }
    };
    (started.elapsed(), outcome)
}

/// Issue 22, item 1: bodies were read before the caller was authenticated and with no
/// time limit: a no-token `POST` promising 1 MB was never answered, and one with a token
/// held its connection for good. Now who may send a body is known before a byte of it is
/// read, and a body must come whole within the body timeout.
#[tokio::test]
async fn a_body_that_never_comes_is_refused_before_it_is_read_or_given_up_on() {
    use support::server::token;

    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start_with(&world, &["--body-timeout", "1s"]);
    let addr = server.addr;
    let secret = token(&world, "admin", "admin@example.com", &[]).await;
    let refused = tokio::task::spawn_blocking(move || {
        ["/api/v1/releases", "/api/v1/sync", "/api/v1/tokens", "/hooks/github", "/hooks/gitlab"]
            .map(|path| (path, promise_a_body(addr, path, "", 1_000_000, Duration::from_secs(20))))
    })
    .await
    .unwrap();
    for (path, (after, answer)) in refused {
        let answer = answer.unwrap_or_else(|error| panic!("{path}: not answered: {error:?}"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{path} refused before its body: {answer}");
        assert!(after < Duration::from_secs(5), "{path} answered after {after:?}");
    }

    // With a token, the body still has to come: after the body timeout, the request
    // fails and the connection closes.
    let authorization = format!("authorization: Bearer {secret}\r\n");
    let (after, answer) = tokio::task::spawn_blocking(move || {
        promise_a_body(addr, "/api/v1/sync", &authorization, 100_000, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let answer = answer.expect("answered or closed, not left hanging");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(10), "given up on after {after:?}");
    assert!(health(&server).is_ok());
}

/// Issue 22, item 1: a connection whose body is still arriving counted as busy, so the
/// connection cap closed idle newcomers instead and slow bodies held the server's files.
/// Waiting for a body counts as idle: past the cap, those are the ones closed.
#[tokio::test]
async fn connections_waiting_for_their_body_are_closed_past_the_cap() {
    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start_with(&world, &["--max-connections", "16", "--body-timeout", "60s"]);
    let addr = server.addr;
    let baseline = server.open_files();
    // Signing in reads its body (the token) first: nothing refuses these early.
    let held = tokio::task::spawn_blocking(move || {
        (0..300)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(addr).expect("connects");
                let request = "POST /api/v1/session HTTP/1.1\r\nhost: launchway\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
                stream.write_all(request.as_bytes()).expect("sent");
                stream
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open = server.open_files();
    while open > baseline + 16 + 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = server.open_files();
    }
    assert!(open <= baseline + 16 + 8, "at most the cap stays open: {open} files (baseline {baseline})");
    assert!(health(&server).is_ok());
    drop(held);
}

/// Issue 22, item 7: behind a reverse proxy all clients share one address, and 11 wrong
/// tokens plus 11 unsigned webhooks got the valid admin token, signed pushes and signed
/// Slack presses 429 for the rest of the minute. Requests that authenticate are never
/// held back; and with `--trusted-proxy`, each client is its own source.
#[tokio::test]
async fn failures_from_a_shared_address_never_lock_out_those_who_authenticate() {
    use support::server::{WEBHOOK_SECRET, github_push, token};

    let world = World::new().await;
    world.commit("environments:\n  {env}: {target: docker}\n", "nothing yet");
    let server = ServerProcess::start_with(&world, &["--trusted-proxy", "127.0.0.1"]);
    let admin = token(&world, "admin", "admin@example.com", &[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let from = |client: &'static str| move |request: reqwest::RequestBuilder| request.header("x-forwarded-for", client);
    let guesser = from("198.51.100.7");
    for _ in 0..11 {
        let wrong = guesser(http.get(server.url("/api/v1/runs"))).bearer_auth("lw_nope_nope").send().await.unwrap();
        assert!(matches!(wrong.status().as_u16(), 401 | 429));
        let unsigned = guesser(http.post(server.url("/hooks/github")))
            .header("x-github-event", "push")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(matches!(unsigned.status().as_u16(), 401 | 429));
    }
    let limited = guesser(http.get(server.url("/api/v1/runs"))).bearer_auth("lw_nope_nope").send().await.unwrap();
    assert_eq!(limited.status(), 429, "the guesser is held back");
    // The guesser's own valid token, and a signed push from the same address, get in.
    let valid = guesser(http.get(server.url("/api/v1/runs"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(valid.status(), 200, "a valid token is never held back");
    let body = github_push("refs/heads/main", "0000000000000000000000000000000000000000");
    let signed = guesser(http.post(server.url("/hooks/github")))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", launchway_server::hooks::github_signature(WEBHOOK_SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_ne!(signed.status(), 429, "a signed push is never held back");
    // Another client behind the same proxy is a source of its own.
    let other =
        from("198.51.100.8")(http.get(server.url("/api/v1/runs"))).bearer_auth("lw_nope_nope").send().await.unwrap();
    assert_eq!(other.status(), 401, "someone else's failures are not this client's");
}
