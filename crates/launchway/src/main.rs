//! The `launchway` command: argument parsing, wiring and exit codes. Each subcommand
//! lives in `commands/`; the work happens in the library crates.

mod cli;
mod client;
mod commands;
mod context;
mod output;
mod sample_app;
mod targets;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, Output};
use crate::context::{Context, InvalidManifest};

/// jemalloc rather than glibc's allocator: `launchway server` runs for months and goes
/// through bursts (a thousand runs planned at start, a thousand manifests parsed), and
/// glibc's per-thread arenas keep what a burst took. With jemalloc returning freed pages
/// after a second (its options are set at build time in `.cargo/config.toml`), the idle
/// server of BENCHMARKS.md uses about half the memory.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit codes, documented in `launchway --help`.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const INVALID_MANIFEST: u8 = 3;
    pub const RUN_FAILED: u8 = 4;
    pub const ROLLED_BACK: u8 = 5;
    pub const AWAITING_APPROVAL: u8 = 6;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::SampleApp) {
        // The sample app runs as PID 1 in a scratch container: no logging set-up, no
        // data directory, nothing but the server.
        return sample_app::main();
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let output = cli.global.output;
    let context = Context::new(cli.global);
    let result = runtime.block_on(async {
        tokio::spawn(stop_on_signal(context.stop.clone()));
        commands::run(&context, cli.command).await
    });
    report_resources();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if let Some(invalid) = error.downcast_ref::<InvalidManifest>() {
                output::print_invalid_manifest(output, invalid);
                return ExitCode::from(exit::INVALID_MANIFEST);
            }
            match output {
                Output::Json => println!("{}", serde_json::json!({"error": format!("{error:#}")})),
                Output::Text => eprintln!("error: {error:#}"),
            }
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Ctrl-C or SIGTERM: runs stop at their next step boundary, persisted, with their
/// lease given up, so that the next `launchway deploy` resumes them at once. A second
/// signal, or ten seconds, and the process exits; what it was doing resumes all the same.
async fn stop_on_signal(stop: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("\nstopping after the current step (again to quit at once; runs resume where they stop)");
    stop.cancel();
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
    }
    eprintln!("quitting now; `launchway deploy` resumes the interrupted runs");
    std::process::exit(i32::from(exit::ERROR));
}

/// With `LAUNCHWAY_REPORT_RESOURCES=1`, prints the process's peak memory to stderr
/// (`launchway: peak-rss-kib=…`): how the benchmarks measure memory without tools.
fn report_resources() {
    if std::env::var_os("LAUNCHWAY_REPORT_RESOURCES").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    if let Some(peak) = peak {
        eprintln!("launchway: peak-rss-kib={peak}");
    }
}

/// Logs go to stderr, quiet unless `LAUNCHWAY_LOG` (an env-filter string) asks.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAUNCHWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only for a terminal: logs sent to a file or a journal stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}
