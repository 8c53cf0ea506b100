//! What the entry point's tests and benchmark share: the web service they deploy behind
//! `ingress:`, and a proxy of their own per test.

use super::World;

pub const WEB: &str = "
environments:
  {env}:
    target: docker
services:
  web:
    image: {image}
    port: 8080
    replicas: 2
    env:
      SAMPLE_MESSAGE: {message}
    health:
      path: /healthz
      interval: 1s
      timeout: 500ms
      start_interval: 50ms
    stop_grace_period: 2s
    settle_window: 500ms
    ingress:
      port: {ingress}
";

/// This test's proxy: its admin address, and its container removed at the end. The
/// tests here take turns: each starts a proxy of its own, whose first start imports the
/// image of the (large, debug) launchway binary.
pub struct TestProxy {
    pub admin: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl TestProxy {
    pub async fn new() -> TestProxy {
        let turn = TURNS.lock().await;
        TestProxy { admin: format!("127.0.0.1:{}", launchway_testkit::free_port()), _turn: turn }
    }

    /// `docker <args> <this proxy's running container>`, which must succeed (restart,
    /// kill…).
    pub fn docker(&self, args: &[&str]) {
        let running = self.containers(false);
        assert_eq!(running.len(), 1, "one proxy container runs: {running:?}");
        let output = std::process::Command::new("docker").args(args).arg(&running[0]).output().expect("docker runs");
        assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// The ids of this proxy's containers (those that ended too, with `all`), found by
    /// their label as launchway finds them.
    pub fn containers(&self, all: bool) -> Vec<String> {
        let filter = format!("label=launchway.proxy.admin={}", self.admin);
        let mut command = std::process::Command::new("docker");
        command.args(["ps", "-q", "--no-trunc", "--filter", &filter]);
        if all {
            command.arg("--all");
        }
        let output = command.output().expect("docker runs");
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
    }

    /// `launchway deploy` in `world`, with this test's proxy.
    pub fn deploy_command(&self, world: &World) -> std::process::Command {
        let mut command = world.command(&["deploy"]);
        command.env("LAUNCHWAY_PROXY_ADMIN", &self.admin);
        command
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let port = self.admin.rsplit(':').next().unwrap_or_default();
        for container in self.containers(true) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &container]).output();
        }
        // One made as a launchway from before hand-overs made it (no labels but its role).
        let _ = std::process::Command::new("docker").args(["rm", "-f", &format!("launchway-proxy-{port}")]).output();
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", &format!("launchway-proxy-state-{port}")])
            .output();
    }
}

/// `docker <args>`, which must succeed; its output, trimmed.
pub fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker").args(args).output().expect("docker runs");
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub async fn output(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output()).await.expect("thread").expect("runs")
}

pub async fn deploy(world: &World, proxy: &TestProxy) {
    let output = output(proxy.deploy_command(world)).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `WEB` with `strategy` in place of the rolling update, and `extra` environment lines.
pub fn progressive(ingress: u16, message: &str, extra: &str, strategy: &str) -> String {
    WEB.replace("{message}", message)
        .replace("{ingress}", &ingress.to_string())
        .replace("      SAMPLE_MESSAGE:", &format!("{extra}      SAMPLE_MESSAGE:"))
        .replace("    stop_grace_period: 2s\n", &format!("    stop_grace_period: 2s\n    strategy:\n{strategy}"))
}
