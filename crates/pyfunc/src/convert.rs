//! Converting a scikit-learn model to ONNX with skl2onnx, in the model's interpreter, and the
//! rows and answers to verify the conversion on (the worker-side script is `convert.py`).
//!
//! The script runs as the workers do: `python -I`, the scrubbed environment, a private folder.
//! It writes the ONNX file with an MLmodel naming it, the verification rows (Arrow) and what
//! scikit-learn itself answers on them; whoever runs the converted model compares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use arrow_array::RecordBatch;
use serde::Deserialize;
use serde_json::Value;

use crate::pool::{PoolSettings, worker_env};

/// The converter's program.
pub const CONVERT: &str = include_str!("convert.py");

/// What scikit-learn answered on the verification rows, and how the model was converted.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Expected {
    /// `double` or `float` inputs.
    #[serde(default)]
    pub precision: String,
    /// Versions of scikit-learn, skl2onnx, onnx, numpy, mlflow used.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// The model predicts rows with missing values (the verification rows include some).
    #[serde(default)]
    pub accepts_missing: bool,
    /// `classification` or `regression`.
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub classes: Option<Vec<Value>>,
    #[serde(default)]
    pub labels: Option<Vec<Value>>,
    /// Per row, per class (in `classes` order).
    #[serde(default)]
    pub probabilities: Option<Vec<Vec<f64>>>,
    /// Per row, the predicted values.
    #[serde(default)]
    pub values: Option<Vec<Vec<f64>>>,
}

/// A converted model: the folder to load it from, the rows and the expected answers.
pub struct Converted {
    /// Holds `MLmodel` (onnx flavor) and `model.onnx`.
    pub dir: PathBuf,
    pub rows: RecordBatch,
    pub expected: Expected,
}

#[derive(Deserialize)]
struct Failure {
    error: String,
}

/// Converts the model in `model_dir` into `out` (an empty folder) with the interpreter of
/// `settings`, within its load timeout; or why it could not.
pub async fn convert(settings: &PoolSettings, model_dir: &Path, out: &Path) -> Result<Converted, String> {
    // The converter runs in `out`: the paths it is given must not be relative.
    let model_dir = std::path::absolute(model_dir).unwrap_or_else(|_| model_dir.to_path_buf());
    let out = &std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let mut command = tokio::process::Command::new(&settings.python);
    command
        .arg("-I")
        .arg("-c")
        .arg(CONVERT)
        .arg(&model_dir)
        .arg(out)
        .env_clear()
        .envs(worker_env(settings, out))
        .current_dir(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = command.output();
    let output = tokio::time::timeout(settings.load_timeout, run)
        .await
        .map_err(|_| format!("the conversion took longer than {} s", settings.load_timeout.as_secs()))?
        .map_err(|e| format!("starting {}: {e}", settings.python.display()))?;
    let report = std::fs::read(out.join("report.json")).unwrap_or_default();
    if !output.status.success() {
        if let Ok(failure) = serde_json::from_slice::<Failure>(&report) {
            return Err(failure.error);
        }
        let log = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        return Err(format!(
            "the converter exited ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let expected: Expected =
        serde_json::from_slice(&report).map_err(|e| format!("the converter's report is not readable: {e}"))?;
    let rows = std::fs::read(out.join("rows.arrow")).map_err(|e| format!("the verification rows: {e}"))?;
    let rows = crate::frame::ipc_decode(&rows).map_err(|e| format!("the verification rows: {e}"))?;
    Ok(Converted { dir: out.to_path_buf(), rows, expected })
}
