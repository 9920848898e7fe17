//! `shipyard server --auth` end to end: every route refuses a caller without credentials
//! unless it is public (walked from the server's own route table, so a new route without a
//! permission cannot slip through), the first admin, the refusal to listen unprotected, and
//! the permission matrix (anonymous, each level, DENY, admin) on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{Server, http, shipyard, shipyard_cmd, start_command, stderr, stdout};
use serde_json::Value;

const ADMIN: (&str, &str) = ("admin", "admin-password-long");

fn basic(user: &str, password: &str) -> String {
    use std::io::Write;
    let mut raw = Vec::new();
    write!(raw, "{user}:{password}").unwrap();
    format!("Basic {}", base64_encode(&raw))
}

/// Base64 (standard alphabet, padded), enough for a test's credentials.
fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `shipyard server --auth EXTRA... --port 0` with the first admin's secret.
fn start_auth(home: &std::path::Path, extra: &[&str]) -> (Server, Arc<Mutex<String>>) {
    let mut args = vec!["server", "--auth", "--no-monitors"];
    args.extend_from_slice(extra);
    args.extend(["--port", "0"]);
    let mut command: Command = shipyard_cmd(home, &args);
    command.env("SHIPYARD_ADMIN_PASSWORD", ADMIN.1);
    let log = Arc::new(Mutex::new(String::new()));
    (start_command(command, log.clone()), log)
}

