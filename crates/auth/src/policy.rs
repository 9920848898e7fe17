//! Every route's permission, declared where the route is: a route can only be added to a
//! [`Routes`] together with its [`Policy`], so no route exists without one (MLflow's nine
//! authorization CVEs were routes missing from a separate validator table, which fell through
//! to "logged in = allowed"). The [`PolicyTable`] the routes produce is what the gate
//! ([`crate::gate`]) enforces, and what the permission-matrix tests walk.

use std::collections::BTreeMap;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;

use crate::permission::{Capability, ResourceType};

/// Where a request names the resource it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Locator {
    /// A query parameter.
    Query(&'static str),
    /// A field of the JSON body.
    Body(&'static str),
    /// A query parameter, else a JSON body field (MLflow's GET and POST forms).
    QueryOrBody(&'static str),
    /// A field of the JSON body, or this value when it is absent (MLflow's default experiment).
    BodyOr(&'static str, &'static str),
    /// A JSON body field holding a list: every element is checked.
    BodyList(&'static str),
    /// A path parameter.
    Path(&'static str),
    /// A run id (query or body field): the resource is the run's experiment.
    Run(&'static str),
    /// A run id in a path parameter: the run's experiment.
    RunPath(&'static str),
    /// A run id in the query, one or more (comma-separated or repeated): their experiments.
    RunList(&'static str),
    /// An experiment name (query or body field): that experiment.
    ExperimentName(&'static str),
    /// A logged model id in a path parameter: the model's experiment.
    LoggedModelPath(&'static str),
    /// The proxied artifact path (`{experiment_id}/...` or `datasets/...`), from the path's
    /// tail or the `path` query parameter: its experiment, or its dataset.
    ArtifactPath,
    /// A served model's name in a path parameter: the deployment of that name, else the
    /// registered model.
    Served(&'static str),
    /// Nothing in particular: the workspace (admins and holders of a workspace grant).
    Workspace,
    /// A query parameter, else a JSON body field, naming a resource the request creates when it
    /// does not exist yet (an experiment by name, a registered model, a deployment, a dataset):
    /// an existing one needs the capability; a new one needs a credential that may create, and
    /// its creator is granted MANAGE once it exists.
    NewOrExisting(&'static str),
    /// The registered models a deployment spec (the JSON body's `spec`) names.
    DeploymentModels,
    /// A JSON body field holding a table: `dataset:NAME[@VERSION]` names that dataset; any
    /// other value names nothing (a server refuses to read its own paths for a caller).
    DatasetReference(&'static str),
    /// An alert's id (a path parameter, else a query or JSON body field): the alert's deployment.
    Alert(&'static str),
    /// The inner locator when the request has its field; nothing when it does not.
    Optional(&'static Locator),
}

/// One resource a request names and what the caller needs on it: the parts of a
/// [`Policy::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Requirement {
    pub kind: ResourceType,
    pub need: Capability,
    pub at: Locator,
}

impl Requirement {
    /// `need` on `kind` found at `at`.
    pub const fn on(kind: ResourceType, need: Capability, at: Locator) -> Requirement {
        Requirement { kind, need, at }
    }
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone, even without credentials: health, version, capability discovery, static files.
    Public,
    /// Any authenticated caller whose credential is not scoped to one resource; the handler
    /// shows only what the caller may read (a search, a list) or acts only on the caller
    /// (their own account).
    Authenticated(Capability),
    /// Admins only.
    Admin,
    /// `need` on the resource of type `kind` the request names at `at`.
    Resource { kind: ResourceType, need: Capability, at: Locator },
    /// Every requirement: a command naming several resources (a training's experiment, the
    /// dataset it reads and the model it registers).
    All(&'static [Requirement]),
    /// Creating a resource of type `kind`: any authenticated caller with an unscoped
    /// credential; the creator is granted MANAGE on what the request created (named by the
    /// answer's JSON field `id_field`).
    Create { kind: ResourceType, id_field: &'static str },
}

impl Policy {
    /// `need` on `kind` found at `at`.
    pub const fn on(kind: ResourceType, need: Capability, at: Locator) -> Policy {
        Policy::Resource { kind, need, at }
    }
}

/// A route's method, path template (as axum matches it) and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub method: Method,
    pub path: String,
    pub policy: Policy,
}

/// The policies of every route, by method and path template.
#[derive(Debug, Clone, Default)]
pub struct PolicyTable {
    entries: BTreeMap<(String, String), RouteEntry>,
}

impl PolicyTable {
    /// The policy of `method` on `path` (a template such as `/runs/{run_id}`).
    pub fn get(&self, method: &Method, path: &str) -> Option<&Policy> {
        // A HEAD request is served by the GET route.
        let method = if method == Method::HEAD { &Method::GET } else { method };
        self.entries.get(&(method.as_str().to_owned(), path.to_owned())).map(|e| &e.policy)
    }

    /// Every route.
    pub fn entries(&self) -> impl Iterator<Item = &RouteEntry> {
        self.entries.values()
    }

    /// Every route as JSON: `[{"method", "path", "policy"}]`, by path then method.
    pub fn to_json(&self) -> serde_json::Value {
        let mut rows: Vec<&RouteEntry> = self.entries.values().collect();
        rows.sort_by(|a, b| (&a.path, a.method.as_str()).cmp(&(&b.path, b.method.as_str())));
        serde_json::Value::Array(
            rows.into_iter()
                .map(|e| serde_json::json!({"method": e.method.as_str(), "path": e.path, "policy": e.policy}))
                .collect(),
        )
    }

    /// Both tables' routes (the binary merges its crates' routers, and their tables).
    pub fn merge(mut self, other: PolicyTable) -> PolicyTable {
        for (key, entry) in other.entries {
            assert!(!self.entries.contains_key(&key), "route {} {} is declared twice", entry.method, entry.path);
            self.entries.insert(key, entry);
        }
        self
    }

    fn insert(&mut self, entry: RouteEntry) {
        let key = (entry.method.as_str().to_owned(), entry.path.clone());
        assert!(!self.entries.contains_key(&key), "route {} {} is declared twice", entry.method, entry.path);
        self.entries.insert(key, entry);
    }
}

/// A router under construction whose every route carries its policy.
pub struct Routes<S> {
    entries: Vec<(RouteEntry, MethodRouter<S>)>,
}

impl<S> Clone for Routes<S> {
    fn clone(&self) -> Self {
        Routes { entries: self.entries.clone() }
    }
}

impl<S> Default for Routes<S> {
    fn default() -> Self {
        Routes { entries: Vec::new() }
    }
}

macro_rules! method {
    ($name:ident, $method:expr, $routing:path) => {
        /// Adds the route with its policy.
        pub fn $name<H, T>(self, path: &str, handler: H, policy: Policy) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            self.add($method, path, $routing(handler), policy)
        }
    };
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Routes::default()
    }

    fn add(mut self, method: Method, path: &str, handler: MethodRouter<S>, policy: Policy) -> Self {
        self.entries.push((RouteEntry { method, path: path.to_owned(), policy }, handler));
        self
    }

    method!(get, Method::GET, axum::routing::get);
    method!(post, Method::POST, axum::routing::post);
    method!(put, Method::PUT, axum::routing::put);
    method!(patch, Method::PATCH, axum::routing::patch);
    method!(delete, Method::DELETE, axum::routing::delete);

    /// `other`'s routes under `prefix`.
    pub fn nest(mut self, prefix: &str, other: Routes<S>) -> Self {
        for (mut entry, handler) in other.entries {
            entry.path = format!("{prefix}{}", entry.path);
            self.entries.push((entry, handler));
        }
        self
    }

    /// The router and its policies.
    pub fn build(self) -> (Router<S>, PolicyTable) {
        let mut router = Router::new();
        let mut table = PolicyTable::default();
        for (entry, handler) in self.entries {
            let path = entry.path.clone();
            table.insert(entry);
            router = router.route(&path, handler);
        }
        (router, table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_router_has_one_policy_per_method_and_path() {
        let routes: Routes<()> = Routes::new()
            .get("/things", || async { "list" }, Policy::Authenticated(Capability::Read))
            .post("/things", || async { "made" }, Policy::Create { kind: ResourceType::Dataset, id_field: "name" })
            .nest(
                "/api",
                Routes::new().get("/health", || async { "OK" }, Policy::Public).delete(
                    "/things/{name}",
                    || async { "gone" },
                    Policy::on(ResourceType::Dataset, Capability::Delete, Locator::Path("name")),
                ),
            );
        let (_router, table) = routes.build();
        assert_eq!(table.entries().count(), 4);
        assert_eq!(table.get(&Method::GET, "/api/health"), Some(&Policy::Public));
        assert_eq!(table.get(&Method::HEAD, "/api/health"), Some(&Policy::Public));
        assert!(matches!(table.get(&Method::DELETE, "/api/things/{name}"), Some(Policy::Resource { .. })));
        assert_eq!(table.get(&Method::PUT, "/things"), None);
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_route_declared_twice_is_refused() {
        let routes: Routes<()> =
            Routes::new().get("/x", || async { "a" }, Policy::Public).get("/x", || async { "b" }, Policy::Admin);
        let _ = routes.build();
    }
}
