//! `shipyard models validate | promote | rollback | history | set-policy`: promotion gates and
//! alias moves (`docs/promotion.md`).
//!
//! This file gathers what the gates need (the version's run and metrics, the candidate and the
//! champion loaded from the store, evaluation rows, the training profile for drift), runs
//! [`shipyard_promotion::evaluate`], stores the report on the version (tags, and a JSON artifact
//! under its run), and moves the alias through [`shipyard_store::promotion`], which serializes
//! moves and records them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_core::entities::{
    KeyValue, ModelVersion, ModelVersionStatus, Run, now_millis, utc_seconds, utc_timestamp,
};
use shipyard_data::drift::TableSample;
use shipyard_data::table::Table;
use shipyard_promotion::gates::{Champion, Evaluation, Evidence};
use shipyard_promotion::{GatePolicy, GateReport};
use shipyard_runtime::EngineChoice;
use shipyard_runtime::fetch::{self, ModelUri};
use shipyard_serving::loader::Loader;
use shipyard_serving::scorer::EngineScorer;
use shipyard_store::promotion::{AliasMove, AliasMoveRequest, MoveKind};
use shipyard_store::{ArtifactStore, Database};

use crate::Format;
use crate::data::ReadArgs;
use crate::datasets::{self, DatasetStoreArgs, block_on, with_database};
use crate::rollout::WaitArgs;
use shipyard_store::rollout::RolloutTarget;

/// The registered model tag holding a model's gate policy (`models set-policy`).
pub const POLICY_TAG: &str = "shipyard.gates.policy";
/// The alias promotions move unless told otherwise.
const DEFAULT_ALIAS: &str = "production";

/// Where the gates get their policy and rows.
#[derive(Args)]
pub struct GateArgs {
    /// Gate policy (YAML). Default: the one stored with `shipyard models set-policy`.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Evaluation rows: CSV, Parquet or dataset:NAME[@VERSION] (default: the policy's
    /// evaluation.data).
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// How Python models (scikit-learn pickles, pyfunc) are loaded: the gates run each version
    /// on the engine that serves it, so its latency is that engine's.
    #[command(flatten)]
    python: crate::serve::PythonArgs,
}

