//! Shipyard's inference engine: load a model by URI and predict.
//!
//! - [`bench`]: measured latency and throughput of a loaded model on sample rows.
//! - [`fetch`]: model URIs (`models:/NAME/VERSION`, `models:/NAME@ALIAS`, `runs:/ID/PATH`,
//!   local paths) and copying a model's files out of the store.
//! - [`model`]: a loaded model of any flavor (`shipyard`, `onnx`, a bare `.onnx` file), its
//!   input columns from the MLflow signature, and prediction on Arrow record batches.
//! - [`scorer`]: a model as promotion gates see it, whatever engine runs it.
//! - [`onnx`]: the native ONNX engine (standard and ONNX-ML operators, tree ensembles compiled
//!   into a flat layout), equal to onnxruntime on the models converters produce.
//!
//! Prediction is synchronous CPU work: async callers run it on a blocking thread or the rayon
//! pool, never on the reactor.

pub mod bench;
pub mod fetch;
pub mod model;
pub mod onnx;
pub mod scorer;

pub use fetch::{FetchError, ModelUri};
pub use model::{
    EngineChoice, GraphOutput, GraphOutputs, InputColumn, Inputs, LoadError, LoadedModel, ModelFile, Output,
    OutputSpec, PredictError, PythonFlavor, SignatureKind,
};
pub use scorer::Scorer;
