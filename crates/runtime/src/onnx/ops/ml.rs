//! The ONNX-ML encoders, linear models and output shaping that scikit-learn, LightGBM and
//! XGBoost converters emit: `Scaler`, `Normalizer`, `Imputer`, `Binarizer`, `OneHotEncoder`,
//! `LabelEncoder`, `CategoryMapper`, `ArrayFeatureExtractor`, `FeatureVectorizer`, `ZipMap`,
//! `LinearClassifier`, `LinearRegressor`.
//!
//! Semantics follow the ONNX-ML specification and, where it is vague (a binary classifier with
//! one score column, the order of label and post-transform), onnxruntime's CPU kernels, which
//! are what converters are tested against. The fixtures in `tests/fixtures/onnx` pin both.

use std::collections::HashMap;

use super::{BuildError, Built, NodeCtx, Op, input};
use crate::onnx::value::{Data, MapKeys, Tensor, Value};

/// A post-evaluation transform of classifier and regressor scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(name: &str) -> Result<PostTransform, String> {
        Ok(match name {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => return Err(format!("unknown post_transform {other:?}")),
        })
    }
}

/// The logistic function, evaluated on |x| so it never overflows.
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// The probit (inverse normal CDF), through the same closed-form approximation of the inverse
/// error function onnxruntime uses, so results agree with it.
pub fn probit(x: f32) -> f32 {
    let y = 2.0 * x - 1.0;
    let sgn = if y < 0.0 { -1.0 } else { 1.0 };
    let w = (1.0 - y) * (1.0 + y);
    let ln = w.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * ln;
    let v2 = 1.0 / 0.147 * ln;
    let v3 = -v + (v * v - v2).sqrt();
    std::f32::consts::SQRT_2 * sgn * v3.sqrt()
}

/// Applies a transform to one row of two or more scores.
pub fn transform_row(scores: &mut [f32], post: PostTransform) {
    match post {
        PostTransform::None => {}
        PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
        PostTransform::Probit => scores.iter_mut().for_each(|s| *s = probit(*s)),
        PostTransform::Softmax => {
            let max = scores.iter().copied().fold(f32::MIN, f32::max);
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            scores.iter_mut().for_each(|s| *s /= sum);
        }
        PostTransform::SoftmaxZero => {
            // Zero scores (no vote) stay zero.
            let max = scores.iter().copied().fold(f32::MIN, f32::max);
            let exp_neg_max = (-max).exp();
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                if s.abs() > 1e-7 {
                    *s = (*s - max).exp();
                    sum += *s;
                } else {
                    *s *= exp_neg_max;
                }
            }
            scores.iter_mut().for_each(|s| *s /= sum);
        }
    }
}

/// Reads X as an `f32` matrix `[rows, cols]`.
fn matrix(t: &Tensor) -> Result<(usize, usize, std::borrow::Cow<'_, [f32]>), String> {
    let (r, c) = t.as_matrix();
    Ok((r, c, t.to_f32()?))
}

struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}
impl Op for Scaler {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let (_, c, x) = matrix(t)?;
        for (name, v) in [("offset", &self.offset), ("scale", &self.scale)] {
            if v.len() > 1 && v.len() != c {
                return Err(format!("{name} has {} values for {c} columns", v.len()));
            }
        }
        let at = |v: &[f32], j: usize| {
            if v.len() == 1 { v[0] } else { v.get(j).copied().unwrap_or(if v.is_empty() { 0.0 } else { 1.0 }) }
        };
        let off: Vec<f32> = (0..c).map(|j| if self.offset.is_empty() { 0.0 } else { at(&self.offset, j) }).collect();
        let sc: Vec<f32> = (0..c).map(|j| if self.scale.is_empty() { 1.0 } else { at(&self.scale, j) }).collect();
        let y: Vec<f32> = x.iter().enumerate().map(|(i, &v)| (v - off[i % c]) * sc[i % c]).collect();
        Ok(vec![Tensor::f32(t.shape.clone(), y).into()])
    }
}

#[derive(Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

struct Normalizer {
    norm: Norm,
}
impl Op for Normalizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let (_, c, x) = matrix(t)?;
        let mut y = x.into_owned();
        for row in y.chunks_mut(c.max(1)) {
            let d = match self.norm {
                Norm::Max => row.iter().copied().fold(f32::MIN, f32::max),
                Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            if d != 0.0 {
                row.iter_mut().for_each(|v| *v /= d);
            }
        }
        Ok(vec![Tensor::f32(t.shape.clone(), y).into()])
    }
}

