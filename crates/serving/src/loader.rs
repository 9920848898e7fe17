//! Loading a model folder for serving, whatever runs it: Shipyard's engines (the `shipyard`
//! and `onnx` flavors, compiled on the blocking pool) or Python workers (any other MLflow model
//! with a `python_function` flavor, when the server was given an interpreter). A scikit-learn
//! model is first converted to ONNX and verified ([`crate::conversion`]): it runs on Shipyard's
//! engine when the conversion answers as the model does, on Python workers otherwise.

use std::path::{Path, PathBuf};

use shipyard_pyfunc::PoolSettings;
use shipyard_runtime::{EngineChoice, LoadedModel, ModelFile, Output, PythonFlavor};

use crate::Engine;
use crate::conversion::{self, SklearnEngine};
use crate::python::PythonModel;

/// How a server loads models.
#[derive(Clone, Debug)]
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

impl Loader {
    /// Loads the model at `path`; `files` is the temporary folder holding it, if it was fetched
    /// (a Python model keeps it: its workers may need to load it again). `label` names the
    /// model in messages.
    pub async fn load(&self, path: PathBuf, files: Option<tempfile::TempDir>, label: &str) -> Result<Engine, String> {
        self.load_with_choice(path, files, label).await.map(|(engine, _)| engine)
    }

    /// [`Loader::load`], with the engine chosen and why.
    pub async fn load_with_choice(
        &self,
        path: PathBuf,
        files: Option<tempfile::TempDir>,
        label: &str,
    ) -> Result<(Engine, Choice), String> {
        let model_file = path.join("MLmodel").is_file().then(|| ModelFile::read(&path));
        if let Some(Ok(file)) = model_file
            && let Some(flavor) = PythonFlavor::of(&file.flavors)
        {
            let Some(settings) = &self.python else {
                return Err(format!(
                    "{label} is a Python model (loader {}): start the server with --python PATH, an interpreter with the model's packages, to serve it",
                    flavor.loader_module
                ));
            };
            let why_python = if flavor.sklearn.is_none() {
                "not a scikit-learn model".to_owned()
            } else if self.sklearn == SklearnEngine::Python {
                "conversion turned off (--sklearn-engine python)".to_owned()
            } else {
                match self.converted(settings, &path, label).await {
                    Ok((model, reason)) => {
                        tracing::info!(model = label, "serving the ONNX conversion: {reason}");
                        let engine = Engine::Converted(std::sync::Arc::new(model));
                        return Ok((engine, Choice { engine: "onnx-converted".into(), reason }));
                    }
                    Err(reason) => {
                        tracing::info!(model = label, "serving with Python workers: {reason}");
                        reason
                    }
                }
            };
            let mut settings = settings.clone();
            if flavor.sklearn.is_none() {
                // A custom model's answer need not have one row per input row: never joined.
                settings.max_batch_rows = 0;
            }
            let model = PythonModel::start(path, files, file, flavor, settings, label.to_owned())
                .await
                .map_err(|e| e.to_string())?;
            return Ok((Engine::from(model), Choice { engine: "python".into(), reason: why_python }));
        }
        let engine = self.engine;
        // Loading compiles the model: CPU work, off the reactor. The files can go afterwards.
        let model = tokio::task::spawn_blocking(move || LoadedModel::load(&path, engine))
            .await
            .map_err(|e| format!("the loading task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        drop(files);
        let choice = Choice { engine: model.engine_name.into(), reason: format!("the {} flavor", model.flavor) };
        Ok((Engine::from(model), choice))
    }

    /// The model converted to ONNX and loaded on Shipyard's engine, with the verification's
    /// summary; or why it is not served so.
    async fn converted(
        &self,
        settings: &PoolSettings,
        path: &Path,
        label: &str,
    ) -> Result<(LoadedModel, String), String> {
        let out = tempfile::Builder::new()
            .prefix("shipyard-convert-")
            .tempdir()
            .map_err(|e| format!("creating a folder for the conversion: {e}"))?;
        let converted = shipyard_pyfunc::convert::convert(settings, path, out.path())
            .await
            .map_err(|e| format!("conversion to ONNX failed: {e}"))?;
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
        let summary = format!(
            "ONNX conversion ({} inputs, skl2onnx {}) {}",
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
