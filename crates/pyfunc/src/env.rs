//! A model's own Python environment, built with `uv` from what MLflow logged with it
//! (`python_env.yaml` and `requirements.txt`), as `mlflow models serve --env-manager uv` does,
//! and kept: environments are keyed by the content of those files, built once (at load, never
//! per request) and shared by every model that pins the same packages.
//!
//! Layout: `ROOT/<key>/` is a virtual environment with `shipyard-env.json` (the key, the
//! Python asked for and the one found, `uv pip freeze`); `ROOT/uv-cache` is uv's cache, on the
//! same file system so environments hard-link their files. An environment is built in
//! `ROOT/<key>.building-<pid>-<n>` and renamed into place when complete: a crash leaves no
//! half-built environment under the key, and two processes building the same one at once end
//! with one (the second rename finds the first and discards its own).
//!
//! The interpreter: `uv venv --python MAJOR.MINOR` of the logged Python, so any installed patch
//! release serves (the worker's version check refuses another minor). uv looks for installed
//! interpreters first; a Python version not installed here is downloaded by uv, which needs
//! network access (`UV_PYTHON_DOWNLOADS=never` forbids it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Where model environments are built and with which `uv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UvEnvironments {
    /// The `uv` program.
    pub uv: PathBuf,
    /// The folder holding the environments.
    pub root: PathBuf,
}

/// Packages every environment gets beside the model's: the worker's data channel.
const WORKER_PACKAGES: &[&str] = &["pyarrow"];
/// And a scikit-learn model's, for its conversion to ONNX.
const CONVERSION_PACKAGES: &[&str] = &["skl2onnx"];
/// The record written into a finished environment.
const RECORD: &str = "shipyard-env.json";

