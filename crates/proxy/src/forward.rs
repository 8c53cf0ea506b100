//! Serving a route port: accept connections, find each request's route, and pass it to
//! a backend, counting it as under way until its response body has been sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Proxy, routes};

type ProxyBody = BoxBody<Bytes, hyper::Error>;
pub(crate) type Client = hyper_util::client::legacy::Client<HttpConnector, ProxyBody>;

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

pub(crate) fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// After a hand-over, a connection with nothing under way for this long is closed; one in
/// use is closed by its next response (`Connection: close`), so that no client sends a
/// request on a connection as it closes.
const LINGER: Duration = Duration::from_secs(1);

pub(crate) async fn accept(proxy: Proxy, listener: TcpListener, port: u16) {
    let stop = proxy.inner.config.stop.clone();
    let accepting = proxy.inner.accepting.clone();
    loop {
        let (stream, peer) = tokio::select! {
            () = accepting.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, port, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let stop = stop.clone();
        proxy.inner.connections.clone().spawn(async move {
            match proxy.tls(port) {
                None => serve(proxy, stream, port, peer, false, stop).await,
                Some(config) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                        Ok(Ok(stream)) => serve(proxy, stream, port, peer, true, stop).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, port, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, port, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1 on one connection (plain or TLS) until it ends or the proxy stops; after
/// a hand-over, until its client has no more use for it.
async fn serve<S>(proxy: Proxy, stream: S, port: u16, peer: SocketAddr, tls: bool, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = hyper::service::service_fn(|request| {
        let (proxy, activity) = (proxy.clone(), activity.clone());
        async move {
            let under_way = Activity::begin(&activity);
            let mut response = handle(&proxy, request, port, peer, tls).await;
            if proxy.has_handed_over() {
                // The client opens its next connection to the proxy that took over.
                response.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response.map(|body| WithGuard { body, _guard: under_way }.boxed()))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let handed_over = proxy.inner.handed_over.clone();
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stop.cancelled() => {}
        () = handed_over.cancelled() => {
            loop {
                let quiet_for = activity.quiet_for();
                if quiet_for >= LINGER {
                    break;
                }
                tokio::select! {
                    _ = connection.as_mut() => return,
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(LINGER - quiet_for) => {}
                }
            }
        }
    }
    // Requests under way finish; the connection closes after them.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// What one client connection is doing: requests under way (until their response body is
/// sent), and when the last one ended (or the connection was accepted: its client may be
/// sending the first request).
struct Activity {
    state: std::sync::Mutex<(usize, std::time::Instant)>,
}

impl Activity {
    fn new() -> Activity {
        Activity { state: std::sync::Mutex::new((0, std::time::Instant::now())) }
    }

    fn begin(activity: &Arc<Activity>) -> UnderWay {
        activity.state.lock().expect("not poisoned").0 += 1;
        UnderWay(activity.clone())
    }

    /// How long nothing has been under way (zero while something is).
    fn quiet_for(&self) -> Duration {
        match *self.state.lock().expect("not poisoned") {
            (0, ended) => ended.elapsed(),
            _ => Duration::ZERO,
        }
    }
}

/// A request under way on its connection, until dropped.
struct UnderWay(Arc<Activity>);

impl Drop for UnderWay {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().expect("not poisoned");
        state.0 = state.0.saturating_sub(1);
        state.1 = std::time::Instant::now();
    }
}

async fn handle(
    proxy: &Proxy,
    request: Request<Incoming>,
    port: u16,
    peer: SocketAddr,
    tls: bool,
) -> Response<ProxyBody> {
    let host = request.headers().get(HOST).and_then(|host| host.to_str().ok()).map(str::to_owned);
    let path = request.uri().path().to_owned();
    let (name, candidates, mut first) = {
        // The first backend is counted before the table can change: a drain that starts
        // after this sees the request, and one that came before kept it from the backend.
        let current = proxy.inner.current.read().expect("not poisoned");
        let Some(route) = current.table.find(port, host.as_deref(), &path) else {
            return answer(StatusCode::NOT_FOUND, "no route for this host and path\n");
        };
        let nth = proxy.inner.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schedule = current.schedules.get(&route.name).map_or(&[][..], Vec::as_slice);
        let out = crate::health::out(proxy);
        let mut candidates = routes::candidates(schedule, nth);
        // Backends failing the proxy's own checks go last: tried only when nothing
        // healthy is left.
        candidates.sort_by_key(|backend| out.contains(backend));
        let first = candidates.first().map(|backend| InFlight::start(proxy, *backend));
        (route.name.clone(), candidates, first)
    };
    if candidates.is_empty() {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "no replica is serving this route\n");
    }
    let (mut parts, body) = request.into_parts();
    for header in HOP_BY_HOP {
        parts.headers.remove(header);
    }
    let forwarded_for = match parts.headers.get("x-forwarded-for").and_then(|value| value.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert("x-forwarded-for", value);
    }
    parts.headers.insert("x-forwarded-proto", HeaderValue::from_static(if tls { "https" } else { "http" }));
    // A request without a body can go to the next backend when one refuses the
    // connection: nothing of it has been sent. One with a body goes to one backend.
    let retryable = body.is_end_stream();
    let mut body = Some(body.boxed());
    for backend in candidates.iter().take(if retryable { candidates.len() } else { 1 }) {
        let mut attempt = Request::from_parts(parts.clone(), ());
        *attempt.uri_mut() = backend_uri(*backend, &parts.uri);
        let attempt = attempt.map(|()| body.take().expect("one body per attempt"));
        let guard = first.take().unwrap_or_else(|| InFlight::start(proxy, *backend));
        match proxy.inner.client.request(attempt).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                for header in HOP_BY_HOP {
                    parts.headers.remove(header);
                }
                return Response::from_parts(parts, WithGuard { body, _guard: guard }.boxed());
            }
            Err(error) if error.is_connect() && retryable => {
                tracing::debug!(route = %name, %backend, %error, "backend refused the connection; trying the next");
                body = Some(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
            }
            Err(error) => {
                tracing::warn!(route = %name, %backend, %error, "the backend failed");
                return answer(StatusCode::BAD_GATEWAY, "the replica did not answer\n");
            }
        }
    }
    answer(StatusCode::BAD_GATEWAY, "no replica accepted the connection\n")
}

fn backend_uri(backend: SocketAddr, original: &Uri) -> Uri {
    let path = original.path_and_query().map_or("/", |path| path.as_str());
    format!("http://{backend}{path}").parse().expect("a socket address and a path make a URI")
}

fn answer(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// Counts a request as under way to its backend until dropped.
struct InFlight {
    proxy: Proxy,
    backend: SocketAddr,
}

impl InFlight {
    fn start(proxy: &Proxy, backend: SocketAddr) -> Arc<InFlight> {
        *proxy.inner.in_flight.lock().expect("not poisoned").entry(backend).or_default() += 1;
        Arc::new(InFlight { proxy: proxy.clone(), backend })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.proxy.inner.in_flight.lock().expect("not poisoned");
        if let Some(count) = in_flight.get_mut(&self.backend) {
            *count = count.saturating_sub(1);
        }
        drop(in_flight);
        self.proxy.inner.request_ended.notify_waiters();
    }
}

/// A response body that keeps `G` (a request counted as under way) until it is sent.
struct WithGuard<B, G> {
    body: B,
    _guard: G,
}

impl<B: Body<Data = Bytes, Error = hyper::Error> + Unpin, G: Unpin> Body for WithGuard<B, G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