struct Imputer {
    floats: Vec<f32>,
    ints: Vec<i64>,
    replaced_float: f32,
    replaced_int: i64,
}
impl Op for Imputer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let (_, c) = t.as_matrix();
        let pick = |n: usize, j: usize| if n == 1 { 0 } else { j };
        let data = match &t.data {
            Data::F32(_) | Data::F64(_) => {
                let x = t.to_f32()?;
                let n = self.floats.len();
                if n == 0 || (n > 1 && n != c) {
                    return Err(format!("imputed_value_floats has {n} values for {c} columns"));
                }
                let hit = |v: f32| if self.replaced_float.is_nan() { v.is_nan() } else { v == self.replaced_float };
                Data::F32(
                    x.iter().enumerate().map(|(i, &v)| if hit(v) { self.floats[pick(n, i % c)] } else { v }).collect(),
                )
            }
            Data::I64(_) | Data::I32(_) => {
                let x = t.to_i64()?;
                let n = self.ints.len();
                if n == 0 || (n > 1 && n != c) {
                    return Err(format!("imputed_value_int64s has {n} values for {c} columns"));
                }
                Data::I64(
                    x.iter()
                        .enumerate()
                        .map(|(i, &v)| if v == self.replaced_int { self.ints[pick(n, i % c)] } else { v })
                        .collect(),
                )
            }
            other => return Err(format!("Imputer does not take {} input", other.elem_type().name())),
        };
        Ok(vec![Tensor::new(t.shape.clone(), data).into()])
    }
}

struct Binarizer {
    threshold: f32,
}
impl Op for Binarizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let th = self.threshold;
        let data = match &t.data {
            Data::F32(v) => Data::F32(v.iter().map(|&x| if x > th { 1.0 } else { 0.0 }).collect()),
            Data::F64(v) => Data::F64(v.iter().map(|&x| if x > f64::from(th) { 1.0 } else { 0.0 }).collect()),
            Data::I64(v) => Data::I64(v.iter().map(|&x| i64::from(x as f32 > th)).collect()),
            Data::I32(v) => Data::I32(v.iter().map(|&x| i32::from(x as f32 > th)).collect()),
            other => return Err(format!("Binarizer does not take {} input", other.elem_type().name())),
        };
        Ok(vec![Tensor::new(t.shape.clone(), data).into()])
    }
}

/// Category lookups keyed by integers or strings.
enum Categories {
    Int(HashMap<i64, usize>),
    Str(HashMap<String, usize>),
}

impl Categories {
    fn len(&self) -> usize {
        match self {
            Categories::Int(m) => m.len(),
            Categories::Str(m) => m.len(),
        }
    }
}

struct OneHotEncoder {
    cats: Categories,
    zeros: bool,
}
impl Op for OneHotEncoder {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let k = self.cats.len();
        let positions: Vec<Option<usize>> = match (&self.cats, &t.data) {
            (Categories::Str(m), Data::Str(v)) => v.iter().map(|s| m.get(s).copied()).collect(),
            (Categories::Int(m), Data::Str(_)) | (Categories::Int(m), Data::Bool(_)) if m.is_empty() => vec![],
            (Categories::Int(m), _) if !matches!(t.data, Data::Str(_)) => {
                t.to_i64()?.iter().map(|x| m.get(x).copied()).collect()
            }
            _ => return Err("the input type does not match the categories".into()),
        };
        let mut y = vec![0.0f32; positions.len() * k];
        for (i, p) in positions.iter().enumerate() {
            match p {
                Some(j) => y[i * k + j] = 1.0,
                None if self.zeros => {}
                None => return Err(format!("value at position {i} is not a known category")),
            }
        }
        let mut shape = t.shape.clone();
        shape.push(k);
        Ok(vec![Tensor::f32(shape, y).into()])
    }
}

/// Keys or values of a `LabelEncoder`.
#[derive(Clone)]
enum Column {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Str(Vec<String>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Str(v) => v.len(),
        }
    }

    fn from_tensor(t: Tensor) -> Result<Column, String> {
        Ok(match t.data {
            Data::F32(v) => Column::F32(v),
            Data::F64(v) => Column::F32(v.into_iter().map(|x| x as f32).collect()),
            Data::I64(v) => Column::I64(v),
            Data::I32(v) => Column::I64(v.into_iter().map(i64::from).collect()),
            Data::Str(v) => Column::Str(v),
            Data::Bool(_) => return Err("boolean keys are not supported".into()),
        })
    }
}

