//! Logging in and out of the web UI when the server runs with `--auth`: a form for the user
//! name and password (checked by the same authenticator as every API call, throttled the same
//! way), a session in a `__Host-` cookie on success ([`shipyard_auth::session`]), and back to the
//! page that was asked for. The gate sends a browser without credentials here instead of
//! answering 401, so the browser never shows its Basic prompt.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use shipyard_auth::session;
use shipyard_auth::{Access, AuthError, Credentials};

use crate::UiState;
use crate::csrf::{FormToken, hidden_field};
use crate::pages::{error_page, layout};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login[?next=/path]`: the form.
pub async fn page(State(state): State<UiState>, token: FormToken, Query(q): Query<LoginQuery>) -> Response {
    if state.auth.is_none() {
        // Nothing to log into: every page is open.
        return see_other(&session::safe_next(q.next.as_deref()));
    }
    (StatusCode::OK, form(&token, q.next.as_deref(), "", None)).into_response()
}

fn form(token: &FormToken, next: Option<&str>, username: &str, problem: Option<&str>) -> Markup {
    let body = html! {
        section.login {
            h1 { "Sign in" }
            @if let Some(problem) = problem { p.error #login-error role="alert" { (problem) } }
            form method="post" action="/login" {
                (hidden_field(token))
                input type="hidden" name="next" value=(session::safe_next(next));
                label { "User name" input #username name="username" autocomplete="username" required value=(username); }
                label { "Password" input #password type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            p.hint { "The same user name and password as for the API (MLFLOW_TRACKING_USERNAME / _PASSWORD)." }
        }
    };
    layout("Sign in", body)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

/// `POST /login`: a session on the right password, else the form again saying why (401, or
/// 429 with `Retry-After` after repeated failures).
pub async fn submit(
    State(state): State<UiState>,
    token: FormToken,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(auth) = &state.auth else { return see_other("/") };
    let username = f.username.unwrap_or_default().trim().to_owned();
    let credentials = Credentials::Basic { username: username.clone(), password: f.password.unwrap_or_default() };
    let client = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| a.ip());
    match auth.authenticator().authenticate(&credentials, client).await {
        Ok(principal) => match session::open(&state.db, &principal.user).await {
            Ok(issued) => {
                let mut response = see_other(&session::safe_next(f.next.as_deref()));
                response.headers_mut().append(header::SET_COOKIE, session::set_cookie(&issued.token));
                response
            }
            Err(e) => error_page(&e),
        },
        Err(AuthError::Throttled { retry_after }) => {
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            let problem = format!("Too many failed sign-ins: try again in {seconds} s.");
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, form(&token, f.next.as_deref(), &username, Some(&problem)))
                    .into_response();
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        // The same words whether the user exists or not.
        Err(AuthError::Unauthenticated(_)) => {
            (StatusCode::UNAUTHORIZED, form(&token, f.next.as_deref(), &username, Some("Wrong user name or password.")))
                .into_response()
        }
        Err(AuthError::Store(e)) => error_page(&e),
    }
}

/// `POST /logout`: the session ends at once (its token revoked) and its cookie goes.
pub async fn logout(State(state): State<UiState>, caller: Option<Extension<Access>>, headers: HeaderMap) -> Response {
    if let (Some(Extension(access)), Some(token)) = (caller, session::from_cookies(&headers))
        && let Err(e) = session::close(&state.db, &access.principal.user, &token).await
    {
        tracing::warn!("closing a session: {e}");
    }
    let mut response = see_other("/login");
    response.headers_mut().append(header::SET_COOKIE, session::clear_cookie());
    response
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}
