//! Layout operators: type casts, constants, reshapes, concatenation, transposition, gathers and
//! slices. They move elements and never compute with them.

use super::math::broadcast_shape;
use super::{BuildError, Built, NodeCtx, Op, axis, input, optional_input};
use crate::onnx::value::{Data, ElemType, Tensor, Value, element_count};

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// Reads an integer list from a tensor (shapes, axes, indices).
fn ints(t: &Tensor) -> Result<Vec<i64>, String> {
    Ok(t.to_i64()?.into_owned())
}

/// The output element of each position in a tensor of shape `out`, where `source(index)` maps
/// a multi-index of the output to a flat index of the input.
fn remap(out: &[usize], mut source: impl FnMut(&[usize]) -> usize) -> Vec<usize> {
    let n: usize = out.iter().product();
    let mut idx = vec![0usize; out.len()];
    let mut result = Vec::with_capacity(n);
    for _ in 0..n {
        result.push(source(&idx));
        for k in (0..out.len()).rev() {
            idx[k] += 1;
            if idx[k] < out[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    result
}

pub fn cast(t: &Tensor, to: ElemType) -> Result<Tensor, String> {
    macro_rules! from_numeric {
        ($v:expr) => {
            match to {
                ElemType::F32 => Data::F32($v.iter().map(|&x| x as f32).collect()),
                ElemType::F64 => Data::F64($v.iter().map(|&x| x as f64).collect()),
                ElemType::I64 => Data::I64($v.iter().map(|&x| x as i64).collect()),
                ElemType::I32 => Data::I32($v.iter().map(|&x| x as i32).collect()),
                ElemType::Bool => Data::Bool($v.iter().map(|&x| x as f64 != 0.0).collect()),
                ElemType::Str => Data::Str($v.iter().map(|x| x.to_string()).collect()),
            }
        };
    }
    let data = match &t.data {
        Data::F32(v) => from_numeric!(v),
        Data::F64(v) => from_numeric!(v),
        Data::I64(v) => from_numeric!(v),
        Data::I32(v) => from_numeric!(v),
        Data::Bool(v) => {
            let as_u8: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
            match to {
                ElemType::Bool => Data::Bool(v.clone()),
                ElemType::Str => Data::Str(v.iter().map(|&b| if b { "1" } else { "0" }.to_owned()).collect()),
                _ => from_numeric!(as_u8),
            }
        }
        Data::Str(v) => match to {
            ElemType::Str => Data::Str(v.clone()),
            _ => {
                let parsed: Vec<f64> = v
                    .iter()
                    .map(|s| {
                        let s = s.trim();
                        match s.to_ascii_lowercase().as_str() {
                            "nan" => Ok(f64::NAN),
                            "inf" | "infinity" | "+inf" => Ok(f64::INFINITY),
                            "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
                            _ => s.parse::<f64>().map_err(|_| format!("cannot cast {s:?} to a number")),
                        }
                    })
                    .collect::<Result<_, _>>()?;
                match to {
                    ElemType::F64 => Data::F64(parsed),
                    _ => from_numeric!(parsed),
                }
            }
        },
    };
    Ok(Tensor::new(t.shape.clone(), data))
}

struct Identity;
impl Op for Identity {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        match inputs.first().copied().flatten() {
            Some(v) => Ok(vec![v.clone()]),
            None => Err("input 0 is missing".into()),
        }
    }
}

struct Cast {
    to: Option<ElemType>,
}
impl Op for Cast {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let to = match self.to {
            Some(to) => to,
            None => input(inputs, 1)?.elem_type(), // CastLike
        };
        Ok(vec![cast(t, to)?.into()])
    }
}

struct Constant(Tensor);
impl Op for Constant {
    fn run(&self, _: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        Ok(vec![self.0.clone().into()])
    }
}

fn constant(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let t = if let Some(t) = a.tensor("value")? {
        t
    } else if a.has("value_float") {
        Tensor::f32(vec![], vec![a.float("value_float", 0.0)])
    } else if let Some(v) = a.floats("value_floats") {
        Tensor::f32(vec![v.len()], v.to_vec())
    } else if a.has("value_int") {
        Tensor::i64(vec![], vec![a.int("value_int", 0)])
    } else if let Some(v) = a.ints("value_ints") {
        Tensor::i64(vec![v.len()], v.to_vec())
    } else if a.has("value_string") {
        Tensor::new(vec![], Data::Str(vec![a.string("value_string", "")]))
    } else if let Some(v) = a.strings("value_strings") {
        Tensor::new(vec![v.len()], Data::Str(v))
    } else {
        return Err(BuildError::Invalid("Constant has no value attribute".into()));
    };
    Ok(Box::new(Constant(t)))
}

struct ConstantOfShape(Tensor);
impl Op for ConstantOfShape {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let shape: Vec<usize> = ints(input(inputs, 0)?)?
            .into_iter()
            .map(|d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
            .collect::<Result<_, _>>()?;
        let n = element_count(&shape)?;
        Ok(vec![Tensor::new(shape, self.0.data.gather(std::iter::repeat_n(0, n))).into()])
    }
}

/// Gives a tensor a new shape without moving elements.
fn reshaped(t: &Tensor, shape: Vec<usize>) -> Result<Value, String> {
    if shape.iter().product::<usize>() != t.len() {
        return Err(format!("cannot reshape {:?} ({} values) to {:?}", t.shape, t.len(), shape));
    }
    Ok(Tensor::new(shape, t.data.clone()).into())
}

struct Reshape {
    allow_zero: bool,
}
impl Op for Reshape {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let spec = ints(input(inputs, 1)?)?;
        let mut shape = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (k, &d) in spec.iter().enumerate() {
            shape.push(match d {
                -1 if infer.is_none() => {
                    infer = Some(k);
                    1
                }
                0 if !self.allow_zero => {
                    *t.shape.get(k).ok_or_else(|| format!("shape {spec:?}: no dimension {k} to copy"))?
                }
                d if d >= 0 => d as usize,
                _ => return Err(format!("invalid target shape {spec:?}")),
            });
        }
        if let Some(k) = infer {
            let known: usize = shape.iter().product();
            if known == 0 || t.len() % known != 0 {
                return Err(format!("cannot reshape {:?} to {spec:?}", t.shape));
            }
            shape[k] = t.len() / known;
        }
        Ok(vec![reshaped(t, shape)?])
    }
}

