//! Neural-network and reduction operators: `MatMul` and `Gemm` (on `ndarray`, whose
//! `matrixmultiply` kernels pick AVX/FMA at run time), `Softmax`, `LogSoftmax`, `ArgMax`,
//! `ArgMin` and the `Reduce*` family.

use ndarray::{ArrayView2, Axis, Slice};
use rayon::prelude::*;

use super::{BuildError, Built, NodeCtx, Op, axis, input, optional_input};
use crate::onnx::value::{Data, Tensor, Value};

/// Rows above which a matrix product is split across the thread pool.
const PARALLEL_ROWS: usize = 1024;

/// `a [m, k] x b [k, n]`, row-parallel for tall `a`.
pub fn matmul_f32(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Vec<f32> {
    let m = a.nrows();
    if m < PARALLEL_ROWS {
        return into_vec(a.dot(&b));
    }
    let chunk = m.div_ceil(rayon::current_num_threads().max(1)).max(256);
    let parts: Vec<Vec<f32>> = (0..m)
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| into_vec(a.slice_axis(Axis(0), Slice::from(start..(start + chunk).min(m))).dot(&b)))
        .collect();
    parts.concat()
}

fn matmul_f64(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Vec<f64> {
    into_vec(a.dot(&b))
}

/// A product's elements, row-major, without copying them one by one.
fn into_vec<T: Clone>(a: ndarray::Array2<T>) -> Vec<T> {
    if a.is_standard_layout() {
        let (v, offset) = a.into_raw_vec_and_offset();
        if offset.unwrap_or(0) == 0 {
            return v;
        }
        return v[offset.unwrap_or(0)..].to_vec();
    }
    a.iter().cloned().collect()
}

fn view<T>(shape: (usize, usize), v: &[T]) -> Result<ArrayView2<'_, T>, String> {
    ArrayView2::from_shape(shape, v).map_err(|e| e.to_string())
}

/// `MatMul`: `[..., m, k] x [k, n]` or two equally batched operands; 1-D operands are promoted
/// as numpy does.
struct MatMul;
impl Op for MatMul {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let a = input(inputs, 0)?;
        let b = input(inputs, 1)?;
        let (ash, bsh) = (a.shape.clone(), b.shape.clone());
        // ONNX's MatMul, like numpy's, takes no scalars.
        if ash.is_empty() || bsh.is_empty() {
            return Err(format!("cannot multiply shapes {ash:?} and {bsh:?}: a scalar is not a matrix"));
        }
        let a2: Vec<usize> = if ash.len() == 1 { vec![1, ash[0]] } else { ash.clone() };
        let b2: Vec<usize> = if bsh.len() == 1 { vec![bsh[0], 1] } else { bsh.clone() };
        let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
        let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
        if k != kb {
            return Err(format!("cannot multiply shapes {ash:?} and {bsh:?}"));
        }
        let batch_a: usize = a2[..a2.len() - 2].iter().product();
        let batch_b: usize = b2[..b2.len() - 2].iter().product();
        let mut shape: Vec<usize> = if b2.len() == 2 {
            a2[..a2.len() - 2].to_vec()
        } else if a2[..a2.len() - 2] == b2[..b2.len() - 2] || batch_a == 1 {
            b2[..b2.len() - 2].to_vec()
        } else {
            return Err(format!("cannot multiply shapes {ash:?} and {bsh:?}"));
        };
        if ash.len() > 1 {
            shape.push(m);
        }
        if bsh.len() > 1 {
            shape.push(n);
        }
        macro_rules! product {
            ($x:expr, $y:expr, $mm:ident, $ctor:path) => {{
                let mut out = Vec::with_capacity(batch_a.max(batch_b) * m * n);
                if batch_b == 1 {
                    // Fold the batch into the rows: one product.
                    out = $mm(view((batch_a * m, k), $x)?, view((k, n), $y)?);
                } else {
                    for i in 0..batch_b {
                        let ai = if batch_a == 1 { 0 } else { i };
                        let av = view((m, k), &$x[ai * m * k..(ai + 1) * m * k])?;
                        let bv = view((k, n), &$y[i * k * n..(i + 1) * k * n])?;
                        out.extend($mm(av, bv));
                    }
                }
                $ctor(out)
            }};
        }
        let data = match (&a.data, &b.data) {
            (Data::F32(x), Data::F32(y)) => product!(x, y, matmul_f32, Data::F32),
            (Data::F64(x), Data::F64(y)) => product!(x, y, matmul_f64, Data::F64),
            _ => return Err("MatMul needs two float or two double tensors".into()),
        };
        Ok(vec![Tensor::new(shape, data).into()])
    }
}

