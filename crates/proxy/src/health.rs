//! The proxy's own health checks: each backend of a route with a [`HealthProbe`] is
//! checked at the route's interval, and kept out of new requests after failing its
//! threshold in a row, until one check passes. launchway takes replicas out itself when
//! it is there; this is what protects traffic when it is not.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};

use crate::Proxy;

/// What the checks have found of one backend.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Standing {
    failures: u32,
    out: bool,
    next_check: Option<Instant>,
}

/// Backends the checks keep out of new requests now.
pub(crate) fn out(proxy: &Proxy) -> Vec<SocketAddr> {
    let standings = proxy.inner.health.lock().expect("not poisoned");
    standings.iter().filter(|(_, standing)| standing.out).map(|(backend, _)| *backend).collect()
}

/// Checks what is due, until the proxy stops; wakes at least every 100 ms.
pub(crate) async fn run(proxy: Proxy) {
    let stop = proxy.inner.config.stop.clone();
    loop {
        let due = due(&proxy, Instant::now());
        let checks = due.into_iter().map(|(backend, path, threshold)| {
            let proxy = proxy.clone();
            async move {
                let passed = check(&proxy, backend, &path).await;
                record(&proxy, backend, passed, threshold);
            }
        });
        all(checks).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn all(checks: impl Iterator<Item = impl Future<Output = ()> + Send + 'static>) {
    let handles: Vec<_> = checks.map(tokio::spawn).collect();
    for handle in handles {
        let _ = handle.await;
    }
}

/// The checks due at `now`: (backend, path, threshold); forgets backends no route has.
fn due(proxy: &Proxy, now: Instant) -> Vec<(SocketAddr, String, u32)> {
    let current = proxy.inner.current.read().expect("not poisoned").clone();
    let mut standings = proxy.inner.health.lock().expect("not poisoned");
    let mut wanted: HashMap<SocketAddr, (String, u32, Duration)> = HashMap::new();
    for route in &current.table.routes {
        let Some(probe) = &route.health else { continue };
        for backend in &route.backends {
            let interval = Duration::from_millis(probe.interval_ms.max(50));
            wanted.insert(backend.address, (probe.path.clone(), probe.unhealthy_threshold.max(1), interval));
        }
    }
    standings.retain(|backend, _| wanted.contains_key(backend));
    let mut due = Vec::new();
    for (backend, (path, threshold, interval)) in wanted {
        let standing = standings.entry(backend).or_default();
        if standing.next_check.is_none_or(|next| next <= now) {
            standing.next_check = Some(now + interval);
            due.push((backend, path, threshold));
        }
    }
    due
}

async fn check(proxy: &Proxy, backend: SocketAddr, path: &str) -> bool {
    let Ok(uri) = format!("http://{backend}{path}").parse::<Uri>() else { return false };
    let mut request = Request::new(Empty::new().map_err(|never| match never {}).boxed());
    *request.uri_mut() = uri;
    let answered = tokio::time::timeout(Duration::from_secs(1), proxy.inner.client.request(request)).await;
    match answered {
        Ok(Ok(response)) => {
            let passed = response.status().is_success() || response.status().is_redirection();
            // Read to the end, so the connection goes back to the pool.
            let _ = response.into_body().collect().await;
            passed
        }
        _ => false,
    }
}

fn record(proxy: &Proxy, backend: SocketAddr, passed: bool, threshold: u32) {
    let mut standings = proxy.inner.health.lock().expect("not poisoned");
    let Some(standing) = standings.get_mut(&backend) else { return };
    if passed {
        if standing.out {
            tracing::info!(%backend, "back in: its health check passes");
        }
        standing.failures = 0;
        standing.out = false;
    } else {
        standing.failures += 1;
        if standing.failures >= threshold && !standing.out {
            tracing::warn!(%backend, failures = standing.failures, "taken out: its health check fails");
            standing.out = true;
        }
    }
}
