//! Shipyard's web UI: server-rendered HTML pages over the store, served by `shipyard server` at
//! `/` on the API's port (`--no-ui` turns it off), embedded in the binary and working offline.
//!
//! Pages are built with `maud`, which escapes every value it is given, so names, params, tags
//! and descriptions a user wrote are text, never markup. Tables are plain HTML with links and
//! forms (they work without JavaScript); what the URL says (filter, sort, columns, page) is the
//! whole state of a view, so a view is shared by its address. Every page carries a Content
//! Security Policy that allows scripts and styles only from this server's `/static/` files: no
//! inline script runs, whatever a stored value holds.
//!
//! - [`pages`]: the experiments list, an experiment's runs, a run.
//! - [`series`]: the JSON the charts draw, metric histories reduced on the server with each
//!   bucket's min and max kept.
//! - [`assets`]: the embedded CSS and JavaScript (uPlot vendored), with their cache headers.
//! - [`actions`]: the forms that change something (promote, roll back, canary weight, end a
//!   canary, acknowledge an alert), each calling the library function its CLI command calls.
//! - [`csrf`]: the check every such form passes first (a signed token, no cross-site requests).
//!
//! The pages call the store's own functions (the same searches the REST API runs, with the same
//! filter parser), so what the UI shows is what the API answers.

pub mod actions;
pub mod assets;
pub mod csrf;
pub mod pages;
pub mod series;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use shipyard_release::Releaser;
use shipyard_store::{ArtifactStore, Database};

/// What the pages read, and what the actions use.
#[derive(Clone)]
pub struct UiState {
    pub db: Database,
    /// The server's artifact store (runs' `mlflow-artifacts:` folders); `None`: no artifacts shown.
    pub artifacts: Option<ArtifactStore>,
    /// What runs a promotion's gates; `None`: the promote form is not offered.
    pub releaser: Option<Releaser>,
    /// What computes a past monitor window for the drift heat-map's click-through; `None`:
    /// the cells link nowhere.
    pub monitor: Option<Arc<shipyard_monitor::Monitor>>,
    /// Where dataset versions from a remote artifact store are copied to be read.
    pub cache: std::path::PathBuf,
    /// One heavy request at a time (a gate run loads two models and scores the evaluation rows;
    /// a drift between dataset versions reads both); another gets 503.
    heavy_work: Arc<tokio::sync::Semaphore>,
    /// Who may log in, when the server runs with `--auth` (the login page checks passwords
    /// with it); `None`: every page is open and there is nothing to log into.
    pub auth: Option<Arc<shipyard_auth::Authority>>,
}

impl UiState {
    pub fn new(db: Database, artifacts: Option<ArtifactStore>, releaser: Option<Releaser>) -> UiState {
        UiState {
            db,
            artifacts,
            releaser,
            monitor: None,
            cache: std::env::temp_dir().join("shipyard-ui-datasets"),
            heavy_work: Arc::new(tokio::sync::Semaphore::new(1)),
            auth: None,
        }
    }

    /// Logins: the login page checks passwords with `authority`.
    pub fn with_auth(mut self, authority: Option<Arc<shipyard_auth::Authority>>) -> UiState {
        self.auth = authority;
        self
    }

    /// Where remote dataset versions are copied (the server's `SHIPYARD_HOME/cache/datasets`).
    pub fn with_cache(mut self, cache: std::path::PathBuf) -> UiState {
        self.cache = cache;
        self
    }

    /// A permit for one heavy request, or `None` when one is under way.
    pub(crate) fn heavy_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.heavy_work.try_acquire().ok()
    }

    /// The monitor that computes past windows (`/deployments/{name}/window`).
    pub fn with_monitor(mut self, monitor: Arc<shipyard_monitor::Monitor>) -> UiState {
        self.monitor = Some(monitor);
        self
    }
}

