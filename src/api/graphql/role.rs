//! The roles a principal acts in, as the API names them (`me`, the audit
//! trail, a chat line's author). Its own module: both the people and the
//! consult rooms use it.

use async_graphql::Enum;

use crate::principal::Role;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Role")]
pub enum RoleGql {
    Patient,
    Clinician,
    Ops,
    Admin,
    /// The node itself (automatic logoffs, start-up repairs), in the audit
    /// trail only.
    System,
}

impl From<Role> for RoleGql {
    fn from(r: Role) -> Self {
        match r {
            Role::Patient => RoleGql::Patient,
            Role::Clinician => RoleGql::Clinician,
            Role::Ops => RoleGql::Ops,
            Role::Admin => RoleGql::Admin,
            Role::System => RoleGql::System,
        }
    }
}

impl RoleGql {
    /// From a role's name as the audit trail keeps it (`clinician`, …);
    /// `None` for anything else (`none`: no principal).
    pub fn parse(name: &str) -> Option<RoleGql> {
        [
            Role::Patient,
            Role::Clinician,
            Role::Ops,
            Role::Admin,
            Role::System,
        ]
        .into_iter()
        .find(|r| r.name() == name)
        .map(Into::into)
    }
}