/// `Gemm`: `alpha * A' B' + beta * C`.
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}
impl Op for Gemm {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let a = input(inputs, 0)?;
        let b = input(inputs, 1)?;
        if a.shape.len() != 2 || b.shape.len() != 2 {
            return Err(format!("Gemm needs 2-D operands, got {:?} and {:?}", a.shape, b.shape));
        }
        let (Data::F32(x), Data::F32(y)) = (&a.data, &b.data) else {
            return Err("Gemm needs float tensors".into());
        };
        let av = view((a.shape[0], a.shape[1]), x)?;
        let bv = view((b.shape[0], b.shape[1]), y)?;
        let av = if self.trans_a { av.reversed_axes() } else { av };
        let bv = if self.trans_b { bv.reversed_axes() } else { bv };
        if av.ncols() != bv.nrows() {
            return Err(format!("cannot multiply shapes {:?} and {:?}", a.shape, b.shape));
        }
        let (m, n) = (av.nrows(), bv.ncols());
        let mut out = if av.is_standard_layout() && bv.is_standard_layout() {
            matmul_f32(av, bv)
        } else {
            let bo = bv.as_standard_layout();
            matmul_f32(av.as_standard_layout().view(), bo.view())
        };
        if self.alpha != 1.0 {
            out.iter_mut().for_each(|v| *v *= self.alpha);
        }
        if let Some(c) = optional_input(inputs, 2)?
            && self.beta != 0.0
        {
            let cv = c.to_f32()?;
            let (shape, sum) = super::math::zip_broadcast(&out, &[m, n], &cv, &c.shape, |p, q| p + self.beta * q)?;
            if shape != [m, n] {
                return Err(format!("C of shape {:?} does not broadcast to [{m}, {n}]", c.shape));
            }
            out = sum;
        }
        Ok(vec![Tensor::f32(vec![m, n], out).into()])
    }
}

/// The `(outer, dim, inner)` split of a shape around an axis.
fn around(shape: &[usize], a: usize) -> (usize, usize, usize) {
    (shape[..a].iter().product(), shape[a], shape[a + 1..].iter().product())
}

struct Softmax {
    axis: i64,
    /// Opset < 13: the input is read as a matrix `[prod(shape[..axis]), prod(shape[axis..])]`.
    coerce_2d: bool,
    log: bool,
}
impl Op for Softmax {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let a = axis(self.axis, t.shape.len())?;
        let (outer, dim, inner) = if self.coerce_2d {
            (t.shape[..a].iter().product(), t.shape[a..].iter().product(), 1)
        } else {
            around(&t.shape, a)
        };
        macro_rules! softmax {
            ($v:expr, $ty:ty, $ctor:path) => {{
                let mut out = $v.clone();
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |d: usize| (o * dim + d) * inner + i;
                        let max = (0..dim).map(|d| $v[at(d)]).fold(<$ty>::NEG_INFINITY, <$ty>::max);
                        let mut sum: $ty = 0.0;
                        for d in 0..dim {
                            let e = ($v[at(d)] - max).exp();
                            out[at(d)] = e;
                            sum += e;
                        }
                        for d in 0..dim {
                            out[at(d)] = if self.log { $v[at(d)] - max - sum.ln() } else { out[at(d)] / sum };
                        }
                    }
                }
                $ctor(out)
            }};
        }
        let data = match &t.data {
            Data::F32(v) => softmax!(v, f32, Data::F32),
            Data::F64(v) => softmax!(v, f64, Data::F64),
            _ => return Err("Softmax needs float input".into()),
        };
        Ok(vec![Tensor::new(t.shape.clone(), data).into()])
    }
}

