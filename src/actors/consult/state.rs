//! The consult lifecycle as a pure state machine, event-sourced: a command is
//! checked against the state (`decide`), yields events or a typed error, and
//! events change the state (`apply`). Replaying the journal's events rebuilds
//! the same state.
//!
//! requested → waiting (patient in the waiting room) → in_progress (clinician
//! joined) → ended | cancelled | no_show.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub use crate::domain::consult::{ChatLine, Party, Status};

/// What a participant asks of a consult.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Request {
        patient: String,
        reason: String,
    },
    Join {
        who: Party,
    },
    Leave {
        who: Party,
    },
    Chat {
        who: Party,
        client_message_id: String,
        text: String,
    },
    End {
        who: Party,
        notes: String,
    },
    Cancel {
        who: Party,
    },
    /// The no-show window ran out (a timer of the consult).
    NoShowCheck,
}

/// What happened, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Requested {
        patient: String,
        reason: String,
        at_ms: u64,
    },
    Joined {
        who: Party,
        at_ms: u64,
    },
    Left {
        who: Party,
        at_ms: u64,
    },
    Chatted {
        line: ChatLine,
    },
    Ended {
        notes: String,
        at_ms: u64,
    },
    Cancelled {
        by: Party,
        at_ms: u64,
    },
    NoShow {
        at_ms: u64,
    },
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ConsultError {
    #[error("no such consult")]
    NotFound,
    #[error("the consult already exists")]
    AlreadyRequested,
    #[error("not a participant of this consult")]
    NotParticipant,
    #[error("cannot {action} a consult that is {status:?}")]
    WrongState {
        action: Cow<'static, str>,
        status: Status,
    },
    #[error("another clinician is already in this consult")]
    TakenByAnotherClinician,
    #[error("the consult is over")]
    Over,
    #[error("message text must be 1 to {max} characters")]
    BadText { max: usize },
    #[error("the consult could not record this now; try again")]
    Unavailable,
    #[error("this request id was already used for another command")]
    RequestIdReused,
}

impl Event {
    /// When it happened (Unix ms).
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Requested { at_ms, .. }
            | Event::Joined { at_ms, .. }
            | Event::Left { at_ms, .. }
            | Event::Ended { at_ms, .. }
            | Event::Cancelled { at_ms, .. }
            | Event::NoShow { at_ms } => *at_ms,
            Event::Chatted { line } => line.at_ms,
        }
    }

    /// The event's name, as serialised in `event` (`requested`, `chatted`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Requested { .. } => "requested",
            Event::Joined { .. } => "joined",
            Event::Left { .. } => "left",
            Event::Chatted { .. } => "chatted",
            Event::Ended { .. } => "ended",
            Event::Cancelled { .. } => "cancelled",
            Event::NoShow { .. } => "no_show",
        }
    }
}

impl ConsultError {
    /// The refusal's code, as serialised in `code` (`over`, `wrong_state`, …).
    pub fn code(&self) -> &'static str {
        match self {
            ConsultError::NotFound => "not_found",
            ConsultError::AlreadyRequested => "already_requested",
            ConsultError::NotParticipant => "not_participant",
            ConsultError::WrongState { .. } => "wrong_state",
            ConsultError::TakenByAnotherClinician => "taken_by_another_clinician",
            ConsultError::Over => "over",
            ConsultError::BadText { .. } => "bad_text",
            ConsultError::Unavailable => "unavailable",
            ConsultError::RequestIdReused => "request_id_reused",
        }
    }
}

/// Client message ids are the client's: two authors may use the same one.
fn client_key(author: &Party, client_message_id: &str) -> String {
    match author {
        Party::Patient(id) => format!("p:{id}:{client_message_id}"),
        Party::Clinician(id) => format!("c:{id}:{client_message_id}"),
    }
}

/// Longest chat line accepted (characters).
pub const MAX_TEXT: usize = 4000;

/// Chat lines a consult keeps in memory (and in its snapshot): the window in
/// which a retried line is recognised by its client message id without the
/// store. 256 lines cover any client's retries within its deadline (a
/// human chat writes a few lines a minute); an older retry is looked up in
/// the chat projection (`Store::chat_seq_of`). Older lines live only in
/// the journal and the projection, which is where reads come from.
pub const RECENT_LINES: usize = 256;

/// A consult's state, rebuilt from its events: what its decisions need,
/// not its whole chat.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Consult {
    pub patient: Option<String>,
    pub reason: String,
    pub status: Option<Status>,
    pub clinician: Option<String>,
    /// The most recent chat lines, at most [`RECENT_LINES`], in order.
    pub lines: Vec<ChatLine>,
    /// How many chat lines the consult has (the last line's sequence).
    #[serde(default)]
    chat_len: u64,
    pub present: BTreeSet<Party>,
    pub notes: Option<String>,
    pub requested_at_ms: u64,
    /// When a clinician joined the waiting patient (in progress).
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    /// When it ended, was cancelled or became a no-show.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// (author, client message id) → sequence of the lines in `lines`, to
    /// answer duplicates (rebuilt from them: [`Consult::restored`]).
    #[serde(skip)]
    by_client_id: HashMap<String, u64>,
}

