//! Shipyard's production monitoring: what happens to a model after it is deployed.
//!
//! - [`config`]: a deployment's monitor configuration (YAML): the window, the schedule, the
//!   sensitive column, alert rules, webhooks.
//! - [`window`]: a window of the prediction log folded into every monitor value (data and
//!   prediction drift, prediction statistics, performance, fairness, latency, errors).
//! - [`intervals`]: confidence bounds on estimates (Wilson, bootstrap, order statistics).
//! - [`rules`]: alert rules judged over consecutive evaluations, with a cooldown; an estimate
//!   is judged by its bound.
//! - [`report`]: the self-contained HTML report.
//! - [`runner`]: evaluation against the store, alerts, webhooks and actions (rollback, canary
//!   to zero), on demand and on a schedule.
//! - [`webhook`]: deliveries: public addresses only unless allow-listed, no redirects, signed.
//!
//! The serving path writes the log (`shipyard_serving::prediction_log`); this crate reads it.
//! Statistics come from `shipyard-data` (drift), `shipyard-train` (performance) and
//! `shipyard-promotion` (fairness), so a monitor's number equals the gate's and the
//! reference library's.

pub mod config;
pub mod intervals;
pub mod report;
pub mod rules;
pub mod runner;
pub mod webhook;
pub mod window;

pub use config::{MonitorConfig, Window};
pub use runner::{Evaluation, Monitor, Observer, Quiet, Retrainer, configure};
