//! A trained model as saved (`model.json` in the model directory), training dispatch by kind, and
//! prediction on any frame with the model's columns.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::binning::BinMapper;
use crate::encode::{LinearColumn, LinearEncoder, TreeEncoder};
use crate::ensemble::{self, BoostSettings, Combine, Ensemble, ForestSettings};
use crate::error::{Result, TrainError};
use crate::frame::{FeatureSpec, Features, Target, Task};
use crate::linear::{self, LinearWeights};
use crate::params::{ModelKind, Params};
use crate::tree::GrowLimits;

/// The `format` field of every saved model.
pub const FORMAT: &str = "shipyard-model";
/// The version of the saved layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Progress reporting and cancellation, shared with the caller while training runs.
pub struct Control<'a> {
    pub progress: &'a (dyn Fn(usize, usize) + Sync),
    pub cancel: &'a AtomicBool,
}

impl Control<'_> {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    pub fn report(&self, done: usize, total: usize) {
        (self.progress)(done, total)
    }
}

/// What a model is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Linear { encoder: LinearEncoder, weights: LinearWeights },
    Trees { encoder: TreeEncoder, ensemble: Ensemble },
}

/// A trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub format_version: u32,
    pub kind: ModelKind,
    pub task: Task,
    pub target: String,
    pub features: Vec<FeatureSpec>,
    /// Class labels in output order (empty for regression).
    pub classes: Vec<String>,
    pub params: Params,
    /// Per feature, summing to 1 (impurity or gain decrease for trees, scaled coefficient
    /// magnitude for linear models).
    pub feature_importances: Vec<f64>,
    /// Facts of the fit: iterations run, convergence.
    pub fit_info: serde_json::Map<String, serde_json::Value>,
    pub body: Body,
}

/// Predictions for a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Class indices (into [`Model::classes`]) and probabilities per row.
    Classes {
        classes: Vec<usize>,
        proba: Vec<Vec<f64>>,
    },
    Values(Vec<f64>),
}

