//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// GitOps continuous delivery for container services.
///
/// Desired state lives in a git repository (launchway.yaml, apps/*.yaml); every change
/// becomes a durable run: validate, plan, deploy, verify, with automatic rollback.
///
/// Exit codes: 0 success; 1 could not run; 2 usage error; 3 invalid manifest;
/// 4 a run failed; 5 a run was rolled back; 6 a run waits for approval.
#[derive(Debug, Parser)]
#[command(name = "launchway", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The config repo: a path (the repo or a folder in it) or a URL (file://, http(s)://, ssh://).
    #[arg(long, global = true, env = "LAUNCHWAY_REPO", default_value = ".")]
    pub repo: String,
    /// The branch, tag or commit to read desired state from.
    #[arg(long = "ref", global = true, env = "LAUNCHWAY_REF", default_value = "HEAD", value_name = "REF")]
    pub git_ref: String,
    /// Where launchway keeps runs, releases and the audit log: a SQLite file path or sqlite: URL.
    /// [default: <data dir>/launchway/launchway.db]
    #[arg(long, global = true, env = "LAUNCHWAY_DB", value_name = "PATH|URL")]
    pub db: Option<String>,
    /// How to print results.
    #[arg(long, global = true, env = "LAUNCHWAY_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Scope {
    /// Only this environment.
    #[arg(long, short)]
    pub env: Option<String>,
    /// Only these apps (repeatable).
    #[arg(long = "app", short = 'a', value_name = "APP")]
    pub apps: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifest files on disk (not yet committed) and report every problem.
    Validate {
        /// A config repo folder or a launchway.yaml file [default: --repo when it is a path].
        path: Option<PathBuf>,
    },
    /// Show what deploying would change, without changing anything.
    Plan {
        #[command(flatten)]
        scope: Scope,
    },
    /// Deploy the desired state at --ref: a run for each app whose state differs.
    Deploy {
        #[command(flatten)]
        scope: Scope,
        /// Deploy a revision again even though its last run failed or was rolled back.
        #[arg(long)]
        retry: bool,
    },
    /// What runs where: releases, replicas and the last run of each app.
    Status {
        #[command(flatten)]
        scope: Scope,
    },
    /// Past runs, newest first; with a run id, that run's steps and events.
    History {
        /// A run to show in full.
        run: Option<i64>,
        #[command(flatten)]
        scope: Scope,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Return an app to an earlier release (the last good one before the current).
    Rollback {
        #[arg(long, short = 'a')]
        app: String,
        #[arg(long, short)]
        env: Option<String>,
        /// The release to return to.
        #[arg(long, value_name = "RELEASE")]
        to: Option<i64>,
    },
    /// Run the whole job on this machine: a throwaway config repo, a locally built
    /// image, v1 deployed, v2 committed and rolled out, then cleaned up.
    Demo {
        /// Leave the containers, repo and database in place and print how to look at them.
        #[arg(long)]
        keep: bool,
        /// Also show a failing release being rolled back automatically.
        #[arg(long)]
        with_failure: bool,
    },
    /// A tiny HTTP server (used as the demo's and the tests' container image).
    #[command(hide = true)]
    SampleApp,
}
