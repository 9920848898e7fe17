//! Rollouts: what each serving process has applied, and whether a change is live everywhere.
//!
//! A change to what is served (a deployment's policy, an alias moved by a promotion or a
//! rollback) is written to the store at once, and each serving process applies it at its next
//! poll, after loading any version it lacks. Every serving process therefore reports what it has
//! applied ([`ProcessReport`]: per deployment the revision read, whether it is what serves, and
//! each arm's version and load state; per model served under an alias the same), with a
//! heartbeat. A command that made a change states what it expects ([`Expectation`]) and
//! [`judge`] compares every live process's report with it, as `kubectl rollout status` does:
//! complete when every live process that serves the change has applied it with all its
//! versions ready; otherwise each process is named with where it is stuck (still reading,
//! loading, or failing to load with the loader's error). A process whose heartbeat is older
//! than [`STALE_HEARTBEATS`] of its own heartbeat intervals is not waited for, and is named.

use serde::{Deserialize, Serialize};

/// A process silent for this many of its heartbeat intervals is taken for gone.
pub const STALE_HEARTBEATS: i64 = 5;

/// Where a version is in a serving process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadState {
    /// Being fetched and compiled (or not yet tried).
    Loading,
    /// Loaded and warm: it can answer.
    Ready,
    /// The last load failed (the error says why); it is retried after a pause.
    Failed,
}

/// One version a process needs, and its state there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    /// Registered model name.
    pub model: String,
    /// The version the reference resolved to; `None` when its alias is not set.
    pub version: Option<String>,
    pub state: LoadState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A deployment as one process has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentState {
    pub name: String,
    /// The newest revision the process has read.
    pub revision: i64,
    /// Whether that revision, with `arms` resolved as shown, is what answers requests.
    pub applied: bool,
    /// The revision answering requests now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_revision: Option<i64>,
    /// The read revision's arms, then its shadow, in the policy's order.
    pub arms: Vec<VersionState>,
}

/// A model served under its name because an alias points at it (`shipyard server`'s
/// `production` models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasModelState {
    /// The version the alias points at, as last read, and its load state.
    #[serde(flatten)]
    pub wanted: VersionState,
    /// Whether `wanted` is the version answering requests.
    pub applied: bool,
}

/// Which deployments a process serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum DeploymentScope {
    All,
    Only(String),
    None,
}

/// What one serving process reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReport {
    /// Unique per process start.
    pub id: String,
    /// `server` or `replica`.
    pub kind: String,
    pub host: String,
    pub pid: u32,
    /// Where it listens, once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Milliseconds since the epoch.
    pub started: i64,
    /// When the report was last written (set by whoever stores it), milliseconds since the epoch.
    #[serde(default)]
    pub heartbeat: i64,
    /// How often it reports, in milliseconds.
    pub heartbeat_interval_ms: i64,
    /// The alias whose versions it serves under their model's name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub scope: DeploymentScope,
    #[serde(default)]
    pub models: Vec<AliasModelState>,
    #[serde(default)]
    pub deployments: Vec<DeploymentState>,
}

impl ProcessReport {
    /// "replica 3f2a… on host:8001 (pid 42)" for messages.
    pub fn describe(&self) -> String {
        let at = self.address.as_deref().map(|a| format!(" at {a}")).unwrap_or_default();
        format!("{} on {}{at} (pid {})", self.kind, self.host, self.pid)
    }

    fn serves_deployment(&self, name: &str) -> bool {
        match &self.scope {
            DeploymentScope::All => true,
            DeploymentScope::Only(n) => n == name,
            DeploymentScope::None => false,
        }
    }
}

/// What a change should look like once live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Expectation {
    /// Every process serving the deployment has applied `revision` (or later) with its
    /// references resolved to `versions` (arms, then the shadow).
    Deployment { name: String, revision: i64, versions: Vec<Option<String>> },
    /// Every process following `alias` serves `model` at `version` (`None`: not at all).
    AliasModel { model: String, alias: String, version: Option<String> },
}

