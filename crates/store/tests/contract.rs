//! The metadata store's contract, run against both backends.
//!
//! Every test runs once on a fresh SQLite file and once on a fresh PostgreSQL database. The
//! PostgreSQL server comes from `SHIPYARD_TEST_PG_URI` (the test script starts a throwaway
//! cluster) or, when unset, is started here with `scripts/pg-cluster.sh`; it is never skipped.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};

use serde_json::json;

use shipyard_core::Error;
use shipyard_core::entities::{
    Dataset, DatasetInput, KeyValue, LifecycleStage, LoggedModelStatus, Metric, ModelOutput, RunStatus, ViewType,
};
use shipyard_core::monitoring::{Actual, Alert, MonitorEvaluation, PredictionBatch, PredictionRecord};
use shipyard_store::logged_models::NewLoggedModel;
use shipyard_store::promotion::{AliasMoveRequest, MoveKind};
use shipyard_store::registry::NewModelVersion;
use shipyard_store::tracking::NewRun;
use shipyard_store::{Database, DatabaseUri};
use sqlx::Connection;

/// The PostgreSQL server URI for this test process (started once if needed).
fn pg_base_uri() -> String {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        if let Ok(uri) = std::env::var("SHIPYARD_TEST_PG_URI") {
            return uri;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster.sh");
        let out = std::process::Command::new("bash").arg(script).arg("start").output().expect("run pg-cluster.sh");
        assert!(out.status.success(), "could not start PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("SHIPYARD_TEST_PG_URI="))
            .expect("pg-cluster.sh printed a URI")
            .to_owned()
    })
    .clone()
}

/// A fresh PostgreSQL database.
async fn postgres() -> Database {
    let base = pg_base_uri();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (prefix, _) = base.rsplit_once('/').expect("URI has a database");
    Database::connect(&DatabaseUri::Postgres(format!("{prefix}/{name}"))).await.expect("open PostgreSQL store")
}

/// A fresh SQLite database (the folder is leaked on purpose: the pool outlives the test body).
async fn sqlite() -> Database {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    Database::connect(&DatabaseUri::Sqlite(dir.join("t.db"))).await.expect("open SQLite store")
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::sqlite().await).await; })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::postgres().await).await; })*
        }
    };
}

both_backends!(
    experiments_lifecycle,
    runs_lifecycle,
    metrics_latest_history_and_special_values,
    params_cannot_change,
    search_runs_filters_order_and_paging,
    datasets_and_outputs,
    registry_versions_aliases_and_stages,
    concurrent_writers_lose_nothing,
    dataset_versions_number_and_deduplicate,
    alias_moves_are_recorded_serialized_and_rolled_back,
    deployments_are_versioned_policies,
    prediction_log_feedback_and_alerts,
    overview_counts_runs_and_lists_keys,
    metric_series_keep_every_bucket_extreme,
    child_runs_group_under_their_parents,
    users_tokens_roles_and_grants,
);

async fn overview_counts_runs_and_lists_keys(db: Database) {
    let exp = db.create_experiment("overview", None, &[]).await.unwrap();
    let empty = db.create_experiment("empty", None, &[]).await.unwrap();
    let a = new_run(&db, &exp, "a").await;
    let b = new_run(&db, &exp, "b").await;
    db.log_batch(
        &a,
        vec![metric("loss", 0.5, 10, 0)],
        vec![KeyValue::new("lr", "0.1")],
        vec![KeyValue::new("team", "x")],
    )
    .await
    .unwrap();
    db.log_batch(&b, vec![metric("acc", 0.9, 10, 0), metric("loss", 0.4, 10, 0)], vec![], vec![]).await.unwrap();
    let deleted = new_run(&db, &exp, "gone").await;
    db.log_batch(&deleted, vec![metric("hidden", 1.0, 10, 0)], vec![], vec![]).await.unwrap();
    db.delete_run(&deleted).await.unwrap();
    let activity = db.experiment_activity(&[exp.clone(), empty.clone()]).await.unwrap();
    assert_eq!((activity[0].runs, activity[1].runs), (2, 0));
    assert!(activity[0].last_run_time.is_some() && activity[1].last_run_time.is_none());
    let keys = db.experiment_keys(&exp).await.unwrap();
    assert_eq!(keys.metrics, ["acc", "loss"]);
    assert_eq!(keys.params, ["lr"]);
    assert_eq!(keys.tags, ["team"], "MLflow's own tags are left out");
    db.log_batch(
        &a,
        vec![metric("loss", 0.2, 11, 1), metric("loss", f64::NAN, 12, 2), metric("loss", 0.3, 13, 3)],
        vec![],
        vec![],
    )
    .await
    .unwrap();
    let ranges = db.metric_ranges(&[a.clone(), b.clone()], &["loss".to_owned(), "acc".to_owned()]).await.unwrap();
    let range = |run: &str, key: &str| ranges.get(&(run.to_owned(), key.to_owned())).map(|r| (r.min, r.max));
    assert_eq!(range(&a, "loss"), Some((0.2, 0.5)), "NaN is left out");
    assert_eq!(range(&b, "loss"), Some((0.4, 0.4)));
    assert_eq!(range(&a, "acc"), None);
}

