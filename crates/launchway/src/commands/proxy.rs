//! `launchway proxy`: the traffic entry point of a Docker host, until SIGTERM or Ctrl-C,
//! or until a newer proxy takes its sockets over (`--take-over`) and what it serves ends.

use std::time::Duration;

use anyhow::{Context as _, Result};
use launchway_proxy::handover::{self, Predecessor};
use launchway_proxy::{Build, Proxy, ProxyConfig};
use tokio::net::TcpListener;

use crate::cli::{ProxyArgs, ProxyLendArgs};
use crate::context::Context;
use crate::exit;

/// How long a proxy that handed over keeps serving requests still under way.
const HANDED_OVER_LIMIT: Duration = Duration::from_secs(60);

pub async fn run(context: &Context, args: ProxyArgs) -> Result<u8> {
    let build = args.build.as_deref().map(str::parse::<Build>).transpose().map_err(anyhow::Error::msg)?;
    let mut predecessor = match args.take_over {
        true => handover::take_over(&handover::socket_path(&args.state), build.as_ref())
            .await
            .context("could not take over from the running proxy")?,
        false => None,
    };
    let took_over = predecessor.is_some();
    let admin = match predecessor.as_mut().and_then(Predecessor::take_admin) {
        Some(admin) => TcpListener::from_std(admin).context("could not use the admin socket handed over")?,
        None => TcpListener::bind(args.admin).await.with_context(|| format!("could not listen on {}", args.admin))?,
    };
    let config = ProxyConfig {
        listen_ip: args.listen_ip,
        state_file: Some(args.state.clone()),
        stop: context.stop.clone(),
        build,
    };
    let proxy = Proxy::start(config, predecessor).await.context("could not start the proxy")?;
    proxy.offer_hand_over(Some(&admin)).context("could not offer the sockets to a successor")?;
    let routes = proxy.routes();
    eprintln!(
        "launchway proxy: {} route{} from {} on ports {:?}; admin API on http://{}{}",
        routes.routes.len(),
        if routes.routes.len() == 1 { "" } else { "s" },
        args.state.display(),
        routes.ports(),
        admin.local_addr()?,
        if took_over { "; took the sockets over from the proxy that ran" } else { "" }
    );
    let (stop, handing) = (context.stop.clone(), proxy.clone());
    let app = launchway_proxy::admin::router(proxy.clone(), args.token);
    let serving = axum::serve(admin, app).with_graceful_shutdown(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = handing.handed_over() => {}
        }
    });
    serving.await.context("the admin API stopped")?;
    if proxy.has_handed_over() && !context.stop.is_cancelled() {
        eprintln!("launchway proxy: a new proxy took the sockets over; finishing the requests under way");
        if tokio::time::timeout(HANDED_OVER_LIMIT, proxy.connections_ended()).await.is_err() {
            eprintln!("launchway proxy: requests still under way after {HANDED_OVER_LIMIT:?} are cut off");
        }
        context.stop.cancel();
    }
    proxy.stopped().await;
    Ok(exit::SUCCESS)
}

/// `launchway proxy-lend`: takes the listening sockets of the old proxy process and offers
/// them, once, to the new proxy (`--take-over`), then exits.
pub async fn lend(args: ProxyLendArgs) -> Result<u8> {
    let listeners = handover::borrow_listeners(args.from_pid)
        .with_context(|| format!("could not take the sockets of process {}", args.from_pid))?;
    if listeners.iter().all(|(port, _)| *port != args.admin.port()) {
        anyhow::bail!("process {} does not listen on the admin port {}", args.from_pid, args.admin.port());
    }
    let ports: Vec<u16> = listeners.iter().map(|(port, _)| *port).collect();
    // The Docker target waits for this line before it starts the new proxy.
    eprintln!("launchway proxy-lend: offering the sockets of ports {ports:?}");
    handover::lend(&handover::socket_path(&args.state), listeners, args.admin.port())
        .await
        .context("could not hand the sockets over")?;
    eprintln!("launchway proxy-lend: the new proxy serves from them");
    Ok(exit::SUCCESS)
}