impl Expectation {
    fn concerns(&self, p: &ProcessReport) -> bool {
        match self {
            Expectation::Deployment { name, .. } => p.serves_deployment(name),
            Expectation::AliasModel { alias, .. } => p.alias.as_deref() == Some(alias.as_str()),
        }
    }

    /// How far `p` is from this expectation.
    fn check(&self, p: &ProcessReport) -> Progress {
        match self {
            Expectation::Deployment { name, revision, versions } => {
                let Some(d) = p.deployments.iter().find(|d| d.name == *name) else {
                    return Progress::Pending(format!("has not read deployment '{name}' yet"));
                };
                if d.revision < *revision {
                    return Progress::Pending(format!(
                        "has read revision {} of '{name}', not yet revision {revision}",
                        d.revision
                    ));
                }
                let resolved: Vec<Option<String>> = d.arms.iter().map(|a| a.version.clone()).collect();
                if d.revision == *revision && resolved != *versions {
                    return Progress::Pending(format!(
                        "resolves '{name}' to {}, expected {}",
                        show_versions(
                            &d.arms.iter().map(|a| (a.model.as_str(), a.version.clone())).collect::<Vec<_>>()
                        ),
                        show_versions(
                            &d.arms.iter().map(|a| a.model.as_str()).zip(versions.iter().cloned()).collect::<Vec<_>>()
                        ),
                    ));
                }
                if d.applied {
                    return Progress::Applied;
                }
                arms_progress(&d.arms, &format!("deployment '{name}'"))
            }
            Expectation::AliasModel { model, alias, version } => {
                let m = p.models.iter().find(|m| m.wanted.model == *model);
                match (m, version) {
                    (None, None) => Progress::Applied,
                    (Some(m), None) => Progress::Pending(format!(
                        "still serves {model} version {} under '{alias}'",
                        m.wanted.version.as_deref().unwrap_or("-")
                    )),
                    (None, Some(v)) => Progress::Pending(format!("has not read '{model}@{alias}' -> version {v} yet")),
                    (Some(m), Some(v)) if m.wanted.version.as_deref() != Some(v.as_str()) => {
                        Progress::Pending(format!(
                            "has '{model}@{alias}' at version {}, not yet {v}",
                            m.wanted.version.as_deref().unwrap_or("-")
                        ))
                    }
                    (Some(m), Some(_)) if m.applied => Progress::Applied,
                    (Some(m), Some(_)) => arms_progress(std::slice::from_ref(&m.wanted), &format!("'{model}@{alias}'")),
                }
            }
        }
    }
}

fn show_versions(arms: &[(&str, Option<String>)]) -> String {
    let shown: Vec<String> =
        arms.iter().map(|(m, v)| format!("{m}/{}", v.as_deref().unwrap_or("(alias not set)"))).collect();
    shown.join(", ")
}

/// Where a not-yet-applied set of versions is stuck: a failed load beats a pending one.
fn arms_progress(arms: &[VersionState], what: &str) -> Progress {
    let failed: Vec<String> = arms
        .iter()
        .filter(|a| a.state == LoadState::Failed)
        .map(|a| {
            format!(
                "cannot load {}/{}: {}",
                a.model,
                a.version.as_deref().unwrap_or("-"),
                a.error.as_deref().unwrap_or("unknown error")
            )
        })
        .collect();
    if !failed.is_empty() {
        return Progress::Failed(failed.join("; "));
    }
    if let Some(unset) = arms.iter().find(|a| a.version.is_none()) {
        return Progress::Pending(format!("{what}: the alias of {} is not set", unset.model));
    }
    let loading: Vec<String> = arms
        .iter()
        .filter(|a| a.state != LoadState::Ready)
        .map(|a| format!("{}/{}", a.model, a.version.as_deref().unwrap_or("-")))
        .collect();
    if loading.is_empty() {
        Progress::Pending(format!("{what}: every version is loaded, the switch is due at the next sync"))
    } else {
        Progress::Pending(format!("{what}: loading {}", loading.join(", ")))
    }
}

