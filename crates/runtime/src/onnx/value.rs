//! Values that flow along the edges of an ONNX graph: dense tensors of the element types
//! tabular models use, and the `seq(map)` that `ZipMap` produces.

use std::borrow::Cow;

use shipyard_core::onnx_proto::{TensorProto, data_type};

/// The element types the native engine computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F64,
    I64,
    I32,
    Bool,
    Str,
}

impl ElemType {
    /// The type of an ONNX `TensorProto.DataType` code, if the engine supports it.
    pub fn from_onnx(code: i32) -> Option<ElemType> {
        Some(match code {
            data_type::FLOAT => ElemType::F32,
            data_type::DOUBLE => ElemType::F64,
            data_type::INT64 => ElemType::I64,
            data_type::INT32 => ElemType::I32,
            data_type::BOOL => ElemType::Bool,
            data_type::STRING => ElemType::Str,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "float",
            ElemType::F64 => "double",
            ElemType::I64 => "int64",
            ElemType::I32 => "int32",
            ElemType::Bool => "bool",
            ElemType::Str => "string",
        }
    }

    /// The Open Inference Protocol's (Triton's) name for the type.
    pub fn oip_name(self) -> &'static str {
        match self {
            ElemType::F32 => "FP32",
            ElemType::F64 => "FP64",
            ElemType::I64 => "INT64",
            ElemType::I32 => "INT32",
            ElemType::Bool => "BOOL",
            ElemType::Str => "BYTES",
        }
    }
}

/// The name of an ONNX element type code, for messages about unsupported types.
pub fn onnx_type_name(code: i32) -> &'static str {
    match code {
        data_type::FLOAT => "float",
        data_type::UINT8 => "uint8",
        data_type::INT8 => "int8",
        data_type::UINT16 => "uint16",
        data_type::INT16 => "int16",
        data_type::INT32 => "int32",
        data_type::INT64 => "int64",
        data_type::STRING => "string",
        data_type::BOOL => "bool",
        data_type::FLOAT16 => "float16",
        data_type::DOUBLE => "double",
        data_type::UINT32 => "uint32",
        data_type::UINT64 => "uint64",
        _ => "an unknown type",
    }
}

/// The most elements one tensor may hold (2^31): a shape beyond it, from a malformed model or
/// input, is an error rather than an allocation that aborts the process.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// The element count of `shape`, if it stays within [`MAX_ELEMENTS`].
pub fn element_count(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("shape {shape:?} is too large (more than {MAX_ELEMENTS} elements)"))
}

/// A tensor's elements, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem_type(&self) -> ElemType {
        match self {
            Data::F32(_) => ElemType::F32,
            Data::F64(_) => ElemType::F64,
            Data::I64(_) => ElemType::I64,
            Data::I32(_) => ElemType::I32,
            Data::Bool(_) => ElemType::Bool,
            Data::Str(_) => ElemType::Str,
        }
    }

    /// The elements at `indices`, in that order.
    pub fn gather(&self, indices: impl Iterator<Item = usize> + Clone) -> Data {
        match self {
            Data::F32(v) => Data::F32(indices.map(|i| v[i]).collect()),
            Data::F64(v) => Data::F64(indices.map(|i| v[i]).collect()),
            Data::I64(v) => Data::I64(indices.map(|i| v[i]).collect()),
            Data::I32(v) => Data::I32(indices.map(|i| v[i]).collect()),
            Data::Bool(v) => Data::Bool(indices.map(|i| v[i]).collect()),
            Data::Str(v) => Data::Str(indices.map(|i| v[i].clone()).collect()),
        }
    }

    /// Several tensors' elements one after another; all must have this type.
    pub fn concat<'a>(ty: ElemType, parts: impl Iterator<Item = &'a Data>) -> Option<Data> {
        let mut out = Data::empty(ty);
        for part in parts {
            match (&mut out, part) {
                (Data::F32(o), Data::F32(v)) => o.extend_from_slice(v),
                (Data::F64(o), Data::F64(v)) => o.extend_from_slice(v),
                (Data::I64(o), Data::I64(v)) => o.extend_from_slice(v),
                (Data::I32(o), Data::I32(v)) => o.extend_from_slice(v),
                (Data::Bool(o), Data::Bool(v)) => o.extend_from_slice(v),
                (Data::Str(o), Data::Str(v)) => o.extend_from_slice(v),
                _ => return None,
            }
        }
        Some(out)
    }

    pub fn empty(ty: ElemType) -> Data {
        match ty {
            ElemType::F32 => Data::F32(Vec::new()),
            ElemType::F64 => Data::F64(Vec::new()),
            ElemType::I64 => Data::I64(Vec::new()),
            ElemType::I32 => Data::I32(Vec::new()),
            ElemType::Bool => Data::Bool(Vec::new()),
            ElemType::Str => Data::Str(Vec::new()),
        }
    }
}

