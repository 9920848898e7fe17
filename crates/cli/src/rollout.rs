//! Rollouts at the command line: the `--no-wait` / `--timeout` flags that `deploy`,
//! `models promote` and `models rollback` share (wait until the change is live on every serving
//! process, or fail naming the ones that did not apply it and why), and `deploy status`.
//! The waiting and judging live in the store (`Database::wait_for_rollout`), reached directly or
//! through a server's `/api/shipyard/deployments/wait`; this renders.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use shipyard_core::rollout::{ProcessVerdict, RolloutStatus};
use shipyard_store::rollout::RolloutTarget;

use crate::datasets::{DatasetStoreArgs, block_on, with_database};
use crate::tracking::print_table;
use crate::{Format, Outcome};

/// Whether and how long a command waits for its change to be live.
#[derive(Args, Clone, Debug)]
pub struct WaitArgs {
    /// Return as soon as the store holds the change, without waiting for serving processes.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for every live serving process to apply the change; then exit 1 naming
    /// each process that did not, and why.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    timeout: f64,
}

impl WaitArgs {
    /// Waits as the flags say; what happened, as an outcome and (for `--format json`) a value.
    pub fn wait(&self, store: &DatasetStoreArgs, target: &RolloutTarget, format: Format) -> Result<(Outcome, Value)> {
        if self.no_wait {
            return Ok((Outcome::Success, json!({"waited": false})));
        }
        if !self.timeout.is_finite() || self.timeout < 0.0 {
            bail!("--timeout is a number of seconds, 0 or more; got {}", self.timeout);
        }
        let (status, seconds) = match store.server()? {
            Some(server) => block_on(async {
                let mut body = match target {
                    RolloutTarget::Deployment(name) => json!({"name": name}),
                    RolloutTarget::Alias { model, alias } => json!({"model": model, "alias": alias}),
                };
                body["timeout_seconds"] = json!(self.timeout);
                let answer = server.long_call("api/shipyard/deployments/wait", &body, |_| {}).await?;
                let status: RolloutStatus = serde_json::from_value(answer["status"].clone())?;
                Ok((status, answer["waited_seconds"].as_f64().unwrap_or(0.0)))
            })?,
            None => {
                let timeout = Duration::from_secs_f64(self.timeout);
                let waited = with_database(store, async |db| Ok(db.wait_for_rollout(target, timeout).await?))?;
                (waited.status, waited.waited.as_secs_f64())
            }
        };
        let status = &status;
        let value = json!({"waited": true, "seconds": seconds, "status": status});
        if format == Format::Json {
            if !status.complete {
                eprintln!("{}", not_live_message(target, status, seconds));
            }
        } else {
            if status.live == 0 {
                outln!("no serving process serves {target}: nothing to wait for (it applies when one starts)");
            } else if status.complete {
                outln!("live on {} serving process{} in {seconds:.2} s", status.live, plural(status.live));
            }
            for p in status.stale() {
                outln!("  not waited for: {} ({})", p.process, p.detail);
            }
            if !status.complete {
                eprintln!("{}", not_live_message(target, status, seconds));
            }
        }
        Ok((if status.complete { Outcome::Success } else { Outcome::ChecksFailed }, value))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// "not live after 5.0 s on 1 of 2 serving processes: ..." with one line per stuck process.
fn not_live_message(target: &RolloutTarget, status: &RolloutStatus, seconds: f64) -> String {
    let mut text = format!(
        "{target} is not live after {seconds:.1} s on {} of {} serving process{} (the store holds the change; \
         they keep serving what they served):",
        status.live - status.applied,
        status.live,
        plural(status.live)
    );
    for p in status.stuck() {
        text.push_str(&format!("\n  {}: {}", p.process, p.detail));
    }
    text
}

/// `shipyard deploy status NAME`: every serving process of the deployment and what it applied.
pub fn show_status(name: &str, format: Format, store: &DatasetStoreArgs) -> Result<Outcome> {
    let target = RolloutTarget::Deployment(name.to_owned());
    let status: RolloutStatus = match store.server()? {
        Some(server) => block_on(async {
            let answer = server.get("api/shipyard/deployments/status", &[("name", name)]).await?;
            Ok(serde_json::from_value(answer["status"].clone())?)
        })?,
        None => with_database(store, async |db| Ok(db.rollout_status(&target).await?))?,
    };
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(Outcome::Success);
    }
    let expected: Vec<String> = status
        .expected
        .iter()
        .map(|e| match e {
            shipyard_core::rollout::Expectation::Deployment { revision, versions, .. } => {
                let shown: Vec<&str> = versions.iter().map(|v| v.as_deref().unwrap_or("(unset)")).collect();
                format!("revision {revision}, versions {}", shown.join(", "))
            }
            shipyard_core::rollout::Expectation::AliasModel { model, alias, version } => {
                format!("{model}@{alias} -> {}", version.as_deref().unwrap_or("(unset)"))
            }
        })
        .collect();
    outln!("deployment {name}: {}", expected.join("; "));
    if status.processes.is_empty() {
        outln!("no serving process serves it");
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = status
        .processes
        .iter()
        .map(|p| {
            let serving = p
                .report
                .deployments
                .iter()
                .find(|d| d.name == name)
                .and_then(|d| d.serving_revision)
                .map_or("-".to_owned(), |r| r.to_string());
            let verdict = match p.verdict {
                ProcessVerdict::Applied => "applied",
                ProcessVerdict::Pending => "pending",
                ProcessVerdict::Failed => "FAILED",
                ProcessVerdict::Stale => "stale",
            };
            vec![
                p.process.clone(),
                serving,
                verdict.to_owned(),
                format!("{:.1}s ago", p.heartbeat_age_ms as f64 / 1000.0),
                p.detail.clone(),
            ]
        })
        .collect();
    print_table(&["PROCESS", "SERVING REVISION", "STATE", "HEARTBEAT", "DETAIL"], &rows);
    outln!(
        "{} of {} live process{} applied it{}",
        status.applied,
        status.live,
        plural(status.live),
        if status.complete { "" } else { ": rollout in progress or stuck" }
    );
    Ok(Outcome::Success)
}
