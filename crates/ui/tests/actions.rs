//! The UI's actions through its router: every form refused without this site's token (no
//! cookie, a wrong token, another site's request) and changing nothing then; each accepted one
//! recorded by the same store function its CLI command calls (who: "web UI"), then a redirect to
//! the page with its notice.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use scraper::{Html, Selector};
use shipyard_core::deployment::{Arm, DeploymentSpec, ModelRef};
use shipyard_core::monitoring::Alert;
use shipyard_store::promotion::{AliasMoveRequest, MoveKind};
use shipyard_store::registry::NewModelVersion;
use shipyard_store::{ArtifactStore, Database, DatabaseUri};
use shipyard_ui::{UiState, router};
use tower::ServiceExt;

struct Ui {
    app: axum::Router,
    db: Database,
    _dir: tempfile::TempDir,
}

async fn ui() -> Ui {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&DatabaseUri::Sqlite(dir.path().join("ui.db"))).await.unwrap();
    let artifacts = ArtifactStore::open(&dir.path().join("artifacts").display().to_string()).await.unwrap();
    let releaser = shipyard_release::Releaser {
        db: db.clone(),
        artifacts: artifacts.clone(),
        cache: dir.path().join("cache"),
        loader: shipyard_release::Loader::default(),
        local_paths: true,
    };
    let app = router(UiState::new(db.clone(), Some(artifacts), Some(releaser)));
    Ui { app, db, _dir: dir }
}

struct Page {
    status: StatusCode,
    html: Html,
    /// The `shipyard_csrf=...` pair the page set, if it set one.
    cookie: Option<String>,
    location: Option<String>,
}

async fn send(app: &axum::Router, request: Request<Body>) -> Page {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie =
        response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let location = response.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page { status, html: Html::parse_document(std::str::from_utf8(&bytes).unwrap()), cookie, location }
}

