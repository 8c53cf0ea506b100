//! What every route of the HTTP API shares: the server's state, the error answer, who
//! is calling (`Caller`) and the checks of their token (`authorize`, `authenticate`).
//! Route modules use these; nothing here knows a route.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use launchway_api::ErrorAnswer;
use launchway_engine::EngineError;
use launchway_store::{AuditKind, NewEvent, StoreError, Token};
use serde_json::json;

use crate::limits::{Audit, Failure, FailureLimiter, Standing};
use crate::reconciler::Reconciler;
use crate::runtime::Runtime;
use crate::session;
use launchway_engine::access::{self as auth, Permission};

#[derive(Clone)]
pub struct AppState {
    pub reconciler: Arc<Reconciler>,
    pub runtime: Arc<Runtime>,
    pub webhook_secret: Option<String>,
    /// Failed authentication per source: refused webhooks and wrong tokens.
    pub limiter: Arc<FailureLimiter>,
    /// Reverse proxies whose `X-Forwarded-For` names a request's source.
    pub trusted_proxies: Vec<IpAddr>,
    /// Session cookies are marked Secure (people reach the server over HTTPS).
    pub secure_cookies: bool,
    /// Slack's buttons, when the server has a signing secret.
    pub slack: Option<Arc<crate::slack::SlackInteractivity>>,
    /// Plans posted on pull requests.
    pub pulls: Arc<crate::pulls::PullRequestPlans>,
}

#[derive(Clone)]
pub(crate) struct Authenticated(pub(crate) Token);

/// An API error: a status and a message, as `{"error": …}`. Messages are about the
/// request; what went wrong inside the server is logged and answered generically
/// ([`ApiError::internal`]), never with its paths or a library's words.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }

    pub(crate) fn retry_after(mut self, after: Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    /// A 500: the details go to the log under an id, the caller gets the id.
    pub(crate) fn internal(details: &str) -> ApiError {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        let id = hex::encode(bytes);
        tracing::error!(error_id = %id, error = details, "an API call failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the server could not do this (error {id}; its log has the details)"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(ErrorAnswer { error: self.message })).into_response();
        if let Some(after) = self.retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        let status = match &error {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::RunInProgress { .. }
            | StoreError::AlreadyDecided { .. }
            | StoreError::NotAwaitingApproval { .. }
            | StoreError::DecidedOnStale { .. } => StatusCode::CONFLICT,
            _ => return ApiError::internal(&launchway_target::describe(&error)),
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::Store(store) => store.into(),
            EngineError::Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, message),
            EngineError::Invalid(message) => ApiError::new(StatusCode::CONFLICT, message),
            EngineError::Busy { .. } => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            other => ApiError::internal(&launchway_target::describe(&other)),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        ApiError::internal(&format!("{error:#}"))
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

/// Who is calling: the request's headers and the address it came from (given by the
/// server's edge; unspecified when a request did not come through it, as in tests).
pub struct Caller {
    pub(crate) headers: HeaderMap,
    pub(crate) source: IpAddr,
    method: axum::http::Method,
    /// The token checked before the body was read, when it was.
    authenticated: Option<Token>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| peer.ip());
        let source = source_of(peer, &parts.headers, &state.trusted_proxies);
        let authenticated = parts.extensions.get::<Authenticated>().map(|Authenticated(token)| token.clone());
        Ok(Caller { headers: parts.headers.clone(), source, method: parts.method.clone(), authenticated })
    }
}

/// Where a request comes from: its peer, or, when the peer is a trusted reverse proxy,
/// the nearest address in `X-Forwarded-For` that is not one (proxies append what they
/// saw, so what is left of the trusted ones is what the client wrote and not believed).
pub(crate) fn source_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|address| address.trim().parse().ok())
        .collect();
    forwarded.into_iter().rev().find(|address| !trusted.contains(address)).unwrap_or(peer)
}

