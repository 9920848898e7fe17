//! This serving process's report of what it has applied (`shipyard_core::rollout`), kept by
//! the catalog as it syncs and written to the store (or through a tracking server) on every
//! change and at least every [`HEARTBEAT`], so that `shipyard deploy`, `models promote` and
//! `rollback` can wait until a change is live here, and name this process if it is not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shipyard_core::entities::now_millis;
use shipyard_core::rollout::{AliasModelState, DeploymentScope, DeploymentState, ProcessReport};
use tokio::sync::Notify;

/// How often a process reports even when nothing changed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The report as it stands, and a signal that it changed.
pub struct StatusBoard {
    report: Mutex<ProcessReport>,
    changed: Notify,
}

impl StatusBoard {
    /// A new process's board: nothing read yet.
    pub fn new(kind: &str, alias: Option<&str>, scope: DeploymentScope) -> Arc<StatusBoard> {
        Arc::new(StatusBoard {
            report: Mutex::new(ProcessReport {
                id: uuid::Uuid::new_v4().to_string(),
                kind: kind.to_owned(),
                host: host_name(),
                pid: std::process::id(),
                address: None,
                started: now_millis(),
                heartbeat: 0,
                heartbeat_interval_ms: i64::try_from(HEARTBEAT.as_millis()).unwrap_or(1000),
                alias: alias.map(str::to_owned),
                scope,
                models: Vec::new(),
                deployments: Vec::new(),
            }),
            changed: Notify::new(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut ProcessReport) -> T) -> T {
        // A panic while holding this lock cannot leave the report half-written in a way that
        // matters: it is replaced whole on the next update.
        let mut guard = self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn id(&self) -> String {
        self.with(|r| r.id.clone())
    }

    /// Where the process listens, once bound.
    pub fn set_address(&self, address: String) {
        self.with(|r| r.address = Some(address));
        self.changed.notify_one();
    }

    /// Replaces what the process has; reports at once if it changed.
    pub fn update(&self, models: Vec<AliasModelState>, deployments: Vec<DeploymentState>) {
        let changed = self.with(|r| {
            if r.models == models && r.deployments == deployments {
                return false;
            }
            r.models = models;
            r.deployments = deployments;
            true
        });
        if changed {
            self.changed.notify_one();
        }
    }

    pub fn snapshot(&self) -> ProcessReport {
        self.with(|r| r.clone())
    }

    /// Resolves at the next change, or after `HEARTBEAT`.
    pub async fn next_report(&self) {
        tokio::select! {
            () = self.changed.notified() => {},
            () = tokio::time::sleep(HEARTBEAT) => {},
        }
    }
}

/// This machine's name, for reports.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
