//! Shard arithmetic and the shards a node holds: below the store (which
//! makes every journal write conditional on a [`Fence`]) and the cluster
//! (which takes and hands over shards).

use std::sync::Arc;

use dashmap::DashMap;

/// Shard of a journal key (`kind/id`): the same as `cluster::shard_of` its address.
pub fn shard_of_key(key: &str, shards: u16) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(shards.max(1))) as u16
}

/// The shards this node holds, with the epoch it took each one at. Shared
/// with the store (`crate::store::Store`), which makes every journal write conditional on it.
pub struct Fence {
    shards: u16,
    held: DashMap<u16, u64>,
}

impl Fence {
    pub fn new(shards: u16) -> Arc<Fence> {
        Arc::new(Fence {
            shards,
            held: DashMap::new(),
        })
    }

    pub fn shard_of_key(&self, key: &str) -> u16 {
        shard_of_key(key, self.shards)
    }

    /// The epoch `shard` is held at, if held.
    pub fn epoch(&self, shard: u16) -> Option<u64> {
        self.held.get(&shard).map(|e| *e)
    }

    pub fn hold(&self, shard: u16, epoch: u64) {
        self.held.insert(shard, epoch);
    }

    /// Stops holding `shard`; returns the epoch it was held at.
    pub fn release(&self, shard: u16) -> Option<u64> {
        self.held.remove(&shard).map(|(_, e)| e)
    }

    /// A write found `shard` moved past `epoch`: stop holding it (unless it
    /// was taken again since).
    pub fn lost(&self, shard: u16, epoch: u64) {
        self.held.remove_if(&shard, |_, e| *e == epoch);
    }

    /// Held shards, sorted.
    pub fn held(&self) -> Vec<(u16, u64)> {
        let mut v: Vec<_> = self.held.iter().map(|e| (*e.key(), *e.value())).collect();
        v.sort_unstable();
        v
    }
}
