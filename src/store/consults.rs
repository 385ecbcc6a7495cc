//! Queryable projections of consults and their chat: rewritten idempotently by
//! the consult actor from its journal, read by the API.

use sqlx::Row;

use super::writer::{Arg, Stmt, Then};
use super::{with_pool, Store, StoreError};
use crate::clock::unix_ms;
use crate::domain::consult::{ChatLine, Party, Status};

/// Whose consults a page lists.
#[derive(Debug, Clone)]
pub enum ConsultsOf {
    /// A patient's.
    Patient(String),
    /// Of `patients` (a clinician's care team's): those still requested or
    /// waiting, and those the clinician is in.
    Clinician { id: String, patients: Vec<String> },
}

/// What a consult request's id names ([`Store::claim_consult_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultClaim {
    /// The consult the request names, for `patient`.
    Claimed { consult: String, patient: String },
    /// No patient of that id is registered: nothing was stored.
    UnknownPatient,
}

/// What the store tells of a consult ([`Store::consult_known`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultKnown {
    /// Projected: the consult's patient.
    Patient(String),
    /// Journaled, not projected yet: only its actor can tell its patient.
    Journaled,
    /// Never requested.
    Unknown,
}

/// A consult as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultRow {
    pub id: String,
    pub patient_id: String,
    pub clinician_id: Option<String>,
    pub status: Status,
    pub requested_ms: u64,
    /// Why it was requested (PHI: sealed at rest).
    pub reason: String,
    /// The clinician's notes, once ended (PHI: sealed at rest).
    pub notes: Option<String>,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

/// The columns a [`ConsultRow`] is read from.
const COLUMNS: &str =
    "id, patient_id, clinician_id, status, requested_ms, reason, notes, started_ms, ended_ms";

