//! The inactivity logoff's settings per role, and the intervals that
//! follow from them.

use std::time::Duration;

use crate::principal::Role;

/// Inactivity logoff per role.
#[derive(Debug, Clone, Copy)]
pub struct Logoff {
    pub patient: Duration,
    pub clinician: Duration,
    pub ops: Duration,
    pub admin: Duration,
}

impl Logoff {
    pub fn from_config(c: &crate::config::Config) -> Logoff {
        Logoff {
            patient: c.session_logoff,
            clinician: c.logoff_clinician,
            ops: c.logoff_ops,
            admin: c.logoff_admin,
        }
    }

    pub fn of(&self, role: Role) -> Duration {
        match role {
            Role::Patient => self.patient,
            Role::Clinician => self.clinician,
            Role::Ops => self.ops,
            Role::Admin => self.admin,
            Role::System => Duration::MAX,
        }
    }

    /// How often a subject's activity is written to the database: a
    /// quarter of its role's logoff, at most 5 s (so a logoff comes at most
    /// that late).
    pub fn write_every(&self, role: Role) -> Duration {
        (self.of(role) / 4).min(Duration::from_secs(5))
    }

    /// How often a node writes the activity it gathered: an eighth of the
    /// shortest logoff, from 50 ms to 1 s (so a logoff comes at most that
    /// much later still).
    pub fn flush_every(&self) -> Duration {
        (self.shortest() / 8).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn shortest(&self) -> Duration {
        [self.patient, self.clinician, self.ops, self.admin]
            .into_iter()
            .min()
            .unwrap_or(Duration::from_secs(60))
    }

    /// How often open connections are checked: a quarter of the shortest
    /// logoff, from 250 ms to 5 s.
    pub fn tick(&self) -> Duration {
        (self.shortest() / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }
}
