//! The server's edge: how connections are accepted, so that no one client can take the
//! process down.
//!
//! `axum::serve` accepts every connection and keeps it as long as the client likes; one
//! client holding twenty thousand idle connections exhausted the file descriptors and
//! `/healthz` stopped answering. Here:
//! - at most `max_connections` are open: a new connection beyond that closes the
//!   longest-open *idle* one (no request in progress), so idle connections churn and a
//!   client with something to say always gets in;
//! - a client must send a request's headers within `header_read_timeout` of connecting
//!   or of its previous response, or the connection is closed (hyper's own timer), and
//!   its body within `body_read_timeout` of the headers: a body that never comes (a
//!   `Content-Length` promised, one byte sent) fails the request and closes the
//!   connection rather than holding it;
//! - a connection whose request is still waiting for its body counts as idle for the
//!   cap: those are the ones closed to make room, never a client being answered;
//! - every request carries its peer's address ([`ConnectInfo`]), which the rate limits
//!   of failed authentication go by.

use std::collections::BTreeMap;
use std::future::Future as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Limits on the connections the API listener keeps.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Connections open at once; past it, the longest-open idle one is closed.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, after connecting or after
    /// its previous response.
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's whole body, once its headers came.
    pub body_read_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> EdgeLimits {
        EdgeLimits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Connections the kernel completes and queues for us to accept. Past it, a client's
/// SYN is dropped and retried a second later: a burst of connects (a flood, or many CI
/// jobs at once) would make everyone wait seconds. The kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with a deep accept queue.
///
/// # Errors
/// When the address cannot be bound.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` within `limits` until `shutdown`.
pub async fn serve(listener: TcpListener, app: Router, limits: EdgeLimits, shutdown: CancellationToken) {
    let registry = Arc::new(Registry::default());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: what the cap is there to prevent, but
                // the process may share its limit. Wait a little rather than spin.
                tracing::warn!(%error, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (id, connection) = registry.admit(limits.max_connections);
        let registry = registry.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, &connection, limits, shutdown).await;
            registry.remove(id);
        });
    }
}

/// One open connection, as the registry sees it.
#[derive(Default)]
struct Connection {
    /// Requests in progress on it.
    busy: AtomicUsize,
    /// Of those, requests still waiting for their body: idle, as far as the cap goes.
    reading: AtomicUsize,
    /// Asked to close (to make room for a newer one).
    close: CancellationToken,
}

impl Connection {
    /// Whether it is answering a request (not only waiting for one, or for its body).
    fn answering(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > self.reading.load(Ordering::SeqCst)
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<(u64, BTreeMap<u64, Arc<Connection>>)>,
}

impl Registry {
    /// Records a new connection; when that makes more than `max`, asks the oldest idle
    /// ones to close.
    fn admit(&self, max: usize) -> (u64, Arc<Connection>) {
        let mut guard = self.open.lock().expect("not poisoned");
        let (next_id, open) = &mut *guard;
        let id = *next_id;
        *next_id += 1;
        let connection = Arc::new(Connection::default());
        open.insert(id, connection.clone());
        let closing = open.values().filter(|connection| connection.close.is_cancelled()).count();
        let excess = (open.len() - closing).saturating_sub(max);
        let idle = open
            .iter()
            .filter(|(other, candidate)| **other != id && !candidate.answering() && !candidate.close.is_cancelled());
        for (_, candidate) in idle.take(excess) {
            candidate.close.cancel();
        }
        (id, connection)
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("not poisoned").1.remove(&id);
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    connection: &Arc<Connection>,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) {
    let tracked = connection.clone();
    let body_read_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let reading = tracked.clone();
        let mut request =
            request.map(|incoming| axum::body::Body::new(GuardedBody::new(incoming, body_read_timeout, reading)));
        request.extensions_mut().insert(ConnectInfo(peer));
        let tracked = tracked.clone();
        tracked.busy.fetch_add(1, Ordering::SeqCst);
        let answer = app.clone().oneshot(request);
        async move {
            let response = answer.await;
            tracked.busy.fetch_sub(1, Ordering::SeqCst);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    tokio::select! {
        result = served.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            return;
        }
        () = connection.close.cancelled() => {
            // A request still waiting for its body has nothing to finish: closed at once.
            if !connection.answering() {
                return;
            }
        }
        () = shutdown.cancelled() => {}
    }
    // Closing: an idle connection goes at once; a request under way finishes first.
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(30), served).await;
}

/// A request's body as the edge hands it on: it must arrive whole within the body read
/// timeout (else reading it fails, and the connection closes with the request), and
/// while it arrives the connection counts as idle for the cap.
struct GuardedBody {
    inner: Incoming,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The connection, while the body is still arriving (its `reading` is counted).
    reading: Option<Arc<Connection>>,
}

impl GuardedBody {
    fn new(inner: Incoming, timeout: Duration, connection: Arc<Connection>) -> GuardedBody {
        use hyper::body::Body as _;
        let reading = (!inner.is_end_stream()).then(|| {
            connection.reading.fetch_add(1, Ordering::SeqCst);
            connection
        });
        GuardedBody { inner, deadline: Box::pin(tokio::time::sleep(timeout)), reading }
    }

    fn arrived(&mut self) {
        if let Some(connection) = self.reading.take() {
            connection.reading.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        self.arrived();
    }
}

impl hyper::body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.reading.is_none() {
            return std::pin::Pin::new(&mut this.inner).poll_frame(context).map_err(Into::into);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(None) => {
                this.arrived();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.arrived();
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if hyper::body::Body::is_end_stream(&this.inner) {
                    this.arrived();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(context) {
                Poll::Ready(()) => {
                    this.arrived();
                    let timed_out =
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "the request's body came too slowly");
                    Poll::Ready(Some(Err(timed_out.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_past_the_cap_closes_the_oldest_idle_one_not_a_busy_one() {
        let registry = Registry::default();
        let (_, first) = registry.admit(2);
        let (_, second) = registry.admit(2);
        first.busy.fetch_add(1, Ordering::SeqCst);
        let (_, third) = registry.admit(2);
        assert!(!first.close.is_cancelled(), "busy: kept");
        assert!(second.close.is_cancelled(), "the oldest idle one goes");
        assert!(!third.close.is_cancelled(), "the newcomer stays");
        let (_, fourth) = registry.admit(2);
        assert!(third.close.is_cancelled());
        assert!(!fourth.close.is_cancelled() && !first.close.is_cancelled());
    }
}
