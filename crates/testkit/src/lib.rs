//! Fixtures for launchway's tests. Everything here is real: git repos made with the
//! `git` command as a user would, served over HTTP by `git http-backend`; AWS APIs
//! served by moto, with an ECS rollout model for what moto does not simulate. The one
//! fake is [`FakeTarget`], for tests of the engine's and the server's decisions.

mod fake_target;
mod forge;
mod git;
mod git_http;
mod load;
mod moto;
mod prometheus;
mod registry;
mod tls;

pub use fake_target::FakeTarget;
pub use forge::{FakeForge, ForgeRequest};
pub use git::GitRepo;
pub use git_http::GitHttpServer;
pub use load::{Load, LoadResult};
pub use moto::{MOTO_VERSION, Moto, MotoAccount};
pub use prometheus::Prometheus;
pub use registry::Registry;
pub use tls::TestCertificate;

/// A TCP port on 127.0.0.1 free a moment ago, for a server a test starts on a fixed
/// port (a proxy's route port, an admin API).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}
