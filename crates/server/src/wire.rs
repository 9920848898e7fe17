//! Reading MLflow requests: query strings and JSON bodies into typed request structs.
//!
//! MLflow's REST API takes GET parameters in the query string (`runs/get?run_id=...`, repeated
//! keys for lists) and everything else as a JSON body; its protobuf JSON parsing accepts 64-bit
//! integers as strings and single values where lists are expected. [`MlflowRequest`] merges the
//! query string and the body into one JSON object and deserialises the request struct from it,
//! with the lenient field readers below. Every failure is a 4xx whose message names the field:
//! malformed JSON, a wrong type, invalid UTF-8, a body over the limit (413).

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use shipyard_core::Error;

use crate::error::ApiError;

/// Largest JSON body accepted, unless configured otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The configured JSON body limit, carried in request extensions by the router.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request struct read from the query string and the JSON body.
pub struct MlflowRequest<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MlflowRequest<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map_or(DEFAULT_MAX_BODY_BYTES, |l| l.0);
        let query = req.uri().query().map(str::to_owned);
        let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit")
            {
                ApiError(Error::TooLarge(format!("Request body exceeds the limit of {limit} bytes")))
            } else {
                ApiError(Error::BadRequest(format!("Could not read the request body: {e}")))
            }
        })?;
        let has_body = !body.iter().all(u8::is_ascii_whitespace);
        let text = std::str::from_utf8(&body)
            .map_err(|e| ApiError::invalid(format!("Malformed request body: not valid UTF-8 ({e})")))?;
        let parsed = match (query.as_deref().filter(|q| !q.is_empty()), has_body) {
            // The common cases read straight into the request struct.
            (None, true) => {
                let mut de = serde_json::Deserializer::from_str(text);
                let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| field_error(e, text))?;
                de.end().map_err(|e| ApiError::invalid(format!("Malformed JSON request body: {e}")))?;
                parsed
            }
            (query, _) => {
                let mut object = Map::new();
                if let Some(query) = query {
                    merge_query(&mut object, query);
                }
                if has_body {
                    match serde_json::from_str::<Value>(text)
                        .map_err(|e| ApiError::invalid(format!("Malformed JSON request body: {e}")))?
                    {
                        Value::Object(fields) => object.extend(fields),
                        other => return Err(not_an_object(&other)),
                    }
                }
                serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| field_error(e, ""))?
            }
        };
        Ok(MlflowRequest(parsed))
    }
}

/// Adds query parameters to `object`; a repeated key becomes a list.
fn merge_query(object: &mut Map<String, Value>, query: &str) {
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = Value::String(v.into_owned());
        match object.get_mut(k.as_ref()) {
            Some(Value::Array(items)) => items.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None => {
                object.insert(k.into_owned(), v);
            }
        }
    }
}

fn not_an_object(v: &Value) -> ApiError {
    ApiError::invalid(format!("Malformed JSON request body: expected a JSON object, got {}", json_kind(v)))
}

/// Turns a deserialisation failure into MLflow's messages: a missing required field, a value of
/// the wrong type (naming the field's path), or malformed JSON.
fn field_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, body: &str) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner().to_string();
    if let Some(field) = inner.strip_prefix("missing field `").and_then(|s| s.split('`').next()) {
        let field = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
        return missing(&field);
    }
    let syntax = !body.is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(body).is_err();
    if syntax {
        ApiError::invalid(format!("Malformed JSON request body: {inner}"))
    } else if path == "." && inner.starts_with("invalid type") {
        ApiError::invalid(format!("Malformed JSON request body: expected a JSON object ({inner})"))
    } else {
        ApiError::invalid(format!("Invalid value for parameter '{path}': {inner}"))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// MLflow's error for a required parameter that was not sent.
pub fn missing(name: &str) -> ApiError {
    ApiError::invalid(format!(
        "Missing value for required parameter '{name}'. See the API docs for more information about request parameters."
    ))
}

/// Fails with MLflow's message when a required string is absent or empty.
pub fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(missing(name)),
    }
}

/// Fails with MLflow's message when a required value is absent (an empty string is a value).
pub fn present<T: Clone>(value: &Option<T>, name: &str) -> Result<T, ApiError> {
    value.clone().ok_or_else(|| missing(name))
}

/// The run id of a request that may carry `run_id` or the legacy `run_uuid`.
pub fn run_id<'a>(run_id: &'a Option<String>, run_uuid: &'a Option<String>) -> Result<&'a str, ApiError> {
    match (run_id.as_deref(), run_uuid.as_deref()) {
        (Some(r), _) if !r.is_empty() => Ok(r),
        (_, Some(r)) if !r.is_empty() => Ok(r),
        _ => Err(missing("run_id")),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Float(f64),
    Str(String),
}

/// Reads an optional 64-bit integer from a number or a numeric string.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(i)),
        Some(IntOrString::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
        Some(IntOrString::Float(f)) => Err(D::Error::custom(format!("expected an integer, got {f}"))),
        Some(IntOrString::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(IntOrString::Str(s)) => {
            s.trim().parse::<i64>().map(Some).map_err(|_| D::Error::custom(format!("expected an integer, got \"{s}\"")))
        }
    }
}

/// Reads an integer that defaults to 0.
pub fn i64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_i64(d)?.unwrap_or(0))
}

/// Reads an optional string, accepting numbers (ids sent as numbers by hand-written clients).
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(D::Error::custom(format!("expected a string, got {}", json_kind(&other)))),
    }
}

/// Reads a list of strings from an array or a single value.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error as _;
    let one = |v: Value| -> Result<String, D::Error> {
        match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(D::Error::custom(format!("expected a string, got {}", json_kind(&other)))),
        }
    };
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.into_iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// Reads an optional boolean from `true`/`false` or their string forms.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Sample {
        #[serde(default, deserialize_with = "opt_i64")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "string_list")]
        ids: Vec<String>,
        #[serde(default, deserialize_with = "opt_bool")]
        flag: Option<bool>,
    }

    #[test]
    fn lenient_fields() {
        let s: Sample = serde_json::from_str(r#"{"n": "42", "ids": "1", "flag": "true"}"#).unwrap();
        assert_eq!((s.n, s.ids, s.flag), (Some(42), vec!["1".to_owned()], Some(true)));
        let s: Sample = serde_json::from_str(r#"{"n": 7, "ids": ["1", 2]}"#).unwrap();
        assert_eq!((s.n, s.ids.len()), (Some(7), 2));
        assert!(serde_json::from_str::<Sample>(r#"{"n": "x"}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"n": 1.5}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"ids": [{}]}"#).is_err());
    }
}
