//! Browser sessions for the web UI, with a login page instead of the browser's Basic prompt.
//!
//! A session is an API token of its own kind: named [`SESSION_NAME`], every scope of its user,
//! valid [`SESSION_TTL`], stored as a SHA-256 digest like any token, so the gate authenticates it
//! with the same code, a revocation (logging out, an admin revoking it) takes effect at once, and
//! a user sees their sessions with their tokens. The browser holds it in the
//! [`COOKIE`] cookie: `__Host-` (no `Domain`, `Path=/`, `Secure`: no other host or path can set or
//! read it), `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it).
//! Because a cookie rides along by itself, the gate also refuses a cookie-authenticated request
//! that changes something when the browser says another site made it ([`cross_site`]), and the
//! UI's forms carry their CSRF token besides.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use shipyard_core::entities::now_millis;
use shipyard_core::{Error, Result};
use shipyard_store::Database;
use shipyard_store::identity::User;

use crate::accounts::IssuedToken;

/// The session cookie's name.
pub const COOKIE: &str = "__Host-shipyard_session";
/// What a session's token is called in the user's token list.
pub const SESSION_NAME: &str = "web session";
/// How long a session lasts from its login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Opens a session for `user` (after their password was verified); its expired sessions are
/// removed meanwhile.
pub async fn open(db: &Database, user: &User) -> Result<IssuedToken> {
    let now = now_millis();
    db.delete_expired_tokens(user.id, SESSION_NAME, now).await?;
    let made = crate::secret::new_token();
    let expires = now + i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let record =
        db.create_token(user.id, &made.id, SESSION_NAME, &made.digest, &["all".to_owned()], Some(expires)).await?;
    Ok(IssuedToken { record, token: made.token })
}

/// Closes the session `token` of `user` (logging out): the token is revoked at once.
pub async fn close(db: &Database, user: &User, token: &str) -> Result<()> {
    let id = crate::secret::token_id(token).ok_or_else(|| Error::invalid("not a session"))?;
    db.revoke_token(user.id, id).await?;
    Ok(())
}

/// Ends every open session of `user` (their password changed).
pub async fn close_all(db: &Database, user: &User) -> Result<()> {
    for token in db.list_tokens(user.id).await? {
        if token.name == SESSION_NAME && token.revoked_time.is_none() {
            db.revoke_token(user.id, &token.id).await?;
        }
    }
    Ok(())
}

/// The `Set-Cookie` value that gives the browser its session.
pub fn set_cookie(token: &str) -> HeaderValue {
    let value =
        format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_TTL.as_secs());
    HeaderValue::from_str(&value).unwrap_or_else(|_| clear_cookie())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-shipyard_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session token a request's cookies carry, when it is well formed.
pub fn from_cookies(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| crate::secret::token_id(v).is_some())
}

/// Whether the browser says the request comes from another site: a `Sec-Fetch-Site` other
/// than `same-origin` / `none`, or an `Origin` that is not this host.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    match (text("origin"), text("host")) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            authority != Some(host)
        }
        (Some(_), None) => true,
    }
}

/// Where to go after logging in: a path of this site only (`/...`, never `//host` or a URL).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.contains("://") => {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cookie_is_read_only_when_well_formed_and_next_stays_on_this_site() {
        let mut headers = HeaderMap::new();
        let token = crate::secret::new_token().token;
        headers.insert("cookie", HeaderValue::from_str(&format!("a=b; {COOKIE}={token}; c=d")).unwrap());
        assert_eq!(from_cookies(&headers), Some(token));
        headers.insert("cookie", HeaderValue::from_static("__Host-shipyard_session=not-a-token"));
        assert_eq!(from_cookies(&headers), None);
        let cookie = set_cookie("shp_0123456789ab_x");
        let text = cookie.to_str().unwrap();
        for part in ["__Host-shipyard_session=", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(text.contains(part), "{text}");
        }
        assert_eq!(safe_next(Some("/models/churn?x=1")), "/models/churn?x=1");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "evil", "/a://b"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("origin", "https://h:1"), ("host", "h:1")])));
        assert!(cross_site(&headers(&[("origin", "https://evil"), ("host", "h:1")])));
        assert!(!cross_site(&headers(&[])));
    }
}