impl Predictions {
    pub fn len(&self) -> usize {
        match self {
            Predictions::Classes { classes, .. } => classes.len(),
            Predictions::Values(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn argmax(p: &[f64]) -> usize {
    // The first maximum, as numpy's argmax.
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

fn normalise(v: &mut [f64]) {
    let total: f64 = v.iter().sum();
    if total > 0.0 {
        v.iter_mut().for_each(|x| *x /= total);
    }
}

/// Trains a model of `kind` on `features` and `target` (same rows).
pub fn train(
    kind: ModelKind,
    params: &Params,
    features: &Features,
    target: &Target,
    target_name: &str,
    seed: u64,
    control: &Control,
) -> Result<Model> {
    let task = target.task();
    if let Some(fixed) = kind.fixed_task()
        && fixed != task
    {
        return Err(TrainError::data(format!(
            "{kind} is for {}, but target '{target_name}' is a {} target{}",
            fixed.as_str(),
            task.as_str(),
            if fixed == Task::Regression { " (its values are not numbers)" } else { "" }
        )));
    }
    if features.columns.is_empty() {
        return Err(TrainError::data("no feature columns left to train on"));
    }
    features.check_not_all_missing()?;
    let classes = match target {
        Target::Classes { labels, .. } => labels.clone(),
        Target::Values(_) => Vec::new(),
    };
    let mut fit_info = serde_json::Map::new();
    let (body, importances) = match kind {
        ModelKind::LogisticRegression | ModelKind::LinearRegression => {
            let encoder = LinearEncoder::fit(features, params.flag("standardize"))?;
            let width = encoder.width();
            let x = encoder.transform(features)?;
            control.report(0, 1);
            let weights = match target {
                Target::Classes { codes, labels } => {
                    let max_iter = params.int("max_iter").unwrap_or(100) as usize;
                    let (w, report) = linear::fit_logistic(
                        &x,
                        width,
                        codes,
                        labels.len(),
                        params.float("C"),
                        params.float("tol"),
                        max_iter,
                    );
                    fit_info.insert("iterations".into(), report.iterations.into());
                    fit_info.insert("converged".into(), report.converged.into());
                    w
                }
                Target::Values(y) => linear::fit_ridge(&x, width, y, params.float("alpha"))?,
            };
            control.report(1, 1);
            let importances = linear_importances(&encoder, &weights, &x, width);
            (Body::Linear { encoder, weights }, importances)
        }
        ModelKind::DecisionTree | ModelKind::RandomForest | ModelKind::GradientBoosting => {
            let encoder = TreeEncoder::fit(features, target);
            let columns = encoder.transform(features)?;
            let max_bins = params.int("max_bins").unwrap_or(255) as usize;
            let mapper = BinMapper::fit(&columns, max_bins, seed);
            let binned = mapper.transform(&columns);
            let n_features = columns.len();
            let optional = |name: &str| params.int(name).map(|v| v as usize);
            let (ensemble, importances) = if kind == ModelKind::GradientBoosting {
                let limits = GrowLimits {
                    max_depth: optional("max_depth"),
                    max_leaves: optional("max_leaf_nodes"),
                    min_samples_split: 2,
                    min_samples_leaf: optional("min_samples_leaf").unwrap_or(20),
                    max_features: n_features,
                    min_gain: 0.0,
                };
                let early_stopping = match params.text("early_stopping") {
                    "true" => true,
                    "false" => false,
                    _ => features.rows > 10_000,
                };
                let settings = BoostSettings {
                    max_iter: optional("max_iter").unwrap_or(100),
                    learning_rate: params.float("learning_rate"),
                    l2: params.float("l2_regularization"),
                    limits,
                    early_stopping,
                    validation_fraction: params.float("validation_fraction"),
                    n_iter_no_change: optional("n_iter_no_change").unwrap_or(10),
                    tol: params.float("tol"),
                    seed,
                };
                let (ensemble, importances, report) =
                    ensemble::fit_boosting(&binned, &columns, &mapper, target, &settings, control)?;
                fit_info.insert("iterations".into(), report.iterations.into());
                if let Some(loss) = report.best_validation_loss {
                    fit_info.insert("best_validation_loss".into(), loss.into());
                }
                (ensemble, importances)
            } else {
                let forest = kind == ModelKind::RandomForest;
                let settings = ForestSettings {
                    trees: if forest { optional("n_estimators").unwrap_or(100) } else { 1 },
                    bootstrap: forest && params.flag("bootstrap"),
                    max_samples: if forest { params.float("max_samples") } else { 1.0 },
                    limits: GrowLimits {
                        max_depth: optional("max_depth"),
                        max_leaves: None,
                        min_samples_split: optional("min_samples_split").unwrap_or(2),
                        min_samples_leaf: optional("min_samples_leaf").unwrap_or(1),
                        max_features: params.max_features(n_features),
                        min_gain: params.float("min_impurity_decrease").max(0.0) * features.rows as f64,
                    },
                    seed,
                };
                ensemble::fit_forest(&binned, &mapper, target, &settings, control)?
            };
            (Body::Trees { encoder, ensemble }, importances)
        }
    };
    let mut feature_importances = importances;
    normalise(&mut feature_importances);
    Ok(Model {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        kind,
        task,
        target: target_name.to_owned(),
        features: features.specs.clone(),
        classes,
        params: params.clone(),
        feature_importances,
        fit_info,
        body,
    })
}

/// Per feature: the sum over outputs of |coefficient| times the design column's standard
/// deviation (so unscaled and scaled fits rank features alike).
fn linear_importances(encoder: &LinearEncoder, weights: &LinearWeights, x: &[f64], width: usize) -> Vec<f64> {
    let n = (x.len() / width.max(1)).max(1) as f64;
    let mut sd = vec![0.0; width];
    let mut mean = vec![0.0; width];
    for row in x.chunks(width.max(1)) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
    }
    for row in x.chunks(width.max(1)) {
        sd.iter_mut().zip(row.iter().zip(&mean)).for_each(|(s, (v, m))| *s += (v - m).powi(2) / n);
    }
    let mut out = Vec::with_capacity(encoder.columns.len());
    let mut offset = 0;
    for col in &encoder.columns {
        let w = match col {
            LinearColumn::Numeric { .. } => 1,
            LinearColumn::OneHot { levels } => levels.len(),
        };
        let mut total = 0.0;
        for j in offset..offset + w {
            let magnitude: f64 = weights.coefficients.iter().map(|c| c[j].abs()).sum();
            total += magnitude * sd[j].sqrt();
        }
        out.push(total);
        offset += w;
    }
    out
}

impl Model {
    /// Reads a saved model, checking its format and consistency.
    pub fn from_json(text: &str) -> Result<Model> {
        let model: Model = serde_json::from_str(text).map_err(|e| TrainError::Model(e.to_string()))?;
        if model.format != FORMAT || model.format_version != FORMAT_VERSION {
            return Err(TrainError::Model(format!(
                "format '{}' version {} is not '{FORMAT}' version {FORMAT_VERSION}",
                model.format, model.format_version
            )));
        }
        if let Body::Trees { ensemble, .. } = &model.body {
            for (i, tree) in ensemble.trees.iter().enumerate() {
                tree.validate(model.features.len()).map_err(|e| TrainError::Model(format!("tree {i}: {e}")))?;
            }
        }
        Ok(model)
    }

    /// Predicts every row of `frame`.
    pub fn predict(&self, frame: &Features) -> Result<Predictions> {
        let rows = frame.rows;
        let classification = self.task == Task::Classification;
        match &self.body {
            Body::Linear { encoder, weights } => {
                let x = encoder.transform(frame)?;
                let scores = weights.scores(&x, encoder.width());
                if classification {
                    let proba = linear::logistic_proba(&scores, weights.intercepts.len());
                    Ok(Predictions::Classes { classes: proba.iter().map(|p| argmax(p)).collect(), proba })
                } else {
                    Ok(Predictions::Values(scores))
                }
            }
            Body::Trees { encoder, ensemble } => {
                let columns = encoder.transform(frame)?;
                let raw = ensemble.raw(&columns, rows);
                let k = ensemble.outputs();
                match (&ensemble.combine, classification) {
                    (_, false) => Ok(Predictions::Values(raw)),
                    (Combine::Average, true) => {
                        let proba: Vec<Vec<f64>> = raw.chunks(k).map(<[f64]>::to_vec).collect();
                        Ok(Predictions::Classes { classes: proba.iter().map(|p| argmax(p)).collect(), proba })
                    }
                    (Combine::Sum { .. }, true) => {
                        let proba = linear::logistic_proba(&raw, k);
                        Ok(Predictions::Classes { classes: proba.iter().map(|p| argmax(p)).collect(), proba })
                    }
                }
            }
        }
    }
}
