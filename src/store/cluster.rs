//! Cluster membership (node leases) and shard ownership with fencing epochs.

use sqlx::Row;

use super::{with_pool, Store, StoreError};

/// One node as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub id: String,
    pub addr: String,
    pub status: String,
    pub started_ms: u64,
    pub last_seen_ms: u64,
    pub lease_until_ms: u64,
    /// Since when it has been renewing its lease without a lapse (joining,
    /// or woken from a stall, starts it again).
    pub up_since_ms: u64,
}

/// Who owns a shard, under which epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardRow {
    pub id: u16,
    pub owner: Option<String>,
    pub epoch: u64,
    pub since_ms: u64,
}

const HEARTBEAT_PG: &str = "INSERT INTO cluster_nodes \
     (id, addr, status, started_ms, last_seen_ms, lease_until_ms, up_since_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, status = excluded.status, \
     started_ms = excluded.started_ms, last_seen_ms = excluded.last_seen_ms, \
     lease_until_ms = excluded.lease_until_ms, up_since_ms = excluded.up_since_ms";
const HEARTBEAT_SQLITE: &str = "INSERT INTO cluster_nodes \
     (id, addr, status, started_ms, last_seen_ms, lease_until_ms, up_since_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, status = excluded.status, \
     started_ms = excluded.started_ms, last_seen_ms = excluded.last_seen_ms, \
     lease_until_ms = excluded.lease_until_ms, up_since_ms = excluded.up_since_ms";
const NODES: &str =
    "SELECT id, addr, status, started_ms, last_seen_ms, lease_until_ms, up_since_ms \
     FROM cluster_nodes ORDER BY id";
const SHARDS: &str = "SELECT shard, owner, epoch, since_ms FROM shard_owners ORDER BY shard";
const CLAIM_PG: &str = "INSERT INTO shard_owners (shard, owner, epoch, since_ms) \
     VALUES ($1, $2, 1, $3) ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner, \
     epoch = shard_owners.epoch + 1, since_ms = excluded.since_ms RETURNING epoch";
const CLAIM_SQLITE: &str = "INSERT INTO shard_owners (shard, owner, epoch, since_ms) \
     VALUES (?1, ?2, 1, ?3) ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner, \
     epoch = shard_owners.epoch + 1, since_ms = excluded.since_ms RETURNING epoch";
// The same, only if the shard is still at the epoch the claimer saw (0: no row).
const CLAIM_SEEN_PG: &str = "INSERT INTO shard_owners (shard, owner, epoch, since_ms) \
     VALUES ($1, $2, 1, $3) ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner, \
     epoch = shard_owners.epoch + 1, since_ms = excluded.since_ms \
     WHERE shard_owners.epoch = $4 RETURNING epoch";
const CLAIM_SEEN_SQLITE: &str = "INSERT INTO shard_owners (shard, owner, epoch, since_ms) \
     VALUES (?1, ?2, 1, ?3) ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner, \
     epoch = shard_owners.epoch + 1, since_ms = excluded.since_ms \
     WHERE shard_owners.epoch = ?4 RETURNING epoch";
const RELEASE_PG: &str = "UPDATE shard_owners SET owner = NULL, since_ms = $4 \
     WHERE shard = $1 AND owner = $2 AND epoch = $3";
const RELEASE_SQLITE: &str = "UPDATE shard_owners SET owner = NULL, since_ms = ?4 \
     WHERE shard = ?1 AND owner = ?2 AND epoch = ?3";
const CONSUMERS: &str = "SELECT shard, node FROM shard_consumers ORDER BY shard, node";
const CONSUMING_PG: &str =
    "INSERT INTO shard_consumers (shard, node, since_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (shard, node) DO UPDATE SET since_ms = excluded.since_ms";
const CONSUMING_SQLITE: &str =
    "INSERT INTO shard_consumers (shard, node, since_ms) VALUES (?1, ?2, ?3) \
     ON CONFLICT (shard, node) DO UPDATE SET since_ms = excluded.since_ms";
const NOT_CONSUMING_PG: &str = "DELETE FROM shard_consumers WHERE shard = $1 AND node = $2";
const NOT_CONSUMING_SQLITE: &str = "DELETE FROM shard_consumers WHERE shard = ?1 AND node = ?2";
const FORGET_CONSUMERS_PG: &str = "DELETE FROM shard_consumers WHERE node = $1";
const FORGET_CONSUMERS_SQLITE: &str = "DELETE FROM shard_consumers WHERE node = ?1";
pub(super) const EPOCH_PG: &str = "SELECT epoch FROM shard_owners WHERE shard = $1";
pub(super) const EPOCH_SQLITE: &str = "SELECT epoch FROM shard_owners WHERE shard = ?1";

