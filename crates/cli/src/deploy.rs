//! `shipyard deploy NAME --model URI [--canary URI --weight W | --ab URI=W ...] [--shadow URI]`
//! and `shipyard deploy list | show | status | delete`: deployments, stored for `shipyard server`
//! and `shipyard serve --deployment NAME` replicas, which apply a change within their poll
//! interval; `deploy` waits until every live one has (`--no-wait`, `--timeout`). With
//! `--tracking-uri http(s)://...` the server makes the change, with the caller's permissions.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use shipyard_core::deployment::{Arm, Deployment, DeploymentSpec, ModelRef, StickyKey};
use shipyard_core::entities::utc_seconds;
use shipyard_runtime::fetch::ModelUri;
use shipyard_store::Database;
use shipyard_store::rollout::RolloutTarget;

use crate::Format;
use crate::client::Server;
use crate::datasets::{DatasetStoreArgs, block_on, with_database};
use crate::rollout::WaitArgs;

/// The canary's share when `--weight` is not given.
const DEFAULT_CANARY_WEIGHT: u32 = 10;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployCommand {
    #[command(subcommand)]
    action: Option<DeployAction>,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Subcommand)]
enum DeployAction {
    /// Every deployment.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// One deployment, with the versions its aliases point at now.
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Whether every serving process has applied the deployment's current revision: each
    /// process, the revision it serves, its versions' states (loading, ready, failed with the
    /// error) and its heartbeat.
    Status {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Set the canary's share of requests (the primary keeps the rest); 0 sends every request
    /// to the primary (what a monitor's zero_canary action does).
    SetWeight {
        name: String,
        /// The canary's share, in percent.
        #[arg(long)]
        weight: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// End a canary: keep only the primary arm, with every request.
    EndCanary {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Stop serving a deployment.
    Delete {
        name: String,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
}

/// Creates or changes a deployment.
#[derive(Args)]
pub struct CreateArgs {
    /// The deployment's name: it is served at /predict/NAME and /v2/models/NAME/infer.
    #[arg(required = true)]
    name: Option<String>,
    /// The primary model: models:/NAME@ALIAS (follows the alias) or models:/NAME/VERSION.
    #[arg(long, required_unless_present = "ab", conflicts_with = "ab")]
    model: Option<String>,
    /// A challenger that gets --weight percent of the requests.
    #[arg(long, requires = "model")]
    canary: Option<String>,
    /// The canary's share of requests, in percent (default 10).
    #[arg(long, requires = "canary")]
    weight: Option<u32>,
    /// An A/B arm, URI=PERCENT (repeat for each arm; the percents must sum to 100).
    #[arg(long, value_name = "URI=PERCENT")]
    ab: Vec<String>,
    /// A model that gets a copy of every request; its answers are logged, never returned.
    #[arg(long)]
    shadow: Option<String>,
    /// Keep each client on one arm by this request header (e.g. x-user-id).
    #[arg(long, conflicts_with = "sticky_field")]
    sticky_header: Option<String>,
    /// Keep each client on one arm by this body field (top level for /predict, under `params`
    /// for /invocations, under `parameters` for /v2).
    #[arg(long)]
    sticky_field: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

/// A registered version reference from a model URI.
fn model_ref(uri: &str) -> Result<ModelRef> {
    match ModelUri::parse(uri)? {
        ModelUri::Version { name, version } => Ok(ModelRef::version(&name, &version)),
        ModelUri::Alias { name, alias } => Ok(ModelRef::alias(&name, &alias)),
        _ => bail!("'{uri}': a deployment serves registered models: use models:/NAME@ALIAS or models:/NAME/VERSION"),
    }
}

fn spec_of(args: &CreateArgs) -> Result<DeploymentSpec> {
    let mut arms = Vec::new();
    if let Some(model) = &args.model {
        let weight = match &args.canary {
            Some(_) => args.weight.unwrap_or(DEFAULT_CANARY_WEIGHT),
            None => 0,
        };
        if weight > 100 {
            bail!("--weight is a percent: 0 to 100, got {weight}");
        }
        arms.push(Arm { target: model_ref(model)?, weight: 100 - weight });
        if let Some(canary) = &args.canary {
            arms.push(Arm { target: model_ref(canary)?, weight });
        }
    }
    for arm in &args.ab {
        let (uri, weight) =
            arm.rsplit_once('=').ok_or_else(|| anyhow!("--ab '{arm}': write URI=PERCENT, e.g. models:/churn/3=50"))?;
        let weight: u32 =
            weight.trim().parse().map_err(|_| anyhow!("--ab '{arm}': the percent '{weight}' is not a whole number"))?;
        arms.push(Arm { target: model_ref(uri.trim())?, weight });
    }
    let sticky = match (&args.sticky_header, &args.sticky_field) {
        (Some(h), _) => Some(StickyKey::Header(h.trim().to_ascii_lowercase())),
        (None, Some(f)) => Some(StickyKey::Field(f.trim().to_owned())),
        (None, None) => None,
    };
    let spec = DeploymentSpec { arms, shadow: args.shadow.as_deref().map(model_ref).transpose()?, sticky };
    spec.validate()?;
    Ok(spec)
}

/// A deployment as changed or read, with the version each reference names now.
type Shown = (Deployment, Vec<String>);

/// Where deployments are changed: the store (the same functions a server's routes call), or
/// the server the tracking URI names.
enum Deployments {
    Store(DatasetStoreArgs),
    Server(Server),
}

impl Deployments {
    fn of(store: &DatasetStoreArgs) -> Result<Deployments> {
        Ok(match store.server()? {
            Some(server) => Deployments::Server(server),
            None => Deployments::Store(store.clone()),
        })
    }

    /// Runs a change on the store, or posts `body` to the server's `route`.
    fn change(
        &self,
        route: &str,
        body: serde_json::Value,
        local: impl AsyncFnOnce(&Database) -> shipyard_core::Result<Deployment>,
    ) -> Result<Shown> {
        match self {
            Deployments::Server(server) => {
                let answer = block_on(server.post(&format!("api/shipyard/deployments/{route}"), &body))?;
                shown(&answer)
            }
            Deployments::Store(store) => with_database(store, async |db| {
                let d = local(db).await?;
                let versions = db.deployment_versions(&d.spec).await;
                Ok((d, versions))
            }),
        }
    }

    fn show(&self, name: &str) -> Result<Shown> {
        match self {
            Deployments::Server(server) => {
                shown(&block_on(server.get("api/shipyard/deployments/get", &[("name", name)]))?)
            }
            Deployments::Store(store) => with_database(store, async |db| {
                let d = db.get_deployment(name).await?;
                let versions = db.deployment_versions(&d.spec).await;
                Ok((d, versions))
            }),
        }
    }

    fn list(&self) -> Result<Vec<Deployment>> {
        match self {
            Deployments::Server(server) => {
                let answer = block_on(server.get("api/shipyard/deployments/list", &[]))?;
                Ok(serde_json::from_value(answer["deployments"].clone()).context("reading the server's deployments")?)
            }
            Deployments::Store(store) => with_database(store, async |db| Ok(db.list_deployments().await?)),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        match self {
            Deployments::Server(server) => {
                block_on(server.post("api/shipyard/deployments/delete", &json!({ "name": name })))?;
                Ok(())
            }
            Deployments::Store(store) => with_database(store, async |db| Ok(db.delete_deployment(name).await?)),
        }
    }
}

/// A deployment and its versions from a server's answer.
fn shown(answer: &serde_json::Value) -> Result<Shown> {
    let d: Deployment =
        serde_json::from_value(answer["deployment"].clone()).context("reading the server's deployment")?;
    let versions = serde_json::from_value(answer["resolved_versions"].clone()).unwrap_or_default();
    Ok((d, versions))
}

pub fn run(cmd: DeployCommand) -> Result<crate::Outcome> {
    match cmd.action {
        Some(DeployAction::List { format, store }) => list(format, &store),
        Some(DeployAction::Show { name, format, store }) => {
            let (deployment, versions) = Deployments::of(&store)?.show(&name)?;
            print_deployment(&deployment, &versions, format)?;
            Ok(crate::Outcome::Success)
        }
        Some(DeployAction::Status { name, format, store }) => crate::rollout::show_status(&name, format, &store),
        Some(DeployAction::Delete { name, store }) => {
            Deployments::of(&store)?.delete(&name)?;
            outln!("deleted deployment '{name}'");
            Ok(crate::Outcome::Success)
        }
        Some(DeployAction::SetWeight { name, weight, format, wait, store }) => {
            let actor = crate::promote::actor(None);
            let body = json!({"name": name, "weight": weight, "actor": actor});
            let changed = Deployments::of(&store)?
                .change("set-weight", body, async |db| db.set_canary_weight(&name, weight, &actor).await)?;
            show_change(&changed, format, &wait, &store)
        }
        Some(DeployAction::EndCanary { name, format, wait, store }) => {
            let actor = crate::promote::actor(None);
            let body = json!({"name": name, "actor": actor});
            let changed =
                Deployments::of(&store)?.change("end-canary", body, async |db| db.end_canary(&name, &actor).await)?;
            show_change(&changed, format, &wait, &store)
        }
        None => create(cmd.create),
    }
}

/// Prints a changed deployment with the versions it resolves to, then waits for its rollout.
fn show_change(changed: &Shown, format: Format, wait: &WaitArgs, store: &DatasetStoreArgs) -> Result<crate::Outcome> {
    let (deployment, versions) = changed;
    let target = RolloutTarget::Deployment(deployment.name.clone());
    if format == Format::Json {
        let (outcome, rollout) = wait.wait(store, &target, format)?;
        let mut value = serde_json::to_value(deployment)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("resolved_versions".into(), json!(versions));
            o.insert("rollout".into(), rollout);
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(outcome);
    }
    print_deployment(deployment, versions, format)?;
    Ok(wait.wait(store, &target, format)?.0)
}

fn create(args: CreateArgs) -> Result<crate::Outcome> {
    let name = args.name.clone().ok_or_else(|| anyhow!("give the deployment's name"))?;
    let spec = spec_of(&args)?;
    let actor = crate::promote::actor(None);
    let body = json!({"name": name, "spec": spec, "actor": actor});
    // Every model it names must exist (an alias must be set) before it is stored.
    let changed =
        Deployments::of(&args.store)?.change("create", body, async |db| db.deploy(&name, &spec, &actor).await)?;
    show_change(&changed, args.format, &args.wait, &args.store)
}

fn print_deployment(d: &Deployment, versions: &[String], format: Format) -> Result<()> {
    if format == Format::Json {
        let mut value = serde_json::to_value(d)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("resolved_versions".into(), json!(versions));
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let by = d.updated_by.as_deref().map(|u| format!(" by {u}")).unwrap_or_default();
    outln!("deployment {} (revision {}, updated {}{by})", d.name, d.revision, utc_seconds(d.last_updated_timestamp));
    for (i, arm) in d.spec.arms.iter().enumerate() {
        let now = versions.get(i).map(|v| format!(" -> version {v}")).unwrap_or_default();
        outln!("  {:>3}%  {}{now}", arm.weight, arm.target);
    }
    if let Some(shadow) = &d.spec.shadow {
        let now = versions.get(d.spec.arms.len()).map(|v| format!(" -> version {v}")).unwrap_or_default();
        outln!("  shadow {shadow}{now}");
    }
    match &d.spec.sticky {
        Some(StickyKey::Header(h)) => outln!("  sticky by header {h}"),
        Some(StickyKey::Field(f)) => outln!("  sticky by field {f}"),
        None => {}
    }
    outln!("  served at /predict/{0}, /v2/models/{0}/infer", d.name);
    Ok(())
}

fn list(format: Format, store: &DatasetStoreArgs) -> Result<crate::Outcome> {
    let all = Deployments::of(store)?.list()?;
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(crate::Outcome::Success);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|d| {
            let arms: Vec<String> = d.spec.arms.iter().map(|a| format!("{}={}%", a.target, a.weight)).collect();
            vec![
                d.name.clone(),
                d.revision.to_string(),
                arms.join(" "),
                d.spec.shadow.as_ref().map_or("-".to_owned(), ToString::to_string),
                utc_seconds(d.last_updated_timestamp),
            ]
        })
        .collect();
    crate::print_table(&["NAME", "REVISION", "ARMS", "SHADOW", "UPDATED (UTC)"], &rows);
    Ok(crate::Outcome::Success)
}