struct ArgExtreme {
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
}
impl Op for ArgExtreme {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let a = axis(self.axis, t.shape.len())?;
        let (outer, dim, inner) = around(&t.shape, a);
        let v: Vec<f64> = match &t.data {
            Data::F64(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            _ => t.to_f32()?.iter().map(|&x| f64::from(x)).collect(),
        };
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0usize;
                for d in 1..dim {
                    let (x, y) = (v[(o * dim + d) * inner + i], v[(o * dim + best) * inner + i]);
                    let better = if self.max { x > y || (self.last && x == y) } else { x < y || (self.last && x == y) };
                    if better {
                        best = d;
                    }
                }
                out.push(best as i64);
            }
        }
        let mut shape = t.shape.clone();
        if self.keepdims {
            shape[a] = 1;
        } else {
            shape.remove(a);
        }
        Ok(vec![Tensor::i64(shape, out).into()])
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSumExp,
}

struct Reduce {
    kind: Reduction,
    axes: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}
impl Op for Reduce {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let rank = t.shape.len();
        let axes = match optional_input(inputs, 1)? {
            Some(a) => Some(a.to_i64()?.into_owned()),
            None => self.axes.clone(),
        };
        let axes: Vec<usize> = match axes {
            Some(a) if !a.is_empty() => a.iter().map(|&x| axis(x, rank)).collect::<Result<_, _>>()?,
            _ if self.noop_with_empty_axes => return Ok(vec![t.clone().into()]),
            _ => (0..rank).collect(),
        };
        let kept: Vec<usize> =
            t.shape.iter().enumerate().map(|(k, &d)| if axes.contains(&k) { 1 } else { d }).collect();
        let n_out: usize = kept.iter().product();
        let count = t.len() / n_out.max(1);
        let v: Vec<f64> = match &t.data {
            Data::F64(v) => v.clone(),
            _ => t.to_f32()?.iter().map(|&x| f64::from(x)).collect(),
        };
        let init = match self.kind {
            Reduction::Max => f64::NEG_INFINITY,
            Reduction::Min => f64::INFINITY,
            Reduction::Prod => 1.0,
            _ => 0.0,
        };
        // LogSumExp is stabilised by the maximum of its group.
        let mut max = vec![f64::NEG_INFINITY; n_out];
        let mut acc = vec![init; n_out];
        let mut idx = vec![0usize; rank];
        let out_index = |idx: &[usize]| idx.iter().zip(&kept).fold(0, |o, (&i, &d)| o * d + if d == 1 { 0 } else { i });
        for pass in 0..(if self.kind == Reduction::LogSumExp { 2 } else { 1 }) {
            idx.iter_mut().for_each(|i| *i = 0);
            for &x in &v {
                let o = out_index(&idx);
                if self.kind == Reduction::LogSumExp && pass == 0 {
                    max[o] = max[o].max(x);
                } else {
                    acc[o] = match self.kind {
                        Reduction::Sum | Reduction::Mean => acc[o] + x,
                        Reduction::Max => acc[o].max(x),
                        Reduction::Min => acc[o].min(x),
                        Reduction::Prod => acc[o] * x,
                        Reduction::L1 => acc[o] + x.abs(),
                        Reduction::L2 | Reduction::SumSquare => acc[o] + x * x,
                        Reduction::LogSumExp => acc[o] + (x - max[o]).exp(),
                    };
                }
                for k in (0..rank).rev() {
                    idx[k] += 1;
                    if idx[k] < t.shape[k] {
                        break;
                    }
                    idx[k] = 0;
                }
            }
        }
        for (o, a) in acc.iter_mut().enumerate() {
            *a = match self.kind {
                Reduction::Mean => *a / count as f64,
                Reduction::L2 => a.sqrt(),
                Reduction::LogSumExp => a.ln() + max[o],
                _ => *a,
            };
        }
        let shape: Vec<usize> = if self.keepdims {
            kept
        } else {
            t.shape.iter().enumerate().filter(|(k, _)| !axes.contains(k)).map(|(_, &d)| d).collect()
        };
        let data = match &t.data {
            Data::F64(_) => Data::F64(acc),
            Data::I64(_) => Data::I64(acc.iter().map(|&x| x as i64).collect()),
            Data::I32(_) => Data::I32(acc.iter().map(|&x| x as i32).collect()),
            _ => Data::F32(acc.iter().map(|&x| x as f32).collect()),
        };
        Ok(vec![Tensor::new(shape, data).into()])
    }
}

