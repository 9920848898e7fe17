//! Shipyard's pipelines: the seed's `MLOpsPipeline` (validate data, train, validate the model,
//! deploy, monitor) as a declared, cached, recorded sequence of steps.
//!
//! - [`spec`]: the pipeline file (YAML), its step kinds with their inputs and outputs, `${step.key}`
//!   references between steps, and the dependency order.
//! - [`runner`]: runs a pipeline: one parent run, one child run per step, a content hash of each
//!   step's resolved inputs that lets an unchanged step reuse its recorded outputs, and the seed's
//!   `pipeline_results` summary.
//! - [`tracker`]: where the runs are recorded: the stores in this process, or (implemented by
//!   the binary) a tracking server.
//!
//! This crate does no step's work itself: an [`runner::Executor`] does (the `shipyard` binary's
//! runs each step as one of its own commands), so the runner is tested here with a fake one.

pub mod runner;
pub mod spec;
pub mod tracker;

pub use runner::{Executor, Options, PipelineSummary, StepFailure, StepResult, StepSummary};
pub use spec::{Pipeline, ResolvedStep, SpecError, StepAction};
pub use tracker::{RunReader, Stores, Tracker};