async fn metric_series_keep_every_bucket_extreme(db: Database) {
    use shipyard_store::series::{SeriesAxis, SeriesQuery};
    let exp = db.create_experiment("series", None, &[]).await.unwrap();
    let run = new_run(&db, &exp, "long").await;
    // 10,000 steps of a slow wave, one spike, one dip and one NaN; time = 1,000 + 10 ms a step.
    let value = |step: i64| match step {
        7_777 => 100.0,
        3_333 => -50.0,
        _ => (step as f64 / 500.0).sin(),
    };
    let steps: Vec<i64> = (0..10_000).filter(|s| *s != 5_000).collect();
    for chunk in steps.chunks(1_000) {
        let batch = chunk.iter().map(|s| metric("loss", value(*s), 1_000 + 10 * s, *s)).collect();
        db.log_batch(&run, batch, vec![], vec![]).await.unwrap();
    }
    db.log_batch(&run, vec![metric("loss", f64::NAN, 1_000 + 50_000, 5_000)], vec![], vec![]).await.unwrap();
    let query =
        |axis, from, to, buckets| SeriesQuery { run_id: run.clone(), key: "loss".into(), axis, from, to, buckets };
    let whole = db.metric_series(query(SeriesAxis::Step, None, None, 64)).await.unwrap();
    assert_eq!(whole.extent, Some((0, 9_999)));
    assert_eq!(whole.points, 9_999, "the NaN is left out");
    assert!(!whole.exact && whole.buckets.len() <= 64);
    assert_eq!(whole.buckets.iter().map(|b| b.count).sum::<i64>(), 9_999);
    // The reference: the same equal-width buckets computed here from the logged values.
    let width = 10_000u64.div_ceil(64) as i64;
    for b in &whole.buckets {
        let index = b.x_first / width;
        let members: Vec<i64> = steps.iter().copied().filter(|s| s / width == index).collect();
        assert_eq!((b.x_first, b.x_last), (members[0], *members.last().unwrap()));
        assert_eq!(b.count, members.len() as i64);
        let values: Vec<f64> = members.iter().map(|s| value(*s)).collect();
        assert_eq!(b.min, values.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(b.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((b.mean - mean).abs() < 1e-9, "bucket {index}: mean {} vs {mean}", b.mean);
    }
    let spike = whole.buckets.iter().find(|b| b.x_first <= 7_777 && 7_777 <= b.x_last).unwrap();
    assert_eq!(spike.max, 100.0, "the one-step spike survives the reduction");
    assert_eq!(whole.buckets.iter().map(|b| b.min).fold(f64::INFINITY, f64::min), -50.0);
    // Zoomed in to fewer values than buckets: the exact points.
    let zoom = db.metric_series(query(SeriesAxis::Step, Some(7_700), Some(7_800), 200)).await.unwrap();
    assert!(zoom.exact);
    assert_eq!(zoom.points, 101);
    assert_eq!(zoom.extent, Some((0, 9_999)), "the extent is the whole series'");
    assert_eq!(zoom.buckets.iter().find(|b| b.x_first == 7_777).map(|b| b.max), Some(100.0));
    // Along time: the same values, x in ms.
    let by_time = db.metric_series(query(SeriesAxis::Time, Some(1_000), Some(1_000 + 10 * 99), 500)).await.unwrap();
    assert_eq!(by_time.extent, Some((1_000, 1_000 + 10 * 9_999)));
    assert_eq!((by_time.points, by_time.buckets[1].x_first), (100, 1_010));
    // An empty series, a range outside it, bad requests.
    let none = db
        .metric_series(SeriesQuery { key: "absent".into(), ..query(SeriesAxis::Step, None, None, 10) })
        .await
        .unwrap();
    assert_eq!((none.extent, none.points, none.buckets.len()), (None, 0, 0));
    let outside = db.metric_series(query(SeriesAxis::Step, Some(20_000), None, 10)).await.unwrap();
    assert_eq!((outside.points, outside.buckets.len()), (0, 0));
    for bad in [query(SeriesAxis::Step, None, None, 0), query(SeriesAxis::Step, Some(5), Some(4), 10)] {
        assert!(matches!(db.metric_series(bad).await, Err(Error::InvalidParameter(_))));
    }
    // A wide range (steps 0 to 399,950, every 50th) is read in parts at once; the merged
    // buckets equal the reference too.
    let sparse: Vec<i64> = (0..8_000).map(|i| i * 50).collect();
    for chunk in sparse.chunks(1_000) {
        let batch = chunk.iter().map(|s| metric("sparse", value(*s / 50), 1_000 + s, *s)).collect();
        db.log_batch(&run, batch, vec![], vec![]).await.unwrap();
    }
    let wide = db
        .metric_series(SeriesQuery { key: "sparse".into(), ..query(SeriesAxis::Step, None, None, 100) })
        .await
        .unwrap();
    assert_eq!((wide.points, wide.buckets.len()), (8_000, 100));
    let width = 399_951u64.div_ceil(100) as i64;
    for b in &wide.buckets {
        let index = b.x_first / width;
        let values: Vec<f64> = sparse.iter().filter(|s| **s / width == index).map(|s| value(*s / 50)).collect();
        assert_eq!(b.count, values.len() as i64, "bucket {index}");
        assert_eq!(b.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max), "bucket {index}");
        assert_eq!(b.min, values.iter().copied().fold(f64::INFINITY, f64::min), "bucket {index}");
    }
    let missing = SeriesQuery { run_id: "0".repeat(32), ..query(SeriesAxis::Step, None, None, 10) };
    assert!(matches!(db.metric_series(missing).await, Err(Error::NotFound(_))));
}

fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    }
}

async fn child_runs_group_under_their_parents(db: Database) {
    use shipyard_store::search::{PARENT_RUN_TAG, RunSearch};
    let exp = db.create_experiment("nested", None, &[]).await.unwrap();
    let parent = new_run(&db, &exp, "search").await;
    let lone = new_run(&db, &exp, "lone").await;
    let mut trials = Vec::new();
    for i in 0..3 {
        let trial = db
            .create_run(NewRun {
                experiment_id: exp.clone(),
                user_id: "tester".into(),
                run_name: Some(format!("trial-{i}")),
                start_time: Some(1_000 + i),
                tags: vec![KeyValue::new(PARENT_RUN_TAG, parent.as_str())],
            })
            .await
            .unwrap();
        trials.push(trial.info.run_id);
    }
    let gone = db
        .create_run(NewRun {
            experiment_id: exp.clone(),
            user_id: "tester".into(),
            run_name: Some("deleted-trial".into()),
            start_time: Some(999),
            tags: vec![KeyValue::new(PARENT_RUN_TAG, parent.as_str())],
        })
        .await
        .unwrap();
    db.delete_run(&gone.info.run_id).await.unwrap();
    let experiments = [exp.clone()];
    let search = |top_level_only| RunSearch {
        experiment_ids: &experiments,
        filter: None,
        view: ViewType::ActiveOnly,
        max_results: None,
        order_by: &[],
        page_token: None,
        top_level_only,
    };
    let mut top: Vec<String> =
        db.search_runs_with(search(true)).await.unwrap().items.into_iter().map(|r| r.info.run_id).collect();
    top.sort();
    let mut expected = vec![parent.clone(), lone.clone()];
    expected.sort();
    assert_eq!(top, expected, "children are left out of the top level");
    assert_eq!(db.search_runs_with(search(false)).await.unwrap().items.len(), 5);
    let children = db.child_runs(&[parent.clone(), lone.clone()], 2).await.unwrap();
    assert_eq!(children.counts.get(&parent), Some(&3), "the deleted child is not counted");
    assert_eq!(children.counts.get(&lone), None);
    let shown: Vec<&str> = children.shown[&parent].iter().map(|r| r.info.run_id.as_str()).collect();
    assert_eq!(shown, [trials[0].as_str(), trials[1].as_str()], "the first two by start time");
    assert_eq!(children.shown[&parent][0].data.tags.iter().find(|t| t.key == PARENT_RUN_TAG).unwrap().value, parent);
}

async fn new_run(db: &Database, experiment_id: &str, name: &str) -> String {
    db.create_run(NewRun {
        experiment_id: experiment_id.into(),
        user_id: "tester".into(),
        run_name: Some(name.into()),
        start_time: None,
        tags: vec![],
    })
    .await
    .expect("create run")
    .info
    .run_id
}

async fn experiments_lifecycle(db: Database) {
    let default = db.get_experiment("0").await.unwrap();
    assert_eq!(default.name, "Default");
    let id = db.create_experiment("exp-a", None, &[KeyValue::new("team", "x")]).await.unwrap();
    let e = db.get_experiment(&id).await.unwrap();
    assert_eq!(e.artifact_location, format!("mlflow-artifacts:/{id}"));
    assert_eq!(e.tags, vec![KeyValue::new("team", "x")]);
    assert!(matches!(db.create_experiment("exp-a", None, &[]).await, Err(Error::AlreadyExists(_))));
    assert!(matches!(db.get_experiment("9999").await, Err(Error::NotFound(_))));
    assert!(matches!(db.get_experiment("abc").await, Err(Error::InvalidParameter(_))));
    assert!(matches!(db.get_experiment_by_name("nope").await, Err(Error::NotFound(_))));

    db.rename_experiment(&id, "exp-b").await.unwrap();
    assert_eq!(db.get_experiment_by_name("exp-b").await.unwrap().experiment_id, id);

    let run = new_run(&db, &id, "r").await;
    db.delete_experiment(&id).await.unwrap();
    assert_eq!(db.get_experiment(&id).await.unwrap().lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(db.get_run(&run).await.unwrap().info.lifecycle_stage, LifecycleStage::Deleted);
    assert!(db.create_run(NewRun { experiment_id: id.clone(), ..Default::default() }).await.is_err());
    db.restore_experiment(&id).await.unwrap();
    assert_eq!(db.get_run(&run).await.unwrap().info.lifecycle_stage, LifecycleStage::Active);

    db.set_experiment_tag(&id, &KeyValue::new("team", "y")).await.unwrap();
    assert_eq!(db.get_experiment(&id).await.unwrap().tags, vec![KeyValue::new("team", "y")]);
    db.delete_experiment_tag(&id, "team").await.unwrap();
    assert!(db.get_experiment(&id).await.unwrap().tags.is_empty());

    let page = db.search_experiments(ViewType::All, Some(1), Some("name LIKE 'exp-%'"), &[], None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_page_token.is_none());
    let all = db.search_experiments(ViewType::ActiveOnly, None, None, &["name ASC".into()], None).await.unwrap();
    assert_eq!(all.items.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), vec!["Default", "exp-b"]);
}

