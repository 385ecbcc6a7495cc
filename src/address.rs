//! Where an actor lives, logically: its address `kind/id` ([`ActorId`]) and
//! the shard the address belongs to ([`shard_of`]). A leaf: the registry
//! finds actors by address, the bus routes to shard queues by it, the cluster
//! owns shards; none of them is needed to name an actor.
//!
//! The shard hash is xxh3 of the address bytes, fixed forever: shard numbers
//! name durable queues, so every node and every version must agree on them.
//! (`std`'s `DefaultHasher` may change between Rust releases.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id accepted (bytes).
pub const MAX_ID_LEN: usize = 128;

/// The logical address of an actor: its kind and its id within the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId {
    kind: String,
    id: String,
}

/// Why a string is not an actor address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorIdError {
    #[error("actor address must look like kind/id")]
    MissingSlash,
    #[error("actor kind is empty or has characters other than a-z, 0-9, '-' and '_'")]
    BadKind,
    #[error("actor id is empty, longer than {MAX_ID_LEN} bytes, or has characters other than letters, digits, '-', '_', '.', ':' and '@'")]
    BadId,
}

fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 32
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `id` may be an actor id (also used for ids coming from outside).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

impl ActorId {
    pub fn new(kind: &str, id: &str) -> Result<Self, ActorIdError> {
        if !valid_kind(kind) {
            return Err(ActorIdError::BadKind);
        }
        if !valid_id(id) {
            return Err(ActorIdError::BadId);
        }
        Ok(Self {
            kind: kind.to_owned(),
            id: id.to_owned(),
        })
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl FromStr for ActorId {
    type Err = ActorIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s.split_once('/').ok_or(ActorIdError::MissingSlash)?;
        ActorId::new(kind, id)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

impl Serialize for ActorId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActorId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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
    fn parses_and_prints_kind_slash_id() {
        let a: ActorId = "consult/c-17".parse().unwrap();
        assert_eq!((a.kind(), a.id()), ("consult", "c-17"));
        assert_eq!(a.to_string(), "consult/c-17");
        let b: ActorId = "device/ecg:0f:aa@ward-3".parse().unwrap();
        assert_eq!(b.id(), "ecg:0f:aa@ward-3");
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        assert_eq!(
            "consult".parse::<ActorId>(),
            Err(ActorIdError::MissingSlash)
        );
        assert_eq!("/x".parse::<ActorId>(), Err(ActorIdError::BadKind));
        assert_eq!("Consult/x".parse::<ActorId>(), Err(ActorIdError::BadKind));
        assert_eq!("consult/".parse::<ActorId>(), Err(ActorIdError::BadId));
        assert_eq!("consult/a/b".parse::<ActorId>(), Err(ActorIdError::BadId));
        assert_eq!("consult/a b".parse::<ActorId>(), Err(ActorIdError::BadId));
        let long = format!("consult/{}", "x".repeat(MAX_ID_LEN + 1));
        assert_eq!(long.parse::<ActorId>(), Err(ActorIdError::BadId));
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        let a: ActorId = "session/p-1".parse().unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"session/p-1\"");
        assert_eq!(serde_json::from_str::<ActorId>(&json).unwrap(), a);
        assert!(serde_json::from_str::<ActorId>("\"nope\"").is_err());
    }

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
