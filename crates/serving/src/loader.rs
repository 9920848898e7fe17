//! Loading a model folder for serving, whatever runs it: Shipyard's engines (the `shipyard`
//! and `onnx` flavors, compiled on the blocking pool) or Python workers (any other MLflow model
//! with a `python_function` flavor, when the server was given an interpreter). A scikit-learn
//! model is first converted to ONNX and verified ([`crate::conversion`]): it runs on Shipyard's
//! engine when the conversion answers as the model does, on Python workers otherwise. A
//! conversion is kept with the model's files in the store ([`convert::CACHE_DIR`]): a later
//! load, here or on another server, verifies it again on this engine (milliseconds) and needs
//! no Python at all.

use std::path::{Path, PathBuf};

use shipyard_pyfunc::PoolSettings;
use shipyard_pyfunc::convert::{self, ConvertError};
use shipyard_runtime::{EngineChoice, LoadedModel, ModelFile, Output, PythonFlavor};

use crate::Engine;
use crate::conversion::{self, SklearnEngine};
use crate::python::PythonModel;

/// How a server loads models (by default: the native engines, Python models refused).
#[derive(Clone, Debug, Default)]
pub struct Loader {
    /// Which engine runs ONNX models.
    pub engine: EngineChoice,
    /// How Python models are served; `None`: they are refused, naming the flag.
    pub python: Option<PoolSettings>,
    /// Whether scikit-learn models are converted.
    pub sklearn: SklearnEngine,
}

/// Which engine a loaded model got, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// `native`, `onnx-native`, `onnxruntime`, `onnx-converted` or `python`.
    pub engine: String,
    pub reason: String,
}

/// The version tag naming the engine that serves it; `shipyard.engine.reason` says why.
pub const ENGINE_TAG: &str = "shipyard.engine";