struct Flatten {
    axis: i64,
}
impl Op for Flatten {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let a = if self.axis == t.shape.len() as i64 { t.shape.len() } else { axis(self.axis, t.shape.len())? };
        let outer: usize = t.shape[..a].iter().product();
        Ok(vec![reshaped(t, vec![outer, t.len() / outer.max(1)])?])
    }
}

struct Squeeze {
    axes: Option<Vec<i64>>,
}
impl Op for Squeeze {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let axes = match optional_input(inputs, 1)? {
            Some(a) => Some(ints(a)?),
            None => self.axes.clone(),
        };
        let shape = match axes {
            None => t.shape.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let axes: Vec<usize> = axes.iter().map(|&a| axis(a, t.shape.len())).collect::<Result<_, _>>()?;
                for &a in &axes {
                    if t.shape[a] != 1 {
                        return Err(format!("cannot squeeze axis {a} of shape {:?}", t.shape));
                    }
                }
                t.shape.iter().enumerate().filter(|(k, _)| !axes.contains(k)).map(|(_, &d)| d).collect()
            }
        };
        Ok(vec![reshaped(t, shape)?])
    }
}

struct Unsqueeze {
    axes: Option<Vec<i64>>,
}
impl Op for Unsqueeze {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let axes = match optional_input(inputs, 1)? {
            Some(a) => ints(a)?,
            None => self.axes.clone().ok_or("Unsqueeze needs axes")?,
        };
        let rank = t.shape.len() + axes.len();
        let mut axes: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?;
        axes.sort_unstable();
        let mut shape = t.shape.clone();
        for a in axes {
            shape.insert(a, 1);
        }
        Ok(vec![reshaped(t, shape)?])
    }
}