/// A consult row as stored (reason and notes still sealed).
type RawRow = (
    String,
    String,
    Option<String>,
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// Reads [`COLUMNS`] off a row of either database.
macro_rules! raw_row {
    ($r:expr) => {{
        let r = $r;
        Ok::<RawRow, sqlx::Error>((
            r.try_get("id")?,
            r.try_get("patient_id")?,
            r.try_get("clinician_id")?,
            r.try_get("status")?,
            r.try_get("requested_ms")?,
            r.try_get("reason")?,
            r.try_get("notes")?,
            r.try_get("started_ms")?,
            r.try_get("ended_ms")?,
        ))
    }};
}

/// Chat lines per INSERT when a projection catches up (7 values a row:
/// 3,500 parameters, well under SQLite's 32,766 and PostgreSQL's 65,535).
pub const CHAT_BATCH: usize = 500;

/// A chat line's author as stored: (`author_role`, `author_id`).
fn party_columns(party: &Party) -> (&'static str, &str) {
    match party {
        Party::Patient(id) => ("patient", id),
        Party::Clinician(id) => ("clinician", id),
    }
}

fn parse_status(s: &str) -> Result<Status, StoreError> {
    Ok(match s {
        "requested" => Status::Requested,
        "waiting" => Status::Waiting,
        "in_progress" => Status::InProgress,
        "ended" => Status::Ended,
        "cancelled" => Status::Cancelled,
        "no_show" => Status::NoShow,
        other => {
            return Err(StoreError::Database(sqlx::Error::Decode(
                format!("unknown consult status {other:?}").into(),
            )))
        }
    })
}

/// A chat line's sequence by its author's client message id (an index
/// seek in `chat_messages_by_client`, whose last column orders the match).
const CHAT_SEQ_OF_PG: &str = "SELECT seq FROM chat_messages WHERE consult_id = $1 \
     AND author_role = $2 AND author_id = $3 AND client_message_id = $4 ORDER BY seq LIMIT 1";
const CHAT_SEQ_OF_SQLITE: &str = "SELECT seq FROM chat_messages WHERE consult_id = ?1 \
     AND author_role = ?2 AND author_id = ?3 AND client_message_id = ?4 ORDER BY seq LIMIT 1";

impl Store {
    /// Brings consult `row.id`'s projection up to journal sequence
    /// `through_seq` in one transaction: [`Self::consult_projection`].
    pub async fn project_consult_through(
        &self,
        row: &ConsultRow,
        lines: &[ChatLine],
        through_seq: u64,
    ) -> Result<(), StoreError> {
        self.run_then(self.consult_projection(row, lines, through_seq))
            .await
    }

    /// The statements that bring consult `row.id`'s projection up to journal
    /// sequence `through_seq`: `lines` inserted (those already there are
    /// left alone) in statements of at most [`CHAT_BATCH`] rows, then the
    /// consult row, which records `through_seq` as its `projected_seq` (and
    /// `journal_seq`; a row reflecting a later sequence is left alone). Chat
    /// text is sealed per line, as [`Self::project_chat`] seals it. A
    /// recovery catching up thousands of lines makes a handful of
    /// statements, never one per line. Run on their own
    /// ([`Self::project_consult_through`]) or in the transaction of the
    /// journal append they project ([`Self::append_then`]).
    pub fn consult_projection(
        &self,
        row: &ConsultRow,
        lines: &[ChatLine],
        through_seq: u64,
    ) -> Then {
        let pg = self.backend() == "postgres";
        let upsert = self.dialect(
            "INSERT INTO consults (id, patient_id, clinician_id, status, requested_ms, updated_ms, journal_seq, \
             reason, notes, started_ms, ended_ms, projected_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $7) ON CONFLICT (id) DO UPDATE SET \
             clinician_id = excluded.clinician_id, status = excluded.status, updated_ms = excluded.updated_ms, \
             journal_seq = excluded.journal_seq, reason = excluded.reason, notes = excluded.notes, \
             started_ms = excluded.started_ms, ended_ms = excluded.ended_ms, projected_seq = excluded.projected_seq \
             WHERE consults.journal_seq <= excluded.journal_seq",
            "INSERT INTO consults (id, patient_id, clinician_id, status, requested_ms, updated_ms, journal_seq, \
             reason, notes, started_ms, ended_ms, projected_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?7) ON CONFLICT (id) DO UPDATE SET \
             clinician_id = excluded.clinician_id, status = excluded.status, updated_ms = excluded.updated_ms, \
             journal_seq = excluded.journal_seq, reason = excluded.reason, notes = excluded.notes, \
             started_ms = excluded.started_ms, ended_ms = excluded.ended_ms, projected_seq = excluded.projected_seq \
             WHERE consults.journal_seq <= excluded.journal_seq",
        );
        let ad = super::sealed::ad("consults", &row.id, None);
        let reason = self.seal_text(&ad, &row.reason);
        let notes = row.notes.as_ref().map(|n| self.seal_text(&ad, n));
        let mut stmts: Vec<Stmt> = lines
            .chunks(CHAT_BATCH)
            .map(|chunk| {
                let mut sql = String::from(
                    "INSERT INTO chat_messages \
                     (consult_id, seq, author_role, author_id, client_message_id, text, at_ms) VALUES ",
                );
                let mut n = 1;
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    let mark = if pg { '$' } else { '?' };
                    sql.push('(');
                    for k in 0..7 {
                        if k > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("{mark}{n}"));
                        n += 1;
                    }
                    sql.push(')');
                }
                sql.push_str(" ON CONFLICT (consult_id, seq) DO NOTHING");
                let mut args = Vec::with_capacity(chunk.len() * 7);
                for line in chunk {
                    let (role, author) = party_columns(&line.author);
                    let text = self.seal_text(
                        &super::sealed::ad("chat_messages", &row.id, Some(line.seq as i64)),
                        &line.text,
                    );
                    args.extend([
                        Arg::Text(row.id.clone()),
                        Arg::Int(line.seq as i64),
                        Arg::Text(role.to_owned()),
                        Arg::Text(author.to_owned()),
                        Arg::Text(line.client_message_id.clone()),
                        Arg::Text(text),
                        Arg::Int(line.at_ms as i64),
                    ]);
                }
                Stmt { sql, args }
            })
            .collect();
        stmts.push(Stmt {
            sql: upsert.to_owned(),
            args: vec![
                Arg::Text(row.id.clone()),
                Arg::Text(row.patient_id.clone()),
                Arg::OptText(row.clinician_id.clone()),
                Arg::Text(Status::as_str(row.status).to_owned()),
                Arg::Int(row.requested_ms as i64),
                Arg::Int(unix_ms() as i64),
                Arg::Int(through_seq as i64),
                Arg::Text(reason),
                Arg::OptText(notes),
                Arg::OptInt(row.started_ms.map(|t| t as i64)),
                Arg::OptInt(row.ended_ms.map(|t| t as i64)),
            ],
        });
        Then(stmts)
    }

    /// The journal sequence consult `id`'s projection holds everything up
    /// to (0 when it has no row yet).
    pub async fn projected_seq(&self, id: &str) -> Result<u64, StoreError> {
        let sql = self.dialect(
            "SELECT projected_seq FROM consults WHERE id = $1",
            "SELECT projected_seq FROM consults WHERE id = ?1",
        );
        let seq: Option<i64> = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| r.try_get("projected_seq")).transpose()))?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// The sequence of the chat line `author` sent in consult `consult` with
    /// `client_message_id`, if projected (an indexed lookup: a retry older
    /// than what the actor keeps in memory).
    pub async fn chat_seq_of(
        &self,
        consult: &str,
        author: &Party,
        client_message_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let sql = self.dialect(CHAT_SEQ_OF_PG, CHAT_SEQ_OF_SQLITE);
        let (role, author) = party_columns(author);
        let seq: Option<i64> = with_pool!(self, pool => sqlx::query(sql)
            .bind(consult)
            .bind(role)
            .bind(author)
            .bind(client_message_id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| r.try_get("seq")).transpose()))?;
        Ok(seq.map(|s| s as u64))
    }

    /// A consult row as read: its reason and notes opened.
    async fn consult_opened(&self, raw: RawRow) -> Result<ConsultRow, StoreError> {
        let (id, patient_id, clinician_id, status, requested, reason, notes, started, ended) = raw;
        let ad = super::sealed::ad("consults", &id, None);
        let reason = self.open_text(&ad, reason).await?;
        let notes = match notes {
            Some(n) => Some(self.open_text(&ad, n).await?),
            None => None,
        };
        Ok(ConsultRow {
            status: parse_status(&status)?,
            id,
            patient_id,
            clinician_id,
            requested_ms: requested as u64,
            reason,
            notes,
            started_ms: started.map(|t| t as u64),
            ended_ms: ended.map(|t| t as u64),
        })
    }

    /// Writes a chat line (once).
    pub async fn project_chat(&self, consult: &str, line: &ChatLine) -> Result<(), StoreError> {
        let sql = self.dialect(
            "INSERT INTO chat_messages (consult_id, seq, author_role, author_id, client_message_id, text, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (consult_id, seq) DO NOTHING",
            "INSERT INTO chat_messages (consult_id, seq, author_role, author_id, client_message_id, text, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (consult_id, seq) DO NOTHING",
        );
        let (role, author) = party_columns(&line.author);
        let text = self.seal_text(
            &super::sealed::ad("chat_messages", consult, Some(line.seq as i64)),
            &line.text,
        );
        with_pool!(self, pool => sqlx::query(sql)
            .bind(consult)
            .bind(line.seq as i64)
            .bind(role)
            .bind(author)
            .bind(&line.client_message_id)
            .bind(&text)
            .bind(line.at_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// A patient's consults, oldest first.
    pub async fn consults_of(&self, patient: &str) -> Result<Vec<ConsultRow>, StoreError> {
        let sql = match self.backend() {
            "postgres" => format!(
                "SELECT {COLUMNS} FROM consults WHERE patient_id = $1 ORDER BY requested_ms, id COLLATE \"C\""
            ),
            _ => format!("SELECT {COLUMNS} FROM consults WHERE patient_id = ?1 ORDER BY requested_ms, id"),
        };
        let rows: Vec<RawRow> = with_pool!(self, pool => sqlx::query(&sql)
            .bind(patient)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| raw_row!(r)).collect()))?;
        let mut out = Vec::with_capacity(rows.len());
        for raw in rows {
            out.push(self.consult_opened(raw).await?);
        }
        Ok(out)
    }

    /// One page of consults, newest first (by request time, then id):
    /// those of `whose`, with a status in `statuses` (all when empty),
    /// requested before `before` (exclusive), at most `limit`.
    pub async fn consults_page(
        &self,
        whose: &ConsultsOf,
        statuses: &[Status],
        before: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<ConsultRow>, StoreError> {
        let pg = self.backend() == "postgres";
        let mut n = 0;
        let mut p = || {
            n += 1;
            if pg {
                format!("${n}")
            } else {
                format!("?{n}")
            }
        };
        let list = |k: usize, p: &mut dyn FnMut() -> String| {
            (0..k).map(|_| p()).collect::<Vec<_>>().join(", ")
        };
        let collate = if pg { " COLLATE \"C\"" } else { "" };
        let mut sql = format!("SELECT {COLUMNS} FROM consults WHERE ");
        match whose {
            ConsultsOf::Patient(_) => sql.push_str(&format!("patient_id = {}", p())),
            ConsultsOf::Clinician { patients, .. } => {
                if patients.is_empty() {
                    sql.push_str("1 = 0");
                } else {
                    let team = list(patients.len(), &mut p);
                    sql.push_str(&format!(
                        "patient_id IN ({team}) AND (status IN ('requested', 'waiting') OR clinician_id = {})",
                        p()
                    ));
                }
            }
        }
        if !statuses.is_empty() {
            sql.push_str(&format!(
                " AND status IN ({})",
                list(statuses.len(), &mut p)
            ));
        }
        if before.is_some() {
            let (a, b, c) = (p(), p(), p());
            sql.push_str(&format!(
                " AND (requested_ms < {a} OR (requested_ms = {b} AND id{collate} < {c}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY requested_ms DESC, id{collate} DESC LIMIT {}",
            p()
        ));
        let rows: Vec<RawRow> = with_pool!(self, pool => {
            let mut q = sqlx::query(&sql);
            match whose {
                ConsultsOf::Patient(id) => q = q.bind(id),
                ConsultsOf::Clinician { id, patients } if !patients.is_empty() => {
                    for patient in patients {
                        q = q.bind(patient);
                    }
                    q = q.bind(id);
                }
                ConsultsOf::Clinician { .. } => {}
            }
            for s in statuses {
                q = q.bind(s.as_str());
            }
            if let Some((ms, id)) = before {
                q = q.bind(ms as i64).bind(ms as i64).bind(id);
            }
            q.bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(|r| raw_row!(r)).collect())
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for raw in rows {
            out.push(self.consult_opened(raw).await?);
        }
        Ok(out)
    }

    /// One consult's row, if projected.
    pub async fn consult_row(&self, id: &str) -> Result<Option<ConsultRow>, StoreError> {
        let sql = match self.backend() {
            "postgres" => format!("SELECT {COLUMNS} FROM consults WHERE id = $1"),
            _ => format!("SELECT {COLUMNS} FROM consults WHERE id = ?1"),
        };
        let row: Option<RawRow> = with_pool!(self, pool => sqlx::query(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| raw_row!(&r)).transpose()))?;
        match row {
            Some(raw) => Ok(Some(self.consult_opened(raw).await?)),
            None => Ok(None),
        }
    }

    /// The consult `requester`'s request `request_id` names, for a
    /// registered `patient`: the one stored now if it was new (`consult`),
    /// or the one stored before, with its patient (which may be another).
    ///
    /// A new request of a registered patient (the usual case) is one
    /// statement, one round trip: the insert checks the patient and returns
    /// what it stored. Otherwise a second statement says which it was: an
    /// unknown patient (nothing stored) or a request id claimed before.
    pub async fn claim_consult_request(
        &self,
        requester: &str,
        request_id: &str,
        consult: &str,
        patient: &str,
    ) -> Result<ConsultClaim, StoreError> {
        let (insert, lookup) = (
            self.dialect(
                "INSERT INTO consult_requests (requester, request_id, consult_id, patient_id, at_ms) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM patients WHERE id = $4) \
                 ON CONFLICT (requester, request_id) DO NOTHING RETURNING consult_id, patient_id",
                "INSERT INTO consult_requests (requester, request_id, consult_id, patient_id, at_ms) \
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM patients WHERE id = ?4) \
                 ON CONFLICT (requester, request_id) DO NOTHING RETURNING consult_id, patient_id",
            ),
            // A statement of its own: it sees a claim that a concurrent
            // insert (which this one's conflict waited for) committed.
            self.dialect(
                "SELECT EXISTS (SELECT 1 FROM patients WHERE id = $3) AS known, consult_id, patient_id \
                 FROM (SELECT 1) AS one LEFT JOIN consult_requests ON requester = $1 AND request_id = $2",
                "SELECT EXISTS (SELECT 1 FROM patients WHERE id = ?3) AS known, consult_id, patient_id \
                 FROM (SELECT 1) AS one LEFT JOIN consult_requests ON requester = ?1 AND request_id = ?2",
            ),
        );
        // Twice at most: a patient registered between the two statements
        // finds neither a claim nor an unknown patient the first time.
        for _ in 0..2 {
            let stored: Option<(String, String)> = with_pool!(self, pool => sqlx::query(insert)
                .bind(requester)
                .bind(request_id)
                .bind(consult)
                .bind(patient)
                .bind(unix_ms() as i64)
                .fetch_optional(pool)
                .await
                .and_then(|r| r.map(|r| Ok((r.try_get("consult_id")?, r.try_get("patient_id")?))).transpose()))?;
            if let Some((consult, patient)) = stored {
                return Ok(ConsultClaim::Claimed { consult, patient });
            }
            let (known, before): (bool, Option<(String, String)>) = with_pool!(self, pool => sqlx::query(lookup)
            .bind(requester)
            .bind(request_id)
            .bind(patient)
            .fetch_one(pool)
            .await
            .and_then(|r| {
                let consult: Option<String> = r.try_get("consult_id")?;
                let patient: Option<String> = r.try_get("patient_id")?;
                Ok((r.try_get("known")?, consult.zip(patient)))
            }))?;
            match (known, before) {
                (false, _) => return Ok(ConsultClaim::UnknownPatient),
                (true, Some((consult, patient))) => {
                    return Ok(ConsultClaim::Claimed { consult, patient })
                }
                (true, None) => continue,
            }
        }
        // Neither stored nor found twice: answered as a store error (the
        // caller's retry, with the same id, is safe).
        Err(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Consults still requested or waiting (their no-show checks must run
    /// even if no participant comes back).
    pub async fn open_consults(&self) -> Result<Vec<String>, StoreError> {
        let sql = self.dialect(
            "SELECT id FROM consults WHERE status IN ('requested', 'waiting') ORDER BY id COLLATE \"C\"",
            "SELECT id FROM consults WHERE status IN ('requested', 'waiting') ORDER BY id",
        );
        let ids = with_pool!(self, pool => sqlx::query(sql)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>("id")).collect::<Result<Vec<_>, _>>()))?;
        Ok(ids)
    }

    /// What the store tells of consult `id` without starting its actor: its
    /// patient, from its projected row (a consult's patient never changes);
    /// or that it was journaled but not projected yet (the projection is
    /// written after the journal and may lag behind a failure); or that it
    /// was never requested. Lets the API refuse an unknown id without
    /// starting an actor for it, and learn a known one's patient without
    /// asking the actor.
    pub async fn consult_known(&self, id: &str) -> Result<ConsultKnown, StoreError> {
        let sql = self.dialect(
            "SELECT patient_id FROM consults WHERE id = $1",
            "SELECT patient_id FROM consults WHERE id = ?1",
        );
        let projected: Option<String> = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| r.try_get("patient_id")).transpose()))?;
        Ok(match projected {
            Some(patient) => ConsultKnown::Patient(patient),
            None if self.last_seq(&format!("consult/{id}")).await? > 0 => ConsultKnown::Journaled,
            None => ConsultKnown::Unknown,
        })
    }

    /// A consult's chat lines after `after`, in order.
    pub async fn chat_lines(&self, consult: &str, after: u64) -> Result<Vec<ChatLine>, StoreError> {
        let sql = self.dialect(
            "SELECT seq, author_role, author_id, client_message_id, text, at_ms FROM chat_messages \
             WHERE consult_id = $1 AND seq > $2 ORDER BY seq",
            "SELECT seq, author_role, author_id, client_message_id, text, at_ms FROM chat_messages \
             WHERE consult_id = ?1 AND seq > ?2 ORDER BY seq",
        );
        type Raw = (i64, String, String, String, String, i64);
        let rows: Vec<Raw> = with_pool!(self, pool => sqlx::query(sql)
            .bind(consult)
            .bind(after as i64)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((
                r.try_get("seq")?, r.try_get("author_role")?, r.try_get("author_id")?,
                r.try_get("client_message_id")?, r.try_get("text")?, r.try_get("at_ms")?,
            ))).collect()))?;
        let mut lines = Vec::with_capacity(rows.len());
        for (seq, role, author, client_message_id, text, at) in rows {
            let ad = super::sealed::ad("chat_messages", consult, Some(seq));
            lines.push(ChatLine {
                seq: seq as u64,
                author: if role == "clinician" {
                    Party::Clinician(author)
                } else {
                    Party::Patient(author)
                },
                client_message_id,
                text: self.open_text(&ad, text).await?,
                at_ms: at as u64,
            });
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    /// The planner seeks the lookup in its index: ordered by the primary key
    /// instead, it read the consult's every line per new line past the
    /// window (the plan SQLite chose before the index held `seq`).
    #[tokio::test]
    async fn a_retried_line_is_looked_up_in_its_index_not_by_reading_the_chat() {
        let (_dir, store) = crate::store::test_sqlite().await;
        let pool = store.sqlite_pool();
        let plan: Vec<String> = {
            use sqlx::Row;
            sqlx::query(&format!("EXPLAIN QUERY PLAN {}", super::CHAT_SEQ_OF_SQLITE))
                .bind("c")
                .bind("patient")
                .bind("p")
                .bind("m")
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect()
        };
        assert_eq!(
            plan,
            [
                "SEARCH chat_messages USING COVERING INDEX chat_messages_by_client \
              (consult_id=? AND author_role=? AND author_id=? AND client_message_id=?)"
            ],
        );
    }
}
