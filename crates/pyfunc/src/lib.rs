//! Python models: MLflow `python_function` models (scikit-learn pickles, custom
//! `mlflow.pyfunc.PythonModel`s, any flavor with a Python loader) served by a supervised pool of
//! worker processes.
//!
//! Why processes, not Python embedded in Shipyard: one interpreter means one GIL for every model
//! and one set of package versions for all of them, while pickles need the versions they were
//! saved with; a crash, an out-of-memory kill or code run by unpickling would take the server
//! (and its database credentials) with it. See `../shared/anchors/pyfunc-research.md` §4.7.
//!
//! - [`pool`]: the workers of one model version, their queue and their supervision.
//! - [`frame`]: the socket protocol (frames, JSON headers, Arrow IPC).
//! - [`versions`]: whether an environment can safely load a model's pickle.
//! - [`env`]: a model's own environment, built with `uv` from what MLflow logged with it.
//! - [`convert`]: a scikit-learn model converted to ONNX by skl2onnx in the model's interpreter,
//!   with the rows and scikit-learn's own answers to verify the conversion on.
//!
//! This crate knows nothing of HTTP or of the store: it takes a model folder and requests, and
//! gives answers as Arrow columns or JSON.

pub mod convert;
pub mod env;
pub mod frame;
pub mod pool;
pub mod versions;

pub use pool::{Answer, ModelInfo, Pool, PoolError, PoolSettings, PoolStats, Request};
pub use versions::Saved;
