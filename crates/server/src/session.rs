//! Signing in to the web page: a token entered once becomes a session cookie.
//!
//! The cookie carries the token itself, HttpOnly (the page's script never sees it) and
//! SameSite=Strict (no other site's page makes the browser send it). A session so lasts
//! no longer than its token: revoking the token ends it, and a restart of the server
//! does not. A request authenticated by the cookie that changes something must also
//! carry `X-CSRF-Token`, a value derived from the token that the page is given when it
//! signs in: another site's form or script can neither read nor guess it. Bearer tokens
//! (the CLI, CI) need no such header; no browser adds an Authorization header by itself.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use launchway_store::Token;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, ApiResult, AppState, Caller, authenticate, verify_token};
use crate::auth::constant_time_eq;

pub const COOKIE: &str = "lw_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser keeps the cookie: a working day.
const LIFETIME_SECS: u64 = 12 * 3600;

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

/// Signs in: a valid token becomes the session cookie. Only a JSON body is read, which
/// no other site's plain form can send (so no page elsewhere can sign a visitor in as
/// someone else).
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
    let presented = request.token.trim();
    let token = verify_token(&state, caller.source, presented).await?;
    let cookie = start_cookie(presented, state.secure_cookies)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "that is not a launchway token"))?;
    Ok(([(SET_COOKIE, cookie)], axum::Json(answer(&token, presented))).into_response())
}

/// Who the session (or bearer token) is.
pub async fn current(State(state): State<AppState>, caller: Caller) -> ApiResult {
    let token = authenticate(&state, &caller).await?;
    let presented = credential(&caller.headers).map(Credential::token).unwrap_or_default();
    crate::api::ok(answer(&token, presented))
}

/// Signs out: the browser forgets the cookie (the token itself stays valid; revoking
/// it is `DELETE /api/v1/tokens/{id}`).
pub async fn sign_out(State(state): State<AppState>, caller: Caller) -> ApiResult {
    authenticate(&state, &caller).await?;
    Ok(([(SET_COOKIE, end_cookie(state.secure_cookies))], StatusCode::NO_CONTENT).into_response())
}

/// How a request presents its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

impl<'a> Credential<'a> {
    pub fn token(self) -> &'a str {
        match self {
            Credential::Bearer(token) | Credential::Cookie(token) => token.trim(),
        }
    }
}

/// The request's token: an `Authorization: Bearer` header, else the session cookie.
pub fn credential(headers: &HeaderMap) -> Option<Credential<'_>> {
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Some(Credential::Bearer(token));
    }
    cookie(headers, COOKIE).filter(|value| !value.is_empty()).map(Credential::Cookie)
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The CSRF token of a session: derived from its token by a one-way hash, so that it
/// gives nothing of the token away and needs nothing kept on the server.
pub fn csrf_token(token: &str) -> String {
    let digest = Sha256::digest(format!("launchway csrf\n{}", token.trim()).as_bytes());
    hex::encode(&digest[..20])
}

/// Whether the request carries the CSRF token of the session `token`.
pub fn csrf_matches(headers: &HeaderMap, token: &str) -> bool {
    let sent = headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok()).unwrap_or_default();
    constant_time_eq(sent.trim().as_bytes(), csrf_token(token).as_bytes())
}

/// The `Set-Cookie` that starts a session (`secure` when people reach the server over
/// HTTPS).
pub fn start_cookie(token: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}{secure}",
        token.trim()
    ))
    .ok()
}

/// The `Set-Cookie` that ends one.
pub fn end_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
        .expect("a fixed header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_bearer_header_wins_over_the_cookie() {
        let both = headers(&[("authorization", "Bearer lw_a_b"), ("cookie", "lw_session=lw_c_d")]);
        assert_eq!(credential(&both), Some(Credential::Bearer("lw_a_b")));
        let cookie_only = headers(&[("cookie", "theme=dark; lw_session=lw_c_d"), ("cookie", "other=1")]);
        assert_eq!(credential(&cookie_only), Some(Credential::Cookie("lw_c_d")));
        assert_eq!(credential(&headers(&[("cookie", "lw_session=")])), None);
        assert_eq!(credential(&HeaderMap::new()), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session_and_hides_it() {
        let csrf = csrf_token("lw_a_secret");
        assert!(!csrf.contains("secret") && csrf.len() == 40);
        assert_ne!(csrf, csrf_token("lw_a_other"));
        assert!(csrf_matches(&headers(&[(CSRF_HEADER, &csrf)]), "lw_a_secret"));
        assert!(!csrf_matches(&headers(&[(CSRF_HEADER, &csrf)]), "lw_a_other"));
        assert!(!csrf_matches(&HeaderMap::new(), "lw_a_secret"));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let cookie = start_cookie("lw_a_b", true).unwrap();
        let cookie = cookie.to_str().unwrap();
        for part in ["lw_session=lw_a_b", "HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!start_cookie("lw_a_b", false).unwrap().to_str().unwrap().contains("Secure"));
        assert!(end_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
