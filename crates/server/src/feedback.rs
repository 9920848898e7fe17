//! `POST /api/shipyard/feedback`: ground truth for logged predictions, joined on the request id
//! the prediction was answered with (`x-request-id`).
//!
//! The body is one item `{"request_id": "...", "actual": 1}`, a list of items, or
//! `{"feedback": [items]}`. An item may name a `row` of a multi-row request, or give a list of
//! actual values, one per row. All or nothing: one bad item rejects the request, naming it.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use shipyard_core::Error;
use shipyard_core::monitoring::Actual;

use crate::AppState;
use crate::tracking::JsonResult;

/// Reads the items of a feedback body, naming the first bad one.
pub fn parse_feedback(body: Value) -> Result<Vec<Actual>, Error> {
    let items = match body {
        Value::Array(items) => items,
        Value::Object(mut o) if o.contains_key("feedback") => match o.remove("feedback") {
            Some(Value::Array(items)) => items,
            _ => return Err(Error::invalid("`feedback` must be a list of {\"request_id\", \"actual\"} items")),
        },
        one @ Value::Object(_) => vec![one],
        other => {
            return Err(Error::invalid(format!(
                "the body must be {{\"request_id\": ..., \"actual\": ...}} or a list of them, not {other}"
            )));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<Actual>(item).map_err(|e| Error::invalid(format!("feedback[{i}]: {e}")))
        })
        .collect()
}

/// `POST /api/shipyard/feedback[?deployment=NAME]` → `{"recorded": ROWS}`. `deployment` is
/// required when authentication is on (sending ground truth needs the deployment's USE), and
/// then only that deployment's predictions are labelled.
pub(crate) async fn record_feedback(State(s): State<AppState>, request: axum::extract::Request) -> JsonResult {
    let deployment = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "deployment").map(|(_, v)| v.into_owned())
    });
    let limit =
        request.extensions().get::<crate::wire::BodyLimit>().map_or(crate::wire::DEFAULT_MAX_BODY_BYTES, |l| l.0);
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| Error::TooLarge(format!("Request body exceeds the limit of {limit} bytes")))?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("Malformed JSON request body: {e}")))?;
    let actuals = parse_feedback(body)?;
    if let Some(d) = &deployment {
        s.db.get_deployment(d).await?;
    }
    let recorded = s.db.record_actuals(deployment.as_deref(), actuals).await?;
    Ok(Json(json!({ "recorded": recorded })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_item_a_list_or_a_feedback_field() {
        let one = parse_feedback(json!({"request_id": "a", "actual": 1})).unwrap();
        assert_eq!(one, vec![Actual { request_id: "a".into(), row: None, actual: json!(1) }]);
        assert_eq!(
            parse_feedback(json!([{"request_id": "a", "actual": 1}, {"request_id": "b", "row": 2, "actual": "x"}]))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(parse_feedback(json!({"feedback": [{"request_id": "a", "actual": true}]})).unwrap().len(), 1);
    }

    #[test]
    fn a_bad_item_is_named() {
        let e = parse_feedback(json!([{"request_id": "a", "actual": 1}, {"actual": 1}])).unwrap_err().to_string();
        assert!(e.contains("feedback[1]") && e.contains("request_id"), "{e}");
        assert!(parse_feedback(json!(3)).unwrap_err().to_string().contains("must be"));
    }
}
