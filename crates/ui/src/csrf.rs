//! Protection of the UI's forms against cross-site request forgery: a signed double-submit
//! token (OWASP's recommended pattern when there is no server-side session), and a refusal of
//! any request a browser marks as coming from another site.
//!
//! A browser without the cookie gets `shipyard_csrf` (random, `HttpOnly`, `SameSite=Strict`)
//! with its first page. Each form carries `HMAC-SHA256(secret, cookie)` as a hidden field; the
//! secret is made once per store ([`Database::shared_secret`]), so every replica of a server
//! accepts the same tokens. A request that changes something (any method but GET / HEAD) is
//! accepted only when:
//! - the browser does not say it came from elsewhere (`Sec-Fetch-Site` other than
//!   `same-origin` / `none`, or an `Origin` that is not this host);
//! - it carries the cookie, and its form's token verifies against it (in constant time).
//!
//! The check runs in a middleware over every UI route, before any handler: no action can
//! forget it. A refused request changes nothing and gets a 403 page saying what to do.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use maud::html;
use sha2::Sha256;
use shipyard_core::Result;
use shipyard_store::Database;

use crate::pages::{error_page, layout};

/// The cookie holding the browser's random value.
pub const COOKIE: &str = "shipyard_csrf";
/// The form field holding the token.
pub const FIELD: &str = "csrf";
/// The largest form body read (the UI's forms are a few short fields).
const MAX_FORM_BYTES: usize = 16 * 1024;
/// The name of the signing secret in the store.
const SECRET: &str = "ui.csrf";

/// The signing key, read from the store once.
#[derive(Clone)]
pub struct Keys {
    db: Database,
    key: std::sync::Arc<tokio::sync::OnceCell<Vec<u8>>>,
}

impl Keys {
    pub fn new(db: Database) -> Keys {
        Keys { db, key: std::sync::Arc::default() }
    }

    async fn key(&self) -> Result<&[u8]> {
        let key = self.key.get_or_try_init(|| async { self.db.shared_secret(SECRET).await.map(String::into_bytes) });
        Ok(key.await?.as_slice())
    }
}

/// The token a form of this page carries (see [`hidden_field`]).
#[derive(Clone, Debug, Default)]
pub struct FormToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for FormToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<FormToken>().cloned().unwrap_or_default())
    }
}

/// The hidden field every form carries.
pub fn hidden_field(token: &FormToken) -> maud::Markup {
    html! { input type="hidden" name=(FIELD) value=(token.0); }
}

fn mac(key: &[u8], cookie: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"shipyard-ui-form:");
    mac.update(cookie.as_bytes());
    mac
}

fn sign(key: &[u8], cookie: &str) -> String {
    hex::encode(mac(key, cookie).finalize().into_bytes())
}

fn verify(key: &[u8], cookie: &str, token: &str) -> bool {
    hex::decode(token).is_ok_and(|bytes| mac(key, cookie).verify_slice(&bytes).is_ok())
}

/// The browser's value: 32 hex digits, as this module makes them.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A refused form: 403, nothing changed.
fn refused(why: &str) -> Response {
    let body = html! {
        h1 { "Not done" }
        p.error #refused { (why) }
        p { "Nothing was changed. Go back, reload the page and submit the form again." }
    };
    (StatusCode::FORBIDDEN, layout("Refused", body)).into_response()
}

/// The middleware: checks every state-changing request, hands pages their [`FormToken`], and
/// gives a browser without the cookie one with its first page.
pub async fn protect(State(keys): State<Keys>, request: Request, next: Next) -> Response {
    let existing = cookie_value(request.headers());
    let cookie = existing.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let key = match keys.key().await {
        Ok(k) => k,
        Err(e) => return error_page(&e),
    };
    let request = if matches!(*request.method(), Method::GET | Method::HEAD) {
        request
    } else {
        if shipyard_auth::session::cross_site(request.headers()) {
            return refused("This request came from another site, so it was refused.");
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
            return refused("The form is larger than this server accepts.");
        };
        let token = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == FIELD).map(|(_, v)| v.into_owned());
        match (&existing, token) {
            (Some(cookie), Some(token)) if verify(key, cookie, &token) => {}
            (None, _) => return refused("The form came without this site's cookie (cookies may be blocked)."),
            _ => return refused("The form's token is missing or does not match: it may be from an old page."),
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    let mut request = request;
    request.extensions_mut().insert(FormToken(sign(key, &cookie)));
    let mut response = next.run(request).await;
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if existing.is_none() && is_page {
        let value = format!("{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_with_its_cookie_and_key() {
        let token = sign(b"key", "0123456789abcdef0123456789abcdef");
        assert!(verify(b"key", "0123456789abcdef0123456789abcdef", &token));
        assert!(!verify(b"key", "0123456789abcdef0123456789abcdee", &token));
        assert!(!verify(b"other", "0123456789abcdef0123456789abcdef", &token));
        assert!(!verify(b"key", "0123456789abcdef0123456789abcdef", "zz"));
        assert!(!verify(b"key", "0123456789abcdef0123456789abcdef", ""));
    }

    #[test]
    fn only_well_formed_cookies_are_read() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; shipyard_csrf=0123456789abcdef0123456789abcdef"));
        assert_eq!(cookie_value(&h).as_deref(), Some("0123456789abcdef0123456789abcdef"));
        h.insert(header::COOKIE, HeaderValue::from_static("shipyard_csrf=<script>"));
        assert_eq!(cookie_value(&h), None);
    }
}
