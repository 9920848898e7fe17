//! The pipeline file (`docs/pipelines.md`).
//!
//! ```yaml
//! pipeline: 1
//! name: titanic
//! config:                       # the seed's configuration, key for key
//!   min_accuracy: 0.75
//!   max_inference_time: 0.1     # seconds
//!   deployment_endpoint: http://127.0.0.1:5000
//!   alert_thresholds: {min_accuracy: 0.75, max_drift: 0.1}
//! steps:
//!   - validate: {data: titanic.csv, dataset: titanic, suite: suite.yaml}
//!   - train:
//!       data: ${validate.data}
//!       target: survived
//!       candidates: [{model: logistic_regression}, {model: random_forest}]
//!   - register: {model: ${train.model_uri}, name: titanic}
//!   - gate: {model: ${register.model_uri}, data: ${validate.data}}
//!   - promote: {model: ${register.model_uri}}
//!   - deploy: {deployment: titanic, model: models:/titanic@production}
//!     needs: [promote]
//!   - smoke_test: {deployment: ${deploy.deployment}, data: ${validate.data}}
//!   - monitor: {deployment: ${deploy.deployment}, target: survived}
//! ```
//!
//! A step is one key naming its kind, with the kind's inputs under it; `name` (default: the
//! kind) and `needs` sit beside it. `${STEP.KEY}` in any input is an output of an earlier step
//! and makes this step depend on it. Relative paths are relative to the pipeline file. Unknown
//! keys are errors naming line and column, as in the gate policies and monitor configurations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A pipeline file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct SpecError {
    pub origin: String,
    pub message: String,
}

/// The seed's configuration dictionary, one key for each of its keys that a step uses.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    /// Where the steps record: a tracking server (`https://team-server:5000`, the steps then go
    /// through it with the `MLFLOW_TRACKING_*` credentials), or a store (`sqlite:///...`,
    /// `postgresql://...`); default: the command's `--tracking-uri`, else SHIPYARD_HOME's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_uri: Option<String>,
    /// The server that serves the deployments, for `smoke_test` (e.g. `http://127.0.0.1:5000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_endpoint: Option<String>,
    /// The `gate` step's floor on the run's `accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy: Option<f64>,
    /// The `gate` step's ceiling on the measured one-row p99 latency, in seconds (the seed's unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inference_time: Option<f64>,
    /// The `monitor` step's alert rules.
    #[serde(default)]
    pub alert_thresholds: AlertThresholds,
}

/// The seed's `alert_thresholds`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertThresholds {
    /// Alert when the window's accuracy falls below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy: Option<f64>,
    /// Alert when the window's share of drifted features rises above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drift: Option<f64>,
}

/// `validate`: checks the data and pins it. Outputs `data` (`dataset:NAME@VERSION` when the
/// table is versioned, else its absolute path), `rows`, `digest`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValidateStep {
    /// A CSV or Parquet file, or `dataset:NAME[@VERSION]` (no version: the latest at run time).
    pub data: String,
    /// Record a file as a new version of this dataset (stored once per digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// An expectation suite the table must pass (`shipyard data suite infer` writes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
}

/// A model parameter's value.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ParamValue {
    Integer(i64),
    Number(f64),
    Flag(bool),
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Number(x) => write!(f, "{x}"),
            ParamValue::Flag(b) => write!(f, "{b}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// One model to train.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// `logistic_regression`, `linear_regression`, `decision_tree`, `random_forest` or
    /// `gradient_boosting`.
    pub model: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamValue>,
}

/// `train`: trains each candidate as a tracked run (children of the step's run) and keeps the
/// best. Outputs `run_id`, `model_uri` (`runs:/ID/model`), `metric`, `score`, `candidates`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainStep {
    pub data: String,
    pub target: String,
    pub candidates: Vec<Candidate>,
    /// The metric that picks the best candidate (default: accuracy, or r2 for regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_size: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Columns left out of the features.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// `register`: a new version of a registered model. Outputs `name`, `version`, `model_uri`