/// A hashable key: floats by their bits, with every NaN the same key.
#[derive(Hash, PartialEq, Eq)]
enum Key {
    F(u32),
    I(i64),
    S(String),
}

fn float_key(x: f32) -> Key {
    Key::F(if x.is_nan() { f32::NAN.to_bits() } else { (x + 0.0).to_bits() })
}

struct LabelEncoder {
    index: HashMap<Key, usize>,
    values: Column,
    default: Column,
}
impl Op for LabelEncoder {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let keys: Vec<Key> = match &t.data {
            Data::Str(v) => v.iter().map(|s| Key::S(s.clone())).collect(),
            Data::I64(v) => v.iter().map(|&x| Key::I(x)).collect(),
            Data::I32(v) => v.iter().map(|&x| Key::I(i64::from(x))).collect(),
            Data::F32(v) => v.iter().map(|&x| float_key(x)).collect(),
            Data::F64(v) => v.iter().map(|&x| float_key(x as f32)).collect(),
            Data::Bool(_) => return Err("LabelEncoder does not take bool input".into()),
        };
        let found: Vec<Option<usize>> = keys.iter().map(|k| self.index.get(k).copied()).collect();
        let data = match (&self.values, &self.default) {
            (Column::F32(v), Column::F32(d)) => Data::F32(found.iter().map(|f| f.map_or(d[0], |i| v[i])).collect()),
            (Column::I64(v), Column::I64(d)) => Data::I64(found.iter().map(|f| f.map_or(d[0], |i| v[i])).collect()),
            (Column::Str(v), Column::Str(d)) => {
                Data::Str(found.iter().map(|f| f.map_or_else(|| d[0].clone(), |i| v[i].clone())).collect())
            }
            _ => return Err("values and default have different types".into()),
        };
        Ok(vec![Tensor::new(t.shape.clone(), data).into()])
    }
}

fn label_encoder(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let (keys, values, default) = if ctx.opset < 2 {
        // Opset 1: strings <-> their index in classes_strings.
        let classes = a.strings("classes_strings").unwrap_or_default();
        let n = classes.len() as i64;
        let ints: Vec<i64> = (0..n).collect();
        // Direction is decided at run time by the input type: keep both mappings.
        let to_int =
            (Column::Str(classes.clone()), Column::I64(ints.clone()), Column::I64(vec![a.int("default_int64", -1)]));
        let to_str =
            (Column::I64(ints), Column::Str(classes), Column::Str(vec![a.string("default_string", "_Unused")]));
        return Ok(Box::new(BothWays { to_int: make_encoder(to_int)?, to_str: make_encoder(to_str)? }));
    } else if let Some(keys) = a.tensor("keys_tensor")? {
        let values = a
            .tensor("values_tensor")?
            .ok_or_else(|| BuildError::Invalid("keys_tensor without values_tensor".into()))?;
        let values = Column::from_tensor(values)?;
        let default = match a.tensor("default_tensor")? {
            Some(d) => Column::from_tensor(d)?,
            None => match &values {
                Column::F32(_) => Column::F32(vec![-0.0]),
                Column::I64(_) => Column::I64(vec![-1]),
                Column::Str(_) => Column::Str(vec!["_Unused".into()]),
            },
        };
        (Column::from_tensor(keys)?, values, default)
    } else {
        let keys = if let Some(k) = a.strings("keys_strings").filter(|k| !k.is_empty()) {
            Column::Str(k)
        } else if let Some(k) = a.ints("keys_int64s").filter(|k| !k.is_empty()) {
            Column::I64(k.to_vec())
        } else {
            Column::F32(a.floats("keys_floats").unwrap_or_default().to_vec())
        };
        let (values, default) = if let Some(v) = a.strings("values_strings").filter(|v| !v.is_empty()) {
            (Column::Str(v), Column::Str(vec![a.string("default_string", "_Unused")]))
        } else if let Some(v) = a.ints("values_int64s").filter(|v| !v.is_empty()) {
            (Column::I64(v.to_vec()), Column::I64(vec![a.int("default_int64", -1)]))
        } else {
            (
                Column::F32(a.floats("values_floats").unwrap_or_default().to_vec()),
                Column::F32(vec![a.float("default_float", -0.0)]),
            )
        };
        (keys, values, default)
    };
    Ok(Box::new(make_encoder((keys, values, default))?))
}