async fn runs_lifecycle(db: Database) {
    let run = db
        .create_run(NewRun {
            experiment_id: "0".into(),
            user_id: "u".into(),
            run_name: None,
            start_time: Some(123),
            tags: vec![KeyValue::new("mlflow.runName", "from-tag"), KeyValue::new("k", "v")],
        })
        .await
        .unwrap();
    assert_eq!(run.info.run_name, "from-tag");
    assert_eq!(run.info.start_time, Some(123));
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.artifact_uri, format!("mlflow-artifacts:/0/{}/artifacts", run.info.run_id));
    let id = run.info.run_id.clone();
    let info = db.update_run(&id, Some(RunStatus::Finished), Some(456), Some("renamed")).await.unwrap();
    assert_eq!((info.status, info.end_time, info.run_name.as_str()), (RunStatus::Finished, Some(456), "renamed"));
    let got = db.get_run(&id).await.unwrap();
    assert!(got.data.tags.contains(&KeyValue::new("mlflow.runName", "renamed")));
    db.delete_tag(&id, "k").await.unwrap();
    assert!(matches!(db.delete_tag(&id, "k").await, Err(Error::NotFound(_))));
    db.delete_run(&id).await.unwrap();
    let err = db.log_param(&id, KeyValue::new("p", "1")).await.unwrap_err();
    assert!(err.to_string().contains("must be in the 'active' state"), "{err}");
    db.restore_run(&id).await.unwrap();
    db.log_param(&id, KeyValue::new("p", "1")).await.unwrap();
    assert!(matches!(db.get_run("0123").await, Err(Error::NotFound(_))));
}

async fn metrics_latest_history_and_special_values(db: Database) {
    let id = new_run(&db, "0", "m").await;
    db.log_metric(&id, metric("loss", 3.0, 10, 0)).await.unwrap();
    db.log_metric(&id, metric("loss", 2.0, 20, 1)).await.unwrap();
    // An older step arriving later does not become the latest.
    db.log_metric(&id, metric("loss", 9.0, 30, 0)).await.unwrap();
    // An exact repeat is stored once.
    db.log_metric(&id, metric("loss", 2.0, 20, 1)).await.unwrap();
    db.log_batch(
        &id,
        vec![
            metric("nan", f64::NAN, 1, 0),
            metric("inf", f64::INFINITY, 1, 0),
            metric("ninf", f64::NEG_INFINITY, 1, 0),
        ],
        vec![],
        vec![],
    )
    .await
    .unwrap();
    let run = db.get_run(&id).await.unwrap();
    let latest = |k: &str| run.data.metrics.iter().find(|m| m.key == k).unwrap().clone();
    assert_eq!((latest("loss").value, latest("loss").step), (2.0, 1));
    assert!(latest("nan").value.is_nan());
    assert_eq!(latest("inf").value, f64::MAX);
    assert_eq!(latest("ninf").value, f64::MIN);

    let history = db.get_metric_history(&id, "loss", None, None).await.unwrap();
    let points: Vec<(i64, i64, f64)> = history.items.iter().map(|m| (m.step, m.timestamp, m.value)).collect();
    assert_eq!(points, vec![(0, 10, 3.0), (0, 30, 9.0), (1, 20, 2.0)]);
    let first = db.get_metric_history(&id, "loss", Some(2), None).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = db.get_metric_history(&id, "loss", Some(2), first.next_page_token.as_deref()).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_page_token.is_none());

    let bad = db.log_metric(&id, metric("bad/../key", 1.0, 1, 0)).await.unwrap_err();
    assert!(matches!(bad, Error::InvalidParameter(_)));
    let too_many: Vec<Metric> = (0..1001).map(|i| metric("x", f64::from(i), i64::from(i), 0)).collect();
    assert!(matches!(db.log_batch(&id, too_many, vec![], vec![]).await, Err(Error::InvalidParameter(_))));
}

async fn params_cannot_change(db: Database) {
    let id = new_run(&db, "0", "p").await;
    db.log_param(&id, KeyValue::new("lr", "0.1")).await.unwrap();
    db.log_param(&id, KeyValue::new("lr", "0.1")).await.unwrap();
    let err = db.log_param(&id, KeyValue::new("lr", "0.2")).await.unwrap_err();
    assert!(err.to_string().contains("Changing param values is not allowed"), "{err}");
    let dup = db.log_batch(&id, vec![], vec![KeyValue::new("a", "1"), KeyValue::new("a", "2")], vec![]).await;
    assert!(matches!(dup, Err(Error::InvalidParameter(_))));
    // A failed batch leaves nothing behind.
    let failed = db
        .log_batch(
            &id,
            vec![metric("atomic", 1.0, 1, 0)],
            vec![KeyValue::new("lr", "0.3")],
            vec![KeyValue::new("t", "1")],
        )
        .await;
    assert!(failed.is_err());
    let run = db.get_run(&id).await.unwrap();
    assert!(run.data.metrics.is_empty());
    assert!(!run.data.tags.iter().any(|t| t.key == "t"));
    assert_eq!(run.data.params, vec![KeyValue::new("lr", "0.1")]);
}

