//! The worker pool against real Python workers: models saved by `fixtures/make_models.py` with
//! the test interpreter (`SHIPYARD_TEST_PYTHON`, else the repository's `.venv`), answers equal
//! to the models' own, and every way a worker can fail: an exit mid-request, a deadline, a
//! crash loop, a model that cannot load, versions that make unpickling unsafe.
//!
//! Without an interpreter the tests say so and pass, unless `SHIPYARD_REQUIRE_PYTHON=1` (CI).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};
use shipyard_pyfunc::{Answer, Pool, PoolError, PoolSettings, Request, Saved};

fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("SHIPYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(root.join(".venv/bin/python")).filter(|p| p.exists()));
    if python.is_none() {
        assert!(
            std::env::var("SHIPYARD_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "SHIPYARD_REQUIRE_PYTHON=1 and no interpreter: set SHIPYARD_TEST_PYTHON"
        );
        eprintln!("no Python with mlflow (SHIPYARD_TEST_PYTHON or .venv): skipping");
    }
    python
}

/// The fixture models, made once per test binary.
fn fixtures(python: &Path) -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_models.py");
        // Run in the temporary folder: MLflow may leave an `mlruns` folder where it runs.
        let out =
            std::process::Command::new(python).arg(&script).arg(dir.path()).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
    .path()
}

fn saved(dir: &Path) -> Saved {
    let text = std::fs::read_to_string(dir.join("requirements.txt")).unwrap_or_default();
    Saved { python: None, pins: shipyard_pyfunc::versions::parse_requirements(&text) }
}

async fn start(python: &Path, model: &str, tweak: impl FnOnce(&mut PoolSettings)) -> Result<Pool, PoolError> {
    let dir = fixtures(python).join(model);
    let mut settings = PoolSettings::new(python.to_path_buf());
    tweak(&mut settings);
    Pool::start(dir.clone(), saved(&dir), settings, model.to_owned()).await
}

fn column(name: &str, values: Vec<f64>) -> RecordBatch {
    RecordBatch::try_from_iter([(name, Arc::new(Float64Array::from(values)) as Arc<dyn Array>)]).unwrap()
}

fn predict(batch: RecordBatch) -> Request {
    Request::Predict { batch, positional: false }
}