pub fn build(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let op = ctx.node.op_type.as_str();
    Ok(match op {
        "MatMul" => Box::new(MatMul),
        "Gemm" => Box::new(Gemm {
            alpha: a.float("alpha", 1.0),
            beta: a.float("beta", 1.0),
            trans_a: a.int("transA", 0) != 0,
            trans_b: a.int("transB", 0) != 0,
        }),
        "Softmax" | "LogSoftmax" => Box::new(Softmax {
            axis: a.int("axis", if ctx.opset >= 13 { -1 } else { 1 }),
            coerce_2d: ctx.opset < 13,
            log: op == "LogSoftmax",
        }),
        "ArgMax" | "ArgMin" => Box::new(ArgExtreme {
            max: op == "ArgMax",
            axis: a.int("axis", 0),
            keepdims: a.int("keepdims", 1) != 0,
            last: a.int("select_last_index", 0) != 0,
        }),
        _ => {
            let kind = match op {
                "ReduceSum" => Reduction::Sum,
                "ReduceMean" => Reduction::Mean,
                "ReduceMax" => Reduction::Max,
                "ReduceMin" => Reduction::Min,
                "ReduceProd" => Reduction::Prod,
                "ReduceL1" => Reduction::L1,
                "ReduceL2" => Reduction::L2,
                "ReduceSumSquare" => Reduction::SumSquare,
                "ReduceLogSumExp" => Reduction::LogSumExp,
                _ => return Err(BuildError::Unsupported),
            };
            Box::new(Reduce {
                kind,
                axes: a.ints("axes").map(<[i64]>::to_vec),
                keepdims: a.int("keepdims", 1) != 0,
                noop_with_empty_axes: a.int("noop_with_empty_axes", 0) != 0,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_and_softmax() {
        let a = Value::from(Tensor::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        let b = Value::from(Tensor::f32(vec![2, 1], vec![1.0, 1.0]));
        let out = MatMul.run(&[Some(&a), Some(&b)]).unwrap().remove(0);
        assert_eq!(out, Value::from(Tensor::f32(vec![2, 1], vec![3.0, 7.0])));
        let sm = Softmax { axis: -1, coerce_2d: false, log: false };
        let x = Value::from(Tensor::f32(vec![1, 2], vec![0.0, 0.0]));
        assert_eq!(sm.run(&[Some(&x)]).unwrap().remove(0), Value::from(Tensor::f32(vec![1, 2], vec![0.5, 0.5])));
    }

    #[test]
    fn reduce_over_one_axis() {
        let r = Reduce { kind: Reduction::Sum, axes: Some(vec![1]), keepdims: false, noop_with_empty_axes: false };
        let x = Value::from(Tensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(r.run(&[Some(&x)]).unwrap().remove(0), Value::from(Tensor::f32(vec![2], vec![6.0, 15.0])));
    }
}
