//! launchway's traffic entry point on a Docker host: one stable address per service,
//! whatever replicas serve it (issue 10).
//!
//! A [`Proxy`] listens on the host ports its routes name and sends each request to a
//! backend of the matching route, by weight (a canary's share), never to one being
//! drained; a backend that refuses the connection is skipped for the next one. Draining a
//! backend stops new requests to it and waits for those under way, so a replica is
//! stopped only once idle. The route table is written to a state file on every change
//! and read back on start, so routes outlive both launchway and the proxy's own restarts.
//!
//! Built on hyper (its HTTP/1 server and pooled client) rather than driving an
//! established proxy: ARCHITECTURE.md argues the choice.

pub mod admin;
mod forward;
mod health;
pub mod routes;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use routes::{Backend, HealthProbe, Route, RouteTable, RouteTls};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("could not listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the proxy's state from {path}")]
    ReadState {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("could not write the proxy's state to {path}")]
    WriteState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a proxy listens and keeps its state.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The address route ports are opened on (`0.0.0.0` on a host; loopback in tests).
    pub listen_ip: IpAddr,
    /// Where the route table is kept; `None`: in memory only.
    pub state_file: Option<PathBuf>,
    /// Cancelled: listeners close, and requests under way finish.
    pub stop: CancellationToken,
}

/// A running proxy. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    /// The table and each route's schedule, replaced whole on every change.
    current: RwLock<Arc<Compiled>>,
    /// Serialises changes, so that the state file follows the table in order.
    changing: tokio::sync::Mutex<()>,
    /// Requests sent so far: picks each one's place in its route's schedule.
    sent: AtomicU64,
    in_flight: Mutex<HashMap<SocketAddr, usize>>,
    /// Woken whenever a request to some backend ends.
    request_ended: Notify,
    listeners: Mutex<HashMap<u16, SocketAddr>>,
    /// What the proxy's own health checks found of each backend.
    health: Mutex<HashMap<SocketAddr, health::Standing>>,
    tasks: TaskTracker,
    client: forward::Client,
}

/// A route table ready to serve from.
struct Compiled {
    table: RouteTable,
    schedules: HashMap<String, Vec<SocketAddr>>,
    /// The ports that serve TLS, with their configuration.
    tls: tls::PortConfigs,
}

impl Compiled {
    /// # Errors
    /// A route's certificate or key cannot be used (the table is then not served).
    fn new(table: RouteTable) -> Result<Compiled, ProxyError> {
        let schedules = table.routes.iter().map(|route| (route.name.clone(), route.schedule())).collect();
        let tls = tls::configs(&table).map_err(ProxyError::Tls)?;
        Ok(Compiled { table, schedules, tls })
    }
}

