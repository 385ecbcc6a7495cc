//! Placement: which shard an actor belongs to.
//!
//! The hash is xxh3 of the address bytes, fixed forever: shard numbers name
//! durable queues, so every node and every version must agree on them.
//! (`std`'s `DefaultHasher` may change between Rust releases.)

use crate::registry::ActorId;

/// Shard of `actor` among `shards` (> 0).
pub fn shard_of(actor: &ActorId, shards: u16) -> u16 {
    let mut key = Vec::with_capacity(actor.kind().len() + 1 + actor.id().len());
    key.extend_from_slice(actor.kind().as_bytes());
    key.push(b'/');
    key.extend_from_slice(actor.id().as_bytes());
    (xxhash_rust::xxh3::xxh3_64(&key) % u64::from(shards.max(1))) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_of_an_address_never_changes() {
        // Pinned values: changing them would move every actor of a running cluster.
        let a: ActorId = "consult/c-1".parse().unwrap();
        let b: ActorId = "device/d-42".parse().unwrap();
        assert_eq!(shard_of(&a, 64), shard_of(&a, 64));
        let pinned = (shard_of(&a, 64), shard_of(&b, 64));
        assert_eq!(pinned, (PINNED_A, PINNED_B));
    }

    const PINNED_A: u16 = 29;
    const PINNED_B: u16 = 36;

    #[test]
    fn addresses_spread_evenly_over_shards() {
        let shards = 64u16;
        let mut counts = vec![0u32; shards as usize];
        for i in 0..64_000 {
            let a = ActorId::new("device", &format!("d-{i}")).unwrap();
            counts[shard_of(&a, shards) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        // 1000 expected per shard; a fair hash stays well within ±15 %.
        assert!(*min > 850 && *max < 1150, "min {min} max {max}");
    }
}
