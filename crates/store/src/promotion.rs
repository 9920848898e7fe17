//! Alias moves: the recorded history of every registered-model alias, moves serialized per
//! alias, and rollback.
//!
//! Every change of an alias, whoever makes it (`shipyard models promote`/`rollback`, or
//! MLflow's `set_registered_model_alias` through the REST API), is one row of `alias_moves`
//! written in the same transaction as the alias itself: when, who, from which version to which,
//! why, and the gate report that allowed it. The rows of one `(model, alias)` are numbered
//! (`seq`) under a unique key, and a promotion names the version it expects the alias to hold
//! ([`AliasMoveRequest::expected_from`]): of two promotions that started from the same champion,
//! the first to commit wins and the other gets [`Error::Conflict`] instead of silently
//! overwriting it.
//!
//! Rollback replays the history as a stack: a move pushes the version it left, a rollback pops
//! it. So promoting 1→2→3 then rolling back twice returns to 1, and a third rollback has no
//! earlier version. Versions deleted since are skipped.

use serde::{Deserialize, Serialize};
use shipyard_core::entities::{ModelVersionStatus, now_millis};
use shipyard_core::{Error, Result};

use crate::db::{Conn, Database};
use crate::registry::{
    alias_version, load_model_version, registered_model_id_for_update, touch_registered_model, validate_alias,
};
use crate::sql::Row;
use crate::tracking::unique_violation;

/// Why an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveKind {
    /// `shipyard models promote`, every gate passed.
    Promote,
    /// `shipyard models promote --force`: gates failed or were skipped; the reason is recorded.
    Force,
    /// `shipyard models rollback`.
    Rollback,
    /// Set through MLflow's API (`set_registered_model_alias`), without gates.
    Set,
    /// Removed through MLflow's API, or with the version it pointed at.
    Delete,
}

impl MoveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveKind::Promote => "promote",
            MoveKind::Force => "force",
            MoveKind::Rollback => "rollback",
            MoveKind::Set => "set",
            MoveKind::Delete => "delete",
        }
    }

    fn parse(text: &str) -> Result<MoveKind> {
        Ok(match text {
            "promote" => MoveKind::Promote,
            "force" => MoveKind::Force,
            "rollback" => MoveKind::Rollback,
            "set" => MoveKind::Set,
            "delete" => MoveKind::Delete,
            other => return Err(Error::Internal(format!("unknown alias move kind '{other}'"))),
        })
    }
}

/// One recorded move of an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    pub model: String,
    pub alias: String,
    /// 1, 2, ... per `(model, alias)`.
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub kind: MoveKind,
    /// The version the alias held before (`None`: it was not set).
    pub from_version: Option<String>,
    /// The version it holds after (`None`: it was removed).
    pub to_version: Option<String>,
    pub actor: String,
    pub reason: Option<String>,
    /// The gate report, as JSON text, when gates ran.
    pub gate_report: Option<String>,
}

/// A move to make.
#[derive(Debug, Clone)]
pub struct AliasMoveRequest {
    pub model: String,
    pub alias: String,
    pub to_version: String,
    pub kind: MoveKind,
    /// `Some(v)`: refuse with a conflict unless the alias holds `v` (`Some(None)`: is unset).
    pub expected_from: Option<Option<String>>,
    pub actor: String,
    pub reason: Option<String>,
    pub gate_report: Option<String>,
}

/// What one move changes and why.
pub(crate) struct Move<'a> {
    pub kind: MoveKind,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    pub gate_report: Option<&'a str>,
}

/// Points `alias` at version `to` of the model, creating the alias if needed.
pub(crate) async fn point_alias(c: &mut Conn<'_>, model_id: i64, alias: &str, to: i64) -> Result<()> {
    let upsert = c.stmt(
        "INSERT INTO registered_model_aliases (registered_model_id, alias, version) VALUES ($1, $2, $3) \
         ON CONFLICT (registered_model_id, alias) DO UPDATE SET version = excluded.version",
        [model_id.into(), alias.into(), to.into()],
    );
    c.execute(upsert).await?;
    Ok(())
}

/// Appends a move to the history (the caller has changed the alias in the same transaction)
/// and returns it.
pub(crate) async fn record_move(
    c: &mut Conn<'_>,
    model: &str,
    model_id: i64,
    alias: &str,
    m: Move<'_>,
) -> Result<AliasMove> {
    let next = c.stmt(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM alias_moves WHERE registered_model_id = $1 AND alias = $2",
        [model_id.into(), alias.into()],
    );
    let seq: i64 = c.fetch_one(next).await?.get("next")?;
    let time = now_millis();
    let insert = c.stmt(
        "INSERT INTO alias_moves (registered_model_id, alias, seq, move_time, kind, from_version, to_version, actor, reason, gate_report) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            model_id.into(),
            alias.into(),
            seq.into(),
            time.into(),
            m.kind.as_str().into(),
            m.from.into(),
            m.to.into(),
            m.actor.into(),
            m.reason.map(str::to_owned).into(),
            m.gate_report.map(str::to_owned).into(),
        ],
    );
    // Two writers that computed the same `seq` (PostgreSQL, read committed): the second loses.
    unique_violation(c.execute(insert).await)?.ok_or_else(|| {
        Error::Conflict(format!("alias '{alias}' was moved by a concurrent change; read it again and retry"))
    })?;
    Ok(AliasMove {
        model: model.to_owned(),
        alias: alias.to_owned(),
        seq,
        time,
        kind: m.kind,
        from_version: m.from.map(|v| v.to_string()),
        to_version: m.to.map(|v| v.to_string()),
        actor: m.actor.to_owned(),
        reason: m.reason.map(str::to_owned),
        gate_report: m.gate_report.map(str::to_owned),
    })
}

