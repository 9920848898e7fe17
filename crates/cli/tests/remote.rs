//! Every write command through an authenticated HTTPS server, from a "laptop" whose home holds
//! no store: `data add`, `train` (a local file added as a dataset version first), `models
//! set-policy | validate | promote | rollback | history | register`, `deploy` (create, weights,
//! end, show, list, delete), `monitor configure | show | feedback | evaluate`, with the
//! credentials and the CA the `mlflow` client reads from `MLFLOW_TRACKING_*`. Moves and runs are
//! recorded as the logged-in user, a user with READ is refused, and the server refuses to read
//! a path of its own for a caller.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::{Server, shipyard_cmd, start_command, stderr, stdout, table};
use serde_json::Value;

const ADMIN_PASSWORD: &str = "admin-password-long";
const ALICE: (&str, &str) = ("alice", "alice-password-long");
const BOB: (&str, &str) = ("bob", "bob-password-long-enough");
const CAROL: (&str, &str) = ("carol", "carol-password-long-enough");
const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

/// A test CA and the server's certificate for 127.0.0.1, as PEM files, and a client
/// certificate from the same CA (certificate and key in one file, as the `mlflow` client takes
/// it) with its SHA-256.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: PathBuf,
    client_sha256: String,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "shipyard remote test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server_params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.distinguished_name.push(DnType::CommonName, "carol");
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client: dir.join("carol.pem"),
        client_sha256: shipyard_listener::ClientCertificate::from_der(client.der()).sha256,
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, server.pem()).unwrap();
    std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
    std::fs::write(&pki.client, format!("{}{}", client.pem(), client_key.serialize_pem())).unwrap();
    pki
}

/// `shipyard server --auth` over TLS (asking clients for a certificate of the test CA), with
/// users alice, bob and carol (default permission READ).
fn team_server(home: &Path, pki: &Pki) -> (Server, Arc<Mutex<String>>) {
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let args = [
        "server",
        "--auth",
        "--no-monitors",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-client-ca",
        ca,
        "--port",
        "0",
    ];
    let mut command = shipyard_cmd(home, &args);
    command.env("SHIPYARD_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let log = Arc::new(Mutex::new(String::new()));
    let server = start_command(command, log.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let uri = shipyard_store::DatabaseUri::Sqlite(home.join("shipyard.db"));
        let db = shipyard_store::Database::connect(&uri).await.unwrap();
        for (user, password) in [ALICE, BOB, CAROL] {
            shipyard_auth::accounts::create_user(&db, user, password, false).await.unwrap();
        }
        db.close().await;
    });
    (server, log)
}

/// The laptop: `shipyard ARGS --tracking-uri https://ADDR` from a home with no store, as `who`.
struct Laptop {
    home: PathBuf,
    url: String,
    ca: PathBuf,
}

impl Laptop {
    fn run_as(&self, who: Option<(&str, &str)>, args: &[&str]) -> Output {
        let mut args = args.to_vec();
        args.extend(["--tracking-uri", &self.url]);
        let mut command = shipyard_cmd(&self.home, &args);
        command.env("MLFLOW_TRACKING_SERVER_CERT_PATH", &self.ca);
        command.env_remove("MLFLOW_TRACKING_TOKEN");
        match who {
            Some((user, password)) => {
                command.env("MLFLOW_TRACKING_USERNAME", user).env("MLFLOW_TRACKING_PASSWORD", password);
            }
            None => {
                command.env_remove("MLFLOW_TRACKING_USERNAME").env_remove("MLFLOW_TRACKING_PASSWORD");
            }
        }
        command.output().unwrap()
    }

    /// As alice; must succeed; stdout as JSON (Null when it is not JSON).
    fn alice(&self, args: &[&str]) -> Value {
        let out = self.run_as(Some(ALICE), args);
        assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null)
    }
}

/// POSTs JSON `body` to `route` on the laptop's server as `who`: status, `x-request-id`, body.
fn post_as(laptop: &Laptop, who: (&str, &str), route: &str, body: &str) -> (u16, Option<String>, String) {
    shipyard_store::artifacts::ensure_tls_provider();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&laptop.ca).unwrap()).unwrap();
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
        let response = client
            .post(format!("{}/{route}", laptop.url))
            .basic_auth(who.0, Some(who.1))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
        (status, id, response.text().await.unwrap())
    })
}

/// A prediction through `/predict/DEPLOYMENT` as `who`; its request id.
fn predict_as(laptop: &Laptop, who: (&str, &str), deployment: &str, body: &str) -> String {
    let (status, id, text) = post_as(laptop, who, &format!("predict/{deployment}"), body);
    assert_eq!(status, 200, "{text}");
    id.expect("an x-request-id header")
}

