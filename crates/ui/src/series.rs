//! `GET /ui-api/series`: the metric histories the charts draw, reduced on the server to about
//! one bucket per pixel with each bucket's min and max kept (the store's
//! [`metric_series`](shipyard_store::Database::metric_series)), so a million-step metric
//! arrives as a few thousand numbers and no spike is lost. A chart asks again with `from` and
//! `to` when the user zooms.
//!
//! Query: `run` (repeated, up to [`MAX_RUNS`]), `key`, `x` (`step`, the default, or `time`, in
//! ms), `from` / `to` (x, both included), `buckets` (default 1,000). The answer is columnar,
//! one entry per run: `{key, x, runs: [{run_id, extent, points, exact, x_first, x_last, min,
//! max, mean, count}]}`. A bad parameter is a 400 naming it; an unknown run a 404.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shipyard_store::series::{MetricSeries, SeriesAxis, SeriesQuery};

use crate::UiState;

/// The most runs one request may chart together.
pub const MAX_RUNS: usize = 100;
/// Buckets when the request names none.
const DEFAULT_BUCKETS: u32 = 1_000;

/// One run's reduced series, column by column.
#[derive(Debug, Serialize)]
struct RunSeries {
    run_id: String,
    extent: Option<[i64; 2]>,
    points: i64,
    exact: bool,
    x_first: Vec<i64>,
    x_last: Vec<i64>,
    min: Vec<f64>,
    max: Vec<f64>,
    mean: Vec<f64>,
    count: Vec<i64>,
}

impl RunSeries {
    fn new(run_id: String, s: MetricSeries) -> Self {
        let b = &s.buckets;
        RunSeries {
            run_id,
            extent: s.extent.map(|(lo, hi)| [lo, hi]),
            points: s.points,
            exact: s.exact,
            x_first: b.iter().map(|b| b.x_first).collect(),
            x_last: b.iter().map(|b| b.x_last).collect(),
            min: b.iter().map(|b| b.min).collect(),
            max: b.iter().map(|b| b.max).collect(),
            mean: b.iter().map(|b| b.mean).collect(),
            count: b.iter().map(|b| b.count).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Answer {
    key: String,
    x: &'static str,
    runs: Vec<RunSeries>,
}

/// The request, parsed; an error names the parameter.
#[derive(Debug, PartialEq)]
struct Request {
    runs: Vec<String>,
    key: String,
    axis: SeriesAxis,
    from: Option<i64>,
    to: Option<i64>,
    buckets: u32,
}

fn parse(query: &str) -> Result<Request, String> {
    let mut request = Request {
        runs: Vec::new(),
        key: String::new(),
        axis: SeriesAxis::Step,
        from: None,
        to: None,
        buckets: DEFAULT_BUCKETS,
    };
    let mut key = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let int = |what: &str| value.parse::<i64>().map_err(|_| format!("'{what}' must be an integer, not '{value}'"));
        match name.as_ref() {
            "run" => request.runs.push(value.into_owned()),
            "key" => key = Some(value.into_owned()),
            "x" => {
                request.axis = match value.as_ref() {
                    "step" => SeriesAxis::Step,
                    "time" => SeriesAxis::Time,
                    other => return Err(format!("'x' must be 'step' or 'time', not '{other}'")),
                }
            }
            "from" => request.from = Some(int("from")?),
            "to" => request.to = Some(int("to")?),
            "buckets" => {
                request.buckets =
                    value.parse().map_err(|_| format!("'buckets' must be a positive integer, not '{value}'"))?
            }
            _ => {}
        }
    }
    request.key = key.ok_or("'key' is required (the metric to chart)")?;
    if request.runs.is_empty() {
        return Err("'run' is required (at least one run id)".into());
    }
    if request.runs.len() > MAX_RUNS {
        return Err(format!("at most {MAX_RUNS} runs in one chart, not {}", request.runs.len()));
    }
    Ok(request)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn series(State(state): State<UiState>, RawQuery(query): RawQuery) -> Response {
    let request = match parse(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let mut runs = Vec::with_capacity(request.runs.len());
    for run_id in request.runs {
        let query = SeriesQuery {
            run_id: run_id.clone(),
            key: request.key.clone(),
            axis: request.axis,
            from: request.from,
            to: request.to,
            buckets: request.buckets,
        };
        match state.db.metric_series(query).await {
            Ok(s) => runs.push(RunSeries::new(run_id, s)),
            Err(e) => {
                let (status, message) = crate::pages::status_and_message(&e);
                return refuse(status, message);
            }
        }
    }
    let x = match request.axis {
        SeriesAxis::Step => "step",
        SeriesAxis::Time => "time",
    };
    Json(Answer { key: request.key, x, runs }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_by_name() {
        let ok = parse("run=a&run=b&key=loss&x=time&from=5&to=9&buckets=300").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.runs, ["a", "b"]);
        assert_eq!((ok.axis, ok.from, ok.to, ok.buckets), (SeriesAxis::Time, Some(5), Some(9), 300));
        for (query, names) in [
            ("run=a", "'key'"),
            ("key=k", "'run'"),
            ("run=a&key=k&x=epoch", "'x'"),
            ("run=a&key=k&from=x", "'from'"),
            ("run=a&key=k&buckets=-1", "'buckets'"),
        ] {
            let error = parse(query).err().unwrap_or_default();
            assert!(error.contains(names), "{query}: {error}");
        }
    }
}