/// Points the alias at `m.to`, records the move and touches the model, in the caller's
/// transaction.
async fn apply_move(c: &mut Conn<'_>, model: &str, model_id: i64, alias: &str, m: Move<'_>) -> Result<AliasMove> {
    let to = m.to.ok_or_else(|| Error::Internal("a move without a target version".into()))?;
    point_alias(c, model_id, alias, to).await?;
    let recorded = record_move(c, model, model_id, alias, m).await?;
    touch_registered_model(c, model_id).await?;
    Ok(recorded)
}

fn move_from_row(model: &str, r: &Row) -> Result<AliasMove> {
    let version = |col: &str| -> Result<Option<String>> { Ok(r.get::<Option<i64>>(col)?.map(|v| v.to_string())) };
    Ok(AliasMove {
        model: model.to_owned(),
        alias: r.get("alias")?,
        seq: r.get("seq")?,
        time: r.get("move_time")?,
        kind: MoveKind::parse(&r.get::<String>("kind")?)?,
        from_version: version("from_version")?,
        to_version: version("to_version")?,
        actor: r.get("actor")?,
        reason: r.get("reason")?,
        gate_report: r.get("gate_report")?,
    })
}

async fn moves(c: &mut Conn<'_>, model: &str, model_id: i64, alias: Option<&str>) -> Result<Vec<AliasMove>> {
    let sql = match alias {
        Some(a) => c.stmt(
            "SELECT * FROM alias_moves WHERE registered_model_id = $1 AND alias = $2 ORDER BY seq",
            [model_id.into(), a.into()],
        ),
        None => c.stmt(
            "SELECT * FROM alias_moves WHERE registered_model_id = $1 ORDER BY move_time, alias, seq",
            [model_id.into()],
        ),
    };
    c.fetch_all(sql).await?.iter().map(|r| move_from_row(model, r)).collect()
}

/// The version a rollback returns to: the history of one alias replayed as a stack.
fn rollback_target(history: &[AliasMove], exists: impl Fn(&str) -> bool) -> Option<String> {
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut ordered: Vec<&AliasMove> = history.iter().collect();
    ordered.sort_by_key(|m| m.seq);
    for m in ordered {
        match m.kind {
            MoveKind::Rollback => {
                stack.pop();
            }
            _ => stack.push(m.from_version.clone()),
        }
    }
    while let Some(top) = stack.pop() {
        match top {
            Some(v) if exists(&v) => return Some(v),
            _ => continue,
        }
    }
    None
}

impl Database {
    /// Moves an alias to a version and records the move, in one transaction. Refuses a version
    /// that is not READY or is archived, and (with `expected_from`) an alias that moved since the
    /// caller read it.
    pub async fn move_alias(&self, request: AliasMoveRequest) -> Result<AliasMove> {
        validate_alias(&request.alias)?;
        self.write(move |c| {
            Box::pin(async move {
                let r = &request;
                let model_id = registered_model_id_for_update(c, &r.model).await?;
                let target = load_model_version(c, &r.model, &r.to_version).await?;
                if target.status != ModelVersionStatus::Ready {
                    return Err(Error::invalid(format!(
                        "version {} of '{}' is {}, not READY: it cannot take an alias",
                        target.version,
                        r.model,
                        target.status.as_str()
                    )));
                }
                if target.current_stage == "Archived" {
                    return Err(Error::invalid(format!(
                        "version {} of '{}' is archived: move it out of the Archived stage before promoting it",
                        target.version, r.model
                    )));
                }
                let to: i64 = target.version.parse().map_err(|_| Error::Internal("version is not a number".into()))?;
                let from = alias_version(c, model_id, &r.alias).await?;
                if let Some(expected) = &r.expected_from {
                    let expected: Option<i64> = expected.as_deref().and_then(|v| v.parse().ok());
                    if expected != from {
                        let show = |v: Option<i64>| v.map_or("unset".to_owned(), |v| format!("version {v}"));
                        return Err(Error::Conflict(format!(
                            "alias '{}' of '{}' moved while this promotion ran: it was {} and is now {}; \
                             read it again and retry",
                            r.alias,
                            r.model,
                            show(expected),
                            show(from)
                        )));
                    }
                }
                let kind = r.kind;
                let m = Move {
                    kind,
                    from,
                    to: Some(to),
                    actor: &r.actor,
                    reason: r.reason.as_deref(),
                    gate_report: r.gate_report.as_deref(),
                };
                apply_move(c, &r.model, model_id, &r.alias, m).await
            })
        })
        .await
    }

