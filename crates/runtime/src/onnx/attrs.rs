//! Typed access to a node's attributes, with the defaults the ONNX specification gives.

use shipyard_core::onnx_proto::{AttributeProto, NodeProto};

use super::value::Tensor;

/// A node's attributes, looked up by name.
pub struct Attrs<'a> {
    attrs: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub fn of(node: &'a NodeProto) -> Attrs<'a> {
        Attrs { attrs: &node.attribute }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).map_or_else(|| default.to_owned(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }

    pub fn floats(&self, name: &str) -> Option<&'a [f32]> {
        self.get(name).map(|a| a.floats.as_slice())
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, String> {
        match self.get(name).and_then(|a| a.t.as_ref()) {
            Some(t) => Tensor::from_proto(t).map(Some).map_err(|e| format!("attribute {name}: {e}")),
            None => Ok(None),
        }
    }

    /// A list of numbers given either as `NAME` (floats) or `NAME_as_tensor` (any float type),
    /// as `f64` so double-precision values survive.
    pub fn floats_or_tensor(&self, name: &str) -> Result<Option<Vec<f64>>, String> {
        if let Some(t) = self.tensor(&format!("{name}_as_tensor"))? {
            return match t.data {
                super::value::Data::F64(v) => Ok(Some(v)),
                super::value::Data::F32(v) => Ok(Some(v.into_iter().map(f64::from).collect())),
                _ => Err(format!("attribute {name}_as_tensor must hold floats")),
            };
        }
        Ok(self.floats(name).map(|v| v.iter().map(|&x| f64::from(x)).collect()))
    }
}