/// A request as `who` (None: anonymous); status and body as JSON (Null when not JSON).
fn call(addr: &str, who: Option<(&str, &str)>, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = who.map(|(u, p)| basic(u, p));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, text) = http(addr, method, path, &headers, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn every_route_refuses_a_caller_without_credentials_unless_public() {
    let home = tempfile::tempdir().unwrap();
    let out = shipyard(home.path(), &["server", "--routes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let routes: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(routes.len() > 150, "{} routes", routes.len());
    let (server, log) = start_auth(home.path(), &[]);
    let mut public = 0;
    for route in &routes {
        let method = route["method"].as_str().unwrap();
        // Path parameters get plausible values; the gate must refuse before any handler runs.
        let path = route["path"].as_str().unwrap().replace("{*path}", "0/run/artifacts/x.txt");
        let path: String = path
            .split('/')
            .map(|segment| if segment.starts_with('{') { "x" } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        let path = if path.is_empty() { "/".to_owned() } else { path };
        let (status, _, body) = http(&server.addr, method, &path, &[], "{}");
        if route["policy"] == "public" {
            public += 1;
            assert_ne!(status, 401, "{method} {path} is public but asked for credentials");
        } else {
            assert_eq!(
                status, 401,
                "{method} {path} ({}) answered {status} without credentials: {body}",
                route["policy"]
            );
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error_code"], "UNAUTHENTICATED", "{method} {path}");
        }
    }
    assert!((8..=12).contains(&public), "{public} public routes: {}", log.lock().unwrap());
    // A path no route serves is not an open door either.
    let (status, _, _) = http(&server.addr, "GET", "/api/2.0/mlflow/no-such-route", &[], "");
    assert_eq!(status, 401);
}

#[test]
fn the_first_admin_comes_from_a_secret_and_an_unprotected_public_listener_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = shipyard_cmd(home.path(), &["server", "--auth", "--port", "0"])
        .env_remove("SHIPYARD_ADMIN_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SHIPYARD_ADMIN_PASSWORD"), "{}", stderr(&out));
    // A weak secret is refused like any password.
    let out = shipyard_cmd(home.path(), &["server", "--auth", "--port", "0"])
        .env("SHIPYARD_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 12"), "{}", stderr(&out));
    let out = shipyard(home.path(), &["server", "--host", "0.0.0.0", "--port", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--auth"), "{}", stderr(&out));

    let (server, _) = start_auth(home.path(), &[]);
    let (status, me) = call(&server.addr, Some(ADMIN), "GET", "/api/2.0/mlflow/users/current", "");
    assert_eq!((status, me["user"]["is_admin"].clone()), (200, Value::Bool(true)));
    drop(server);
    // Later starts keep the admin; the secret is not needed again.
    let mut command = shipyard_cmd(home.path(), &["server", "--auth", "--no-monitors", "--port", "0"]);
    command.env_remove("SHIPYARD_ADMIN_PASSWORD");
    let server = start_command(command, Arc::new(Mutex::new(String::new())));
    assert_eq!(call(&server.addr, Some(ADMIN), "GET", "/api/2.0/mlflow/users/current", "").0, 200);
}

/// A fresh PostgreSQL database: in the test script's cluster, or in one started here (never
/// skipped).
fn postgres_uri() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster.sh");
    let base = std::env::var("SHIPYARD_TEST_PG_URI").unwrap_or_else(|_| {
        let out = Command::new("bash").args([script, "start"]).output().unwrap();
        assert!(out.status.success(), "could not start PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace().find_map(|w| w.strip_prefix("SHIPYARD_TEST_PG_URI=")).unwrap().to_owned()
    });
    let port = base.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_owned();
    let name = format!("auth_{}", std::process::id());
    let out = Command::new("bash").args([script, "createdb", &port, &name]).output().unwrap();
    assert!(out.status.success(), "createdb: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_permission_matrix_holds_on_sqlite() {
    let home = tempfile::tempdir().unwrap();
    permission_matrix(home.path(), &[]);
}

#[test]
fn the_permission_matrix_holds_on_postgres() {
    let uri = postgres_uri();
    let home = tempfile::tempdir().unwrap();
    permission_matrix(home.path(), &["--backend-store-uri", &uri]);
}

/// Users at every level on one experiment and one registered model, the default permission
/// NO_PERMISSIONS, and what each may do.
fn permission_matrix(home: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["--auth-default-permission", "NO_PERMISSIONS", "--no-model-serving"];
    args.extend_from_slice(extra);
    let (server, log) = start_auth(home, &args);
    let addr = server.addr.as_str();
    let admin = Some(ADMIN);
    let levels = ["NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE", "DENY"];
    let password = "a-long-enough-password";
    for level in levels {
        let user = format!(r#"{{"username": "u-{}", "password": "{password}"}}"#, level.to_lowercase());
        assert_eq!(call(addr, admin, "POST", "/api/2.0/mlflow/users/create", &user).0, 200, "{}", log.lock().unwrap());
    }
    // The owner makes an experiment with a run and a model, and grants each level.
    let owner = ("owner", password);
    call(
        addr,
        admin,
        "POST",
        "/api/2.0/mlflow/users/create",
        &format!(r#"{{"username": "owner", "password": "{password}"}}"#),
    );
    let (status, made) = call(addr, Some(owner), "POST", "/api/2.0/mlflow/experiments/create", r#"{"name": "matrix"}"#);
    assert_eq!(status, 200, "{made}");
    let experiment = made["experiment_id"].as_str().unwrap().to_owned();
    let (_, run) = call(
        addr,
        Some(owner),
        "POST",
        "/api/2.0/mlflow/runs/create",
        &format!(r#"{{"experiment_id": "{experiment}"}}"#),
    );
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let (status, _) =
        call(addr, Some(owner), "POST", "/api/2.0/mlflow/registered-models/create", r#"{"name": "matrix-model"}"#);
    assert_eq!(status, 200);
    for level in levels {
        for (kind, id) in [("experiment", experiment.as_str()), ("registered_model", "matrix-model")] {
            let grant = format!(
                r#"{{"username": "u-{}", "resource_type": "{kind}", "resource_id": "{id}", "permission": "{level}"}}"#,
                level.to_lowercase()
            );
            let (status, body) = call(addr, Some(owner), "POST", "/api/3.0/mlflow/users/permissions/grant", &grant);
            assert_eq!(status, 200, "the owner (MANAGE) grants {level}: {body}");
        }
    }
    // What each may do: (request, the lowest level allowed; DENY and NO_PERMISSIONS never).
    let get_experiment = ("GET", format!("/api/2.0/mlflow/experiments/get?experiment_id={experiment}"), String::new());
    let get_run = ("GET", format!("/api/2.0/mlflow/runs/get?run_id={run_id}"), String::new());
    let log_param = (
        "POST",
        "/api/2.0/mlflow/runs/log-parameter".to_owned(),
        format!(r#"{{"run_id": "{run_id}", "key": "k-LEVEL", "value": "v"}}"#),
    );
    let tag_experiment = (
        "POST",
        "/api/2.0/mlflow/experiments/set-experiment-tag".to_owned(),
        format!(r#"{{"experiment_id": "{experiment}", "key": "k", "value": "v"}}"#),
    );
    let get_model = ("GET", "/api/2.0/mlflow/registered-models/get?name=matrix-model".to_owned(), String::new());
    let tag_model = (
        "POST",
        "/api/2.0/mlflow/registered-models/set-tag".to_owned(),
        r#"{"name": "matrix-model", "key": "k", "value": "v"}"#.to_owned(),
    );
    let upload = (
        "PUT",
        format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/LEVEL.txt"),
        "x".to_owned(),
    );
    let download = (
        "GET",
        format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/owner.txt"),
        String::new(),
    );
    let grant_other = (
        "POST",
        "/api/3.0/mlflow/users/permissions/grant".to_owned(),
        format!(
            r#"{{"username": "u-read", "resource_type": "experiment", "resource_id": "{experiment}", "permission": "READ"}}"#
        ),
    );
    assert_eq!(call(addr, Some(owner), "PUT", &download.1, "owner's file").0, 200);
    let rank = |level: &str| levels.iter().position(|l| *l == level).unwrap();
    let cases = [
        (&get_experiment, "READ"),
        (&get_run, "READ"),
        (&download, "READ"),
        (&get_model, "READ"),
        (&log_param, "EDIT"),
        (&tag_experiment, "EDIT"),
        (&upload, "EDIT"),
        (&tag_model, "EDIT"),
        (&grant_other, "MANAGE"),
    ];
    for level in levels {
        let user = format!("u-{}", level.to_lowercase());
        for ((method, path, body), lowest) in cases {
            let path = path.replace("LEVEL", &user);
            let body = body.replace("LEVEL", &user);
            let allowed = level != "DENY" && level != "NO_PERMISSIONS" && rank(level) >= rank(lowest);
            let (status, answer) = call(addr, Some((&user, password)), method, &path, &body);
            if allowed {
                assert_eq!(status, 200, "{level} may {method} {path}: {answer}");
            } else {
                assert_eq!(status, 403, "{level} may not {method} {path}: {answer}");
                assert_eq!(answer["error_code"], "PERMISSION_DENIED");
            }
            // The admin may do it all; nobody anonymous may.
            assert_eq!(call(addr, None, method, &path, &body).0, 401);
        }
    }
    for ((method, path, body), _) in cases {
        let (status, answer) =
            call(addr, admin, method, &path.replace("LEVEL", "admin"), &body.replace("LEVEL", "admin"));
        assert_eq!(status, 200, "the admin may {method} {path}: {answer}");
    }
    // Searches show only what the caller may read.
    let names = |who: (&str, &str)| -> Vec<String> {
        let (_, found) = call(addr, Some(who), "GET", "/api/2.0/mlflow/experiments/search?max_results=100", "");
        found["experiments"]
            .as_array()
            .map_or(Vec::new(), |e| e.iter().map(|x| x["name"].as_str().unwrap().to_owned()).collect())
    };
    assert!(names(("u-read", password)).contains(&"matrix".to_owned()));
    assert!(!names(("u-deny", password)).contains(&"matrix".to_owned()));
    assert!(!names(("u-no_permissions", password)).contains(&"matrix".to_owned()));
    let models = |who: (&str, &str)| call(addr, Some(who), "GET", "/api/2.0/mlflow/registered-models/search", "").1;
    assert_eq!(models(("u-read", password))["registered_models"][0]["name"], "matrix-model");
    assert_eq!(models(("u-deny", password))["registered_models"], Value::Null);
    // The web UI's lists too: a page of every experiment or model shows only the readable ones.
    let page = |who: (&str, &str), path: &str| {
        let header = basic(who.0, who.1);
        let (status, _, body) = http(addr, "GET", path, &[("Authorization", header.as_str())], "");
        assert_eq!(status, 200, "{} {path}: {body}", who.0);
        body
    };
    assert!(page(("u-read", password), "/").contains(">matrix<"));
    assert!(!page(("u-deny", password), "/").contains(">matrix<"));
    assert!(!page(("u-no_permissions", password), "/").contains(">matrix<"));
    assert!(page(("u-read", password), "/models").contains("matrix-model"));
    assert!(!page(("u-no_permissions", password), "/models").contains("matrix-model"));
    assert!(page(ADMIN, "/").contains(">matrix<"));
    // Deleting needs MANAGE: EDIT may not delete the run.
    let delete_run = format!(r#"{{"run_id": "{run_id}"}}"#);
    assert_eq!(call(addr, Some(("u-edit", password)), "POST", "/api/2.0/mlflow/runs/delete", &delete_run).0, 403);
    assert_eq!(call(addr, Some(("u-manage", password)), "POST", "/api/2.0/mlflow/runs/delete", &delete_run).0, 200);
    // A deleted model's permissions go with it: a new model of that name starts from nothing.
    assert_eq!(
        call(addr, Some(owner), "DELETE", "/api/2.0/mlflow/registered-models/delete", r#"{"name": "matrix-model"}"#).0,
        200
    );
    assert_eq!(
        call(addr, admin, "POST", "/api/2.0/mlflow/registered-models/create", r#"{"name": "matrix-model"}"#).0,
        200
    );
    assert_eq!(call(addr, Some(("u-manage", password)), "GET", &get_model.1, "").0, 403);
}

/// The value of `name` in a page's hidden form field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The `name=value` pair a response's `Set-Cookie` headers set for `name`.
fn set_cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap().trim().to_owned())
        .find(|pair| pair.starts_with(&format!("{name}=")))
}

#[test]
fn a_browser_signs_in_with_a_form_gets_a_session_cookie_and_signs_out() {
    let home = tempfile::tempdir().unwrap();
    let (server, log) = start_auth(home.path(), &["--no-model-serving"]);
    let addr = server.addr.as_str();
    let html = [("Accept", "text/html")];
    // A page asked for without credentials: the login page, coming back after.
    let (status, headers, _) = http(addr, "GET", "/models?x=1", &html, "");
    assert_eq!(status, 303);
    assert_eq!(common::header(&headers, "location"), Some("/login?next=%2Fmodels%3Fx%3D1"));
    // An API client still gets 401 (no redirect for scripts).
    assert_eq!(http(addr, "GET", "/api/2.0/mlflow/experiments/search", &[], "").0, 401);

    let (status, headers, page) = http(addr, "GET", "/login?next=/models", &html, "");
    assert_eq!(status, 200, "{page}");
    let csrf_cookie = set_cookie(&headers, "shipyard_csrf").unwrap();
    let token = hidden(&page, "csrf");
    let form = |user: &str, password: &str| format!("csrf={token}&username={user}&password={password}&next=%2Fmodels");
    let post = [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", csrf_cookie.as_str())];
    let (status, _, page) = http(addr, "POST", "/login", &post, &form("admin", "wrong-password-long"));
    assert_eq!(status, 401);
    assert!(page.contains("Wrong user name or password."), "{page}");
    let (status, headers, _) = http(addr, "POST", "/login", &post, &form(ADMIN.0, ADMIN.1));
    assert_eq!(status, 303, "{}", log.lock().unwrap());
    assert_eq!(common::header(&headers, "location"), Some("/models"));
    let set = headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("__Host-shipyard_session=")).unwrap();
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.1.contains(attribute), "{}", set.1);
    }
    let session = set_cookie(&headers, "__Host-shipyard_session").unwrap();
    let cookies = format!("{session}; {csrf_cookie}");

    // Signed in: pages show who, with a sign-out button; the API takes the session too.
    let (status, _, page) = http(addr, "GET", "/models", &[("Accept", "text/html"), ("Cookie", &cookies)], "");
    assert_eq!(status, 200);
    assert!(page.contains("id=\"signed-in\">admin<"), "{page}");
    let (status, _, _) = http(addr, "GET", "/api/2.0/mlflow/experiments/search", &[("Cookie", &cookies)], "");
    assert_eq!(status, 200);
    // Another site's page cannot use the session to change anything.
    let create = r#"{"name": "from-elsewhere"}"#;
    let cross = [("Cookie", cookies.as_str()), ("Sec-Fetch-Site", "cross-site")];
    let (status, _, answer) = http(addr, "POST", "/api/2.0/mlflow/experiments/create", &cross, create);
    assert_eq!(status, 403, "{answer}");
    let same = [("Cookie", cookies.as_str()), ("Sec-Fetch-Site", "same-origin")];
    assert_eq!(http(addr, "POST", "/api/2.0/mlflow/experiments/create", &same, create).0, 200);

    // Signing out ends the session at once: its cookie no longer opens anything.
    let token = hidden(&page, "csrf");
    let out = [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookies.as_str())];
    let (status, headers, _) = http(addr, "POST", "/logout", &out, &format!("csrf={token}"));
    assert_eq!(status, 303);
    assert_eq!(common::header(&headers, "location"), Some("/login"));
    assert!(headers.iter().any(|(k, v)| k == "set-cookie" && v.contains("__Host-shipyard_session=;")));
    let (status, headers, _) = http(addr, "GET", "/models", &[("Accept", "text/html"), ("Cookie", &cookies)], "");
    assert_eq!(status, 303);
    assert!(common::header(&headers, "location").unwrap().starts_with("/login"));
    assert_eq!(http(addr, "GET", "/api/2.0/mlflow/experiments/search", &[("Cookie", &cookies)], "").0, 401);

    // A changed password ends the sessions opened with the old one.
    let (_, headers, _) = http(addr, "POST", "/login", &post, &form(ADMIN.0, ADMIN.1));
    let session = set_cookie(&headers, "__Host-shipyard_session").unwrap();
    let search = |cookie: &str| http(addr, "GET", "/api/2.0/mlflow/experiments/search", &[("Cookie", cookie)], "").0;
    assert_eq!(search(&session), 200);
    let change =
        format!(r#"{{"username": "admin", "password": "another-admin-password", "current_password": "{}"}}"#, ADMIN.1);
    let auth = basic(ADMIN.0, ADMIN.1);
    let (status, _, answer) =
        http(addr, "PATCH", "/api/2.0/mlflow/users/update-password", &[("Authorization", &auth)], &change);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(search(&session), 401);
}
