//! Element-wise operators: arithmetic and comparisons with numpy broadcasting, activations,
//! `Where`, `IsNaN`, `Clip`.

use super::{BuildError, Built, NodeCtx, Op, input, optional_input};
use crate::onnx::value::{Data, Tensor, Value};

/// The shape two shapes broadcast to.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for k in 0..rank {
        let da = if k + a.len() >= rank { a[k + a.len() - rank] } else { 1 };
        let db = if k + b.len() >= rank { b[k + b.len() - rank] } else { 1 };
        out[k] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    crate::onnx::value::element_count(&out)?;
    Ok(out)
}

/// For each element of `out` (row-major), the index of the element of a tensor of shape
/// `shape` that broadcasts to it.
fn broadcast_indices(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let rank = out.len();
    // Stride of each output axis in the input (0 where the input is broadcast).
    let mut strides = vec![0usize; rank];
    let mut s = 1;
    for k in (0..rank).rev() {
        let d = if k + shape.len() >= rank { shape[k + shape.len() - rank] } else { 1 };
        strides[k] = if d == 1 { 0 } else { s };
        s *= d;
    }
    let mut idx = vec![0usize; rank];
    let mut result = Vec::with_capacity(n);
    let mut offset = 0usize;
    for _ in 0..n {
        result.push(offset);
        for k in (0..rank).rev() {
            idx[k] += 1;
            offset += strides[k];
            if idx[k] < out[k] {
                break;
            }
            offset -= strides[k] * idx[k];
            idx[k] = 0;
        }
    }
    result
}

/// Applies `f` to the broadcast pairs of `a` and `b`.
pub fn zip_broadcast<T: Copy, U>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    f: impl Fn(T, T) -> U,
) -> Result<(Vec<usize>, Vec<U>), String> {
    if ash == bsh {
        return Ok((ash.to_vec(), a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()));
    }
    let shape = broadcast_shape(ash, bsh)?;
    let n: usize = shape.iter().product();
    // Leading 1s do not change which elements repeat: [1, 32] repeats along rows as [32] does.
    let trim = |s: &[usize]| -> Vec<usize> { s.iter().copied().skip_while(|&d| d == 1).collect() };
    let (ash, bsh) = (&trim(ash)[..], &trim(bsh)[..]);
    let out = if b.len() == 1 && a.len() == n {
        let y = b[0];
        a.iter().map(|&x| f(x, y)).collect()
    } else if a.len() == 1 && b.len() == n {
        let x = a[0];
        b.iter().map(|&y| f(x, y)).collect()
    } else if a.len() == n && bsh.len() <= ash.len() && ash.ends_with(bsh) && !b.is_empty() {
        // b repeats along the leading axes (a row vector added to a matrix).
        let mut out = Vec::with_capacity(n);
        for row in a.chunks_exact(b.len()) {
            out.extend(row.iter().zip(b).map(|(&x, &y)| f(x, y)));
        }
        out
    } else if b.len() == n && ash.len() <= bsh.len() && bsh.ends_with(ash) && !a.is_empty() {
        let mut out = Vec::with_capacity(n);
        for row in b.chunks_exact(a.len()) {
            out.extend(a.iter().zip(row).map(|(&x, &y)| f(x, y)));
        }
        out
    } else {
        let ia = broadcast_indices(ash, &shape);
        let ib = broadcast_indices(bsh, &shape);
        ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])).collect()
    };
    Ok((shape, out))
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Mod,
}