/// The caller's token, if it may do `permission`: 401 without a valid token, 403 when
/// its role does not allow the call, 429 after too many wrong tokens from its address.
pub(crate) async fn authorize(state: &AppState, caller: &Caller, permission: Permission) -> Result<Token, ApiError> {
    let token = authenticate(state, caller).await?;
    allow(state, &token, &permission).await?;
    Ok(token)
}

/// The caller's token, whatever it may do. Checked before a request's body is even
/// read, so that a caller without a token learns nothing from how its body is parsed.
pub(crate) async fn authenticate(state: &AppState, caller: &Caller) -> Result<Token, ApiError> {
    if let Some(token) = &caller.authenticated {
        return Ok(token.clone());
    }
    let credential = session::credential(&caller.headers)
        .map_err(|problem| ApiError::new(StatusCode::UNAUTHORIZED, problem))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer lw_…), or signing in on the web page",
            )
        })?;
    let token = match credential {
        session::Credential::Bearer(presented) => verify_token(state, caller.source, presented).await?,
        session::Credential::Session(id) => {
            match session::session_token(state.runtime.engine().store().as_ref(), id).await? {
                Some(token) => token,
                None => {
                    // An unknown, ended or expired session: a failure like a wrong token.
                    if let Standing::Limited { retry_after } =
                        state.limiter.standing(Failure::Token, caller.source, Instant::now())
                    {
                        return Err(too_many(Failure::Token, retry_after));
                    }
                    state.limiter.failed(Failure::Token, caller.source, Instant::now());
                    return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the session is over; sign in again"));
                }
            }
        }
    };
    // A change asked for with the session cookie must show the page's CSRF token: a
    // browser sends the cookie by itself, never that header.
    if matches!(credential, session::Credential::Session(_))
        && !caller.method.is_safe()
        && !session::csrf_matches(&caller.headers, credential.token())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a change made with the session cookie needs the page's CSRF token (X-CSRF-Token); reload the page",
        ));
    }
    Ok(token)
}

/// The live token `presented` stands for: 401 when it is unknown, revoked or wrong
/// (audited, up to a limit per source), 429 after too many wrong ones from `source`.
pub(crate) async fn verify_token(state: &AppState, source: IpAddr, presented: &str) -> Result<Token, ApiError> {
    let store = state.runtime.engine().store();
    match auth::verify(store.as_ref(), presented.trim()).await? {
        // A valid token is never held back by others' failures from the same address
        // (everyone behind one reverse proxy shares it).
        Some(token) => Ok(token),
        None => {
            if let Standing::Limited { retry_after } = state.limiter.standing(Failure::Token, source, Instant::now()) {
                return Err(too_many(Failure::Token, retry_after));
            }
            if state.limiter.failed(Failure::Token, source, Instant::now()) == Audit::Each {
                // The token's public id when it has one; never anything of its secret.
                let id = presented.trim().strip_prefix("lw_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id);
                let message = format!(
                    "refused an API call from {} with {}",
                    source,
                    id.map_or("a malformed token".to_owned(), |id| format!("a wrong, unknown or revoked token ({id})"))
                );
                let data = json!({"source": source, "token": id});
                let event = NewEvent::audit(AuditKind::TokenRefused, message, data);
                if let Err(error) = state.runtime.engine().record(event).await {
                    tracing::warn!(%error, "could not record a refused token");
                }
            }
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token is unknown or revoked"))
        }
    }
}

/// Whether an authenticated token may do `permission` (403 if not).
pub(crate) async fn allow(state: &AppState, token: &Token, permission: &Permission) -> Result<(), ApiError> {
    auth::allows(token, permission).map_err(|refused| ApiError::new(StatusCode::FORBIDDEN, refused.0))?;
    if *permission != Permission::Read {
        state.runtime.engine().store().touch_token(&token.id).await?;
    }
    Ok(())
}

/// 429 for a source with too many failures of one kind lately.
pub(crate) fn too_many(failure: Failure, retry_after: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many refused {}s from this address; try again in {} s",
            failure.as_str(),
            retry_after.as_secs().max(1)
        ),
    )
    .retry_after(retry_after)
}
