//! A real Prometheus server (Debian's `prometheus` package, installed by `.ci/run`) on
//! a free loopback port, scraping one target every 500 ms, its data in a temporary
//! directory. Stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Prometheus {
    /// Like `http://127.0.0.1:41234`.
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`127.0.0.1:8000`, path `/metrics`), and
    /// waits until it is ready.
    pub async fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("prometheus.yml");
        let text = format!(
            "global: {{scrape_interval: 500ms, evaluation_interval: 500ms}}\n\
             scrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{target}']}}]\n"
        );
        std::fs::write(&config, text).expect("config written");
        let port = crate::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the prometheus binary runs (Debian's `prometheus` package; .ci/run installs it)");
        let prometheus = Prometheus { address: format!("http://127.0.0.1:{port}"), child, _dir: dir };
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        for _ in 0..300 {
            let ready = http.get(format!("{}/-/ready", prometheus.address)).send().await;
            if ready.is_ok_and(|answer| answer.status().is_success()) {
                return prometheus;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus did not become ready on {} within 30s", prometheus.address);
    }

    /// Waits until `query` returns at least one value (the first scrapes are in).
    pub async fn wait_for(&self, query: &str) {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let url = url::Url::parse_with_params(&format!("{}/api/v1/query", self.address), [("query", query)])
            .expect("a query URL");
        for _ in 0..300 {
            let answer = http.get(url.clone()).send().await;
            if let Ok(answer) = answer
                && let Ok(text) = answer.text().await
                && text.contains("\"value\"")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{query} returned nothing within 30s");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