fn make_encoder((keys, values, default): (Column, Column, Column)) -> Result<LabelEncoder, BuildError> {
    if keys.len() != values.len() {
        return Err(BuildError::Invalid(format!("{} keys for {} values", keys.len(), values.len())));
    }
    if default.len() != 1 {
        return Err(BuildError::Invalid("the default must be one value".into()));
    }
    let mut index = HashMap::new();
    let ks: Vec<Key> = match keys {
        Column::F32(v) => v.into_iter().map(float_key).collect(),
        Column::I64(v) => v.into_iter().map(Key::I).collect(),
        Column::Str(v) => v.into_iter().map(Key::S).collect(),
    };
    for (i, k) in ks.into_iter().enumerate() {
        index.entry(k).or_insert(i);
    }
    Ok(LabelEncoder { index, values, default })
}

/// LabelEncoder opset 1, whose direction depends on the input type.
struct BothWays {
    to_int: LabelEncoder,
    to_str: LabelEncoder,
}
impl Op for BothWays {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        match input(inputs, 0)?.data {
            Data::Str(_) => self.to_int.run(inputs),
            _ => self.to_str.run(inputs),
        }
    }
}

struct ArrayFeatureExtractor;
impl Op for ArrayFeatureExtractor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let x = input(inputs, 0)?;
        let idx = input(inputs, 1)?.to_i64()?;
        let last = *x.shape.last().ok_or("X must have at least one dimension")?;
        let cols: Vec<usize> = idx
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < last)
                    .ok_or_else(|| format!("index {i} is out of range for {last} columns"))
            })
            .collect::<Result<_, _>>()?;
        let rows = x.len() / last.max(1);
        let mut index = Vec::with_capacity(rows * cols.len());
        for r in 0..rows {
            index.extend(cols.iter().map(|&c| r * last + c));
        }
        let mut shape = if x.shape.len() == 1 { vec![1] } else { x.shape[..x.shape.len() - 1].to_vec() };
        shape.push(cols.len());
        Ok(vec![Tensor::new(shape, x.data.gather(index.into_iter())).into()])
    }
}

struct FeatureVectorizer {
    dims: Vec<usize>,
}
impl Op for FeatureVectorizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let width: usize = self.dims.iter().sum();
        let parts: Vec<(usize, usize, std::borrow::Cow<[f32]>)> =
            (0..inputs.len()).map(|i| matrix(input(inputs, i)?)).collect::<Result<_, _>>()?;
        let rows = parts.first().map_or(0, |p| p.0);
        let mut y = vec![0.0f32; rows * width];
        let mut offset = 0;
        for ((r, c, x), &d) in parts.iter().zip(&self.dims) {
            if *r != rows {
                return Err("inputs have different row counts".into());
            }
            for i in 0..rows {
                for j in 0..d.min(*c) {
                    y[i * width + offset + j] = x[i * c + j];
                }
            }
            offset += d;
        }
        Ok(vec![Tensor::f32(vec![rows, width], y).into()])
    }
}

struct ZipMap {
    keys: MapKeys,
}
impl Op for ZipMap {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let t = input(inputs, 0)?;
        let (r, c, x) = matrix(t)?;
        if c != self.keys.len() {
            return Err(format!("{c} score columns for {} labels", self.keys.len()));
        }
        Ok(vec![Value::SeqMap { keys: self.keys.clone(), values: Tensor::f32(vec![r, c], x.into_owned()) }])
    }
}