/// How long a Python model may take over the evaluation rows.
const PYTHON_GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Args)]
pub struct ValidateArgs {
    /// The version: models:/NAME/VERSION.
    model: String,
    /// The alias the version would be promoted to: its holder is the champion.
    #[arg(long, default_value = DEFAULT_ALIAS)]
    alias: String,
    #[command(flatten)]
    gates: GateArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

#[derive(Args)]
pub struct PromoteArgs {
    /// Registered model name.
    name: String,
    /// The version to promote.
    #[arg(long)]
    version: String,
    /// The alias to move.
    #[arg(long, default_value = DEFAULT_ALIAS)]
    alias: String,
    #[command(flatten)]
    gates: GateArgs,
    /// Move the alias even if gates fail (or with no policy); needs --reason, which is recorded.
    #[arg(long, requires = "reason")]
    force: bool,
    #[command(flatten)]
    mover: MoverArgs,
}

/// Who moves an alias and why, and where the store is: shared by promote and rollback.
#[derive(Args)]
pub struct MoverArgs {
    /// Why: recorded in the history (required with --force).
    #[arg(long)]
    reason: Option<String>,
    /// Who moves the alias (default: $USER).
    #[arg(long)]
    actor: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

#[derive(Args)]
pub struct RollbackArgs {
    /// Registered model name.
    name: String,
    /// The alias to move back.
    #[arg(long, default_value = DEFAULT_ALIAS)]
    alias: String,
    #[command(flatten)]
    mover: MoverArgs,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Registered model name.
    name: String,
    /// Only this alias's moves.
    #[arg(long)]
    alias: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

#[derive(Args)]
pub struct SetPolicyArgs {
    /// Registered model name.
    name: String,
    /// The gate policy (YAML); it is checked before it is stored.
    #[arg(long)]
    policy: PathBuf,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

pub(crate) fn actor(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `models:/NAME/VERSION` → (name, version).
fn parse_version_uri(uri: &str) -> Result<(String, String)> {
    match ModelUri::parse(uri)? {
        ModelUri::Version { name, version } => Ok((name, version)),
        _ => bail!("'{uri}' does not name a registered version: use models:/NAME/VERSION"),
    }
}

/// A model version with what the gates read, from the store.
struct Subject {
    version: ModelVersion,
    run: Option<Run>,
}

async fn open_stores(store: &DatasetStoreArgs) -> Result<(Database, ArtifactStore)> {
    let db = store.database().await?;
    let artifacts = ArtifactStore::open(&store.destination()).await?;
    Ok((db, artifacts))
}

async fn subject(db: &Database, name: &str, version: &str) -> Result<Subject> {
    let version = db.get_model_version(name, version).await?;
    if version.status != ModelVersionStatus::Ready {
        bail!("version {} of '{name}' is {}, not READY", version.version, version.status.as_str());
    }
    let run = match &version.run_id {
        Some(id) => Some(db.get_run(id).await.with_context(|| format!("reading run {id} of the version"))?),
        None => None,
    };
    Ok(Subject { version, run })
}

/// Fetches and loads a registered version on the engine that serves it (a Python model's
/// workers run on the current runtime, which must outlive the model), keeping a new
/// conversion with the version and tagging the engine, as a server's load does.
async fn load_version(
    db: &Database,
    artifacts: &ArtifactStore,
    loader: &Loader,
    name: &str,
    version: &str,
) -> Result<EngineScorer> {
    let dir = tempfile::tempdir().context("creating a temporary folder for the model")?;
    let uri = ModelUri::Version { name: name.to_owned(), version: version.to_owned() };
    let (path, _) = fetch::fetch_model(&uri, db, artifacts, dir.path())
        .await
        .with_context(|| format!("fetching models:/{name}/{version}"))?;
    let loaded = loader
        .load(path, Some(dir), &format!("{name}/{version}"))
        .await
        .map_err(|e| anyhow!("loading models:/{name}/{version}: {e}"))?;
    if let Some(conversion) = &loaded.new_conversion {
        let (sub, record) = (shipyard_pyfunc::convert::CACHE_DIR, shipyard_serving::loader::KEPT_RECORD);
        if let Err(e) = fetch::store_beside(&uri, db, artifacts, sub, conversion.path(), record).await {
            tracing::warn!("cannot keep the conversion with models:/{name}/{version}: {e}");
        }
    }
    for (key, value) in loaded.choice.tags() {
        db.set_model_version_tag(name, version, &KeyValue { key: key.into(), value }).await?;
    }
    Ok(EngineScorer { engine: loaded.engine, runtime: tokio::runtime::Handle::current() })
}

/// The policy: the file given, else the one stored on the registered model.
fn load_policy(path: Option<&Path>, stored: Option<&str>, name: &str) -> Result<Option<GatePolicy>> {
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Some(GatePolicy::from_yaml(&text, &path.display().to_string())?));
    }
    match stored {
        Some(text) => Ok(Some(GatePolicy::from_yaml(text, &format!("the policy stored on '{name}'"))?)),
        None => Ok(None),
    }
}

/// Everything the gates read, gathered.
struct Gathered {
    subject: Subject,
    policy: GatePolicy,
    candidate: EngineScorer,
    champion: Option<(String, EngineScorer)>,
    champion_alias: String,
    evaluation: Option<(String, Vec<arrow_array::RecordBatch>)>,
    target: Option<String>,
    drift_reference: Option<Result<(String, TableSample), String>>,
    /// The alias's version when the gates started (promotions expect it unchanged).
    alias_before: Option<String>,
    /// Where Python models' workers run: it lives as long as the models.
    _runtime: tokio::runtime::Runtime,
}

/// Reads the version, the policy, both models and the rows. `policy` is `None` when there is
/// none to run (only `promote --force` accepts that).
fn gather(
    name: &str,
    version: &str,
    alias: &str,
    args: &GateArgs,
    store: &DatasetStoreArgs,
    require_policy: bool,
) -> Result<Option<Gathered>> {
    let (subject, stored_policy, alias_before) = with_database(store, async |db| {
        let subject = subject(db, name, version).await?;
        let model = db.get_registered_model(name).await?;
        let stored = model.tags.into_iter().find(|t| t.key == POLICY_TAG).map(|t| t.value);
        Ok((subject, stored, db.current_alias_version(name, alias).await?))
    })?;
    let Some(policy) = load_policy(args.policy.as_deref(), stored_policy.as_deref(), name)? else {
        if require_policy {
            bail!(
                "'{name}' has no gate policy: pass --policy FILE, store one with `shipyard models set-policy {name} \
                 --policy FILE`, or promote with --force --reason TEXT"
            );
        }
        return Ok(None);
    };
    let evaluation_arg =
        args.data.clone().or_else(|| policy.evaluation.as_ref().and_then(|e| e.data.as_ref()).map(PathBuf::from));
    let evaluation = match &evaluation_arg {
        Some(arg) if policy.needs_evaluation_data() => {
            let path = datasets::resolve_input(arg, store)?;
            let batches = Table::open(&path, &args.read.options()?)?.read_all()?;
            Some((arg.display().to_string(), batches))
        }
        _ => None,
    };
    let run_param = |key: &str| {
        subject.run.as_ref().and_then(|r| r.data.params.iter().find(|p| p.key == key).map(|p| p.value.clone()))
    };
    let target = policy.evaluation.as_ref().and_then(|e| e.target.clone()).or_else(|| run_param("target"));
    let champion_alias = policy.champion_alias(alias).unwrap_or(alias).to_owned();
    let drift_source = policy.drift.as_ref().map(|d| d.reference.clone().unwrap_or_else(|| "training".to_owned()));
    // A table or dataset as the drift reference is read here, outside the async block.
    let drift_table = match drift_source.as_deref() {
        Some(source) if source != "training" => Some((source.to_owned(), {
            let path = datasets::resolve_input(Path::new(source), store)?;
            let mut table = Table::open(&path, &args.read.options()?)?;
            TableSample::read(&mut table).map_err(|e| e.to_string())
        })),
        _ => None,
    };
    let run_root = subject.run.as_ref().map(|r| r.info.artifact_uri.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let loader = args.python.loader(EngineChoice::Auto, PYTHON_GATE_TIMEOUT);
    let (candidate, champion, drift_reference) = runtime.block_on(async {
        let (db, artifacts) = open_stores(store).await?;
        let candidate = load_version(&db, &artifacts, &loader, name, version).await?;
        let holder = db.current_alias_version(name, &champion_alias).await?;
        // The champion is loaded only for the gates that compare with it.
        let compares = policy.champion.is_some() || policy.signature.is_some();
        let champion = match holder {
            Some(v) if compares => Some((v.clone(), load_version(&db, &artifacts, &loader, name, &v).await?)),
            _ => None,
        };
        let drift_reference = match (drift_source.as_deref(), drift_table) {
            (None, _) => None,
            (_, Some((source, sample))) => Some(sample.map(|s| (source, s))),
            (Some(_), None) => Some(match &run_root {
                None => Err("the version has no run, so no training profile: give drift.reference".to_owned()),
                Some(root) => training_profile(&artifacts, root).await,
            }),
        };
        db.close().await;
        Ok::<_, anyhow::Error>((candidate, champion, drift_reference))
    })?;
    Ok(Some(Gathered {
        subject,
        policy,
        candidate,
        champion,
        champion_alias,
        evaluation,
        target,
        drift_reference,
        alias_before,
        _runtime: runtime,
    }))
}

/// The profile `shipyard train` stored of the training rows, as a drift reference.
async fn training_profile(artifacts: &ArtifactStore, run_root: &str) -> Result<(String, TableSample), String> {
    shipyard_monitor::runner::training_sample(artifacts, run_root)
        .await
        .map(|s| ("the training profile".to_owned(), s))
        .map_err(|e| {
            format!("no training profile on the version's run ({e}); give drift.reference (a table or dataset)")
        })
}

fn run_gates(name: &str, version: &str, g: &Gathered) -> GateReport {
    let metrics: BTreeMap<String, f64> = g
        .subject
        .run
        .as_ref()
        .map(|r| r.data.metrics.iter().map(|m| (m.key.clone(), m.value)).collect())
        .unwrap_or_default();
    let evidence = Evidence {
        model: name,
        version,
        run_id: g.subject.version.run_id.as_deref(),
        candidate: &g.candidate,
        run_metrics: &metrics,
        champion: g.champion.as_ref().map(|(v, m)| Champion { alias: &g.champion_alias, version: v, model: m }),
        evaluation: g.evaluation.as_ref().map(|(source, batches)| Evaluation {
            source,
            batches,
            target: g.target.as_deref(),
        }),
        drift_reference: g.drift_reference.clone(),
    };
    shipyard_promotion::evaluate(&g.policy, &evidence)
}

/// Stores the report: a JSON artifact under the version's run and `shipyard.gates.*` tags on
/// the version. Returns the artifact's URI.
fn record_report(store: &DatasetStoreArgs, report: &GateReport, run: Option<&Run>) -> Result<Option<String>> {
    let body = serde_json::to_vec_pretty(report)?;
    block_on(async {
        let (db, artifacts) = open_stores(store).await?;
        let mut location = None;
        if let Some(run) = run {
            let relative = format!("gates/v{}-{}.json", report.version, now_millis());
            let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
            let path = root.join(&ArtifactPath::parse(&relative)?);
            let stream = futures::stream::once(async move { Ok::<_, shipyard_core::Error>(bytes::Bytes::from(body)) });
            artifacts.put(&path, Box::pin(stream)).await.context("storing the gate report")?;
            location = Some(format!("runs:/{}/{relative}", run.info.run_uuid));
        }
        let failed = report.failures().join(",");
        let mut tags = vec![
            KeyValue::new("shipyard.gates.passed", report.passed.to_string()),
            KeyValue::new("shipyard.gates.failed", failed),
            KeyValue::new("shipyard.gates.time", now_millis().to_string()),
        ];
        if let Some(l) = &location {
            tags.push(KeyValue::new("shipyard.gates.report", l.clone()));
        }
        for tag in &tags {
            db.set_model_version_tag(&report.model, &report.version, tag).await?;
        }
        db.close().await;
        Ok(location)
    })
}

fn print_report(report: &GateReport, format: Format, location: Option<&str>) {
    match format {
        Format::Json => {
            let mut value = serde_json::to_value(report).unwrap_or_default();
            if let Some(o) = value.as_object_mut() {
                o.insert("report_uri".into(), json!(location));
            }
            outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        Format::Table => {
            out!("{}", report.table());
            if let Some(l) = location {
                outln!("report: {l}");
            }
        }
    }
}

pub fn validate(args: ValidateArgs) -> Result<crate::Outcome> {
    let (name, version) = parse_version_uri(&args.model)?;
    let gathered = gather(&name, &version, &args.alias, &args.gates, &args.store, true)?
        .ok_or_else(|| anyhow!("no gate policy"))?;
    let report = run_gates(&name, &version, &gathered);
    let location = record_report(&args.store, &report, gathered.subject.run.as_ref())?;
    print_report(&report, args.format, location.as_deref());
    Ok(if report.passed { crate::Outcome::Success } else { crate::Outcome::ChecksFailed })
}

pub fn promote(args: PromoteArgs) -> Result<crate::Outcome> {
    let (name, version) = (args.name.clone(), args.version.trim().to_owned());
    let current =
        with_database(&args.mover.store, async |db| Ok(db.current_alias_version(&name, &args.alias).await?))?;
    if current.as_deref() == Some(version.as_str()) {
        outln!("{name}@{} already points at version {version}: nothing to move", args.alias);
        return Ok(crate::Outcome::Success);
    }
    let gathered = gather(&name, &version, &args.alias, &args.gates, &args.mover.store, !args.force)?;
    let (report, location, expected) = match &gathered {
        Some(g) => {
            let report = run_gates(&name, &version, g);
            let location = record_report(&args.mover.store, &report, g.subject.run.as_ref())?;
            (Some(report), location, g.alias_before.clone())
        }
        None => (None, None, current),
    };
    if let Some(r) = &report
        && args.mover.format == Format::Table
    {
        out!("{}", r.table());
    }
    let passed = report.as_ref().is_some_and(|r| r.passed);
    if !passed && !args.force {
        let failures = report.as_ref().map(GateReport::failures).unwrap_or_default();
        if args.mover.format == Format::Json {
            print_report(report.as_ref().ok_or_else(|| anyhow!("no report"))?, Format::Json, location.as_deref());
        }
        eprintln!(
            "not promoted: {} gate check(s) failed ({}); {name}@{} stays at {}. Use --force --reason TEXT to override.",
            failures.len(),
            failures.join(", "),
            args.alias,
            expected.as_deref().map_or("no version".to_owned(), |v| format!("version {v}"))
        );
        return Ok(crate::Outcome::ChecksFailed);
    }
    let request = AliasMoveRequest {
        model: name.clone(),
        alias: args.alias.clone(),
        to_version: version.clone(),
        kind: if passed { MoveKind::Promote } else { MoveKind::Force },
        expected_from: Some(expected),
        actor: actor(args.mover.actor.clone()),
        reason: args.mover.reason.clone(),
        gate_report: report.as_ref().map(serde_json::to_string).transpose()?,
    };
    let moved = with_database(&args.mover.store, async |db| Ok(db.move_alias(request).await?))?;
    let target = RolloutTarget::Alias { model: name, alias: args.alias.clone() };
    if args.mover.format == Format::Table {
        outln!("{}", describe_move(&moved));
    }
    let (outcome, rollout) = args.mover.wait.wait(&args.mover.store, &target, args.mover.format)?;
    if args.mover.format == Format::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"move": moved, "report": report, "report_uri": location, "rollout": rollout})
            )?
        );
    }
    Ok(outcome)
}

