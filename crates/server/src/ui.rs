//! The web page: three static files compiled into the binary. The page signs in with
//! a token (which becomes a session cookie, see `session.rs`) and reads the JSON API
//! itself, so serving it needs no authentication and gives nothing away.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::IntoResponse;
use axum::routing::get;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// No script, style or connection but the server's own; no framing (clickjacking an
/// Approve button).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
     form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The page's addresses (the script draws each from the API): `/` the board of apps
/// and environments, `/apps/{app}/{env}` one of them, `/runs` and `/runs/{id}` (where
/// chat links point), `/audit`, `/dora` and `/tokens`; and the script and style.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let page = || asset("text/html; charset=utf-8", PAGE);
    Router::new()
        .route("/", get(page))
        .route("/apps/{app}/{env}", get(page))
        .route("/runs", get(page))
        .route("/runs/{id}", get(page))
        .route("/audit", get(page))
        .route("/dora", get(page))
        .route("/tokens", get(page))
        .route("/ui/app.js", get(|| asset("text/javascript; charset=utf-8", SCRIPT)))
        .route("/ui/app.css", get(|| asset("text/css; charset=utf-8", STYLE)))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The files change only with the binary; a short cache keeps upgrades visible.
            (CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
}