async fn get(app: &axum::Router, uri: &str, cookie: Option<&str>) -> Page {
    let mut request = Request::get(uri);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn post(app: &axum::Router, uri: &str, cookie: Option<&str>, form: &str, extra: &[(&str, &str)]) -> Page {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    send(app, request.body(Body::from(form.to_owned())).unwrap()).await
}

fn texts(html: &Html, selector: &str) -> Vec<String> {
    let s = Selector::parse(selector).unwrap();
    html.select(&s).map(|e| e.text().collect::<String>().trim().to_owned()).collect()
}

/// The token of the form at `selector`.
fn token(html: &Html, selector: &str) -> String {
    let s = Selector::parse(&format!("{selector} input[name=csrf]")).unwrap();
    html.select(&s).next().unwrap_or_else(|| panic!("no form {selector}")).value().attr("value").unwrap().to_owned()
}

/// A browser's first visit: the cookie it was given and the form's token.
async fn visit(app: &axum::Router, uri: &str, form: &str) -> (String, String) {
    let page = get(app, uri, None).await;
    assert_eq!(page.status, StatusCode::OK, "{uri}");
    let cookie = page.cookie.expect("a first page sets the form cookie");
    (token(&page.html, form), cookie)
}

async fn alert(db: &Database, deployment: &str) -> Alert {
    db.record_alert(Alert {
        id: 0,
        deployment: deployment.into(),
        rule: "accuracy".into(),
        metric: "accuracy".into(),
        value: 0.7,
        comparator: "<".into(),
        threshold: 0.8,
        severity: "high".into(),
        fired_time: 1_700_000_000_000,
        message: "accuracy fell".into(),
        action: None,
        action_status: None,
        action_detail: None,
        acknowledged_by: None,
        acknowledged_time: None,
    })
    .await
    .unwrap()
}

async fn model_with_versions(db: &Database, versions: usize) {
    db.create_registered_model("churn", &[], None, None).await.unwrap();
    for _ in 0..versions {
        let new = NewModelVersion { name: "churn".into(), source: "s3://bucket/model".into(), ..Default::default() };
        db.create_model_version(new).await.unwrap();
    }
}

#[tokio::test]
async fn forms_without_this_sites_token_are_refused_and_change_nothing() {
    let ui = ui().await;
    let fired = alert(&ui.db, "web").await;
    let (token, cookie) = visit(&ui.app, "/alerts", "#alerts form").await;
    let uri = format!("/alerts/{}/acknowledge", fired.id);
    let form = format!("csrf={token}&back=%2Falerts");
    let other_cookie = "shipyard_csrf=0123456789abcdef0123456789abcdef";
    for (cookie, form, extra, why) in [
        (None, form.as_str(), vec![], "without this site's cookie"),
        (Some(cookie.as_str()), "back=%2Falerts", vec![], "missing or does not match"),
        (Some(cookie.as_str()), "csrf=00ff&back=%2Falerts", vec![], "missing or does not match"),
        (Some(other_cookie), form.as_str(), vec![], "missing or does not match"),
        (Some(cookie.as_str()), form.as_str(), vec![("origin", "http://evil.example")], "another site"),
        (Some(cookie.as_str()), form.as_str(), vec![("sec-fetch-site", "cross-site")], "another site"),
    ] {
        let page = post(&ui.app, &uri, cookie, form, &extra).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{why}");
        assert!(texts(&page.html, "#refused")[0].contains(why), "{:?}", texts(&page.html, "#refused"));
    }
    assert_eq!(ui.db.alerts(None, 10).await.unwrap()[0].acknowledged_by, None, "nothing changed");
    // The same form from this site, with its cookie, goes through.
    let page =
        post(&ui.app, &uri, Some(&cookie), &form, &[("origin", "http://localhost"), ("host", "localhost")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/alerts?done=acknowledged"));
    // A page for a browser that has the cookie does not set another.
    assert!(get(&ui.app, "/alerts", Some(&cookie)).await.cookie.is_none());
    // Static files never set it (they are cached).
    let css = get(&ui.app, &shipyard_ui::assets::url("shipyard.css"), None).await;
    assert!(css.cookie.is_none());
}

#[tokio::test]
async fn an_alert_is_acknowledged_once_and_shows_who() {
    let ui = ui().await;
    let fired = alert(&ui.db, "web").await;
    ui.db.put_deployment("web", &spec(&[100]), "tester").await.unwrap();
    let (token, cookie) = visit(&ui.app, "/deployments/web", "#alerts form").await;
    let form = format!("csrf={token}&back=%2Fdeployments%2Fweb");
    let page = post(&ui.app, &format!("/alerts/{}/acknowledge", fired.id), Some(&cookie), &form, &[]).await;
    assert_eq!(page.location.as_deref(), Some("/deployments/web?done=acknowledged"));
    let stored = &ui.db.alerts(None, 10).await.unwrap()[0];
    assert_eq!(stored.acknowledged_by.as_deref(), Some("web UI"));
    let page = get(&ui.app, "/alerts?done=acknowledged", Some(&cookie)).await;
    assert_eq!(texts(&page.html, "#notice"), ["Alert acknowledged."]);
    assert!(texts(&page.html, "#alerts td.ack")[0].starts_with("web UI"));
    assert!(texts(&page.html, "#alerts td.ack form").is_empty(), "no button once acknowledged");
    // Back only to this UI's pages; an unknown alert is 404.
    let form = format!("csrf={token}&back=https%3A%2F%2Fevil.example");
    let page = post(&ui.app, &format!("/alerts/{}/acknowledge", fired.id), Some(&cookie), &form, &[]).await;
    assert_eq!(page.location.as_deref(), Some("/alerts?done=acknowledged"));
    let page = post(&ui.app, "/alerts/999/acknowledge", Some(&cookie), &format!("csrf={token}"), &[]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

fn spec(weights: &[u32]) -> DeploymentSpec {
    let arms = weights
        .iter()
        .enumerate()
        .map(|(i, w)| Arm {
            target: if i == 0 {
                ModelRef::alias("churn", "production")
            } else {
                ModelRef::version("churn", &(i + 1).to_string())
            },
            weight: *w,
        })
        .collect();
    DeploymentSpec { arms, shadow: None, sticky: None }
}

#[tokio::test]
async fn a_canary_weight_is_set_and_the_canary_ended_from_the_deployment_page() {
    let ui = ui().await;
    ui.db.put_deployment("web", &spec(&[90, 10]), "tester").await.unwrap();
    let (token, cookie) = visit(&ui.app, "/deployments/web", "#weight-form").await;
    let page = post(&ui.app, "/deployments/web/weight", Some(&cookie), &format!("csrf={token}&weight=35"), &[]).await;
    assert_eq!(page.location.as_deref(), Some("/deployments/web?done=weight"));
    let d = ui.db.get_deployment("web").await.unwrap();
    assert_eq!((d.revision, d.spec.arms.iter().map(|a| a.weight).collect::<Vec<_>>()), (2, vec![65, 35]));
    let page = get(&ui.app, "/deployments/web?done=weight", Some(&cookie)).await;
    assert_eq!(
        page.html
            .select(&Selector::parse("#weight-form input[name=weight]").unwrap())
            .next()
            .unwrap()
            .value()
            .attr("value"),
        Some("35")
    );
    for bad in ["abc", "101", "-1", ""] {
        let page =
            post(&ui.app, "/deployments/web/weight", Some(&cookie), &format!("csrf={token}&weight={bad}"), &[]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(texts(&page.html, ".error")[0].contains("weight"), "{:?}", texts(&page.html, ".error"));
    }
    assert_eq!(ui.db.get_deployment("web").await.unwrap().revision, 2, "a refused weight changes nothing");
    let page = post(&ui.app, "/deployments/web/end-canary", Some(&cookie), &format!("csrf={token}"), &[]).await;
    assert_eq!(page.location.as_deref(), Some("/deployments/web?done=ended"));
    let d = ui.db.get_deployment("web").await.unwrap();
    assert_eq!(d.spec.arms, vec![Arm { target: ModelRef::alias("churn", "production"), weight: 100 }]);
    let page = get(&ui.app, "/deployments/web", Some(&cookie)).await;
    assert!(texts(&page.html, "#weight-form, #end-canary-form").is_empty(), "no canary, no canary forms");
    let page = post(&ui.app, "/deployments/web/end-canary", Some(&cookie), &format!("csrf={token}"), &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = post(&ui.app, "/deployments/nope/weight", Some(&cookie), &format!("csrf={token}&weight=5"), &[]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_alias_is_rolled_back_and_recorded_as_the_cli_records_it() {
    let ui = ui().await;
    model_with_versions(&ui.db, 2).await;
    for to in ["1", "2"] {
        let request = AliasMoveRequest {
            model: "churn".into(),
            alias: "production".into(),
            to_version: to.into(),
            kind: MoveKind::Promote,
            expected_from: None,
            actor: "ana".into(),
            reason: None,
            gate_report: None,
        };
        ui.db.move_alias(request).await.unwrap();
    }
    let (token, cookie) = visit(&ui.app, "/models/churn", "#rollback-form").await;
    let form = format!("csrf={token}&alias=production&reason=errors+up");
    let page = post(&ui.app, "/models/churn/rollback", Some(&cookie), &form, &[]).await;
    assert_eq!(page.location.as_deref(), Some("/models/churn?done=rolled-back&alias=production"));
    assert_eq!(ui.db.current_alias_version("churn", "production").await.unwrap().as_deref(), Some("1"));
    let last = ui.db.alias_history("churn", None).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str(), last.reason.as_deref()),
        (MoveKind::Rollback, "web UI", Some("errors up"))
    );
    let page = get(&ui.app, "/models/churn?done=rolled-back&alias=production", Some(&cookie)).await;
    assert_eq!(texts(&page.html, "#notice"), ["production rolled back to the version it held before."]);
    assert_eq!(texts(&page.html, "#alias-history tbody td:nth-child(6)")[0], "web UI");
    let page =
        post(&ui.app, "/models/churn/rollback", Some(&cookie), &format!("csrf={token}&alias=staging"), &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "an alias without history cannot roll back");
}

#[tokio::test]
async fn a_promotion_without_a_policy_needs_force_and_a_reason() {
    let ui = ui().await;
    model_with_versions(&ui.db, 2).await;
    let (token, cookie) = visit(&ui.app, "/models/churn/versions/2", "#promote-form").await;
    assert!(texts(&ui_page(&ui, &cookie).await, "#policy-note")[0].contains("no gate policy"));
    let uri = "/models/churn/versions/2/promote";
    let page = post(&ui.app, uri, Some(&cookie), &format!("csrf={token}&alias=production"), &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(texts(&page.html, ".error")[0].contains("no gate policy"));
    let page = post(&ui.app, uri, Some(&cookie), &format!("csrf={token}&alias=production&force=on"), &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(texts(&page.html, ".error")[0].contains("needs a reason"));
    assert_eq!(ui.db.current_alias_version("churn", "production").await.unwrap(), None, "nothing moved");
    let form = format!("csrf={token}&alias=production&force=on&reason=hotfix");
    let page = post(&ui.app, uri, Some(&cookie), &form, &[]).await;
    assert_eq!(page.location.as_deref(), Some("/models/churn/versions/2?done=forced&alias=production"));
    let last = ui.db.alias_history("churn", None).await.unwrap().pop().unwrap();
    assert_eq!((last.kind, last.actor.as_str(), last.reason.as_deref()), (MoveKind::Force, "web UI", Some("hotfix")));
    assert_eq!(last.to_version.as_deref(), Some("2"));
    // Again: the alias is there already.
    let page = post(&ui.app, uri, Some(&cookie), &form, &[]).await;
    assert_eq!(page.location.as_deref(), Some("/models/churn/versions/2?done=unchanged&alias=production"));
    assert_eq!(ui.db.alias_history("churn", None).await.unwrap().len(), 1);
}

async fn ui_page(ui: &Ui, cookie: &str) -> Html {
    get(&ui.app, "/models/churn/versions/2", Some(cookie)).await.html
}

#[tokio::test]
async fn without_a_releaser_no_promote_form_is_offered() {
    let ui = ui().await;
    model_with_versions(&ui.db, 1).await;
    let app = router(UiState::new(ui.db.clone(), None, None));
    let page = get(&app, "/models/churn/versions/1", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(texts(&page.html, "#promote-form").is_empty());
}
