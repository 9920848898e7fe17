//! The middleware every request passes when authentication is on: find the route's policy,
//! authenticate the caller, find the resource the request names, decide, and hand the
//! handler an [`Access`] (who is calling and what they may see, for searches and lists).
//!
//! Decisions, in order:
//! 1. A route without a policy is refused (403): deny by default, logged as a bug.
//! 2. `Public` passes without credentials.
//! 3. No credentials: 401 with `WWW-Authenticate: Basic realm="shipyard"`; wrong ones: 401;
//!    too many wrong ones: 429 with `Retry-After` (the `mlflow` client honours it).
//! 4. The policy: admins pass every check their credential's scopes allow; others need the
//!    permission their grants resolve to ([`crate::permission::resolve`]) on every resource
//!    the request names, and their credential's scopes must allow it. A resource the request
//!    names but the store does not have passes to the handler, which answers 404: there is
//!    nothing to protect, and the caller learns nothing a 403 would not tell.
//! 5. A `Create` that succeeds grants its creator MANAGE on what was created.
//!
//! Error bodies are MLflow's (`{"error_code": "UNAUTHENTICATED" | "PERMISSION_DENIED", ...}`),
//! so the `mlflow` client raises a `RestException` and does not retry a 401 or 403.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shipyard_core::{Error, ErrorCode};
use shipyard_store::Database;

use crate::authenticate::{AuthError, Authenticator, Credentials, Principal};
use crate::permission::{Capability, Grant, Permission, ResourceType, resolve};
use crate::policy::{Locator, Policy, PolicyTable, Requirement};

/// How long a user's grants are reused before they are read again (a revocation reaches
/// every replica within this).
pub const GRANTS_TTL: Duration = Duration::from_secs(1);

/// Who may do what: the authenticator, the default permission and users' grants. Shared by
/// the gate and the handlers that change users and grants.
pub struct Authority {
    authenticator: Arc<Authenticator>,
    default_permission: Permission,
    grants: GrantCache,
}

/// Users' grants with when they were read.
type GrantCache = Mutex<HashMap<i64, (Instant, Arc<Vec<Grant>>)>>;

/// The gate's state: the authority and every route's policy.
pub struct Gate {
    authority: Arc<Authority>,
    table: PolicyTable,
    /// Largest body read to find a resource in it.
    max_body_bytes: usize,
    /// Where a browser asking for a page without credentials is sent (the UI's login page).
    login_page: Option<&'static str>,
}

/// Who is calling and what they may do: in every request's extensions when authentication
/// is on.
#[derive(Clone)]
pub struct Access {
    pub principal: Principal,
    grants: Arc<Vec<Grant>>,
    default: Permission,
}

/// Which resources of a type a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    All,
    /// All but these.
    Except(Vec<String>),
    /// Only these.
    Only(Vec<String>),
}

impl Visibility {
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Except(ids) => !ids.iter().any(|i| i == id),
            Visibility::Only(ids) => ids.iter().any(|i| i == id),
        }
    }
}

impl Access {
    pub fn new(principal: Principal, grants: Arc<Vec<Grant>>, default: Permission) -> Access {
        Access { principal, grants, default }
    }

    /// The user's permission on a resource (admins: MANAGE), before scopes.
    pub fn permission(&self, kind: ResourceType, id: &str) -> Permission {
        if self.principal.user.is_admin {
            return Permission::Manage;
        }
        resolve(&self.grants, kind, id, self.default)
    }

    /// Whether the caller may do `capability` to the resource. The `workspace` resource (what
    /// names no one resource, like the artifact root) needs an admin or a workspace grant:
    /// the default permission does not reach it.
    pub fn can(&self, kind: ResourceType, id: &str, capability: Capability) -> bool {
        if kind == ResourceType::Workspace {
            return self.principal.scopes.allow_unscoped(capability)
                && (self.principal.user.is_admin
                    || resolve(&self.grants, ResourceType::Workspace, "*", Permission::NoPermissions)
                        .allows(capability));
        }
        self.principal.scopes.allow(kind, id, capability) && self.permission(kind, id).allows(capability)
    }

