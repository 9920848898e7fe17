//! Shipyard's storage: the metadata store and the artifact store.
//!
//! - [`db`]: connection to SQLite (embedded default) or PostgreSQL through sqlx, the two
//!   dialects, write transactions.
//! - [`migrations`]: the versioned schema, applied at start.
//! - [`tracking`]: experiments, runs, metrics, params, tags, run inputs.
//! - [`deployments`]: named traffic policies over registered versions.
//! - [`datasets`]: named, numbered, content-addressed dataset versions.
//! - [`search`]: run and experiment searches, translated to SQL over indexed columns.
//! - [`overview`]: summaries for the web UI (run counts, last activity, the keys runs use).
//! - [`logged_models`]: MLflow 3 logged models.
//! - [`registry`]: registered models, versions, stages, tags and aliases.
//! - [`promotion`]: the history of alias moves, serialized promotion and rollback.
//! - [`rollout`]: serving processes' reports of what they applied; rollout status and waits.
//! - [`monitoring`]: the prediction log, ground truth, monitor configurations and evaluations,
//!   alerts.
//! - [`secrets`]: secrets a server's replicas share, made once.
//! - [`identity`]: users, API tokens (digests), roles and their permissions.
//! - [`artifacts`]: files in a local folder or a cloud bucket, with atomic writes, streaming and
//!   path safety.
//!
//! The store knows nothing of HTTP or JSON requests: it takes and returns the entities of
//! `shipyard-core` and reports [`shipyard_core::Error`].

pub mod artifacts;
pub mod datasets;
pub mod db;
pub mod deployments;
pub mod identity;
pub mod logged_models;
mod migrations;
pub mod monitoring;
pub mod overview;
pub mod promotion;
pub mod registry;
pub mod rollout;
pub mod search;
pub mod secrets;
pub mod series;
mod sql;
pub mod tracking;

pub use artifacts::ArtifactStore;
pub use db::{Database, DatabaseUri, Dialect};
