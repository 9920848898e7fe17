//! Tracking: experiments, runs and what runs log.

/// The logical artifact location of an experiment. Artifacts are always proxied through the
/// server (`mlflow-artifacts:`), so the physical destination can change without touching rows.
pub fn experiment_artifact_location(experiment_id: i64) -> String {
    format!("mlflow-artifacts:/{experiment_id}")
}
