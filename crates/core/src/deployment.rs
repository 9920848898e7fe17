//! Deployments: a name under which registered model versions are served, with a traffic policy.
//!
//! A deployment has one or more arms, each a registered version (by number, or by alias so it
//! follows promotions and rollbacks) with a weight in percent; the weights sum to 100:
//! - single: one arm with weight 100;
//! - canary: the primary arm and a challenger with a small weight;
//! - A/B: any arms with explicit weights, usually sticky by a request key (a header or a
//!   field) so that one user stays on one arm.
//!
//! A shadow version gets a copy of every request; its answer is logged, never returned.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, validation};

/// A registered model version, by number or by alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// Registered model name.
    pub model: String,
    /// A version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// An alias (followed as it moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl ModelRef {
    pub fn version(model: &str, version: &str) -> ModelRef {
        ModelRef { model: model.to_owned(), version: Some(version.to_owned()), alias: None }
    }

    pub fn alias(model: &str, alias: &str) -> ModelRef {
        ModelRef { model: model.to_owned(), version: None, alias: Some(alias.to_owned()) }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.version, &self.alias) {
            (Some(v), _) => write!(f, "models:/{}/{v}", self.model),
            (None, Some(a)) => write!(f, "models:/{}@{a}", self.model),
            (None, None) => write!(f, "models:/{}", self.model),
        }
    }
}

/// One share of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    pub target: ModelRef,
    /// Percent of the requests, 0 to 100.
    pub weight: u32,
}

/// What keeps a client on one arm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "from", content = "name")]
pub enum StickyKey {
    /// A request header, e.g. `x-user-id`.
    Header(String),
    /// A field of the JSON body: top-level for `/predict`, under `params` for `/invocations`,
    /// under `parameters` for the Open Inference Protocol.
    Field(String),
}

/// A deployment's traffic policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// The arms; the first is the primary (the champion of a canary).
    pub arms: Vec<Arm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ModelRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickyKey>,
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    pub spec: DeploymentSpec,
    /// 1 when created, +1 at each change.
    pub revision: i64,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    /// Who made the last change (the logged-in user, a command's `$USER`, or a monitor's
    /// action); `None` for deployments older than this record.
    #[serde(default)]
    pub updated_by: Option<String>,
}

/// Checks a deployment name: ASCII letters, digits, `_` and `-` (it is a URL path segment), up
/// to 255 characters.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("a deployment name must not be empty"));
    }
    validation::check_length("deployment name", name, 255)?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Error::invalid(format!("invalid deployment name '{name}': use letters, digits, '_' and '-'")));
    }
    Ok(())
}

impl DeploymentSpec {
    /// Checks the policy: at least one arm, every reference complete, weights summing to 100,
    /// no version twice, a sticky key with a name.
    pub fn validate(&self) -> Result<()> {
        if self.arms.is_empty() {
            return Err(Error::invalid("a deployment needs at least one model"));
        }
        let total: u64 = self.arms.iter().map(|a| u64::from(a.weight)).sum();
        if total != 100 {
            let shown: Vec<String> = self.arms.iter().map(|a| format!("{}={}", a.target, a.weight)).collect();
            return Err(Error::invalid(format!(
                "traffic weights must sum to 100, they sum to {total} ({})",
                shown.join(", ")
            )));
        }
        for (i, arm) in self.arms.iter().enumerate() {
            check_ref(&arm.target)?;
            if self.arms[..i].iter().any(|a| a.target == arm.target) {
                return Err(Error::invalid(format!("{} is listed twice", arm.target)));
            }
        }
        if let Some(shadow) = &self.shadow {
            check_ref(shadow)?;
        }
        match &self.sticky {
            Some(StickyKey::Header(n) | StickyKey::Field(n)) if n.trim().is_empty() => {
                Err(Error::invalid("a sticky key needs a header or field name"))
            }
            _ => Ok(()),
        }
    }

    /// Every model reference the deployment serves (arms, then the shadow).
    pub fn refs(&self) -> impl Iterator<Item = &ModelRef> {
        self.arms.iter().map(|a| &a.target).chain(self.shadow.as_ref())
    }
}

fn check_ref(r: &ModelRef) -> Result<()> {
    if r.model.is_empty() {
        return Err(Error::invalid("a model reference needs a registered model name"));
    }
    match (&r.version, &r.alias) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        _ => Err(Error::invalid(format!("{r}: give a version number or an alias, not both or neither"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(v: &str, weight: u32) -> Arm {
        Arm { target: ModelRef::version("m", v), weight }
    }

    #[test]
    fn weights_must_sum_to_100() {
        let ok = DeploymentSpec { arms: vec![arm("1", 90), arm("2", 10)], shadow: None, sticky: None };
        assert!(ok.validate().is_ok());
        let over = DeploymentSpec { arms: vec![arm("1", 90), arm("2", 20)], ..ok.clone() };
        let e = over.validate().expect_err("refused").to_string();
        assert!(e.contains("sum to 110") && e.contains("models:/m/2=20"), "{e}");
        let twice = DeploymentSpec { arms: vec![arm("1", 50), arm("1", 50)], ..ok.clone() };
        assert!(twice.validate().expect_err("refused").to_string().contains("twice"));
        assert!(DeploymentSpec { arms: vec![], ..ok }.validate().is_err());
        assert!(validate_name("churn-api").is_ok());
        assert!(validate_name("../x").is_err());
    }
}
