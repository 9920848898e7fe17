//! Deployments: named traffic policies over registered versions (`shipyard_core::deployment`).
//!
//! The policy is stored as JSON text beside a revision number that each change increments, so a
//! server polling the table sees a change by its revision and a writer can refuse to overwrite
//! a change it has not seen.

use shipyard_core::deployment::{self, Deployment, DeploymentSpec, ModelRef};
use shipyard_core::entities::now_millis;
use shipyard_core::{Error, Result};

use crate::db::Database;
use crate::sql::Row;

fn from_row(r: &Row) -> Result<Deployment> {
    let text: String = r.get("spec")?;
    let name: String = r.get("name")?;
    let spec: DeploymentSpec = serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("deployment '{name}' has an unreadable policy: {e}")))?;
    Ok(Deployment {
        name,
        spec,
        revision: r.get("revision")?,
        creation_timestamp: r.get("created_time")?,
        last_updated_timestamp: r.get("updated_time")?,
        updated_by: r.get::<Option<String>>("updated_by")?,
    })
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("no deployment named '{name}'"))
}

impl Database {
    /// The version a reference names now: the version itself (`NotFound` if it does not
    /// exist), or the alias's holder (`None` when the alias is not set).
    pub async fn resolve_model_ref(&self, r: &ModelRef) -> Result<Option<String>> {
        match (&r.version, &r.alias) {
            (Some(v), _) => Ok(Some(self.get_model_version(&r.model, v).await?.version)),
            (None, Some(a)) => self.current_alias_version(&r.model, a).await,
            (None, None) => Err(Error::invalid(format!("{r}: give a version number or an alias"))),
        }
    }

    /// What `shipyard deploy` does, at any edge: checks that every version the policy names
    /// exists (and every alias is set), then creates the deployment or replaces its policy.
    pub async fn deploy(&self, name: &str, spec: &DeploymentSpec, actor: &str) -> Result<Deployment> {
        deployment::validate_name(name)?;
        spec.validate()?;
        for r in spec.refs() {
            if self.resolve_model_ref(r).await?.is_none() {
                return Err(Error::invalid(format!(
                    "{r}: '{}' has no alias '{}'",
                    r.model,
                    r.alias.as_deref().unwrap_or("")
                )));
            }
        }
        self.put_deployment(name, spec, actor).await
    }

    /// The version each reference of `spec` names now (arms, then the shadow), as text:
    /// `"unresolved: why"` for one that names none.
    pub async fn deployment_versions(&self, spec: &DeploymentSpec) -> Vec<String> {
        let mut versions = Vec::new();
        for r in spec.refs() {
            versions.push(match self.resolve_model_ref(r).await {
                Ok(Some(v)) => v,
                Ok(None) => format!("unresolved: '{}' has no alias '{}'", r.model, r.alias.as_deref().unwrap_or("")),
                Err(e) => format!("unresolved: {e}"),
            });
        }
        versions
    }

