//! `shipyard models validate | promote | rollback | history | set-policy`: promotion gates and
//! alias moves (`docs/promotion.md`).
//!
//! The flags become a [`GateRequest`] / [`PromoteRequest`]; the work (gathering the evidence,
//! judging, storing the report, moving the alias) is [`shipyard_release::Releaser`]'s, the same
//! code the web UI's promote form calls. Rollback is the store's
//! [`Database::rollback_alias`](shipyard_store::Database::rollback_alias). This file parses,
//! waits for the rollout and prints.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use shipyard_core::entities::{utc_seconds, utc_timestamp};
use shipyard_promotion::GatePolicy;
use shipyard_release::{DEFAULT_ALIAS, GateRequest, PYTHON_GATE_TIMEOUT, PromoteRequest, Promotion, Releaser};
use shipyard_runtime::EngineChoice;
use shipyard_runtime::fetch::ModelUri;
use shipyard_store::ArtifactStore;
use shipyard_store::promotion::AliasMove;

use crate::Format;
use crate::client::Server;
use crate::data::ReadArgs;
use crate::datasets::{DatasetStoreArgs, block_on, with_database};
use crate::rollout::WaitArgs;
use shipyard_store::rollout::RolloutTarget;

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

impl GateArgs {
    /// The gate run these flags ask for: the policy file read and checked here.
    fn request(&self, name: &str, version: &str, alias: &str) -> Result<GateRequest> {
        let policy = match &self.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Some(GatePolicy::from_yaml(&text, &path.display().to_string())?)
            }
            None => None,
        };
        Ok(GateRequest {
            policy,
            data: self.data.as_ref().map(|d| d.display().to_string()),
            csv: self.read.options()?,
            ..GateRequest::stored(name, version, alias)
        })
    }
}

impl GateArgs {
    /// The JSON a server's validate / promote route takes: the policy file's text (checked
    /// there) and the evaluation rows as a dataset version (a local file is uploaded first).
    fn remote_body(&self, server: &Server, name: &str, version: &str, alias: &str) -> Result<serde_json::Value> {
        let policy = match &self.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Some(policy_for_server(server, &text, &path.display().to_string(), &self.read)?)
            }
            None => None,
        };
        let data = match &self.data {
            Some(path) => Some(crate::datasets::remote_table(server, path, &self.read)?),
            None => None,
        };
        Ok(json!({"name": name, "version": version, "alias": alias, "policy": policy, "data": data}))
    }
}

/// A policy's text for a server: the local tables it names (evaluation data, drift reference)
/// added to the server as dataset versions and named by them, since the server cannot read
/// the client's files.
fn policy_for_server(server: &Server, text: &str, source: &str, read: &crate::data::ReadArgs) -> Result<String> {
    let mut policy = GatePolicy::from_yaml(text, source)?;
    let local = |t: &str| !t.starts_with("dataset:") && t != "training";
    let mut changed = false;
    if let Some(data) = policy.evaluation.as_mut().and_then(|e| e.data.as_mut()).filter(|d| local(d)) {
        *data = crate::datasets::remote_table(server, std::path::Path::new(data.as_str()), read)?;
        changed = true;
    }
    if let Some(reference) = policy.drift.as_mut().and_then(|d| d.reference.as_mut()).filter(|r| local(r)) {
        *reference = crate::datasets::remote_table(server, std::path::Path::new(reference.as_str()), read)?;
        changed = true;
    }
    Ok(if changed { policy.to_yaml()? } else { text.to_owned() })
}

/// Runs `work` with a [`Releaser`] on the store, on a runtime that lives as long as the models
/// it loads (a Python model's workers run on it).
fn with_releaser<T>(
    store: &DatasetStoreArgs,
    gates: &GateArgs,
    work: impl AsyncFnOnce(&Releaser) -> Result<T>,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let releaser = Releaser {
            db: store.database().await?,
            artifacts: ArtifactStore::open(&store.destination()).await?,
            cache: store.cache_dir(),
            loader: gates.python.loader(EngineChoice::Auto, PYTHON_GATE_TIMEOUT),
            local_paths: true,
        };
        let outcome = work(&releaser).await;
        releaser.db.close().await;
        outcome
    })
}

