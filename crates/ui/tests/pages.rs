//! Every page rendered from a seeded store, parsed as HTML and asserted by CSS selector: what
//! it lists, how the URL's view (filter, sort, columns, pages) changes it, that a filter error
//! is shown inline, that MLflow's links reach the script that forwards them, and that values
//! holding markup stay text.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use scraper::{Html, Selector};
use shipyard_core::entities::{KeyValue, Metric};
use shipyard_store::tracking::NewRun;
use shipyard_store::{Database, DatabaseUri};
use shipyard_ui::{UiState, router};
use tower::ServiceExt;

const XSS: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

async fn store() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&DatabaseUri::Sqlite(dir.path().join("ui.db"))).await.unwrap();
    (db, dir)
}

async fn get(db: &Database, uri: &str) -> (StatusCode, Html, axum::http::HeaderMap) {
    let response =
        router(UiState { db: db.clone() }).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, Html::parse_document(std::str::from_utf8(&bytes).unwrap()), headers)
}

fn texts(html: &Html, selector: &str) -> Vec<String> {
    let s = Selector::parse(selector).unwrap();
    html.select(&s).map(|e| e.text().collect::<String>().trim().to_owned()).collect()
}

fn attr(html: &Html, selector: &str, name: &str) -> Option<String> {
    let s = Selector::parse(selector).unwrap();
    html.select(&s).next().and_then(|e| e.value().attr(name)).map(str::to_owned)
}

/// An experiment with `n` runs: `accuracy` = i / n, `lr` = i, tag `team`.
async fn seeded(db: &Database, name: &str, n: usize) -> String {
    let id = db.create_experiment(name, None, &[]).await.unwrap();
    for i in 0..n {
        let run = db
            .create_run(NewRun {
                experiment_id: id.clone(),
                user_id: "ana".into(),
                run_name: Some(format!("run-{i:02}")),
                start_time: Some(1_700_000_000_000 + i as i64 * 1000),
                tags: vec![],
            })
            .await
            .unwrap();
        let metric = |key: &str, value: f64| Metric {
            key: key.into(),
            value,
            timestamp: 1_700_000_000_000,
            step: 3,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        };
        db.log_batch(
            &run.info.run_uuid,
            vec![metric("accuracy", i as f64 / n as f64)],
            vec![KeyValue::new("lr", i.to_string())],
            vec![KeyValue::new("team", "vision")],
        )
        .await
        .unwrap();
    }
    id
}

#[tokio::test]
async fn the_experiments_page_lists_runs_counts_and_searches_by_name() {
    let (db, _dir) = store().await;
    seeded(&db, "churn", 3).await;
    seeded(&db, "fraud", 1).await;
    let (status, html, headers) = get(&db, "/").await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let names = texts(&html, "#experiments tbody td:first-child");
    // Newest activity first; the Default experiment has no runs.
    assert_eq!(names, ["fraud", "churn", "Default"]);
    assert_eq!(texts(&html, "#experiments tbody td.num"), ["1", "3", "0"]);
    let (_, html, _) = get(&db, "/?q=CHU").await;
    assert_eq!(texts(&html, "#experiments tbody td:first-child"), ["churn"]);
}