/// (`models:/NAME/VERSION`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegisterStep {
    /// `runs:/RUN_ID/model`.
    pub model: String,
    pub name: String,
}

/// `gate`: the promotion gates on a registered version. Without `policy`, the policy is made
/// from the seed's `min_accuracy` and `max_inference_time` and the fields below; it is stored
/// as the model's policy, so `promote` applies the same gates. Outputs `passed`, `checks`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateStep {
    /// `models:/NAME/VERSION`.
    pub model: String,
    /// A gate policy file (`docs/promotion.md`) used as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Evaluation rows for the data-dependent gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Their true values' column (default: the run's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The alias the version is headed for: its holder is the champion (default `production`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Fail when the evaluation rows drift from the training profile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift: bool,
    /// Compare with the champion: at most this much worse on the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_tolerance: Option<f64>,
    /// Fairness gate on this column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_demographic_parity_difference: Option<f64>,
}

/// `promote`: moves an alias to a version under the model's stored gate policy. Outputs
/// `alias`, `version`, `previous`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromoteStep {
    /// `models:/NAME/VERSION`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// `deploy`: creates or changes a deployment. Outputs `deployment`, `path` (`/predict/NAME`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployStep {
    pub deployment: String,
    /// `models:/NAME@ALIAS` (follows the alias) or `models:/NAME/VERSION`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// The canary's percent of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `smoke_test`: sends rows to the deployment on the live endpoint and checks the answers. It
/// checks something outside the pipeline's inputs, so it is never served from the cache.
/// Outputs `endpoint`, `rows`, `latency_ms`, `version`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmokeTestStep {
    pub deployment: String,
    /// The table whose first rows are sent.
    pub data: String,
    /// Columns dropped from the rows sent (the target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// Rows sent in one request (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// The server (default: the seed's `deployment_endpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How long the server may take to start serving the deployment (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// What a monitor's alert does (`docs/monitoring.md`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    Rollback,
    ZeroCanary,
    /// Runs this pipeline again (on the latest dataset version).
    Retrain,
}

/// `monitor`: the deployment's monitors and alert rules. Without `config`, the rules are the
/// seed's `alert_thresholds`. Outputs `deployment`, `rules`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitorStep {
    pub deployment: String,
    /// A monitor configuration file used as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    /// The window: the newest N predictions (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    /// Rows a window needs before its rules are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    /// What the accuracy alert does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_action: Option<AlertAction>,
    /// What the drift alert does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_action: Option<AlertAction>,
    /// Where alerts are POSTed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<String>,
}

/// A step's kind with its inputs.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    Validate(ValidateStep),
    Train(TrainStep),
    Register(RegisterStep),
    Gate(GateStep),
    Promote(PromoteStep),
    Deploy(DeployStep),
    SmokeTest(SmokeTestStep),
    Monitor(MonitorStep),
}

