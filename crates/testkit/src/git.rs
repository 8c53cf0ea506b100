//! A throwaway git repository driven through the `git` command.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A work tree in a temporary directory, deleted on drop.
pub struct GitRepo {
    dir: tempfile::TempDir,
}

impl GitRepo {
    /// `git init` on branch `main` with a committer identity.
    pub fn init() -> GitRepo {
        let dir = tempfile::tempdir().expect("temp dir for a git repo");
        let repo = GitRepo { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.git(&["config", "user.name", "Test Author"]);
        repo.git(&["config", "user.email", "author@example.com"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The repo as a `file://` URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Writes a file (creating folders) without committing it.
    pub fn write(&self, relative: &str, contents: &str) -> &GitRepo {
        let path: PathBuf = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("files have a parent")).expect("create folders");
        std::fs::write(path, contents).expect("write file");
        self
    }

    pub fn remove(&self, relative: &str) -> &GitRepo {
        self.git(&["rm", "--quiet", relative]);
        self
    }

    /// Commits everything in the work tree and returns the new commit's id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "--message", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs `git` in the repo and returns its trimmed standard output.
    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path())
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("git prints UTF-8").trim().to_owned()
    }
}