#[derive(Clone, Copy)]
enum Compare {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

#[derive(Clone, Copy)]
enum Logic {
    And,
    Or,
    Xor,
}

macro_rules! float_arith {
    ($op:expr, $x:expr, $y:expr) => {
        match $op {
            Arith::Add => $x + $y,
            Arith::Sub => $x - $y,
            Arith::Mul => $x * $y,
            Arith::Div => $x / $y,
            Arith::Pow => $x.powf($y),
            // ONNX Max/Min propagate NaN.
            Arith::Max => {
                if $x.is_nan() || $y.is_nan() {
                    $x + $y
                } else if $x >= $y {
                    $x
                } else {
                    $y
                }
            }
            Arith::Min => {
                if $x.is_nan() || $y.is_nan() {
                    $x + $y
                } else if $x <= $y {
                    $x
                } else {
                    $y
                }
            }
            Arith::Mod => $x % $y,
        }
    };
}

macro_rules! int_arith {
    ($op:expr, $x:expr, $y:expr) => {
        match $op {
            Arith::Add => $x.wrapping_add($y),
            Arith::Sub => $x.wrapping_sub($y),
            Arith::Mul => $x.wrapping_mul($y),
            Arith::Div => $x.checked_div($y).unwrap_or(0),
            Arith::Pow => $x.wrapping_pow(u32::try_from($y).unwrap_or(0)),
            Arith::Max => $x.max($y),
            Arith::Min => $x.min($y),
            Arith::Mod => $x.checked_rem($y).unwrap_or(0),
        }
    };
}

fn arith(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let (shape, data) = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let (s, v) = zip_broadcast(x, &a.shape, y, &b.shape, |p: f32, q: f32| float_arith!(op, p, q))?;
            (s, Data::F32(v))
        }
        (Data::F64(x), Data::F64(y)) => {
            let (s, v) = zip_broadcast(x, &a.shape, y, &b.shape, |p: f64, q: f64| float_arith!(op, p, q))?;
            (s, Data::F64(v))
        }
        (Data::I64(x), Data::I64(y)) => {
            let (s, v) = zip_broadcast(x, &a.shape, y, &b.shape, |p: i64, q: i64| int_arith!(op, p, q))?;
            (s, Data::I64(v))
        }
        (Data::I32(x), Data::I32(y)) => {
            let (s, v) = zip_broadcast(x, &a.shape, y, &b.shape, |p: i32, q: i32| int_arith!(op, p, q))?;
            (s, Data::I32(v))
        }
        // Pow allows an exponent of another numeric type.
        (Data::F32(_), _) if matches!(op, Arith::Pow) => {
            let e = Tensor::f32(b.shape.clone(), b.to_f32()?.into_owned());
            return arith(op, a, &e);
        }
        (Data::F64(_), _) if matches!(op, Arith::Pow) => {
            let e = Tensor::new(b.shape.clone(), Data::F64(b.to_f32()?.iter().map(|&x| f64::from(x)).collect()));
            return arith(op, a, &e);
        }
        (x, y) => {
            return Err(format!(
                "operands must have the same numeric type, got {} and {}",
                x.elem_type().name(),
                y.elem_type().name()
            ));
        }
    };
    Ok(Tensor::new(shape, data))
}

fn compare(op: Compare, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    fn cmp<T: PartialOrd + Copy>(op: Compare) -> impl Fn(T, T) -> bool {
        move |x: T, y: T| match op {
            Compare::Equal => x == y,
            Compare::Less => x < y,
            Compare::Greater => x > y,
            Compare::LessOrEqual => x <= y,
            Compare::GreaterOrEqual => x >= y,
        }
    }
    let (shape, v) = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => zip_broadcast(x, &a.shape, y, &b.shape, cmp(op))?,
        (Data::F64(x), Data::F64(y)) => zip_broadcast(x, &a.shape, y, &b.shape, cmp(op))?,
        (Data::I64(x), Data::I64(y)) => zip_broadcast(x, &a.shape, y, &b.shape, cmp(op))?,
        (Data::I32(x), Data::I32(y)) => zip_broadcast(x, &a.shape, y, &b.shape, cmp(op))?,
        (Data::Bool(x), Data::Bool(y)) => zip_broadcast(x, &a.shape, y, &b.shape, cmp(op))?,
        (Data::Str(x), Data::Str(y)) => {
            let xr: Vec<&str> = x.iter().map(String::as_str).collect();
            let yr: Vec<&str> = y.iter().map(String::as_str).collect();
            zip_broadcast(&xr, &a.shape, &yr, &b.shape, cmp(op))?
        }
        (x, y) => {
            return Err(format!(
                "operands must have the same type, got {} and {}",
                x.elem_type().name(),
                y.elem_type().name()
            ));
        }
    };
    Ok(Tensor::new(shape, Data::Bool(v)))
}

struct Binary {
    kind: BinaryKind,
}

#[derive(Clone, Copy)]
enum BinaryKind {
    Arith(Arith),
    Compare(Compare),
    Logic(Logic),
}

impl Op for Binary {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let a = input(inputs, 0)?;
        let b = input(inputs, 1)?;
        let t = match self.kind {
            BinaryKind::Arith(op) => arith(op, a, b)?,
            BinaryKind::Compare(op) => compare(op, a, b)?,
            BinaryKind::Logic(op) => match (&a.data, &b.data) {
                (Data::Bool(x), Data::Bool(y)) => {
                    let (s, v) = zip_broadcast(x, &a.shape, y, &b.shape, |p, q| match op {
                        Logic::And => p && q,
                        Logic::Or => p || q,
                        Logic::Xor => p ^ q,
                    })?;
                    Tensor::new(s, Data::Bool(v))
                }
                _ => return Err("operands must be bool".into()),
            },
        };
        Ok(vec![t.into()])
    }
}

