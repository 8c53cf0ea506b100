//! The proxy's admin API, on its own listener (loopback on the host): what launchway
//! calls to move traffic. A bearer token, when the proxy has one, is required.
//!
//! - `GET /routes`: the route table (TLS keys left out: they go in, never out).
//! - `PUT /routes`: a [`Route`], added or replacing the one of its name; answers the table.
//! - `POST /drain`: `{"backend": "127.0.0.1:49153", "grace_ms": 10000}`: no new requests
//!   to it, then waits for those under way; answers `{"drained": true}` when it went idle.
//! - `GET /healthz`
//!
//! Once the proxy has handed its sockets to a successor, every call is answered 503 with
//! [`HANDED_OVER`] and `Connection: close`: the caller asks again, and reaches the
//! successor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::{Proxy, Route, RouteTable};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRequest {
    pub backend: SocketAddr,
    pub grace_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainAnswer {
    pub drained: bool,
}

#[derive(Clone)]
struct Admin {
    proxy: Proxy,
    token: Option<Arc<str>>,
    /// Wrong tokens in the current minute: past [`WRONG_TOKENS_A_MINUTE`], answered 429.
    wrong: Arc<std::sync::Mutex<(std::time::Instant, u32)>>,
}

/// Wrong tokens answered 401 in a minute; the rest of the minute's are answered 429
/// (the right token always gets in: launchway must be able to move traffic meanwhile).
const WRONG_TOKENS_A_MINUTE: u32 = 10;

type Refusal = (StatusCode, String);

/// The header (`x-launchway-proxy: handed-over`) of the answers of a proxy that handed its
/// sockets over.
pub const HANDED_OVER: (&str, &str) = ("x-launchway-proxy", "handed-over");

/// The admin routes; with `token`, every call but `/healthz` must present it.
pub fn router(proxy: Proxy, token: Option<String>) -> axum::Router {
    let admin = Admin {
        proxy,
        token: token.filter(|token| !token.is_empty()).map(Into::into),
        wrong: Arc::new(std::sync::Mutex::new((std::time::Instant::now(), 0))),
    };
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/routes", get(routes).put(set_route))
        .route("/drain", post(drain))
        .layer(axum::middleware::from_fn_with_state(admin.clone(), unless_handed_over))
        .with_state(admin)
}

async fn unless_handed_over(
    State(admin): State<Admin>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if admin.proxy.has_handed_over() {
        return handed_over();
    }
    next.run(request).await
}

fn handed_over() -> Response {
    let headers = [(axum::http::header::CONNECTION.as_str(), "close"), HANDED_OVER];
    (StatusCode::SERVICE_UNAVAILABLE, headers, "this proxy handed over to a new one: ask again\n").into_response()
}

fn check(admin: &Admin, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = &admin.token else { return Ok(()) };
    let presented = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let presented = presented.strip_prefix("Bearer ").unwrap_or_default().as_bytes();
    // Compared in constant time: how much matched is not told by the time taken.
    let equal: bool = subtle::ConstantTimeEq::ct_eq(presented, token.as_bytes()).into();
    if equal {
        return Ok(());
    }
    let mut wrong = admin.wrong.lock().expect("not poisoned");
    if wrong.0.elapsed() >= std::time::Duration::from_secs(60) {
        *wrong = (std::time::Instant::now(), 0);
    }
    wrong.1 += 1;
    if wrong.1 > WRONG_TOKENS_A_MINUTE {
        return Err((StatusCode::TOO_MANY_REQUESTS, "too many wrong admin tokens; try again in a minute".into()));
    }
    Err((StatusCode::UNAUTHORIZED, "a valid admin token is required".into()))
}

async fn routes(State(admin): State<Admin>, headers: HeaderMap) -> Result<Json<RouteTable>, Refusal> {
    check(&admin, &headers)?;
    Ok(Json(without_keys(admin.proxy.routes())))
}

/// The table as answered: TLS keys go in, never out.
fn without_keys(mut table: RouteTable) -> RouteTable {
    for route in &mut table.routes {
        if let Some(tls) = &mut route.tls {
            tls.key_pem.clear();
        }
    }
    table
}

async fn set_route(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Json(route): Json<Route>,
) -> Result<Json<RouteTable>, Response> {
    check(&admin, &headers).map_err(|refusal| refusal.into_response())?;
    admin.proxy.set_route(route).await.map_err(|error| match error {
        crate::ProxyError::Tls(problem) => (StatusCode::BAD_REQUEST, problem).into_response(),
        crate::ProxyError::HandedOver => handed_over(),
        error => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    })?;
    Ok(Json(without_keys(admin.proxy.routes())))
}

async fn drain(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Json(request): Json<DrainRequest>,
) -> Result<Json<DrainAnswer>, Response> {
    check(&admin, &headers).map_err(|refusal| refusal.into_response())?;
    let grace = Duration::from_millis(request.grace_ms);
    let drained = admin.proxy.drain(request.backend, grace).await.map_err(|error| match error {
        crate::ProxyError::HandedOver => handed_over(),
        error => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    })?;
    Ok(Json(DrainAnswer { drained }))
}
