//! The limits and naming rules MLflow's server enforces on what clients log.
//!
//! The values and messages follow `mlflow/utils/validation.py`, so a client that MLflow rejects is
//! rejected here the same way (`INVALID_PARAMETER_VALUE`), and one it accepts is accepted.

use crate::error::{Error, Result};

/// Longest metric, param or tag key.
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
/// Longest param value.
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
/// Longest run tag value.
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
/// Longest experiment tag value.
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 5000;
/// Longest registry (registered model, model version) tag value.
pub const MAX_REGISTRY_TAG_VAL_LENGTH: usize = 100_000;
/// Most metrics in one `log-batch`.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params in one `log-batch`.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most tags in one `log-batch`.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Most metrics, params and tags together in one `log-batch`.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Longest experiment, registered model or logged model name.
pub const MAX_NAME_LENGTH: usize = 500;
/// Longest dataset name.
pub const MAX_DATASET_NAME_SIZE: usize = 500;
/// Longest dataset digest.
pub const MAX_DATASET_DIGEST_SIZE: usize = 36;
/// Longest dataset source.
pub const MAX_DATASET_SOURCE_SIZE: usize = 65535;
/// Longest dataset schema.
pub const MAX_DATASET_SCHEMA_SIZE: usize = 1_048_575;
/// Longest dataset profile.
pub const MAX_DATASET_PROFILE_SIZE: usize = 16_777_215;
/// Longest input tag key.
pub const MAX_INPUT_TAG_KEY_SIZE: usize = 255;
/// Longest input tag value.
pub const MAX_INPUT_TAG_VALUE_SIZE: usize = 500;
/// Most results one search page returns.
pub const SEARCH_MAX_RESULTS_THRESHOLD: i64 = 50_000;

/// Which kind of key is checked, for messages.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    /// A metric name.
    Metric,
    /// A param name.
    Param,
    /// A tag name.
    Tag,
}

impl KeyKind {
    fn noun(self) -> &'static str {
        match self {
            KeyKind::Metric => "metric",
            KeyKind::Param => "parameter",
            KeyKind::Tag => "tag",
        }
    }
}

