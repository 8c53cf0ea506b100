//! `launchway proxy`: the traffic entry point of a Docker host, until SIGTERM or Ctrl-C.

use anyhow::{Context as _, Result};
use launchway_proxy::{Proxy, ProxyConfig};
use tokio::net::TcpListener;

use crate::cli::ProxyArgs;
use crate::context::Context;
use crate::exit;

pub async fn run(context: &Context, args: ProxyArgs) -> Result<u8> {
    let config =
        ProxyConfig { listen_ip: args.listen_ip, state_file: Some(args.state.clone()), stop: context.stop.clone() };
    let proxy = Proxy::start(config).await.context("could not start the proxy")?;
    let admin = TcpListener::bind(args.admin).await.with_context(|| format!("could not listen on {}", args.admin))?;
    let routes = proxy.routes();
    eprintln!(
        "launchway proxy: {} route{} from {} on ports {:?}; admin API on http://{}",
        routes.routes.len(),
        if routes.routes.len() == 1 { "" } else { "s" },
        args.state.display(),
        routes.ports(),
        admin.local_addr()?
    );
    let stop = context.stop.clone();
    let app = launchway_proxy::admin::router(proxy.clone(), args.token);
    let serving = axum::serve(admin, app).with_graceful_shutdown(async move { stop.cancelled().await });
    serving.await.context("the admin API stopped")?;
    proxy.stopped().await;
    Ok(exit::SUCCESS)
}
