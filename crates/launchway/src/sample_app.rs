//! A tiny HTTP server, shipped inside launchway so that the demo and the tests have a
//! container image to deploy on a machine that cannot pull one.
//!
//! Configured by environment variables, so a manifest can make it misbehave:
//! `PORT` (8080), `SAMPLE_MESSAGE`, `SAMPLE_HEALTH=fail` (health checks answer 500),
//! `SAMPLE_START_DELAY=2s` (slow start), `SAMPLE_EXIT_AFTER=1s` (crash, with exit code
//! `SAMPLE_EXIT_CODE`, 3 by default: 0 makes it a task that finishes).
//! `SAMPLE_ERRORS=1` makes its work fail while its health check passes (what only an
//! analysis catches). `GET /` answers the message and the container's hostname; `GET
//! /healthz` answers "ok"; `GET /work` answers 200, or 500 with `SAMPLE_ERRORS=1`;
//! `GET /metrics` gives Prometheus the gauge `sample_app_errors` (0 or 1). It exits at once on SIGTERM: as PID 1 in a container nothing else would.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sample-app: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve())
}

async fn serve() -> ExitCode {
    let setting = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let duration = |name: &str| setting(name).and_then(|value| humantime::parse_duration(&value).ok());
    let port: u16 = setting("PORT").and_then(|port| port.parse().ok()).unwrap_or(8080);
    let message = setting("SAMPLE_MESSAGE").unwrap_or_else(|| "hello from launchway".to_owned());
    let healthy = setting("SAMPLE_HEALTH").as_deref() != Some("fail");
    let failing = setting("SAMPLE_ERRORS").as_deref() == Some("1");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();

    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            eprintln!("sample-app: cannot handle SIGTERM: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The crash timer runs from the start, so a crash can come before the app listens.
    let exit_after = duration("SAMPLE_EXIT_AFTER");
    let crash = async {
        match exit_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(crash);
    if let Some(delay) = duration("SAMPLE_START_DELAY") {
        println!("sample-app: starting slowly, listening in {delay:?}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = terminate.recv() => return ExitCode::SUCCESS,
            () = &mut crash => return crashed(&setting),
        }
    }
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("sample-app: cannot listen on port {port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("sample-app: listening on port {port} ({message}), health {}", if healthy { "ok" } else { "failing" });
    let body = format!("{message} ({hostname})\n");
    let work = move || async move {
        match failing {
            true => (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose (SAMPLE_ERRORS=1)\n"),
            false => (StatusCode::OK, "done\n"),
        }
    };
    let metrics =
        move || async move { format!("# TYPE sample_app_errors gauge\nsample_app_errors {}\n", u8::from(failing)) };
    let app = Router::new()
        .route("/", get(move || async move { body }))
        .route("/work", get(work))
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(move || async move {
                if healthy {
                    (StatusCode::OK, "ok\n")
                } else {
                    eprintln!("sample-app: health check failing on purpose (SAMPLE_HEALTH=fail)");
                    (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose\n")
                }
            }),
        );
    tokio::select! {
        result = axum::serve(listener, app) => {
            if let Err(error) = result {
                eprintln!("sample-app: server failed: {error}");
            }
            ExitCode::FAILURE
        }
        _ = terminate.recv() => ExitCode::SUCCESS,
        () = &mut crash => crashed(&setting),
    }
}

fn crashed(setting: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let code: u8 = setting("SAMPLE_EXIT_CODE").and_then(|code| code.parse().ok()).unwrap_or(3);
    if code == 0 {
        println!("sample-app: done (SAMPLE_EXIT_AFTER), exiting with code 0");
    } else {
        eprintln!("sample-app: crashing on purpose (SAMPLE_EXIT_AFTER), exit code {code}");
    }
    ExitCode::from(code)
}
