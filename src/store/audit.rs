//! The PHI audit trail: an append-only, hash-chained log of who read or wrote
//! which patient's records, allowed, refused or failed.
//!
//! Entry `n`'s hash is HMAC-SHA-256, under the audit key (held by the key
//! provider, outside the database: [`crate::crypto`]), over entry `n-1`'s
//! hash, `n` and every field of entry `n` (its JSON: a field added to
//! [`AuditEntry`] is covered without touching [`chain_hash`]). Without the key
//! no one can rewrite an entry and recompute the chain after it. Appends
//! run in one transaction that first moves the chain's head row, which
//! serialises them: the chain has no forks and no gaps. [`Store::verify_audit`]
//! recomputes the chain, checks it against signed checkpoints kept outside
//! the database ([`crate::crypto::checkpoint`]: truncation and wipes) and
//! names the first entry that does not fit.
//!
//! Group commit: entries go through the store's writer ([`super::writer`]),
//! with the journal appends of the same moment: entries that arrive while a
//! round is under way wait for the next one, which appends all of them after
//! a single move of the head, in the same transaction as the round's journal
//! appends; each caller still returns only once its entry is durable. The
//! head row is the cluster-wide serialisation point, so one transaction per
//! entry would cap every node together at one commit's latency per PHI
//! access.
//!
//! Entries name records and fields (`profile`, `vitals`), never their values:
//! the audit log holds no PHI itself.

use sqlx::Row;

use super::{with_pool, Store, StoreError};
use crate::crypto::{AuditKey, Checkpoint};

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    /// The principal's subject (an opaque id).
    pub subject: String,
    pub role: String,
    /// What was done: `read`, `write`, or an operation name (`patient`).
    pub action: String,
    /// The patient whose records were touched, if any.
    pub patient_id: Option<String>,
    /// The record kind or fields touched, comma-separated.
    pub fields: String,
    /// `allowed`, `refused` (not permitted) or `failed` (permitted, but the act did not happen).
    pub outcome: String,
}

/// The entry of an access whose effect is a journal append, carried to the
/// write so that both commit in one transaction
/// ([`Store::append_audited`](super::Store::append_audited)): the effect is
/// never durable without its entry, and a request waits for one write round,
/// not two in series. If no append takes it (a retry answered from memory, a
/// command refused), [`PendingAudit::settle`] writes it on its own before
/// the answer.
#[derive(Debug, Default)]
#[must_use = "an access's entry is written with its effect or settled on its own"]
pub struct PendingAudit(Option<AuditEntry>);

impl PendingAudit {
    pub fn new(entry: Option<AuditEntry>) -> PendingAudit {
        PendingAudit(entry)
    }

    /// The entry, while no committed write took it.
    pub fn pending(&self) -> Option<&AuditEntry> {
        self.0.as_ref()
    }

    /// A write round that held the entry committed.
    pub(crate) fn committed(&mut self) {
        self.0 = None;
    }

    /// Writes the entry on its own unless a write took it already.
    pub async fn settle(&mut self, store: &Store) -> Result<(), StoreError> {
        if let Some(entry) = &self.0 {
            store.audit(entry).await?;
            self.0 = None;
        }
        Ok(())
    }
}

/// A stored entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The first entry that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct BrokenLink {
    pub seq: u64,
    pub reason: String,
}

/// The hash of the chain before its first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of entry `seq` following `prev_hash`: HMAC-SHA-256 under `key`
/// over the previous hash, the sequence and the entry's JSON (every field,
/// in declaration order), each length-prefixed.
pub fn chain_hash(key: &AuditKey, prev_hash: &str, seq: u64, e: &AuditEntry) -> String {
    let fields = serde_json::to_vec(e).expect("an audit entry is plain JSON");
    crate::crypto::hex(&key.mac(&[
        b"cardio audit chain v2",
        prev_hash.as_bytes(),
        &seq.to_be_bytes(),
        &fields,
    ]))
}