#[tokio::test]
async fn the_runs_table_filters_sorts_chooses_columns_and_pages() {
    let (db, _dir) = store().await;
    let id = seeded(&db, "churn", 5).await;
    let (status, html, _) = get(&db, &format!("/experiments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    // Default columns: the experiment's metrics then params, found over all its runs.
    assert_eq!(texts(&html, "#runs thead th")[5..], ["accuracy", "lr"]);
    assert_eq!(texts(&html, "#runs tbody td:first-child").len(), 5);

    let filter = "metrics.accuracy >= 0.4";
    let (_, html, _) =
        get(&db, &format!("/experiments/{id}?filter={}&order=metrics.accuracy%20ASC", enc(filter))).await;
    assert_eq!(texts(&html, "#runs tbody td:first-child"), ["run-02", "run-03", "run-04"]);
    assert_eq!(texts(&html, "#runs tbody td.num"), ["0.4", "0.6", "0.8"]);
    assert_eq!(attr(&html, "input[name=filter]", "value").as_deref(), Some(filter));

    let (_, html, _) = get(&db, &format!("/experiments/{id}?col=tags.team&col=params.lr")).await;
    assert_eq!(texts(&html, "#runs thead th")[5..], ["team", "lr"]);
    assert!(texts(&html, "#runs tbody td").contains(&"vision".to_owned()));

    // Two runs a page: the next page's link carries the store's token and the view.
    let (_, html, _) = get(&db, &format!("/experiments/{id}?size=2&order=attributes.start_time%20ASC")).await;
    assert_eq!(texts(&html, "#runs tbody td:first-child"), ["run-00", "run-01"]);
    let next = attr(&html, "#next-page", "href").unwrap();
    assert!(next.contains("size=2") && next.contains("order="), "{next}");
    let (_, html, _) = get(&db, &next).await;
    assert_eq!(texts(&html, "#runs tbody td:first-child"), ["run-02", "run-03"]);
    assert!(attr(&html, "#first-page", "href").is_some());
}

#[tokio::test]
async fn a_bad_filter_is_shown_above_the_table() {
    let (db, _dir) = store().await;
    let id = seeded(&db, "churn", 2).await;
    let (status, html, _) = get(&db, &format!("/experiments/{id}?filter={}", enc("metrics.accuracy >>> 1"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = texts(&html, "#filter-error");
    assert_eq!(error.len(), 1);
    assert!(!error[0].is_empty());
    assert_eq!(attr(&html, "input[name=filter]", "value").as_deref(), Some("metrics.accuracy >>> 1"));
    let (status, _, _) = get(&db, "/experiments/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_run_page_shows_its_overview_params_metrics_and_tags() {
    let (db, _dir) = store().await;
    let id = seeded(&db, "churn", 1).await;
    let run = db
        .search_runs(std::slice::from_ref(&id), None, shipyard_core::entities::ViewType::ActiveOnly, None, &[], None)
        .await
        .unwrap()
        .items
        .remove(0);
    let (status, html, _) = get(&db, &format!("/runs/{}", run.info.run_uuid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&html, "h1"), ["run-00"]);
    assert_eq!(texts(&html, "#params tbody td"), ["lr", "0"]);
    assert_eq!(texts(&html, "#metrics tbody td")[..3], ["accuracy", "0", "3"]);
    assert!(texts(&html, "#tags tbody td").contains(&"vision".to_owned()));
    assert_eq!(attr(&html, ".crumbs a:nth-of-type(2)", "href"), Some(format!("/experiments/{id}")));
    let (status, _, _) = get(&db, "/runs/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn values_holding_markup_stay_text_on_every_page() {
    let (db, _dir) = store().await;
    let id = db.create_experiment(XSS, None, &[KeyValue::new("note", XSS)]).await.unwrap();
    let run = db
        .create_run(NewRun {
            experiment_id: id.clone(),
            user_id: XSS.into(),
            run_name: Some(XSS.into()),
            start_time: None,
            tags: vec![KeyValue::new("note", XSS)],
        })
        .await
        .unwrap();
    db.log_batch(&run.info.run_uuid, vec![metric("m", 1.0, 0)], vec![KeyValue::new("p", XSS)], vec![]).await.unwrap();
    for uri in [
        "/".to_owned(),
        format!("/experiments/{id}?col=params.p&col=tags.note"),
        format!("/runs/{}", run.info.run_uuid),
    ] {
        let (status, html, _) = get(&db, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        // The only scripts are the server's own files; no element came from a value.
        let scripts: Vec<_> = html.select(&Selector::parse("script").unwrap()).collect();
        assert!(!scripts.is_empty(), "{uri}");
        for script in scripts {
            assert!(script.value().attr("src").is_some_and(|src| src.starts_with("/static/")), "{uri}");
            assert_eq!(script.text().collect::<String>(), "", "{uri}: no inline script");
        }
        assert!(html.select(&Selector::parse("img").unwrap()).next().is_none(), "{uri}");
        assert!(
            html.root_element().text().any(|t| t.contains("<script>alert(1)</script>")),
            "{uri}: the value is shown as text"
        );
    }
}

#[tokio::test]
async fn static_files_are_served_and_forward_mlflow_links() {
    let (db, _dir) = store().await;
    let response = router(UiState { db: db.clone() })
        .oneshot(Request::get("/static/links.js").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let script = String::from_utf8(body.to_vec()).unwrap();
    assert!(script.contains("\"/runs/\"") && script.contains("\"/experiments/\""));
    let (status, _, _) = get(&db, "/static/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn metric_columns_show_the_last_the_smallest_and_the_largest_value() {
    let (db, _dir) = store().await;
    let id = db.create_experiment("history", None, &[]).await.unwrap();
    let run = db
        .create_run(NewRun {
            experiment_id: id.clone(),
            user_id: "ana".into(),
            run_name: Some("r".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let at = |value: f64, step: i64| Metric { key: "loss".into(), value, timestamp: 1, step, ..Default::default() };
    db.log_batch(&run.info.run_uuid, vec![at(0.5, 0), at(0.2, 1), at(0.3, 2)], vec![], vec![]).await.unwrap();
    let (_, html, _) =
        get(&db, &format!("/experiments/{id}?col=metrics.loss&col=metrics.loss%40min&col=metrics.loss%40max")).await;
    assert_eq!(texts(&html, "#runs thead th")[5..], ["loss", "loss (min)", "loss (max)"]);
    assert_eq!(texts(&html, "#runs tbody td.num"), ["0.3", "0.2", "0.5"]);
    // The picker offers each metric's last, min and max.
    let picked = Selector::parse("details.columns input[checked]").unwrap();
    let picked: Vec<_> = html.select(&picked).filter_map(|e| e.value().attr("value")).collect();
    assert_eq!(picked, ["metrics.loss", "metrics.loss@min", "metrics.loss@max"]);
}

#[tokio::test]
async fn the_csv_export_holds_every_matching_run_across_store_pages() {
    let (db, _dir) = store().await;
    let id = seeded(&db, "big", 1_203).await;
    let response = router(UiState { db: db.clone() })
        .oneshot(
            Request::get(format!(
                "/experiments/{id}/runs.csv?filter={}&order=attributes.start_time%20ASC&col=metrics.accuracy&col=params.lr",
                enc("metrics.accuracy >= 0.5")
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("runs.csv"));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let mut reader = csv::Reader::from_reader(&bytes[..]);
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["run_id", "run_name", "status", "start_time", "end_time", "user", "metrics.accuracy", "params.lr"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // accuracy = i / 1203 >= 0.5 for i >= 602: 601 runs, in start order, values exact.
    assert_eq!(rows.len(), 601);
    assert_eq!(&rows[0][1], "run-602");
    assert_eq!(rows[0][6].parse::<f64>().unwrap(), 602.0 / 1203.0);
    assert_eq!(&rows[600][7], "1202");
    let (status, _, _) = get(&db, &format!("/experiments/{id}/runs.csv?filter={}", enc("nonsense ~ 1"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp: 1_700_000_000_000 + step,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    }
}

async fn json(db: &Database, uri: &str) -> (StatusCode, serde_json::Value) {
    let response =
        router(UiState { db: db.clone() }).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_run_page_charts_each_metric_from_the_reduced_series() {
    let (db, _dir) = store().await;
    let id = db.create_experiment("charts", None, &[]).await.unwrap();
    let run = db
        .create_run(NewRun {
            experiment_id: id,
            user_id: "ana".into(),
            run_name: Some("long".into()),
            start_time: None,
            tags: vec![],
        })
        .await
        .unwrap()
        .info
        .run_uuid;
    // 5,000 steps with one spike at step 4,321: reduced to 100 buckets, the spike is kept.
    for chunk in (0..5_000i64).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk.iter().map(|s| metric("loss", if *s == 4_321 { 9.0 } else { 1.0 / (1 + s) as f64 }, *s));
        db.log_batch(&run, batch.collect(), vec![], vec![]).await.unwrap();
    }
    db.log_batch(&run, vec![metric("lr", 0.1, 0), metric("lr", 0.05, 1)], vec![], vec![]).await.unwrap();
    let (status, html, _) = get(&db, &format!("/runs/{run}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&html, "figure.chart figcaption"), ["loss", "lr"]);
    assert_eq!(attr(&html, "figure.chart", "data-runs"), Some(run.clone()));
    assert_eq!(attr(&html, "[data-run-name]", "data-run-name"), Some(run.clone()));
    let scripts: Vec<String> = html
        .select(&Selector::parse("script").unwrap())
        .filter_map(|s| s.value().attr("src").map(|src| src.split('?').next().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(scripts, ["/static/links.js", "/static/uPlot.min.js", "/static/charts.js"]);

    let (status, body) = json(&db, &format!("/ui-api/series?run={run}&key=loss&buckets=100")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series = &body["runs"][0];
    assert_eq!((series["points"].as_i64(), series["exact"].as_bool()), (Some(5_000), Some(false)));
    assert_eq!(series["extent"], serde_json::json!([0, 4_999]));
    let maxima: Vec<f64> = series["max"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(maxima.len(), 100);
    assert_eq!(maxima.iter().copied().fold(f64::MIN, f64::max), 9.0, "the spike survives");
    let counts: i64 = series["count"].as_array().unwrap().iter().filter_map(|v| v.as_i64()).sum();
    assert_eq!(counts, 5_000);
    // Zoomed into 50 steps: the exact values.
    let (_, zoom) = json(&db, &format!("/ui-api/series?run={run}&key=loss&from=4300&to=4349&buckets=100")).await;
    assert_eq!(zoom["runs"][0]["exact"], true);
    assert_eq!(zoom["runs"][0]["x_first"].as_array().unwrap().len(), 50);
    // Mistakes name the parameter; an unknown run is a 404.
    for (query, names) in [
        (format!("run={run}"), "'key'"),
        (format!("run={run}&key=loss&x=epoch"), "'x'"),
        (format!("run={run}&key=loss&buckets=0"), "'buckets'"),
        (format!("run={run}&key=loss&from=9&to=1"), "'from'"),
    ] {
        let (status, body) = json(&db, &format!("/ui-api/series?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"].as_str().unwrap().contains(names), "{query}: {body}");
    }
    let (status, _) = json(&db, &format!("/ui-api/series?run={}&key=loss", "f".repeat(32))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn child_runs_are_grouped_under_their_parents() {
    let (db, _dir) = store().await;
    let id = db.create_experiment("nested", None, &[]).await.unwrap();
    let new = |name: &str, start: i64, parent: Option<&str>| NewRun {
        experiment_id: id.clone(),
        user_id: "ana".into(),
        run_name: Some(name.into()),
        start_time: Some(start),
        tags: parent.map(|p| vec![KeyValue::new("mlflow.parentRunId", p)]).unwrap_or_default(),
    };
    let parent = db.create_run(new("search", 1, None)).await.unwrap().info.run_uuid;
    db.create_run(new("lone", 2, None)).await.unwrap();
    for i in 0..3 {
        db.create_run(new(&format!("trial-{i}"), 10 + i, Some(&parent))).await.unwrap();
    }
    let (status, html, _) = get(&db, &format!("/experiments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&html, "#runs tbody tr:not(.child) td.name a:first-child"), ["lone", "search"]);
    assert_eq!(texts(&html, "#runs tbody tr.child[hidden] td.name a"), ["trial-0", "trial-1", "trial-2"]);
    let rows = Selector::parse("#runs tbody tr.child").unwrap();
    assert!(html.select(&rows).all(|r| r.value().attr("data-parent") == Some(parent.as_str())));
    assert_eq!(texts(&html, "a.children-toggle"), ["▸ 3 children"]);
    let link = attr(&html, "a.children-toggle", "href").unwrap();
    assert!(link.contains("parentRunId") && link.contains(&parent), "{link}");
    assert!(attr(&html, "script[src^='/static/table.js']", "src").is_some());
    // The toggle's link without JavaScript: the children as a filtered table.
    let (_, filtered, _) = get(&db, &link).await;
    assert_eq!(texts(&filtered, "#runs tbody tr td.name a").len(), 3);
    // Flat: every run its own row.
    let (_, flat, _) = get(&db, &format!("/experiments/{id}?nest=0")).await;
    assert_eq!(texts(&flat, "#runs tbody tr:not(.child)").len(), 5);
    assert!(texts(&flat, "a.children-toggle").is_empty());
}
