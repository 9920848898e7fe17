//! The optional second engine: ONNX Runtime through the `ort` crate, for models with operators
//! the native engine lacks (convolutions, attention, anything a deep-learning export holds).
//!
//! The library is loaded at run time (`load-dynamic`), never linked or downloaded at build
//! time: `SHIPYARD_ONNXRUNTIME_LIB` or `ORT_DYLIB_PATH` names `libonnxruntime.so` (the pinned
//! `onnxruntime` wheel ships it as `onnxruntime/capi/libonnxruntime.so.<version>`). Without it
//! this engine is unavailable and says how to enable it. The path is checked before `ort` sees
//! it, because `ort` panics when it cannot load the library lazily.
//!
//! A session runs one call at a time (`ort`'s `run` takes `&mut self`): calls wait on a mutex.
//! Serving runs one model per worker pool, so this costs nothing there; batch scoring is one
//! caller.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};

use super::value::{Data, MapKeys, Tensor, Value};

/// Environment variables naming the ONNX Runtime library, in order of precedence.
pub const LIBRARY_VARIABLES: [&str; 2] = ["SHIPYARD_ONNXRUNTIME_LIB", "ORT_DYLIB_PATH"];

/// How to enable the engine, for messages.
pub const HOW_TO_ENABLE: &str = "set ORT_DYLIB_PATH to libonnxruntime.so (pip install onnxruntime==1.32.0 ships it as \
     site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0)";