/// The answer to a command that was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// A chat line's sequence; `duplicate` if it was sent before.
    Line {
        seq: u64,
        duplicate: bool,
    },
}

impl Consult {
    pub fn status(&self) -> Option<Status> {
        self.status
    }

    /// How many chat lines the consult has.
    pub fn chat_len(&self) -> u64 {
        self.chat_len
    }

    /// What this state's queryable row (status, participants, times, reason,
    /// notes) becomes once `events` are applied, without copying the window
    /// of chat lines: its `lines` hold only those of `events`.
    pub fn after(&self, events: &[Event]) -> Consult {
        let mut next = Consult {
            patient: self.patient.clone(),
            reason: self.reason.clone(),
            status: self.status,
            clinician: self.clinician.clone(),
            lines: Vec::new(),
            chat_len: self.chat_len,
            present: self.present.clone(),
            notes: self.notes.clone(),
            requested_at_ms: self.requested_at_ms,
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            by_client_id: HashMap::new(),
        };
        for e in events {
            next.apply(e);
        }
        next
    }

    /// This state as loaded from a snapshot (of this version or an older
    /// one, which kept every line): the window trimmed to [`RECENT_LINES`],
    /// its index rebuilt, the line count known.
    pub fn restored(mut self) -> Self {
        if let Some(last) = self.lines.last() {
            self.chat_len = self.chat_len.max(last.seq);
        }
        let extra = self.lines.len().saturating_sub(RECENT_LINES);
        self.lines.drain(..extra);
        self.by_client_id = self
            .lines
            .iter()
            .map(|l| (client_key(&l.author, &l.client_message_id), l.seq))
            .collect();
        self
    }

    /// Whether a chat line `who` sent with `client_message_id` may exist
    /// that this state cannot see: `who` is a participant (else the command
    /// is refused anyway), the id is not in the window, and lines have left
    /// the window. Then the caller looks it up in the store.
    pub fn may_have_sent_before(&self, who: &Party, client_message_id: &str) -> bool {
        self.participant(who)
            && self.chat_len > self.lines.len() as u64
            && !self
                .by_client_id
                .contains_key(&client_key(who, client_message_id))
    }

    fn participant(&self, who: &Party) -> bool {
        match who {
            Party::Patient(p) => self.patient.as_ref() == Some(p),
            Party::Clinician(c) => self.clinician.as_ref() == Some(c),
        }
    }