impl StepAction {
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Validate(_) => "validate",
            StepAction::Train(_) => "train",
            StepAction::Register(_) => "register",
            StepAction::Gate(_) => "gate",
            StepAction::Promote(_) => "promote",
            StepAction::Deploy(_) => "deploy",
            StepAction::SmokeTest(_) => "smoke_test",
            StepAction::Monitor(_) => "monitor",
        }
    }

    /// The outputs a step of this kind records, which `${STEP.KEY}` may name.
    pub fn outputs(&self) -> &'static [&'static str] {
        match self {
            StepAction::Validate(_) => &["data", "rows", "digest"],
            StepAction::Train(_) => &["run_id", "model_uri", "metric", "score", "candidates"],
            StepAction::Register(_) => &["name", "version", "model_uri"],
            StepAction::Gate(_) => &["passed", "checks"],
            StepAction::Promote(_) => &["alias", "version", "previous"],
            StepAction::Deploy(_) => &["deployment", "path"],
            StepAction::SmokeTest(_) => &["endpoint", "rows", "latency_ms", "version"],
            StepAction::Monitor(_) => &["deployment", "rules"],
        }
    }

    /// Whether an unchanged step may reuse its recorded outputs.
    pub fn cacheable(&self) -> bool {
        !matches!(self, StepAction::SmokeTest(_))
    }

    /// The inputs that name files (or `dataset:` references), to make absolute and to hash.
    fn paths_mut(&mut self) -> Vec<&mut String> {
        let mut paths: Vec<&mut String> = Vec::new();
        match self {
            StepAction::Validate(s) => {
                paths.push(&mut s.data);
                paths.extend(s.suite.as_mut());
            }
            StepAction::Train(s) => paths.push(&mut s.data),
            StepAction::Gate(s) => {
                paths.extend(s.policy.as_mut());
                paths.extend(s.data.as_mut());
            }
            StepAction::SmokeTest(s) => paths.push(&mut s.data),
            StepAction::Monitor(s) => paths.extend(s.config.as_mut()),
            StepAction::Register(_) | StepAction::Promote(_) | StepAction::Deploy(_) => {}
        }
        paths
    }

    /// The file and dataset inputs, after resolution.
    pub fn paths(&self) -> Vec<String> {
        self.clone().paths_mut().into_iter().map(|p| p.clone()).collect()
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn from_value(kind: &str, inputs: Value) -> Result<StepAction, serde_json::Error> {
        Ok(match kind {
            "validate" => StepAction::Validate(serde_json::from_value(inputs)?),
            "train" => StepAction::Train(serde_json::from_value(inputs)?),
            "register" => StepAction::Register(serde_json::from_value(inputs)?),
            "gate" => StepAction::Gate(serde_json::from_value(inputs)?),
            "promote" => StepAction::Promote(serde_json::from_value(inputs)?),
            "deploy" => StepAction::Deploy(serde_json::from_value(inputs)?),
            "smoke_test" => StepAction::SmokeTest(serde_json::from_value(inputs)?),
            _ => StepAction::Monitor(serde_json::from_value(inputs)?),
        })
    }

    /// The inputs alone (the map under the kind's key).
    pub fn inputs(&self) -> Value {
        match self.to_value() {
            Value::Object(mut m) => m.remove(self.kind()).unwrap_or(Value::Null),
            other => other,
        }
    }
}

/// The YAML shape of a step: exactly one kind key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    validate: Option<ValidateStep>,
    #[serde(default)]
    train: Option<TrainStep>,
    #[serde(default)]
    register: Option<RegisterStep>,
    #[serde(default)]
    gate: Option<GateStep>,
    #[serde(default)]
    promote: Option<PromoteStep>,
    #[serde(default)]
    deploy: Option<DeployStep>,
    #[serde(default)]
    smoke_test: Option<SmokeTestStep>,
    #[serde(default)]
    monitor: Option<MonitorStep>,
}

const KINDS: &str = "validate, train, register, gate, promote, deploy, smoke_test, monitor";

/// The YAML shape of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineSpec {
    pipeline: u32,
    name: String,
    #[serde(default)]
    experiment: Option<String>,
    #[serde(default)]
    config: SeedConfig,
    steps: Vec<StepSpec>,
}

/// One step as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    /// Every step this one waits for: `needs` and the steps its references name.
    pub depends_on: BTreeSet<String>,
    pub action: StepAction,
}

/// A checked pipeline: unique step names, known references, no cycles.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    /// The experiment its runs are recorded in (default: `pipeline-NAME`).
    pub experiment: String,
    pub config: SeedConfig,
    /// In dependency order (file order among steps that do not depend on each other).
    pub steps: Vec<Step>,
    /// The file's folder: relative paths start here.
    pub base_dir: PathBuf,
    /// The file (absolute), when the pipeline came from one: the `retrain` action runs it.
    pub file: Option<PathBuf>,
    /// The file's text, recorded with each run.
    pub text: String,
}

/// `${STEP.KEY}` references in a text.
fn references(text: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        if let Some((step, key)) = after[..end].split_once('.') {
            found.push((step.trim(), key.trim()));
        } else {
            found.push((after[..end].trim(), ""));
        }
        rest = &after[end + 1..];
    }
    found
}