    /// The resources of `kind` the caller may read, for filtering a search or a list.
    pub fn readable(&self, kind: ResourceType) -> Visibility {
        // What a resource named by no grant of its own resolves to.
        let unnamed = "\u{0}";
        let base = self.can(kind, unnamed, Capability::Read);
        let mut named: Vec<&str> = self
            .grants
            .iter()
            .filter(|g| g.resource_type == kind && g.pattern != "*")
            .map(|g| g.pattern.as_str())
            .collect();
        named.sort_unstable();
        named.dedup();
        // A scope naming resources limits them whatever the grants say.
        let scoped: Option<Vec<String>> =
            (!self.principal.scopes.allow_unscoped(Capability::Read)).then(|| self.principal.scopes.named(kind));
        if let Some(only) = scoped {
            if only.iter().any(|n| n == "*") {
                return if base {
                    Visibility::Except(
                        named
                            .iter()
                            .filter(|n| !self.can(kind, n, Capability::Read))
                            .map(|n| (*n).to_owned())
                            .collect(),
                    )
                } else {
                    Visibility::Only(
                        named.iter().filter(|n| self.can(kind, n, Capability::Read)).map(|n| (*n).to_owned()).collect(),
                    )
                };
            }
            return Visibility::Only(only.into_iter().filter(|n| self.can(kind, n, Capability::Read)).collect());
        }
        if base {
            let hidden: Vec<String> =
                named.iter().filter(|n| !self.can(kind, n, Capability::Read)).map(|n| (*n).to_owned()).collect();
            if hidden.is_empty() { Visibility::All } else { Visibility::Except(hidden) }
        } else {
            Visibility::Only(
                named.iter().filter(|n| self.can(kind, n, Capability::Read)).map(|n| (*n).to_owned()).collect(),
            )
        }
    }
}

/// `items` without those of `kind` the caller may not read (`id` names each); all of them
/// without authentication (no `Access`).
pub fn readable_only<T>(access: Option<&Access>, kind: ResourceType, items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
    let Some(access) = access else { return items };
    match access.readable(kind) {
        Visibility::All => items,
        visibility => items.into_iter().filter(|item| visibility.allows(id(item))).collect(),
    }
}

/// An error answer in MLflow's shape.
fn refuse(code: ErrorCode, message: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    let body = serde_json::json!({"error_code": code.as_str(), "message": message});
    (status, axum::Json(body)).into_response()
}

fn unauthenticated(message: &str) -> Response {
    let mut response = refuse(ErrorCode::Unauthenticated, message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"shipyard\""));
    response
}

fn denied(message: &str) -> Response {
    refuse(ErrorCode::PermissionDenied, message)
}

