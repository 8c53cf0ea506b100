//! `/api/v1/session`: signing in to the web page, who is signed in, signing out (the
//! session itself, its cookie and CSRF token: `session.rs`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use launchway_store::{Token, now_ms};
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, ApiResult, AppState, Caller, authenticate, ok, verify_token};
use crate::session::{
    Credential, LIFETIME_SECS, credential, csrf_token, end_cookie, id_hash, new_session_id, start_cookie,
};

/// `POST /api/v1/session`: the token the person typed.
#[derive(Debug, Deserialize)]
pub struct SignIn {
    pub token: String,
}

/// Who is signed in, and the CSRF token their page sends with each change.
#[derive(Debug, Serialize)]
pub struct SessionAnswer {
    pub subject: String,
    pub role: String,
    pub token_id: String,
    pub csrf: String,
}

fn answer(token: &Token, presented: &str) -> SessionAnswer {
    SessionAnswer {
        subject: token.subject.clone(),
        role: token.role.as_str().to_owned(),
        token_id: token.id.clone(),
        csrf: csrf_token(presented),
    }
}

/// Signs in: a valid token starts a session, whose id becomes the cookie. Only a JSON
/// body is read, which no other site's plain form can send (so no page elsewhere can
/// sign a visitor in as someone else).
pub async fn sign_in(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult {
    let json = caller
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send {\"token\": \"lw_…\"} as application/json",
        ));
    }
    let request: SignIn = serde_json::from_slice(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "expected {\"token\": \"lw_…\"}"))?;
    let token = verify_token(&state, caller.source, request.token.trim()).await?;
    let id = new_session_id();
    let expires_at = now_ms() + (LIFETIME_SECS * 1000) as i64;
    state.runtime.engine().store().create_session(&id_hash(&id), &token.id, expires_at).await?;
    let cookie = start_cookie(&id, state.secure_cookies);
    Ok(([(SET_COOKIE, cookie)], axum::Json(answer(&token, &id))).into_response())
}

/// Who the session (or bearer token) is.
pub async fn current(State(state): State<AppState>, caller: Caller) -> ApiResult {
    let token = authenticate(&state, &caller).await?;
    let presented = credential(&caller.headers).ok().flatten().map(Credential::token).unwrap_or_default();
    ok(answer(&token, presented))
}

/// Signs out: the session ends on the server (its cookie is then worth nothing, even
/// kept), and the browser forgets the cookie. The token itself stays valid; revoking it
/// is `DELETE /api/v1/tokens/{id}`.
pub async fn sign_out(State(state): State<AppState>, caller: Caller) -> ApiResult {
    authenticate(&state, &caller).await?;
    if let Ok(Some(Credential::Session(id))) = credential(&caller.headers) {
        state.runtime.engine().store().end_session(&id_hash(id)).await?;
    }
    Ok(([(SET_COOKIE, end_cookie(state.secure_cookies))], StatusCode::NO_CONTENT).into_response())
}
