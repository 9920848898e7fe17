//! Shipyard's training layer.
//!
//! - [`metrics`]: evaluation metrics (classification and regression) defined as scikit-learn
//!   defines them, checked against it on committed fixtures.
//!
//! Models and the `shipyard train` command build on these in the training issue.

pub mod metrics;