impl Store {
    /// Writes `node`'s row (its lease runs to `lease_until_ms`).
    pub async fn heartbeat(&self, node: &NodeRow) -> Result<(), StoreError> {
        let q = self.dialect(HEARTBEAT_PG, HEARTBEAT_SQLITE);
        with_pool!(self, pool => sqlx::query(q)
            .bind(&node.id)
            .bind(&node.addr)
            .bind(&node.status)
            .bind(node.started_ms as i64)
            .bind(node.last_seen_ms as i64)
            .bind(node.lease_until_ms as i64)
            .bind(node.up_since_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Every node that ever joined, by id.
    pub async fn cluster_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = with_pool!(self, pool => sqlx::query(NODES).fetch_all(pool).await.and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(NodeRow {
                        id: r.try_get("id")?,
                        addr: r.try_get("addr")?,
                        status: r.try_get("status")?,
                        started_ms: r.try_get::<i64, _>("started_ms")? as u64,
                        last_seen_ms: r.try_get::<i64, _>("last_seen_ms")? as u64,
                        lease_until_ms: r.try_get::<i64, _>("lease_until_ms")? as u64,
                        up_since_ms: r.try_get::<i64, _>("up_since_ms")? as u64,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }))?;
        Ok(rows)
    }

    /// Every shard that was ever owned, by number.
    pub async fn shard_owners(&self) -> Result<Vec<ShardRow>, StoreError> {
        let rows = with_pool!(self, pool => sqlx::query(SHARDS).fetch_all(pool).await.and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(ShardRow {
                        id: r.try_get::<i32, _>("shard")? as u16,
                        owner: r.try_get("owner")?,
                        epoch: r.try_get::<i64, _>("epoch")? as u64,
                        since_ms: r.try_get::<i64, _>("since_ms")? as u64,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }))?;
        Ok(rows)
    }

    /// Takes shards for `node`, bumping each one's epoch, in one transaction:
    /// `(shard, None)` unconditionally (the broker made this node the shard's
    /// consumer), `(shard, Some(seen))` only if the shard is still at epoch
    /// `seen` (0: never owned). Returns the shards taken, with their epochs.
    pub async fn claim_shards(
        &self,
        node: &str,
        claims: &[(u16, Option<u64>)],
        now_ms: u64,
    ) -> Result<Vec<(u16, u64)>, StoreError> {
        let (always, seen) = (
            self.dialect(CLAIM_PG, CLAIM_SQLITE),
            self.dialect(CLAIM_SEEN_PG, CLAIM_SEEN_SQLITE),
        );
        let claimed = with_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let mut out = Vec::with_capacity(claims.len());
            for &(shard, expected) in claims {
                let q = sqlx::query(if expected.is_some() { seen } else { always })
                    .bind(i32::from(shard))
                    .bind(node)
                    .bind(now_ms as i64);
                let q = match expected {
                    Some(e) => q.bind(e as i64),
                    None => q,
                };
                if let Some(row) = q.fetch_optional(&mut *tx).await? {
                    out.push((shard, row.try_get::<i64, _>("epoch")? as u64));
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(out)
        }
        .await)?;
        Ok(claimed)
    }

    /// Gives `shard` up if `node` still holds it at `epoch`; false if it had
    /// moved on already.
    pub async fn release_shard(
        &self,
        node: &str,
        shard: u16,
        epoch: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let q = self.dialect(RELEASE_PG, RELEASE_SQLITE);
        let n = with_pool!(self, pool => sqlx::query(q)
            .bind(i32::from(shard))
            .bind(node)
            .bind(epoch as i64)
            .bind(now_ms as i64)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Who has a consumer registered on which shard's queue, as
    /// `(shard, node)` (see the `shard_consumers` migration).
    pub async fn shard_consumers(&self) -> Result<Vec<(u16, String)>, StoreError> {
        let rows = with_pool!(self, pool => sqlx::query(CONSUMERS).fetch_all(pool).await.and_then(|rows| {
            rows.iter()
                .map(|r| Ok((r.try_get::<i32, _>("shard")? as u16, r.try_get("node")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }))?;
        Ok(rows)
    }

    /// Records whether `node` has a consumer on `shard`'s queue.
    pub async fn set_consuming(
        &self,
        node: &str,
        shard: u16,
        consuming: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if consuming {
            let q = self.dialect(CONSUMING_PG, CONSUMING_SQLITE);
            with_pool!(self, pool => sqlx::query(q)
                .bind(i32::from(shard))
                .bind(node)
                .bind(now_ms as i64)
                .execute(pool)
                .await
                .map(|_| ()))?;
        } else {
            let q = self.dialect(NOT_CONSUMING_PG, NOT_CONSUMING_SQLITE);
            with_pool!(self, pool => sqlx::query(q)
                .bind(i32::from(shard))
                .bind(node)
                .execute(pool)
                .await
                .map(|_| ()))?;
        }
        Ok(())
    }

    /// Forgets every consumer `node` had (a node starting has none yet).
    pub async fn forget_consumers(&self, node: &str) -> Result<(), StoreError> {
        let q = self.dialect(FORGET_CONSUMERS_PG, FORGET_CONSUMERS_SQLITE);
        with_pool!(self, pool => sqlx::query(q).bind(node).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The current epoch of `shard` (0 if never owned).
    pub async fn shard_epoch(&self, shard: u16) -> Result<u64, StoreError> {
        let q = self.dialect(EPOCH_PG, EPOCH_SQLITE);
        let epoch: Option<i64> = with_pool!(self, pool => sqlx::query(q)
            .bind(i32::from(shard))
            .fetch_optional(pool)
            .await
            .and_then(|row| row.map(|row| row.try_get("epoch")).transpose()))?;
        Ok(epoch.unwrap_or(0) as u64)
    }
}
