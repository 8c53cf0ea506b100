//! Fixtures for launchway's tests. Everything here is real: git repos made with the
//! `git` command as a user would, served over HTTP by `git http-backend`.

mod git;
mod git_http;

pub use git::GitRepo;
pub use git_http::GitHttpServer;
