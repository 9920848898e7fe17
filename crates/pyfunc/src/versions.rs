//! Whether a Python environment can safely unpickle a model: the versions the model was saved
//! with (its `requirements.txt` pins and MLmodel's `python_version`) against the ones the
//! worker's interpreter has.
//!
//! A pickle of scikit-learn estimators is only defined for the scikit-learn release that wrote
//! it: a tree pickled by 1.3+ fails under 1.2 ("node array ... incompatible dtype"), others load
//! and predict differently with at most a warning (scikit-learn#25297). numpy 2 pickles do not
//! load under numpy 1 (`No module named 'numpy._core'`, numpy#27084); cloudpickle's format and
//! Python's bytecode (pickled functions) change across their major and minor releases. So a
//! worker whose versions differ on those parts is refused before anything is unpickled, with
//! both versions named; other packages may differ (MLflow itself only warns).

use std::collections::BTreeMap;

/// What the model was saved with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// MLmodel's `python_function.python_version`.
    pub python: Option<String>,
    /// `name==version` lines of `requirements.txt`, by normalised name.
    pub pins: BTreeMap<String, String>,
}

/// The packages whose version must match, and how many leading parts must be equal.
const MUST_MATCH: [(&str, usize); 4] = [("scikit-learn", 2), ("numpy", 1), ("cloudpickle", 1), ("skops", 2)];

/// A package name as pip compares them (PEP 503: case and `-_.` runs folded).
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The exact pins (`name==version`) of a requirements file; other lines are skipped.
pub fn parse_requirements(text: &str) -> BTreeMap<String, String> {
    let mut pins = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('-') {
            continue;
        }
        let Some((name, version)) = line.split_once("==") else { continue };
        let name = name.split('[').next().unwrap_or(name);
        let version = version.split(';').next().unwrap_or(version).trim();
        if !name.trim().is_empty() && !version.is_empty() {
            pins.insert(normalise(name), version.to_owned());
        }
    }
    pins
}

/// The first `parts` dot-separated parts of a version (`1.6.0` → `1.6`).
fn leading(version: &str, parts: usize) -> Vec<&str> {
    version.split(['.', '+']).take(parts).collect()
}

/// Why the worker's environment cannot safely load the model (empty: it can). `python` is the
/// worker's version; `installed` the versions it has of the model's pinned packages (`None`:
/// not installed), keyed by the names the pins use.
pub fn unsafe_differences(saved: &Saved, python: &str, installed: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(wanted) = &saved.python
        && leading(wanted, 2) != leading(python, 2)
    {
        problems
            .push(format!("the model was saved with Python {wanted} and the worker's interpreter is Python {python}"));
    }
    let installed: BTreeMap<String, &Option<String>> = installed.iter().map(|(k, v)| (normalise(k), v)).collect();
    for (package, parts) in MUST_MATCH {
        let Some(wanted) = saved.pins.get(package) else { continue };
        match installed.get(package) {
            Some(Some(have)) if leading(have, parts) == leading(wanted, parts) => {}
            Some(Some(have)) => problems.push(format!(
                "the model was saved with {package} {wanted} and the worker's environment has {package} {have}"
            )),
            _ => problems.push(format!(
                "the model was saved with {package} {wanted} and the worker's environment has no {package}"
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(str::to_owned))).collect()
    }

    #[test]
    fn requirements_pins_are_read_and_names_normalised() {
        let pins = parse_requirements(
            "mlflow==2.19.0\n# comment\nscikit_learn==1.6.0 ; python_version>'3'\n-r other.txt\nnumpy>=1\nPandas[pyarrow]==2.2.3\n",
        );
        assert_eq!(pins.get("scikit-learn").map(String::as_str), Some("1.6.0"));
        assert_eq!(pins.get("pandas").map(String::as_str), Some("2.2.3"));
        assert_eq!(pins.get("mlflow").map(String::as_str), Some("2.19.0"));
        assert!(!pins.contains_key("numpy"));
        assert_eq!(normalise("Scikit__Learn"), "scikit-learn");
    }

    #[test]
    fn only_unsafe_differences_refuse() {
        let saved = Saved {
            python: Some("3.11.7".into()),
            pins: parse_requirements("scikit-learn==1.6.0\nnumpy==2.1.3\ncloudpickle==3.1.0\npandas==2.2.3\n"),
        };
        let same = installed(&[
            ("scikit-learn", Some("1.6.1")),
            ("numpy", Some("2.4.6")),
            ("cloudpickle", Some("3.0.0")),
            ("pandas", Some("1.5.0")),
        ]);
        assert!(unsafe_differences(&saved, "3.11.2", &same).is_empty());
        let older = installed(&[("scikit-learn", Some("1.5.2")), ("numpy", Some("1.26.4")), ("cloudpickle", None)]);
        let problems = unsafe_differences(&saved, "3.12.1", &older);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("Python 3.11.7") && problems[0].contains("Python 3.12.1"));
        assert!(problems[1].contains("scikit-learn 1.6.0") && problems[1].contains("scikit-learn 1.5.2"));
        assert!(problems[2].contains("numpy 2.1.3") && problems[2].contains("numpy 1.26.4"));
        assert!(problems[3].contains("has no cloudpickle"));
    }
}
