//! Keyed pseudonyms for identifiers that logs and ops views must not show:
//! a patient's id (the session actor is named by it), and the consult and
//! device ids linked to a patient. A pseudonym is the first 8 bytes of
//! HMAC-SHA-256 under a cluster-wide key, as `#` and 16 hex digits: stable
//! across nodes and restarts (the key is kept in the database, see
//! `Store::cluster_secret`), so one actor can be followed through the logs and
//! the tree, yet nobody without the key can confirm that a known patient id is
//! online by hashing it (a plain SHA-256 prefix allowed that).
//!
//! Until a node sets the cluster's key (tools, unit tests) a random key of
//! the process is used: pseudonyms are then keyed but not stable.

use std::sync::{OnceLock, RwLock};

use hmac::{Hmac, Mac};

/// The cluster's key, once the node read it.
static KEY: RwLock<Option<[u8; 32]>> = RwLock::new(None);
/// The process's own key, before (or without) the cluster's.
static EPHEMERAL: OnceLock<[u8; 32]> = OnceLock::new();

/// The kinds of actor whose ids name or lead to a patient.
const ENTITY_ROOT: &str = "/cardio/entities/";

/// Uses `key` (the cluster's) from now on.
pub fn set_key(key: [u8; 32]) {
    *KEY.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
}

/// A fresh random key (two v4 UUIDs: 244 random bits from the OS).
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

fn key() -> [u8; 32] {
    if let Some(k) = *KEY.read().unwrap_or_else(|e| e.into_inner()) {
        return k;
    }
    *EPHEMERAL.get_or_init(random_key)
}

/// `id`'s pseudonym under `key`: `#` and 16 hex digits.
pub fn keyed(key: &[u8], id: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}

/// `id`'s pseudonym under the cluster's key.
pub fn id(id: &str) -> String {
    keyed(&key(), id)
}

/// An actor key `kind/id` with its id pseudonymised (`session/#…`); an id
/// already a pseudonym is left as it is.
pub fn actor_key(key: &str) -> String {
    match key.split_once('/') {
        Some((kind, rest)) if !rest.is_empty() && !rest.starts_with('#') => {
            format!("{kind}/{}", id(rest))
        }
        Some(_) => key.to_owned(),
        None => id(key),
    }
}

/// A supervision path with the id of an entity actor
/// (`/cardio/entities/<kind>/<id>`) pseudonymised; supervisors' paths are
/// left as they are.
pub fn actor_path(path: &str) -> String {
    match path.strip_prefix(ENTITY_ROOT) {
        Some(rest) if rest.contains('/') => format!("{ENTITY_ROOT}{}", actor_key(rest)),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pseudonym_depends_on_the_key_and_is_not_the_plain_hash() {
        use sha2::Digest;
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(keyed(&a, "patient-1"), keyed(&a, "patient-1"));
        assert_ne!(keyed(&a, "patient-1"), keyed(&b, "patient-1"));
        assert_ne!(keyed(&a, "patient-1"), keyed(&a, "patient-2"));
        let plain: String = sha2::Sha256::digest(b"patient-1")
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(keyed(&a, "patient-1"), format!("#{plain}"));
        assert_eq!(keyed(&a, "x").len(), 17);
    }

    #[test]
    fn keys_and_paths_keep_their_kind_and_lose_their_id() {
        let k = actor_key("session/patient-7");
        assert!(
            k.starts_with("session/#") && !k.contains("patient-7"),
            "{k}"
        );
        assert_eq!(actor_key(&k), k);
        let p = actor_path("/cardio/entities/session/patient-7");
        assert!(p.starts_with("/cardio/entities/session/#"), "{p}");
        assert!(!p.contains("patient-7"));
        assert_eq!(actor_path("/cardio/entities"), "/cardio/entities");
        assert_eq!(actor_path("/cardio"), "/cardio");
    }
}