/// A stored gate run as the server sends it (and as the local command builds it): the report
/// as JSON, its table, where it is stored.
struct Shown {
    report: serde_json::Value,
    table: String,
    location: Option<String>,
}

impl Shown {
    fn local(v: &shipyard_release::Validation) -> Shown {
        Shown {
            report: serde_json::to_value(&v.report).unwrap_or_default(),
            table: v.report.table(),
            location: v.report_uri.clone(),
        }
    }

    fn remote(answer: &serde_json::Value) -> Option<Shown> {
        answer.get("report").filter(|r| !r.is_null()).map(|report| Shown {
            report: report.clone(),
            table: answer["table"].as_str().unwrap_or_default().to_owned(),
            location: answer["report_uri"].as_str().map(str::to_owned),
        })
    }

    fn passed(&self) -> bool {
        self.report["passed"].as_bool().unwrap_or(false)
    }

    /// The failed checks, `gate:name`.
    fn failures(&self) -> Vec<String> {
        failed_checks(&self.report)
    }
}

fn print_report(shown: &Shown, format: Format) {
    match format {
        Format::Json => {
            let mut value = shown.report.clone();
            if let Some(o) = value.as_object_mut() {
                o.insert("report_uri".into(), json!(shown.location));
            }
            outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        Format::Table => {
            out!("{}", shown.table);
            if let Some(l) = &shown.location {
                outln!("report: {l}");
            }
        }
    }
}

pub fn validate(args: ValidateArgs) -> Result<crate::Outcome> {
    let (name, version) = parse_version_uri(&args.model)?;
    let shown = match args.store.server()? {
        Some(server) => {
            let body = args.gates.remote_body(&server, &name, &version, &args.alias)?;
            let answer = block_on(server.long_call("api/shipyard/models/validate", &body, |_| {}))?;
            Shown::remote(&answer).ok_or_else(|| anyhow::anyhow!("the server answered without a report"))?
        }
        None => {
            let request = args.gates.request(&name, &version, &args.alias)?;
            let v = with_releaser(&args.store, &args.gates, async |r| Ok(r.validate(&request).await?))?;
            Shown::local(&v)
        }
    };
    print_report(&shown, args.format);
    Ok(if shown.passed() { crate::Outcome::Success } else { crate::Outcome::ChecksFailed })
}

/// What a promotion did, from the releaser or a server's answer.
enum Promoted {
    Unchanged,
    Blocked { shown: Shown, stays_at: Option<String> },
    Moved { alias_move: AliasMove, shown: Option<Shown> },
}

fn promote_locally(args: &PromoteArgs) -> Result<Promoted> {
    let request = PromoteRequest {
        gates: args.gates.request(&args.name, &args.version, &args.alias)?,
        force: args.force,
        actor: actor(args.mover.actor.clone()),
        reason: args.mover.reason.clone(),
    };
    Ok(match with_releaser(&args.mover.store, &args.gates, async |r| Ok(r.promote(request).await?))? {
        Promotion::Unchanged => Promoted::Unchanged,
        Promotion::Blocked { validation, stays_at } => Promoted::Blocked { shown: Shown::local(&validation), stays_at },
        Promotion::Moved { alias_move, validation } => {
            Promoted::Moved { alias_move, shown: validation.as_ref().map(Shown::local) }
        }
    })
}

fn promote_remotely(args: &PromoteArgs, server: &Server) -> Result<Promoted> {
    let mut body = args.gates.remote_body(server, &args.name, &args.version, &args.alias)?;
    body["force"] = json!(args.force);
    body["reason"] = json!(args.mover.reason);
    body["actor"] = json!(actor(args.mover.actor.clone()));
    let answer = block_on(server.long_call("api/shipyard/models/promote", &body, |_| {}))?;
    Ok(match answer["outcome"].as_str() {
        Some("unchanged") => Promoted::Unchanged,
        Some("blocked") => Promoted::Blocked {
            shown: Shown::remote(&answer).ok_or_else(|| anyhow::anyhow!("the server answered without a report"))?,
            stays_at: answer["stays_at"].as_str().map(str::to_owned),
        },
        Some("moved") => Promoted::Moved {
            alias_move: serde_json::from_value(answer["move"].clone()).context("reading the server's alias move")?,
            shown: Shown::remote(&answer),
        },
        other => bail!("the server answered an unknown promotion outcome {other:?}"),
    })
}

pub fn promote(args: PromoteArgs) -> Result<crate::Outcome> {
    let (name, version) = (args.name.clone(), args.version.clone());
    let format = args.mover.format;
    let promoted = match args.mover.store.server()? {
        Some(server) => promote_remotely(&args, &server)?,
        None => promote_locally(&args)?,
    };
    let (moved, validation) = match promoted {
        Promoted::Unchanged => {
            outln!("{name}@{} already points at version {version}: nothing to move", args.alias);
            return Ok(crate::Outcome::Success);
        }
        Promoted::Blocked { shown, stays_at } => {
            print_report(&shown, format);
            let failures = shown.failures();
            eprintln!(
                "not promoted: {} gate check(s) failed ({}); {name}@{} stays at {}. Use --force --reason TEXT to \
                     override.",
                failures.len(),
                failures.join(", "),
                args.alias,
                stays_at.as_deref().map_or("no version".to_owned(), |v| format!("version {v}"))
            );
            return Ok(crate::Outcome::ChecksFailed);
        }
        Promoted::Moved { alias_move, shown } => (alias_move, shown),
    };
    let report = validation.as_ref().map(|v| &v.report);
    let location = validation.as_ref().and_then(|v| v.location.as_deref());
    if format == Format::Table {
        if let Some(v) = &validation {
            out!("{}", v.table);
        }
        outln!("{}", describe_move(&moved));
    }
    let target = RolloutTarget::Alias { model: name, alias: args.alias.clone() };
    let (outcome, rollout) = args.mover.wait.wait(&args.mover.store, &target, format)?;
    if format == Format::Json {
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
    let moved: AliasMove = match args.mover.store.server()? {
        Some(server) => {
            let body = json!({"name": args.name, "alias": args.alias, "reason": args.mover.reason, "actor": actor});
            let answer = block_on(server.post("api/shipyard/models/rollback", &body))?;
            serde_json::from_value(answer["move"].clone()).context("reading the server's alias move")?
        }
        None => with_database(&args.mover.store, async |db| {
            Ok(db.rollback_alias(&args.name, &args.alias, &actor, args.mover.reason.as_deref()).await?)
        })?,
    };
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

/// The failed checks of a gate report (its JSON form), `gate:name`.
fn failed_checks(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["passed"] == json!(false))
                .map(|c| format!("{}:{}", c["gate"].as_str().unwrap_or(""), c["name"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// The gate verdict of a move, from its stored report.
fn gate_summary(m: &AliasMove) -> String {
    let Some(text) = &m.gate_report else { return "-".to_owned() };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(text) else { return "?".to_owned() };
    let failed = failed_checks(&report);
    if failed.is_empty() { "passed".to_owned() } else { format!("failed ({})", failed.join(", ")) }
}

pub fn history(args: HistoryArgs) -> Result<crate::Outcome> {
    let moves: Vec<AliasMove> = match args.store.server()? {
        Some(server) => {
            let mut query = vec![("name", args.name.as_str())];
            if let Some(alias) = &args.alias {
                query.push(("alias", alias.as_str()));
            }
            let answer = block_on(server.get("api/shipyard/models/history", &query))?;
            serde_json::from_value(answer["moves"].clone()).context("reading the server's alias history")?
        }
        None => with_database(&args.store, async |db| Ok(db.alias_history(&args.name, args.alias.as_deref()).await?))?,
    };
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
    let source = args.policy.display().to_string();
    match args.store.server()? {
        Some(server) => {
            let text = policy_for_server(&server, &text, &source, &crate::data::ReadArgs::default())?;
            let body = json!({"name": args.name, "policy": text, "source": source});
            block_on(server.post("api/shipyard/models/set-policy", &body))?;
        }
        None => with_database(&args.store, async |db| {
            Ok(shipyard_release::store_policy(db, &args.name, &text, &source).await.map(drop)?)
        })?,
    }
    outln!("stored the gate policy of '{}' ({})", args.name, args.policy.display());
    Ok(crate::Outcome::Success)
}