/// The library's path, if configured.
pub fn library_path() -> Option<PathBuf> {
    LIBRARY_VARIABLES.iter().find_map(std::env::var_os).filter(|p| !p.is_empty()).map(PathBuf::from)
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn environment() -> Result<&'static ort::environment::Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let path =
                library_path().ok_or_else(|| format!("the onnxruntime engine is not available: {HOW_TO_ENABLE}"))?;
            if !path.is_file() {
                return Err(format!("the onnxruntime library {} does not exist: {HOW_TO_ENABLE}", path.display()));
            }
            let builder = ort::init_from(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
            builder.with_name("shipyard").build().map_err(|e| format!("starting onnxruntime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether the library is configured and loads.
pub fn available() -> bool {
    environment().is_ok()
}

/// A model loaded into an ONNX Runtime session.
pub struct OrtModel {
    session: Mutex<Session>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    /// Keys of `ZipMap` outputs, in the order the model declares its classes.
    class_labels: Option<MapKeys>,
}

impl OrtModel {
    /// Creates a session for the model bytes, with `threads` intra-op threads (1 by default:
    /// batch parallelism is the caller's).
    pub fn from_bytes(bytes: &[u8], threads: Option<usize>, class_labels: Option<MapKeys>) -> Result<OrtModel, String> {
        let env = environment()?;
        let builder = Session::builder(env).map_err(|e| e.to_string())?;
        let builder = builder.with_intra_threads(threads.unwrap_or(1).max(1)).map_err(|e| e.to_string())?;
        let mut builder = builder.with_inter_threads(1).map_err(|e| e.to_string())?;
        let session = builder.commit_from_memory(bytes).map_err(|e| format!("onnxruntime refused the model: {e}"))?;
        let input_names = session.inputs().iter().map(|i| i.name().to_owned()).collect();
        let output_names = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        Ok(OrtModel { session: Mutex::new(session), input_names, output_names, class_labels })
    }

    pub fn class_labels(&self) -> Option<&MapKeys> {
        self.class_labels.as_ref()
    }

    /// Runs the session on one value per graph input, in graph order; returns the outputs in
    /// graph order.
    pub fn run(&self, inputs: &[Value]) -> Result<Vec<Value>, String> {
        if inputs.len() != self.input_names.len() {
            return Err(format!("the model takes {} inputs, {} given", self.input_names.len(), inputs.len()));
        }
        let mut feeds: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (name, value) in self.input_names.iter().zip(inputs) {
            let Value::Tensor(t) = value else { return Err(format!("input {name:?} must be a tensor")) };
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            let fed: SessionInputValue<'_> = match &t.data {
                Data::F32(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(|e| e.to_string())?.into(),
                Data::F64(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(|e| e.to_string())?.into(),
                Data::I64(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(|e| e.to_string())?.into(),
                Data::I32(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(|e| e.to_string())?.into(),
                Data::Bool(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(|e| e.to_string())?.into(),
                Data::Str(v) => OrtTensor::from_string_array((shape, v.as_slice())).map_err(|e| e.to_string())?.into(),
            };
            feeds.push((std::borrow::Cow::Borrowed(name.as_str()), fed));
        }
        let mut session = self.session.lock().map_err(|_| "the onnxruntime session is poisoned".to_owned())?;
        let outputs = session.run(feeds).map_err(|e| format!("onnxruntime: {e}"))?;
        self.output_names
            .iter()
            .map(|name| {
                let v = outputs.get(name.as_str()).ok_or_else(|| format!("onnxruntime gave no output {name:?}"))?;
                self.convert(name, v)
            })
            .collect()
    }

    fn convert(&self, name: &str, v: &DynValue) -> Result<Value, String> {
        let err = |e: ort::Error| format!("output {name:?}: {e}");
        match v.dtype() {
            ValueType::Tensor { ty, .. } => {
                let (shape, data) = match ty {
                    TensorElementType::Float32 => {
                        let (s, d) = v.try_extract_tensor::<f32>().map_err(err)?;
                        (s.to_vec(), Data::F32(d.to_vec()))
                    }
                    TensorElementType::Float64 => {
                        let (s, d) = v.try_extract_tensor::<f64>().map_err(err)?;
                        (s.to_vec(), Data::F64(d.to_vec()))
                    }
                    TensorElementType::Int64 => {
                        let (s, d) = v.try_extract_tensor::<i64>().map_err(err)?;
                        (s.to_vec(), Data::I64(d.to_vec()))
                    }
                    TensorElementType::Int32 => {
                        let (s, d) = v.try_extract_tensor::<i32>().map_err(err)?;
                        (s.to_vec(), Data::I32(d.to_vec()))
                    }
                    TensorElementType::Bool => {
                        let (s, d) = v.try_extract_tensor::<bool>().map_err(err)?;
                        (s.to_vec(), Data::Bool(d.to_vec()))
                    }
                    TensorElementType::String => {
                        let (s, d) = v.try_extract_strings().map_err(err)?;
                        (s.to_vec(), Data::Str(d))
                    }
                    other => {
                        return Err(format!(
                            "output {name:?} has element type {other:?}, which Shipyard does not read"
                        ));
                    }
                };
                let shape = shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
                Ok(Value::Tensor(Tensor { shape, data }))
            }
            ValueType::Sequence(_) => self.zipmap(name, v),
            other => Err(format!("output {name:?} is a {other:?}, which Shipyard does not read")),
        }
    }

    /// A `ZipMap` output back into rows of scores in the model's class order.
    fn zipmap(&self, name: &str, v: &DynValue) -> Result<Value, String> {
        let keys =
            self.class_labels.clone().ok_or_else(|| format!("output {name:?} is a sequence Shipyard cannot read"))?;
        let maps =
            v.try_extract_sequence::<ort::value::DynMapValueType>().map_err(|e| format!("output {name:?}: {e}"))?;
        let k = keys.len();
        let mut scores = Vec::with_capacity(maps.len() * k);
        for m in &maps {
            match &keys {
                MapKeys::Int(labels) => {
                    let map = m.try_extract_map::<i64, f32>().map_err(|e| format!("output {name:?}: {e}"))?;
                    scores.extend(labels.iter().map(|l| map.get(l).copied().unwrap_or(0.0)));
                }
                MapKeys::Str(labels) => {
                    let map = m.try_extract_map::<String, f32>().map_err(|e| format!("output {name:?}: {e}"))?;
                    scores.extend(labels.iter().map(|l| map.get(l).copied().unwrap_or(0.0)));
                }
            }
        }
        Ok(Value::SeqMap { keys, values: Tensor::f32(vec![maps.len(), k], scores) })
    }
}
