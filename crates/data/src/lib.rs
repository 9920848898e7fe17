//! Shipyard's data layer: everything that reads a table and says something about it.
//!
//! - [`stats`]: two-sample statistics (Kolmogorov-Smirnov, chi-square, z, Wasserstein,
//!   Jensen-Shannon, PSI, KL) whose numbers equal scipy's.
//!
//! This crate knows nothing of the metadata store, the server or the CLI; dataset versions are
//! recorded by the store and resolved by the CLI, which hand this crate plain files.

pub mod columns;
pub mod drift;
pub mod error;
pub mod profile;
pub mod report;
pub mod stats;
pub mod suite;
pub mod table;