/// Every string in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    pub fn from_file(path: &Path) -> Result<Pipeline, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpecError { origin: origin.clone(), message: format!("cannot read it: {e}") })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut pipeline = Pipeline::from_yaml(&text, &origin, &base)?;
        pipeline.file = Some(absolute);
        Ok(pipeline)
    }

    /// Parses and checks a pipeline; `origin` names it in errors, `base_dir` anchors relative
    /// paths.
    pub fn from_yaml(text: &str, origin: &str, base_dir: &Path) -> Result<Pipeline, SpecError> {
        let fail = |message: String| SpecError { origin: origin.to_owned(), message };
        let spec: PipelineSpec =
            serde_norway::from_str(text).map_err(|e| fail(format!("not a valid pipeline: {e}")))?;
        if spec.pipeline != 1 {
            return Err(fail(format!("unsupported format `pipeline: {}` (expected 1)", spec.pipeline)));
        }
        if spec.name.trim().is_empty() || spec.name.contains(['$', '/', '\'', '"']) {
            return Err(fail(format!("name '{}': give a name without '$', '/' or quotes", spec.name)));
        }
        if spec.steps.is_empty() {
            return Err(fail("steps: the pipeline has no steps".to_owned()));
        }
        let mut declared: Vec<(String, Vec<String>, StepAction)> = Vec::new();
        for (i, s) in spec.steps.into_iter().enumerate() {
            let mut actions: Vec<StepAction> = Vec::new();
            actions.extend(s.validate.map(StepAction::Validate));
            actions.extend(s.train.map(StepAction::Train));
            actions.extend(s.register.map(StepAction::Register));
            actions.extend(s.gate.map(StepAction::Gate));
            actions.extend(s.promote.map(StepAction::Promote));
            actions.extend(s.deploy.map(StepAction::Deploy));
            actions.extend(s.smoke_test.map(StepAction::SmokeTest));
            actions.extend(s.monitor.map(StepAction::Monitor));
            if actions.len() != 1 {
                return Err(fail(format!("steps[{i}]: give exactly one of {KINDS} ({} given)", actions.len())));
            }
            let action = actions.remove(0);
            let name = s.name.unwrap_or_else(|| action.kind().to_owned());
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
                return Err(fail(format!("steps[{i}]: name '{name}': use letters, digits, '_' and '-'")));
            }
            if declared.iter().any(|(n, ..)| *n == name) {
                return Err(fail(format!("steps[{i}]: a second step named '{name}': give it a `name`")));
            }
            if let StepAction::Train(t) = &action
                && t.candidates.is_empty()
            {
                return Err(fail(format!("steps[{i}] ({name}): train needs at least one candidate")));
            }
            declared.push((name, s.needs, action));
        }
        let mut steps = Vec::with_capacity(declared.len());
        for (name, needs, action) in &declared {
            let mut depends_on = BTreeSet::new();
            for need in needs {
                if !declared.iter().any(|(n, ..)| n == need) || need == name {
                    return Err(fail(format!("step '{name}': needs '{need}', which is not another step")));
                }
                depends_on.insert(need.clone());
            }
            let mut texts = Vec::new();
            strings(&action.to_value(), &mut texts);
            for text in &texts {
                for (step, key) in references(text) {
                    let Some((_, _, target)) = declared.iter().find(|(n, ..)| n == step) else {
                        return Err(fail(format!("step '{name}': '${{{step}.{key}}}' names no step '{step}'")));
                    };
                    if step == name {
                        return Err(fail(format!("step '{name}': '${{{step}.{key}}}' refers to itself")));
                    }
                    if !target.outputs().contains(&key) {
                        return Err(fail(format!(
                            "step '{name}': '${{{step}.{key}}}': a {} step's outputs are {}",
                            target.kind(),
                            target.outputs().join(", ")
                        )));
                    }
                    depends_on.insert(step.to_owned());
                }
            }
            steps.push(Step { name: name.clone(), depends_on, action: action.clone() });
        }
        let steps = dependency_order(steps).map_err(fail)?;
        Ok(Pipeline {
            experiment: spec.experiment.unwrap_or_else(|| format!("pipeline-{}", spec.name)),
            name: spec.name,
            config: spec.config,
            steps,
            base_dir: base_dir.to_path_buf(),
            file: None,
            text: text.to_owned(),
        })
    }

    /// Every step that depends on `name`, directly or not.
    pub fn dependents(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for step in &self.steps {
            if step.depends_on.contains(name) || step.depends_on.iter().any(|d| found.contains(d)) {
                found.insert(step.name.clone());
            }
        }
        found
    }

    /// A step's inputs with references replaced by the outputs recorded so far and relative
    /// paths made absolute.
    pub fn resolve(
        &self,
        step: &Step,
        outputs: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<StepAction, String> {
        let mut value = step.action.inputs();
        substitute(&mut value, outputs)?;
        let mut action = StepAction::from_value(step.action.kind(), value)
            .map_err(|e| format!("step '{}': after references were replaced: {e}", step.name))?;
        for path in action.paths_mut() {
            if !path.starts_with("dataset:") && Path::new(path.as_str()).is_relative() {
                *path = self.base_dir.join(&*path).display().to_string();
            }
        }
        Ok(action)
    }
}

