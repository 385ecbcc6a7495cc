//! One write round: the statements of a batch of writes in one transaction
//! (on either database, through [`super::tx`]), and the answer to each.

use super::tx::{AuditRow, Database, RoundTx};
use super::{AppendOp, AppendOutcome, Arg, Op, Reply, Stmt, MAX_BATCH};
use super::{FIND_PG, FIND_SQLITE};
use crate::crypto::AuditKey;
use crate::store::audit::{chain_hash, AuditEntry, HEAD_PG, HEAD_SQLITE};
use crate::store::audit::{SET_HEAD_PG, SET_HEAD_SQLITE};
use crate::store::cluster::{EPOCH_PG, EPOCH_SQLITE};
use crate::store::StoreError;

/// The statement appending `rows` journal entries, each written only if its
/// message is new and its `seq` follows its actor's last entry, and (when it
/// names a shard) only while its epoch is that shard's current one. A row
/// that fails its checks, or that a writer racing from another transaction
/// took first, inserts nothing rather than failing the round (`ON CONFLICT
/// DO NOTHING` raises no error, so a PostgreSQL transaction is never
/// aborted by it). Returns the actor of each row written: the rows of one
/// statement are of different actors ([`pieces`]), and each row's checks
/// see the journal as it was before the statement.
///
/// On PostgreSQL the shard row is share-locked, so a claim waits for the
/// round in flight and an append after a claim sees the new epoch.
fn insert_rows(postgres: bool, rows: usize) -> String {
    const COLUMNS: usize = 7;
    let mut sql = String::with_capacity(400 + rows * 40);
    sql.push_str(
        "INSERT INTO journal (actor_id, seq, message_id, epoch, payload, at_ms) \
         SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (VALUES ",
    );
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..COLUMNS {
            if col > 0 {
                sql.push_str(", ");
            }
            if postgres {
                sql.push_str(&format!("${}", row * COLUMNS + col + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(
        ") AS v \
         WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.actor_id = v.column1 AND j.message_id = v.column3) \
         AND (SELECT COALESCE(MAX(j.seq), 0) FROM journal j WHERE j.actor_id = v.column1) = v.column2 - 1 \
         AND (v.column7 IS NULL OR EXISTS (SELECT 1 FROM shard_owners o \
              WHERE o.shard = v.column7 AND o.epoch = v.column4",
    );
    sql.push_str(if postgres { " FOR SHARE)) " } else { ")) " });
    sql.push_str("ON CONFLICT DO NOTHING RETURNING actor_id");
    sql
}

/// [`insert_rows`] of `rows` (a power of two up to [`MAX_BATCH`], see
/// [`chunked`]), built once per process rather than once per round.
fn insert_statement(postgres: bool, rows: usize) -> &'static str {
    const SIZES: usize = MAX_BATCH.ilog2() as usize + 1;
    static TEXTS: [[std::sync::OnceLock<String>; SIZES]; 2] =
        [const { [const { std::sync::OnceLock::new() }; SIZES] }; 2];
    debug_assert!(rows.is_power_of_two() && rows <= MAX_BATCH);
    TEXTS[usize::from(postgres)][rows.ilog2() as usize].get_or_init(|| insert_rows(postgres, rows))
}

/// A round's writes in the order they are committed.
#[derive(Debug, PartialEq)]
enum Piece {
    /// Appends (indexes into the round) of different actors, in one
    /// statement per chunk ([`chunked`]).
    Appends(Vec<usize>),
    /// A projection's statements (its index in the round).
    Project(usize),
}

/// Splits a round into pieces, in order: a run of appends ends where an
/// actor comes again (its second append must see its first) or where a
/// projection comes (which may read what the appends before it wrote).
fn pieces(ops: &[&Op]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut actors = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Append(a) => {
                if !actors.insert(a.actor.as_str()) {
                    pieces.push(Piece::Appends(std::mem::take(&mut run)));
                    actors.clear();
                    actors.insert(a.actor.as_str());
                }
                run.push(i);
            }
            Op::Project(_) => {
                if !run.is_empty() {
                    pieces.push(Piece::Appends(std::mem::take(&mut run)));
                    actors.clear();
                }
                pieces.push(Piece::Project(i));
            }
            Op::Audit(..) => {}
        }
    }
    if !run.is_empty() {
        pieces.push(Piece::Appends(run));
    }
    pieces
}

/// `at` in chunks of a power of two rows, largest first: the few statement
/// texts this makes ([`insert_rows`] of 1, 2, 4, … [`MAX_BATCH`] rows) stay
/// prepared in each connection's statement cache.
fn chunked(at: &[usize]) -> Vec<&[usize]> {
    let mut chunks = Vec::new();
    let mut rest = at;
    while !rest.is_empty() {
        let size = 1 << rest.len().ilog2();
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Commits `ops` in one transaction of `db`: the appends in order (each
/// with its own checks, and its statements if written), then the audit
/// entries after one move of the chain's head. One reply per op, in order.
pub(super) async fn commit<D: Database>(
    db: &mut D,
    ops: &[&Op],
    postgres: bool,
) -> Result<Vec<Reply>, StoreError> {
    let dialect = |pg: &'static str, sqlite: &'static str| if postgres { pg } else { sqlite };
    let (find, epoch_of) = (
        dialect(FIND_PG, FIND_SQLITE),
        dialect(EPOCH_PG, EPOCH_SQLITE),
    );
    let (head, set_head) = (
        dialect(HEAD_PG, HEAD_SQLITE),
        dialect(SET_HEAD_PG, SET_HEAD_SQLITE),
    );
    let audits: Vec<(&AuditEntry, &AuditKey)> = ops
        .iter()
        .flat_map(|op| {
            let (one, carried): (_, &[(AuditEntry, AuditKey)]) = match op {
                Op::Audit(e, k) => (Some((e, k)), &[]),
                Op::Append(a) => (None, &a.audit),
                Op::Project(_) => (None, &[]),
            };
            one.into_iter().chain(carried.iter().map(|(e, k)| (e, k)))
        })
        .collect();
    let append = |i: usize| -> &AppendOp {
        let Op::Append(a) = ops[i] else {
            unreachable!("a piece of appends holds appends")
        };
        a
    };
    let mut tx = db.begin().await?;
    // Per op, what the round found for it (appends only).
    let mut outcome: Vec<Option<AppendOutcome>> = vec![None; ops.len()];
    for piece in pieces(ops) {
        let at = match piece {
            Piece::Appends(at) => at,
            Piece::Project(i) => {
                let Op::Project(then) = ops[i] else {
                    unreachable!("a projection's piece holds a projection")
                };
                for stmt in &then.0 {
                    tx.run(stmt).await?;
                }
                continue;
            }
        };
        // The appends of the piece in one statement per chunk (no actor
        // twice in a piece: each row's checks see the journal as it was
        // before the statement).
        let mut written = std::collections::HashSet::new();
        for chunk in chunked(&at) {
            let rows: Vec<&AppendOp> = chunk.iter().map(|i| append(*i)).collect();
            written.extend(
                tx.insert(insert_statement(postgres, rows.len()), &rows)
                    .await?,
            );
        }
        for i in at {
            let a = append(i);
            let found = if written.contains(&a.actor) {
                for stmt in &a.then.0 {
                    tx.run(stmt).await?;
                }
                AppendOutcome::Written
            } else {
                let ids = [Arg::Text(a.actor.clone()), Arg::Text(a.message_id.clone())];
                match (tx.integer(find, &ids).await?, a.shard) {
                    (Some(seq), _) => AppendOutcome::Known(seq as u64),
                    (None, None) => AppendOutcome::Refused { shard_epoch: None },
                    (None, Some(shard)) => {
                        let epoch = tx.integer(epoch_of, &[Arg::Int(shard.into())]).await?;
                        AppendOutcome::Refused {
                            shard_epoch: Some(epoch.unwrap_or(0) as u64),
                        }
                    }
                }
            };
            outcome[i] = Some(found);
        }
    }
    let mut audit_seq = 0;
    if !audits.is_empty() {
        // Moving the head locks it: rounds chain one after another, across
        // nodes too.
        let (last, mut prev) = tx.move_head(head, audits.len() as i64).await?;
        audit_seq = last as u64 + 1 - audits.len() as u64;
        let mut rows: Vec<AuditRow> = Vec::with_capacity(audits.len());
        for (i, (entry, key)) in audits.iter().enumerate() {
            let seq = audit_seq + i as u64;
            let hash = chain_hash(key, &prev, seq, entry);
            rows.push((
                seq,
                *entry,
                std::mem::replace(&mut prev, hash.clone()),
                hash,
            ));
        }
        tx.insert_audit(&rows).await?;
        tx.run(&Stmt {
            sql: set_head.into(),
            args: vec![Arg::Text(prev)],
        })
        .await?;
    }
    tx.commit().await?;
    let mut appended = outcome.into_iter().flatten();
    Ok(ops
        .iter()
        .map(|op| match op {
            Op::Append(a) => {
                // Its entries took the next places in the chain.
                audit_seq += a.audit.len() as u64;
                Reply::Append(appended.next().expect("one outcome per append"))
            }
            Op::Audit(..) => {
                audit_seq += 1;
                Reply::Audit(audit_seq - 1)
            }
            Op::Project(_) => Reply::Projected,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    fn append(actor: &str) -> super::Op {
        super::Op::Append(super::AppendOp {
            actor: actor.into(),
            seq: 1,
            message_id: "m".into(),
            epoch: 0,
            payload: Vec::new(),
            at_ms: 0,
            shard: None,
            then: crate::store::writer::Then::nothing(),
            audit: Vec::new(),
        })
    }

    #[test]
    fn a_round_splits_where_an_actor_comes_again_or_a_projection_comes() {
        use super::{pieces, Op, Piece};
        use crate::store::writer::Then;
        let ops = [
            append("a"),
            append("b"),
            append("a"),
            append("c"),
            Op::Project(Then::nothing()),
            append("c"),
            append("d"),
        ];
        let ops: Vec<&Op> = ops.iter().collect();
        assert_eq!(
            pieces(&ops),
            [
                Piece::Appends(vec![0, 1]),
                Piece::Appends(vec![2, 3]),
                Piece::Project(4),
                Piece::Appends(vec![5, 6]),
            ]
        );
    }

    #[test]
    fn appends_go_in_chunks_of_a_power_of_two_largest_first() {
        let at: Vec<usize> = (0..25).collect();
        let sizes: Vec<usize> = super::chunked(&at).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [16, 8, 1]);
        assert_eq!(super::chunked(&at).concat(), at);
        assert!(super::chunked(&[]).is_empty());
    }

    #[test]
    fn the_rows_statement_has_one_placeholder_per_value() {
        let pg = super::insert_rows(true, 3);
        assert!(pg.contains("($15, $16, $17, $18, $19, $20, $21)") && !pg.contains("$22"));
        assert!(pg.contains("FOR SHARE"));
        let sqlite = super::insert_rows(false, 3);
        assert_eq!(sqlite.matches('?').count(), 21);
        assert!(!sqlite.contains("FOR SHARE"));
    }
}