/// Integer or string class labels.
#[derive(Clone)]
pub enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    pub fn from_attrs(ctx: &NodeCtx, ints_name: &str) -> Labels {
        match ctx.attrs.strings("classlabels_strings").filter(|s| !s.is_empty()) {
            Some(s) => Labels::Str(s),
            None => Labels::Int(ctx.attrs.ints(ints_name).unwrap_or_default().to_vec()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label tensor for class indices.
    pub fn tensor(&self, picks: impl Iterator<Item = LabelPick>, n: usize) -> Tensor {
        match self {
            Labels::Int(v) => Tensor::i64(
                vec![n],
                picks
                    .map(|p| match p {
                        LabelPick::Class(i) => v[i],
                        LabelPick::Raw(x) => x,
                    })
                    .collect(),
            ),
            Labels::Str(v) => Tensor::new(
                vec![n],
                Data::Str(
                    picks
                        .map(|p| match p {
                            LabelPick::Class(i) => v[i].clone(),
                            LabelPick::Raw(x) => x.to_string(),
                        })
                        .collect(),
                ),
            ),
        }
    }
}

/// A predicted label: the class at an index of the labels, or a raw integer (onnxruntime's
/// positive/negative `1`/`0` when a binary model's labels do not say).
#[derive(Clone, Copy)]
pub enum LabelPick {
    Class(usize),
    Raw(i64),
}

/// `X [n, f] x W^T` for coefficients `W [k, f]`.
fn linear_scores(x: &[f32], n: usize, f: usize, w: &[f32], k: usize) -> Result<Vec<f32>, String> {
    let xv = ndarray::ArrayView2::from_shape((n, f), x).map_err(|e| e.to_string())?;
    let wv = ndarray::ArrayView2::from_shape((k, f), w).map_err(|e| e.to_string())?;
    Ok(super::nn::matmul_f32(xv, wv.reversed_axes()))
}

struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    classes: usize,
    labels: Labels,
    post: PostTransform,
}
impl Op for LinearClassifier {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let (n, f, x) = matrix(input(inputs, 0)?)?;
        let k = self.classes;
        if self.coefficients.len() != k * f {
            return Err(format!(
                "the model has {} coefficients for {k} classes; X has {f} columns",
                self.coefficients.len()
            ));
        }
        let mut scores = linear_scores(&x, n, f, &self.coefficients, k)?;
        for row in scores.chunks_mut(k) {
            row.iter_mut().zip(&self.intercepts).for_each(|(s, b)| *s += b);
        }
        let labels: Vec<LabelPick> = if k == 1 {
            let two = self.labels.len() == 2;
            scores
                .iter()
                .map(|&s| match (s > 0.0, two) {
                    (true, true) => LabelPick::Class(1),
                    (false, true) => LabelPick::Class(0),
                    (true, false) => LabelPick::Raw(1),
                    (false, false) => LabelPick::Raw(0),
                })
                .collect()
        } else {
            scores
                .chunks(k)
                .map(|row| {
                    let mut best = 0;
                    for c in 1..k {
                        if row[c] > row[best] {
                            best = c;
                        }
                    }
                    LabelPick::Class(best)
                })
                .collect()
        };
        let add_second_class = k == 1 && self.labels.len() == 2;
        let probabilities = if k > 1 {
            scores.chunks_mut(k).for_each(|row| transform_row(row, self.post));
            Tensor::f32(vec![n, k], scores)
        } else if self.post == PostTransform::Probit {
            Tensor::f32(vec![n, 1], scores.iter().map(|&s| probit(s)).collect())
        } else if add_second_class {
            // onnxruntime writes [1 - s, s] here, whatever the transform.
            Tensor::f32(vec![n, 2], scores.iter().flat_map(|&s| [1.0 - s, s]).collect())
        } else {
            Tensor::f32(vec![n, 1], scores)
        };
        Ok(vec![self.labels.tensor(labels.into_iter(), n).into(), probabilities.into()])
    }
}

struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post: PostTransform,
}
impl Op for LinearRegressor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
        let (n, f, x) = matrix(input(inputs, 0)?)?;
        let k = self.targets;
        if self.coefficients.len() != k * f {
            return Err(format!(
                "the model has {} coefficients for {k} targets; X has {f} columns",
                self.coefficients.len()
            ));
        }
        let mut y = linear_scores(&x, n, f, &self.coefficients, k)?;
        for row in y.chunks_mut(k) {
            row.iter_mut().enumerate().for_each(|(t, s)| *s += self.intercepts.get(t).copied().unwrap_or(0.0));
        }
        if k > 1 {
            y.chunks_mut(k).for_each(|row| transform_row(row, self.post));
        } else if self.post == PostTransform::Probit {
            y.iter_mut().for_each(|v| *v = probit(*v));
        }
        Ok(vec![Tensor::f32(vec![n, k], y).into()])
    }
}

