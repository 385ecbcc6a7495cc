//! A consult's vocabulary shared by the consult actor, its SQL projection and
//! the API: where a consult is in its life, who acts, a chat line. Plain
//! values: no I/O, no clock, nothing of the runtime.

use serde::{Deserialize, Serialize};

/// Where a consult is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Requested,
    Waiting,
    InProgress,
    Ended,
    Cancelled,
    NoShow,
}

impl Status {
    /// The status's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Waiting => "waiting",
            Status::InProgress => "in_progress",
            Status::Ended => "ended",
            Status::Cancelled => "cancelled",
            Status::NoShow => "no_show",
        }
    }

    pub fn is_over(self) -> bool {
        matches!(self, Status::Ended | Status::Cancelled | Status::NoShow)
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "role", content = "id", rename_all = "snake_case")]
pub enum Party {
    Patient(String),
    Clinician(String),
}

/// One chat line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Per-consult sequence, from 1, without gaps.
    pub seq: u64,
    pub author: Party,
    pub client_message_id: String,
    pub text: String,
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_their_serialised_form() {
        for s in [
            Status::Requested,
            Status::Waiting,
            Status::InProgress,
            Status::Ended,
            Status::Cancelled,
            Status::NoShow,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
