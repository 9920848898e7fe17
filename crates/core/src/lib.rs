//! Shipyard's core: the domain types every other crate speaks.
//!
//! - [`entities`]: experiments, runs, metrics, logged models, registered models and versions,
//!   shaped as MLflow puts them on the wire.
//! - [`deployment`]: deployments and their traffic policies (arms, weights, shadow, stickiness).
//! - [`rollout`]: what each serving process has applied, and whether a change is live.
//! - [`monitoring`]: logged predictions, ground truth, monitor evaluations, alerts.
//! - [`error`]: the one error type and its mapping to MLflow error codes and HTTP statuses.
//! - [`filter`]: the search-filter and order-by language of MLflow's search endpoints.
//! - [`validation`]: the limits and naming rules MLflow enforces on what clients log.
//! - [`artifact_path`]: artifact paths that cannot escape their root.
//! - [`display`]: numbers as people read them (whole numbers without decimals).
//! - [`onnx_proto`]: the ONNX file format's protobuf messages (export and inference).
//!
//! This crate does no I/O. It must never depend on the store, the server or the CLI.

pub mod artifact_path;
pub mod deployment;
pub mod display;
pub mod entities;
pub mod error;
pub mod filter;
pub mod monitoring;
pub mod onnx_proto;
pub mod rollout;
pub mod validation;

pub use error::{Error, ErrorCode, Result};

/// The MLflow version whose REST API and scoring protocol Shipyard speaks (what `/version`
/// answers).
pub const MLFLOW_COMPAT_VERSION: &str = "3.17.2";