pub fn build(ctx: &NodeCtx) -> Built {
    let a = &ctx.attrs;
    let floats = |name: &str| a.floats(name).unwrap_or_default().to_vec();
    let post = || PostTransform::parse(&a.string("post_transform", "NONE")).map_err(BuildError::Invalid);
    Ok(match ctx.node.op_type.as_str() {
        "Scaler" => Box::new(Scaler { offset: floats("offset"), scale: floats("scale") }),
        "Normalizer" => Box::new(Normalizer {
            norm: match a.string("norm", "MAX").as_str() {
                "MAX" => Norm::Max,
                "L1" => Norm::L1,
                "L2" => Norm::L2,
                other => return Err(BuildError::Invalid(format!("unknown norm {other:?}"))),
            },
        }),
        "Imputer" => Box::new(Imputer {
            floats: floats("imputed_value_floats"),
            ints: a.ints("imputed_value_int64s").unwrap_or_default().to_vec(),
            replaced_float: a.float("replaced_value_float", 0.0),
            replaced_int: a.int("replaced_value_int64", 0),
        }),
        "Binarizer" => Box::new(Binarizer { threshold: a.float("threshold", 0.0) }),
        "OneHotEncoder" => {
            let cats = match a.strings("cats_strings").filter(|s| !s.is_empty()) {
                Some(s) => Categories::Str(s.into_iter().enumerate().map(|(i, s)| (s, i)).collect()),
                None => Categories::Int(
                    a.ints("cats_int64s").unwrap_or_default().iter().enumerate().map(|(i, &c)| (c, i)).collect(),
                ),
            };
            Box::new(OneHotEncoder { cats, zeros: a.int("zeros", 1) != 0 })
        }
        "LabelEncoder" => return label_encoder(ctx),
        "CategoryMapper" => {
            let strings = a.strings("cats_strings").unwrap_or_default();
            let ints = a.ints("cats_int64s").unwrap_or_default().to_vec();
            let to_int = make_encoder((
                Column::Str(strings.clone()),
                Column::I64(ints.clone()),
                Column::I64(vec![a.int("default_int64", -1)]),
            ))?;
            let to_str = make_encoder((
                Column::I64(ints),
                Column::Str(strings),
                Column::Str(vec![a.string("default_string", "_Unused")]),
            ))?;
            Box::new(BothWays { to_int, to_str })
        }
        "ArrayFeatureExtractor" => Box::new(ArrayFeatureExtractor),
        "FeatureVectorizer" => Box::new(FeatureVectorizer {
            dims: a.ints("inputdimensions").unwrap_or_default().iter().map(|&d| d.max(0) as usize).collect(),
        }),
        "ZipMap" => Box::new(ZipMap {
            keys: match a.strings("classlabels_strings").filter(|s| !s.is_empty()) {
                Some(s) => MapKeys::Str(s),
                None => MapKeys::Int(a.ints("classlabels_int64s").unwrap_or_default().to_vec()),
            },
        }),
        "LinearClassifier" => {
            let intercepts = floats("intercepts");
            let coefficients = floats("coefficients");
            let classes = intercepts.len();
            if classes == 0 || coefficients.len() % classes != 0 {
                return Err(BuildError::Invalid(format!(
                    "{} coefficients do not split into {classes} classes",
                    coefficients.len()
                )));
            }
            let labels = Labels::from_attrs(ctx, "classlabels_ints");
            // One label per class (two for a binary model's single score); a score beyond the
            // labels would have no label to answer with.
            if classes > 1 && labels.len() != classes {
                return Err(BuildError::Invalid(format!("{} class labels for {classes} classes", labels.len())));
            }
            Box::new(LinearClassifier { coefficients, intercepts, classes, labels, post: post()? })
        }
        "LinearRegressor" => {
            let targets = a.int("targets", 1).max(1) as usize;
            let coefficients = floats("coefficients");
            if coefficients.len() % targets != 0 {
                return Err(BuildError::Invalid(format!(
                    "{} coefficients do not split into {targets} targets",
                    coefficients.len()
                )));
            }
            Box::new(LinearRegressor { coefficients, intercepts: floats("intercepts"), targets, post: post()? })
        }
        _ => return Err(BuildError::Unsupported),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probit_inverts_the_normal_cdf() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.959_964).abs() < 5e-3);
    }

    #[test]
    fn softmax_zero_keeps_zeros() {
        let mut s = [0.0, 1.0, 1.0];
        transform_row(&mut s, PostTransform::SoftmaxZero);
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 0.5).abs() < 1e-7);
    }
}