    /// Checks `command`; the events to journal, or why not.
    pub fn decide(
        &self,
        command: &Command,
        now_ms: u64,
    ) -> Result<(Vec<Event>, Outcome), ConsultError> {
        let status = match (self.status, command) {
            (None, Command::Request { patient, reason }) => {
                return Ok((
                    vec![Event::Requested {
                        patient: patient.clone(),
                        reason: reason.clone(),
                        at_ms: now_ms,
                    }],
                    Outcome::Done,
                ))
            }
            (None, _) => return Err(ConsultError::NotFound),
            (Some(_), Command::Request { .. }) => return Err(ConsultError::AlreadyRequested),
            (Some(s), _) => s,
        };
        let wrong = |action: &'static str| ConsultError::WrongState {
            action: action.into(),
            status,
        };
        // Acting on a consult that is over, or not yet where the act belongs.
        let refuse = |action| {
            if status.is_over() {
                ConsultError::Over
            } else {
                wrong(action)
            }
        };
        match command {
            Command::Request { .. } => unreachable!("handled above"),
            Command::Join { who } => {
                if status.is_over() {
                    return Err(ConsultError::Over);
                }
                match who {
                    Party::Patient(_) if !self.participant(who) => {
                        Err(ConsultError::NotParticipant)
                    }
                    Party::Clinician(c) => match &self.clinician {
                        Some(other) if other != c => Err(ConsultError::TakenByAnotherClinician),
                        // The patient must be in the waiting room first.
                        None if status == Status::Requested => Err(wrong("join as clinician")),
                        _ => Ok((
                            vec![Event::Joined {
                                who: who.clone(),
                                at_ms: now_ms,
                            }],
                            Outcome::Done,
                        )),
                    },
                    Party::Patient(_) => Ok((
                        vec![Event::Joined {
                            who: who.clone(),
                            at_ms: now_ms,
                        }],
                        Outcome::Done,
                    )),
                }
            }
            Command::Leave { who } => {
                if !self.participant(who) {
                    return Err(ConsultError::NotParticipant);
                }
                Ok((
                    vec![Event::Left {
                        who: who.clone(),
                        at_ms: now_ms,
                    }],
                    Outcome::Done,
                ))
            }
            Command::Chat {
                who,
                client_message_id,
                text,
            } => {
                if !self.participant(who) {
                    return Err(ConsultError::NotParticipant);
                }
                if let Some(seq) = self.by_client_id.get(&client_key(who, client_message_id)) {
                    return Ok((
                        vec![],
                        Outcome::Line {
                            seq: *seq,
                            duplicate: true,
                        },
                    ));
                }
                if status.is_over() {
                    return Err(ConsultError::Over);
                }
                if status == Status::Requested {
                    return Err(wrong("chat in"));
                }
                let chars = text.chars().count();
                if chars == 0 || chars > MAX_TEXT {
                    return Err(ConsultError::BadText { max: MAX_TEXT });
                }
                let seq = self.chat_len + 1;
                let line = ChatLine {
                    seq,
                    author: who.clone(),
                    client_message_id: client_message_id.clone(),
                    text: text.clone(),
                    at_ms: now_ms,
                };
                Ok((
                    vec![Event::Chatted { line }],
                    Outcome::Line {
                        seq,
                        duplicate: false,
                    },
                ))
            }
            Command::End { who, notes } => {
                if !matches!(who, Party::Clinician(_)) || !self.participant(who) {
                    return Err(ConsultError::NotParticipant);
                }
                if status != Status::InProgress {
                    return Err(refuse("end"));
                }
                Ok((
                    vec![Event::Ended {
                        notes: notes.clone(),
                        at_ms: now_ms,
                    }],
                    Outcome::Done,
                ))
            }
            Command::Cancel { who } => {
                if !self.participant(who) {
                    return Err(ConsultError::NotParticipant);
                }
                if !matches!(status, Status::Requested | Status::Waiting) {
                    return Err(refuse("cancel"));
                }
                Ok((
                    vec![Event::Cancelled {
                        by: who.clone(),
                        at_ms: now_ms,
                    }],
                    Outcome::Done,
                ))
            }
            Command::NoShowCheck => {
                let patient_here = self.present.iter().any(|p| matches!(p, Party::Patient(_)));
                if matches!(status, Status::Requested | Status::Waiting) && !patient_here {
                    Ok((vec![Event::NoShow { at_ms: now_ms }], Outcome::Done))
                } else {
                    Ok((vec![], Outcome::Done))
                }
            }
        }
    }

    /// Applies one journaled event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Requested {
                patient,
                reason,
                at_ms,
            } => {
                self.patient = Some(patient.clone());
                self.reason = reason.clone();
                self.status = Some(Status::Requested);
                self.requested_at_ms = *at_ms;
            }
            Event::Joined { who, at_ms } => {
                self.present.insert(who.clone());
                match who {
                    Party::Patient(_) if self.status == Some(Status::Requested) => {
                        self.status = Some(Status::Waiting)
                    }
                    Party::Clinician(c) => {
                        self.clinician = Some(c.clone());
                        if self.status == Some(Status::Waiting) {
                            self.status = Some(Status::InProgress);
                            self.started_at_ms = Some(*at_ms);
                        }
                    }
                    _ => {}
                }
            }
            Event::Left { who, .. } => {
                self.present.remove(who);
            }
            Event::Chatted { line } => {
                self.by_client_id
                    .insert(client_key(&line.author, &line.client_message_id), line.seq);
                self.chat_len = self.chat_len.max(line.seq);
                self.lines.push(line.clone());
                if self.lines.len() > RECENT_LINES {
                    let old = self.lines.remove(0);
                    let key = client_key(&old.author, &old.client_message_id);
                    if self.by_client_id.get(&key) == Some(&old.seq) {
                        self.by_client_id.remove(&key);
                    }
                }
            }
            Event::Ended { notes, at_ms } => {
                self.notes = Some(notes.clone());
                self.status = Some(Status::Ended);
                self.ended_at_ms = Some(*at_ms);
                self.present.clear();
            }
            Event::Cancelled { at_ms, .. } => {
                self.status = Some(Status::Cancelled);
                self.ended_at_ms = Some(*at_ms);
                self.present.clear();
            }
            Event::NoShow { at_ms } => {
                self.status = Some(Status::NoShow);
                self.ended_at_ms = Some(*at_ms);
                self.present.clear();
            }
        }
    }

    /// The chat lines in the window after `seq` (a reconnecting participant
    /// resumes there; lines before the window are in the projection).
    pub fn lines_after(&self, seq: u64) -> &[ChatLine] {
        let from = self.lines.partition_point(|l| l.seq <= seq);
        &self.lines[from..]
    }
}

#[cfg(test)]
mod tests;
