//! Shipyard's data layer: everything that reads a table and says something about it.
//!
//! - [`table`]: CSV and Parquet files as streams of Arrow batches, with clear errors.
//! - [`profile`]: per column summaries in one pass, exact when small, sketched when large,
//!   mergeable.
//! - [`suite`]: expectation suites (YAML), inferred from profiles, validated in one pass.
//! - [`drift`]: column and dataset drift as Evidently decides it; [`stats`]: the two-sample
//!   statistics (Kolmogorov-Smirnov, chi-square, z, Wasserstein, Jensen-Shannon, PSI, KL) whose
//!   numbers equal scipy's; [`columns`]: column values gathered for them.
//! - [`report`]: self-contained HTML reports; [`digest`]: SHA-256 of files;
//!   [`mlflow_schema`]: a table's schema as MLflow records a dataset's.
//!
//! This crate knows nothing of the metadata store, the server or the CLI; dataset versions are
//! recorded by the store and resolved by the CLI, which hand this crate plain files.

pub mod columns;
pub mod digest;
pub mod drift;
pub mod error;
pub mod mlflow_schema;
pub mod profile;
pub mod report;
pub mod stats;
pub mod suite;
pub mod table;