fn describe_move(m: &AliasMove) -> String {
    let show = |v: &Option<String>| v.as_deref().map_or("(unset)".to_owned(), |v| format!("version {v}"));
    format!(
        "{}@{}: {} -> {} ({}, move {} by {}{})",
        m.model,
        m.alias,
        show(&m.from_version),
        show(&m.to_version),
        m.kind.as_str(),
        m.seq,
        m.actor,
        m.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
    )
}

pub fn rollback(args: RollbackArgs) -> Result<crate::Outcome> {
    let actor = actor(args.mover.actor.clone());
    let moved = with_database(&args.mover.store, async |db| {
        Ok(db.rollback_alias(&args.name, &args.alias, &actor, args.mover.reason.as_deref()).await?)
    })?;
    let target = RolloutTarget::Alias { model: args.name.clone(), alias: args.alias.clone() };
    if args.mover.format == Format::Table {
        outln!("{}", describe_move(&moved));
    }
    let (outcome, rollout) = args.mover.wait.wait(&args.mover.store, &target, args.mover.format)?;
    if args.mover.format == Format::Json {
        let mut value = serde_json::to_value(&moved)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("rollout".into(), rollout);
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(outcome)
}

/// The gate verdict of a move, from its stored report.
fn gate_summary(m: &AliasMove) -> String {
    let Some(text) = &m.gate_report else { return "-".to_owned() };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(text) else { return "?".to_owned() };
    let failed: Vec<String> = report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["passed"] == json!(false))
                .map(|c| format!("{}:{}", c["gate"].as_str().unwrap_or(""), c["name"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if failed.is_empty() { "passed".to_owned() } else { format!("failed ({})", failed.join(", ")) }
}

pub fn history(args: HistoryArgs) -> Result<crate::Outcome> {
    let moves = with_database(&args.store, async |db| Ok(db.alias_history(&args.name, args.alias.as_deref()).await?))?;
    if args.format == Format::Json {
        let rows: Vec<serde_json::Value> = moves
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    let report = m.gate_report.as_deref().and_then(|t| serde_json::from_str(t).ok());
                    o.insert("gate_report".into(), report.unwrap_or(serde_json::Value::Null));
                    o.insert("time_utc".into(), json!(utc_timestamp(m.time)));
                }
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(crate::Outcome::Success);
    }
    if moves.is_empty() {
        outln!("no alias of '{}' has moved", args.name);
        return Ok(crate::Outcome::Success);
    }
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let rows: Vec<Vec<String>> = moves
        .iter()
        .map(|m| {
            vec![
                utc_seconds(m.time),
                m.alias.clone(),
                m.kind.as_str().to_owned(),
                show(&m.from_version),
                show(&m.to_version),
                m.actor.clone(),
                gate_summary(m),
                m.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    crate::print_table(&["TIME (UTC)", "ALIAS", "KIND", "FROM", "TO", "BY", "GATES", "REASON"], &rows);
    Ok(crate::Outcome::Success)
}

pub fn set_policy(args: SetPolicyArgs) -> Result<crate::Outcome> {
    let text = std::fs::read_to_string(&args.policy).with_context(|| format!("reading {}", args.policy.display()))?;
    GatePolicy::from_yaml(&text, &args.policy.display().to_string())?;
    with_database(&args.store, async |db| {
        Ok(db.set_registered_model_tag(&args.name, &KeyValue::new(POLICY_TAG, text)).await?)
    })?;
    outln!("stored the gate policy of '{}' ({})", args.name, args.policy.display());
    Ok(crate::Outcome::Success)
}
