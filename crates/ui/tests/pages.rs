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
    let response = router(UiState::new(db.clone(), None, None))
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
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

/// The experiment's active runs, newest first.
async fn runs_of(db: &Database, experiment_id: &str) -> Vec<shipyard_core::entities::Run> {
    let ids = [experiment_id.to_owned()];
    db.search_runs(&ids, None, shipyard_core::entities::ViewType::ActiveOnly, None, &[], None).await.unwrap().items
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
    assert_eq!(texts(&html, "#runs thead th")[6..], ["accuracy", "lr"]);
    assert_eq!(texts(&html, "#runs tbody td.name").len(), 5);

    let filter = "metrics.accuracy >= 0.4";
    let (_, html, _) =
        get(&db, &format!("/experiments/{id}?filter={}&order=metrics.accuracy%20ASC", enc(filter))).await;
    assert_eq!(texts(&html, "#runs tbody td.name"), ["run-02", "run-03", "run-04"]);
    assert_eq!(texts(&html, "#runs tbody td.num"), ["0.4", "0.6", "0.8"]);
    assert_eq!(attr(&html, "input[name=filter]", "value").as_deref(), Some(filter));

    let (_, html, _) = get(&db, &format!("/experiments/{id}?col=tags.team&col=params.lr")).await;
    assert_eq!(texts(&html, "#runs thead th")[6..], ["team", "lr"]);
    assert!(texts(&html, "#runs tbody td").contains(&"vision".to_owned()));

    // Two runs a page: the next page's link carries the store's token and the view.
    let (_, html, _) = get(&db, &format!("/experiments/{id}?size=2&order=attributes.start_time%20ASC")).await;
    assert_eq!(texts(&html, "#runs tbody td.name"), ["run-00", "run-01"]);
    let next = attr(&html, "#next-page", "href").unwrap();
    assert!(next.contains("size=2") && next.contains("order="), "{next}");
    let (_, html, _) = get(&db, &next).await;
    assert_eq!(texts(&html, "#runs tbody td.name"), ["run-02", "run-03"]);
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
    let run = runs_of(&db, &id).await.remove(0);
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
    let response = router(UiState::new(db.clone(), None, None))
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
    assert_eq!(texts(&html, "#runs thead th")[6..], ["loss", "loss (min)", "loss (max)"]);
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
    let response = router(UiState::new(db.clone(), None, None))
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
    let response = router(UiState::new(db.clone(), None, None))
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
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

async fn router_with_artifacts(db: &Database, store: &shipyard_store::ArtifactStore) -> axum::Router {
    router(UiState::new(db.clone(), Some(store.clone()), None))
}

async fn fetch(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

#[tokio::test]
async fn artifacts_are_listed_and_previewed_from_their_head() {
    use shipyard_core::artifact_path::ArtifactPath;
    let (db, dir) = store().await;
    let artifacts = shipyard_store::ArtifactStore::open(dir.path().join("artifacts").to_str().unwrap()).await.unwrap();
    let id = db.create_experiment("files", None, &[]).await.unwrap();
    let run = db
        .create_run(NewRun {
            experiment_id: id,
            user_id: "ana".into(),
            run_name: Some("r".into()),
            start_time: None,
            tags: vec![],
        })
        .await
        .unwrap();
    let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri).unwrap();
    let put = |name: &str, body: Vec<u8>| {
        let (artifacts, path) = (artifacts.clone(), root.join(&ArtifactPath::parse(name).unwrap()));
        async move {
            let chunk = futures::stream::once(async move { Ok::<_, shipyard_core::Error>(bytes::Bytes::from(body)) });
            artifacts.put(&path, chunk).await.unwrap();
        }
    };
    put("metrics.json", br#"{"accuracy":0.91,"note":"<script>alert(1)</script>"}"#.to_vec()).await;
    let mut csv = String::from("id,name\n");
    for i in 0..1_000 {
        csv.push_str(&format!("{i},row-{i}\n"));
    }
    put("data/train.csv", csv.into_bytes()).await;
    put("big.log", vec![b'x'; 600 * 1024]).await;
    put("plot.svg", br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec()).await;
    put("model.pkl", vec![0u8; 64]).await;
    let app = router_with_artifacts(&db, &artifacts).await;
    let page = |path: &str| format!("/runs/{}/artifacts?path={path}", run.info.run_uuid);
    let html_of = |bytes: Vec<u8>| Html::parse_document(std::str::from_utf8(&bytes).unwrap());

    let (status, _, body) = fetch(&app, &page("")).await;
    assert_eq!(status, StatusCode::OK);
    let listing = html_of(body);
    assert_eq!(
        texts(&listing, "#artifact-list tbody td a"),
        ["big.log", "data/", "metrics.json", "model.pkl", "plot.svg"]
    );

    let (_, _, body) = fetch(&app, &page("metrics.json")).await;
    let json = html_of(body);
    let text = texts(&json, "pre.artifact-text").remove(0);
    assert!(text.contains("\"accuracy\": 0.91") && text.contains("<script>"), "pretty-printed, markup as text: {text}");
    assert!(json.select(&Selector::parse("#preview script").unwrap()).next().is_none());

    let (_, _, body) = fetch(&app, &page("data/train.csv")).await;
    let table = html_of(body);
    assert_eq!(texts(&table, "#artifact-table thead th"), ["id", "name"]);
    assert_eq!(texts(&table, "#artifact-table tbody tr").len(), 500);
    assert_eq!(texts(&table, "#artifact-list tbody td a")[0], "..", "the folder's listing is beside the preview");

    let (_, _, body) = fetch(&app, &page("big.log")).await;
    let big = html_of(body);
    assert_eq!(texts(&big, "p.cut"), ["Showing the first 256.0 KB of 600.0 KB."]);
    assert_eq!(texts(&big, "pre.artifact-text")[0].len(), 256 * 1024);

    let (_, _, body) = fetch(&app, &page("plot.svg")).await;
    let svg = html_of(body);
    let src = attr(&svg, "img.artifact-image", "src").unwrap();
    let (status, headers, _) = fetch(&app, &src).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"), "a script in an SVG cannot run");

    let download = attr(&svg, "a.download", "href").unwrap();
    let (_, headers, _) = fetch(&app, &download).await;
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let (_, _, body) = fetch(&app, &page("model.pkl")).await;
    assert!(texts(&html_of(body), ".preview p.muted")[0].contains("No preview"));

    let (status, _, _) = fetch(&app, &page("../../etc/passwd")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = fetch(&app, &format!("/runs/{}/artifacts/raw?path=nope.txt", run.info.run_uuid)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn compare_marks_differences_and_charts_the_runs_together() {
    let (db, _dir) = store().await;
    let id = seeded(&db, "cmp", 3).await;
    let runs = runs_of(&db, &id).await;
    for run in &runs {
        db.log_batch(&run.info.run_uuid, vec![], vec![KeyValue::new("model", "rf")], vec![]).await.unwrap();
    }
    let query: Vec<String> = runs.iter().map(|r| format!("run={}", r.info.run_uuid)).collect();
    let (status, html, _) = get(&db, &format!("/compare?{}", query.join("&"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&html, "#compare-runs tbody tr").len(), 3);
    assert_eq!(texts(&html, "#params tbody tr td:first-child"), ["lr", "model"]);
    assert_eq!(texts(&html, "#params tbody tr.differs td:first-child"), ["lr"], "only lr differs");
    assert!(attr(&html, "#metrics tr[data-key='metrics.accuracy'] td:nth-child(2)", "data-value").is_some());
    let ids: Vec<String> = runs.iter().map(|r| r.info.run_uuid.clone()).collect();
    assert_eq!(attr(&html, "figure.chart[data-key=accuracy]", "data-runs"), Some(ids.join(" ")));
    let (_, only_diff, _) = get(&db, &format!("/compare?{}&diff=1", query.join("&"))).await;
    assert_eq!(texts(&only_diff, "#params tbody tr td:first-child"), ["lr"]);
    // The runs table offers the selection.
    let (_, table, _) = get(&db, &format!("/experiments/{id}")).await;
    assert_eq!(texts(&table, "#runs tbody td.pick").len(), 3);
    assert_eq!(attr(&table, "#runs tbody td.pick input", "form"), Some("compare-form".into()));
    // One run, or an unknown one, is refused with a reason.
    let (status, html, _) = get(&db, &format!("/compare?{}", query[0])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(texts(&html, "p.error")[0].contains("between 2 and"));
    let (status, _, _) = get(&db, &format!("/compare?{}&run={}", query[0], "e".repeat(32))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn model_pages_show_versions_alias_history_gates_and_lineage() {
    use shipyard_core::deployment::{Arm, DeploymentSpec, ModelRef};
    use shipyard_store::promotion::{AliasMoveRequest, MoveKind};
    use shipyard_store::registry::NewModelVersion;
    let (db, _dir) = store().await;
    let id = seeded(&db, "train", 1).await;
    let run = runs_of(&db, &id).await.remove(0);
    db.create_registered_model("churn", &[], Some(XSS), None).await.unwrap();
    for _ in 0..2 {
        let new = NewModelVersion {
            name: "churn".into(),
            source: format!("{}/model", run.info.artifact_uri),
            run_id: Some(run.info.run_uuid.clone()),
            ..Default::default()
        };
        db.create_model_version(new).await.unwrap();
    }
    db.set_model_version_tag("churn", "2", &KeyValue::new("shipyard.engine", "onnx")).await.unwrap();
    db.set_model_version_tag("churn", "2", &KeyValue::new("note", XSS)).await.unwrap();
    let report = serde_json::json!({
        "model": "churn", "version": "2", "passed": true,
        "champion": {"alias": "production", "version": "1"},
        "checks": [
            {"gate": "metric", "name": "accuracy", "observed": 0.91, "bound": ">= 0.8", "passed": true, "detail": ""},
            {"gate": "latency", "name": "p99_ms", "observed": 1.5, "bound": "<= 50", "passed": true, "detail": "onnx"}
        ]
    });
    for (to, kind, report) in [("1", MoveKind::Set, None), ("2", MoveKind::Promote, Some(report.to_string()))] {
        db.move_alias(AliasMoveRequest {
            model: "churn".into(),
            alias: "production".into(),
            to_version: to.into(),
            kind,
            expected_from: None,
            actor: "ana".into(),
            reason: Some("better".into()),
            gate_report: report,
        })
        .await
        .unwrap();
    }
    let spec = DeploymentSpec {
        arms: vec![Arm { target: ModelRef::alias("churn", "production"), weight: 100 }],
        shadow: None,
        sticky: None,
    };
    db.put_deployment("web", &spec, "tester").await.unwrap();

    let (status, list, _) = get(&db, "/models?q=chu").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&list, "#models tbody td:first-child"), ["churn"]);
    assert_eq!(texts(&list, "#models a.alias"), ["production → v2"]);
    let (_, model, _) = get(&db, "/models/churn").await;
    assert_eq!(texts(&model, "#versions tbody td:first-child"), ["v2", "v1"]);
    assert_eq!(texts(&model, "#alias-history tbody td:nth-child(3)"), ["promote", "set"], "newest first");
    assert_eq!(texts(&model, "#alias-history tbody td:nth-child(8)"), ["passed", "—"]);
    assert_eq!(texts(&model, "#deployments"), ["web (@production at 100%)"]);
    assert!(model.root_element().text().any(|t| t.contains("<script>")), "the description is text");
    let (status, version, _) = get(&db, "/models/churn/versions/2").await;
    assert_eq!(status, StatusCode::OK);
    let lineage = texts(&version, "#lineage li");
    assert!(lineage[1].contains("run-00") && lineage[2].contains("v2"), "{lineage:?}");
    assert!(lineage[3].contains("production") && lineage[4].contains("web"), "{lineage:?}");
    assert_eq!(texts(&version, "#gate-checks tbody td:nth-child(2)"), ["accuracy", "p99_ms"]);
    assert_eq!(texts(&version, "#gate-checks tbody td:nth-child(3)"), ["0.91", "1.5"]);
    assert!(texts(&version, "#gate-verdict")[0].starts_with("Every check passed · champion production v1"));
    assert!(texts(&version, "#engine")[0].starts_with("onnx"));
    assert!(version.select(&Selector::parse("script:not([src])").unwrap()).next().is_none());
    let (status, _, _) = get(&db, "/models/churn/versions/9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&db, "/models/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deployment_pages_show_arms_drift_heatmap_monitor_values_and_alerts() {
    use shipyard_core::deployment::{Arm, DeploymentSpec, ModelRef};
    use shipyard_core::monitoring::{Alert, MonitorEvaluation};
    use shipyard_store::registry::NewModelVersion;
    let (db, _dir) = store().await;
    db.create_registered_model("churn", &[], None, None).await.unwrap();
    for _ in 0..3 {
        let new = NewModelVersion { name: "churn".into(), source: "mlflow-artifacts:/x".into(), ..Default::default() };
        db.create_model_version(new).await.unwrap();
    }
    db.set_registered_model_alias("churn", "champion", "1").await.unwrap();
    let spec = DeploymentSpec {
        arms: vec![
            Arm { target: ModelRef::alias("churn", "champion"), weight: 80 },
            Arm { target: ModelRef::version("churn", "2"), weight: 20 },
        ],
        shadow: Some(ModelRef::version("churn", "3")),
        sticky: None,
    };
    db.put_deployment("web", &spec, "tester").await.unwrap();
    // 10 evaluations: `age` drifts from the 6th on, `fare` never.
    for i in 0..10i64 {
        let values = [
            ("drifted.age", if i >= 5 { 1.0 } else { 0.0 }),
            ("drift_score.age", if i >= 5 { 0.001 } else { 0.5 }),
            ("drifted.fare", 0.0),
            ("drift_score.fare", 0.7),
            ("accuracy", 0.9 - i as f64 / 100.0),
            ("latency_p99_ms", 1.5),
        ];
        let evaluation = MonitorEvaluation {
            deployment: "web".into(),
            time: 1_700_000_000_000 + i * 60_000,
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        db.record_evaluation(&evaluation).await.unwrap();
    }
    let alert = db
        .record_alert(Alert {
            id: 0,
            deployment: "web".into(),
            rule: "accuracy".into(),
            metric: "accuracy".into(),
            value: 0.81,
            comparator: "<".into(),
            threshold: 0.85,
            severity: "high".into(),
            fired_time: 1_700_000_600_000,
            message: XSS.into(),
            action: Some("rollback".into()),
            action_status: None,
            action_detail: None,
            acknowledged_by: None,
            acknowledged_time: None,
        })
        .await
        .unwrap();
    db.record_alert_action(alert.id, "succeeded", "models:/churn@champion rolled back from version 2 to version 1")
        .await
        .unwrap();

    let (status, list, _) = get(&db, "/deployments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&list, "#deployments tbody td:first-child"), ["web"]);
    let (status, page, _) = get(&db, "/deployments/web").await;
    assert_eq!(status, StatusCode::OK);
    let arms = texts(&page, "#arms tbody tr");
    assert_eq!(arms.len(), 3);
    assert!(arms[0].contains("@champion → v1") && arms[0].contains("80%"), "{arms:?}");
    assert!(arms[1].contains("v2") && arms[1].contains("20%") && arms[2].starts_with("shadow"), "{arms:?}");
    assert_eq!(attr(&page, "#live", "data-models"), Some("churn".into()));
    let rows = Selector::parse("#drift-heatmap tbody tr").unwrap();
    let cells: Vec<(String, usize, usize)> = page
        .select(&rows)
        .map(|r| {
            let all = r.select(&Selector::parse("td.cell").unwrap()).count();
            let drifted = r.select(&Selector::parse("td.cell.drifted").unwrap()).count();
            (r.value().attr("data-feature").unwrap_or("").to_owned(), all, drifted)
        })
        .collect();
    assert_eq!(cells, [("age".to_owned(), 10, 5), ("fare".to_owned(), 10, 0)]);
    assert_eq!(
        texts(&page, "#alerts tbody td.action"),
        ["rollback succeededmodels:/churn@champion rolled back from version 2 to version 1→ the alias history"]
    );
    assert_eq!(attr(&page, "#alerts td.action a.changed", "href").as_deref(), Some("/models/churn#alias-history"));
    assert!(page.root_element().text().any(|t| t.contains("<script>")), "the alert message is text");
    let (_, alerts, _) = get(&db, "/alerts").await;
    assert_eq!(texts(&alerts, "#alerts tbody td:nth-child(2)"), ["web"]);
    let (status, series) = json(&db, "/ui-api/monitor?deployment=web").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(series["time"].as_array().unwrap().len(), 10);
    assert_eq!(series["values"]["accuracy"][9].as_f64(), Some(0.81));
    let (status, _, _) = get(&db, "/deployments/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = json(&db, "/ui-api/monitor?deployment=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A time range: the evaluations (of 2023) are older than a day; the charts ask from then on.
    let (status, recent, _) = get(&db, "/deployments/web?range=24h").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&recent, "#no-drift").len(), 1);
    assert_eq!(attr(&recent, "#range-form select option[selected]", "value").as_deref(), Some("24h"));
    let since: i64 = attr(&recent, "#monitor-charts", "data-since").unwrap().parse().unwrap();
    assert!(since > 1_700_000_600_000);
    let (_, series) = json(&db, &format!("/ui-api/monitor?deployment=web&since={since}")).await;
    assert!(series["time"].as_array().unwrap().is_empty());
    let (_, series) = json(&db, "/ui-api/monitor?deployment=web&since=1700000300000").await;
    assert_eq!(series["time"].as_array().unwrap().len(), 5);
    let (status, bad, _) = get(&db, "/deployments/web?range=2y").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(texts(&bad, ".error")[0].starts_with("range: one of 1h, 24h"));
}

#[tokio::test]
async fn a_pipeline_run_shows_its_steps_as_a_graph_and_a_table() {
    let (db, _dir) = store().await;
    let id = db.create_experiment("pipeline-p", None, &[]).await.unwrap();
    let tags = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect::<Vec<_>>();
    let parent = db
        .create_run(NewRun {
            experiment_id: id.clone(),
            user_id: "ana".into(),
            run_name: Some("pipeline-p".into()),
            start_time: Some(1_000),
            tags: tags(&[("shipyard.pipeline", "p"), ("shipyard.pipeline.role", "pipeline")]),
        })
        .await
        .unwrap()
        .info
        .run_uuid;
    for (i, (step, kind, needs)) in
        [("data", "validate", ""), ("train", "train", "data"), ("gate", "promote", "train")].into_iter().enumerate()
    {
        let run = db
            .create_run(NewRun {
                experiment_id: id.clone(),
                user_id: "ana".into(),
                run_name: Some(format!("p.{step}")),
                start_time: Some(1_000 + i as i64),
                tags: tags(&[
                    ("mlflow.parentRunId", &parent),
                    ("shipyard.pipeline", "p"),
                    ("shipyard.pipeline.role", "step"),
                    ("shipyard.pipeline.step", step),
                    ("shipyard.pipeline.position", &i.to_string()),
                    ("shipyard.pipeline.kind", kind),
                    ("shipyard.pipeline.needs", needs),
                ]),
            })
            .await
            .unwrap();
        let status = if step == "gate" {
            shipyard_core::entities::RunStatus::Failed
        } else {
            shipyard_core::entities::RunStatus::Finished
        };
        if step == "gate" {
            db.set_tag(&run.info.run_uuid, KeyValue::new("shipyard.error", XSS)).await.unwrap();
        }
        db.update_run(&run.info.run_uuid, Some(status), Some(2_000), None).await.unwrap();
    }
    let (status, html, _) = get(&db, &format!("/pipelines/{parent}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&html, "#steps tbody td:first-child"), ["data", "train", "gate"]);
    assert_eq!(texts(&html, "#steps tbody td:nth-child(3)"), ["finished", "finished", "failed"]);
    let steps = Selector::parse("#pipeline-graph g.step").unwrap();
    let classes: Vec<_> = html.select(&steps).filter_map(|g| g.value().attr("class")).collect();
    assert_eq!(classes, ["step step-finished", "step step-finished", "step step-failed"]);
    let edges = Selector::parse("#pipeline-graph path.edge").unwrap();
    let edges: Vec<_> = html
        .select(&edges)
        .map(|e| format!("{}->{}", e.value().attr("data-from").unwrap_or(""), e.value().attr("data-to").unwrap_or("")))
        .collect();
    assert_eq!(edges, ["data->train", "train->gate"]);
    assert!(html.root_element().text().any(|t| t.contains("<script>")), "the error is text");
    let (_, run_page, _) = get(&db, &format!("/runs/{parent}")).await;
    assert_eq!(attr(&run_page, "#pipeline-view", "href"), Some(format!("/pipelines/{parent}")));
    let (status, _, _) = get(&db, &format!("/pipelines/{}", "a".repeat(32))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn datasets_list_their_versions_and_profile() {
    use shipyard_store::datasets::NewDatasetVersion;
    let (db, _dir) = store().await;
    let profile = serde_json::json!({"profile_format": 1, "rows": 4, "columns": [
        {"name": "age", "data_type": "Float64", "kind": "numeric", "count": 4, "missing": 1, "missing_fraction": 0.25,
         "distinct": 3, "numeric": {"min": 1.0, "max": 9.0, "mean": 4.0, "std": 2.0,
         "histogram": {"edges": [1.0, 5.0, 9.0], "counts": [2, 1]}}},
        {"name": "sex", "data_type": "Utf8", "kind": "text", "count": 4, "missing": 0, "missing_fraction": 0.0,
         "distinct": 2, "top_values": {"values": [{"value": XSS, "count": 3}, {"value": "f", "count": 1}]}}
    ]});
    for digest in ["a1", "b2"] {
        let new = NewDatasetVersion {
            name: "titanic".into(),
            digest: digest.into(),
            format: "csv".into(),
            rows: 4,
            size_bytes: 10,
            schema: "[]".into(),
            profile: profile.to_string(),
            source: "file:///data.csv".into(),
            artifact_root: "datasets".into(),
            artifact_path: format!("titanic/{digest}"),
            description: None,
        };
        db.create_dataset_version(new).await.unwrap();
    }
    let (status, list, _) = get(&db, "/datasets").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&list, "#datasets tbody td")[..5], ["titanic", "2", "v2", "4", "csv"]);
    let (status, page, _) = get(&db, "/datasets/titanic?version=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&page, "h1"), ["titanic v1"]);
    assert_eq!(texts(&page, "#dataset-versions tbody td:first-child"), ["v2", "v1"]);
    assert_eq!(texts(&page, "#profile tbody td:first-child"), ["age", "sex"]);
    assert_eq!(texts(&page, "#profile tr[data-column=age] td:nth-child(3)"), ["25.0%"]);
    let bars = Selector::parse("#profile tr[data-column=age] svg.histogram rect").unwrap();
    assert_eq!(page.select(&bars).count(), 2);
    assert!(page.root_element().text().any(|t| t.contains("<script>")), "a top value is text");
    let (status, _, _) = get(&db, "/datasets/titanic?version=7").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Recorded validations: every run listed, the latest expectation by expectation.
    assert_eq!(texts(&page, "#no-validations").len(), 1);
    for (success, observed) in [(false, serde_json::json!(3)), (true, serde_json::json!(XSS))] {
        let report = serde_json::json!({"success": success, "quality_score": 0.5, "rows": 4, "evaluated_expectations": 2,
            "successful_expectations": 1, "results": [
                {"expectation": "not_null", "column": "age", "success": false, "observed": observed, "expected": 0, "unexpected_count": 1},
                {"expectation": "row_count", "success": true, "observed": 4, "expected": {"min": 1}}]});
        let new = shipyard_store::datasets::NewValidation {
            name: "titanic".into(),
            version: 1,
            suite: "suite.yaml".into(),
            success,
            evaluated: 2,
            successful: 1,
            quality_score: 0.5,
            report: report.to_string(),
            actor: "ana".into(),
        };
        db.record_validation(new).await.unwrap();
    }
    let (_, page, _) = get(&db, "/datasets/titanic?version=1").await;
    assert_eq!(texts(&page, "#validations tbody td:nth-child(3)"), ["passed", "failed"]);
    assert_eq!(texts(&page, "#validations tbody td:nth-child(4)"), ["1 of 2", "1 of 2"]);
    assert_eq!(texts(&page, "#expectations tbody td:first-child"), ["age", "(table)"]);
    assert_eq!(texts(&page, "#expectations tbody td:nth-child(3)"), ["failed", "met"]);
    assert_eq!(texts(&page, "#expectations tbody td:nth-child(4)")[0], XSS, "an observed value is text");
    assert_eq!(texts(&page, "#expectations tbody td:nth-child(5)")[1], r#"{"min":1}"#);
}

#[tokio::test]
async fn two_dataset_versions_are_compared_as_data_drift_compares_them() {
    use shipyard_store::datasets::NewDatasetVersion;
    let (db, dir) = store().await;
    let table = |shift: f64| {
        let mut text = String::from("age,city\n");
        for i in 0..300 {
            text += &format!("{},{}\n", 20.0 + (i % 40) as f64 + shift, ["a", "b", "c"][i % 3]);
        }
        text
    };
    for (digest, shift) in [("d1", 0.0), ("d2", 25.0)] {
        std::fs::write(dir.path().join(format!("{digest}.csv")), table(shift)).unwrap();
        let new = NewDatasetVersion {
            name: "people".into(),
            digest: digest.into(),
            format: "csv".into(),
            rows: 300,
            size_bytes: 10,
            schema: "[]".into(),
            profile: "{}".into(),
            source: "file:///people.csv".into(),
            artifact_root: dir.path().display().to_string(),
            artifact_path: format!("{digest}.csv"),
            description: None,
        };
        db.create_dataset_version(new).await.unwrap();
    }
    let (_, page, _) = get(&db, "/datasets/people").await;
    assert_eq!(attr(&page, "#drift-form", "action").as_deref(), Some("/datasets/people/drift"));
    assert_eq!(attr(&page, "#drift-form select[name=reference] option[selected]", "value").as_deref(), Some("1"));
    let (status, drift, _) = get(&db, "/datasets/people/drift?reference=1&current=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&drift, "h1"), ["people: v1 to v2"]);
    // The same numbers `shipyard data drift` computes, by the same function.
    let expected = shipyard_data::drift::compare_files(
        &dir.path().join("d1.csv"),
        &dir.path().join("d2.csv"),
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    for c in &expected.columns {
        let row = format!("#dataset-drift tr[data-column={}] td", c.column);
        let cells = texts(&drift, &row);
        assert_eq!(cells[1], c.test.name());
        assert_eq!(cells[2], shipyard_core::display::number(c.statistic));
        assert_eq!(cells[5], if c.drift { "drifted" } else { "no drift" }, "{}", c.column);
    }
    assert_eq!(texts(&drift, "#dataset-drift tr[data-column=age] td")[5], "drifted");
    assert_eq!(texts(&drift, "#dataset-drift tr[data-column=city] td")[5], "no drift");
    let bars = Selector::parse("#dataset-drift tr[data-column=age] svg rect.current").unwrap();
    assert!(drift.select(&bars).count() > 1);
    // The previous version by default; bad versions are 404.
    let (_, default, _) = get(&db, "/datasets/people/drift").await;
    assert_eq!(texts(&default, "h1"), ["people: v1 to v2"]);
    let (status, _, _) = get(&db, "/datasets/people/drift?reference=9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