enum Progress {
    Applied,
    Pending(String),
    Failed(String),
}

/// One process's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessVerdict {
    /// Serves the change with every version ready.
    Applied,
    /// Has not applied it yet (reading, loading, or switching).
    Pending,
    /// Cannot apply it: a version failed to load.
    Failed,
    /// Silent for too long: not waited for.
    Stale,
}

/// One serving process, judged against the expectations that concern it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub id: String,
    /// "server on host at 127.0.0.1:5000 (pid 42)".
    pub process: String,
    pub verdict: ProcessVerdict,
    /// Where it is stuck, or since when it is silent; empty when applied.
    pub detail: String,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
    /// What it reported.
    pub report: ProcessReport,
}

/// Whether a change is live on every serving process that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub expected: Vec<Expectation>,
    /// Every process the change concerns (stale ones included, and named).
    pub processes: Vec<ProcessStatus>,
    /// Live processes the change concerns.
    pub live: usize,
    /// Live processes that have applied it.
    pub applied: usize,
    /// Every live process concerned has applied it (vacuously true when none is alive).
    pub complete: bool,
}

impl RolloutStatus {
    /// Processes that are alive and not done, with why.
    pub fn stuck(&self) -> impl Iterator<Item = &ProcessStatus> {
        self.processes.iter().filter(|p| matches!(p.verdict, ProcessVerdict::Pending | ProcessVerdict::Failed))
    }

    /// Processes not waited for because they are silent.
    pub fn stale(&self) -> impl Iterator<Item = &ProcessStatus> {
        self.processes.iter().filter(|p| p.verdict == ProcessVerdict::Stale)
    }
}

