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
pub mod handover;
mod health;
pub mod routes;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd as _, OwnedFd};
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
    #[error("handing the sockets over: {0}")]
    HandOver(String),
    #[error("this proxy handed its sockets over to a new one and changes nothing any more")]
    HandedOver,
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
    /// The launchway that made this proxy: a successor older than it is refused the
    /// sockets.
    pub build: Option<Build>,
}

/// Which launchway a proxy came from: its version, then when its executable was written,
/// then its size. Ordered, so that a host's proxy is only ever replaced by a newer one;
/// written `0.1.0/1733560000/48213344`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Build {
    pub version: (u64, u64, u64),
    /// Seconds since the epoch.
    pub written: u64,
    pub size: u64,
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor, patch) = self.version;
        write!(f, "{major}.{minor}.{patch}/{}/{}", self.written, self.size)
    }
}

impl std::str::FromStr for Build {
    type Err = String;

    fn from_str(text: &str) -> Result<Build, String> {
        let wrong = || format!("{text:?} is not a proxy build (VERSION/WRITTEN/SIZE)");
        let mut parts = text.split('/');
        let (Some(version), Some(written), Some(size), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(wrong());
        };
        let numbers: Vec<u64> = version.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|_| wrong())?;
        let [major, minor, patch] = numbers[..] else { return Err(wrong()) };
        Ok(Build {
            version: (major, minor, patch),
            written: written.parse().map_err(|_| wrong())?,
            size: size.parse().map_err(|_| wrong())?,
        })
    }
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
    listeners: Mutex<HashMap<u16, Listening>>,
    /// Cancelled when the proxy stops or hands its sockets over: nothing more is accepted.
    accepting: CancellationToken,
    /// Cancelled once a successor serves from this proxy's sockets.
    handed_over: CancellationToken,
    /// The connection to the successor, open while this proxy lives.
    successor: Mutex<Option<tokio::net::UnixStream>>,
    /// Cancelled once the proxy this one took over from has exited (at once when there
    /// was none): until then, requests it serves may still be under way to a backend.
    predecessor_gone: CancellationToken,
    /// The client connections being served.
    connections: TaskTracker,
    /// What the proxy's own health checks found of each backend.
    health: Mutex<HashMap<SocketAddr, health::Standing>>,
    tasks: TaskTracker,
    client: forward::Client,
}