/// A reference's value as text: strings as they are, other values as JSON.
fn output_text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

fn substitute(value: &mut Value, outputs: &BTreeMap<String, BTreeMap<String, Value>>) -> Result<(), String> {
    match value {
        Value::String(s) if s.contains("${") => {
            let refs: Vec<(String, String)> =
                references(s).into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())).collect();
            let mut text = s.clone();
            for (step, key) in refs {
                let found = outputs.get(&step).and_then(|o| o.get(&key)).ok_or_else(|| missing(&step, &key))?;
                text = text.replace(&format!("${{{step}.{key}}}"), &output_text(found));
            }
            *value = Value::String(text);
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|v| substitute(v, outputs)),
        Value::Object(m) => m.values_mut().try_for_each(|v| substitute(v, outputs)),
        _ => Ok(()),
    }
}

fn missing(step: &str, key: &str) -> String {
    format!("'${{{step}.{key}}}': step '{step}' recorded no output '{key}'")
}

/// Orders steps so each comes after everything it depends on; among ready steps, file order.
fn dependency_order(steps: Vec<Step>) -> Result<Vec<Step>, String> {
    let mut placed: Vec<Step> = Vec::with_capacity(steps.len());
    let mut waiting = steps;
    while !waiting.is_empty() {
        let ready = waiting.iter().position(|s| s.depends_on.iter().all(|d| placed.iter().any(|p| &p.name == d)));
        match ready {
            Some(i) => placed.push(waiting.remove(i)),
            None => {
                let names: Vec<&str> = waiting.iter().map(|s| s.name.as_str()).collect();
                return Err(format!("steps {} depend on each other in a cycle", names.join(", ")));
            }
        }
    }
    Ok(placed)
}

/// A step ready to run: its inputs resolved, and the file an executor needs made from the seed
/// configuration (a gate policy or a monitor configuration), if any.
#[derive(Debug, Clone)]
pub struct ResolvedStep {
    pub name: String,
    pub action: StepAction,
    /// The gate policy (`gate`) or monitor configuration (`monitor`) to apply, as YAML.
    pub generated: Option<String>,
    /// The step's own run.
    pub run_id: String,
    /// The pipeline's experiment (training runs go there too).
    pub experiment: String,
    pub config: SeedConfig,
    /// The pipeline file, for a `retrain` action.
    pub pipeline_file: Option<PathBuf>,
}