/// Judges every process's report against `expected` at `now` (milliseconds since the epoch).
pub fn judge(expected: Vec<Expectation>, reports: Vec<ProcessReport>, now: i64) -> RolloutStatus {
    let mut processes = Vec::new();
    for report in reports {
        let concerned: Vec<&Expectation> = expected.iter().filter(|e| e.concerns(&report)).collect();
        if concerned.is_empty() {
            continue;
        }
        let age = (now - report.heartbeat).max(0);
        let (verdict, detail) = if age > STALE_HEARTBEATS * report.heartbeat_interval_ms.max(1) {
            (ProcessVerdict::Stale, format!("no heartbeat for {:.1} s: not waited for", age as f64 / 1000.0))
        } else {
            let mut verdict = ProcessVerdict::Applied;
            let mut details = Vec::new();
            for e in concerned {
                match e.check(&report) {
                    Progress::Applied => {}
                    Progress::Pending(d) => {
                        if verdict == ProcessVerdict::Applied {
                            verdict = ProcessVerdict::Pending;
                        }
                        details.push(d);
                    }
                    Progress::Failed(d) => {
                        verdict = ProcessVerdict::Failed;
                        details.push(d);
                    }
                }
            }
            (verdict, details.join("; "))
        };
        processes.push(ProcessStatus {
            id: report.id.clone(),
            process: report.describe(),
            verdict,
            detail,
            heartbeat_age_ms: age,
            report,
        });
    }
    let live = processes.iter().filter(|p| p.verdict != ProcessVerdict::Stale).count();
    let applied = processes.iter().filter(|p| p.verdict == ProcessVerdict::Applied).count();
    RolloutStatus { expected, processes, live, applied, complete: applied == live }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(model: &str, version: &str, state: LoadState) -> VersionState {
        VersionState { model: model.into(), version: Some(version.into()), state, error: None }
    }

    fn process(id: &str, heartbeat: i64, deployments: Vec<DeploymentState>) -> ProcessReport {
        ProcessReport {
            id: id.into(),
            kind: "replica".into(),
            host: "h".into(),
            pid: 1,
            address: None,
            started: 0,
            heartbeat,
            heartbeat_interval_ms: 1000,
            alias: Some("production".into()),
            scope: DeploymentScope::Only("api".into()),
            models: Vec::new(),
            deployments,
        }
    }

    fn deployment(revision: i64, applied: bool, arms: Vec<VersionState>) -> DeploymentState {
        DeploymentState { name: "api".into(), revision, applied, serving_revision: Some(1), arms }
    }

    fn expect(revision: i64) -> Vec<Expectation> {
        vec![Expectation::Deployment {
            name: "api".into(),
            revision,
            versions: vec![Some("1".into()), Some("2".into())],
        }]
    }

    #[test]
    fn complete_only_when_every_live_process_applied_it() {
        let done = process(
            "a",
            10_000,
            vec![deployment(2, true, vec![arm("m", "1", LoadState::Ready), arm("m", "2", LoadState::Ready)])],
        );
        let loading = process(
            "b",
            10_000,
            vec![deployment(2, false, vec![arm("m", "1", LoadState::Ready), arm("m", "2", LoadState::Loading)])],
        );
        let status = judge(expect(2), vec![done.clone(), loading], 10_500);
        assert!(!status.complete);
        assert_eq!((status.live, status.applied), (2, 1));
        let stuck: Vec<_> = status.stuck().collect();
        assert_eq!(stuck.len(), 1);
        assert!(stuck[0].detail.contains("loading m/2"), "{}", stuck[0].detail);
        assert!(judge(expect(2), vec![done], 10_500).complete);
    }

    #[test]
    fn an_old_revision_is_pending_and_a_failed_load_names_its_error() {
        let old = process("a", 0, vec![deployment(1, true, vec![arm("m", "1", LoadState::Ready)])]);
        let status = judge(expect(2), vec![old], 100);
        assert_eq!(status.processes[0].verdict, ProcessVerdict::Pending);
        assert!(status.processes[0].detail.contains("not yet revision 2"));
        let mut failing = arm("m", "2", LoadState::Failed);
        failing.error = Some("unknown operator Foo".into());
        let failed = process("b", 0, vec![deployment(2, false, vec![arm("m", "1", LoadState::Ready), failing])]);
        let status = judge(expect(2), vec![failed], 100);
        assert_eq!(status.processes[0].verdict, ProcessVerdict::Failed);
        assert!(status.processes[0].detail.contains("cannot load m/2: unknown operator Foo"));
    }

    #[test]
    fn silent_processes_are_named_not_waited_for() {
        let silent = process("a", 0, vec![deployment(1, true, vec![arm("m", "1", LoadState::Ready)])]);
        let status = judge(expect(2), vec![silent], 60_000);
        assert!(status.complete, "nothing alive to wait for");
        assert_eq!(status.live, 0);
        assert_eq!(status.stale().count(), 1);
    }

    #[test]
    fn processes_that_do_not_serve_it_are_left_out() {
        let mut other = process("a", 0, Vec::new());
        other.scope = DeploymentScope::Only("other".into());
        other.alias = None;
        let status = judge(expect(2), vec![other], 0);
        assert!(status.processes.is_empty() && status.complete);
    }

    #[test]
    fn alias_models_follow_the_alias() {
        let mut p = process("a", 0, Vec::new());
        p.models.push(AliasModelState { wanted: arm("churn", "1", LoadState::Ready), applied: true });
        let want = |v: &str| {
            vec![Expectation::AliasModel { model: "churn".into(), alias: "production".into(), version: Some(v.into()) }]
        };
        assert!(judge(want("1"), vec![p.clone()], 0).complete);
        let status = judge(want("2"), vec![p], 0);
        assert!(!status.complete);
        assert!(status.processes[0].detail.contains("not yet 2"), "{}", status.processes[0].detail);
    }
}
