//! `shipyard lineage models:/NAME/VERSION`: where a model version came from and where it went.
//!
//! dataset versions (the run's dataset inputs, matched to Shipyard's dataset versions by name and
//! digest) → the run that trained it (parameters, metrics) → the registered version (its gate
//! verdict) → every move of an alias to or from it → the deployments serving it now.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use shipyard_core::deployment::Deployment;
use shipyard_core::entities::utc_seconds;
use shipyard_runtime::fetch::ModelUri;
use shipyard_store::Database;
use shipyard_store::datasets::DatasetVersion;

use crate::Format;
use crate::datasets::{DatasetStoreArgs, with_database};

#[derive(Args)]
pub struct LineageArgs {
    /// The version: models:/NAME/VERSION or models:/NAME@ALIAS.
    model: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| json!(utc_seconds(t)))
}

/// The Shipyard dataset version a run input names: by the version it records, else by digest.
fn match_dataset<'a>(
    input: &shipyard_core::entities::Dataset,
    known: &'a [DatasetVersion],
) -> Option<&'a DatasetVersion> {
    let recorded = input
        .profile
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p["shipyard_version"].as_i64());
    let same_bytes = |v: &&DatasetVersion| !input.digest.is_empty() && v.digest.starts_with(&input.digest);
    match recorded {
        Some(n) => known.iter().find(|v| v.name == input.name && v.version == n),
        None => known.iter().filter(same_bytes).max_by_key(|v| v.created_time),
    }
}

/// How a deployment serves `name/version` now, if it does.
async fn serving_role(db: &Database, d: &Deployment, name: &str, version: &str) -> Result<Vec<Value>> {
    let mut roles = Vec::new();
    let arms = d.spec.arms.iter().map(|a| (&a.target, format!("arm {}%", a.weight)));
    let shadow = d.spec.shadow.iter().map(|s| (s, "shadow".to_owned()));
    for (target, role) in arms.chain(shadow) {
        if target.model != name {
            continue;
        }
        if db.resolve_model_ref(target).await.ok().flatten().as_deref() == Some(version) {
            roles.push(json!({"deployment": d.name, "revision": d.revision, "role": role, "via": target.to_string()}));
        }
    }
    Ok(roles)
}

