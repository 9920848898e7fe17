//! Promotion gates: what a model version must show before an alias (`production`) moves to it.
//!
//! The seed's `ModelValidator` blocks a model below a minimum accuracy or above a maximum
//! inference time. A gate policy ([`policy::GatePolicy`], YAML, `docs/promotion.md`) generalises
//! it to six kinds of check, each optional:
//! - thresholds on metrics logged on the version's run;
//! - batch-1 inference latency p99, measured by running the loaded candidate;
//! - no data drift between the training data and the evaluation data (`shipyard-data`'s tests);
//! - not worse than the current champion on the same evaluation rows, by more than a tolerance;
//! - fairness across the groups of a sensitive column ([`fairness`]);
//! - an input signature the champion's clients can keep sending ([`signature`]).
//!
//! [`gates::evaluate`] takes what the caller gathered ([`gates::Evidence`]: loaded models, the
//! run's metrics, evaluation rows, the drift reference) and returns a [`gates::GateReport`]
//! with the observed value, bound and verdict of every check. A check that cannot be evaluated
//! (a metric never logged, no evaluation data) fails: gates fail closed. This crate does no
//! IO: the CLI fetches models and data, stores the report and moves the alias
//! (`shipyard_store::promotion`).

pub mod fairness;
pub mod gates;
pub mod policy;
pub mod signature;

pub use gates::{Check, Evidence, GateReport, evaluate};
pub use policy::{GatePolicy, PolicyError};