/// `Sum`, `Max`, `Min`, `Mean` over any number of inputs.
struct Variadic {
    op: Arith,
    mean: bool,
}

impl Op for Variadic {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let mut acc = input(inputs, 0)?.clone();
        for i in 1..inputs.len() {
            acc = arith(self.op, &acc, input(inputs, i)?)?;
        }
        if self.mean && inputs.len() > 1 {
            let n = inputs.len();
            acc = match acc.data {
                Data::F32(v) => Tensor::f32(acc.shape, v.into_iter().map(|x| x / n as f32).collect()),
                Data::F64(v) => Tensor::new(acc.shape, Data::F64(v.into_iter().map(|x| x / n as f64).collect())),
                _ => return Err("Mean needs float inputs".into()),
            };
        }
        Ok(vec![acc.into()])
    }
}

#[derive(Clone, Copy)]
enum UnaryKind {
    Abs,
    Neg,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Relu,
    Sigmoid,
    Tanh,
    Sign,
    Softplus,
    Softsign,
    Sin,
    Cos,
    LeakyRelu(f32),
    Elu(f32),
    Selu(f32, f32),
    HardSigmoid(f32, f32),
    ThresholdedRelu(f32),
}

macro_rules! unary_float {
    ($k:expr, $x:expr, $t:ty) => {{
        let x: $t = $x;
        match $k {
            UnaryKind::Abs => x.abs(),
            UnaryKind::Neg => -x,
            UnaryKind::Exp => x.exp(),
            UnaryKind::Log => x.ln(),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Reciprocal => 1.0 / x,
            UnaryKind::Floor => x.floor(),
            UnaryKind::Ceil => x.ceil(),
            UnaryKind::Round => x.round_ties_even(),
            UnaryKind::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            UnaryKind::Sigmoid => {
                // Evaluated on |x| so exp never overflows.
                let e = (-x.abs()).exp();
                if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
            }
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            UnaryKind::Softplus => {
                if x > 0.0 {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            }
            UnaryKind::Softsign => x / (1.0 + x.abs()),
            UnaryKind::Sin => x.sin(),
            UnaryKind::Cos => x.cos(),
            UnaryKind::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    x * a as $t
                }
            }
            UnaryKind::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a as $t * (x.exp() - 1.0)
                }
            }
            UnaryKind::Selu(a, g) => {
                if x > 0.0 {
                    g as $t * x
                } else {
                    g as $t * (a as $t * x.exp() - a as $t)
                }
            }
            UnaryKind::HardSigmoid(a, b) => (a as $t * x + b as $t).clamp(0.0, 1.0),
            UnaryKind::ThresholdedRelu(a) => {
                if x > a as $t {
                    x
                } else {
                    0.0
                }
            }
        }
    }};
}

struct Unary {
    kind: UnaryKind,
}

impl Op for Unary {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let k = self.kind;
        let data = match &t.data {
            // The common activations get their own loops (vectorised); the rest dispatch per value.
            Data::F32(v) if matches!(k, UnaryKind::Relu) => Data::F32(v.iter().map(|&x| x.max(0.0)).collect()),
            Data::F32(v) if matches!(k, UnaryKind::Sigmoid) => {
                Data::F32(v.iter().map(|&x| unary_float!(UnaryKind::Sigmoid, x, f32)).collect())
            }
            Data::F32(v) if matches!(k, UnaryKind::Tanh) => Data::F32(v.iter().map(|&x| x.tanh()).collect()),
            Data::F32(v) => Data::F32(v.iter().map(|&x| unary_float!(k, x, f32)).collect()),
            Data::F64(v) => Data::F64(v.iter().map(|&x| unary_float!(k, x, f64)).collect()),
            Data::I64(v) => Data::I64(match k {
                UnaryKind::Abs => v.iter().map(|x| x.wrapping_abs()).collect(),
                UnaryKind::Neg => v.iter().map(|x| x.wrapping_neg()).collect(),
                UnaryKind::Relu => v.iter().map(|&x| x.max(0)).collect(),
                UnaryKind::Sign => v.iter().map(|x| x.signum()).collect(),
                _ => return Err("this operator needs float input".into()),
            }),
            Data::I32(v) => Data::I32(match k {
                UnaryKind::Abs => v.iter().map(|x| x.wrapping_abs()).collect(),
                UnaryKind::Neg => v.iter().map(|x| x.wrapping_neg()).collect(),
                UnaryKind::Relu => v.iter().map(|&x| x.max(0)).collect(),
                UnaryKind::Sign => v.iter().map(|x| x.signum()).collect(),
                _ => return Err("this operator needs float input".into()),
            }),
            other => return Err(format!("this operator needs numeric input, got {}", other.elem_type().name())),
        };
        Ok(vec![Tensor::new(t.shape.clone(), data).into()])
    }
}

