//! Signing in to the web page: a token entered once starts a session, kept on the
//! server, whose random id the browser keeps in a cookie.
//!
//! The cookie carries the session's id, never the token: HttpOnly (the page's script
//! never sees it), SameSite=Strict (no other site's page makes the browser send it), and
//! over HTTPS `__Host-` prefixed (Secure, this host only, no sibling domain can set one
//! to shadow it). The server keeps only the id's SHA-256, with the token it stands for:
//! signing out ends the session for good, and revoking the token ends every session of
//! it. Two cookies of the session's name are refused, not one of them picked. A request
//! authenticated by the cookie that changes something must also carry `X-CSRF-Token`, a
//! value derived from the session id that the page is given when it signs in: another
//! site's form or script can neither read nor guess it. Bearer tokens (the CLI, CI) need
//! no such header; no browser adds an Authorization header by itself.

use axum::http::{HeaderMap, HeaderValue};
use launchway_store::{Store, StoreError, Token, now_ms};
use sha2::{Digest, Sha256};

use launchway_engine::access::constant_time_eq;

/// The session cookie over plain HTTP (a server on this machine).
pub const COOKIE: &str = "lw_session";
/// Over HTTPS: a cookie only this host can set, Secure.
pub const SECURE_COOKIE: &str = "__Host-lw_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts: a working day.
pub(crate) const LIFETIME_SECS: u64 = 12 * 3600;

/// The token a session stands for, while it lasts and the token is live.
pub(crate) async fn session_token(store: &dyn Store, id: &str) -> Result<Option<Token>, StoreError> {
    let Some(token_id) = store.session_token(&id_hash(id), now_ms()).await? else { return Ok(None) };
    Ok(store.token(&token_id).await?.filter(|token| token.revoked_at.is_none()))
}

/// How a request presents who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    /// A session's id, from its cookie.
    Session(&'a str),
}

impl<'a> Credential<'a> {
    pub fn token(self) -> &'a str {
        match self {
            Credential::Bearer(token) | Credential::Session(token) => token.trim(),
        }
    }
}

/// The request's credential: an `Authorization: Bearer` header, else the session
/// cookie. Two session cookies (one shadowing the other) are an error, not a choice.
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, &'static str> {
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Ok(Some(Credential::Bearer(token)));
    }
    let sessions: Vec<&str> = [SECURE_COOKIE, COOKIE]
        .into_iter()
        .flat_map(|name| cookies(headers, name))
        .filter(|value| !value.is_empty())
        .collect();
    match sessions.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(Credential::Session(one))),
        _ => Err("the request carries two session cookies; sign in again"),
    }
}

/// Every value of a cookie in the request's `Cookie` headers.
fn cookies<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A new session id: 32 random bytes.
pub(crate) fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    format!("lws_{}", hex::encode(bytes))
}

/// What the server keeps of a session id.
pub(crate) fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.trim().as_bytes()))
}

/// The CSRF token of a session: derived from its id by a one-way hash, so that it
/// gives nothing of the id away.
pub fn csrf_token(session: &str) -> String {
    let digest = Sha256::digest(format!("launchway csrf\n{}", session.trim()).as_bytes());
    hex::encode(&digest[..20])
}

/// Whether the request carries the CSRF token of `session`.
pub fn csrf_matches(headers: &HeaderMap, session: &str) -> bool {
    let sent = headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok()).unwrap_or_default();
    constant_time_eq(sent.trim().as_bytes(), csrf_token(session).as_bytes())
}

/// The `Set-Cookie` that starts a session (`secure` when people reach the server over
/// HTTPS: then `__Host-` prefixed).
pub fn start_cookie(id: &str, secure: bool) -> HeaderValue {
    let (name, secure) = if secure { (SECURE_COOKIE, "; Secure") } else { (COOKIE, "") };
    HeaderValue::from_str(&format!(
        "{name}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}{secure}",
        id.trim()
    ))
    .expect("a session id is hex")
}

/// The `Set-Cookie` that ends one.
pub fn end_cookie(secure: bool) -> HeaderValue {
    let (name, secure) = if secure { (SECURE_COOKIE, "; Secure") } else { (COOKIE, "") };
    HeaderValue::from_str(&format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
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
        let both = headers(&[("authorization", "Bearer lw_a_b"), ("cookie", "lw_session=lws_c")]);
        assert_eq!(credential(&both), Ok(Some(Credential::Bearer("lw_a_b"))));
        let cookie_only = headers(&[("cookie", "theme=dark; lw_session=lws_c"), ("cookie", "other=1")]);
        assert_eq!(credential(&cookie_only), Ok(Some(Credential::Session("lws_c"))));
        let secure = headers(&[("cookie", "__Host-lw_session=lws_d")]);
        assert_eq!(credential(&secure), Ok(Some(Credential::Session("lws_d"))));
        assert_eq!(credential(&headers(&[("cookie", "lw_session=")])), Ok(None));
        assert_eq!(credential(&HeaderMap::new()), Ok(None));
    }

    /// Issue 22, item 8: with two `lw_session` cookies the first one won (a cookie set
    /// by a sibling domain could shadow the real one). Two are refused.
    #[test]
    fn two_session_cookies_are_refused() {
        let two = headers(&[("cookie", "lw_session=lws_mine; lw_session=lws_theirs")]);
        assert!(credential(&two).is_err());
        let across = headers(&[("cookie", "lw_session=lws_mine"), ("cookie", "__Host-lw_session=lws_theirs")]);
        assert!(credential(&across).is_err());
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
        let cookie = start_cookie("lws_a", true);
        let cookie = cookie.to_str().unwrap();
        for part in ["__Host-lw_session=lws_a", "HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!start_cookie("lws_a", false).to_str().unwrap().contains("Secure"));
        assert!(end_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
