//! Who sent a message: the authenticated subject and its role.
//!
//! Subjects are opaque identifiers (UUIDs), never names: a principal may be
//! logged, a patient's name may not.

use serde::{Deserialize, Serialize};

/// The roles cardio knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Clinician,
    Ops,
    Admin,
    /// The platform itself (timers, cluster machinery).
    System,
}

impl Role {
    /// The role's name, as tokens and audit entries spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Ops => "ops",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }
}

/// An authenticated sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

impl Principal {
    pub fn system() -> Self {
        Self {
            subject: "cardio".into(),
            role: Role::System,
        }
    }
}
