//! Shipyard's training layer: tabular models trained natively, evaluated with metrics equal to
//! scikit-learn's.
//!
//! - [`frame`]: features and target decoded from Arrow record batches; the task.
//! - [`split`]: seeded (stratified) train/test splits and k-fold partitions.
//! - [`params`]: model kinds, their parameters, defaults and ranges.
//! - [`encode`]: input handling stored in models (category order, imputation, one-hot, scaling).
//! - [`binning`], [`tree`], [`ensemble`]: histogram trees, forests and gradient boosting.
//! - [`lbfgs`], [`linear`]: logistic and ridge regression.
//! - [`model`]: the saved model, training dispatch and prediction.
//! - [`evaluate`]: held-out metrics and per-row latency.
//! - [`onnx`]: export to ONNX (standard and `ai.onnx.ml` operators).
//! - [`metrics`]: evaluation metrics, checked against scikit-learn on committed fixtures.
//! - [`artifacts`]: the model directory (MLflow's layout) and evaluation plots a run stores.
//!
//! No IO, no async, no tracking: the CLI reads data and records runs around these.

pub mod artifacts;
pub mod binning;
pub mod encode;
pub mod ensemble;
pub mod error;
pub mod evaluate;
pub mod frame;
pub mod lbfgs;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod params;
pub mod split;
pub mod tree;

pub use error::{Result, TrainError};
pub use model::{Control, Model, Predictions};
