//! What the end-to-end tests share: a config repo, a database and a Docker environment
//! of their own, the launchway binary to drive, and a way to watch replicas from outside.
//!
//! Everything is real: the `launchway` binary built by cargo, a git repo made with the
//! `git` command, a SQLite file, and the local Docker engine running an image built
//! from the launchway binary itself (its hidden `sample-app` subcommand).

#![allow(dead_code)]

pub mod browser;
pub mod ingress;
pub mod server;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use launchway_target::{LiveApp, ReplicaState, Target};
use launchway_target_docker::{DockerTarget, ExecutableImage, build_executable_image};
use launchway_testkit::GitRepo;

/// The image every test deploys; behaviour is set per deployment through env variables.
pub const IMAGE: &str = "launchway-test/sample:1";

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_launchway"))
}

/// One test's world: its own config repo, database and environment name.
pub struct World {
    pub repo: GitRepo,
    pub db: tempfile::TempDir,
    pub env: String,
    pub docker: Arc<DockerTarget>,
    /// Further environments the test deploys to (`{env}-stg`…), cleaned up with it.
    extra_envs: std::sync::Mutex<Vec<String>>,
}

impl World {
    pub async fn new() -> World {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let env = format!("t{:x}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let docker = Arc::new(DockerTarget::connect(None).await.expect("a Docker engine is running"));
        build_executable_image(
            docker.client(),
            &ExecutableImage {
                tag: IMAGE.to_owned(),
                executable: binary(),
                args: vec!["sample-app".to_owned()],
                env: Vec::new(),
            },
        )
        .await
        .expect("the sample image builds");
        World {
            repo: GitRepo::init(),
            db: tempfile::tempdir().expect("temp dir for the database"),
            env,
            docker,
            extra_envs: std::sync::Mutex::default(),
        }
    }

    /// The name of a further environment, `{env}-{suffix}`, removed with the world.
    pub fn env_named(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.env);
        self.extra_envs.lock().unwrap().push(name.clone());
        name
    }

    /// Writes a manifest to the work tree, not committed; `{env}` and `{image}` in it
    /// are filled in.
    pub fn write(&self, manifest: &str) {
        let text = manifest.replace("{env}", &self.env).replace("{image}", IMAGE);
        self.repo.write("launchway.yaml", &text);
    }

    /// Commits a manifest; `{env}` and `{image}` in it are filled in.
    pub fn commit(&self, manifest: &str, message: &str) -> String {
        self.write(manifest);
        self.repo.commit(message)
    }