#[test]
fn every_write_command_works_through_an_authenticated_https_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server_home = dir.path().join("server");
    let (server, log) = team_server(&server_home, &pki);
    let laptop =
        Laptop { home: dir.path().join("laptop"), url: format!("https://{}", server.addr), ca: pki.ca.clone() };
    let train = dir.path().join("train.csv");
    std::fs::write(&train, table(600, 11, 0.0)).unwrap();
    let train = train.to_str().unwrap();

    // Data and training: the server does the work, on its stores.
    let added = laptop.alice(&["data", "add", train, "--name", "churn-data", "--format", "json"]);
    assert_eq!((added["version"].as_i64(), added["created"].as_bool()), (Some(1), Some(true)), "{added}");
    assert_eq!(added["source"].as_str(), Some(train));
    let first = laptop.alice(&[
        "train",
        "--data",
        "dataset:churn-data@1",
        "--target",
        "y",
        "--model",
        "logistic_regression",
        "--experiment",
        "churn",
        "--register",
        "churn",
        "--format",
        "json",
    ]);
    assert_eq!(first["registered_model"]["version"].as_str(), Some("1"), "{first}");
    assert!(first["metrics"]["accuracy"].as_f64().unwrap() > 0.6, "{first}");
    // A local file is added to the server first, under its own name.
    let out = laptop.run_as(
        Some(ALICE),
        &[
            "train",
            "--data",
            train,
            "--target",
            "y",
            "--model",
            "decision_tree",
            "--param",
            "max_depth=1",
            "--experiment",
            "churn",
            "--register",
            "churn",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("to the server as dataset:train@1"), "{}", stderr(&out));
    let second: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(second["registered_model"]["version"].as_str(), Some("2"));
    let runs = laptop.alice(&["runs", "list", "--experiment", "churn", "--format", "json"]);
    let users: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["data"]["tags"].as_array().unwrap())
        .filter(|t| t["key"] == "mlflow.user")
        .map(|t| t["value"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "alice"], "runs are recorded as the logged-in user, not $USER");

    // Gates and alias moves.
    let policy = dir.path().join("gates.yaml");
    std::fs::write(
        &policy,
        "gates: 1\nevaluation: {data: 'dataset:churn-data@1', target: y}\nmetrics: {accuracy: {min: 0.6}}\n\
         champion: {tolerance: 0.02}\n",
    )
    .unwrap();
    laptop.alice(&["models", "set-policy", "churn", "--policy", policy.to_str().unwrap()]);
    let report = laptop.alice(&["models", "validate", "models:/churn/1", "--format", "json"]);
    assert_eq!(report["passed"].as_bool(), Some(true), "{report}");
    assert!(report["report_uri"].as_str().unwrap().starts_with("runs:/"), "{report}");
    let promoted =
        laptop.alice(&["models", "promote", "churn", "--version", "1", "--timeout", "60", "--format", "json"]);
    assert_eq!(promoted["move"]["to_version"].as_str(), Some("1"), "{promoted}");
    assert_eq!(promoted["move"]["actor"].as_str(), Some("alice"));
    assert_eq!(promoted["rollout"]["waited"].as_bool(), Some(true), "{promoted}");
    // The one-split tree loses to the champion: blocked, then forced.
    let blocked = laptop.run_as(Some(ALICE), &["models", "promote", "churn", "--version", "2", "--no-wait"]);
    assert_eq!(blocked.status.code(), Some(1), "{}{}", stdout(&blocked), stderr(&blocked));
    assert!(stderr(&blocked).contains("not promoted"), "{}", stderr(&blocked));
    laptop.alice(&["models", "promote", "churn", "--version", "2", "--force", "--reason", "test", "--no-wait"]);
    let back = laptop.alice(&["models", "rollback", "churn", "--reason", "bad", "--no-wait", "--format", "json"]);
    assert_eq!((back["kind"].as_str(), back["to_version"].as_str()), (Some("rollback"), Some("1")), "{back}");
    let history = laptop.alice(&["models", "history", "churn", "--format", "json"]);
    let moves: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["kind"].as_str().unwrap(), m["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(moves, [("promote", "alice"), ("force", "alice"), ("rollback", "alice")]);
    let run_id = first["run_id"].as_str().unwrap();
    let registered = laptop.alice(&[
        "models",
        "register",
        "churn",
        "--model-uri",
        &format!("runs:/{run_id}/model"),
        "--format",
        "json",
    ]);
    assert_eq!(registered["version"].as_str(), Some("3"));

    // Deployments.
    let deployed = laptop.alice(&[
        "deploy",
        "web",
        "--model",
        "models:/churn/1",
        "--canary",
        "models:/churn/2",
        "--weight",
        "20",
        "--no-wait",
        "--format",
        "json",
    ]);
    assert_eq!(deployed["resolved_versions"], serde_json::json!(["1", "2"]), "{deployed}");
    let weighted = laptop.alice(&["deploy", "set-weight", "web", "--weight", "50", "--no-wait", "--format", "json"]);
    assert_eq!(weighted["spec"]["arms"][1]["weight"].as_u64(), Some(50), "{weighted}");
    // This change waits until the server serves it (the rollout wait, through the server).
    let ended = laptop.alice(&["deploy", "end-canary", "web", "--timeout", "60", "--format", "json"]);
    assert_eq!(ended["spec"]["arms"].as_array().unwrap().len(), 1, "{ended}");
    assert_eq!(ended["rollout"]["status"]["complete"].as_bool(), Some(true), "{ended}");
    assert_eq!(ended["updated_by"].as_str(), Some("alice"), "{ended}");
    let listed = laptop.alice(&["deploy", "list", "--format", "json"]);
    assert_eq!(listed[0]["name"].as_str(), Some("web"), "{listed}");

    // Monitors.
    let monitors = dir.path().join("monitors.yaml");
    std::fs::write(
        &monitors,
        "monitors: 1\nwindow: {last: 100}\nrules:\n  - {name: drift, metric: drift_share, op: '>', threshold: 0.5}\n",
    )
    .unwrap();
    let out = laptop
        .run_as(Some(ALICE), &["monitor", "configure", "--deployment", "web", "--config", monitors.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 rule(s)"), "{}", stdout(&out));
    let shown = laptop.run_as(Some(ALICE), &["monitor", "show", "--deployment", "web"]);
    assert!(stdout(&shown).contains("drift_share"), "{}", stdout(&shown));
    // A prediction through the deployment (alice's credentials), then its ground truth.
    let request_id = predict_as(&laptop, ALICE, "web", r#"{"records": [{"age": 30, "income": 50, "group": "a"}]}"#);
    let feedback = dir.path().join("feedback.csv");
    std::fs::write(&feedback, format!("request_id,actual\n{request_id},1\n")).unwrap();
    let args = ["monitor", "feedback", "--deployment", "web", "--file", feedback.to_str().unwrap()];
    let began = std::time::Instant::now();
    loop {
        // The prediction log is written within a second of the answer.
        let out = laptop.run_as(Some(ALICE), &args);
        if out.status.success() {
            assert!(stdout(&out).contains("Recorded ground truth for 1 row(s)"), "{}", stdout(&out));
            break;
        }
        assert!(stderr(&out).contains("no successful prediction"), "{}", stderr(&out));
        assert!(began.elapsed().as_secs() < 20, "the prediction never reached the log: {}", stderr(&out));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let evaluation = laptop.alice(&["monitor", "evaluate", "--deployment", "web", "--format", "json"]);
    assert_eq!(evaluation["deployment"].as_str(), Some("web"), "{evaluation}");

    // Bob may read (the default permission) but not change what alice created.
    let refused = laptop.run_as(Some(BOB), &["models", "rollback", "churn", "--no-wait"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("PERMISSION_DENIED"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("bob may not change registered model 'churn'"), "{}", stderr(&refused));
    let refused = laptop.run_as(Some(BOB), &["deploy", "delete", "web"]);
    assert!(stderr(&refused).contains("PERMISSION_DENIED"), "{}", stderr(&refused));
    let read = laptop.run_as(Some(BOB), &["deploy", "show", "web", "--format", "json"]);
    assert!(read.status.success(), "{}", stderr(&read));
    // Without credentials the error says which variables to set.
    let anonymous = laptop.run_as(None, &["deploy", "list"]);
    assert!(stderr(&anonymous).contains("MLFLOW_TRACKING_USERNAME"), "{}", stderr(&anonymous));
    laptop.alice(&["deploy", "delete", "web"]);

    // The server reads no path of its own for a caller, even from a stored policy (the CLI
    // would have uploaded the file: this one is stored through the API).
    let sneaky = serde_json::json!({
        "name": "churn",
        "policy": "gates: 1\nevaluation: {data: '/etc/hostname', target: y}\nchampion: {tolerance: 0.02}\n",
    });
    let (status, _, text) = post_as(&laptop, ALICE, "api/shipyard/models/set-policy", &sneaky.to_string());
    assert_eq!(status, 200, "{text}");
    let out = laptop.run_as(Some(ALICE), &["models", "validate", "models:/churn/1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reads tables only as dataset versions"), "{}", stderr(&out));

    // A pipeline through the server: its runs recorded there, each step's command too, the smoke
    // test sent with alice's credentials, the second run served from the step cache.
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "pipeline: 1\nname: remote\nconfig:\n  min_accuracy: 0.6\n  max_inference_time: 0.5\n  \
             deployment_endpoint: {url}\nsteps:\n\
             - validate: {{data: '{train}', dataset: remote-data}}\n\
             - train: {{data: '${{validate.data}}', target: y, candidates: [{{model: logistic_regression}}]}}\n\
             - register: {{model: '${{train.model_uri}}', name: remote-model}}\n\
             - gate: {{model: '${{register.model_uri}}', data: '${{validate.data}}', target: y}}\n\
             - promote: {{model: '${{register.model_uri}}'}}\n\
             - deploy: {{deployment: remote-api, model: 'models:/remote-model@production'}}\n  needs: [promote]\n\
             - smoke_test: {{deployment: '${{deploy.deployment}}', data: '${{validate.data}}', drop: [y]}}\n\
             - monitor: {{deployment: '${{deploy.deployment}}', target: y, window: 200}}\n",
            url = laptop.url
        ),
    )
    .unwrap();
    let pipeline = pipeline.to_str().unwrap();
    let summary = laptop.alice(&["pipeline", "run", pipeline, "--format", "json"]);
    assert_eq!(summary["success"].as_bool(), Some(true), "{summary}");
    assert_eq!(summary["model_version"].as_str(), Some("remote-model/1"), "{summary}");
    assert_eq!(summary["deployment_result"]["smoke_test"]["rows"].as_u64(), Some(5), "{summary}");
    let run_id = summary["run_id"].as_str().unwrap();
    let status = laptop.alice(&["pipeline", "status", run_id, "--format", "json"]);
    assert_eq!(status["steps"].as_array().unwrap().len(), 8, "{status}");
    let again = laptop.alice(&["pipeline", "run", pipeline, "--format", "json"]);
    let cached: Vec<&str> = again["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cached"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(cached.contains(&"validate") && cached.contains(&"train"), "{again}");

    // Nothing was written on the laptop's side.
    assert!(!laptop.home.join("shipyard.db").exists());
    assert!(!laptop.home.join("artifacts").exists());
    drop(server);
    let log = log.lock().unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused_with_the_variable_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let ours = pki(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let foreign = pki(&other);
    let (server, _log) = team_server(&dir.path().join("server"), &ours);
    let laptop = Laptop { home: dir.path().join("laptop"), url: format!("https://{}", server.addr), ca: foreign.ca };
    let out = laptop.run_as(Some(ALICE), &["deploy", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("MLFLOW_TRACKING_SERVER_CERT_PATH"), "{}", stderr(&out));
}

#[test]
fn a_client_certificate_bound_to_a_user_signs_them_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (server, _log) = team_server(&dir.path().join("server"), &pki);
    let laptop =
        Laptop { home: dir.path().join("laptop"), url: format!("https://{}", server.addr), ca: pki.ca.clone() };
    let with_certificate = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--tracking-uri", &laptop.url]);
        let mut command = shipyard_cmd(&laptop.home, &args);
        command
            .env("MLFLOW_TRACKING_SERVER_CERT_PATH", &laptop.ca)
            .env("MLFLOW_TRACKING_CLIENT_CERT_PATH", &pki.client)
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .env_remove("MLFLOW_TRACKING_TOKEN");
        command.output().unwrap()
    };
    // Verified by the handshake but bound to nobody yet: refused, saying so.
    let out = with_certificate(&["deploy", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is bound to no user"), "{}", stderr(&out));
    // Only an admin binds it.
    let bind =
        serde_json::json!({"username": "carol", "sha256": pki.client_sha256, "name": "carol's laptop"}).to_string();
    assert_eq!(post_as(&laptop, ALICE, "api/shipyard/certificates/add", &bind).0, 403);
    let (status, _, answer) = post_as(&laptop, ADMIN, "api/shipyard/certificates/add", &bind);
    assert_eq!(status, 200, "{answer}");
    // Now the certificate is carol: what she creates is hers.
    let train = dir.path().join("train.csv");
    std::fs::write(&train, table(200, 3, 0.0)).unwrap();
    let out = with_certificate(&["data", "add", train.to_str().unwrap(), "--name", "carols", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with_certificate(&["deploy", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = laptop.run_as(Some(CAROL), &["data", "list", "--format", "json"]);
    assert!(stdout(&out).contains("\"carols\""), "{}{}", stdout(&out), stderr(&out));
    // Unbound, it signs nobody in again.
    let unbind = serde_json::json!({ "sha256": pki.client_sha256 }).to_string();
    assert_eq!(post_as(&laptop, ADMIN, "api/shipyard/certificates/remove", &unbind).0, 200);
    assert!(!with_certificate(&["deploy", "list"]).status.success());
}