/// The gate policy a `gate` step applies when it names no policy file: the seed's bounds, and
/// the optional gates its fields turn on.
pub fn gate_policy(step: &GateStep, config: &SeedConfig) -> Value {
    let mut policy = serde_json::json!({"gates": 1});
    if step.data.is_some() || step.target.is_some() {
        let mut evaluation = serde_json::Map::new();
        if let Some(d) = &step.data {
            evaluation.insert("data".into(), Value::String(d.clone()));
        }
        if let Some(t) = &step.target {
            evaluation.insert("target".into(), Value::String(t.clone()));
        }
        policy["evaluation"] = Value::Object(evaluation);
    }
    if let Some(min) = config.min_accuracy {
        policy["metrics"] = serde_json::json!({"accuracy": {"min": min}});
    }
    if let Some(seconds) = config.max_inference_time {
        policy["latency"] = serde_json::json!({"max_p99_ms": seconds * 1000.0});
    }
    if step.drift {
        policy["drift"] = serde_json::json!({});
    }
    if let Some(tolerance) = step.champion_tolerance {
        policy["champion"] = serde_json::json!({"tolerance": tolerance});
        policy["signature"] = serde_json::json!({});
    }
    if let Some(column) = &step.sensitive_column {
        let mut fairness = serde_json::json!({"sensitive_column": column});
        if let Some(p) = &step.positive_label {
            fairness["positive_label"] = Value::String(p.clone());
        }
        if let Some(m) = step.max_demographic_parity_difference {
            fairness["max_demographic_parity_difference"] = serde_json::json!(m);
        }
        policy["fairness"] = fairness;
    }
    policy
}

/// The monitor configuration a `monitor` step applies when it names no file: the seed's
/// `alert_thresholds` as rules (their defaults when the seed gives none).
pub fn monitor_config(step: &MonitorStep, config: &SeedConfig, pipeline_file: Option<&Path>) -> Value {
    let mut out = serde_json::json!({"monitors": 1});
    if let Some(n) = step.window {
        out["window"] = serde_json::json!({"last": n});
    }
    if let Some(s) = step.interval_seconds {
        out["interval_seconds"] = serde_json::json!(s);
    }
    for (key, value) in [
        ("target", &step.target),
        ("sensitive_column", &step.sensitive_column),
        ("positive_label", &step.positive_label),
    ] {
        if let Some(v) = value {
            out[key] = Value::String(v.clone());
        }
    }
    let rule = |name: &str, metric: &str, op: &str, threshold: f64, severity: &str, action: Option<AlertAction>| {
        let mut r =
            serde_json::json!({"name": name, "metric": metric, "op": op, "threshold": threshold, "severity": severity});
        if let Some(n) = step.min_rows {
            r["min_rows"] = serde_json::json!(n);
        }
        if let Some(a) = action {
            r["action"] = serde_json::to_value(a).unwrap_or(Value::Null);
            if a == AlertAction::Retrain
                && let Some(file) = pipeline_file
            {
                r["pipeline"] = Value::String(file.display().to_string());
            }
        }
        r
    };
    let thresholds = &config.alert_thresholds;
    out["rules"] = serde_json::json!([
        rule("accuracy", "accuracy", "<", thresholds.min_accuracy.unwrap_or(0.8), "high", step.accuracy_action),
        rule("data-drift", "drift_share", ">", thresholds.max_drift.unwrap_or(0.1), "medium", step.drift_action),
    ]);
    if !step.webhooks.is_empty() {
        out["webhooks"] = step.webhooks.iter().map(|u| serde_json::json!({"url": u})).collect();
    }
    out
}