    /// A `launchway` command against this world's repo and database.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(&binary(), args)
    }

    /// `program` (another build of launchway) with `args`, in this world.
    pub fn command_of(&self, program: &std::path::Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args);
        self.configure(&mut command);
        command
    }

    fn configure(&self, command: &mut Command) {
        command
            .env("LAUNCHWAY_REPO", self.repo.path())
            .env("LAUNCHWAY_DB", self.db.path().join("launchway.db"))
            .env_remove("LAUNCHWAY_OUTPUT")
            .env_remove("LAUNCHWAY_REF")
            .env_remove("LAUNCHWAY_USER");
    }

    /// Runs `launchway` to completion, killed (exit 124, as coreutils' `timeout` says)
    /// if it is still going after `limit`: for commands whose defect was to never end.
    pub async fn launchway_within(&self, args: &[&str], limit: Duration) -> Run {
        let mut command = Command::new("timeout");
        command.args(["--kill-after=5", &format!("{}s", limit.as_secs())]).arg(binary()).args(args);
        self.configure(&mut command);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the command thread finishes")
            .expect("launchway starts");
        Run { output }
    }

    /// Runs `launchway` to completion.
    pub async fn launchway(&self, args: &[&str]) -> Run {
        let mut command = self.command(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the command thread finishes")
            .expect("launchway starts");
        Run { output }
    }

    /// The app's replicas as Docker has them.
    pub async fn live(&self, app: &str) -> LiveApp {
        let live = self.docker.observe(&self.env, &[]).await.expect("live state");
        live.apps.get(app).cloned().unwrap_or_default()
    }

    /// Ids of the app's running containers.
    pub async fn running_ids(&self, app: &str) -> BTreeSet<String> {
        self.live(app)
            .await
            .replicas
            .into_iter()
            .filter(|replica| replica.state == ReplicaState::Running)
            .map(|replica| replica.id)
            .collect()
    }

    /// What every running replica of the app answers on `/`.
    pub async fn answers(&self, app: &str) -> Vec<String> {
        let client = client();
        let mut answers = Vec::new();
        for replica in self.live(app).await.replicas {
            let endpoint = replica.endpoints.first().expect("a published port");
            let body = client
                .get(format!("http://{endpoint}/"))
                .send()
                .await
                .expect("the replica answers")
                .text()
                .await
                .expect("a body");
            answers.push(body);
        }
        answers
    }

    /// What every published port of every running replica answers on `/`.
    pub async fn answers_on_every_port(&self, app: &str) -> Vec<String> {
        let client = client();
        let mut answers = Vec::new();
        for replica in self.live(app).await.replicas {
            for endpoint in &replica.endpoints {
                let response = client.get(format!("http://{endpoint}/")).send().await.expect("the port answers");
                answers.push(response.text().await.expect("a body"));
            }
        }
        answers
    }

    /// Runs as `launchway history --output json` lists them, newest first.
    pub async fn runs(&self) -> Vec<serde_json::Value> {
        let run = self.launchway(&["history", "--output", "json", "--limit", "100"]).await;
        run.assert_exit(0);
        serde_json::from_str(&run.stdout()).expect("history prints JSON")
    }

    /// One run in full: the run, its release, steps and events.
    pub async fn run_details(&self, id: i64) -> serde_json::Value {
        let run = self.launchway(&["history", &id.to_string(), "--output", "json"]).await;
        run.assert_exit(0);
        serde_json::from_str(&run.stdout()).expect("history prints JSON")
    }

    /// Watches the app from outside while a deploy runs: how many replicas answer their
    /// health check, sampled as often as it can.
    pub fn watch(&self, app: &str) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let docker = Arc::clone(&self.docker);
        let env = self.env.clone();
        let app = app.to_owned();
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let client = client();
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Some(healthy) = healthy_now(&docker, &client, &env, &app).await {
                    samples.push(healthy);
                }
            }
            samples
        });
        Watcher { stop, task }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let docker = Arc::clone(&self.docker);
        let mut envs = vec![self.env.clone()];
        envs.extend(self.extra_envs.lock().unwrap().drain(..));
        // Drop may run inside the test's runtime, which cannot block on itself.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                for env in envs {
                    let _ = docker.remove_environment(&env).await;
                }
            })
        });
        let _ = cleanup.join();
    }
}

/// One sample: the number of the app's replicas answering 2xx on /healthz. A sample is
/// kept only if the set of containers did not change while it was taken, so a replica
/// created or removed mid-sample cannot make it wrong.
async fn healthy_now(docker: &DockerTarget, client: &reqwest::Client, env: &str, app: &str) -> Option<usize> {
    let before = docker.observe(env, &[]).await.ok()?.apps.get(app).cloned().unwrap_or_default();
    let probes = before.replicas.iter().filter(|r| r.state == ReplicaState::Running).map(|replica| {
        let url = replica.endpoints.first().map(|endpoint| format!("http://{endpoint}/healthz"));
        async move {
            match url {
                Some(url) => client.get(url).send().await.is_ok_and(|response| response.status().is_success()),
                None => false,
            }
        }
    });
    let healthy = futures_util::future::join_all(probes).await.into_iter().filter(|ok| *ok).count();
    let after = docker.observe(env, &[]).await.ok()?.apps.get(app).cloned().unwrap_or_default();
    let ids = |live: &LiveApp| live.replicas.iter().map(|r| r.id.clone()).collect::<BTreeSet<_>>();
    (ids(&before) == ids(&after)).then_some(healthy)
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<usize>>,
}

impl Watcher {
    /// Stops watching and returns every sample, in order.
    pub async fn samples(self) -> Vec<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the watcher finishes")
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("an HTTP client")
}

/// A finished `launchway` process.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    #[track_caller]
    pub fn assert_exit(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "launchway exited with {} instead of {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}