/// `IsNaN`, `IsInf`, `Not`.
struct Predicate {
    kind: &'static str,
    detect_positive: bool,
    detect_negative: bool,
}

impl Op for Predicate {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let v: Vec<bool> = match (self.kind, &t.data) {
            ("IsNaN", Data::F32(v)) => v.iter().map(|x| x.is_nan()).collect(),
            ("IsNaN", Data::F64(v)) => v.iter().map(|x| x.is_nan()).collect(),
            ("IsInf", Data::F32(v)) => v
                .iter()
                .map(|&x| {
                    (x == f32::INFINITY && self.detect_positive) || (x == f32::NEG_INFINITY && self.detect_negative)
                })
                .collect(),
            ("IsInf", Data::F64(v)) => v
                .iter()
                .map(|&x| {
                    (x == f64::INFINITY && self.detect_positive) || (x == f64::NEG_INFINITY && self.detect_negative)
                })
                .collect(),
            ("Not", Data::Bool(v)) => v.iter().map(|x| !x).collect(),
            (k, d) => return Err(format!("{k} does not take {} input", d.elem_type().name())),
        };
        Ok(vec![Tensor::new(t.shape.clone(), Data::Bool(v)).into()])
    }
}

/// `Where(condition, x, y)`.
struct Where;

impl Op for Where {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let c = input(inputs, 0)?;
        let x = input(inputs, 1)?;
        let y = input(inputs, 2)?;
        let Data::Bool(cond) = &c.data else { return Err("the condition must be bool".into()) };
        let shape = broadcast_shape(&broadcast_shape(&c.shape, &x.shape)?, &y.shape)?;
        let ic = broadcast_indices(&c.shape, &shape);
        let ix = broadcast_indices(&x.shape, &shape);
        let iy = broadcast_indices(&y.shape, &shape);
        macro_rules! pick {
            ($a:expr, $b:expr, $ctor:path) => {
                $ctor((0..ic.len()).map(|k| if cond[ic[k]] { $a[ix[k]].clone() } else { $b[iy[k]].clone() }).collect())
            };
        }
        let data = match (&x.data, &y.data) {
            (Data::F32(a), Data::F32(b)) => pick!(a, b, Data::F32),
            (Data::F64(a), Data::F64(b)) => pick!(a, b, Data::F64),
            (Data::I64(a), Data::I64(b)) => pick!(a, b, Data::I64),
            (Data::I32(a), Data::I32(b)) => pick!(a, b, Data::I32),
            (Data::Bool(a), Data::Bool(b)) => pick!(a, b, Data::Bool),
            (Data::Str(a), Data::Str(b)) => pick!(a, b, Data::Str),
            _ => return Err("x and y must have the same type".into()),
        };
        Ok(vec![Tensor::new(shape, data).into()])
    }
}

/// `Clip(x, min, max)`: bounds from inputs (opset 11+) or attributes (before).
struct Clip {
    min: Option<f32>,
    max: Option<f32>,
}

impl Op for Clip {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let bound = |i: usize, attr: Option<f32>| -> Result<Option<f64>, String> {
            Ok(match optional_input(inputs, i)? {
                Some(b) => b.to_f32()?.first().map(|&x| f64::from(x)),
                None => attr.map(f64::from),
            })
        };
        let lo = bound(1, self.min)?;
        let hi = bound(2, self.max)?;
        macro_rules! clip {
            ($v:expr, $t:ty, $ctor:path) => {
                $ctor(
                    $v.iter()
                        .map(|&x| {
                            let mut y = x;
                            if let Some(l) = lo {
                                if y < l as $t {
                                    y = l as $t;
                                }
                            }
                            if let Some(h) = hi {
                                if y > h as $t {
                                    y = h as $t;
                                }
                            }
                            y
                        })
                        .collect(),
                )
            };
        }
        let data = match &t.data {
            Data::F32(v) => clip!(v, f32, Data::F32),
            Data::F64(v) => clip!(v, f64, Data::F64),
            Data::I64(v) => clip!(v, i64, Data::I64),
            Data::I32(v) => clip!(v, i32, Data::I32),
            _ => return Err("Clip needs numeric input".into()),
        };
        Ok(vec![Tensor::new(t.shape.clone(), data).into()])
    }
}

