//! The CLI's connection to a tracking server (`--tracking-uri http(s)://...`), configured from
//! the variables the `mlflow` client reads, so one environment serves both:
//!
//! - `MLFLOW_TRACKING_TOKEN`: sent as `Authorization: Bearer` (a Shipyard API token);
//! - `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`: HTTP Basic;
//! - `MLFLOW_TRACKING_SERVER_CERT_PATH`: the CA bundle the server's certificate is checked
//!   against (instead of the system's roots);
//! - `MLFLOW_TRACKING_CLIENT_CERT_PATH`: a PEM file with a client certificate and its key;
//! - `MLFLOW_TRACKING_INSECURE_TLS=true`: no certificate check (for a test server only).
//!
//! Answers that are errors become errors carrying MLflow's code and message; a refused
//! credential says which variables were used, as the first thing a user needs to know.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

/// How long a command waits for a server that says nothing: promotions run gates and trainings
/// fit models on the server, which answers in a stream of progress lines (see
/// [`Server::long_call`]) so a quiet minute means a dead server.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A tracking server and the credentials to reach it.
#[derive(Clone)]
pub struct Server {
    client: reqwest::Client,
    /// `http(s)://host:port[/prefix]`, without a trailing slash.
    base: String,
    /// The `Authorization` header sent with every request, when credentials are set.
    authorization: Option<HeaderValue>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

impl Server {
    /// A client for `url`, with the credentials and TLS settings of the environment.
    pub fn connect(url: &str) -> Result<Server> {
        shipyard_store::artifacts::ensure_tls_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            // A redirect would carry the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = env("MLFLOW_TRACKING_SERVER_CERT_PATH") {
            let pem =
                std::fs::read(&path).with_context(|| format!("reading MLFLOW_TRACKING_SERVER_CERT_PATH {path}"))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("MLFLOW_TRACKING_SERVER_CERT_PATH {path}: not a PEM certificate bundle"))?;
            if certificates.is_empty() {
                bail!("MLFLOW_TRACKING_SERVER_CERT_PATH {path} holds no certificate");
            }
            builder = builder.tls_certs_only(certificates);
        }
        if let Some(path) = env("MLFLOW_TRACKING_CLIENT_CERT_PATH") {
            let pem =
                std::fs::read(&path).with_context(|| format!("reading MLFLOW_TRACKING_CLIENT_CERT_PATH {path}"))?;
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!("MLFLOW_TRACKING_CLIENT_CERT_PATH {path}: give one PEM file with the certificate and its key")
            })?;
            builder = builder.identity(identity);
        }
        if env("MLFLOW_TRACKING_INSECURE_TLS").is_some_and(|v| truthy(&v)) {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder.build().context("building the HTTP client")?;
        Ok(Server { client, base: url.trim_end_matches('/').to_owned(), authorization: authorization()? })
    }

    /// A request to `route` (relative to the server's root), with the credentials.
    pub fn request(&self, method: reqwest::Method, route: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/{}", self.base, route.trim_start_matches('/'));
        let request = self.client.request(method, url);
        match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    /// Sends `request` and reads its JSON answer; an error answer becomes an error with its
    /// MLflow code and message.
    pub async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let response = request.send().await.map_err(|e| self.unreachable(e, what))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("reading the answer to {what}"))?;
        let payload: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(payload);
        }
        Err(self.refusal(status, &payload, &text))
    }

    /// POSTs `body` as JSON to `route` and reads the JSON answer.
    pub async fn post(&self, route: &str, body: &Value) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, route).json(body), route).await
    }

    /// GETs `route` with `query` and reads the JSON answer.
    pub async fn get(&self, route: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, route).query(query), route).await
    }

    /// POSTs `body` to a route that answers in progress lines (newline-delimited JSON, each
    /// `{"progress": {...}}`, then one `{"result": ...}` or `{"error": {...}}`): `progress` is
    /// called with each progress object; the result is returned.
    pub async fn long_call(&self, route: &str, body: &Value, mut progress: impl FnMut(&Value)) -> Result<Value> {
        use futures::StreamExt;
        let response = self
            .request(reqwest::Method::POST, route)
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e, route))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let payload: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(self.refusal(status, &payload, &text));
        }
        let mut stream = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading the answer to {route}"))?;
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                if line.trim().is_empty() {
                    continue;
                }
                let message: Value = serde_json::from_str(line.trim())
                    .with_context(|| format!("the server's answer to {route} is not JSON lines"))?;
                if let Some(p) = message.get("progress") {
                    progress(p);
                } else if let Some(result) = message.get("result") {
                    return Ok(result.clone());
                } else if let Some(error) = message.get("error") {
                    return Err(Refusal {
                        status: None,
                        code: error["error_code"].as_str().unwrap_or("INTERNAL_ERROR").to_owned(),
                        message: error["message"].as_str().unwrap_or("").to_owned(),
                        hint: "",
                    }
                    .into());
                }
            }
        }
        bail!("the server ended its answer to {route} before the result (was it stopped?)")
    }

    fn unreachable(&self, e: reqwest::Error, what: &str) -> anyhow::Error {
        let mut message = format!("calling {} ({what}): {e}", self.base);
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        if self.base.starts_with("https://") && message.contains("certificate") {
            message.push_str(" (set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA that signed the server's certificate)");
        }
        anyhow!(message)
    }

    fn refusal(&self, status: reqwest::StatusCode, payload: &Value, text: &str) -> anyhow::Error {
        let code = payload["error_code"].as_str().unwrap_or("UNKNOWN").to_owned();
        let message = payload["message"].as_str().map_or_else(|| text.chars().take(300).collect(), str::to_owned);
        let hint = match status.as_u16() {
            401 if self.authorization.is_none() => {
                " (the server asks for credentials: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or \
                 MLFLOW_TRACKING_TOKEN)"
            }
            401 => " (the credentials from MLFLOW_TRACKING_* were refused)",
            _ => "",
        };
        Refusal { status: Some(status.as_u16()), code, message, hint }.into()
    }
}

