//! Model kinds and their hyperparameters: names, defaults, ranges, and parsing of `KEY=VALUE`.
//!
//! Names and defaults follow scikit-learn's estimators (`LogisticRegression`, `Ridge`,
//! `DecisionTree*`, `RandomForest*`, `HistGradientBoosting*`) so a user's habits carry over.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::frame::Task;

/// The models `shipyard train` fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    LogisticRegression,
    LinearRegression,
    DecisionTree,
    RandomForest,
    GradientBoosting,
}

impl ModelKind {
    pub const ALL: [ModelKind; 5] = [
        ModelKind::LogisticRegression,
        ModelKind::LinearRegression,
        ModelKind::DecisionTree,
        ModelKind::RandomForest,
        ModelKind::GradientBoosting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::LogisticRegression => "logistic_regression",
            ModelKind::LinearRegression => "linear_regression",
            ModelKind::DecisionTree => "decision_tree",
            ModelKind::RandomForest => "random_forest",
            ModelKind::GradientBoosting => "gradient_boosting",
        }
    }

    pub fn parse(text: &str) -> Result<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.as_str() == text).ok_or_else(|| {
            TrainError::param(format!(
                "unknown model kind '{text}'; the kinds are: {}",
                ModelKind::ALL.map(ModelKind::as_str).join(", ")
            ))
        })
    }

    /// The task a kind is limited to, if any.
    pub fn fixed_task(self) -> Option<Task> {
        match self {
            ModelKind::LogisticRegression => Some(Task::Classification),
            ModelKind::LinearRegression => Some(Task::Regression),
            _ => None,
        }
    }

    /// The parameters of this kind for `task`.
    pub fn params(self, task: Task) -> Vec<ParamSpec> {
        use ParamType::*;
        let p = |name, default, ty, help| ParamSpec { name, default, ty, help };
        let tree_common = |max_features_default| {
            vec![
                p("max_depth", "none", OptionalInt { min: 1 }, "deepest a tree grows (none: no limit)"),
                p("min_samples_split", "2", Int { min: 2, max: i64::MAX }, "fewest rows a node needs to split"),
                p("min_samples_leaf", "1", Int { min: 1, max: i64::MAX }, "fewest rows in a leaf"),
                p(
                    "max_features",
                    max_features_default,
                    MaxFeatures,
                    "features tried per split: sqrt, log2, all, a count or a fraction",
                ),
                p("max_bins", "255", Int { min: 2, max: 255 }, "histogram bins per feature"),
                p(
                    "min_impurity_decrease",
                    "0",
                    Float { min: 0.0, max: f64::INFINITY, above_min: false },
                    "smallest gain worth a split",
                ),
            ]
        };
        match self {
            ModelKind::LogisticRegression => vec![
                p(
                    "C",
                    "1.0",
                    Float { min: 0.0, max: f64::INFINITY, above_min: true },
                    "inverse L2 regularisation strength",
                ),
                p("max_iter", "100", Int { min: 1, max: 100_000 }, "most L-BFGS iterations"),
                p("tol", "0.0001", Float { min: 0.0, max: f64::INFINITY, above_min: true }, "gradient tolerance"),
                p("standardize", "true", Bool, "scale numeric features to unit variance"),
            ],
            ModelKind::LinearRegression => vec![
                p(
                    "alpha",
                    "1.0",
                    Float { min: 0.0, max: f64::INFINITY, above_min: false },
                    "L2 regularisation strength",
                ),
                p("standardize", "true", Bool, "scale numeric features to unit variance"),
            ],
            ModelKind::DecisionTree => tree_common("all"),
            ModelKind::RandomForest => {
                let mut v = vec![p("n_estimators", "100", Int { min: 1, max: 100_000 }, "trees in the forest")];
                v.extend(tree_common(if task == Task::Classification { "sqrt" } else { "all" }));
                v.push(p("bootstrap", "true", Bool, "train each tree on a bootstrap sample"));
                v.push(p(
                    "max_samples",
                    "1.0",
                    Float { min: 0.0, max: 1.0, above_min: true },
                    "bootstrap sample size as a fraction of the rows",
                ));
                v
            }
            ModelKind::GradientBoosting => vec![
                p("max_iter", "100", Int { min: 1, max: 100_000 }, "boosting iterations"),
                p(
                    "learning_rate",
                    "0.1",
                    Float { min: 0.0, max: f64::INFINITY, above_min: true },
                    "shrinkage of each tree",
                ),
                p("max_leaf_nodes", "31", OptionalInt { min: 2 }, "leaves per tree (none: no limit)"),
                p("max_depth", "none", OptionalInt { min: 1 }, "deepest a tree grows (none: no limit)"),
                p("min_samples_leaf", "20", Int { min: 1, max: i64::MAX }, "fewest rows in a leaf"),
                p(
                    "l2_regularization",
                    "0",
                    Float { min: 0.0, max: f64::INFINITY, above_min: false },
                    "L2 penalty on leaf values",
                ),
                p("max_bins", "255", Int { min: 2, max: 255 }, "histogram bins per feature"),
                p(
                    "early_stopping",
                    "auto",
                    Choice(&["auto", "true", "false"]),
                    "stop when the validation loss stops improving (auto: above 10,000 rows)",
                ),
                p(
                    "validation_fraction",
                    "0.1",
                    Float { min: 0.0, max: 1.0, above_min: true },
                    "share of the training rows held out for early stopping",
                ),
                p(
                    "n_iter_no_change",
                    "10",
                    Int { min: 1, max: 100_000 },
                    "iterations without improvement before stopping",
                ),
                p(
                    "tol",
                    "0.0000001",
                    Float { min: 0.0, max: f64::INFINITY, above_min: false },
                    "improvement that counts",
                ),
            ],
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter's type and valid range.
#[derive(Debug, Clone, Copy)]
pub enum ParamType {
    Int {
        min: i64,
        max: i64,
    },
    /// An integer or `none`.
    OptionalInt {
        min: i64,
    },
    /// `above_min`: the minimum itself is excluded.
    Float {
        min: f64,
        max: f64,
        above_min: bool,
    },
    Bool,
    Choice(&'static [&'static str]),
    /// `sqrt`, `log2`, `all`, an integer count or a fraction in (0, 1].
    MaxFeatures,
}

/// One parameter of a model kind.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: &'static str,
    pub ty: ParamType,
    pub help: &'static str,
}