struct Concat {
    axis: i64,
}
impl Op for Concat {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let parts: Vec<&Tensor> = (0..inputs.len()).map(|i| input(inputs, i)).collect::<Result<_, _>>()?;
        let first = parts.first().ok_or("Concat needs inputs")?;
        let rank = first.shape.len();
        let a = axis(self.axis, rank)?;
        let ty = first.elem_type();
        for p in &parts {
            if p.shape.len() != rank
                || p.elem_type() != ty
                || p.shape.iter().enumerate().any(|(k, &d)| k != a && d != first.shape[k])
            {
                return Err(format!("cannot concatenate shapes {:?} and {:?} on axis {a}", first.shape, p.shape));
            }
        }
        let outer: usize = first.shape[..a].iter().product();
        let mut shape = first.shape.clone();
        shape[a] = parts.iter().map(|p| p.shape[a]).sum();
        // Each part contributes a contiguous block of `shape[a] * inner` values per outer index.
        let blocks: Vec<usize> = parts.iter().map(|p| p.shape[a..].iter().product()).collect();
        let data = if outer == 1 {
            Data::concat(ty, parts.iter().map(|p| &p.data)).ok_or("mixed element types")?
        } else {
            let mut index = Vec::with_capacity(shape.iter().product());
            let all = Data::concat(ty, parts.iter().map(|p| &p.data)).ok_or("mixed element types")?;
            // Where each part starts in `all`.
            let starts: Vec<usize> = parts
                .iter()
                .scan(0, |acc, p| {
                    let o = *acc;
                    *acc += p.len();
                    Some(o)
                })
                .collect();
            for o in 0..outer {
                for (k, &b) in blocks.iter().enumerate() {
                    index.extend((0..b).map(|i| starts[k] + o * b + i));
                }
            }
            all.gather(index.into_iter())
        };
        Ok(vec![Tensor::new(shape, data).into()])
    }
}

struct Transpose {
    perm: Option<Vec<i64>>,
}
impl Op for Transpose {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let rank = t.shape.len();
        let perm: Vec<usize> = match &self.perm {
            Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?,
            None => (0..rank).rev().collect(),
        };
        if perm.len() != rank {
            return Err(format!("perm {perm:?} does not match rank {rank}"));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
        let s = strides(&t.shape);
        let index = remap(&shape, |idx| idx.iter().zip(&perm).map(|(&i, &p)| i * s[p]).sum());
        Ok(vec![Tensor::new(shape, t.data.gather(index.into_iter())).into()])
    }
}

struct ShapeOp {
    start: i64,
    end: Option<i64>,
}
impl Op for ShapeOp {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let r = t.shape.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        let dims: Vec<i64> = t.shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
        Ok(vec![Tensor::i64(vec![dims.len()], dims).into()])
    }
}

struct Size;
impl Op for Size {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        Ok(vec![Tensor::i64(vec![], vec![input(inputs, 0)?.len() as i64]).into()])
    }
}

struct Gather {
    axis: i64,
}
impl Op for Gather {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let ix = input(inputs, 1)?;
        let a = axis(self.axis, t.shape.len())?;
        let dim = t.shape[a];
        let indices: Vec<usize> = ints(ix)?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + dim as i64 } else { i };
                usize::try_from(j)
                    .ok()
                    .filter(|&j| j < dim)
                    .ok_or_else(|| format!("index {i} is out of range for axis of size {dim}"))
            })
            .collect::<Result<_, _>>()?;
        let outer: usize = t.shape[..a].iter().product();
        let inner: usize = t.shape[a + 1..].iter().product();
        let mut shape = t.shape[..a].to_vec();
        shape.extend_from_slice(&ix.shape);
        shape.extend_from_slice(&t.shape[a + 1..]);
        let mut index = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in &indices {
                let base = (o * dim + i) * inner;
                index.extend(base..base + inner);
            }
        }
        Ok(vec![Tensor::new(shape, t.data.gather(index.into_iter())).into()])
    }
}

/// Opset < 10 `Slice` attributes: starts, ends, axes.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