pub fn build(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let binary = |kind| -> Built { Ok(Box::new(Binary { kind })) };
    let unary = |kind| -> Built { Ok(Box::new(Unary { kind })) };
    match ctx.node.op_type.as_str() {
        "Add" => binary(BinaryKind::Arith(Arith::Add)),
        "Sub" => binary(BinaryKind::Arith(Arith::Sub)),
        "Mul" => binary(BinaryKind::Arith(Arith::Mul)),
        "Div" => binary(BinaryKind::Arith(Arith::Div)),
        "Pow" => binary(BinaryKind::Arith(Arith::Pow)),
        "Mod" => binary(BinaryKind::Arith(Arith::Mod)),
        "Equal" => binary(BinaryKind::Compare(Compare::Equal)),
        "Less" => binary(BinaryKind::Compare(Compare::Less)),
        "Greater" => binary(BinaryKind::Compare(Compare::Greater)),
        "LessOrEqual" => binary(BinaryKind::Compare(Compare::LessOrEqual)),
        "GreaterOrEqual" => binary(BinaryKind::Compare(Compare::GreaterOrEqual)),
        "And" => binary(BinaryKind::Logic(Logic::And)),
        "Or" => binary(BinaryKind::Logic(Logic::Or)),
        "Xor" => binary(BinaryKind::Logic(Logic::Xor)),
        "Sum" => Ok(Box::new(Variadic { op: Arith::Add, mean: false })),
        "Mean" => Ok(Box::new(Variadic { op: Arith::Add, mean: true })),
        "Max" => Ok(Box::new(Variadic { op: Arith::Max, mean: false })),
        "Min" => Ok(Box::new(Variadic { op: Arith::Min, mean: false })),
        "Abs" => unary(UnaryKind::Abs),
        "Neg" => unary(UnaryKind::Neg),
        "Exp" => unary(UnaryKind::Exp),
        "Log" => unary(UnaryKind::Log),
        "Sqrt" => unary(UnaryKind::Sqrt),
        "Reciprocal" => unary(UnaryKind::Reciprocal),
        "Floor" => unary(UnaryKind::Floor),
        "Ceil" => unary(UnaryKind::Ceil),
        "Round" => unary(UnaryKind::Round),
        "Relu" => unary(UnaryKind::Relu),
        "Sigmoid" => unary(UnaryKind::Sigmoid),
        "Tanh" => unary(UnaryKind::Tanh),
        "Sign" => unary(UnaryKind::Sign),
        "Softplus" => unary(UnaryKind::Softplus),
        "Softsign" => unary(UnaryKind::Softsign),
        "Sin" => unary(UnaryKind::Sin),
        "Cos" => unary(UnaryKind::Cos),
        "LeakyRelu" => unary(UnaryKind::LeakyRelu(a.float("alpha", 0.01))),
        "Elu" => unary(UnaryKind::Elu(a.float("alpha", 1.0))),
        "Selu" => unary(UnaryKind::Selu(a.float("alpha", 1.673_263_2), a.float("gamma", 1.050_701))),
        "HardSigmoid" => unary(UnaryKind::HardSigmoid(a.float("alpha", 0.2), a.float("beta", 0.5))),
        "ThresholdedRelu" => unary(UnaryKind::ThresholdedRelu(a.float("alpha", 1.0))),
        "IsNaN" | "IsInf" | "Not" => Ok(Box::new(Predicate {
            kind: match ctx.node.op_type.as_str() {
                "IsNaN" => "IsNaN",
                "IsInf" => "IsInf",
                _ => "Not",
            },
            detect_positive: a.int("detect_positive", 1) != 0,
            detect_negative: a.int("detect_negative", 1) != 0,
        })),
        "Where" => Ok(Box::new(Where)),
        "Clip" => Ok(Box::new(Clip {
            min: a.has("min").then(|| a.float("min", f32::MIN)),
            max: a.has("max").then(|| a.float("max", f32::MAX)),
        })),
        _ => Err(BuildError::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        let (s, v) = zip_broadcast(&[1, 2, 3, 4, 5, 6], &[2, 3], &[10, 20, 30], &[3], |a, b| a + b).unwrap();
        assert_eq!((s, v), (vec![2, 3], vec![11, 22, 33, 14, 25, 36]));
        let (s, v) = zip_broadcast(&[1, 2], &[2, 1], &[10, 20, 30], &[1, 3], |a, b| a + b).unwrap();
        assert_eq!((s, v), (vec![2, 3], vec![11, 21, 31, 12, 22, 32]));
        assert!(zip_broadcast(&[1, 2], &[2], &[1, 2, 3], &[3], |a, b| a + b).is_err());
    }
}
