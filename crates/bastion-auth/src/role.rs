//! Roles, permissions and what each role may do by default. Per-resource grants (kept by the
//! store) can raise a principal's permission on one resource above its role's default; nothing
//! is allowed that neither gives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Permission on one resource. Each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    /// See it and its runs, versions and artifacts.
    Read,
    /// Call what it serves: inference on a registered model's admitted versions.
    Invoke,
    /// Change its contents: log runs and artifacts, create model versions, set tags.
    Edit,
    /// Promote what it holds to serving: aliases and stage transitions of model versions.
    Deploy,
    /// Rename, delete and restore it.
    Manage,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Self::Read,
        Self::Invoke,
        Self::Edit,
        Self::Deploy,
        Self::Manage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Invoke => "INVOKE",
            Self::Edit => "EDIT",
            Self::Deploy => "DEPLOY",
            Self::Manage => "MANAGE",
        }
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown permission '{s}': use READ, INVOKE, EDIT, DEPLOY or MANAGE")
            })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of resource permissions attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Experiment,
    RegisteredModel,
    /// A dataset name and all its versions.
    Dataset,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 3] = [Self::Experiment, Self::RegisteredModel, Self::Dataset];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::RegisteredModel => "registered_model",
            Self::Dataset => "dataset",
        }
    }
}

impl FromStr for ResourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown resource kind '{s}': use experiment, registered_model or dataset")
            })
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Abilities that belong to no single resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Create and change users, anyone's tokens and grants.
    ManageIdentities,
    /// Read the audit log and its proofs.
    ReadAudit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Maintainer,
    DataScientist,
    Deployer,
    Auditor,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Self::Admin,
        Self::Maintainer,
        Self::DataScientist,
        Self::Deployer,
        Self::Auditor,
        Self::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Maintainer => "maintainer",
            Self::DataScientist => "data-scientist",
            Self::Deployer => "deployer",
            Self::Auditor => "auditor",
            Self::Viewer => "viewer",
        }
    }

    /// The permission this role has on every resource of `kind` unless a grant raises it.
    pub fn default_permission(self, kind: ResourceKind) -> Permission {
        use Permission::*;
        match (self, kind) {
            (Self::Admin | Self::Maintainer, _) => Manage,
            (Self::DataScientist, _) => Edit,
            (Self::Deployer, ResourceKind::RegisteredModel) => Deploy,
            (Self::Deployer | Self::Auditor | Self::Viewer, _) => Read,
        }
    }

    pub fn has(self, capability: Capability) -> bool {
        match capability {
            Capability::ManageIdentities => self == Self::Admin,
            Capability::ReadAudit => matches!(self, Self::Admin | Self::Auditor),
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role '{s}': use admin, maintainer, data-scientist, deployer, auditor or viewer")
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        for k in ResourceKind::ALL {
            assert_eq!(k.as_str().parse::<ResourceKind>(), Ok(k));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Permission::Read < Permission::Invoke);
        assert!(Permission::Invoke < Permission::Edit);
        assert!(Permission::Edit < Permission::Deploy);
        assert!(Permission::Deploy < Permission::Manage);
    }

    #[test]
    fn only_admins_manage_identities_and_only_admins_and_auditors_read_the_audit() {
        for r in Role::ALL {
            assert_eq!(r.has(Capability::ManageIdentities), r == Role::Admin);
            assert_eq!(
                r.has(Capability::ReadAudit),
                matches!(r, Role::Admin | Role::Auditor)
            );
        }
    }
}