/// The unkeyed SHA-256 hash of earlier versions (only to check a chain
/// before it is re-hashed with the key: [`Store::key_audit_chain`]).
fn legacy_chain_hash(prev_hash: &str, seq: u64, e: &AuditEntry) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(&e.at_ms.to_be_bytes());
    field(e.subject.as_bytes());
    field(e.role.as_bytes());
    field(e.action.as_bytes());
    match &e.patient_id {
        Some(p) => {
            field(b"1");
            field(p.as_bytes());
        }
        None => field(b"0"),
    }
    field(e.fields.as_bytes());
    field(e.outcome.as_bytes());
    crate::crypto::hex(&h.finalize())
}

/// Moves the head past a batch of `$1` entries: the last one's sequence, and
/// the hash before the batch.
pub(super) const HEAD_PG: &str =
    "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash";
pub(super) const HEAD_SQLITE: &str =
    "UPDATE audit_head SET seq = seq + ?1 WHERE id = 1 RETURNING seq, hash";
pub(super) const INSERT_ROWS: &str = "INSERT INTO audit_log \
     (seq, at_ms, subject, role, action, patient_id, fields, outcome, prev_hash, hash) ";
pub(super) const SET_HEAD_PG: &str = "UPDATE audit_head SET hash = $1 WHERE id = 1";
pub(super) const SET_HEAD_SQLITE: &str = "UPDATE audit_head SET hash = ?1 WHERE id = 1";
const PAGE_PG: &str = "SELECT seq, at_ms, subject, role, action, patient_id, fields, outcome, \
     prev_hash, hash FROM audit_log WHERE seq > $1 AND ($2::TEXT IS NULL OR patient_id = $2) \
     ORDER BY seq LIMIT $3";
const PAGE_SQLITE: &str = "SELECT seq, at_ms, subject, role, action, patient_id, fields, outcome, \
     prev_hash, hash FROM audit_log WHERE seq > ?1 AND (?2 IS NULL OR patient_id = ?2) \
     ORDER BY seq LIMIT ?3";

fn record(r: &impl RowLike) -> Result<AuditRecord, sqlx::Error> {
    r.record()
}

/// Reads a record from either database's row type.
trait RowLike {
    fn record(&self) -> Result<AuditRecord, sqlx::Error>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn record(&self) -> Result<AuditRecord, sqlx::Error> {
                Ok(AuditRecord {
                    seq: self.try_get::<i64, _>("seq")? as u64,
                    entry: AuditEntry {
                        at_ms: self.try_get::<i64, _>("at_ms")? as u64,
                        subject: self.try_get("subject")?,
                        role: self.try_get("role")?,
                        action: self.try_get("action")?,
                        patient_id: self.try_get("patient_id")?,
                        fields: self.try_get("fields")?,
                        outcome: self.try_get("outcome")?,
                    },
                    prev_hash: self.try_get("prev_hash")?,
                    hash: self.try_get("hash")?,
                })
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

impl Store {
    /// Up to `first` entries after `after`, of `patient` if given, in order.
    pub async fn audit_log(
        &self,
        patient: Option<&str>,
        after: u64,
        first: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = self.dialect(PAGE_PG, PAGE_SQLITE);
        let rows = with_pool!(self, pool => sqlx::query(q)
            .bind(after as i64)
            .bind(patient)
            .bind(i64::from(first))
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(record).collect::<Result<Vec<_>, _>>()))?;
        Ok(rows)
    }

    /// The chain's head: how many entries it has and the last one's hash.
    pub async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let head = "SELECT seq, hash FROM audit_head WHERE id = 1";
        let (seq, hash): (i64, String) = with_pool!(self, pool => sqlx::query(head)
            .fetch_one(pool)
            .await
            .and_then(|r| Ok((r.try_get("seq")?, r.try_get("hash")?))))?;
        Ok((seq as u64, hash))
    }

