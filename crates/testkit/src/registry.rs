//! A real image registry (Debian's `docker-registry` package, the CNCF distribution
//! registry; `.ci/run` installs it) on a free loopback port, its storage in a temporary
//! directory, open or behind basic authentication (an htpasswd file made with
//! `htpasswd -B`, from `apache2-utils`). The Docker engine pushes to loopback registries
//! over plain HTTP without any configuration. Stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Registry {
    /// `127.0.0.1:PORT`: the host part of image names pushed there.
    pub host: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A registry anyone may push to.
    pub async fn start() -> Registry {
        Registry::start_with(None).await
    }

    /// A registry that takes `user` with `password` only (basic authentication).
    pub async fn start_with_password(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password))).await
    }

    async fn start_with(login: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = crate::free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let made = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd runs (Debian's `apache2-utils` package; .ci/run installs it)");
            assert!(made.status.success(), "htpasswd: {}", String::from_utf8_lossy(&made.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, made.stdout).expect("htpasswd written");
            config.push_str(&format!("auth:\n  htpasswd: {{realm: launchway-test, path: {}}}\n", file.display()));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("config written");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the docker-registry binary runs (Debian's `docker-registry` package; .ci/run installs it)");
        let registry = Registry { host: format!("127.0.0.1:{port}"), child, _dir: dir };
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        for _ in 0..300 {
            // 200 when open, 401 when it asks for a login: either way, it answers.
            if http.get(format!("http://{}/v2/", registry.host)).send().await.is_ok() {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the registry did not answer on {} within 15s", registry.host);
    }

    /// The digest the registry holds for `repository:tag` (`sha256:…`), as it says it.
    pub async fn digest(&self, repository: &str, tag: &str, login: Option<(&str, &str)>) -> Option<String> {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let mut request = http
            .head(format!("http://{}/v2/{repository}/manifests/{tag}", self.host))
            .header("accept", "application/vnd.docker.distribution.manifest.v2+json")
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        if let Some((user, password)) = login {
            request = request.basic_auth(user, Some(password));
        }
        let answer = request.send().await.ok()?;
        answer.headers().get("docker-content-digest")?.to_str().ok().map(str::to_owned)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