struct Slice {
    /// Opset < 10: starts, ends, axes as attributes.
    attrs: Option<SliceAttrs>,
}
impl Op for Slice {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let rank = t.shape.len();
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                ints(input(inputs, 1)?)?,
                ints(input(inputs, 2)?)?,
                optional_input(inputs, 3)?.map(ints).transpose()?,
                optional_input(inputs, 4)?.map(ints).transpose()?,
            ),
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        if ends.len() != starts.len() || axes.len() != starts.len() {
            return Err("starts, ends and axes must have the same length".into());
        }
        // Per axis: first index, step, count.
        let mut plan: Vec<(i64, i64, usize)> = t.shape.iter().map(|&d| (0, 1, d)).collect();
        for k in 0..starts.len() {
            let a = axis(axes[k], rank)?;
            let d = t.shape[a] as i64;
            let step = steps.as_ref().map_or(1, |s| s[k]);
            if step == 0 {
                return Err("slice step cannot be 0".into());
            }
            let norm = |v: i64| if v < 0 { v + d } else { v };
            let (start, end) = if step > 0 {
                (norm(starts[k]).clamp(0, d), norm(ends[k]).clamp(0, d))
            } else {
                (norm(starts[k]).clamp(-1, d - 1), norm(ends[k]).clamp(-1, d - 1))
            };
            let count = if step > 0 {
                ((end - start).max(0) + step - 1) / step
            } else {
                ((start - end).max(0) + (-step) - 1) / (-step)
            };
            plan[a] = (start, step, count as usize);
        }
        let shape: Vec<usize> = plan.iter().map(|p| p.2).collect();
        let s = strides(&t.shape);
        let index = remap(&shape, |idx| {
            idx.iter()
                .zip(&plan)
                .zip(&s)
                .map(|((&i, &(start, step, _)), &st)| (start + step * i as i64) as usize * st)
                .sum()
        });
        Ok(vec![Tensor::new(shape, t.data.gather(index.into_iter())).into()])
    }
}

struct Split {
    axis: i64,
    split: Option<Vec<i64>>,
    outputs: usize,
}
impl Op for Split {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let a = axis(self.axis, t.shape.len())?;
        let dim = t.shape[a];
        let sizes: Vec<usize> = match optional_input(inputs, 1)?.map(ints).transpose()?.or_else(|| self.split.clone()) {
            Some(s) => s.into_iter().map(|x| x.max(0) as usize).collect(),
            None => {
                let n = self.outputs.max(1);
                let each = dim.div_ceil(n);
                (0..n).map(|k| each.min(dim.saturating_sub(k * each))).collect()
            }
        };
        if sizes.iter().sum::<usize>() != dim {
            return Err(format!("split sizes {sizes:?} do not add up to {dim}"));
        }
        let outer: usize = t.shape[..a].iter().product();
        let inner: usize = t.shape[a + 1..].iter().product();
        let mut offset = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for size in sizes {
            let mut index = Vec::with_capacity(outer * size * inner);
            for o in 0..outer {
                let base = (o * dim + offset) * inner;
                index.extend(base..base + size * inner);
            }
            let mut shape = t.shape.clone();
            shape[a] = size;
            out.push(Tensor::new(shape, t.data.gather(index.into_iter())).into());
            offset += size;
        }
        Ok(out)
    }
}

struct Expand;
impl Op for Expand {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let target: Vec<usize> = ints(input(inputs, 1)?)?.into_iter().map(|d| d.max(0) as usize).collect();
        let shape = broadcast_shape(&t.shape, &target)?;
        element_count(&shape)?;
        let rank = shape.len();
        let s = strides(&t.shape);
        let index = remap(&shape, |idx| {
            (0..t.shape.len()).map(|k| if t.shape[k] == 1 { 0 } else { idx[k + rank - t.shape.len()] * s[k] }).sum()
        });
        Ok(vec![Tensor::new(shape, t.data.gather(index.into_iter())).into()])
    }
}

struct Tile;
impl Op for Tile {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let reps = ints(input(inputs, 1)?)?;
        if reps.len() != t.shape.len() {
            return Err("repeats must have one entry per dimension".into());
        }
        let shape: Vec<usize> = t
            .shape
            .iter()
            .zip(&reps)
            .map(|(&d, &r)| d.checked_mul(r.max(0) as usize).ok_or_else(|| "repeats are too large".to_owned()))
            .collect::<Result<_, _>>()?;
        element_count(&shape)?;
        let s = strides(&t.shape);
        let index = remap(&shape, |idx| idx.iter().enumerate().map(|(k, &i)| (i % t.shape[k]) * s[k]).sum());
        Ok(vec![Tensor::new(shape, t.data.gather(index.into_iter())).into()])
    }
}