/// The YAML text of a generated file.
pub fn to_yaml(value: &Value) -> String {
    serde_norway::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEED: &str = "pipeline: 1\nname: seed\nconfig:\n  min_accuracy: 0.8\n  max_inference_time: 0.1\n  \
        alert_thresholds: {min_accuracy: 0.8, max_drift: 0.1}\nsteps:\n\
        - validate: {data: data.csv}\n\
        - train: {data: '${validate.data}', target: y, candidates: [{model: decision_tree, params: {max_depth: 3}}]}\n\
        - register: {model: '${train.model_uri}', name: m}\n\
        - gate: {model: '${register.model_uri}', data: '${validate.data}'}\n\
        - promote: {model: '${register.model_uri}'}\n\
        - deploy: {deployment: d, model: 'models:/m@production'}\n  needs: [promote]\n\
        - smoke_test: {deployment: '${deploy.deployment}', data: '${validate.data}', drop: [y]}\n\
        - monitor: {deployment: '${deploy.deployment}', target: y, accuracy_action: rollback}\n";

    fn parse(text: &str) -> Result<Pipeline, SpecError> {
        Pipeline::from_yaml(text, "p.yaml", Path::new("/base"))
    }

    #[test]
    fn the_seed_pipeline_parses_in_dependency_order() {
        let p = parse(SEED).unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["validate", "train", "register", "gate", "promote", "deploy", "smoke_test", "monitor"]);
        assert_eq!(p.experiment, "pipeline-seed");
        assert_eq!(p.steps[3].depends_on, BTreeSet::from(["register".to_owned(), "validate".to_owned()]));
        assert_eq!(p.steps[5].depends_on, BTreeSet::from(["promote".to_owned()]));
        assert_eq!(
            p.dependents("register"),
            BTreeSet::from(["gate", "promote", "deploy", "smoke_test", "monitor"].map(String::from))
        );
    }

    #[test]
    fn references_resolve_with_their_types_and_paths_become_absolute() {
        let p = parse(SEED).unwrap();
        let mut outputs = BTreeMap::new();
        outputs.insert("validate".to_owned(), BTreeMap::from([("data".to_owned(), Value::from("dataset:t@2"))]));
        let StepAction::Validate(v) = p.resolve(&p.steps[0], &outputs).unwrap() else { panic!() };
        assert_eq!(v.data, "/base/data.csv");
        let StepAction::Train(t) = p.resolve(&p.steps[1], &outputs).unwrap() else { panic!() };
        assert_eq!(t.data, "dataset:t@2");
        assert_eq!(t.candidates[0].params["max_depth"], ParamValue::Integer(3));
        let err = p.resolve(&p.steps[2], &outputs).unwrap_err();
        assert!(err.contains("step 'train' recorded no output 'model_uri'"), "{err}");
    }

    #[test]
    fn generated_policy_and_monitors_carry_the_seed_thresholds() {
        let p = parse(SEED).unwrap();
        let gate = GateStep { model: "models:/m/1".into(), data: Some("e.csv".into()), ..GateStep::default() };
        let policy = gate_policy(&gate, &p.config);
        assert_eq!(policy["metrics"]["accuracy"]["min"], 0.8);
        assert_eq!(policy["latency"]["max_p99_ms"], 100.0);
        assert_eq!(policy["evaluation"]["data"], "e.csv");
        let StepAction::Monitor(m) = &p.steps[7].action else { panic!() };
        let config = monitor_config(m, &p.config, Some(Path::new("/base/p.yaml")));
        assert_eq!(config["rules"][0]["threshold"], 0.8);
        assert_eq!(config["rules"][0]["action"], "rollback");
        assert_eq!(config["rules"][1]["metric"], "drift_share");
        assert_eq!(config["rules"][1]["threshold"], 0.1);
        assert!(to_yaml(&config).contains("drift_share"));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                SEED.replace("- validate: {data: data.csv}", "- validate: {data: data.csv, sute: s.yaml}"),
                "unknown field `sute`",
            ),
            (SEED.replace("'${train.model_uri}'", "'${train.model}'"), "a train step's outputs are run_id"),
            (SEED.replace("'${train.model_uri}'", "'${trian.model_uri}'"), "names no step 'trian'"),
            (SEED.replace("needs: [promote]", "needs: [promot]"), "needs 'promot'"),
            (SEED.replace("- register:", "- name: train\n  register:"), "a second step named 'train'"),
            (SEED.replace("pipeline: 1", "pipeline: 2"), "unsupported format"),
            (
                format!(
                    "{SEED}- name: extra\n  deploy: {{deployment: e, model: 'models:/m/1'}}\n  gate: {{model: x}}\n"
                ),
                "exactly one of",
            ),
            (SEED.replace("- validate: {data: data.csv}", "- validate: {data: data.csv}\n  needs: [monitor]"), "cycle"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected '{expected}' in: {err}");
            assert!(err.starts_with("p.yaml: "), "{err}");
        }
    }
}
