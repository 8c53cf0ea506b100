//! A moto server for tests that use AWS, with launchway's ECS rollout model
//! (`moto/ecs_rollouts.py`, which explains what it adds to moto).
//!
//! One server runs per test process, on 127.0.0.1; each test takes an account of its
//! own, so tests never see each other's resources. moto is installed on first use into
//! a virtualenv under the user's cache directory (or `LAUNCHWAY_MOTO_VENV`), from PyPI,
//! at the version pinned here.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The moto release the rollout model was written against.
pub const MOTO_VERSION: &str = "5.2.5";

pub struct Moto {
    endpoint: String,
    // The harness exits when its standard input closes, which happens when this process
    // ends; the child is kept so that it is not reaped early.
    _server: Mutex<(Child, ChildStdin)>,
}

/// An AWS account on the moto server, and the credentials that select it.
#[derive(Debug, Clone)]
pub struct MotoAccount {
    pub id: String,
    pub access_key: String,
    pub secret_key: String,
}

impl MotoAccount {
    /// Environment variables that point the AWS SDK (and CLI) at moto as this account.
    pub fn env(&self, endpoint: &str, region: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", region.to_owned()),
            ("AWS_DEFAULT_REGION", region.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            // Never the developer's own configuration.
            ("AWS_CONFIG_FILE", "/nonexistent/launchway-test-aws-config".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/launchway-test-aws-credentials".to_owned()),
        ]
    }
}

impl Moto {
    /// The server shared by this test process, started (and moto installed) on first use.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An account no other test uses.
    pub fn account(&self) -> MotoAccount {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let id = format!("{:06}{:06}", std::process::id() % 1_000_000, NEXT.fetch_add(1, Ordering::SeqCst));
        MotoAccount { access_key: format!("AKIA0000{id}"), secret_key: "launchway-test".to_owned(), id }
    }

    fn start() -> Moto {
        let python = python();
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("moto/ecs_rollouts.py");
        let mut child = Command::new(python)
            .arg(&harness)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the moto harness starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the harness says where it listens");
        let port: u16 = line
            .strip_prefix("port ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("the moto harness did not start: {line:?}"));
        let stdin = child.stdin.take().expect("piped stdin");
        Moto { endpoint: format!("http://127.0.0.1:{port}"), _server: Mutex::new((child, stdin)) }
    }
}

/// The virtualenv's python, with moto installed (once, under a lock, for concurrent
/// test processes).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("LAUNCHWAY_MOTO_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache/launchway/moto-venv")
    });
    let python = venv.join("bin/python");
    let marker = venv.join(format!(".launchway-moto-{MOTO_VERSION}"));
    if marker.exists() {
        return python;
    }
    std::fs::create_dir_all(venv.parent().expect("the venv has a parent")).expect("cache directory");
    let lock = std::fs::File::create(venv.with_extension("lock")).expect("lock file");
    lock.lock().expect("lock the moto install");
    if !marker.exists() {
        let run = |command: &mut Command| {
            let status = command.status().expect("the installer runs");
            assert!(status.success(), "installing moto failed: {command:?}");
        };
        if !python.exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        }
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("moto[server]=={MOTO_VERSION}")));
        std::fs::write(&marker, MOTO_VERSION).expect("install marker");
    }
    python
}