async fn gather(db: &Database, uri: &str) -> Result<Value> {
    let (name, version) = match ModelUri::parse(uri)? {
        ModelUri::Version { name, version } => (name, version),
        ModelUri::Alias { name, alias } => (name.clone(), db.get_model_version_by_alias(&name, &alias).await?.version),
        _ => bail!("'{uri}' does not name a registered version: use models:/NAME/VERSION or models:/NAME@ALIAS"),
    };
    let mv = db.get_model_version(&name, &version).await?;
    let tag = |key: &str| mv.tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
    let run = match &mv.run_id {
        Some(id) => Some(db.get_run(id).await?),
        None => None,
    };
    let known = db.list_dataset_versions(None).await?;
    let datasets: Vec<Value> = run
        .iter()
        .flat_map(|r| &r.inputs.dataset_inputs)
        .map(|input| {
            let d = &input.dataset;
            let matched = match_dataset(d, &known);
            json!({
                "name": d.name,
                "digest": d.digest,
                "source": serde_json::from_str::<Value>(&d.source).unwrap_or_else(|_| json!(d.source)),
                "context": input.tags.iter().find(|t| t.key == "mlflow.data.context").map(|t| t.value.clone()),
                "dataset_version": matched.map(|v| format!("dataset:{}@{}", v.name, v.version)),
                "rows": matched.map(|v| v.rows),
            })
        })
        .collect();
    let run_json = run.as_ref().map(|r| {
        let params: serde_json::Map<String, Value> =
            r.data.params.iter().map(|p| (p.key.clone(), json!(p.value))).collect();
        let metrics: serde_json::Map<String, Value> =
            r.data.metrics.iter().map(|m| (m.key.clone(), json!(m.value))).collect();
        json!({
            "run_id": r.info.run_uuid,
            "run_name": r.info.run_name,
            "experiment_id": r.info.experiment_id,
            "status": r.info.status,
            "user": r.info.user_id,
            "start_time": time(r.info.start_time),
            "end_time": time(r.info.end_time),
            "params": params,
            "metrics": metrics,
        })
    });
    let moves: Vec<Value> = db
        .alias_history(&name, None)
        .await?
        .into_iter()
        .filter(|m| {
            m.from_version.as_deref() == Some(version.as_str()) || m.to_version.as_deref() == Some(version.as_str())
        })
        .map(|m| {
            let gates = m
                .gate_report
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .map(|r| r["passed"].clone());
            json!({
                "time": time(Some(m.time)), "alias": m.alias, "kind": m.kind, "from_version": m.from_version,
                "to_version": m.to_version, "actor": m.actor, "reason": m.reason, "gates_passed": gates,
            })
        })
        .collect();
    let mut deployments = Vec::new();
    for d in db.list_deployments().await? {
        deployments.extend(serving_role(db, &d, &name, &version).await?);
    }
    Ok(json!({
        "model_version": {
            "name": mv.name, "version": mv.version, "status": mv.status.as_str(), "stage": mv.current_stage,
            "source": mv.source, "created": time(Some(mv.creation_timestamp)), "aliases": mv.aliases,
            "gates_passed": tag("shipyard.gates.passed").map(|v| v == "true"),
            "gate_report": tag("shipyard.gates.report"),
        },
        "run": run_json,
        "datasets": datasets,
        "alias_moves": moves,
        "deployments": deployments,
    }))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::String(_) | Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn print_tree(l: &Value) {
    let mv = &l["model_version"];
    for d in l["datasets"].as_array().into_iter().flatten() {
        let version = d["dataset_version"].as_str().map(|v| format!(" = {v}")).unwrap_or_default();
        let rows = d["rows"].as_i64().map(|r| format!(", {r} rows")).unwrap_or_default();
        outln!("dataset        {} (digest {}{rows}){version}", text(&d["name"]), text(&d["digest"]));
    }
    if let Some(run) = l["run"].as_object() {
        let model = run.get("params").and_then(|p| p.get("model")).map(text).unwrap_or_else(|| "-".into());
        outln!(
            "└─ run        {} ({}, {model}, {} by {}, ended {})",
            text(&run["run_id"]),
            text(&run["run_name"]),
            text(&run["status"]),
            text(&run["user"]),
            text(&run["end_time"])
        );
    } else {
        outln!("└─ run        (none: the version was registered from {})", text(&mv["source"]));
    }
    let gates = match mv["gates_passed"].as_bool() {
        Some(true) => "gates passed",
        Some(false) => "gates FAILED",
        None => "gates not run",
    };
    outln!(
        "   └─ version {}/{} ({}, registered {}, {gates}; aliases now: {})",
        text(&mv["name"]),
        text(&mv["version"]),
        text(&mv["status"]),
        text(&mv["created"]),
        mv["aliases"].as_array().filter(|a| !a.is_empty()).map_or("none".to_owned(), |a| a
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(", "))
    );
    for m in l["alias_moves"].as_array().into_iter().flatten() {
        let reason = m["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        outln!(
            "      ├─ {}  {} {} -> {} ({} by {}{reason})",
            text(&m["time"]),
            text(&m["alias"]),
            text(&m["from_version"]),
            text(&m["to_version"]),
            text(&m["kind"]),
            text(&m["actor"])
        );
    }
    for d in l["deployments"].as_array().into_iter().flatten() {
        outln!(
            "      └─ deployment {} (revision {}): {} via {}",
            text(&d["deployment"]),
            text(&d["revision"]),
            text(&d["role"]),
            text(&d["via"])
        );
    }
}

pub fn run(args: LineageArgs) -> Result<crate::Outcome> {
    let lineage = with_database(&args.store, async |db| gather(db, &args.model).await)?;
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&lineage)?),
        Format::Table => print_tree(&lineage),
    }
    Ok(crate::Outcome::Success)
}