    /// Creates a deployment, or replaces its policy (revision + 1), recording `actor` as who
    /// changed it. The caller has checked that the models it names exist (see
    /// [`Database::deploy`]).
    pub async fn put_deployment(&self, name: &str, spec: &DeploymentSpec, actor: &str) -> Result<Deployment> {
        deployment::validate_name(name)?;
        spec.validate()?;
        let text = serde_json::to_string(spec).map_err(|e| Error::Internal(e.to_string()))?;
        let (name, actor) = (name.to_owned(), actor.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let now = now_millis();
                let upsert = c.stmt(
                    "INSERT INTO deployments (name, spec, revision, created_time, updated_time, updated_by) \
                     VALUES ($1, $2, 1, $3, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, revision = deployments.revision + 1, \
                     updated_time = excluded.updated_time, updated_by = excluded.updated_by",
                    [name.as_str().into(), text.into(), now.into(), actor.into()],
                );
                c.execute(upsert).await?;
                let read = c.stmt("SELECT * FROM deployments WHERE name = $1", [name.as_str().into()]);
                from_row(&c.fetch_one(read).await?)
            })
        })
        .await
    }

    /// Sets the canary's share of a deployment's requests, in percent; the primary arm keeps
    /// the rest (revision + 1). A deployment of two arms; `0` on one of more arms sends every
    /// request to the primary (what a monitor's `zero_canary` action does to an A/B test too).
    pub async fn set_canary_weight(&self, name: &str, weight: u32, actor: &str) -> Result<Deployment> {
        if weight > 100 {
            return Err(Error::invalid(format!("weight is a percent: 0 to 100, got {weight}")));
        }
        self.change_spec(name, actor, move |name, spec| {
            match spec.arms.len() {
                0 | 1 => return Err(Error::invalid(format!("deployment '{name}' has no canary arm"))),
                2 => {}
                n if weight != 0 => {
                    return Err(Error::invalid(format!(
                        "deployment '{name}' has {n} arms, not a primary and a canary: give every arm's weight \
                         (shipyard deploy {name} --ab URI=PERCENT ...)"
                    )));
                }
                _ => {}
            }
            for (i, arm) in spec.arms.iter_mut().enumerate() {
                arm.weight = if i == 0 { 100 - weight } else { weight };
            }
            Ok(())
        })
        .await
    }

    /// Ends a canary (or an A/B test): the deployment keeps only its primary arm, which gets
    /// every request (revision + 1). The shadow and the sticky key stay.
    pub async fn end_canary(&self, name: &str, actor: &str) -> Result<Deployment> {
        self.change_spec(name, actor, |name, spec| {
            if spec.arms.len() < 2 {
                return Err(Error::invalid(format!("deployment '{name}' has no canary arm")));
            }
            spec.arms.truncate(1);
            spec.arms[0].weight = 100;
            Ok(())
        })
        .await
    }

    /// Changes a deployment's policy in one transaction: read, `change`, checked, written only
    /// if no other change landed in between (else `Conflict`).
    async fn change_spec(
        &self,
        name: &str,
        actor: &str,
        change: impl FnOnce(&str, &mut DeploymentSpec) -> Result<()> + Send + 'static,
    ) -> Result<Deployment> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let read = c.stmt("SELECT * FROM deployments WHERE name = $1", [name.as_str().into()]);
                let before = from_row(&c.fetch_optional(read).await?.ok_or_else(|| not_found(&name))?)?;
                let mut spec = before.spec;
                change(&name, &mut spec)?;
                spec.validate()?;
                let text = serde_json::to_string(&spec).map_err(|e| Error::Internal(e.to_string()))?;
                let update = c.stmt(
                    "UPDATE deployments SET spec = $1, revision = revision + 1, updated_time = $2, updated_by = $3 \
                     WHERE name = $4 AND revision = $5",
                    [text.into(), now_millis().into(), actor.into(), name.as_str().into(), before.revision.into()],
                );
                if c.execute(update).await? == 0 {
                    return Err(Error::Conflict(format!("deployment '{name}' changed meanwhile: try again")));
                }
                let read = c.stmt("SELECT * FROM deployments WHERE name = $1", [name.as_str().into()]);
                from_row(&c.fetch_one(read).await?)
            })
        })
        .await
    }

    pub async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        let name = name.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM deployments WHERE name = $1", [name.as_str().into()]);
                from_row(&c.fetch_optional(sql).await?.ok_or_else(|| not_found(&name))?)
            })
        })
        .await
    }

    /// Every deployment, by name.
    pub async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM deployments ORDER BY name", []);
                c.fetch_all(sql).await?.iter().map(from_row).collect()
            })
        })
        .await
    }

    /// Deletes a deployment and its monitor configuration.
    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt("DELETE FROM deployments WHERE name = $1", [name.as_str().into()]);
                if c.execute(sql).await? == 0 {
                    return Err(not_found(&name));
                }
                // Its monitors go with it (the log and the alerts stay, as history).
                c.execute(c.stmt("DELETE FROM monitors WHERE deployment = $1", [name.as_str().into()])).await?;
                Ok(())
            })
        })
        .await
    }
}
