//! MLflow 3.17's permission levels, the resources they apply to, and how a user's grants
//! resolve to one effective permission (pure; the store holds the grants).
//!
//! | Level | read | use | update | delete | manage |
//! |---|---|---|---|---|---|
//! | READ | ✓ | | | | |
//! | USE | ✓ | ✓ | | | |
//! | EDIT | ✓ | ✓ | ✓ | | |
//! | MANAGE | ✓ | ✓ | ✓ | ✓ | ✓ |
//! | NO_PERMISSIONS | | | | | |
//! | DENY | an explicit refusal that beats every positive grant on the resource | | | | |

use serde::{Deserialize, Serialize};

/// A permission level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "NO_PERMISSIONS")]
    NoPermissions,
    #[serde(rename = "READ")]
    Read,
    #[serde(rename = "USE")]
    Use,
    #[serde(rename = "EDIT")]
    Edit,
    #[serde(rename = "MANAGE")]
    Manage,
    #[serde(rename = "DENY")]
    Deny,
}

/// What a request needs to do to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// See it.
    Read,
    /// Use it: predict with a deployment or model, send it ground truth.
    Use,
    /// Change it: log to a run, register a version, move an alias, configure a monitor.
    Update,
    /// Delete it (or part of it: artifacts, versions).
    Delete,
    /// Grant permissions on it.
    Manage,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::NoPermissions,
        Permission::Read,
        Permission::Use,
        Permission::Edit,
        Permission::Manage,
        Permission::Deny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::NoPermissions => "NO_PERMISSIONS",
            Permission::Read => "READ",
            Permission::Use => "USE",
            Permission::Edit => "EDIT",
            Permission::Manage => "MANAGE",
            Permission::Deny => "DENY",
        }
    }

    /// `READ`, `use`, ... (case-insensitive); the error names the allowed values.
    pub fn parse(text: &str) -> Result<Permission, String> {
        Permission::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(text.trim())).ok_or_else(|| {
            format!("'{text}' is not a permission: one of {}", Permission::ALL.map(Permission::as_str).join(", "))
        })
    }

    /// Rank among positive levels (DENY and NO_PERMISSIONS rank 0).
    fn rank(self) -> u8 {
        match self {
            Permission::NoPermissions | Permission::Deny => 0,
            Permission::Read => 1,
            Permission::Use => 2,
            Permission::Edit => 3,
            Permission::Manage => 4,
        }
    }

    /// Whether this level allows `capability`.
    pub fn allows(self, capability: Capability) -> bool {
        let needed = match capability {
            Capability::Read => 1,
            Capability::Use => 2,
            Capability::Update => 3,
            Capability::Delete | Capability::Manage => 4,
        };
        self.rank() >= needed
    }
}

/// The kinds of resource permissions are granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    /// An experiment, by id: its runs, logged models, artifacts, pipeline runs.
    Experiment,
    /// A registered model, by name: its versions, aliases, gates, promotions; prediction with
    /// a model served by alias.
    RegisteredModel,
    /// A deployment, by name: prediction, canary weights, its monitors, alerts, ground truth.
    Deployment,
    /// A dataset, by name: its versions, files and validations.
    Dataset,
    /// Everything of every type (`*` only): a floor under the other grants.
    Workspace,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Experiment,
        ResourceType::RegisteredModel,
        ResourceType::Deployment,
        ResourceType::Dataset,
        ResourceType::Workspace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Experiment => "experiment",
            ResourceType::RegisteredModel => "registered_model",
            ResourceType::Deployment => "deployment",
            ResourceType::Dataset => "dataset",
            ResourceType::Workspace => "workspace",
        }
    }

    pub fn parse(text: &str) -> Result<ResourceType, String> {
        ResourceType::ALL.into_iter().find(|r| r.as_str() == text.trim()).ok_or_else(|| {
            format!(
                "'{text}' is not a resource type: one of {}",
                ResourceType::ALL.map(ResourceType::as_str).join(", ")
            )
        })
    }
}

/// One grant: `permission` on resources of `resource_type` whose id is `pattern` (or `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub resource_type: ResourceType,
    pub pattern: String,
    pub permission: Permission,
}

