//! Rollout status in the store: each serving process's report (one row per process, written on
//! every heartbeat), what a change should look like once live (read from the deployments and
//! aliases), and the wait of a command until it is (`shipyard_core::rollout` judges).

use std::time::{Duration, Instant};

use shipyard_core::entities::now_millis;
use shipyard_core::rollout::{self, Expectation, ProcessReport, RolloutStatus};
use shipyard_core::{Error, Result};

use crate::db::Database;

/// A report silent this long is deleted by the next report written: a killed process stays
/// visible (and named as stale) for a while, not forever.
const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;

/// How often a waiting command reads the reports again.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// A change whose rollout can be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutTarget {
    /// A deployment's current revision, its references resolved as they are now.
    Deployment(String),
    /// An alias's current version: the models served under it, and every deployment that
    /// follows it.
    Alias { model: String, alias: String },
}

impl std::fmt::Display for RolloutTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RolloutTarget::Deployment(name) => write!(f, "deployment '{name}'"),
            RolloutTarget::Alias { model, alias } => write!(f, "models:/{model}@{alias}"),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    /// The last status read: `complete` unless the wait timed out.
    pub status: RolloutStatus,
    /// How long the wait took.
    pub waited: Duration,
}

impl Database {
    /// Records a serving process's report, stamped with this process's clock, and forgets
    /// processes silent for ten minutes.
    pub async fn report_serving_process(&self, report: &ProcessReport) -> Result<()> {
        let mut report = report.clone();
        let now = now_millis();
        report.heartbeat = now;
        let text = serde_json::to_string(&report).map_err(|e| Error::Internal(e.to_string()))?;
        let id = report.id;
        self.write(move |c| {
            Box::pin(async move {
                let upsert = c.stmt(
                    "INSERT INTO serving_processes (id, heartbeat, report) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat, report = excluded.report",
                    [id.as_str().into(), now.into(), text.into()],
                );
                c.execute(upsert).await?;
                let forget =
                    c.stmt("DELETE FROM serving_processes WHERE heartbeat < $1", [(now - FORGET_AFTER_MS).into()]);
                c.execute(forget).await?;
                Ok(())
            })
        })
        .await
    }

    /// Removes a process's report (it stopped cleanly: nothing to wait for).
    pub async fn remove_serving_process(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                c.execute(c.stmt("DELETE FROM serving_processes WHERE id = $1", [id.as_str().into()])).await?;
                Ok(())
            })
        })
        .await
    }

    /// Every serving process's last report, with its heartbeat.
    pub async fn serving_processes(&self) -> Result<Vec<ProcessReport>> {
        self.read(move |c| {
            Box::pin(async move {
                let rows = c.fetch_all(c.stmt("SELECT * FROM serving_processes ORDER BY id", [])).await?;
                let mut reports = Vec::with_capacity(rows.len());
                for row in rows {
                    let text: String = row.get("report")?;
                    let mut report: ProcessReport = serde_json::from_str(&text)
                        .map_err(|e| Error::Internal(format!("an unreadable serving process report: {e}")))?;
                    report.heartbeat = row.get("heartbeat")?;
                    reports.push(report);
                }
                Ok(reports)
            })
        })
        .await
    }

    /// What `target` looks like once live, as the store holds it now.
    pub async fn rollout_expectations(&self, target: &RolloutTarget) -> Result<Vec<Expectation>> {
        match target {
            RolloutTarget::Deployment(name) => Ok(vec![self.deployment_expectation(name).await?]),
            RolloutTarget::Alias { model, alias } => {
                let version = self.current_alias_version(model, alias).await?;
                let mut expected =
                    vec![Expectation::AliasModel { model: model.clone(), alias: alias.clone(), version }];
                for d in self.list_deployments().await? {
                    if d.spec.refs().any(|r| r.model == *model && r.alias.as_deref() == Some(alias.as_str())) {
                        expected.push(self.deployment_expectation(&d.name).await?);
                    }
                }
                Ok(expected)
            }
        }
    }

    async fn deployment_expectation(&self, name: &str) -> Result<Expectation> {
        let d = self.get_deployment(name).await?;
        let mut versions = Vec::new();
        for r in d.spec.refs() {
            versions.push(self.resolve_model_ref(r).await?);
        }
        Ok(Expectation::Deployment { name: d.name, revision: d.revision, versions })
    }

    /// Whether `target` is live on every serving process that serves it.
    pub async fn rollout_status(&self, target: &RolloutTarget) -> Result<RolloutStatus> {
        let expected = self.rollout_expectations(target).await?;
        let reports = self.serving_processes().await?;
        Ok(rollout::judge(expected, reports, now_millis()))
    }

    /// Waits until `target` is live everywhere or `timeout` passes. The expectation is read
    /// once, at the start: the change the caller just made.
    pub async fn wait_for_rollout(&self, target: &RolloutTarget, timeout: Duration) -> Result<WaitOutcome> {
        let started = Instant::now();
        let expected = self.rollout_expectations(target).await?;
        loop {
            let reports = self.serving_processes().await?;
            let status = rollout::judge(expected.clone(), reports, now_millis());
            if status.complete || started.elapsed() >= timeout {
                return Ok(WaitOutcome { status, waited: started.elapsed() });
            }
            tokio::time::sleep(WAIT_POLL.min(timeout.saturating_sub(started.elapsed()))).await;
        }
    }
}
