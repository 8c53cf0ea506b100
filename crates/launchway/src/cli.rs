//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// GitOps continuous delivery for container services.
///
/// Desired state lives in a git repository (launchway.yaml, apps/*.yaml); every change
/// becomes a durable run: validate, plan, deploy, verify, with automatic rollback.
///
/// Exit codes: 0 success; 1 could not run; 2 usage error (and, for `plan
/// --detailed-exitcode`, changes to make); 3 invalid manifest; 4 a run failed; 5 a run
/// was rolled back; 6 a run waits for approval.
#[derive(Debug, Parser)]
#[command(name = "launchway", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts (so `launchway --db X history` works), listed apart
/// from each command's own in its help, and only in the help of the commands they change
/// (see [`command`]).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
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
    /// A launchway server to talk to instead of the local database (status, history,
    /// rollback, unpin, approve, reject, promote, abort, release publish, audit, dora,
    /// token). validate, plan, deploy and demo work on this machine and say so.
    #[arg(long, global = true, env = "LAUNCHWAY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The API token for --server.
    #[arg(long, global = true, env = "LAUNCHWAY_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who you are, for the audit log, approvals and pins, when using the local database
    /// [default: git's user.email in the config repo]. With --server, the token's
    /// subject is who you are.
    #[arg(long = "as", global = true, env = "LAUNCHWAY_USER", value_name = "IDENTITY")]
    pub identity: Option<String>,
}

/// The global options each command uses, by the id clap knows them by; the others are
/// accepted (a script may set `LAUNCHWAY_SERVER` for every call) but left out of the
/// command's help and completions. A group (`token`, `release`, `ci`) covers its commands.
const GLOBAL_OPTIONS_USED: &[(&str, &[&str])] = &[
    ("validate", &["repo", "output"]),
    ("plan", &["repo", "git_ref", "db", "output"]),
    ("deploy", &["repo", "git_ref", "db", "output", "identity"]),
    ("status", &["repo", "git_ref", "db", "output", "server", "token"]),
    ("history", &["db", "output", "server", "token"]),
    ("rollback", &["repo", "db", "output", "server", "token", "identity"]),
    ("unpin", &["repo", "db", "output", "server", "token", "identity"]),
    ("server", &["repo", "db"]),
    ("approve", &["repo", "db", "output", "server", "token", "identity"]),
    ("reject", &["repo", "db", "output", "server", "token", "identity"]),
    ("promote", &["repo", "db", "output", "server", "token", "identity"]),
    ("abort", &["repo", "db", "output", "server", "token", "identity"]),
    ("token", &["repo", "db", "output", "server", "token", "identity"]),
    ("release", &["repo", "git_ref", "db", "output", "server", "token", "identity"]),
    ("ci", &["output"]),
    ("audit", &["db", "output", "server", "token"]),
    ("dora", &["db", "output", "server", "token"]),
    ("demo", &[]),
    ("completion", &[]),
    ("version", &["output"]),
    ("sample-app", &[]),
    ("proxy", &[]),
    ("proxy-lend", &[]),
];

/// The command line as parsed and completed: [`Cli`] with each global option hidden from
/// the help of the commands that do not use it. A hidden copy of the option is placed on
/// the command, which clap then does not propagate over; values given there still reach
/// [`Global`].
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    let globals: Vec<clap::Arg> = command.get_arguments().filter(|arg| arg.is_global_set()).cloned().collect();
    for (name, used) in GLOBAL_OPTIONS_USED {
        let hidden: Vec<clap::Arg> = globals
            .iter()
            .filter(|arg| !used.contains(&arg.get_id().as_str()))
            .map(|arg| arg.clone().hide(true))
            .collect();
        command = command.mut_subcommand(*name, |subcommand| {
            // An option of the command's own by the same name (proxy's --token) wins, as
            // it does without this.
            let own: Vec<clap::Arg> = hidden
                .into_iter()
                .filter(|arg| subcommand.get_arguments().all(|own| own.get_id() != arg.get_id()))
                .collect();
            subcommand.args(own)
        });
    }
    command
}

