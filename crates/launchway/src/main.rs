//! The `launchway` command: argument parsing, wiring and exit codes. Each subcommand
//! lives in `commands/`; the work happens in the library crates.

mod builder;
mod cli;
mod client;
mod commands;
mod context;
mod notify;
mod output;
mod sample_app;
mod targets;

use std::process::ExitCode;

use crate::cli::{Command, LogFormat, Output};
use crate::context::Context;
use crate::output::InvalidManifest;

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
    /// `plan --detailed-exitcode`: something would change.
    pub const CHANGES: u8 = 2;
    pub const INVALID_MANIFEST: u8 = 3;
    pub const RUN_FAILED: u8 = 4;
    pub const ROLLED_BACK: u8 = 5;
    pub const AWAITING_APPROVAL: u8 = 6;
}

fn main() -> ExitCode {
    end_quietly_on_a_closed_pipe();
    let cli = cli::parse();
    match cli.command {
        // The sample app runs as PID 1 in a scratch container: no logging set-up, no
        // data directory, nothing but the server.
        Command::SampleApp => return sample_app::main(),
        Command::Completion { shell } => {
            // Written whole, through println!'s closed-pipe handling (clap_complete
            // panics with a message of its own on a write error).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli::command(), "launchway", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    match &cli.command {
        Command::Server(args) => init_logging(RUN_TRANSITIONS, args.log_format),
        _ => init_logging("", LogFormat::Text),
    }
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

/// `launchway history | head -1`: once the reader has gone, printing more fails, and
/// Rust's `println!` panics on that (a stack trace, exit 101). Like `ls` or `git log`,
/// launchway then ends quietly with the status a process killed by SIGPIPE has (141);
/// the runs it drives are not affected by what happens to its output (progress lines
/// ignore write errors), only the final printing ends early. Resetting SIGPIPE instead
/// would also kill the process for a write to a closed Docker socket.
fn end_quietly_on_a_closed_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message
            .is_some_and(|message| message.starts_with("failed printing to std") && message.contains("Broken pipe"))
        {
            std::process::exit(141);
        }
        default_hook(info);
    }));
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

/// What the server logs by default beside warnings: a line per run transition.
const RUN_TRANSITIONS: &str = "launchway::runs=info";

/// Logs go to stderr: warnings, and `also` (an env-filter directive), unless
/// `LAUNCHWAY_LOG` (an env-filter string) says otherwise.
fn init_logging(also: &str, format: LogFormat) {
    let default = if also.is_empty() { "warn".to_owned() } else { format!("warn,{also}") };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAUNCHWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        // Colour only for a terminal: logs sent to a file or a journal stay plain text.
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
}