/// A parsed parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    None,
}

impl ParamSpec {
    /// Parses and range-checks `text`.
    pub fn parse(&self, text: &str) -> Result<ParamValue> {
        let t = text.trim();
        let bad = |why: String| TrainError::param(format!("--param {}={text}: {why}", self.name));
        match self.ty {
            ParamType::Int { min, max } => {
                let v: i64 = t.parse().map_err(|_| bad("expected an integer".into()))?;
                if v < min || v > max {
                    return Err(bad(if max == i64::MAX {
                        format!("must be at least {min}")
                    } else {
                        format!("must be between {min} and {max}")
                    }));
                }
                Ok(ParamValue::Int(v))
            }
            ParamType::OptionalInt { min } => {
                if t.eq_ignore_ascii_case("none") {
                    return Ok(ParamValue::None);
                }
                let v: i64 = t.parse().map_err(|_| bad("expected an integer or none".into()))?;
                if v < min {
                    return Err(bad(format!("must be at least {min} (or none)")));
                }
                Ok(ParamValue::Int(v))
            }
            ParamType::Float { min, max, above_min } => {
                let v: f64 = t.parse().map_err(|_| bad("expected a number".into()))?;
                let low_ok = if above_min { v > min } else { v >= min };
                if !v.is_finite() || !low_ok || v > max {
                    let low = if above_min { format!("above {min}") } else { format!("at least {min}") };
                    return Err(bad(if max.is_finite() {
                        format!("must be {low} and at most {max}")
                    } else {
                        format!("must be {low}")
                    }));
                }
                Ok(ParamValue::Float(v))
            }
            ParamType::Bool => match t.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(ParamValue::Bool(true)),
                "false" | "0" | "no" => Ok(ParamValue::Bool(false)),
                _ => Err(bad("expected true or false".into())),
            },
            ParamType::Choice(options) => {
                if options.contains(&t) {
                    Ok(ParamValue::Text(t.to_owned()))
                } else {
                    Err(bad(format!("expected one of {}", options.join(", "))))
                }
            }
            ParamType::MaxFeatures => {
                if ["sqrt", "log2", "all"].contains(&t) {
                    return Ok(ParamValue::Text(t.to_owned()));
                }
                if let Ok(v) = t.parse::<i64>() {
                    return if v >= 1 { Ok(ParamValue::Int(v)) } else { Err(bad("a count must be at least 1".into())) };
                }
                match t.parse::<f64>() {
                    Ok(v) if v > 0.0 && v <= 1.0 => Ok(ParamValue::Float(v)),
                    _ => Err(bad("expected sqrt, log2, all, a count of at least 1, or a fraction in (0, 1]".into())),
                }
            }
        }
    }
}