/// The permission `grants` give on the resource `(resource_type, id)`, with `default` where
/// none applies:
/// 1. a `DENY` on it (by id or `*`) refuses, whatever else is granted;
/// 2. else the highest level granted on it, by id or `*`;
/// 3. a `workspace` grant is a floor under that;
/// 4. nothing at all granted: `default`.
///
/// Admins are not resolved here: they may do everything.
pub fn resolve(grants: &[Grant], resource_type: ResourceType, id: &str, default: Permission) -> Permission {
    let on_it = grants
        .iter()
        .filter(|g| g.resource_type == resource_type && (g.pattern == "*" || g.pattern == id))
        .map(|g| g.permission);
    let mut best: Option<Permission> = None;
    for permission in on_it {
        if permission == Permission::Deny {
            return Permission::Deny;
        }
        if best.is_none_or(|b| permission.rank() > b.rank()) {
            best = Some(permission);
        }
    }
    let floor = grants
        .iter()
        .filter(|g| g.resource_type == ResourceType::Workspace && g.permission != Permission::Deny)
        .map(|g| g.permission)
        .max_by_key(|p| p.rank());
    match (best, floor) {
        (Some(b), Some(f)) => {
            if f.rank() > b.rank() {
                f
            } else {
                b
            }
        }
        (Some(b), None) => b,
        (None, Some(f)) => f,
        (None, None) => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(t: ResourceType, pattern: &str, p: Permission) -> Grant {
        Grant { resource_type: t, pattern: pattern.to_owned(), permission: p }
    }

    #[test]
    fn levels_allow_what_mlflow_says() {
        use Capability::*;
        let table = [
            (Permission::NoPermissions, [false, false, false, false, false]),
            (Permission::Read, [true, false, false, false, false]),
            (Permission::Use, [true, true, false, false, false]),
            (Permission::Edit, [true, true, true, false, false]),
            (Permission::Manage, [true, true, true, true, true]),
            (Permission::Deny, [false, false, false, false, false]),
        ];
        for (level, expected) in table {
            let got = [Read, Use, Update, Delete, Manage].map(|c| level.allows(c));
            assert_eq!(got, expected, "{level:?}");
        }
        assert_eq!(Permission::parse("edit"), Ok(Permission::Edit));
        assert!(Permission::parse("OWNER").unwrap_err().contains("READ, USE"));
    }

    #[test]
    fn grants_resolve_deny_first_then_the_highest_then_the_floor_then_the_default() {
        use Permission::*;
        use ResourceType::*;
        let none: Vec<Grant> = Vec::new();
        assert_eq!(resolve(&none, Experiment, "1", Read), Read);
        assert_eq!(resolve(&none, Experiment, "1", NoPermissions), NoPermissions);

        let grants =
            vec![grant(Experiment, "1", Edit), grant(Experiment, "*", Read), grant(RegisteredModel, "m", Manage)];
        assert_eq!(resolve(&grants, Experiment, "1", NoPermissions), Edit);
        assert_eq!(resolve(&grants, Experiment, "2", NoPermissions), Read);
        assert_eq!(resolve(&grants, RegisteredModel, "m", NoPermissions), Manage);
        assert_eq!(resolve(&grants, RegisteredModel, "other", NoPermissions), NoPermissions);
        // A grant below the default still decides: NO_PERMISSIONS on one experiment hides it.
        let hidden = vec![grant(Experiment, "7", NoPermissions)];
        assert_eq!(resolve(&hidden, Experiment, "7", Read), NoPermissions);

        let denied = vec![grant(Experiment, "1", Manage), grant(Experiment, "1", Deny)];
        assert_eq!(resolve(&denied, Experiment, "1", Read), Deny);
        let denied_all = vec![grant(Experiment, "1", Manage), grant(Experiment, "*", Deny)];
        assert_eq!(resolve(&denied_all, Experiment, "1", Read), Deny);

        let floor = vec![grant(Workspace, "*", Use), grant(Experiment, "1", Read)];
        assert_eq!(resolve(&floor, Experiment, "1", NoPermissions), Use);
        assert_eq!(resolve(&floor, Deployment, "d", NoPermissions), Use);
        let floor_under_deny = vec![grant(Workspace, "*", Manage), grant(Deployment, "d", Deny)];
        assert_eq!(resolve(&floor_under_deny, Deployment, "d", Read), Deny);
    }
}
