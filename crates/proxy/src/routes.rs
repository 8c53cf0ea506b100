//! The route table: which requests go where. Pure data and choices, no IO.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Where the requests for one service go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Names the route: `web@prod`.
    pub name: String,
    /// The host port clients connect to.
    pub port: u16,
    /// Only requests for this host name (the `Host` header, without its port); `None`:
    /// any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only requests whose path starts with this (`/api`); `None`: every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    pub backends: Vec<Backend>,
    /// How the proxy checks its backends itself, so that it keeps away from a replica
    /// that stops answering while launchway is not there to take it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthProbe>,
    /// Served over TLS with this certificate (every route on the port must have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
}

/// A route's certificate chain and private key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTls {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for RouteTls {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTls").field("certificate_pem", &format!("{} bytes", self.certificate_pem.len())).finish()
    }
}

/// An HTTP check of each backend: healthy while `path` answers 2xx or 3xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    pub path: String,
    /// Between checks of one backend.
    pub interval_ms: u64,
    /// Failed checks in a row that take a backend out (one success brings it back).
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
}

fn three() -> u32 {
    3
}

/// One replica a route sends requests to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub address: SocketAddr,
    /// Its share of new requests, relative to the route's other backends (a canary's 20
    /// beside a stable set's 80). Zero: none.
    #[serde(default = "one")]
    pub weight: u32,
    /// Being drained: no new requests; those under way finish.
    #[serde(default)]
    pub draining: bool,
}

fn one() -> u32 {
    1
}

impl Backend {
    pub fn new(address: SocketAddr) -> Backend {
        Backend { address, weight: 1, draining: false }
    }

    fn takes_requests(&self) -> bool {
        self.weight > 0 && !self.draining
    }
}

/// Every route the proxy serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The route for a request that came in on `port` for `host` and `path`: among those
    /// on the port, one naming the host beats one for any host, then the longest
    /// matching path prefix wins.
    pub fn find(&self, port: u16, host: Option<&str>, path: &str) -> Option<&Route> {
        let host = host.map(|host| host.rsplit_once(':').map_or(host, |(name, _)| name));
        self.routes
            .iter()
            .filter(|route| route.port == port)
            .filter(|route| route.host.is_none() || route.host.as_deref() == host)
            .filter(|route| route.path_prefix.as_deref().is_none_or(|prefix| path.starts_with(prefix)))
            .max_by_key(|route| (route.host.is_some(), route.path_prefix.as_ref().map_or(0, String::len)))
    }

    /// Adds the route, or replaces the one of the same name.
    pub fn set(&mut self, route: Route) {
        match self.routes.iter_mut().find(|existing| existing.name == route.name) {
            Some(existing) => *existing = route,
            None => self.routes.push(route),
        }
    }

    /// Marks the backend draining in every route that has it; false when none has.
    pub fn drain(&mut self, address: SocketAddr) -> bool {
        let mut found = false;
        for backend in self.routes.iter_mut().flat_map(|route| route.backends.iter_mut()) {
            if backend.address == address {
                backend.draining = true;
                found = true;
            }
        }
        found
    }

    /// The ports some route listens on.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.routes.iter().map(|route| route.port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

impl Route {
    /// One cycle of the order new requests go to its backends: each backend as often as
    /// its weight says (weights reduced by their common divisor), interleaved smoothly
    /// (nginx's smooth weighted round robin), so that shares hold over any stretch of
    /// requests, not only over a whole cycle. Empty when no backend takes requests.
    pub fn schedule(&self) -> Vec<SocketAddr> {
        let taking: Vec<&Backend> = self.backends.iter().filter(|backend| backend.takes_requests()).collect();
        let divisor = taking.iter().fold(0, |divisor, backend| gcd(divisor, backend.weight)).max(1);
        let weights: Vec<i64> = taking.iter().map(|backend| i64::from(backend.weight / divisor)).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; taking.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (current, weight) in current.iter_mut().zip(&weights) {
                *current += weight;
            }
            let chosen =
                (0..taking.len()).max_by_key(|&index| (current[index], std::cmp::Reverse(index))).expect("some");
            current[chosen] -= total;
            order.push(taking[chosen].address);
        }
        order
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The backends to try for the `nth` request: the one the schedule names, then the
/// route's other backends that take requests, as fallbacks.
pub fn candidates(schedule: &[SocketAddr], nth: u64) -> Vec<SocketAddr> {
    let Some(&first) = schedule.get((nth % schedule.len().max(1) as u64) as usize) else {
        return Vec::new();
    };
    let mut order = vec![first];
    for address in schedule {
        if !order.contains(address) {
            order.push(*address);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn route(name: &str, host: Option<&str>, prefix: Option<&str>, backends: &[(u16, u32)]) -> Route {
        Route {
            name: name.into(),
            port: 80,
            host: host.map(str::to_owned),
            path_prefix: prefix.map(str::to_owned),
            backends: backends
                .iter()
                .map(|&(port, weight)| Backend { weight, ..Backend::new(address(port)) })
                .collect(),
            health: None,
            tls: None,
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let table = RouteTable {
            routes: vec![
                route("any", None, None, &[(1, 1)]),
                route("api", None, Some("/api"), &[(2, 1)]),
                route("shop", Some("shop.example"), None, &[(3, 1)]),
            ],
        };
        assert_eq!(table.find(80, Some("other.example"), "/").map(|r| r.name.as_str()), Some("any"));
        assert_eq!(table.find(80, Some("other.example"), "/api/v1").map(|r| r.name.as_str()), Some("api"));
        assert_eq!(table.find(80, Some("shop.example:80"), "/api").map(|r| r.name.as_str()), Some("shop"));
        assert_eq!(table.find(81, None, "/"), None, "another port");
    }

    #[test]
    fn weights_share_every_stretch_of_requests_and_draining_backends_get_none() {
        let canary = route("web", None, None, &[(1, 80), (2, 20)]);
        let schedule = canary.schedule();
        assert_eq!(schedule.len(), 5, "80:20 is 4:1");
        let firsts: Vec<SocketAddr> = (0..100).map(|nth| candidates(&schedule, nth)[0]).collect();
        assert_eq!(firsts.iter().filter(|first| **first == address(2)).count(), 20);
        for start in 0..80 {
            let stretch = &firsts[start..start + 20];
            assert_eq!(stretch.iter().filter(|first| **first == address(2)).count(), 4, "20% of any 20 in a row");
        }
        assert_eq!(candidates(&schedule, 0).len(), 2, "the other backend is the fallback");

        let mut table = RouteTable { routes: vec![canary] };
        assert!(table.drain(address(1)));
        assert_eq!(candidates(&table.routes[0].schedule(), 7), [address(2)]);
        assert!(!table.drain(address(9)));
        let none = route("off", None, None, &[(1, 0)]);
        assert!(none.schedule().is_empty());
        assert!(candidates(&none.schedule(), 3).is_empty());
    }
}