    /// Moves an alias back to the version it held before its last move (see the module doc).
    pub async fn rollback_alias(
        &self,
        model: &str,
        alias: &str,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<AliasMove> {
        validate_alias(alias)?;
        let (model, alias, actor, reason) =
            (model.to_owned(), alias.to_owned(), actor.to_owned(), reason.map(str::to_owned));
        self.write(move |c| {
            Box::pin(async move {
                let model_id = registered_model_id_for_update(c, &model).await?;
                let Some(from) = alias_version(c, model_id, &alias).await? else {
                    return Err(Error::invalid(format!("'{model}' has no alias '{alias}' to roll back")));
                };
                let history = moves(c, &model, model_id, Some(&alias)).await?;
                let existing =
                    c.stmt("SELECT version FROM model_versions WHERE registered_model_id = $1", [model_id.into()]);
                let mut versions = Vec::new();
                for row in c.fetch_all(existing).await? {
                    versions.push(row.get::<i64>("version")?.to_string());
                }
                let target = rollback_target(&history, |v| versions.iter().any(|x| x == v)).ok_or_else(|| {
                    Error::invalid(format!("'{model}@{alias}' (version {from}) has no earlier version to roll back to"))
                })?;
                let to: i64 = target.parse().map_err(|_| Error::Internal("version is not a number".into()))?;
                let m = Move {
                    kind: MoveKind::Rollback,
                    from: Some(from),
                    to: Some(to),
                    actor: &actor,
                    reason: reason.as_deref(),
                    gate_report: None,
                };
                apply_move(c, &model, model_id, &alias, m).await
            })
        })
        .await
    }

    /// The version an alias holds, or `None` when it is not set (`NotFound` for an unknown
    /// model).
    pub async fn current_alias_version(&self, model: &str, alias: &str) -> Result<Option<String>> {
        let (model, alias) = (model.to_owned(), alias.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let model_id = crate::registry::registered_model_id(c, &model).await?;
                Ok(alias_version(c, model_id, &alias).await?.map(|v| v.to_string()))
            })
        })
        .await
    }

    /// Every `(model, version)` that `alias` points at, by model name: what a server serving
    /// that alias polls.
    pub async fn alias_targets(&self, alias: &str) -> Result<Vec<(String, String)>> {
        let alias = alias.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT rm.name, a.version FROM registered_model_aliases a \
                     JOIN registered_models rm ON rm.id = a.registered_model_id WHERE a.alias = $1 ORDER BY rm.name",
                    [alias.as_str().into()],
                );
                let mut out = Vec::new();
                for row in c.fetch_all(sql).await? {
                    out.push((row.get::<String>("name")?, row.get::<i64>("version")?.to_string()));
                }
                Ok(out)
            })
        })
        .await
    }

    /// Every recorded move of the model's aliases (or of one alias), oldest first.
    pub async fn alias_history(&self, model: &str, alias: Option<&str>) -> Result<Vec<AliasMove>> {
        let (model, alias) = (model.to_owned(), alias.map(str::to_owned));
        self.read(move |c| {
            Box::pin(async move {
                let model_id = crate::registry::registered_model_id(c, &model).await?;
                moves(c, &model, model_id, alias.as_deref()).await
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(seq: i64, kind: MoveKind, from: Option<&str>, to: &str) -> AliasMove {
        AliasMove {
            model: "m".into(),
            alias: "production".into(),
            seq,
            time: seq,
            kind,
            from_version: from.map(str::to_owned),
            to_version: Some(to.into()),
            actor: "t".into(),
            reason: None,
            gate_report: None,
        }
    }

    #[test]
    fn rollback_replays_the_history_as_a_stack() {
        let mut h = vec![
            mv(1, MoveKind::Set, None, "1"),
            mv(2, MoveKind::Promote, Some("1"), "2"),
            mv(3, MoveKind::Promote, Some("2"), "3"),
        ];
        assert_eq!(rollback_target(&h, |_| true).as_deref(), Some("2"));
        h.push(mv(4, MoveKind::Rollback, Some("3"), "2"));
        assert_eq!(rollback_target(&h, |_| true).as_deref(), Some("1"));
        h.push(mv(5, MoveKind::Rollback, Some("2"), "1"));
        assert_eq!(rollback_target(&h, |_| true), None);
        // A deleted version is skipped.
        let h = [
            mv(1, MoveKind::Set, None, "1"),
            mv(2, MoveKind::Promote, Some("1"), "2"),
            mv(3, MoveKind::Force, Some("2"), "3"),
        ];
        assert_eq!(rollback_target(&h, |v| v != "2").as_deref(), Some("1"));
    }
}