async fn search_runs_filters_order_and_paging(db: Database) {
    let exp = db.create_experiment("search", None, &[]).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..12i32 {
        let id = db
            .create_run(NewRun {
                experiment_id: exp.clone(),
                user_id: "u".into(),
                run_name: Some(format!("run-{i:02}")),
                start_time: Some(1000 + i64::from(i)),
                tags: vec![KeyValue::new("parity", if i % 2 == 0 { "even" } else { "odd" })],
            })
            .await
            .unwrap()
            .info
            .run_id;
        if i != 11 {
            db.log_metric(&id, metric("acc", f64::from(i) / 10.0, 1, 0)).await.unwrap();
        }
        db.log_param(&id, KeyValue::new("model", if i < 6 { "rf" } else { "lr" })).await.unwrap();
        ids.push(id);
    }
    let search = |filter: &'static str, order: Vec<String>| {
        let db = db.clone();
        let exp = exp.clone();
        async move { db.search_runs(&[exp], Some(filter), ViewType::ActiveOnly, None, &order, None).await }
    };
    let names =
        |runs: &[shipyard_core::entities::Run]| runs.iter().map(|r| r.info.run_name.clone()).collect::<Vec<_>>();

    let r = search("metrics.acc > 0.45 and params.model = 'rf'", vec!["metrics.acc DESC".into()]).await.unwrap();
    assert_eq!(names(&r.items), vec!["run-05"]);
    let r =
        search("params.model = 'lr' AND tags.parity = 'odd'", vec!["attributes.start_time ASC".into()]).await.unwrap();
    assert_eq!(names(&r.items), vec!["run-07", "run-09", "run-11"]);
    let r = search("attributes.run_name LIKE 'run-1%'", vec!["run_name DESC".into()]).await.unwrap();
    assert_eq!(names(&r.items), vec!["run-11", "run-10"]);
    let r = search("attributes.run_name ILIKE 'RUN-0_'", vec![]).await.unwrap();
    assert_eq!(r.items.len(), 10);
    let r = search("attributes.run_name LIKE 'RUN-%'", vec![]).await.unwrap();
    assert!(r.items.is_empty(), "LIKE is case-sensitive");
    let r = search("tags.`parity` != 'even' and metrics.acc <= 0.3", vec!["metrics.acc ASC".into()]).await.unwrap();
    assert_eq!(names(&r.items), vec!["run-01", "run-03"]);
    let in_filter = format!("attributes.run_id IN ('{}', '{}')", ids[0], ids[3]);
    let r = db
        .search_runs(std::slice::from_ref(&exp), Some(&in_filter), ViewType::ActiveOnly, None, &[], None)
        .await
        .unwrap();
    assert_eq!(r.items.len(), 2);
    let r = search("start_time >= 1010", vec![]).await.unwrap();
    assert_eq!(names(&r.items), vec!["run-11", "run-10"], "default order is start_time DESC");
    let r = search("params.missing IS NULL", vec![]).await.unwrap();
    assert_eq!(r.items.len(), 12);
    // A run without the metric sorts last in both directions.
    let r = search("", vec!["metrics.acc DESC".into()]).await.unwrap();
    assert_eq!(names(&r.items).first().map(String::as_str), Some("run-10"));
    assert_eq!(names(&r.items).last().map(String::as_str), Some("run-11"));
    let r = search("", vec!["metrics.acc ASC".into()]).await.unwrap();
    assert_eq!(names(&r.items).first().map(String::as_str), Some("run-00"));
    assert_eq!(names(&r.items).last().map(String::as_str), Some("run-11"));

    // Paging visits every run exactly once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = db
            .search_runs(
                std::slice::from_ref(&exp),
                None,
                ViewType::ActiveOnly,
                Some(5),
                &["metrics.acc DESC".into()],
                token.as_deref(),
            )
            .await
            .unwrap();
        seen.extend(names(&page.items));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    let unpaged = names(&search("", vec!["metrics.acc DESC".into()]).await.unwrap().items);
    assert_eq!(seen, unpaged);

    db.delete_run(&ids[0]).await.unwrap();
    let deleted =
        db.search_runs(std::slice::from_ref(&exp), None, ViewType::DeletedOnly, None, &[], None).await.unwrap();
    assert_eq!(names(&deleted.items), vec!["run-00"]);
    let bad =
        db.search_runs(std::slice::from_ref(&exp), Some("metrics.acc > 'x'"), ViewType::All, None, &[], None).await;
    assert!(matches!(bad, Err(Error::InvalidParameter(_))));
}

