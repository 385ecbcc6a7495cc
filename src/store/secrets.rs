//! Secrets the nodes of a cluster share (table `cluster_secrets`): made by
//! the first node that asks, then read by every node, so all agree.

use sqlx::Row;

use super::{with_pool, Store, StoreError};

impl Store {
    /// The 32-byte secret `name`, made from `fresh` if no node made it yet
    /// (the first writer wins; every caller gets the stored one).
    pub async fn cluster_secret(
        &self,
        name: &str,
        fresh: [u8; 32],
    ) -> Result<[u8; 32], StoreError> {
        let insert = self.dialect(
            "INSERT INTO cluster_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            "INSERT INTO cluster_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        );
        let select = self.dialect(
            "SELECT value FROM cluster_secrets WHERE name = $1",
            "SELECT value FROM cluster_secrets WHERE name = ?1",
        );
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        with_pool!(self, pool => sqlx::query(insert).bind(name).bind(&hex).execute(pool).await.map(|_| ()))?;
        let stored: String = with_pool!(self, pool => sqlx::query(select)
            .bind(name)
            .fetch_one(pool)
            .await
            .and_then(|r| r.try_get("value")))?;
        decode(&stored).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("cluster secret {name:?} is not 64 hex digits").into(),
            ))
        })
    }
}

fn decode(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