/// A dense tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new(shape, Data::F32(v))
    }

    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::new(shape, Data::I64(v))
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn elem_type(&self) -> ElemType {
        self.data.elem_type()
    }

    /// Rows and columns when the tensor is read as a matrix: a 1-D tensor is one row, a
    /// higher-rank one is `[shape[0], product of the rest]` (how the ONNX-ML operators read X).
    pub fn as_matrix(&self) -> (usize, usize) {
        match self.shape.len() {
            0 => (1, 1),
            1 => (1, self.shape[0]),
            _ => (self.shape[0], self.shape[1..].iter().product()),
        }
    }

    /// The elements as `f32`, converting numeric types (what ONNX-ML operators do with X).
    pub fn to_f32(&self) -> Result<Cow<'_, [f32]>, String> {
        Ok(match &self.data {
            Data::F32(v) => Cow::Borrowed(v),
            Data::F64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
            Data::I64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
            Data::I32(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
            Data::Bool(v) => Cow::Owned(v.iter().map(|&x| f32::from(u8::from(x))).collect()),
            Data::Str(_) => return Err("expected a numeric tensor, got strings".into()),
        })
    }

    /// The elements as `i64` (integers as they are, floats truncated).
    pub fn to_i64(&self) -> Result<Cow<'_, [i64]>, String> {
        Ok(match &self.data {
            Data::I64(v) => Cow::Borrowed(v),
            Data::I32(v) => Cow::Owned(v.iter().map(|&x| i64::from(x)).collect()),
            Data::F32(v) => Cow::Owned(v.iter().map(|&x| x as i64).collect()),
            Data::F64(v) => Cow::Owned(v.iter().map(|&x| x as i64).collect()),
            Data::Bool(v) => Cow::Owned(v.iter().map(|&x| i64::from(x)).collect()),
            Data::Str(_) => return Err("expected an integer tensor, got strings".into()),
        })
    }

    /// Decodes an initializer or attribute tensor.
    pub fn from_proto(t: &TensorProto) -> Result<Tensor, String> {
        if t.data_location == 1 || !t.external_data.is_empty() {
            return Err(format!("tensor {:?} keeps its data in an external file, which is not supported", t.name));
        }
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("tensor {:?} has a negative dimension", t.name)))
            .collect::<Result<_, _>>()?;
        let n = element_count(&shape).map_err(|e| format!("tensor {:?}: {e}", t.name))?;
        let raw = &t.raw_data;
        let data = match t.data_type {
            data_type::FLOAT if !raw.is_empty() => {
                Data::F32(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            data_type::FLOAT => Data::F32(t.float_data.clone()),
            data_type::DOUBLE if !raw.is_empty() => Data::F64(
                raw.chunks_exact(8)
                    .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            data_type::DOUBLE => Data::F64(t.double_data.clone()),
            data_type::INT64 if !raw.is_empty() => Data::I64(
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            data_type::INT64 => Data::I64(t.int64_data.clone()),
            data_type::INT32 if !raw.is_empty() => {
                Data::I32(raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            data_type::INT32 => Data::I32(t.int32_data.clone()),
            data_type::BOOL if !raw.is_empty() => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
            data_type::BOOL => Data::Bool(t.int32_data.iter().map(|&b| b != 0).collect()),
            data_type::STRING => Data::Str(
                t.string_data
                    .iter()
                    .map(|s| {
                        String::from_utf8(s.clone()).map_err(|_| format!("tensor {:?} holds non-UTF-8 text", t.name))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            // Small integer types are widened; converters emit them for shapes and masks.
            data_type::UINT8 | data_type::INT8 | data_type::INT16 | data_type::UINT16 if raw.is_empty() => {
                Data::I64(t.int32_data.iter().map(|&x| i64::from(x)).collect())
            }
            data_type::UINT8 => Data::I64(raw.iter().map(|&x| i64::from(x)).collect()),
            data_type::INT8 => Data::I64(raw.iter().map(|&x| i64::from(x as i8)).collect()),
            other => {
                return Err(format!(
                    "tensor {:?} has element type {}, which is not supported",
                    t.name,
                    onnx_type_name(other)
                ));
            }
        };
        if data.len() != n {
            return Err(format!("tensor {:?} holds {} values for shape {:?}", t.name, data.len(), shape));
        }
        Ok(Tensor { shape, data })
    }
}

/// The keys of a `ZipMap` output.
#[derive(Clone, Debug, PartialEq)]
pub enum MapKeys {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl MapKeys {
    pub fn len(&self) -> usize {
        match self {
            MapKeys::Int(v) => v.len(),
            MapKeys::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys as text, for column names.
    pub fn labels(&self) -> Vec<String> {
        match self {
            MapKeys::Int(v) => v.iter().map(|k| k.to_string()).collect(),
            MapKeys::Str(v) => v.clone(),
        }
    }
}

/// A value on a graph edge.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    /// `seq(map(key, float))`, one map per row: the `[N, K]` scores keyed by `keys`.
    SeqMap {
        keys: MapKeys,
        values: Tensor,
    },
}

impl Value {
    pub fn tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            Value::SeqMap { .. } => None,
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Value {
        Value::Tensor(t)
    }
}