impl Choice {
    /// The version tags that record the choice.
    pub fn tags(&self) -> [(&'static str, String); 2] {
        // MLflow's limit on a tag value is 5,000 characters.
        let reason: String = self.reason.chars().take(4_900).collect();
        [(ENGINE_TAG, self.engine.clone()), ("shipyard.engine.reason", reason)]
    }
}

/// Why a scikit-learn model is not converted when told not to.
const CONVERSION_OFF: &str = "conversion turned off (--sklearn-engine python)";

/// A loaded model, the engine chosen, and a new conversion to keep with the model's files.
pub struct Loaded {
    pub engine: Engine,
    pub choice: Choice,
    /// A conversion made by this load (its ONNX file and verification rows, or the
    /// converter's refusal), to be copied into the model's [`CACHE_DIR`] in the store so the
    /// next load reads it instead of converting again.
    pub new_conversion: Option<tempfile::TempDir>,
}

/// What the conversion step decided for a scikit-learn model.
struct Conversion {
    /// The converted model and the verification's summary, or why Python serves it.
    outcome: Result<(LoadedModel, String), String>,
    new_conversion: Option<tempfile::TempDir>,
}

impl Loader {
    /// Loads the model at `path`; `files` is the temporary folder holding it, if it was fetched
    /// (a Python model keeps it: its workers may need to load it again). `label` names the
    /// model in messages.
    pub async fn load(&self, path: PathBuf, files: Option<tempfile::TempDir>, label: &str) -> Result<Loaded, String> {
        let model_file = path.join("MLmodel").is_file().then(|| ModelFile::read(&path));
        if let Some(Ok(file)) = model_file
            && let Some(flavor) = PythonFlavor::of(&file.flavors)
        {
            let mut new_conversion = None;
            let why_python = if flavor.sklearn.is_none() {
                "not a scikit-learn model".to_owned()
            } else if self.sklearn == SklearnEngine::Python {
                CONVERSION_OFF.to_owned()
            } else {
                let conversion = self.converted(&path, label).await;
                new_conversion = conversion.new_conversion;
                match conversion.outcome {
                    Ok((model, reason)) => {
                        tracing::info!(model = label, "serving the ONNX conversion: {reason}");
                        let engine = Engine::Converted(std::sync::Arc::new(model));
                        let choice = Choice { engine: "onnx-converted".into(), reason };
                        return Ok(Loaded { engine, choice, new_conversion });
                    }
                    Err(reason) => reason,
                }
            };
            let Some(mut settings) = self.interpreter(&path, false, label).await? else {
                return Err(format!(
                    "{label} is a Python model (loader {}) and needs Python workers ({why_python}): start the server with --python PATH (an interpreter with the model's packages) or --env-manager uv",
                    flavor.loader_module
                ));
            };
            tracing::info!(model = label, "serving with Python workers: {why_python}");
            if flavor.sklearn.is_none() {
                // A custom model's answer need not have one row per input row: never joined.
                settings.max_batch_rows = 0;
            }
            let model = PythonModel::start(path, files, file, flavor, settings, label.to_owned())
                .await
                .map_err(|e| e.to_string())?;
            let choice = Choice { engine: "python".into(), reason: why_python };
            return Ok(Loaded { engine: Engine::from(model), choice, new_conversion });
        }
        let engine = self.engine;
        // Loading compiles the model: CPU work, off the reactor. The files can go afterwards.
        let model = tokio::task::spawn_blocking(move || LoadedModel::load(&path, engine))
            .await
            .map_err(|e| format!("the loading task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        drop(files);
        let choice = Choice { engine: model.engine_name.into(), reason: format!("the {} flavor", model.flavor) };
        Ok(Loaded { engine: Engine::from(model), choice, new_conversion: None })
    }

    /// The pool settings for the model at `path`: the operator's interpreter, or the model's
    /// own environment (built now if new; `converts`: with the converter's packages); `None`
    /// when Python models are not served.
    async fn interpreter(&self, path: &Path, converts: bool, label: &str) -> Result<Option<PoolSettings>, String> {
        let Some(settings) = &self.python else { return Ok(None) };
        let Some(environments) = &settings.environments else { return Ok(Some(settings.clone())) };
        // The converter's packages are asked for whenever the model is scikit-learn's, so the
        // conversion and the workers share one environment.
        let converts = converts
            || ModelFile::read(path)
                .ok()
                .and_then(|f| PythonFlavor::of(&f.flavors))
                .is_some_and(|f| f.sklearn.is_some());
        let environment = environments
            .ensure(path, converts, settings.load_timeout.max(std::time::Duration::from_secs(600)))
            .await
            .map_err(|e| format!("the model's environment: {e}"))?;
        if environment.built {
            tracing::info!(
                model = label,
                "built the model's environment in {:.1} s: {}",
                environment.took.as_secs_f64(),
                environment.python.display()
            );
        }
        Ok(Some(PoolSettings { python: environment.python, ..settings.clone() }))
    }

    /// For a scikit-learn model, the engine a load would choose (converting it, or reading a
    /// kept conversion) and a new conversion to keep, without starting any worker: what a
    /// registration prepares so the first load is quick. `None` for other models.
    pub async fn prepare(&self, path: &Path, label: &str) -> Option<(Choice, Option<tempfile::TempDir>)> {
        let file = ModelFile::read(path).ok()?;
        PythonFlavor::of(&file.flavors)?.sklearn?;
        if self.sklearn == SklearnEngine::Python {
            return Some((Choice { engine: "python".into(), reason: CONVERSION_OFF.into() }, None));
        }
        let conversion = self.converted(path, label).await;
        let choice = match conversion.outcome {
            Ok((_, reason)) => Choice { engine: "onnx-converted".into(), reason },
            Err(reason) => Choice { engine: "python".into(), reason },
        };
        Some((choice, conversion.new_conversion))
    }

    /// The scikit-learn model at `path` converted to ONNX and loaded on Shipyard's engine, with
    /// the verification's summary; or why it is not served so. A conversion kept with the
    /// model's files under the same key is used (and verified again on this engine) without
    /// starting Python; otherwise the model is converted now, and the new conversion (or the
    /// converter's refusal) is handed back to be kept.
    async fn converted(&self, path: &Path, label: &str) -> Conversion {
        let dir = path.to_path_buf();
        let key = match tokio::task::spawn_blocking(move || convert::model_key(&dir)).await {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => return Conversion::without(format!("reading the model's files: {e}")),
            Err(e) => return Conversion::without(format!("the hashing task failed: {e}")),
        };
        let kept = path.join(convert::CACHE_DIR);
        match KeptConversion::read(&kept) {
            Some(record) if record.key == key => match record.refused {
                Some(reason) => return Conversion::without(format!("{reason} (kept from an earlier attempt)")),
                None => match convert::read_converted(&kept) {
                    Ok(converted) => {
                        let outcome = self.verified(converted, label, "kept ONNX conversion").await;
                        return Conversion { outcome, new_conversion: None };
                    }
                    Err(e) => tracing::warn!(model = label, "the kept conversion is unreadable, converting again: {e}"),
                },
            },
            Some(_) => tracing::info!(model = label, "the kept conversion is of other files, converting again"),
            None => {}
        }
        let settings = match self.interpreter(path, true, label).await {
            Ok(Some(settings)) => settings,
            Ok(None) => {
                return Conversion::without(
                    "no conversion is kept with the model and no Python (--python, --env-manager uv) can make one"
                        .into(),
                );
            }
            Err(e) => return Conversion::without(e),
        };
        let out = match tempfile::Builder::new().prefix("shipyard-convert-").tempdir() {
            Ok(out) => out,
            Err(e) => return Conversion::without(format!("creating a folder for the conversion: {e}")),
        };
        match convert::convert(&settings, path, out.path()).await {
            Ok(converted) => {
                let keep = KeptConversion { key, refused: None }.write(out.path());
                let outcome = self.verified(converted, label, "ONNX conversion").await;
                Conversion { outcome, new_conversion: keep.ok().map(|()| out) }
            }
            Err(ConvertError::Refused(reason)) => {
                let reason = format!("conversion to ONNX refused: {reason}");
                // Only the verdict is kept: nothing else the converter left.
                let keep = tempfile::Builder::new()
                    .prefix("shipyard-convert-")
                    .tempdir()
                    .ok()
                    .filter(|d| KeptConversion { key, refused: Some(reason.clone()) }.write(d.path()).is_ok());
                Conversion { outcome: Err(reason), new_conversion: keep }
            }
            Err(ConvertError::Failed(reason)) => Conversion::without(format!("conversion to ONNX failed: {reason}")),
        }
    }

    /// Runs `converted` on Shipyard's engine over its verification rows and compares with
    /// scikit-learn's answers: the loaded model when they agree (or when told to serve it
    /// regardless), else why not.
    async fn verified(
        &self,
        converted: convert::Converted,
        label: &str,
        what: &str,
    ) -> Result<(LoadedModel, String), String> {
        let dir = converted.dir.clone();
        let rows = converted.rows.clone();
        // As MLflow lets a required double column hold NaN, the conversion predicts missing
        // values when the model does: the verification rows hold some then.
        let accepts_missing = converted.expected.accepts_missing;
        let loaded = tokio::task::spawn_blocking(move || -> Result<(LoadedModel, Output), String> {
            let mut model = LoadedModel::load(&dir, EngineChoice::Native)
                .map_err(|e| format!("Shipyard's engine cannot run the conversion: {e}"))?;
            model.missing_values_allowed = accepts_missing;
            let output = model
                .predict(std::slice::from_ref(&rows))
                .map_err(|e| format!("Shipyard's engine failed on the verification rows: {e}"))?;
            Ok((model, output))
        })
        .await
        .map_err(|e| format!("the verification task failed: {e}"))?;
        let (model, output) = loaded?;
        let verification = conversion::verify(&converted.expected, &output);
        // The report goes with the conversion (kept with the version when it is new).
        let report = converted.dir.join(VERIFICATION_REPORT);
        if let Err(e) = serde_json::to_vec_pretty(&verification)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&report, bytes))
        {
            tracing::warn!(model = label, "cannot write {}: {e}", report.display());
        }
        let summary = format!(
            "{what} ({} inputs, skl2onnx {}) {}",
            converted.expected.precision,
            converted.expected.versions.get("skl2onnx").map_or("?", String::as_str),
            verification.summary()
        );
        match (verification.passed, self.sklearn) {
            (true, _) => Ok((model, summary)),
            (false, SklearnEngine::Onnx) => {
                tracing::warn!(model = label, "serving the conversion as told (--sklearn-engine onnx): {summary}");
                Ok((model, summary))
            }
            (false, _) => Err(summary),
        }
    }
}

impl Conversion {
    fn without(reason: String) -> Conversion {
        Conversion { outcome: Err(reason), new_conversion: None }
    }
}

/// The record of a kept conversion, [`KEPT_RECORD`] in [`convert::CACHE_DIR`]: the model files' key
/// it was made from, and the converter's refusal when there is no ONNX file.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptConversion {
    key: String,
    #[serde(default)]
    refused: Option<String>,
}

pub const KEPT_RECORD: &str = "conversion.json";
/// The verification's outcome on Shipyard's engine, beside the conversion.
pub const VERIFICATION_REPORT: &str = "verification.json";

impl KeptConversion {
    fn read(dir: &Path) -> Option<KeptConversion> {
        serde_json::from_slice(&std::fs::read(dir.join(KEPT_RECORD)).ok()?).ok()
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join(KEPT_RECORD), serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }
}