/// MLflow's `python_env.yaml`.
#[derive(Debug, Default, Deserialize)]
struct PythonEnv {
    #[serde(default)]
    python: Option<String>,
    #[serde(default)]
    build_dependencies: Vec<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// An environment ready to run a model.
#[derive(Clone, Debug)]
pub struct Environment {
    /// Its interpreter.
    pub python: PathBuf,
    /// Whether this call built it (else it was there).
    pub built: bool,
    /// How long building took.
    pub took: Duration,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// What the model's environment holds: the logged Python (`None`: not said) and the
/// requirement lines (build dependencies, then the model's, then the worker's).
fn requirements(model_dir: &Path, converts: bool) -> Result<(Option<String>, Vec<String>), String> {
    let env_file = model_dir.join("python_env.yaml");
    let env: PythonEnv = match std::fs::read_to_string(&env_file) {
        Ok(text) => serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", env_file.display()))?,
        Err(_) => PythonEnv::default(),
    };
    let mut lines: Vec<String> = env.build_dependencies.clone();
    let mut read_file = false;
    for dependency in &env.dependencies {
        match dependency.trim().strip_prefix("-r") {
            Some(file) => {
                // Only the model's own requirements file: a path leaving the folder is refused.
                let name = file.trim();
                if name.contains('/') || name.contains("..") {
                    return Err(format!("python_env.yaml names a requirements file outside the model: {name}"));
                }
                let path = model_dir.join(name);
                let text = std::fs::read_to_string(&path).map_err(|e| io("reading", &path, e))?;
                lines.extend(requirement_lines(&text));
                read_file = true;
            }
            None => lines.push(dependency.trim().to_owned()),
        }
    }
    if !read_file {
        // Models older than python_env.yaml (MLflow < 1.26): requirements.txt alone.
        let path = model_dir.join("requirements.txt");
        if let Ok(text) = std::fs::read_to_string(&path) {
            lines.extend(requirement_lines(&text));
        }
    }
    if lines.is_empty() {
        return Err("the model names no requirements (no python_env.yaml or requirements.txt)".into());
    }
    lines.extend(WORKER_PACKAGES.iter().map(|p| (*p).to_owned()));
    if converts {
        lines.extend(CONVERSION_PACKAGES.iter().map(|p| (*p).to_owned()));
    }
    Ok((env.python, lines))
}

/// The requirement lines of a requirements file: no comments, no options that reach other
/// files or indexes (`-r`, `-c`, `--index-url`: an environment is built from PyPI's names).
fn requirement_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// `3.11.7` → `3.11`.
fn major_minor(version: &str) -> String {
    version.trim().split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The content key: SHA-256 over the Python asked for and the requirement lines.
fn key_of(python: &str, lines: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"shipyard-env 1\n");
    hasher.update(python.as_bytes());
    for line in lines {
        hasher.update(b"\n");
        hasher.update(line.as_bytes());
    }
    hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl UvEnvironments {
    /// The environment of the model in `model_dir` (`converts`: with the converter's packages),
    /// built now if it is not there; within `timeout`.
    pub async fn ensure(&self, model_dir: &Path, converts: bool, timeout: Duration) -> Result<Environment, String> {
        let (logged, lines) = requirements(model_dir, converts)?;
        let python = logged.as_deref().map(major_minor).unwrap_or_default();
        let key = key_of(&python, &lines);
        let target = self.root.join(&key);
        let interpreter = target.join("bin").join("python");
        if target.join(RECORD).is_file() && interpreter.exists() {
            return Ok(Environment { python: interpreter, built: false, took: Duration::ZERO });
        }
        let started = Instant::now();
        tokio::time::timeout(timeout, self.build(&key, &python, &lines))
            .await
            .map_err(|_| format!("building the model's environment took longer than {} s", timeout.as_secs()))??;
        Ok(Environment { python: interpreter, built: true, took: started.elapsed() })
    }

    async fn build(&self, key: &str, python: &str, lines: &[String]) -> Result<(), String> {
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::create_dir_all(&self.root).map_err(|e| io("creating", &self.root, e))?;
        let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let building = self.root.join(format!("{key}.building-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        let result = self.build_in(&building, python, lines).await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&building);
            return Err(e);
        }
        let target = self.root.join(key);
        if std::fs::rename(&building, &target).is_err() {
            // Another process finished the same environment first: it serves.
            let _ = std::fs::remove_dir_all(&building);
            if !target.join(RECORD).is_file() {
                return Err(format!("cannot move the environment into {}", target.display()));
            }
        }
        Ok(())
    }

    async fn build_in(&self, dir: &Path, python: &str, lines: &[String]) -> Result<(), String> {
        // Built under another name and renamed: `--relocatable` makes its scripts and
        // activation find it wherever it ends up (workers run `bin/python` itself anyway).
        let mut venv = vec!["venv".to_owned(), "--quiet".to_owned(), "--relocatable".to_owned()];
        if !python.is_empty() {
            venv.extend(["--python".to_owned(), python.to_owned()]);
        }
        venv.push(dir.display().to_string());
        self.uv(&venv, "creating the environment").await?;
        let requirements = dir.join("shipyard-requirements.txt");
        std::fs::write(&requirements, lines.join("\n") + "\n").map_err(|e| io("writing", &requirements, e))?;
        let interpreter = dir.join("bin").join("python");
        let install = [
            "pip".to_owned(),
            "install".to_owned(),
            "--quiet".to_owned(),
            "--python".to_owned(),
            interpreter.display().to_string(),
            "-r".to_owned(),
            requirements.display().to_string(),
        ];
        self.uv(&install, "installing the model's requirements").await?;
        let freeze = ["pip".to_owned(), "freeze".to_owned(), "--python".to_owned(), interpreter.display().to_string()];
        let frozen = self.uv(&freeze, "listing the environment").await?;
        let found = tokio::process::Command::new(&interpreter)
            .args(["-I", "-c", "import platform; print(platform.python_version())"])
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let record = serde_json::json!({
            "python_requested": python,
            "python": found,
            "requirements": lines,
            "frozen": frozen.lines().collect::<Vec<_>>(),
        });
        let path = dir.join(RECORD);
        std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap_or_default())
            .map_err(|e| io("writing", &path, e))
    }

    /// Runs `uv ARGS` with its cache in the root; its standard output, or the tail of its errors.
    async fn uv(&self, args: &[String], what: &str) -> Result<String, String> {
        let output = tokio::process::Command::new(&self.uv)
            .args(args)
            .env("UV_CACHE_DIR", self.root.join("uv-cache"))
            .env("UV_NO_PROGRESS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("{what}: starting {}: {e}", self.uv.display()))?;
        if !output.status.success() {
            let log = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).rev().take(4).collect();
            return Err(format!(
                "{what} failed ({}): {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_come_from_python_env_then_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("python_env.yaml"),
            "python: 3.11.7\nbuild_dependencies:\n- pip==23.2.1\ndependencies:\n- -r requirements.txt\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("requirements.txt"),
            "mlflow==2.19.0\n# a comment\n--index-url http://elsewhere\nscikit-learn==1.6.0  # pinned\n",
        )
        .unwrap();
        let (python, lines) = requirements(dir.path(), true).unwrap();
        assert_eq!(python.as_deref(), Some("3.11.7"));
        assert_eq!(lines, ["pip==23.2.1", "mlflow==2.19.0", "scikit-learn==1.6.0", "pyarrow", "skl2onnx"]);
        assert_eq!(major_minor("3.11.7"), "3.11");
        let key = key_of("3.11", &lines);
        assert_eq!(key.len(), 32);
        assert_ne!(key, key_of("3.12", &lines));
        std::fs::write(dir.path().join("python_env.yaml"), "dependencies:\n- -r ../../etc/passwd\n").unwrap();
        assert!(requirements(dir.path(), false).unwrap_err().contains("outside the model"));
    }
}
