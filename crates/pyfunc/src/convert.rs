//! Converting a scikit-learn model to ONNX with skl2onnx, in the model's interpreter, and the
//! rows and answers to verify the conversion on (the worker-side script is `convert.py`).
//!
//! The script runs as the workers do: `python -I`, the scrubbed environment, a private folder.
//! It writes the ONNX file with an MLmodel naming it, the verification rows (Arrow) and what
//! scikit-learn itself answers on them; whoever runs the converted model compares.
//!
//! A conversion depends only on the model's files and this converter, so its output is kept
//! with the model version ([`CACHE_DIR`], keyed by [`model_key`]) and read back
//! ([`read_converted`]) instead of being made again: no Python is started for it.

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
    /// The converter's verdict on the model itself (no converter for an estimator, say), the
    /// same at every attempt: worth keeping. Not so a load failure or a timeout.
    #[serde(default)]
    refused: bool,
}

/// Why a model was not converted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// skl2onnx cannot convert this model: another attempt gives the same answer.
    #[error("{0}")]
    Refused(String),
    /// The attempt failed (the interpreter, a timeout, a load error): another may not.
    #[error("{0}")]
    Failed(String),
}

/// The folder, inside a model's own folder, that holds its conversion.
pub const CACHE_DIR: &str = "shipyard-conversion";

/// The content key of a model folder for its conversion: SHA-256 over this converter's
/// program and every file of the model (relative path and bytes, in path order), except a
/// conversion kept in [`CACHE_DIR`].
pub fn model_key(model_dir: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    let mut pending = vec![model_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                if dir != model_dir || entry.file_name() != CACHE_DIR {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(CONVERT.as_bytes());
    for file in files {
        let relative = file.strip_prefix(model_dir).unwrap_or(&file).to_string_lossy().into_owned();
        hasher.update((relative.len() as u64).to_le_bytes());
        hasher.update(relative.as_bytes());
        let bytes = std::fs::read(&file)?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Converts the model in `model_dir` into `out` (an empty folder) with the interpreter of
/// `settings`, within its load timeout; or why it could not.
pub async fn convert(settings: &PoolSettings, model_dir: &Path, out: &Path) -> Result<Converted, ConvertError> {
    let failed = ConvertError::Failed;
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
        .map_err(|_| failed(format!("the conversion took longer than {} s", settings.load_timeout.as_secs())))?
        .map_err(|e| failed(format!("starting {}: {e}", settings.python.display())))?;
    if !output.status.success() {
        let report = std::fs::read(out.join("report.json")).unwrap_or_default();
        if let Ok(failure) = serde_json::from_slice::<Failure>(&report) {
            return Err(if failure.refused { ConvertError::Refused(failure.error) } else { failed(failure.error) });
        }
        let log = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        return Err(failed(format!(
            "the converter exited ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    read_converted(out).map_err(failed)
}

/// A conversion written by [`convert`] into `dir`, read back.
pub fn read_converted(dir: &Path) -> Result<Converted, String> {
    let report = std::fs::read(dir.join("report.json")).map_err(|e| format!("the converter's report: {e}"))?;
    let expected: Expected =
        serde_json::from_slice(&report).map_err(|e| format!("the converter's report is not readable: {e}"))?;
    let rows = std::fs::read(dir.join("rows.arrow")).map_err(|e| format!("the verification rows: {e}"))?;
    let rows = crate::frame::ipc_decode(&rows).map_err(|e| format!("the verification rows: {e}"))?;
    Ok(Converted { dir: dir.to_path_buf(), rows, expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_model_files_and_not_the_kept_conversion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("MLmodel"), "flavors: {}").unwrap();
        std::fs::create_dir(dir.path().join("code")).unwrap();
        std::fs::write(dir.path().join("code").join("m.py"), "x = 1").unwrap();
        let key = model_key(dir.path()).unwrap();
        assert_eq!(key.len(), 64);
        std::fs::create_dir(dir.path().join(CACHE_DIR)).unwrap();
        std::fs::write(dir.path().join(CACHE_DIR).join("model.onnx"), "onnx").unwrap();
        assert_eq!(model_key(dir.path()).unwrap(), key, "a kept conversion is not part of the model");
        std::fs::write(dir.path().join("code").join("m.py"), "x = 2").unwrap();
        assert_ne!(model_key(dir.path()).unwrap(), key, "changed code is another model");
        // A file moved between names is another model too.
        std::fs::write(dir.path().join("code").join("m.py"), "x = 1").unwrap();
        std::fs::rename(dir.path().join("code").join("m.py"), dir.path().join("code").join("n.py")).unwrap();
        assert_ne!(model_key(dir.path()).unwrap(), key);
    }
}