fn from_auth_error(e: AuthError) -> Response {
    match e {
        AuthError::Unauthenticated(message) => unauthenticated(&message),
        AuthError::Throttled { retry_after } => {
            let mut response =
                refuse(ErrorCode::RequestLimitExceeded, &AuthError::Throttled { retry_after }.to_string());
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            // Rounded up: a client that waits this long is let through.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        AuthError::Store(e) => store_failed(e),
    }
}

fn store_failed(e: Error) -> Response {
    tracing::error!(target: "shipyard::auth", "authorization could not read the store: {e}");
    refuse(ErrorCode::TemporarilyUnavailable, "authorization is unavailable: the store could not be read")
}

impl Authority {
    pub fn new(authenticator: Arc<Authenticator>, default_permission: Permission) -> Arc<Authority> {
        Arc::new(Authority { authenticator, default_permission, grants: Mutex::new(HashMap::new()) })
    }

    /// The permission of a user on a resource nothing grants them anything on.
    pub fn default_permission(&self) -> Permission {
        self.default_permission
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    fn db(&self) -> &Database {
        self.authenticator.db()
    }

    /// A user's grants, read at most every [`GRANTS_TTL`].
    pub async fn grants(&self, user_id: i64) -> Result<Arc<Vec<Grant>>, Error> {
        if let Some((at, grants)) = self.grants.lock().unwrap_or_else(|e| e.into_inner()).get(&user_id)
            && at.elapsed() < GRANTS_TTL
        {
            return Ok(grants.clone());
        }
        let rows = self.db().user_grants(user_id).await?;
        let grants: Vec<Grant> = rows
            .into_iter()
            .filter_map(|row| {
                let resource_type = ResourceType::parse(&row.resource_type).ok()?;
                let permission = Permission::parse(&row.permission).ok()?;
                Some(Grant { resource_type, pattern: row.resource_pattern, permission })
            })
            .collect();
        let grants = Arc::new(grants);
        self.grants.lock().unwrap_or_else(|e| e.into_inner()).insert(user_id, (Instant::now(), grants.clone()));
        Ok(grants)
    }

    /// Forgets cached grants (after a change made through this process).
    pub fn forget_grants(&self) {
        self.grants.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Gate {
    /// The gate; `login_page` (the UI's) is where a browser asking for a page without
    /// credentials is sent, instead of a 401 that makes it show its Basic prompt.
    pub fn new(
        authority: Arc<Authority>,
        table: PolicyTable,
        max_body_bytes: usize,
        login_page: Option<&'static str>,
    ) -> Arc<Gate> {
        Arc::new(Gate { authority, table, max_body_bytes, login_page })
    }

    fn db(&self) -> &Database {
        self.authority.db()
    }

    /// The caller of `request`, or the refusal to send.
    async fn caller(&self, credentials: Result<(Credentials, IpAddr), Response>) -> Result<Principal, Response> {
        let (credentials, client) = credentials?;
        self.authority.authenticator.authenticate(&credentials, client).await.map_err(from_auth_error)
    }
}

/// The credentials `request` presents and its client's address (read before any wait: a
/// request is not shared across threads).
// The refusal is built once per refused request and sent as it is: boxing it gains nothing.
#[allow(clippy::result_large_err)]
fn presented(request: &Request) -> Result<(Credentials, IpAddr), Response> {
    let client =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let Some(header) = request.headers().get(header::AUTHORIZATION) else {
        // A browser's session rides in its cookie; another site's page cannot use it to change
        // anything (SameSite=Strict already keeps most browsers from sending it).
        if let Some(token) = crate::session::from_cookies(request.headers()) {
            if !request.method().is_safe() && crate::session::cross_site(request.headers()) {
                return Err(denied("a request from another site may not use this site's session"));
            }
            return Ok((Credentials::Bearer(token), client));
        }
        // A client certificate the listener verified, bound to a user by an admin.
        if let Some(certificate) =
            request.extensions().get::<shipyard_listener::ConnectionInfo>().and_then(|c| c.client_certificate.clone())
        {
            return Ok((Credentials::Certificate(certificate.sha256.clone()), client));
        }
        return Err(unauthenticated("authentication required: send a user name and password or a token"));
    };
    let header = header.to_str().map_err(|_| unauthenticated("the Authorization header is not text"))?;
    Ok((Credentials::from_header(header).map_err(from_auth_error)?, client))
}

/// For a browser asking for a page (GET, `Accept: text/html`, no `Authorization`) when there
/// is a login page: the redirect to it, coming back to the page after.
fn browser_page(gate: &Gate, request: &Request) -> Option<Response> {
    let login = gate.login_page?;
    let headers = request.headers();
    let html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if request.method() != axum::http::Method::GET || !html || headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    let here = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let location = HeaderValue::from_str(&format!("{login}?next={next}")).ok()?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    // An ended session's cookie goes.
    if crate::session::from_cookies(headers).is_some() {
        response.headers_mut().insert(header::SET_COOKIE, crate::session::clear_cookie());
    }
    Some(response)
}

/// The middleware (`axum::middleware::from_fn_with_state(gate, enforce)`), layered over every
/// route of the binary's merged router.
pub async fn enforce(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let policy = match &path {
        Some(path) => match gate.table.get(request.method(), path) {
            Some(policy) => *policy,
            None => {
                tracing::error!(target: "shipyard::auth", "route {} {path} has no policy: refused", request.method());
                return denied("this route has no declared permission and is refused");
            }
        },
        // No route matched: the answer is a 404 or 405, given only to someone logged in.
        None => Policy::Authenticated(Capability::Read),
    };
    if policy == Policy::Public {
        return next.run(request).await;
    }
    let page = browser_page(&gate, &request);
    let principal = match gate.caller(presented(&request)).await {
        Ok(p) => p,
        // A page asked for by a browser that is not logged in (or whose session ended): the
        // login page, which comes back here after.
        Err(response) => {
            return match (response.status(), page) {
                (StatusCode::UNAUTHORIZED, Some(login)) => login,
                _ => response,
            };
        }
    };
    let grants = match gate.authority.grants(principal.user.id).await {
        Ok(g) => g,
        Err(e) => return store_failed(e),
    };
    let access = Access::new(principal, grants, gate.authority.default_permission);
    let (mut request, created) = match decide(&gate, &access, policy, request).await {
        Ok(decided) => decided,
        Err(response) => return response,
    };
    request.extensions_mut().insert(access.clone());
    let new = CreatorGrants::new(gate.authority.clone(), &access, created.named);
    if let Some(new) = &new {
        request.extensions_mut().insert(new.clone());
    }
    let response = next.run(request).await;
    if !response.status().is_success() {
        return response;
    }
    // What the request created exists now (a streamed answer settles before its last line).
    if let Some(new) = new {
        new.settle().await;
    }
    match created.field {
        Some((kind, field)) => grant_creator(&gate, &access, kind, field, response).await,
        None => response,
    }
}

/// What a request may create, found by the gate: MANAGE goes to its creator once it exists.
#[derive(Default)]
struct Created {
    /// A `Create` route: the answer's field naming what was created.
    field: Option<(ResourceType, &'static str)>,
    /// Resources named in the request that do not exist yet.
    named: Vec<(ResourceType, String)>,
}

type Decided = (Request, Created);

async fn decide(gate: &Gate, access: &Access, policy: Policy, request: Request) -> Result<Decided, Response> {
    let who = &access.principal.user.username;
    match policy {
        Policy::Public => Ok((request, Created::default())),
        Policy::Admin => {
            if access.principal.user.is_admin && access.principal.scopes.is_all() {
                Ok((request, Created::default()))
            } else {
                Err(denied(&format!("Permission denied: {who} is not an admin")))
            }
        }
        Policy::Authenticated(capability) => {
            if access.principal.scopes.allow_unscoped(capability) {
                Ok((request, Created::default()))
            } else {
                Err(denied("Permission denied: this credential is limited to named resources"))
            }
        }
        Policy::Create { kind, id_field } => {
            if access.principal.scopes.allow_unscoped(Capability::Update) {
                Ok((request, Created { field: Some((kind, id_field)), named: Vec::new() }))
            } else {
                Err(denied(&format!("Permission denied: this credential may not create a {}", kind.as_str())))
            }
        }
        Policy::Resource { kind, need, at } => {
            let mut created = Created::default();
            let request = require(gate, access, Requirement { kind, need, at }, request, &mut created).await?;
            Ok((request, created))
        }
        Policy::All(requirements) => {
            let mut created = Created::default();
            let mut request = request;
            for requirement in requirements {
                request = require(gate, access, *requirement, request, &mut created).await?;
            }
            Ok((request, created))
        }
    }
}

/// Checks one requirement; a resource that the request would create is added to `created`.
async fn require(
    gate: &Gate,
    access: &Access,
    requirement: Requirement,
    request: Request,
    created: &mut Created,
) -> Result<Request, Response> {
    let who = &access.principal.user.username;
    let Requirement { kind, need, at } = requirement;
    let (request, located) = locate(gate, kind, at, request).await?;
    if let Some((kind, name)) = located.new {
        if !access.principal.scopes.allow_unscoped(Capability::Update) {
            return Err(denied(&format!(
                "Permission denied: this credential may not create {} '{name}'",
                kind.as_str().replace('_', " ")
            )));
        }
        created.named.push((kind, name));
    }
    for alternatives in located.named {
        // One of the alternatives suffices (a file shared by datasets).
        if alternatives.iter().any(|(kind, id)| access.can(*kind, id, need)) {
            continue;
        }
        if let Some((kind, id)) = alternatives.first() {
            tracing::info!(target: "shipyard::auth", user = %who, resource = %format!("{}:{id}", kind.as_str()), need = ?need, "denied");
            return Err(denied(&format!(
                "Permission denied: {who} may not {} {} '{id}'",
                verb(need),
                kind.as_str().replace('_', " ")
            )));
        }
    }
    Ok(request)
}

fn verb(capability: Capability) -> &'static str {
    match capability {
        Capability::Read => "read",
        Capability::Use => "use",
        Capability::Update => "change",
        Capability::Delete => "delete",
        Capability::Manage => "manage",
    }
}

/// The query parameter's values (repeated, or comma-separated when `split`).
fn query_values(request: &Request, name: &str, split: bool) -> Vec<String> {
    let query = request.uri().query().unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| {
            if split { v.split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>() } else { vec![v.into_owned()] }
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// The whole body, within the limit.
async fn read_body(gate: &Gate, body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, gate.max_body_bytes).await.map_err(|_| {
        refuse(
            ErrorCode::RequestLimitExceeded,
            &format!("Request body exceeds the limit of {} bytes", gate.max_body_bytes),
        )
    })
}

/// Reads the JSON body (within the limit) and puts it back; the values of `field` in it.
async fn body_values(gate: &Gate, request: Request, field: &str) -> Result<(Request, Vec<String>), Response> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(gate, body).await?;
    let values = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => match map.get(field) {
            Some(serde_json::Value::Array(items)) => items.iter().filter_map(json_text).collect(),
            Some(value) => json_text(value).into_iter().collect(),
            None => Vec::new(),
        },
        // A body that is not a JSON object names nothing; the handler says what is wrong.
        _ => Vec::new(),
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), values))
}

/// The first value of a query parameter, else of the JSON body's field.
async fn query_or_body(gate: &Gate, request: Request, name: &str) -> Result<(Request, Option<String>), Response> {
    if let Some(value) = query_values(&request, name, false).into_iter().next() {
        return Ok((request, Some(value)));
    }
    let (request, values) = body_values(gate, request, name).await?;
    Ok((request, values.into_iter().next()))
}

fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn missing(field: &str) -> Response {
    refuse(ErrorCode::InvalidParameterValue, &format!("Missing value for required parameter '{field}'"))
}

/// Resources a request names: each entry is a list of alternatives, any of which suffices.
type Named = Vec<Vec<(ResourceType, String)>>;

/// What a locator found: the resources to check, and one the request would create.
#[derive(Default)]
struct Located {
    named: Named,
    new: Option<(ResourceType, String)>,
}

impl Located {
    fn named(named: Named) -> Located {
        Located { named, new: None }
    }
}

/// The resources `request` names at `at`.
async fn locate(
    gate: &Gate,
    kind: ResourceType,
    at: Locator,
    request: Request,
) -> Result<(Request, Located), Response> {
    locate_field(gate, kind, at, request, false).await
}

/// [`locate`]; when `optional`, a request without the field names nothing.
async fn locate_field(
    gate: &Gate,
    kind: ResourceType,
    at: Locator,
    mut request: Request,
    optional: bool,
) -> Result<(Request, Located), Response> {
    let one = |id: String| Located::named(vec![vec![(kind, id)]]);
    // The field's value, or (when it is optional and absent) an answer naming nothing.
    macro_rules! given {
        ($request:expr, $value:expr, $name:expr) => {
            match $value {
                Some(value) => value,
                None if optional => return Ok(($request, Located::default())),
                None => return Err(missing($name)),
            }
        };
    }
    let located = match at {
        Locator::Optional(inner) => return Box::pin(locate_field(gate, kind, *inner, request, true)).await,
        Locator::Query(name) => {
            let first = query_values(&request, name, false).into_iter().next();
            let first = given!(request, first, name);
            (request, one(first))
        }
        Locator::Body(name) => {
            let (request, values) = body_values(gate, request, name).await?;
            let first = given!(request, values.into_iter().next(), name);
            (request, one(first))
        }
        Locator::QueryOrBody(name) => {
            let (request, value) = query_or_body(gate, request, name).await?;
            let value = given!(request, value, name);
            (request, one(value))
        }
        Locator::BodyOr(name, default) => {
            let (request, values) = body_values(gate, request, name).await?;
            let first = values.into_iter().next().unwrap_or_else(|| default.to_owned());
            (request, one(first))
        }
        Locator::BodyList(name) => {
            let (request, values) = body_values(gate, request, name).await?;
            (request, Located::named(values.into_iter().map(|v| vec![(kind, v)]).collect()))
        }
        Locator::Path(name) => {
            let value = path_param(&mut request, name).await;
            let value = given!(request, value, name);
            (request, one(value))
        }
        Locator::Run(name) => {
            let (request, run) = query_or_body(gate, request, name).await?;
            // MLflow's older clients send run_uuid beside (or instead of) run_id.
            let (request, run) = match run {
                None if name == "run_id" => query_or_body(gate, request, "run_uuid").await?,
                run => (request, run),
            };
            let run = given!(request, run, name);
            (request, Located::named(run_experiments(gate, &[run]).await?))
        }
        Locator::RunPath(name) => {
            let run = path_param(&mut request, name).await;
            let run = given!(request, run, name);
            (request, Located::named(run_experiments(gate, &[run]).await?))
        }
        Locator::RunList(name) => {
            let runs = query_values(&request, name, true);
            (request, Located::named(run_experiments(gate, &runs).await?))
        }
        Locator::ExperimentName(name) => {
            let (request, experiment) = query_or_body(gate, request, name).await?;
            let experiment = given!(request, experiment, name);
            match gate.db().get_experiment_by_name(&experiment).await {
                Ok(e) => (request, one(e.experiment_id)),
                Err(Error::NotFound(_)) => (request, Located::default()),
                Err(e) => return Err(store_failed(e)),
            }
        }
        Locator::Workspace => (request, Located::named(vec![vec![(ResourceType::Workspace, "*".to_owned())]])),
        Locator::LoggedModelPath(name) => {
            let model = path_param(&mut request, name).await;
            let model = given!(request, model, name);
            match gate.db().get_logged_model(&model).await {
                Ok(m) => (request, Located::named(vec![vec![(ResourceType::Experiment, m.info.experiment_id)]])),
                Err(Error::NotFound(_) | Error::InvalidParameter(_)) => (request, Located::default()),
                Err(e) => return Err(store_failed(e)),
            }
        }
        Locator::ArtifactPath => {
            let path = match path_param(&mut request, "path").await {
                Some(p) => p,
                None => query_values(&request, "path", false).into_iter().next().unwrap_or_default(),
            };
            (request, Located::named(artifact_owner(gate, &path).await?))
        }
        Locator::Served(name) => {
            let served = path_param(&mut request, name).await;
            let served = given!(request, served, name);
            match gate.db().get_deployment(&served).await {
                Ok(_) => (request, Located::named(vec![vec![(ResourceType::Deployment, served)]])),
                Err(Error::NotFound(_)) => {
                    (request, Located::named(vec![vec![(ResourceType::RegisteredModel, served)]]))
                }
                Err(e) => return Err(store_failed(e)),
            }
        }
        Locator::NewOrExisting(name) => {
            let (request, value) = query_or_body(gate, request, name).await?;
            let value = given!(request, value, name);
            match existing_id(gate, kind, &value).await? {
                Some(id) => (request, one(id)),
                None => (request, Located { named: Vec::new(), new: Some((kind, value)) }),
            }
        }
        Locator::Alert(name) => {
            let (request, id) = match path_param(&mut request, name).await {
                Some(id) => (request, Some(id)),
                None => query_or_body(gate, request, name).await?,
            };
            let id = given!(request, id, name);
            // Not a number, or no such alert: the handler answers.
            let found = match id.trim().parse::<i64>() {
                Ok(n) => match gate.db().get_alert(n).await {
                    Ok(alert) => Some(alert.deployment),
                    Err(Error::NotFound(_)) => None,
                    Err(e) => return Err(store_failed(e)),
                },
                Err(_) => None,
            };
            match found {
                Some(deployment) => (request, Located::named(vec![vec![(ResourceType::Deployment, deployment)]])),
                None => (request, Located::default()),
            }
        }
        Locator::DeploymentModels => {
            let (parts, body) = request.into_parts();
            let bytes = read_body(gate, body).await?;
            let spec = serde_json::from_slice::<serde_json::Value>(&bytes).ok().map(|v| v["spec"].clone());
            let spec = spec.and_then(|s| serde_json::from_value::<shipyard_core::deployment::DeploymentSpec>(s).ok());
            let request = Request::from_parts(parts, Body::from(bytes));
            // A body without a readable spec names nothing; the handler says what is wrong.
            let models = spec.map(|s| s.refs().map(|r| r.model.clone()).collect::<Vec<_>>()).unwrap_or_default();
            (request, Located::named(models.into_iter().map(|m| vec![(kind, m)]).collect()))
        }
        Locator::DatasetReference(name) => {
            let (request, values) = body_values(gate, request, name).await?;
            let value = given!(request, values.into_iter().next(), name);
            let dataset = value
                .strip_prefix("dataset:")
                .map(|r| r.split_once('@').map_or(r, |(name, _)| name).to_owned())
                .filter(|n| !n.is_empty());
            match dataset {
                Some(dataset) => (request, one(dataset)),
                None => (request, Located::default()),
            }
        }
    };
    Ok(located)
}

/// The id of the resource of type `kind` named `name`, when it exists (an experiment's id
/// differs from its name; the others' ids are their names).
async fn existing_id(gate: &Gate, kind: ResourceType, name: &str) -> Result<Option<String>, Response> {
    existing(gate.db(), kind, name).await.map_err(store_failed)
}

async fn existing(db: &Database, kind: ResourceType, name: &str) -> Result<Option<String>, Error> {
    let found = match kind {
        ResourceType::Experiment => db.get_experiment_by_name(name).await.map(|e| e.experiment_id),
        ResourceType::RegisteredModel => db.get_registered_model(name).await.map(|m| m.name),
        ResourceType::Deployment => db.get_deployment(name).await.map(|d| d.name),
        ResourceType::Dataset => db.list_dataset_versions(Some(name)).await.and_then(|versions| {
            versions.first().map(|v| v.name.clone()).ok_or_else(|| Error::not_found(format!("no dataset '{name}'")))
        }),
        ResourceType::Workspace => Ok("*".to_owned()),
    };
    match found {
        Ok(id) => Ok(Some(id)),
        Err(Error::NotFound(_) | Error::InvalidParameter(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resources a request creates, whose creator is granted MANAGE once they exist. The gate
/// settles after the answer; a handler that answers in a stream (the resource made at the end
/// of a long piece of work) settles before its last line, so the caller's next request finds
/// the grant.
#[derive(Clone)]
pub struct CreatorGrants(Arc<PendingGrants>);

struct PendingGrants {
    authority: Arc<Authority>,
    user: i64,
    /// Held while settling: the gate and a streamed answer's handler may settle at once.
    pending: tokio::sync::Mutex<Vec<(ResourceType, String)>>,
}

impl CreatorGrants {
    fn new(authority: Arc<Authority>, access: &Access, named: Vec<(ResourceType, String)>) -> Option<CreatorGrants> {
        // Admins may do anything already.
        if named.is_empty() || access.principal.user.is_admin {
            return None;
        }
        Some(CreatorGrants(Arc::new(PendingGrants {
            authority,
            user: access.principal.user.id,
            pending: tokio::sync::Mutex::new(named),
        })))
    }

    /// Grants MANAGE on each pending resource that exists now; the others stay pending.
    pub async fn settle(&self) {
        let mut pending = self.0.pending.lock().await;
        let mut left = Vec::new();
        let mut granted = false;
        for (kind, name) in pending.drain(..) {
            let db = self.0.authority.db();
            let outcome = match existing(db, kind, &name).await {
                Ok(Some(id)) => {
                    db.grant_user(self.0.user, kind.as_str(), &id, Permission::Manage.as_str()).await.map(drop)
                }
                Ok(None) => {
                    left.push((kind, name));
                    continue;
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => granted = true,
                Err(e) => {
                    tracing::error!(target: "shipyard::auth", "granting the creator of {} '{name}' MANAGE: {e}", kind.as_str())
                }
            }
        }
        *pending = left;
        if granted {
            self.0.authority.forget_grants();
        }
    }
}

async fn path_param(request: &mut Request, name: &str) -> Option<String> {
    use axum::extract::FromRequestParts;
    let (mut parts, body) = std::mem::take(request).into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &()).await.ok();
    let value = params.and_then(|p| p.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned()));
    *request = Request::from_parts(parts, body);
    value
}

async fn run_experiments(gate: &Gate, runs: &[String]) -> Result<Named, Response> {
    let mut found = Vec::new();
    for run in runs {
        match gate.db().run_experiment(run).await {
            Ok(Some(experiment)) => found.push(vec![(ResourceType::Experiment, experiment.to_string())]),
            Ok(None) => {}
            Err(e) => return Err(store_failed(e)),
        }
    }
    Ok(found)
}

/// The owner of a proxied artifact path: `{experiment_id}/...` is that experiment's;
/// `datasets/...` belongs to the datasets with a version stored there (an admin's, when none).
async fn artifact_owner(gate: &Gate, path: &str) -> Result<Named, Response> {
    let workspace = || vec![vec![(ResourceType::Workspace, "*".to_owned())]];
    let path = path.trim_start_matches('/');
    let first = path.split('/').next().unwrap_or("");
    if first.is_empty() {
        // The artifact root itself: listing it shows every experiment's folder.
        return Ok(workspace());
    }
    if first.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(vec![vec![(ResourceType::Experiment, first.to_owned())]]);
    }
    if first == "datasets" {
        let names = gate.db().datasets_with_file(path).await.map_err(store_failed)?;
        if names.is_empty() {
            return Ok(workspace());
        }
        // Readable through any dataset that holds it.
        return Ok(vec![names.into_iter().map(|n| (ResourceType::Dataset, n)).collect()]);
    }
    Ok(workspace())
}

/// After a successful create: MANAGE on the new resource for its creator.
async fn grant_creator(
    gate: &Gate,
    access: &Access,
    kind: ResourceType,
    field: &'static str,
    response: Response,
) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the answer could not be read").into_response();
    };
    let created = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| field.split('.').try_fold(v, |v, key| v.get(key).cloned()))
        .and_then(|v| json_text(&v));
    match created {
        Some(id) if !access.principal.user.is_admin => {
            if let Err(e) =
                gate.db().grant_user(access.principal.user.id, kind.as_str(), &id, Permission::Manage.as_str()).await
            {
                tracing::error!(target: "shipyard::auth", "granting the creator of {} '{id}' MANAGE: {e}", kind.as_str());
            }
            gate.authority.forget_grants();
        }
        Some(_) => {}
        None => {
            tracing::error!(target: "shipyard::auth", "a created {} named no '{field}' in its answer", kind.as_str())
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[allow(dead_code)]
fn _enforce_is_send(gate: Arc<Gate>, request: Request, next: Next) {
    fn send<T: Send>(_: T) {}
    send(enforce(State(gate), request, next));
}
