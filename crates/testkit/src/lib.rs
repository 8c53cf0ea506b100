//! Fixtures for launchway's tests. Everything here is real: git repos made with the
//! `git` command as a user would, served over HTTP by `git http-backend`; AWS APIs
//! served by moto, with an ECS rollout model for what moto does not simulate.

mod git;
mod git_http;
mod moto;

pub use git::GitRepo;
pub use git_http::GitHttpServer;
pub use moto::{MOTO_VERSION, Moto, MotoAccount};
