//! Deployments on the router: a canary gets its weight's share, sticky A/B keeps each key on one
//! arm (by header or body field, in every protocol), a shadow gets a copy while the primary
//! answers, and a version of a deployment can be asked for by number.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use shipyard_core::deployment::StickyKey;
use shipyard_serving::{Deployment, Limits, ModelSettings, ServedModel, ServingState};

use common::{call, fixture_rows, load, post};

const FIXTURE: &str = "logreg_binary";

/// Versions `1..=n` of the same model (their answers are equal; the version header tells them
/// apart), and a deployment over them.
fn deployed(
    weights: &[u32],
    shadow: bool,
    sticky: Option<StickyKey>,
) -> (Router, Arc<ServingState>, Vec<Arc<ServedModel>>) {
    let state = ServingState::new(Limits::default());
    let settings = ModelSettings { cache_entries: 0, ..ModelSettings::default() };
    let count = weights.len() + usize::from(shadow);
    let versions: Vec<Arc<ServedModel>> = (1..=count)
        .map(|v| {
            ServedModel::new("churn".into(), Some(v.to_string()), load(FIXTURE), settings.clone(), None, &state.metrics)
        })
        .collect();
    let arms = versions.iter().zip(weights).map(|(m, w)| (m.clone(), *w)).collect();
    let shadow_model = shadow.then(|| versions[weights.len()].clone());
    let deployment = Deployment::new("churn-api".into(), 1, arms, shadow_model, sticky, &state.metrics).unwrap();
    state.registry.set_deployment(Arc::new(deployment));
    (shipyard_serving::router(state.clone(), true), state, versions)
}

fn body() -> Value {
    json!({ "data": fixture_rows(FIXTURE, "input", 1) })
}

async fn version_of(router: &Router, headers: &[(&str, &str)], body: &Value) -> String {
    let (status, answer_headers, answer) = call(
        router,
        "POST",
        "/predict/churn-api",
        &[&[("content-type", "application/json")], headers].concat(),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let version = answer_headers["x-model-version"].to_str().unwrap().to_owned();
    assert_eq!(answer["version"], version, "the answer names the version that produced it");
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_its_share_of_the_traffic() {
    let (router, _, _) = deployed(&[90, 10], false, None);
    let body = body();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..10_000 {
        *counts.entry(version_of(&router, &[], &body).await).or_default() += 1;
    }
    let canary = counts.get("2").copied().unwrap_or(0) as f64 / 100.0;
    assert!((7.0..=13.0).contains(&canary), "canary at {canary}% of 10,000 requests, expected 10 +- 3: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_ab_keeps_each_key_on_one_arm() {
    let (router, _, _) = deployed(&[50, 50], false, Some(StickyKey::Header("x-user-id".into())));
    let body = body();
    let mut arms: HashMap<String, usize> = HashMap::new();
    for user in 0..200 {
        let key = format!("user-{user}");
        let first = version_of(&router, &[("x-user-id", &key)], &body).await;
        for _ in 0..4 {
            assert_eq!(version_of(&router, &[("x-user-id", &key)], &body).await, first, "{key} changed arms");
        }
        *arms.entry(first).or_default() += 1;
    }
    assert_eq!(arms.len(), 2, "both arms get users: {arms:?}");
    assert!(arms.values().all(|&n| (60..=140).contains(&n)), "a 50/50 split of 200 users: {arms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_body_field_works_in_every_protocol() {
    let (router, _, _) = deployed(&[50, 50], false, Some(StickyKey::Field("user".into())));
    let rows = fixture_rows(FIXTURE, "input", 1);
    for user in ["ann", "bob", "cy", "dee", "eve", "fay"] {
        // The seed's protocol takes the field beside `data` (and still refuses other strangers).
        let seed = version_of(&router, &[], &json!({ "data": rows, "user": user })).await;
        for _ in 0..3 {
            assert_eq!(version_of(&router, &[], &json!({ "data": rows, "user": user })).await, seed);
        }
        let (status, headers, answer) =
            post(&router, "/invocations", json!({ "inputs": rows, "params": { "user": user } })).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(headers["x-model-version"], seed.as_str(), "MLflow's params carry the same key");
        let width = rows[0].len();
        let infer = json!({
            "inputs": [{ "name": "input", "shape": [1, width], "datatype": "FP64", "data": rows[0] }],
            "parameters": { "user": user },
        });
        let (status, _, answer) = post(&router, "/v2/models/churn-api/infer", infer).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["model_version"], seed.as_str(), "the Open Inference Protocol's parameters carry it");
    }
    let (status, _, answer) = post(&router, "/predict/churn-api", json!({ "data": rows, "other": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("unknown field 'other'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_gets_a_copy_and_the_primary_answers() {
    let (router, state, versions) = deployed(&[100], true, None);
    let body = body();
    for _ in 0..20 {
        assert_eq!(version_of(&router, &[], &body).await, "1", "the shadow never answers");
    }
    // The copies run after the answers; wait for them.
    let count = |role: &str| {
        let text = state.metrics.render();
        let label = format!("role=\"{role}\"");
        text.lines()
            .find(|l| l.starts_with("shipyard_deployment_routed_requests_total") && l.contains(&label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Every copy's answer is judged against the answer returned (the UI shows the agreement).
    let judged = || count("shadow_agreed") + count("shadow_disagreed") + count("shadow_failed");
    for _ in 0..100 {
        if count("shadow") >= 20.0 && judged() >= 20.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count("shadow"), 20.0, "every request was copied to the shadow");
    assert_eq!(judged(), 20.0, "every shadow answer was compared");
    assert_eq!(count("shadow_failed"), 0.0);
    let text = state.metrics.render();
    assert!(
        text.contains(r#"shipyard_inference_requests_total{model="churn",version="1",protocol="seed",code="200"} 20"#),
        "{text}"
    );
    // A member version can be asked for by number; others are unknown.
    let (status, headers, _) = post(&router, "/predict/churn-api/2", body.clone()).await;
    assert_eq!((status, headers["x-model-version"].to_str().unwrap()), (StatusCode::OK, "2"));
    let (status, _, answer) = post(&router, "/predict/churn-api/7", body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("serves no version '7'"), "{answer}");
    // /invocations scores the only deployment; metadata describes its primary.
    let (status, headers, _) =
        post(&router, "/invocations", json!({ "inputs": fixture_rows(FIXTURE, "input", 1) })).await;
    assert_eq!((status, headers["x-model-version"].to_str().unwrap()), (StatusCode::OK, "1"));
    let (status, _, meta) = call(&router, "GET", "/v2/models/churn-api", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["versions"], json!(["1", "2"]));
    drop(versions);
}