/// Checks a metric, param or tag key: present, at most [`MAX_ENTITY_KEY_LENGTH`] characters,
/// made of letters, digits, `_ - . : /` and spaces, and not resolving to another name when used
/// as a file path (`a/../b`, `./a`).
pub fn validate_key(kind: KeyKind, key: &str) -> Result<()> {
    let noun = kind.noun();
    if key.is_empty() {
        return Err(Error::invalid(format!("Invalid {noun} name: ''. Names may not be empty.")));
    }
    if !key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/')) {
        return Err(Error::invalid(format!(
            "Invalid {noun} name: '{key}'. Names may only contain alphanumerics, underscores (_), \
             dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )));
    }
    // As MLflow's `path_not_unique`: the name, read as a path, must be itself and stay below
    // its folder. Only a key with a slash or starting with a dot can fail that.
    if key.contains('/') || key.starts_with('.') {
        let normalized = normalize_posix(key);
        if normalized != key || normalized == "." || normalized.starts_with("..") || normalized.starts_with('/') {
            return Err(Error::invalid(format!(
                "Invalid {noun} name: '{key}'. Names may be treated as files in certain cases, and must \
                 not resolve to other names when treated as such. This name would resolve to '{normalized}'"
            )));
        }
    }
    check_length(&format!("{noun} name"), key, MAX_ENTITY_KEY_LENGTH)
}

/// `posixpath.normpath` as MLflow uses it to detect keys that alias other keys.
fn normalize_posix(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let leading = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if leading == 0 {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    let out = format!("{}{}", "/".repeat(leading), body);
    if out.is_empty() { ".".into() } else { out }
}

/// Checks that `value` is at most `max` characters long.
pub fn check_length(what: &str, value: &str, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len > max {
        return Err(Error::invalid(format!("'{what}' exceeds the maximum length of {max} characters (got {len})")));
    }
    Ok(())
}

/// Checks a param value's length.
pub fn validate_param_value(key: &str, value: &str) -> Result<()> {
    let len = value.chars().count();
    if len > MAX_PARAM_VAL_LENGTH {
        return Err(Error::invalid(format!(
            "Param value '{}...' had length {len}, which exceeded length limit of {MAX_PARAM_VAL_LENGTH} (param '{key}')",
            value.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks a run tag's value length.
pub fn validate_tag_value(key: &str, value: &str) -> Result<()> {
    let len = value.chars().count();
    if len > MAX_TAG_VAL_LENGTH {
        return Err(Error::invalid(format!(
            "Tag value '{}...' had length {len}, which exceeded length limit of {MAX_TAG_VAL_LENGTH} (tag '{key}')",
            value.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks an experiment, registered model or logged model name: present and not too long.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid(format!("Invalid {what} name: '{name}'. The name must not be empty.")));
    }
    check_length(&format!("{what} name"), name, MAX_NAME_LENGTH)
}

/// Checks a run id: 1 to 256 characters of letters, digits, `_` and `-`.
pub fn validate_run_id(run_id: &str) -> Result<()> {
    if run_id.is_empty()
        || run_id.len() > 256
        || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(format!("Invalid run ID: '{run_id}'")));
    }
    Ok(())
}

/// Checks a `log-batch` against MLflow's per-request limits.
pub fn validate_batch_sizes(metrics: usize, params: usize, tags: usize) -> Result<()> {
    let over = |what: &str, n: usize, max: usize| {
        Error::invalid(format!(
            "A batch logging request can contain at most {max} {what}. Got {n} {what}. Please split up {what} across multiple requests and try again."
        ))
    };
    if metrics > MAX_METRICS_PER_BATCH {
        return Err(over("metrics", metrics, MAX_METRICS_PER_BATCH));
    }
    if params > MAX_PARAMS_PER_BATCH {
        return Err(over("params", params, MAX_PARAMS_PER_BATCH));
    }
    if tags > MAX_TAGS_PER_BATCH {
        return Err(over("tags", tags, MAX_TAGS_PER_BATCH));
    }
    let total = metrics + params + tags;
    if total > MAX_ENTITIES_PER_BATCH {
        return Err(Error::invalid(format!(
            "A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params, and tags in total. \
             Got {total} in total."
        )));
    }
    Ok(())
}

/// Checks a `max_results` argument: positive and at most `max`.
pub fn validate_max_results(max_results: i64, max: i64) -> Result<()> {
    if max_results <= 0 || max_results > max {
        return Err(Error::invalid(format!(
            "Invalid value {max_results} for parameter 'max_results' supplied. It must be a positive integer at most {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        for ok in ["acc", "val/loss", "a b", "x:y", "a.b-c_d", "ünïcode"] {
            validate_key(KeyKind::Metric, ok).unwrap();
        }
        for bad in ["", "a$b", "a/../b", "./a", "a//b", "/abs", "a/", "tab\there"] {
            assert!(validate_key(KeyKind::Param, bad).is_err(), "{bad}");
        }
        assert!(validate_key(KeyKind::Tag, &"k".repeat(251)).is_err());
        validate_key(KeyKind::Tag, &"k".repeat(250)).unwrap();
    }

    #[test]
    fn normpath_matches_python() {
        assert_eq!(normalize_posix("a/./b"), "a/b");
        assert_eq!(normalize_posix("a/../b"), "b");
        assert_eq!(normalize_posix("../a"), "../a");
        assert_eq!(normalize_posix("/../a"), "/a");
        assert_eq!(normalize_posix("//a"), "//a");
        assert_eq!(normalize_posix("///a"), "/a");
        assert_eq!(normalize_posix("a/"), "a");
    }

    #[test]
    fn batch_limits() {
        validate_batch_sizes(1000, 0, 0).unwrap();
        assert!(validate_batch_sizes(1001, 0, 0).is_err());
        assert!(validate_batch_sizes(900, 100, 1).is_err());
        assert!(validate_batch_sizes(0, 101, 0).is_err());
    }

    #[test]
    fn values_have_length_limits() {
        validate_param_value("k", &"v".repeat(6000)).unwrap();
        assert!(validate_param_value("k", &"v".repeat(6001)).is_err());
        validate_tag_value("k", &"v".repeat(8000)).unwrap();
        assert!(validate_tag_value("k", &"v".repeat(8001)).is_err());
    }
}