impl Proxy {
    /// Starts a proxy with the routes its state file holds (none without one), listening
    /// on each of their ports.
    ///
    /// # Errors
    /// A state file that cannot be read, a port that cannot be opened.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let table = match &config.state_file {
            Some(path) => read_state(path)?,
            None => RouteTable::default(),
        };
        let proxy = Proxy {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(Compiled::new(table.clone())?)),
                changing: tokio::sync::Mutex::new(()),
                sent: AtomicU64::new(0),
                in_flight: Mutex::new(HashMap::new()),
                request_ended: Notify::new(),
                listeners: Mutex::new(HashMap::new()),
                health: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                client: forward::client(),
                config,
            }),
        };
        for port in table.ports() {
            proxy.listen(port).await?;
        }
        proxy.inner.tasks.spawn(health::run(proxy.clone()));
        Ok(proxy)
    }

    /// The routes it serves now.
    pub fn routes(&self) -> RouteTable {
        self.inner.current.read().expect("not poisoned").table.clone()
    }

    /// Where a route port is open (its actual address when the port was 0).
    pub fn listening_on(&self, port: u16) -> Option<SocketAddr> {
        self.inner.listeners.lock().expect("not poisoned").get(&port).copied()
    }

    /// Adds or replaces a route (by name), opens its port if it is new, and writes the
    /// table to the state file before it serves from it.
    ///
    /// # Errors
    /// A certificate that cannot be used, a port that cannot be opened, state that cannot
    /// be written; the table is unchanged.
    pub async fn set_route(&self, route: Route) -> Result<(), ProxyError> {
        let _one_at_a_time = self.inner.changing.lock().await;
        let port = route.port;
        let mut table = self.routes();
        table.set(route);
        // Checked whole (certificates included) before anything opens or changes.
        let compiled = Compiled::new(table)?;
        if self.listening_on(port).is_none() {
            self.listen(port).await?;
        }
        self.install(compiled)
    }

    /// Stops sending new requests to `backend` in every route, and waits (at most
    /// `grace`) for those under way to end. True when it went idle in time.
    ///
    /// # Errors
    /// The state cannot be written.
    pub async fn drain(&self, backend: SocketAddr, grace: Duration) -> Result<bool, ProxyError> {
        {
            let _one_at_a_time = self.inner.changing.lock().await;
            let mut table = self.routes();
            if table.drain(backend) {
                self.replace(table)?;
            }
        }
        let idle = async {
            loop {
                let ended = self.inner.request_ended.notified();
                if self.in_flight(backend) == 0 {
                    return;
                }
                ended.await;
            }
        };
        Ok(tokio::time::timeout(grace, idle).await.is_ok())
    }

    /// Requests under way to `backend`.
    pub fn in_flight(&self, backend: SocketAddr) -> usize {
        self.inner.in_flight.lock().expect("not poisoned").get(&backend).copied().unwrap_or(0)
    }

    /// Resolves once the stop token is cancelled and every connection has ended.
    pub async fn stopped(&self) {
        self.inner.config.stop.cancelled().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn replace(&self, table: RouteTable) -> Result<(), ProxyError> {
        self.install(Compiled::new(table)?)
    }

    /// Writes the table to the state file, then serves from it.
    fn install(&self, compiled: Compiled) -> Result<(), ProxyError> {
        if let Some(path) = &self.inner.config.state_file {
            write_state(path, &compiled.table)?;
        }
        *self.inner.current.write().expect("not poisoned") = Arc::new(compiled);
        Ok(())
    }

    /// The TLS configuration of `port`, when it serves TLS.
    fn tls(&self, port: u16) -> Option<Arc<rustls::ServerConfig>> {
        self.inner.current.read().expect("not poisoned").tls.get(&port).cloned()
    }

    async fn listen(&self, port: u16) -> Result<(), ProxyError> {
        let address = SocketAddr::new(self.inner.config.listen_ip, port);
        let listener = TcpListener::bind(address).await.map_err(|source| ProxyError::Listen { address, source })?;
        let bound = listener.local_addr().map_err(|source| ProxyError::Listen { address, source })?;
        self.inner.listeners.lock().expect("not poisoned").insert(port, bound);
        self.inner.tasks.spawn(forward::accept(self.clone(), listener, port));
        Ok(())
    }
}

fn read_state(path: &PathBuf) -> Result<RouteTable, ProxyError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| ProxyError::ReadState { path: path.clone(), source: Box::new(source) }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(RouteTable::default()),
        Err(source) => Err(ProxyError::ReadState { path: path.clone(), source: Box::new(source) }),
    }
}

/// Written beside and renamed over, so that a crash leaves the old table or the new;
/// readable by its owner only (it holds TLS keys).
fn write_state(path: &PathBuf, table: &RouteTable) -> Result<(), ProxyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let error = |source| ProxyError::WriteState { path: path.clone(), source };
    let partial = path.with_extension("partial");
    let bytes = serde_json::to_vec_pretty(table).expect("routes serialize");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(error)?;
    // Not synced to disk: a route change must not wait on it (BENCHMARKS.md, "route
    // change"); the rename keeps a killed proxy from leaving half a table.
    file.write_all(&bytes).map_err(error)?;
    std::fs::rename(&partial, path).map_err(error)
}
