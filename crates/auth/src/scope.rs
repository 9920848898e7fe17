//! What an API token may be used for, on top of what its owner may do.
//!
//! - `all`: everything the owner may do (the default).
//! - `read`: only reading, anything the owner may read.
//! - `use:deployment:NAME` or `use:registered_model:NAME` (or `:*`): predicting with (and
//!   reading) that deployment or model, nothing else: the key a client that predicts is given
//!   (KServe's per-model token, Triton's restricted inference API).
//!
//! A token with several scopes may do what any of them allows. Scopes narrow; they never
//! add to what the owner's permissions allow.

use crate::permission::{Capability, ResourceType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Read,
    Use { resource_type: ResourceType, name: String },
}

/// A credential's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn all() -> Scopes {
        Scopes(vec![Scope::All])
    }

    /// Parses stored or requested scopes; an empty list means `all`.
    pub fn parse(texts: &[String]) -> Result<Scopes, String> {
        if texts.is_empty() {
            return Ok(Scopes::all());
        }
        texts.iter().map(|t| parse_one(t)).collect::<Result<Vec<_>, _>>().map(Scopes)
    }

    /// As stored.
    pub fn texts(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| match s {
                Scope::All => "all".to_owned(),
                Scope::Read => "read".to_owned(),
                Scope::Use { resource_type, name } => format!("use:{}:{name}", resource_type.as_str()),
            })
            .collect()
    }

    /// Whether the credential may be used for everything its owner may do.
    pub fn is_all(&self) -> bool {
        self.0.contains(&Scope::All)
    }

    /// Whether the credential may be used to do `capability` to `(resource_type, name)`.
    pub fn allow(&self, resource_type: ResourceType, name: &str, capability: Capability) -> bool {
        self.0.iter().any(|s| match s {
            Scope::All => true,
            Scope::Read => capability == Capability::Read,
            Scope::Use { resource_type: t, name: n } => {
                *t == resource_type
                    && (n == "*" || n == name)
                    && matches!(capability, Capability::Read | Capability::Use)
            }
        })
    }

    /// The names `use:` scopes give for `resource_type` (`*` for all).
    pub fn named(&self, resource_type: ResourceType) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|s| match s {
                Scope::Use { resource_type: t, name } if *t == resource_type => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether the credential may be used for work that names no one resource (creating one,
    /// listing, managing users): only with `all`, or `read` for reading.
    pub fn allow_unscoped(&self, capability: Capability) -> bool {
        self.0.iter().any(|s| match s {
            Scope::All => true,
            Scope::Read => capability == Capability::Read,
            Scope::Use { .. } => false,
        })
    }
}

fn parse_one(text: &str) -> Result<Scope, String> {
    let text = text.trim();
    match text {
        "all" => return Ok(Scope::All),
        "read" => return Ok(Scope::Read),
        _ => {}
    }
    let usage = || format!("'{text}' is not a scope: all, read, use:deployment:NAME or use:registered_model:NAME");
    let rest = text.strip_prefix("use:").ok_or_else(usage)?;
    let (kind, name) = rest.split_once(':').ok_or_else(usage)?;
    let resource_type = match kind {
        "deployment" => ResourceType::Deployment,
        "registered_model" => ResourceType::RegisteredModel,
        _ => return Err(usage()),
    };
    if name.is_empty() {
        return Err(usage());
    }
    Ok(Scope::Use { resource_type, name: name.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(texts: &[&str]) -> Scopes {
        Scopes::parse(&texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>()).expect("scopes")
    }

    #[test]
    fn a_prediction_key_may_predict_with_its_deployment_and_nothing_else() {
        let key = scopes(&["use:deployment:churn"]);
        assert!(key.allow(ResourceType::Deployment, "churn", Capability::Use));
        assert!(key.allow(ResourceType::Deployment, "churn", Capability::Read));
        assert!(!key.allow(ResourceType::Deployment, "churn", Capability::Update));
        assert!(!key.allow(ResourceType::Deployment, "other", Capability::Use));
        assert!(!key.allow(ResourceType::RegisteredModel, "churn", Capability::Use));
        assert!(!key.allow(ResourceType::Experiment, "1", Capability::Read));
        assert!(!key.allow_unscoped(Capability::Read));
        assert!(!key.is_all());
    }

    #[test]
    fn read_reads_everything_and_all_does_everything() {
        let read = scopes(&["read"]);
        assert!(read.allow(ResourceType::Experiment, "1", Capability::Read));
        assert!(!read.allow(ResourceType::Experiment, "1", Capability::Update));
        assert!(read.allow_unscoped(Capability::Read));
        assert!(!read.allow_unscoped(Capability::Update));
        let all = scopes(&[]);
        assert!(all.is_all() && all.allow(ResourceType::Dataset, "d", Capability::Delete));
        assert_eq!(scopes(&["read", "use:registered_model:*"]).texts(), ["read", "use:registered_model:*"]);
        assert!(Scopes::parse(&["write".to_owned()]).unwrap_err().contains("not a scope"));
        assert!(Scopes::parse(&["use:experiment:1".to_owned()]).is_err());
    }
}