/// A route port's listening socket: where it is bound, and a handle on it to hand over.
struct Listening {
    address: SocketAddr,
    socket: OwnedFd,
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
    /// on each of their ports: on the sockets `predecessor` handed over where it did, and
    /// on new ones elsewhere. Once every socket is accepted on, the predecessor is told to
    /// stop accepting.
    ///
    /// # Errors
    /// A state file that cannot be read, a port that cannot be opened, a predecessor that
    /// cannot be told.
    pub async fn start(config: ProxyConfig, predecessor: Option<handover::Predecessor>) -> Result<Proxy, ProxyError> {
        let table = match &config.state_file {
            Some(path) => read_state(path)?,
            None => RouteTable::default(),
        };
        let accepting = config.stop.child_token();
        let proxy = Proxy {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(Compiled::new(table.clone())?)),
                changing: tokio::sync::Mutex::new(()),
                sent: AtomicU64::new(0),
                in_flight: Mutex::new(HashMap::new()),
                request_ended: Notify::new(),
                listeners: Mutex::new(HashMap::new()),
                accepting,
                handed_over: CancellationToken::new(),
                successor: Mutex::new(None),
                predecessor_gone: CancellationToken::new(),
                connections: TaskTracker::new(),
                health: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                client: forward::client(),
                config,
            }),
        };
        let mut inherited = HashMap::new();
        if let Some(predecessor) = &predecessor {
            for (port, socket) in &predecessor.routes {
                let socket = socket.try_clone().map_err(|error| ProxyError::HandOver(error.to_string()))?;
                inherited.insert(
                    *port,
                    TcpListener::from_std(socket).map_err(|error| ProxyError::HandOver(error.to_string()))?,
                );
            }
        }
        // A port the predecessor served stays served, whether or not the file names it.
        let mut ports = table.ports();
        ports.extend(inherited.keys().copied().filter(|port| !ports.contains(port)).collect::<Vec<_>>());
        for port in ports {
            match inherited.remove(&port) {
                Some(listener) => proxy.serve_on(port, listener)?,
                None => proxy.listen(port).await?,
            }
        }
        proxy.inner.tasks.spawn(health::run(proxy.clone()));
        match predecessor {
            Some(predecessor) => {
                let gone = predecessor.confirm().await?;
                let (predecessor_gone, stop) = (proxy.inner.predecessor_gone.clone(), proxy.inner.config.stop.clone());
                proxy.inner.tasks.spawn(async move {
                    // Stopping, this proxy waits for nothing the predecessor does.
                    tokio::select! {
                        () = gone => {}
                        () = stop.cancelled() => {}
                    }
                    predecessor_gone.cancel();
                });
            }
            None => proxy.inner.predecessor_gone.cancel(),
        }
        Ok(proxy)
    }

    /// Offers this proxy's sockets, and `admin`'s, to a successor started beside it (see
    /// [`handover`]), at the socket beside the state file.
    ///
    /// # Errors
    /// Without a state file; the socket cannot be made.
    pub fn offer_hand_over(&self, admin: Option<&TcpListener>) -> Result<(), ProxyError> {
        let Some(state) = &self.inner.config.state_file else {
            return Err(ProxyError::HandOver("a proxy without a state file has nothing to hand over".into()));
        };
        let admin = admin
            .map(|admin| admin.as_fd().try_clone_to_owned())
            .transpose()
            .map_err(|error| ProxyError::HandOver(error.to_string()))?;
        handover::offer(self.clone(), &handover::socket_path(state), admin)
    }

    /// Resolves once a successor serves from this proxy's sockets.
    pub async fn handed_over(&self) {
        self.inner.handed_over.cancelled().await;
    }

    /// Whether a successor serves from this proxy's sockets.
    pub fn has_handed_over(&self) -> bool {
        self.inner.handed_over.is_cancelled()
    }

    /// Resolves once every client connection has ended (after a hand-over, or a stop).
    pub async fn connections_ended(&self) {
        self.inner.connections.close();
        self.inner.connections.wait().await;
    }

    /// The routes it serves now.
    pub fn routes(&self) -> RouteTable {
        self.inner.current.read().expect("not poisoned").table.clone()
    }

    /// Where a route port is open (its actual address when the port was 0).
    pub fn listening_on(&self, port: u16) -> Option<SocketAddr> {
        self.inner.listeners.lock().expect("not poisoned").get(&port).map(|listening| listening.address)
    }

    /// Adds or replaces a route (by name), opens its port if it is new, and writes the
    /// table to the state file before it serves from it.
    ///
    /// # Errors
    /// A certificate that cannot be used, a port that cannot be opened, state that cannot
    /// be written; the table is unchanged.
    pub async fn set_route(&self, route: Route) -> Result<(), ProxyError> {
        let _one_at_a_time = self.inner.changing.lock().await;
        if self.has_handed_over() {
            return Err(ProxyError::HandedOver);
        }
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
            if self.has_handed_over() {
                return Err(ProxyError::HandedOver);
            }
            let mut table = self.routes();
            if table.drain(backend) {
                self.replace(table)?;
            }
        }
        let idle = async {
            loop {
                let ended = self.inner.request_ended.notified();
                if self.in_flight(backend) == 0 {
                    break;
                }
                ended.await;
            }
            // The proxy this one took over from may still be sending it requests.
            self.inner.predecessor_gone.cancelled().await;
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
        self.connections_ended().await;
        // The handles kept to hand over would hold the ports open.
        self.inner.listeners.lock().expect("not poisoned").clear();
        self.inner.successor.lock().expect("not poisoned").take();
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
        self.serve_on(port, listener)
    }

    /// Accepts connections for `port` on `listener`, and keeps a handle on it to hand over.
    fn serve_on(&self, port: u16, listener: TcpListener) -> Result<(), ProxyError> {
        let fallback = SocketAddr::new(self.inner.config.listen_ip, port);
        let error = |source| ProxyError::Listen { address: fallback, source };
        let address = listener.local_addr().map_err(error)?;
        let socket = listener.as_fd().try_clone_to_owned().map_err(error)?;
        self.inner.listeners.lock().expect("not poisoned").insert(port, Listening { address, socket });
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