async fn datasets_and_outputs(db: Database) {
    let id = new_run(&db, "0", "d").await;
    let input = DatasetInput {
        tags: vec![KeyValue::new("mlflow.data.context", "training")],
        dataset: Dataset {
            name: "train".into(),
            digest: "abcd1234".into(),
            source_type: "local".into(),
            source: "{\"uri\": \"/data/train.csv\"}".into(),
            schema: Some("{}".into()),
            profile: Some("{\"num_rows\": 5}".into()),
        },
    };
    db.log_inputs(&id, vec![input.clone()], vec![]).await.unwrap();
    db.log_inputs(&id, vec![input.clone()], vec![]).await.unwrap();
    let run = db.get_run(&id).await.unwrap();
    assert_eq!(run.inputs.dataset_inputs, vec![input]);
    let r = db
        .search_runs(&["0".into()], Some("datasets.context = 'training'"), ViewType::ActiveOnly, None, &[], None)
        .await
        .unwrap();
    assert_eq!(r.items.len(), 1);

    let model = db
        .create_logged_model(NewLoggedModel {
            experiment_id: "0".into(),
            name: Some("model".into()),
            source_run_id: Some(id.clone()),
            params: vec![KeyValue::new("alpha", "1")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(model.info.status, LoggedModelStatus::Pending);
    let mid = model.info.model_id.clone();
    db.log_outputs(&id, vec![ModelOutput { model_id: mid.clone(), step: 0 }]).await.unwrap();
    let mut m = metric("acc", 0.9, 5, 0);
    m.model_id = Some(mid.clone());
    db.log_batch(&id, vec![m], vec![], vec![]).await.unwrap();
    let ready = db.finalize_logged_model(&mid, LoggedModelStatus::Ready).await.unwrap();
    assert_eq!(ready.info.status, LoggedModelStatus::Ready);
    assert_eq!(ready.data.metrics.len(), 1);
    assert_eq!(ready.data.metrics[0].run_id.as_deref(), Some(id.as_str()));
    assert_eq!(db.get_run(&id).await.unwrap().outputs.model_outputs[0].model_id, mid);
    let found = db.search_logged_models(&["0".into()], Some("name = 'model'"), &[], None, None).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let found = db.search_logged_models(&["0".into()], Some("metrics.acc > 0.95"), &[], None, None).await.unwrap();
    assert!(found.items.is_empty());
    db.set_logged_model_tags(&mid, &[KeyValue::new("t", "1")]).await.unwrap();
    db.delete_logged_model_tag(&mid, "t").await.unwrap();
    assert!(db.get_logged_model(&mid).await.unwrap().info.tags.is_empty());
}

async fn registry_versions_aliases_and_stages(db: Database) {
    let run = new_run(&db, "0", "reg").await;
    db.create_registered_model("clf", &[KeyValue::new("owner", "me")], Some("desc"), None).await.unwrap();
    assert!(matches!(db.create_registered_model("clf", &[], None, None).await, Err(Error::AlreadyExists(_))));
    // Concurrent registrations get distinct, gap-free numbers.
    let mut handles = Vec::new();
    for _ in 0..6 {
        let db = db.clone();
        let source = format!("runs:/{run}/model");
        handles.push(tokio::spawn(async move {
            db.create_model_version(NewModelVersion { name: "clf".into(), source, ..Default::default() }).await
        }));
    }
    let mut versions = Vec::new();
    for h in handles {
        versions.push(h.await.unwrap().unwrap().version.parse::<i64>().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    let v1 = db.get_model_version("clf", "1").await.unwrap();
    assert_eq!(v1.run_id.as_deref(), Some(run.as_str()));
    assert_eq!(
        db.get_model_version_download_uri("clf", "1").await.unwrap(),
        format!("mlflow-artifacts:/0/{run}/artifacts/model")
    );
    assert!(
        db.create_model_version(NewModelVersion {
            name: "clf".into(),
            source: "/etc/passwd".into(),
            ..Default::default()
        })
        .await
        .is_err()
    );
    assert!(matches!(
        db.create_model_version(NewModelVersion {
            name: "nope".into(),
            source: format!("runs:/{run}/m"),
            ..Default::default()
        })
        .await,
        Err(Error::NotFound(_))
    ));

    db.set_registered_model_alias("clf", "champion", "2").await.unwrap();
    assert_eq!(db.get_model_version_by_alias("clf", "champion").await.unwrap().version, "2");
    db.set_registered_model_alias("clf", "champion", "3").await.unwrap();
    let v3 = db.get_model_version_by_alias("clf", "champion").await.unwrap();
    assert_eq!((v3.version.as_str(), v3.aliases.clone()), ("3", vec!["champion".to_owned()]));
    assert!(db.set_registered_model_alias("clf", "v2", "1").await.is_err());

    db.transition_model_version_stage("clf", "1", "production", false).await.unwrap();
    db.transition_model_version_stage("clf", "2", "Production", true).await.unwrap();
    assert_eq!(db.get_model_version("clf", "1").await.unwrap().current_stage, "Archived");
    let latest = db.get_latest_versions("clf", &["Production".into()]).await.unwrap();
    assert_eq!(latest.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), vec!["2"]);
    let model = db.get_registered_model("clf").await.unwrap();
    let mut stages: Vec<_> =
        model.latest_versions.iter().map(|v| (v.current_stage.clone(), v.version.clone())).collect();
    stages.sort();
    assert_eq!(
        stages,
        vec![("Archived".into(), "1".into()), ("None".into(), "6".into()), ("Production".into(), "2".into())]
    );

    db.delete_model_version("clf", "3").await.unwrap();
    assert!(db.get_model_version_by_alias("clf", "champion").await.is_err());
    let next = db
        .create_model_version(NewModelVersion {
            name: "clf".into(),
            source: format!("runs:/{run}/m"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.version, "7", "numbers are never reused");

    db.rename_registered_model("clf", "clf2").await.unwrap();
    assert_eq!(db.get_model_version("clf2", "2").await.unwrap().name, "clf2");
    let found = db.search_model_versions(Some("name = 'clf2'"), None, &[], None).await.unwrap();
    assert_eq!(found.items.len(), 6);
    let models =
        db.search_registered_models(Some("tags.`mlflow.prompt.is_prompt` != 'true'"), None, &[], None).await.unwrap();
    assert_eq!(models.items.len(), 1);
    db.delete_registered_model("clf2").await.unwrap();
    assert!(matches!(db.get_registered_model("clf2").await, Err(Error::NotFound(_))));
}

async fn concurrent_writers_lose_nothing(db: Database) {
    let id = new_run(&db, "0", "c").await;
    let mut handles = Vec::new();
    for w in 0..8i64 {
        let db = db.clone();
        let id = id.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..50i64 {
                db.log_metric(&id, metric("m", (w * 100 + i) as f64, w * 1000 + i, i)).await.unwrap();
            }
            db.log_param(&id, KeyValue::new(format!("p{w}"), "x")).await.unwrap();
            db.set_tag(&id, KeyValue::new(format!("t{w}"), "y")).await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let history = db.get_metric_history(&id, "m", None, None).await.unwrap();
    assert_eq!(history.items.len(), 400);
    let run = db.get_run(&id).await.unwrap();
    assert_eq!(run.data.params.len(), 8);
    assert_eq!(run.data.tags.iter().filter(|t| t.key.starts_with('t')).count(), 8);
    // The latest value is the greatest (step, timestamp): step 49 of writer 7.
    assert_eq!(run.data.metrics[0].value, 749.0);
}

async fn dataset_versions_number_and_deduplicate(db: Database) {
    use shipyard_store::datasets::NewDatasetVersion;
    let new = |digest: &str| NewDatasetVersion {
        name: "train".into(),
        digest: digest.into(),
        format: "csv".into(),
        rows: 3,
        size_bytes: 42,
        schema: r#"{"mlflow_colspec": []}"#.into(),
        profile: r#"{"rows": 3}"#.into(),
        source: "/data/train.csv".into(),
        artifact_root: "/artifacts".into(),
        artifact_path: format!("datasets/sha256/{digest}.csv"),
        description: None,
    };
    let (v1, created) = db.create_dataset_version(new("aa")).await.unwrap();
    assert_eq!((v1.version, created), (1, true));
    let (same, created) = db.create_dataset_version(new("aa")).await.unwrap();
    assert_eq!((same.version, created), (1, false));
    let (v2, created) = db.create_dataset_version(new("bb")).await.unwrap();
    assert_eq!((v2.version, created), (2, true));
    assert_eq!(db.get_dataset_version("train", None).await.unwrap().digest, "bb");
    let first = db.get_dataset_version("train", Some(1)).await.unwrap();
    assert_eq!((first.digest.as_str(), first.profile["rows"].as_i64()), ("aa", Some(3)));
    let listed = db.list_dataset_versions(Some("train")).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    assert!(listed[0].profile.is_null(), "listings leave profiles out");
    assert!(matches!(db.get_dataset_version("train", Some(9)).await, Err(Error::NotFound(_))));
    assert!(matches!(db.get_dataset_version("nope", None).await, Err(Error::NotFound(_))));
    let mut bad = new("cc");
    bad.name = "../x".into();
    assert!(matches!(db.create_dataset_version(bad).await, Err(Error::InvalidParameter(_))));
    // A suite's results recorded beside a version, newest first.
    use shipyard_store::datasets::NewValidation;
    let validation = |success: bool, report: &str| NewValidation {
        name: "train".into(),
        version: 2,
        suite: "suite.yaml".into(),
        success,
        evaluated: 4,
        successful: if success { 4 } else { 3 },
        quality_score: if success { 1.0 } else { 0.75 },
        report: report.into(),
        actor: "ana".into(),
    };
    let first = db.record_validation(validation(false, r#"{"success": false}"#)).await.unwrap();
    let second = db.record_validation(validation(true, r#"{"success": true}"#)).await.unwrap();
    assert!(second.id > first.id && second.time >= first.time);
    let listed = db.dataset_validations("train", 2, 10).await.unwrap();
    assert_eq!(listed.iter().map(|v| (v.success, v.successful)).collect::<Vec<_>>(), [(true, 4), (false, 3)]);
    assert_eq!((listed[1].quality_score, listed[1].report["success"].as_bool()), (0.75, Some(false)));
    assert_eq!(db.dataset_validations("train", 2, 1).await.unwrap().len(), 1);
    assert!(db.dataset_validations("train", 1, 10).await.unwrap().is_empty());
    let mut missing = validation(true, "{}");
    missing.version = 9;
    assert!(matches!(db.record_validation(missing).await, Err(Error::NotFound(_))));
    assert!(matches!(db.record_validation(validation(true, "not json")).await, Err(Error::InvalidParameter(_))));
}

fn promotion(to: &str, expected_from: Option<Option<&str>>) -> AliasMoveRequest {
    AliasMoveRequest {
        model: "promo".into(),
        alias: "production".into(),
        to_version: to.into(),
        kind: MoveKind::Promote,
        expected_from: expected_from.map(|e| e.map(str::to_owned)),
        actor: "tester".into(),
        reason: None,
        gate_report: Some(r#"{"passed":true}"#.into()),
    }
}

async fn alias_moves_are_recorded_serialized_and_rolled_back(db: Database) {
    let run = new_run(&db, "0", "promo").await;
    db.create_registered_model("promo", &[], None, None).await.unwrap();
    for _ in 0..4 {
        let source = format!("runs:/{run}/model");
        db.create_model_version(NewModelVersion { name: "promo".into(), source, ..Default::default() }).await.unwrap();
    }
    // MLflow's API sets an alias: recorded as a `set` move from nothing.
    db.set_registered_model_alias("promo", "production", "1").await.unwrap();
    let first = db.move_alias(promotion("2", Some(Some("1")))).await.unwrap();
    assert_eq!((first.seq, first.from_version.as_deref(), first.to_version.as_deref()), (2, Some("1"), Some("2")));
    assert_eq!(first.gate_report.as_deref(), Some(r#"{"passed":true}"#));
    // A promotion that read the alias before that move conflicts instead of overwriting it.
    let stale = db.move_alias(promotion("3", Some(Some("1")))).await;
    assert!(matches!(stale, Err(Error::Conflict(ref m)) if m.contains("moved while this promotion ran")), "{stale:?}");
    // Two promotions from the same champion at once: exactly one wins.
    let (a, b) =
        tokio::join!(db.move_alias(promotion("3", Some(Some("2")))), db.move_alias(promotion("4", Some(Some("2")))));
    assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1, "{a:?} / {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(Error::Conflict(_))), "{loser:?}");
    let winner = db.get_model_version_by_alias("promo", "production").await.unwrap().version;
    // Rollback walks back one move at a time, then has nowhere to go.
    let back = db.rollback_alias("promo", "production", "tester", Some("bad canary")).await.unwrap();
    assert_eq!((back.from_version.as_deref(), back.to_version.as_deref()), (Some(winner.as_str()), Some("2")));
    assert_eq!(back.kind, MoveKind::Rollback);
    assert_eq!(db.get_model_version_by_alias("promo", "production").await.unwrap().version, "2");
    db.rollback_alias("promo", "production", "tester", None).await.unwrap();
    assert_eq!(db.get_model_version_by_alias("promo", "production").await.unwrap().version, "1");
    let none = db.rollback_alias("promo", "production", "tester", None).await;
    assert!(matches!(none, Err(Error::InvalidParameter(ref m)) if m.contains("no earlier version")), "{none:?}");
    // Unknown names, a deleted version, an archived one.
    assert!(matches!(db.rollback_alias("nope", "production", "t", None).await, Err(Error::NotFound(_))));
    assert!(matches!(db.rollback_alias("promo", "staging", "t", None).await, Err(Error::InvalidParameter(_))));
    db.delete_model_version("promo", "4").await.unwrap();
    assert!(matches!(db.move_alias(promotion("4", None)).await, Err(Error::NotFound(_))));
    db.transition_model_version_stage("promo", "3", "Archived", false).await.unwrap();
    let archived = db.move_alias(promotion("3", None)).await;
    assert!(matches!(archived, Err(Error::InvalidParameter(ref m)) if m.contains("archived")), "{archived:?}");
    // The history holds every move, in order, with who and why.
    let history = db.alias_history("promo", Some("production")).await.unwrap();
    let kinds: Vec<MoveKind> = history.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [MoveKind::Set, MoveKind::Promote, MoveKind::Promote, MoveKind::Rollback, MoveKind::Rollback]);
    assert_eq!(history[3].reason.as_deref(), Some("bad canary"));
    assert!(history.iter().all(|m| m.actor == "tester" || m.actor == "mlflow-api"));
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    // Deleting the version an alias holds records the alias's removal.
    db.set_registered_model_alias("promo", "staging", "2").await.unwrap();
    db.delete_model_version("promo", "2").await.unwrap();
    let staging = db.alias_history("promo", Some("staging")).await.unwrap();
    assert_eq!(staging.last().map(|m| (m.kind, m.to_version.clone())), Some((MoveKind::Delete, None)));
}

async fn deployments_are_versioned_policies(db: Database) {
    use shipyard_core::deployment::{Arm, DeploymentSpec, ModelRef, StickyKey};
    let spec = DeploymentSpec {
        arms: vec![
            Arm { target: ModelRef::alias("churn", "production"), weight: 90 },
            Arm { target: ModelRef::version("churn", "5"), weight: 10 },
        ],
        shadow: Some(ModelRef::version("churn", "6")),
        sticky: Some(StickyKey::Header("x-user".into())),
    };
    let created = db.put_deployment("churn-api", &spec, "tester").await.unwrap();
    assert_eq!((created.revision, &created.spec), (1, &spec));
    let mut single = spec.clone();
    single.arms.truncate(1);
    single.arms[0].weight = 100;
    let changed = db.put_deployment("churn-api", &single, "tester").await.unwrap();
    assert_eq!(changed.revision, 2);
    assert_eq!(db.get_deployment("churn-api").await.unwrap().spec, single);
    assert_eq!(db.list_deployments().await.unwrap().len(), 1);
    let mut bad = spec.clone();
    bad.arms[1].weight = 20;
    assert!(
        matches!(db.put_deployment("x", &bad, "tester").await, Err(Error::InvalidParameter(m)) if m.contains("sum to 110"))
    );
    assert!(matches!(db.put_deployment("a/b", &spec, "tester").await, Err(Error::InvalidParameter(_))));
    // The canary's weight, set and ended in place: the rest of the policy stays.
    assert!(
        matches!(db.set_canary_weight("churn-api", 30, "tester").await, Err(Error::InvalidParameter(m)) if m.contains("no canary"))
    );
    db.put_deployment("churn-api", &spec, "tester").await.unwrap();
    let weighted = db.set_canary_weight("churn-api", 30, "tester").await.unwrap();
    assert_eq!(weighted.revision, 4);
    assert_eq!(weighted.spec.arms.iter().map(|a| a.weight).collect::<Vec<_>>(), [70, 30]);
    assert_eq!((&weighted.spec.shadow, &weighted.spec.sticky), (&spec.shadow, &spec.sticky));
    assert!(
        matches!(db.set_canary_weight("churn-api", 101, "tester").await, Err(Error::InvalidParameter(m)) if m.contains("0 to 100"))
    );
    assert!(matches!(db.set_canary_weight("nope", 5, "tester").await, Err(Error::NotFound(_))));
    let mut three = spec.clone();
    three.shadow = None;
    three.arms = vec![
        Arm { target: ModelRef::alias("churn", "production"), weight: 50 },
        Arm { target: ModelRef::version("churn", "5"), weight: 25 },
        Arm { target: ModelRef::version("churn", "6"), weight: 25 },
    ];
    db.put_deployment("ab", &three, "tester").await.unwrap();
    assert!(
        matches!(db.set_canary_weight("ab", 10, "tester").await, Err(Error::InvalidParameter(m)) if m.contains("3 arms"))
    );
    let zeroed = db.set_canary_weight("ab", 0, "tester").await.unwrap();
    assert_eq!(zeroed.spec.arms.iter().map(|a| a.weight).collect::<Vec<_>>(), [100, 0, 0]);
    db.delete_deployment("ab").await.unwrap();
    let ended = db.end_canary("churn-api", "tester").await.unwrap();
    assert_eq!(ended.revision, 5);
    assert_eq!(ended.spec.arms, vec![Arm { target: ModelRef::alias("churn", "production"), weight: 100 }]);
    assert_eq!(ended.spec.shadow, spec.shadow);
    assert!(
        matches!(db.end_canary("churn-api", "tester").await, Err(Error::InvalidParameter(m)) if m.contains("no canary"))
    );
    db.put_monitor("churn-api", "monitors: 1\n").await.unwrap();
    db.delete_deployment("churn-api").await.unwrap();
    // Its monitors go with it: the schedule would otherwise evaluate a deployment that is gone.
    assert_eq!(db.get_monitor("churn-api").await.unwrap(), None);
    assert!(matches!(db.get_deployment("churn-api").await, Err(Error::NotFound(_))));
    assert!(matches!(db.delete_deployment("churn-api").await, Err(Error::NotFound(_))));
    // What a server serving `production` polls.
    let run = new_run(&db, "0", "targets").await;
    for name in ["b-model", "a-model"] {
        db.create_registered_model(name, &[], None, None).await.unwrap();
        let source = format!("runs:/{run}/model");
        db.create_model_version(NewModelVersion { name: name.into(), source, ..Default::default() }).await.unwrap();
        db.set_registered_model_alias(name, "production", "1").await.unwrap();
    }
    let targets = db.alias_targets("production").await.unwrap();
    assert_eq!(targets, [("a-model".to_owned(), "1".to_owned()), ("b-model".to_owned(), "1".to_owned())]);
}

fn logged(deployment: &str, request_id: &str, row: i64, time: i64, status: i64) -> PredictionRecord {
    PredictionRecord {
        deployment: deployment.into(),
        request_id: request_id.into(),
        row,
        time,
        model: "churn".into(),
        version: Some("2".into()),
        status,
        latency_us: 1500,
        inputs: (status == 200).then(|| r#"{"age":41.5,"group":"a"}"#.to_owned()),
        prediction: (status == 200).then(|| r#""1""#.to_owned()),
        score: (status == 200).then_some(0.75),
    }
}

async fn prediction_log_feedback_and_alerts(db: Database) {
    use shipyard_store::monitoring::PredictionPage;
    // 25,000 rows in one call (several multi-row statements on PostgreSQL), then a 3-row
    // request, a failure, and another deployment's row.
    let many: PredictionBatch = (0..25_000).map(|i| logged("api", &format!("r{i}"), 0, 1_000 + i, 200)).collect();
    assert_eq!(db.log_predictions(Arc::new(many)).await.unwrap(), 25_000);
    let batch = vec![
        logged("api", "multi", 0, 90_000, 200),
        logged("api", "multi", 1, 90_000, 200),
        logged("api", "multi", 2, 90_000, 200),
        logged("api", "failed", 0, 90_001, 422),
        logged("other", "elsewhere", 0, 90_002, 200),
    ];
    db.log_predictions(Arc::new(batch.into_iter().collect())).await.unwrap();

    // Pages: newest first, bounded, continued by id.
    let page = |before_id, limit| PredictionPage { deployment: "api".into(), before_id, limit };
    let first = db.prediction_page(page(None, 10)).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].record.request_id, "failed");
    assert!(first.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(first[1].record, logged("api", "multi", 2, 90_000, 200));
    let next = db.prediction_page(page(first.last().map(|p| p.id), 10)).await.unwrap();
    assert!(next[0].id < first[9].id);
    // A window ending at a time starts just past the newest row logged by then.
    let end = db.prediction_id_after("api", 1_000 + 24_999).await.unwrap();
    let at = db.prediction_page(page(end, 2)).await.unwrap();
    assert_eq!((at[0].record.request_id.as_str(), at[1].record.request_id.as_str()), ("r24999", "r24998"));
    let end = db.prediction_id_after("api", 1_000 + 9).await.unwrap();
    assert_eq!(db.prediction_page(page(end, 1)).await.unwrap()[0].record.request_id, "r9");
    assert_eq!(db.prediction_id_after("api", 999).await.unwrap(), None, "no row that old");
    assert_eq!(db.prediction_id_after("nobody", 1_000_000).await.unwrap(), None);

    // Ground truth: one row, a list for a multi-row request, corrections replace.
    let actual = |id: &str, row: Option<i64>, v: serde_json::Value| Actual { request_id: id.into(), row, actual: v };
    let n = db
        .record_actuals(Some("api"), vec![actual("r7", None, json!(1)), actual("multi", None, json!([0, 1, "x"]))])
        .await
        .unwrap();
    assert_eq!(n, 4);
    db.record_actuals(None, vec![actual("multi", Some(2), json!(true))]).await.unwrap();
    let rows = db.request_predictions("multi").await.unwrap();
    let actuals: Vec<Option<&str>> = rows.iter().map(|p| p.actual.as_deref()).collect();
    assert_eq!(actuals, [Some("0"), Some("1"), Some("true")]);

    // All or nothing: one bad item rejects the batch and names it.
    for (items, expect) in [
        (vec![actual("r8", None, json!(1)), actual("nope", None, json!(1))], "feedback[1] (request_id 'nope')"),
        (vec![actual("r8", None, json!(1)), actual("failed", None, json!(1))], "feedback[1] (request_id 'failed')"),
        (vec![actual("elsewhere", None, json!(1))], "of 'api'"),
        (vec![actual("multi", None, json!(1))], "the request had 3 rows"),
        (vec![actual("r8", Some(1), json!(1))], "row 1 is out of range"),
        (vec![actual("r8", None, json!(null))], "must be a number, a string or a boolean"),
    ] {
        let e = db.record_actuals(Some("api"), items).await.unwrap_err().to_string();
        assert!(e.contains(expect), "{e}");
    }
    assert_eq!(db.request_predictions("r8").await.unwrap()[0].actual, None);

    // Retention deletes old rows and their ground truth.
    assert_eq!(db.delete_predictions_before(1_100).await.unwrap(), 100);
    assert!(db.request_predictions("r7").await.unwrap().is_empty());

    // Monitor configurations, evaluations, alerts.
    db.put_monitor("api", "monitors: 1\n").await.unwrap();
    db.put_monitor("api", "monitors: 1\nwindow: {last: 5}\n").await.unwrap();
    assert_eq!(db.get_monitor("api").await.unwrap().as_deref(), Some("monitors: 1\nwindow: {last: 5}\n"));
    assert_eq!(db.list_monitors().await.unwrap().len(), 1);
    for t in [10, 20, 30] {
        let values = [("accuracy".to_owned(), t as f64 / 100.0)].into_iter().collect();
        db.record_evaluation(&MonitorEvaluation { deployment: "api".into(), time: t, values }).await.unwrap();
    }
    let history = db.evaluations("api", 15, 10).await.unwrap();
    assert_eq!(history.iter().map(|e| e.time).collect::<Vec<_>>(), [20, 30]);
    assert_eq!(history[1].values["accuracy"], 0.3);
    let alert = Alert {
        id: 0,
        deployment: "api".into(),
        rule: "acc".into(),
        metric: "accuracy".into(),
        value: 0.4,
        comparator: "<".into(),
        threshold: 0.8,
        severity: "high".into(),
        fired_time: 99,
        message: "accuracy = 0.4 < 0.8".into(),
        action: Some("rollback".into()),
        action_status: None,
        action_detail: None,
        acknowledged_by: None,
        acknowledged_time: None,
    };
    let stored = db.record_alert(alert.clone()).await.unwrap();
    assert!(stored.id > 0);
    db.record_alert_action(stored.id, "succeeded", "rolled back").await.unwrap();
    let listed = db.alerts(Some("api"), 10).await.unwrap();
    assert_eq!(listed[0].action_status.as_deref(), Some("succeeded"));
    assert_eq!(listed[0].action_detail.as_deref(), Some("rolled back"));
    assert_eq!(listed[0].acknowledged_by, None);
    // Acknowledged once: the first one stays.
    let acked = db.acknowledge_alert(stored.id, "ana").await.unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("ana"));
    let first = acked.acknowledged_time.unwrap();
    assert!(first > 0);
    let again = db.acknowledge_alert(stored.id, "bob").await.unwrap();
    assert_eq!((again.acknowledged_by.as_deref(), again.acknowledged_time), (Some("ana"), Some(first)));
    assert_eq!(db.alerts(Some("api"), 10).await.unwrap()[0].acknowledged_by.as_deref(), Some("ana"));
    assert!(matches!(db.acknowledge_alert(stored.id + 1000, "ana").await, Err(Error::NotFound(_))));
    assert!(matches!(db.acknowledge_alert(stored.id, " ").await, Err(Error::InvalidParameter(_))));
    // A shared secret is made once and read back the same by every caller.
    let secret = db.shared_secret("ui.csrf").await.unwrap();
    assert_eq!(secret.len(), 64);
    assert_eq!(db.shared_secret("ui.csrf").await.unwrap(), secret);
    assert_ne!(db.shared_secret("other").await.unwrap(), secret);
    assert!(db.alerts(Some("other"), 10).await.unwrap().is_empty());
    db.delete_monitor("api").await.unwrap();
    assert!(db.delete_monitor("api").await.unwrap_err().to_string().contains("no monitors"));
}

async fn users_tokens_roles_and_grants(db: Database) {
    assert!(!db.has_admin().await.unwrap());
    let admin = db.create_user("admin", "$argon2id$hash-a", true).await.unwrap();
    let ana = db.create_user("ana", "$argon2id$hash-b", false).await.unwrap();
    assert!(db.has_admin().await.unwrap());
    assert!(matches!(db.create_user("ana", "x", false).await, Err(Error::AlreadyExists(_))));
    for bad in ["", "a:b", " ana", "tab\there"] {
        assert!(matches!(db.create_user(bad, "x", false).await, Err(Error::InvalidParameter(_))), "{bad:?}");
    }
    let stored = db.user_credentials("ana").await.unwrap().unwrap();
    assert_eq!((stored.user.clone(), stored.password_hash.as_str()), (ana.clone(), "$argon2id$hash-b"));
    assert!(db.user_credentials("nobody").await.unwrap().is_none());
    db.set_password_hash("ana", "$argon2id$hash-c").await.unwrap();
    let changed = db.user_credentials("ana").await.unwrap().unwrap();
    assert_eq!(changed.password_hash, "$argon2id$hash-c");
    assert!(changed.password_time >= stored.password_time);
    assert!(db.set_admin("ana", true).await.unwrap().is_admin);
    db.set_admin("ana", false).await.unwrap();
    assert_eq!(
        db.list_users().await.unwrap().iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["admin", "ana"]
    );

    // Tokens: found by id with their owner, revoked once.
    let token =
        db.create_token(ana.id, "abcdef012345", "laptop", "digest", &["read".to_owned()], Some(42)).await.unwrap();
    let found = db.token_credentials("abcdef012345").await.unwrap().unwrap();
    assert_eq!((found.digest.as_str(), found.owner.username.as_str()), ("digest", "ana"));
    assert_eq!(found.token, token);
    assert!(db.token_credentials("000000000000").await.unwrap().is_none());
    db.touch_token("abcdef012345", 7).await.unwrap();
    assert_eq!(db.list_tokens(ana.id).await.unwrap()[0].last_used_time, Some(7));
    assert!(matches!(db.revoke_token(admin.id, "abcdef012345").await, Err(Error::NotFound(_))), "not admin's token");
    let revoked = db.revoke_token(ana.id, "abcdef012345").await.unwrap();
    assert!(revoked.revoked_time.is_some());

    // Personal grants and a role's both reach the user; one grant per resource, replaced.
    db.grant_user(ana.id, "experiment", "1", "READ").await.unwrap();
    db.grant_user(ana.id, "experiment", "1", "EDIT").await.unwrap();
    db.grant_user(ana.id, "registered_model", "churn", "MANAGE").await.unwrap();
    let readers = db.create_role("default", "readers", Some("read all")).await.unwrap();
    assert!(matches!(db.create_role("default", "readers", None).await, Err(Error::AlreadyExists(_))));
    assert!(matches!(db.create_role("default", "__user_9__", None).await, Err(Error::InvalidParameter(_))));
    let all = db.add_role_permission(readers.id, "experiment", "*", "READ").await.unwrap();
    db.assign_role(ana.id, readers.id).await.unwrap();
    db.assign_role(ana.id, readers.id).await.unwrap();
    let mut grants: Vec<(String, String, String)> = db
        .user_grants(ana.id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.resource_type, g.resource_pattern, g.permission))
        .collect();
    grants.sort();
    assert_eq!(
        grants,
        [
            ("experiment".to_owned(), "*".to_owned(), "READ".to_owned()),
            ("experiment".to_owned(), "1".to_owned(), "EDIT".to_owned()),
            ("registered_model".to_owned(), "churn".to_owned(), "MANAGE".to_owned()),
        ]
    );
    // Personal roles stay out of role listings.
    assert_eq!(db.list_roles(None).await.unwrap(), std::slice::from_ref(&readers));
    assert_eq!(db.user_roles(ana.id).await.unwrap(), std::slice::from_ref(&readers));
    assert!(db.personal_role_of(ana.id).await.unwrap().is_some());
    assert!(db.personal_role_of(admin.id).await.unwrap().is_none());
    assert_eq!(db.role_users(readers.id).await.unwrap().len(), 1);
    assert_eq!(db.update_role_permission(all.id, "EDIT").await.unwrap().permission, "EDIT");
    // A renamed model's grants follow it; a deleted one's go.
    assert_eq!(db.retarget_grants("registered_model", "churn", Some("churn-v2")).await.unwrap(), 1);
    assert!(db.user_grants(ana.id).await.unwrap().iter().any(|g| g.resource_pattern == "churn-v2"));
    assert_eq!(db.retarget_grants("registered_model", "churn-v2", None).await.unwrap(), 1);
    db.revoke_user(ana.id, "experiment", "1").await.unwrap();
    assert!(matches!(db.revoke_user(ana.id, "experiment", "1").await, Err(Error::NotFound(_))));
    db.unassign_role(ana.id, readers.id).await.unwrap();
    assert!(db.user_grants(ana.id).await.unwrap().is_empty());
    db.remove_role_permission(all.id).await.unwrap();
    db.delete_role(readers.id).await.unwrap();
    assert!(matches!(db.get_role(readers.id).await, Err(Error::NotFound(_))));

    // What a request names: a run's experiment, a dataset file's datasets.
    let run = new_run(&db, "0", "r").await;
    assert_eq!(db.run_experiment(&run).await.unwrap(), Some(0));
    assert_eq!(db.run_experiment("nope").await.unwrap(), None);
    assert!(db.datasets_with_file("datasets/sha256/x.csv").await.unwrap().is_empty());

    // Deleting a user takes their tokens and personal grants with them.
    db.grant_user(ana.id, "dataset", "people", "READ").await.unwrap();
    db.delete_user("ana").await.unwrap();
    assert!(db.token_credentials("abcdef012345").await.unwrap().is_none());
    assert!(db.user_grants(ana.id).await.unwrap().is_empty());
    assert!(matches!(db.delete_user("ana").await, Err(Error::NotFound(_))));
}