/// Parses the process's arguments (exits with clap's message and status 2 on a usage error).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let mut cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|error| error.exit());
    cli.global.forget_empty();
    cli
}

impl Global {
    /// An option given empty (`LAUNCHWAY_SERVER=` in a script that sets it for some
    /// calls only) is not given: an empty server URL would demand a token.
    fn forget_empty(&mut self) {
        for option in [&mut self.db, &mut self.server, &mut self.token, &mut self.identity] {
            if option.as_deref().is_some_and(|value| value.trim().is_empty()) {
                *option = None;
            }
        }
    }
}

/// How `launchway server` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per entry, for people and journald.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
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
        /// Exit 2 when something would change and 0 when nothing would (1 when the plan
        /// could not be made), as `terraform plan -detailed-exitcode` does: a CI job can
        /// gate on it.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan the manifest files on disk, uncommitted edits included, instead of --ref.
        #[arg(long)]
        work_tree: bool,
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
    /// Return an app to an earlier verified release (the last one before the current)
    /// and pin it there: nothing newer deploys until `launchway unpin`.
    Rollback {
        /// The app to roll back.
        #[arg(long, short = 'a')]
        app: String,
        /// Its environment [default: the only one it is deployed in].
        #[arg(long, short)]
        env: Option<String>,
        /// The release to return to (it must have been verified there).
        #[arg(long, value_name = "RELEASE")]
        to: Option<i64>,
        /// Why, shown with the pin in `status`, the API and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a rollback's pin: the repo's desired state deploys there again.
    Unpin {
        /// The pinned app.
        #[arg(long, short = 'a')]
        app: String,
        /// Its environment [default: the only one it is pinned in].
        #[arg(long, short)]
        env: Option<String>,
    },
    /// Run the controller: the HTTP API and webhooks, repo polling, run workers, Docker
    /// scheduled tasks, notifications and metrics.
    Server(ServerArgs),
    /// Approve a run waiting for approval; it deploys at once.
    Approve(DecisionArgs),
    /// Reject a run waiting for approval; nothing is changed.
    Reject(DecisionArgs),
    /// End the pause of a run moving traffic step by step (blue/green, canary): it goes
    /// on to its next step now.
    Promote(ControlArgs),
    /// Send the traffic of a run moving it step by step back to the release that served,
    /// and roll back, now.
    Abort(ControlArgs),
    /// Manage API tokens (local database: how the first admin token is made).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Releases published by CI.
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Helpers for CI jobs.
    Ci {
        #[command(subcommand)]
        command: CiCommand,
    },
    /// The audit log: every transition, approval, publication, token change and webhook.
    Audit {
        #[command(flatten)]
        scope: Scope,
        /// Only this run's entries.
        #[arg(long)]
        run: Option<i64>,
        /// The most recent entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// DORA metrics per app and environment: deployment frequency, lead time, change
    /// failure rate and time to restore.
    Dora {
        #[command(flatten)]
        scope: Scope,
        /// The window, in days, ending now.
        #[arg(long, default_value_t = 30)]
        days: u32,
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
    /// Print a shell completion script, for example
    /// `launchway completion bash > /etc/bash_completion.d/launchway`.
    Completion {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print launchway's version.
    Version,
    /// A tiny HTTP server (used as the demo's and the tests' container image).
    #[command(hide = true)]
    SampleApp,
    /// Run the traffic entry point of a Docker host: route ports to replicas, by weight,
    /// with drain; routes are kept in --state and changed through the admin API.
    Proxy(ProxyArgs),
    /// Lend the listening sockets of a running proxy that cannot hand them over itself
    /// (started by a launchway from before hand-overs) to the proxy replacing it: run by
    /// the Docker target in a short-lived container with ptrace rights over the old one.
    #[command(hide = true)]
    ProxyLend(ProxyLendArgs),
}

#[derive(Debug, Args)]
pub struct ProxyLendArgs {
    /// The old proxy's process id, in this process's PID namespace.
    #[arg(long)]
    pub from_pid: i32,
    /// The state file the old and the new proxy share (the hand-over socket is beside it).
    #[arg(long)]
    pub state: PathBuf,
    /// The admin API's address, whose socket goes to the new proxy's admin API.
    #[arg(long)]
    pub admin: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The file routes are kept in (read back on start).
    #[arg(long, env = "LAUNCHWAY_PROXY_STATE")]
    pub state: PathBuf,
    /// The address route ports are opened on.
    #[arg(long, default_value = "0.0.0.0")]
    pub listen_ip: std::net::IpAddr,
    /// Where the admin API listens (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub admin: std::net::SocketAddr,
    /// The bearer token the admin API requires [default: none, for loopback only].
    #[arg(long, env = "LAUNCHWAY_PROXY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Take the listening sockets of a proxy running with the same state folder, when one
    /// does, so that replacing it refuses no connection.
    #[arg(long)]
    pub take_over: bool,
    /// The launchway build this proxy comes from (VERSION/WRITTEN/SIZE): a proxy is
    /// only taken over by one at least as new.
    #[arg(long)]
    pub build: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where the API and webhooks listen.
    #[arg(long, env = "LAUNCHWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Where Prometheus metrics are served (/metrics); off unless given.
    #[arg(long, env = "LAUNCHWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The URL people reach the server at, for links in notifications.
    #[arg(long, env = "LAUNCHWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The secret GitHub signs webhooks with / GitLab sends; without one, webhooks are refused.
    #[arg(long, env = "LAUNCHWAY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// The branch environments follow by default [default: the repo's default branch].
    #[arg(long)]
    pub branch: Option<String>,
    /// How often to poll the config repo (webhooks make it immediate).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub poll: std::time::Duration,
    /// How many runs to drive at once.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Connections the API keeps open at once; past it, the longest-open idle one is
    /// closed (keep it well under the process's file descriptor limit).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a client has to send a request's headers (after connecting, or after
    /// its previous response) before its connection is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// How long a client has to send a request's whole body, once its headers came,
    /// before the request fails and its connection is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: std::time::Duration,
    /// The only hosts chat and webhook notifications may go to (repeatable, or
    /// comma-separated; `*.example.com` for names under it) [default: any host, but
    /// never a link-local address such as the cloud metadata service].
    #[arg(long = "notify-allow", env = "LAUNCHWAY_NOTIFY_ALLOW", value_delimiter = ',', value_name = "HOST")]
    pub notify_allow: Vec<String>,
    /// Slack's signing secret for the app whose messages carry Approve, Reject and Roll
    /// back buttons (Slack posts them to /hooks/slack/interactions); without it, chat
    /// messages link to the web page instead.
    #[arg(long, env = "LAUNCHWAY_SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Option<String>,
    /// Who a Slack user is in launchway: `U024BE7LH=alice@example.com` (repeatable, or
    /// comma-separated). The identity's role is the highest of its live tokens.
    #[arg(long = "slack-user", env = "LAUNCHWAY_SLACK_USERS", value_delimiter = ',', value_name = "SLACK_ID=IDENTITY")]
    pub slack_users: Vec<String>,
    /// A reverse proxy in front of the server (repeatable, or comma-separated): from it,
    /// a request's source is the address it names in X-Forwarded-For, which the limits
    /// on failed authentication go by; from anyone else the header is ignored.
    #[arg(long = "trusted-proxy", env = "LAUNCHWAY_TRUSTED_PROXIES", value_delimiter = ',', value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How log lines are written (to stderr): one per run transition, and warnings;
    /// LAUNCHWAY_LOG (an env-filter such as `info` or `launchway=debug`) shows more.
    #[arg(long, env = "LAUNCHWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// The run waiting for approval.
    pub run: i64,
    /// Why, for the audit log and chat.
    #[arg(long, short)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The run (state `progressing`).
    pub run: i64,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is shown once.
    Create {
        /// What it is for ("ci for web", "alice's laptop").
        #[arg(long)]
        name: String,
        /// Who it acts for: an email for people (approvals compare it with the release's
        /// author), a job name for CI.
        #[arg(long)]
        subject: String,
        /// viewer, deployer, approver, admin or ci-publisher.
        #[arg(long)]
        role: String,
        /// For ci-publisher: an app it may publish for (repeatable).
        #[arg(long = "app", value_name = "APP")]
        apps: Vec<String>,
        /// For ci-publisher: an environment it may publish to (repeatable).
        #[arg(long = "env", value_name = "ENV")]
        envs: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token at once.
    Revoke {
        /// The token's id (the part after `lw_`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Publish the images CI built for an app in an environment, from CodePipeline's
    /// imagedefinitions.json or CodeDeploy's imageDetail.json; the release deploys.
    Publish {
        /// The app the images are for.
        #[arg(long, short = 'a')]
        app: String,
        /// The environment to deploy them to.
        #[arg(long, short)]
        env: String,
        /// imagedefinitions.json or imageDetail.json.
        #[arg(long, short)]
        file: PathBuf,
        /// The application commit the images were built from (`$CI_COMMIT_SHA`,
        /// `$GITHUB_SHA`), shown with the release.
        #[arg(long, value_name = "SHA")]
        commit: Option<String>,
        /// That commit's author: the release's author, who may not approve it where the
        /// environment forbids it (`$CI_COMMIT_AUTHOR`).
        #[arg(long, value_name = "IDENTITY")]
        author: Option<String>,
        /// Deploy these images even though they failed before.
        #[arg(long)]
        retry: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Print the last commit that changed DIR: an image tag that changes only when the
    /// container's own files do.
    Tag {
        /// The folder (or file) the image is built from.
        #[arg(long)]
        path: PathBuf,
        /// Where history starts.
        #[arg(long = "ref", default_value = "HEAD", value_name = "REF")]
        git_ref: String,
        /// How many hex digits to print (40 for the full id).
        #[arg(long, default_value_t = 12)]
        length: usize,
        /// Put an environment first: `ENV-<commit>`, the `${env}-${sha}` tags of pipelines
        /// that build an image per environment.
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_says_which_global_options_it_uses() {
        let command = command();
        command.clone().debug_assert();
        for subcommand in command.get_subcommands() {
            assert!(
                GLOBAL_OPTIONS_USED.iter().any(|(name, _)| *name == subcommand.get_name()),
                "{} is missing from GLOBAL_OPTIONS_USED",
                subcommand.get_name()
            );
        }
    }

    #[test]
    fn every_option_and_argument_is_described() {
        fn undescribed(command: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
                if arg.get_help().is_none() && !matches!(arg.get_id().as_str(), "help" | "version") {
                    found.push(format!("{path} {}", arg.get_id()));
                }
            }
            for subcommand in command.get_subcommands() {
                undescribed(subcommand, &format!("{path} {}", subcommand.get_name()), found);
            }
        }
        let mut found = Vec::new();
        let mut command = command();
        command.build();
        undescribed(&command, "launchway", &mut found);
        assert!(found.is_empty(), "undescribed: {found:?}");
    }

    #[test]
    fn a_global_option_hidden_from_a_command_still_reaches_it() {
        let matches = command().try_get_matches_from(["launchway", "history", "--repo", "/r", "--db", "x.db"]).unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        assert_eq!((cli.global.repo.as_str(), cli.global.db.as_deref()), ("/r", Some("x.db")));
        let matches = command().try_get_matches_from(["launchway", "--db", "y.db", "history"]).unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.global.db.as_deref(), Some("y.db"));
    }
}
