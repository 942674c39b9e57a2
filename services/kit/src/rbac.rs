//! Roles and permissions: the one permission matrix, enforced by every role's handlers.
//!
//! A principal holds roles; a role grants permissions; a handler names the permission an RPC
//! needs with [`crate::auth::AuthContext::require`]. The matrix is [`Role::grants`], one `match`
//! with no wildcard, and `docs/reference/rbac.md` is checked against it by a test.

use std::{fmt, str::FromStr};

/// What a principal may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything in its tenant.
    Admin,
    /// Issue, revoke, run CAs day to day, manage issuers and targets.
    Operator,
    /// Registration authority: write profiles and *request* certificates, never issue.
    RaOfficer,
    /// Approve key ceremonies.
    Custodian,
    /// Read the audit trail; read-only elsewhere.
    Auditor,
    /// Read-only inventory.
    Viewer,
    /// An enrolled agent, acting through the fleet role: issue for its own bindings only.
    Agent,
}

/// One thing a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    CertsRead,
    CertsIssue,
    CertsRequest,
    CertsRevoke,
    ProfilesRead,
    ProfilesWrite,
    ApprovalsRead,
    ApprovalsDecide,
    CasRead,
    CasManage,
    CeremoniesApprove,
    AuditRead,
    PrincipalsRead,
    PrincipalsWrite,
    FleetRead,
    FleetManage,
    DiscoveryRead,
    DiscoveryManage,
    NotificationsRead,
    NotificationsManage,
}

impl Permission {
    /// Every permission.
    pub const ALL: &'static [Permission] = &[
        Permission::CertsRead,
        Permission::CertsIssue,
        Permission::CertsRequest,
        Permission::CertsRevoke,
        Permission::ProfilesRead,
        Permission::ProfilesWrite,
        Permission::ApprovalsRead,
        Permission::ApprovalsDecide,
        Permission::CasRead,
        Permission::CasManage,
        Permission::CeremoniesApprove,
        Permission::AuditRead,
        Permission::PrincipalsRead,
        Permission::PrincipalsWrite,
        Permission::FleetRead,
        Permission::FleetManage,
        Permission::DiscoveryRead,
        Permission::DiscoveryManage,
        Permission::NotificationsRead,
        Permission::NotificationsManage,
    ];

    /// The wire and documentation name, `resource:verb`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::CertsRead => "certs:read",
            Permission::CertsIssue => "certs:issue",
            Permission::CertsRequest => "certs:request",
            Permission::CertsRevoke => "certs:revoke",
            Permission::ProfilesRead => "profiles:read",
            Permission::ProfilesWrite => "profiles:write",
            Permission::ApprovalsRead => "approvals:read",
            Permission::ApprovalsDecide => "approvals:decide",
            Permission::CasRead => "cas:read",
            Permission::CasManage => "cas:manage",
            Permission::CeremoniesApprove => "ceremonies:approve",
            Permission::AuditRead => "audit:read",
            Permission::PrincipalsRead => "principals:read",
            Permission::PrincipalsWrite => "principals:write",
            Permission::FleetRead => "fleet:read",
            Permission::FleetManage => "fleet:manage",
            Permission::DiscoveryRead => "discovery:read",
            Permission::DiscoveryManage => "discovery:manage",
            Permission::NotificationsRead => "notifications:read",
            Permission::NotificationsManage => "notifications:manage",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    /// Every role.
    pub const ALL: &'static [Role] = &[
        Role::Admin,
        Role::Operator,
        Role::RaOfficer,
        Role::Custodian,
        Role::Auditor,
        Role::Viewer,
        Role::Agent,
    ];

    /// The wire and documentation name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::RaOfficer => "ra-officer",
            Role::Custodian => "custodian",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }

    /// The permission matrix.
    pub const fn grants(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(
                p,
                P::CertsRead
                    | P::CertsIssue
                    | P::CertsRequest
                    | P::CertsRevoke
                    | P::ProfilesRead
                    | P::ApprovalsRead
                    | P::ApprovalsDecide
                    | P::CasRead
                    | P::CasManage
                    | P::FleetRead
                    | P::FleetManage
                    | P::DiscoveryRead
                    | P::DiscoveryManage
                    | P::NotificationsRead
                    | P::NotificationsManage
            ),
            Role::RaOfficer => matches!(
                p,
                P::CertsRead
                    | P::CertsRequest
                    | P::ProfilesRead
                    | P::ProfilesWrite
                    | P::ApprovalsRead
            ),
            Role::Custodian => matches!(p, P::CasRead | P::CeremoniesApprove),
            Role::Auditor => matches!(
                p,
                P::AuditRead
                    | P::CertsRead
                    | P::ProfilesRead
                    | P::ApprovalsRead
                    | P::CasRead
                    | P::PrincipalsRead
                    | P::FleetRead
                    | P::DiscoveryRead
                    | P::NotificationsRead
            ),
            Role::Viewer => matches!(
                p,
                P::CertsRead | P::ProfilesRead | P::CasRead | P::FleetRead | P::DiscoveryRead
            ),
            Role::Agent => matches!(p, P::CertsIssue),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {0:?}; roles are admin, operator, ra-officer, custodian, auditor, viewer, agent"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// True if any of `roles` grants `p`.
pub fn any_grants(roles: &[Role], p: Permission) -> bool {
    roles.iter().any(|r| r.grants(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ra_officer_requests_but_never_issues() {
        assert!(Role::RaOfficer.grants(Permission::CertsRequest));
        assert!(!Role::RaOfficer.grants(Permission::CertsIssue));
        assert!(Role::Operator.grants(Permission::CertsIssue));
        assert!(!Role::Viewer.grants(Permission::ProfilesWrite));
        assert!(
            Role::ALL
                .iter()
                .all(|r| r.as_str().parse::<Role>() == Ok(*r))
        );
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn the_rbac_reference_matches_the_matrix() {
        let doc = include_str!("../../../docs/reference/rbac.md");
        let header = doc
            .lines()
            .find(|l| l.starts_with("| permission |"))
            .expect("table header");
        let roles: Vec<Role> = header
            .split('|')
            .map(str::trim)
            .skip(2)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse().expect("a role column"))
            .collect();
        assert_eq!(roles, Role::ALL);
        for p in Permission::ALL {
            let row = format!("| `{}` |", p.as_str());
            let line = doc
                .lines()
                .find(|l| l.starts_with(&row))
                .unwrap_or_else(|| panic!("rbac.md lacks {p}"));
            let cells: Vec<&str> = line
                .split('|')
                .map(str::trim)
                .skip(2)
                .filter(|c| !c.is_empty())
                .collect();
            for (role, cell) in roles.iter().zip(cells) {
                assert_eq!(
                    cell == "yes",
                    role.grants(*p),
                    "rbac.md says {cell} for {role} / {p}"
                );
            }
        }
    }
}