fn floats(answer: Answer) -> Vec<f64> {
    let Answer::Table(table) = answer else { panic!("not a table: {answer:?}") };
    let col = table.column(0).as_any().downcast_ref::<Float64Array>().expect("float64 predictions");
    col.values().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sklearn_answers_equal_the_models_own_predictions_and_invocations_are_mlflows() {
    let Some(py) = python() else { return };
    let pool = start(&py, "sklearn_lr", |_| {}).await.unwrap();
    assert_eq!(pool.info.loader_module.as_deref(), Some("mlflow.sklearn"));
    assert_eq!(pool.info.classes, Some(vec![serde_json::json!(0), serde_json::json!(1)]));
    assert_eq!(pool.info.feature_names, Some(vec!["a".to_owned(), "b".into(), "c".into()]));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures(&py).join("expected.json")).unwrap()).unwrap();
    let case = &expected["sklearn_lr"];
    let rows: Vec<Vec<f64>> = serde_json::from_value(case["rows"].clone()).unwrap();
    let columns: Vec<(&str, Arc<dyn Array>)> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(j, n)| (*n, Arc::new(Float64Array::from(rows.iter().map(|r| r[j]).collect::<Vec<_>>())) as _))
        .collect();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let Answer::Table(table) = pool.call(predict(batch)).await.unwrap() else { panic!("not a table") };
    let labels = table.column(0).as_any().downcast_ref::<Int64Array>().expect("int64 labels");
    let want: Vec<i64> = serde_json::from_value(case["predictions"].clone()).unwrap();
    assert_eq!(labels.values().to_vec(), want);

    // /invocations: MLflow's own parsing and rendering.
    let body = serde_json::json!({"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}}).to_string();
    let answer = pool
        .call(Request::Invoke { content_type: "application/json".into(), body: body.into_bytes().into() })
        .await
        .unwrap();
    let Answer::Invoked { status, mimetype, body } = answer else { panic!("not invoked") };
    assert_eq!((status, mimetype.as_str()), (200, "application/json"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap(), serde_json::json!({"predictions": want}));
    let bad = pool
        .call(Request::Invoke { content_type: "application/json".into(), body: b"{\"nope\": 1}".to_vec().into() })
        .await
        .unwrap();
    let Answer::Invoked { status, body, .. } = bad else { panic!("not invoked") };
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("BAD_REQUEST"), "{}", String::from_utf8_lossy(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_request_fails_only_that_request() {
    let Some(py) = python() else { return };
    let pool = start(&py, "behaviour", |_| {}).await.unwrap();
    assert_eq!(floats(pool.call(predict(column("x", vec![1.0, 2.5]))).await.unwrap()), vec![2.0, 5.0]);
    let refused = pool.call(predict(column("x", vec![-3.0]))).await.unwrap_err();
    assert!(matches!(&refused, PoolError::Refused(m) if m.contains("x must not be -3")), "{refused:?}");
    let lost = pool.call(predict(column("x", vec![-1.0]))).await.unwrap_err();
    assert!(matches!(&lost, PoolError::WorkerLost(m) if m.contains("exited")), "{lost:?}");
    // The next request waits for the replacement and succeeds.
    assert_eq!(floats(pool.call(predict(column("x", vec![4.0]))).await.unwrap()), vec![8.0]);
    assert_eq!(pool.stats().restarts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_a_timeout_and_the_worker_is_replaced() {
    let Some(py) = python() else { return };
    // Long enough for the replacement to load within the next request's deadline.
    let pool = start(&py, "behaviour", |s| s.timeout = Duration::from_secs(12)).await.unwrap();
    let started = Instant::now();
    let err = pool.call(predict(column("x", vec![-2.0]))).await.unwrap_err();
    assert!(matches!(&err, PoolError::Timeout(m) if m.contains("replaced")), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "the deadline was not kept");
    assert_eq!(floats(pool.call(predict(column("x", vec![1.0]))).await.unwrap()), vec![2.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_keep_crashing_break_the_pool_with_the_reason() {
    let Some(py) = python() else { return };
    let pool = start(&py, "behaviour", |_| {}).await.unwrap();
    let mut last = None;
    for _ in 0..shipyard_pyfunc::pool::CRASH_LIMIT {
        last = Some(pool.call(predict(column("x", vec![-1.0]))).await.unwrap_err());
    }
    assert!(matches!(last, Some(PoolError::WorkerLost(_)) | Some(PoolError::Broken(_))), "{last:?}");
    let err = pool.call(predict(column("x", vec![1.0]))).await.unwrap_err();
    assert!(matches!(&err, PoolError::Broken(m) if m.contains("exited 5 times")), "{err:?}");
    assert!(!pool.ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_that_cannot_load_or_would_unpickle_unsafely_do_not_start() {
    let Some(py) = python() else { return };
    let Err(PoolError::Start(message)) = start(&py, "load_fails", |_| {}).await else { panic!("started") };
    assert!(message.contains("this model cannot be loaded"), "{message}");
    let Err(PoolError::Start(message)) = start(&py, "old_sklearn", |_| {}).await else { panic!("started") };
    assert!(
        message.contains("scikit-learn 0.24.2") && message.contains("the worker's environment has scikit-learn"),
        "{message}"
    );
    let Err(PoolError::Start(message)) =
        start(&py, "sklearn_lr", |s| s.python = PathBuf::from("/nonexistent/python3")).await
    else {
        panic!("started")
    };
    assert!(message.contains("/nonexistent/python3"), "{message}");
    // Told to, it loads anyway.
    start(&py, "old_sklearn", |s| s.allow_version_mismatch = true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_pull_from_one_queue_and_a_full_queue_is_refused() {
    let Some(py) = python() else { return };
    let pool = Arc::new(
        start(&py, "behaviour", |s| {
            s.workers = 2;
            s.max_queue = 1;
            s.timeout = Duration::from_secs(3);
        })
        .await
        .unwrap(),
    );
    // Wait for the second worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.stats().alive.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the second worker did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two slow requests occupy both workers, one waits, the fourth is refused at once.
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.call(predict(column("x", vec![-2.0]))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = pool.call(predict(column("x", vec![1.0]))).await.unwrap_err();
    assert!(matches!(&refused, PoolError::Overloaded(m) if m.contains("busy")), "{refused:?}");
    for task in slow {
        assert!(matches!(task.await.unwrap(), Err(PoolError::Timeout(_))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_predictions_join_one_call_and_each_gets_its_own_rows() {
    let Some(py) = python() else { return };
    let pool = Arc::new(start(&py, "behaviour", |s| s.max_batch_rows = 64).await.unwrap());
    // 40 requests at once on one worker: most wait, then join; one of them is refused.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let pool = pool.clone();
            // Rows x and x + 1; the refused request's second row is not -2 (which sleeps).
            let x = if i == 17 { -3.0 } else { f64::from(i) + 0.5 };
            let rows = if i == 17 { vec![x, 5.0] } else { vec![x, x + 1.0] };
            tokio::spawn(async move { (x, pool.call(predict(column("x", rows))).await) })
        })
        .collect();
    for task in tasks {
        let (x, answer) = task.await.unwrap();
        if x == -3.0 {
            assert!(matches!(&answer, Err(PoolError::Refused(m)) if m.contains("-3")), "{answer:?}");
        } else {
            assert_eq!(floats(answer.unwrap()), vec![2.0 * x, 2.0 * (x + 1.0)]);
        }
    }
}