/// The Content Security Policy of every page: this server's files only, nothing inline.
/// The login page, where the gate sends a browser that is not logged in.
pub const LOGIN_PAGE: &str = "/login";

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes: `/`, `/experiments/{id}` (and its `runs.csv`), `/runs/{id}` (and its
/// `artifacts`, `artifacts/raw`),
/// `/compare`, `/models` (a model, a version), `/deployments` (one), `/alerts`, `/pipelines/{run}`,
/// `/datasets` (one),
/// `/ui-api/series`, `/ui-api/monitor`, `/static/{file}`; and the actions' POST routes.
pub fn router(state: UiState) -> Router {
    app(state).0
}

/// The UI's router and each route's permission. A page of one resource needs READ on it (a
/// run's page: its experiment's), an action the permission its CLI command needs; the lists
/// (experiments, models, deployments, datasets, alerts) show only what the caller may read.
pub fn app(state: UiState) -> (Router, shipyard_auth::PolicyTable) {
    let keys = csrf::Keys::new(state.db.clone());
    let (router, table) = routes().build();
    let router = router
        .layer(axum::middleware::from_fn(pages::signed_in))
        .layer(axum::middleware::from_fn_with_state(keys, csrf::protect))
        .layer(axum::middleware::map_response(secure))
        .with_state(state);
    (router, table)
}

/// The UI's permissions (see [`app`]).
pub fn policies() -> shipyard_auth::PolicyTable {
    routes().build().1
}

fn routes() -> shipyard_auth::Routes<UiState> {
    use shipyard_auth::Capability::{Read, Update};
    use shipyard_auth::Locator::{Alert, Path, Query, RunList, RunPath};
    use shipyard_auth::ResourceType::{Dataset, Deployment, Experiment, RegisteredModel};
    use shipyard_auth::{Policy, Routes};
    let on = Policy::on;
    let experiment = on(Experiment, Read, Path("experiment_id"));
    let run = on(Experiment, Read, RunPath("run_id"));
    let model = |need| on(RegisteredModel, need, Path("name"));
    let deployment = |need| on(Deployment, need, Path("name"));
    let dataset = on(Dataset, Read, Path("name"));
    let deployment_of_alert = on(Deployment, Update, Alert("id"));
    let listing = Policy::Authenticated(Read);
    Routes::new()
        .get(LOGIN_PAGE, pages::login::page, Policy::Public)
        .post(LOGIN_PAGE, pages::login::submit, Policy::Public)
        .post("/logout", pages::login::logout, listing)
        .post("/models/{name}/versions/{version}/promote", actions::promote, model(Update))
        .post("/models/{name}/rollback", actions::rollback, model(Update))
        .post("/deployments/{name}/weight", actions::set_weight, deployment(Update))
        .post("/deployments/{name}/end-canary", actions::end_canary, deployment(Update))
        .post("/alerts/{id}/acknowledge", actions::acknowledge, deployment_of_alert)
        .get("/", pages::experiments::page, listing)
        .get("/experiments/{experiment_id}", pages::runs::page, experiment)
        .get("/experiments/{experiment_id}/runs.csv", pages::runs::csv_export, experiment)
        .get("/runs/{run_id}", pages::run::page, run)
        .get("/runs/{run_id}/artifacts", pages::artifacts::page, run)
        .get("/runs/{run_id}/artifacts/raw", pages::artifacts::raw, run)
        .get("/compare", pages::compare::page, on(Experiment, Read, RunList("run")))
        .get("/models", pages::models::list, listing)
        .get("/models/{name}", pages::models::model, model(Read))
        .get("/models/{name}/versions/{version}", pages::models::version, model(Read))
        .get("/deployments", pages::deployments::list, listing)
        .get("/deployments/{name}", pages::deployments::page, deployment(Read))
        .get("/deployments/{name}/window", pages::window::page, deployment(Read))
        .get("/alerts", pages::deployments::all_alerts, listing)
        .get("/pipelines/{run_id}", pages::pipelines::page, run)
        .get("/datasets", pages::datasets::list, listing)
        .get("/datasets/{name}", pages::datasets::page, dataset)
        .get("/datasets/{name}/drift", pages::datasets::drift, dataset)
        .get("/ui-api/series", series::series, on(Experiment, Read, RunList("run")))
        .get("/ui-api/monitor", pages::deployments::monitor_series, on(Deployment, Read, Query("deployment")))
        .get("/static/{file}", assets::serve, Policy::Public)
}

/// The caller, when the server has logins (`shipyard_auth::gate`).
pub(crate) type Caller = Option<axum::Extension<shipyard_auth::Access>>;

/// `items` without those of `kind` the caller may not read (lists show only what one may open).
pub(crate) fn readable<T>(
    caller: &Caller,
    kind: shipyard_auth::ResourceType,
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
) -> Vec<T> {
    shipyard_auth::gate::readable_only(caller.as_ref().map(|axum::Extension(a)| a), kind, items, id)
}

/// The security headers of every UI answer.
async fn secure(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    // A stricter policy set by the handler (raw artifacts are sandboxed) is kept.
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