    /// Re-hashes a chain written by an earlier version (unkeyed SHA-256)
    /// with the audit key, once, after checking it link by link; `Ok(n)`:
    /// how many entries were re-hashed (0: it was keyed already). Refused
    /// when `checkpoints_exist` (a keyed chain existed: an unkeyed one now is
    /// tampering, which `cardio audit verify` reports) or the old chain is
    /// broken. Appends wait meanwhile (the head row is locked).
    pub async fn key_audit_chain(&self, checkpoints_exist: bool) -> Result<u64, StoreError> {
        let keyed: i64 = with_pool!(self, pool => sqlx::query("SELECT keyed FROM audit_head WHERE id = 1")
            .fetch_one(pool)
            .await
            .and_then(|r| r.try_get("keyed")))?;
        if keyed == 1 {
            return Ok(0);
        }
        if checkpoints_exist {
            return Err(StoreError::Audit(
                "the audit chain is marked unkeyed but checkpoints of a keyed chain exist: not re-hashing it (run cardio audit verify)".into(),
            ));
        }
        let lock = self.dialect(
            "UPDATE audit_head SET keyed = 1 WHERE id = 1 AND keyed = 0 RETURNING seq, hash",
            "UPDATE audit_head SET keyed = 1 WHERE id = 1 AND keyed = 0 RETURNING seq, hash",
        );
        let (page, rehash, set_head) = (
            self.dialect(PAGE_PG, PAGE_SQLITE),
            self.dialect(
                "UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3",
                "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            ),
            self.dialect(SET_HEAD_PG, SET_HEAD_SQLITE),
        );
        let key = self.audit_key.clone();
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(lock).fetch_optional(&mut *tx).await? else {
                return Ok::<_, sqlx::Error>(Err(0)); // another node did it
            };
            let (seq, head): (i64, String) = (row.try_get("seq")?, row.try_get("hash")?);
            let (mut old_prev, mut new_prev, mut expected) = (GENESIS.to_owned(), GENESIS.to_owned(), 1u64);
            loop {
                let rows = sqlx::query(page)
                    .bind(expected as i64 - 1)
                    .bind(None::<String>)
                    .bind(1000i64)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    break;
                }
                for r in rows.iter().map(record) {
                    let r = r?;
                    if r.seq != expected || r.prev_hash != old_prev
                        || legacy_chain_hash(&old_prev, r.seq, &r.entry) != r.hash
                    {
                        return Ok(Err(r.seq));
                    }
                    let hash = chain_hash(&key, &new_prev, r.seq, &r.entry);
                    sqlx::query(rehash).bind(&new_prev).bind(&hash).bind(r.seq as i64)
                        .execute(&mut *tx).await?;
                    old_prev = r.hash;
                    new_prev = hash;
                    expected += 1;
                }
            }
            if seq as u64 != expected - 1 || head != old_prev {
                return Ok(Err(expected));
            }
            sqlx::query(set_head).bind(&new_prev).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Ok(expected - 1))
        }
        .await)?;
        match n {
            Ok(n) => Ok(n),
            Err(0) => Ok(0),
            Err(seq) => Err(StoreError::Audit(format!(
                "the unkeyed audit chain of an earlier version is broken at entry {seq}: not re-hashing it"
            ))),
        }
    }

    /// A checkpoint of the chain's head now, signed with the audit key.
    pub async fn audit_checkpoint(&self, node: &str) -> Result<Checkpoint, StoreError> {
        let (seq, head) = self.audit_head().await?;
        Ok(Checkpoint::sign(&self.audit_key, seq, &head, node))
    }

    /// Recomputes the whole chain. `Ok(n)`: `n` entries, every link holds;
    /// `Err(Ok(link))`: the first entry that does not fit and why.
    pub async fn verify_audit(&self) -> Result<Result<u64, BrokenLink>, StoreError> {
        self.verify_audit_with(&[]).await
    }

    /// [`Self::verify_audit`], and the chain agrees with every checkpoint:
    /// each is signed with the audit key, and the chain reaches its entry
    /// with the same hash (a checkpoint past the chain's end: entries were
    /// cut off, or all wiped, even if the head was moved back).
    pub async fn verify_audit_with(
        &self,
        checkpoints: &[Checkpoint],
    ) -> Result<Result<u64, BrokenLink>, StoreError> {
        for c in checkpoints {
            if !c.genuine(&self.audit_key) {
                return Ok(Err(BrokenLink {
                    seq: c.seq,
                    reason: "a checkpoint is not signed with the audit key (forged, altered, or another key)".into(),
                }));
            }
        }
        // The heads the checkpoints saw, by entry: one look-up per entry
        // (a scan of every checkpoint per entry grew as their product).
        let mut heads: std::collections::HashMap<u64, Vec<&str>> = Default::default();
        for c in checkpoints {
            heads.entry(c.seq).or_default().push(&c.head);
        }
        let mut prev = GENESIS.to_owned();
        let mut expected = 1u64;
        loop {
            let page = self.audit_log(None, expected - 1, 1000).await?;
            if page.is_empty() {
                break;
            }
            for r in page {
                let broken = |reason: String| Ok(Err(BrokenLink { seq: r.seq, reason }));
                if r.seq != expected {
                    return broken(format!("entry {expected} is missing"));
                }
                if r.prev_hash != prev {
                    return broken("it does not link to the entry before it".into());
                }
                if chain_hash(&self.audit_key, &prev, r.seq, &r.entry) != r.hash {
                    return broken(
                        "its contents do not match its hash (altered, renumbered or forged without the audit key)".into(),
                    );
                }
                if heads
                    .get(&r.seq)
                    .is_some_and(|seen| seen.iter().any(|h| *h != r.hash))
                {
                    return broken(
                        "it differs from the checkpoint taken at it (the chain was rewritten)"
                            .into(),
                    );
                }
                prev = r.hash;
                expected += 1;
            }
        }
        let last = expected - 1;
        // Entries cut off at the end: the checkpoints, kept outside the
        // database, and the head remember how far the chain went.
        if let Some(c) = checkpoints
            .iter()
            .filter(|c| c.seq > last)
            .max_by_key(|c| c.seq)
        {
            return Ok(Err(BrokenLink {
                seq: last + 1,
                reason: format!(
                    "the chain ends at entry {last} but a checkpoint of {} (at {} ms) saw {} entries: entries were deleted from the end{}",
                    c.node,
                    c.at_ms,
                    c.seq,
                    if last == 0 { " (the log was wiped)" } else { "" }
                ),
            }));
        }
        let (seq, hash) = self.audit_head().await?;
        if seq != last || hash != prev {
            return Ok(Err(BrokenLink {
                seq: expected,
                reason: format!("the chain ends at entry {last} but its head says {seq}"),
            }));
        }
        Ok(Ok(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            at_ms: 1,
            subject: "dr-1".into(),
            role: "clinician".into(),
            action: "read".into(),
            patient_id: Some("p-1".into()),
            fields: "vitals".into(),
            outcome: "allowed".into(),
        }
    }

    fn chain_hash(prev: &str, seq: u64, e: &AuditEntry) -> String {
        super::chain_hash(&AuditKey::new([5; 32]), prev, seq, e)
    }

    #[test]
    fn every_field_and_the_previous_hash_count() {
        let base = chain_hash(GENESIS, 1, &entry());
        assert_ne!(
            base,
            super::chain_hash(&AuditKey::unkeyed(), GENESIS, 1, &entry())
        );
        assert_eq!(base.len(), 64);
        assert_eq!(base, chain_hash(GENESIS, 1, &entry()));
        assert_ne!(base, chain_hash(&base, 1, &entry()));
        assert_ne!(base, chain_hash(GENESIS, 2, &entry()));
        let mut e = entry();
        e.outcome = "denied".into();
        assert_ne!(base, chain_hash(GENESIS, 1, &e));
        let mut e = entry();
        e.patient_id = None;
        assert_ne!(base, chain_hash(GENESIS, 1, &e));
        // Length prefixes: moving a byte between fields changes the hash.
        let (mut a, mut b) = (entry(), entry());
        a.action = "readv".into();
        a.fields = "itals".into();
        b.action = "read".into();
        b.fields = "vitals".into();
        assert_ne!(chain_hash(GENESIS, 1, &a), chain_hash(GENESIS, 1, &b));
    }
}