pub fn build(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let list = |name: &str| a.ints(name).map(<[i64]>::to_vec);
    Ok(match ctx.node.op_type.as_str() {
        "Identity" => Box::new(Identity),
        "Cast" => {
            let code = a.int("to", 0) as i32;
            let to = ElemType::from_onnx(code).ok_or_else(|| {
                BuildError::Invalid(format!(
                    "casting to {} is not supported by the native engine",
                    crate::onnx::value::onnx_type_name(code)
                ))
            })?;
            Box::new(Cast { to: Some(to) })
        }
        "CastLike" => Box::new(Cast { to: None }),
        "Constant" => return constant(ctx),
        "ConstantOfShape" => {
            Box::new(ConstantOfShape(a.tensor("value")?.unwrap_or_else(|| Tensor::f32(vec![1], vec![0.0]))))
        }
        "Reshape" => Box::new(Reshape { allow_zero: a.int("allowzero", 0) != 0 }),
        "Flatten" => Box::new(Flatten { axis: a.int("axis", 1) }),
        "Squeeze" => Box::new(Squeeze { axes: list("axes") }),
        "Unsqueeze" => Box::new(Unsqueeze { axes: list("axes") }),
        "Concat" => Box::new(Concat { axis: a.int("axis", 0) }),
        "Transpose" => Box::new(Transpose { perm: list("perm") }),
        "Shape" => Box::new(ShapeOp { start: a.int("start", 0), end: a.has("end").then(|| a.int("end", 0)) }),
        "Size" => Box::new(Size),
        "Gather" => Box::new(Gather { axis: a.int("axis", 0) }),
        "Slice" => Box::new(Slice {
            attrs: (ctx.opset < 10)
                .then(|| (list("starts").unwrap_or_default(), list("ends").unwrap_or_default(), list("axes"))),
        }),
        "Split" => Box::new(Split { axis: a.int("axis", 0), split: list("split"), outputs: ctx.node.output.len() }),
        "Expand" => Box::new(Expand),
        "Tile" => Box::new(Tile),
        _ => return Err(BuildError::Unsupported),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn Op, inputs: &[Tensor]) -> Tensor {
        let values: Vec<Value> = inputs.iter().cloned().map(Value::from).collect();
        let refs: Vec<Option<&Value>> = values.iter().map(Some).collect();
        match op.run(&refs).unwrap().remove(0) {
            Value::Tensor(t) => t,
            Value::SeqMap { .. } => panic!("expected a tensor"),
        }
    }

    #[test]
    fn concat_on_the_last_axis_interleaves_rows() {
        let a = Tensor::f32(vec![2, 1], vec![1.0, 2.0]);
        let b = Tensor::f32(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]);
        let out = run(&Concat { axis: 1 }, &[a, b]);
        assert_eq!(out, Tensor::f32(vec![2, 3], vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]));
    }

    #[test]
    fn slice_with_negative_step_and_gather() {
        let t = Tensor::i64(vec![2, 3], vec![0, 1, 2, 3, 4, 5]);
        let out = run(
            &Slice { attrs: None },
            &[
                t.clone(),
                Tensor::i64(vec![1], vec![-1]),
                Tensor::i64(vec![1], vec![i64::MIN]),
                Tensor::i64(vec![1], vec![1]),
                Tensor::i64(vec![1], vec![-1]),
            ],
        );
        assert_eq!(out, Tensor::i64(vec![2, 3], vec![2, 1, 0, 5, 4, 3]));
        let out = run(&Gather { axis: 1 }, &[t, Tensor::i64(vec![2], vec![2, 0])]);
        assert_eq!(out, Tensor::i64(vec![2, 2], vec![2, 0, 5, 3]));
    }

    #[test]
    fn huge_shapes_are_errors_not_aborts() {
        let fill = ConstantOfShape(Tensor::f32(vec![1], vec![0.0]));
        let shape = Value::from(Tensor::i64(vec![2], vec![1 << 20, 1 << 20]));
        let err = fill.run(&[Some(&shape)]).expect_err("too large");
        assert!(err.contains("too large"), "{err}");
        let t = Value::from(Tensor::f32(vec![1, 1], vec![1.0]));
        let reps = Value::from(Tensor::i64(vec![2], vec![i64::MAX, 2]));
        assert!(Tile.run(&[Some(&t), Some(&reps)]).is_err());
        assert!(super::super::math::broadcast_shape(&[1 << 20, 1], &[1, 1 << 20]).is_err());
    }

    #[test]
    fn transpose_and_reshape() {
        let t = Tensor::i64(vec![2, 3], vec![0, 1, 2, 3, 4, 5]);
        let out = run(&Transpose { perm: None }, std::slice::from_ref(&t));
        assert_eq!(out, Tensor::i64(vec![3, 2], vec![0, 3, 1, 4, 2, 5]));
        let out = run(&Reshape { allow_zero: false }, &[t, Tensor::i64(vec![2], vec![-1, 1])]);
        assert_eq!(out.shape, vec![6, 1]);
    }
}