/// A server's error answer: its HTTP status (none inside a streamed answer), MLflow error code
/// and message.
#[derive(Debug)]
pub struct Refusal {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    hint: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        f.write_str(self.hint)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The error as the store would have raised it, by its MLflow code.
    pub fn into_core(self) -> shipyard_core::Error {
        use shipyard_core::Error;
        let message = self.to_string();
        match self.code.as_str() {
            "RESOURCE_DOES_NOT_EXIST" => Error::NotFound(message),
            "RESOURCE_ALREADY_EXISTS" => Error::AlreadyExists(message),
            "INVALID_PARAMETER_VALUE" => Error::InvalidParameter(message),
            "BAD_REQUEST" => Error::BadRequest(message),
            "RESOURCE_CONFLICT" => Error::Conflict(message),
            "UNAUTHENTICATED" => Error::Unauthenticated(message),
            "PERMISSION_DENIED" => Error::PermissionDenied(message),
            "REQUEST_LIMIT_EXCEEDED" => Error::TooLarge(message),
            "TEMPORARILY_UNAVAILABLE" => Error::Unavailable(message),
            _ => Error::Internal(message),
        }
    }
}

/// Any error of a call to a server as a store error (a refusal keeps its kind; a connection
/// failure is `Unavailable`).
pub fn core_error(e: anyhow::Error) -> shipyard_core::Error {
    match e.downcast::<Refusal>() {
        Ok(refusal) => refusal.into_core(),
        Err(e) => shipyard_core::Error::Unavailable(format!("{e:#}")),
    }
}

/// The `Authorization` header the environment asks for: a token first, as `mlflow` does.
fn authorization() -> Result<Option<HeaderValue>> {
    use base64::Engine;
    let value = if let Some(token) = env("MLFLOW_TRACKING_TOKEN") {
        format!("Bearer {token}")
    } else if let Some(user) = env("MLFLOW_TRACKING_USERNAME") {
        let password = env("MLFLOW_TRACKING_PASSWORD")
            .ok_or_else(|| anyhow!("MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not"))?;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    } else {
        return Ok(None);
    };
    let mut header = HeaderValue::from_str(&value)
        .map_err(|_| anyhow!("MLFLOW_TRACKING_* credentials hold characters an HTTP header cannot carry"))?;
    header.set_sensitive(true);
    Ok(Some(header))
}