/// A kind's parameters with every value resolved (given or default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    /// Resolves `given` (`name -> text`) against `kind`'s parameters for `task`.
    pub fn resolve(kind: ModelKind, task: Task, given: &[(String, String)]) -> Result<Params> {
        let specs = kind.params(task);
        let mut values = BTreeMap::new();
        for spec in &specs {
            values.insert(spec.name.to_owned(), spec.parse(spec.default)?);
        }
        for (name, text) in given {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                return Err(TrainError::param(format!(
                    "unknown parameter '{name}' for {kind}; its parameters are: {}",
                    specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                )));
            };
            values.insert(spec.name.to_owned(), spec.parse(text)?);
        }
        Ok(Params(values))
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name) {
            Some(ParamValue::Int(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn float(&self, name: &str) -> f64 {
        match self.0.get(name) {
            Some(ParamValue::Float(v)) => *v,
            Some(ParamValue::Int(v)) => *v as f64,
            _ => f64::NAN,
        }
    }
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(ParamValue::Bool(true)))
    }
    pub fn text(&self, name: &str) -> &str {
        match self.0.get(name) {
            Some(ParamValue::Text(t)) => t,
            _ => "",
        }
    }

    /// Features per split for `n_features` columns.
    pub fn max_features(&self, n_features: usize) -> usize {
        let n = n_features as f64;
        let v = match self.0.get("max_features") {
            Some(ParamValue::Text(t)) if t == "sqrt" => n.sqrt().floor(),
            Some(ParamValue::Text(t)) if t == "log2" => n.log2().floor(),
            Some(ParamValue::Int(c)) => *c as f64,
            Some(ParamValue::Float(f)) => (f * n).floor(),
            _ => n,
        };
        (v as usize).clamp(1, n_features.max(1))
    }

    /// `name=value` pairs as runs record them.
    pub fn to_strings(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    ParamValue::Int(i) => i.to_string(),
                    ParamValue::Float(f) => f.to_string(),
                    ParamValue::Bool(b) => b.to_string(),
                    ParamValue::Text(t) => t.clone(),
                    ParamValue::None => "none".to_owned(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_resolve() {
        let p = Params::resolve(ModelKind::RandomForest, Task::Classification, &[("max_depth".into(), "8".into())])
            .expect("params");
        assert_eq!(p.int("n_estimators"), Some(100));
        assert_eq!(p.int("max_depth"), Some(8));
        assert_eq!(p.max_features(20), 4);
        let r = Params::resolve(ModelKind::RandomForest, Task::Regression, &[]).expect("params");
        assert_eq!(r.max_features(20), 20);
    }

    #[test]
    fn unknown_and_out_of_range_parameters_say_what_is_valid() {
        let e = Params::resolve(ModelKind::DecisionTree, Task::Classification, &[("depth".into(), "3".into())])
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("unknown parameter 'depth'") && e.contains("max_depth, min_samples_split"), "{e}");
        let e = Params::resolve(ModelKind::GradientBoosting, Task::Regression, &[("learning_rate".into(), "0".into())])
            .expect_err("range")
            .to_string();
        assert!(e.contains("learning_rate=0") && e.contains("above 0"), "{e}");
        let e = ModelKind::parse("svm").expect_err("kind").to_string();
        assert!(e.contains("logistic_regression, linear_regression"), "{e}");
    }
}

/// Candidate values per parameter, for hyperparameter search (`--param max_depth=4,8,16`).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    pub axes: Vec<(String, Vec<String>)>,
}

impl SearchSpace {
    /// Splits each `name -> "v1,v2,..."` into its values.
    pub fn parse(given: &[(String, String)]) -> SearchSpace {
        SearchSpace {
            axes: given
                .iter()
                .map(|(name, text)| (name.clone(), text.split(',').map(|v| v.trim().to_owned()).collect()))
                .collect(),
        }
    }

    /// The number of grid points.
    pub fn size(&self) -> usize {
        self.axes.iter().map(|(_, v)| v.len().max(1)).product()
    }

    /// Every combination, the last parameter varying fastest; at most `limit`.
    pub fn grid(&self, limit: usize) -> Vec<Vec<(String, String)>> {
        let total = self.size();
        (0..total.min(limit))
            .map(|mut index| {
                let mut point = vec![(String::new(), String::new()); self.axes.len()];
                for (slot, (name, values)) in point.iter_mut().zip(&self.axes).rev() {
                    *slot = (name.clone(), values[index % values.len()].clone());
                    index /= values.len();
                }
                point
            })
            .collect()
    }

    /// `trials` distinct combinations drawn uniformly (all of them when the grid is smaller).
    pub fn random(&self, trials: usize, seed: u64) -> Vec<Vec<(String, String)>> {
        use rand::SeedableRng;
        use rand::seq::index;
        let total = self.size();
        let grid = self.grid(usize::MAX);
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let mut picked = index::sample(&mut rng, total, trials.min(total)).into_vec();
        picked.sort_unstable();
        picked.into_iter().map(|i| grid[i].clone()).collect()
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;

    fn space() -> SearchSpace {
        SearchSpace::parse(&[("max_depth".into(), "4,8,16".into()), ("max_features".into(), "sqrt,all".into())])
    }

    #[test]
    fn grid_enumerates_every_combination() {
        let g = space().grid(usize::MAX);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], vec![("max_depth".into(), "4".into()), ("max_features".into(), "sqrt".into())]);
        assert_eq!(g[5], vec![("max_depth".into(), "16".into()), ("max_features".into(), "all".into())]);
    }

    #[test]
    fn random_draws_distinct_seeded_points() {
        let a = space().random(4, 1);
        assert_eq!(a.len(), 4);
        assert_eq!(a, space().random(4, 1));
        let mut dedup = a.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), 4);
        assert_eq!(space().random(100, 1).len(), 6);
    }
}
