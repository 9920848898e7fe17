//! Loading a model folder for serving, whatever runs it: Shipyard's engines (the `shipyard`
//! and `onnx` flavors, compiled on the blocking pool) or Python workers (any other MLflow model
//! with a `python_function` flavor, when the server was given an interpreter).

use std::path::PathBuf;

use shipyard_pyfunc::PoolSettings;
use shipyard_runtime::{EngineChoice, LoadedModel, ModelFile, PythonFlavor};

use crate::Engine;
use crate::python::PythonModel;

/// How a server loads models.
#[derive(Clone, Debug)]
pub struct Loader {
    /// Which engine runs ONNX models.
    pub engine: EngineChoice,
    /// How Python models are served; `None`: they are refused, naming the flag.
    pub python: Option<PoolSettings>,
}

impl Loader {
    /// Loads the model at `path`; `files` is the temporary folder holding it, if it was fetched
    /// (a Python model keeps it: its workers may need to load it again). `label` names the
    /// model in messages.
    pub async fn load(&self, path: PathBuf, files: Option<tempfile::TempDir>, label: &str) -> Result<Engine, String> {
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
            let model = PythonModel::start(path, files, file, flavor, settings.clone(), label.to_owned())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Engine::from(model));
        }
        let engine = self.engine;
        // Loading compiles the model: CPU work, off the reactor. The files can go afterwards.
        let model = tokio::task::spawn_blocking(move || LoadedModel::load(&path, engine))
            .await
            .map_err(|e| format!("the loading task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        drop(files);
        Ok(Engine::from(model))
    }
}
