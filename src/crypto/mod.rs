//! Encryption of PHI at rest (envelope encryption) and the audit trail's key.
//!
//! Three levels of keys:
//! - a **key-encryption key** (KEK) held by a [`KeyProvider`], outside the
//!   database: a key file now ([`FileKeyProvider`]), a KMS (Vault Transit,
//!   AWS KMS) later, behind the same trait;
//! - **data keys** (DEKs): AES-256-GCM keys, one per node start, stored in
//!   the database only wrapped by a KEK (`data_keys` table, with the KEK's id);
//! - sealed values: each PHI field is sealed under the node's current DEK with
//!   a random nonce, and carries the DEK's id, so that values sealed under
//!   any earlier DEK still open and `cardio keys rotate` only re-wraps DEKs.
//!
//! A sealed value is `0xFF 0x01 | dek id (16) | nonce (12) | ciphertext+tag`
//! (in TEXT columns: [`TEXT_PREFIX`] and that in base64). No plaintext value
//! starts so (journal payloads are JSON; texts do not start with U+0001), which
//! is how legacy plaintext rows are told apart and sealed by the migration.
//! The associated data names the value's row (table, key columns), so a
//! value copied into another row does not open.
//!
//! The audit chain is HMAC-SHA-256 under [`AuditKey`], from the same provider.

pub mod checkpoint;
pub mod keyfile;
pub mod token_key;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::Mac as _;

pub use checkpoint::{Checkpoint, CheckpointSink, FileSink};
pub use keyfile::FileKeyProvider;

/// The first byte of a sealed value (never the first byte of UTF-8 text).
pub const MAGIC: u8 = 0xFF;
/// The format of sealed values this build writes.
pub const VERSION: u8 = 1;
/// A sealed value stored in a TEXT column starts so (then base64).
pub const TEXT_PREFIX: &str = "\u{1}s1:";
const HEADER: usize = 2 + 16 + 12;

/// What a key operation could not do. Never carries key material or values.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key {0:?} is unknown to the key provider")]
    UnknownKek(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("a wrapped data key does not open under its key-encryption key")]
    Unwrap,
    #[error("the key provider cannot {0}")]
    Unsupported(&'static str),
}

/// Holds the key-encryption keys and the audit key outside the database.
///
/// Shaped like a KMS: keys never have to leave the provider except the audit
/// key (MACing every audit entry remotely would put a round trip on every PHI
/// access; a KMS implementation hands out an audit key it keeps wrapped).
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync {
    /// The KEK new data keys are wrapped with.
    async fn current_kek(&self) -> Result<String, CryptoError>;
    /// Every KEK the provider still holds.
    async fn kek_ids(&self) -> Result<Vec<String>, CryptoError>;
    /// Wraps (encrypts) a data key; `aad` binds it to its id.
    async fn wrap(&self, kek: &str, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Unwraps a data key wrapped by [`Self::wrap`].
    async fn unwrap(&self, kek: &str, wrapped: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Makes a new KEK current and returns its id (the old ones stay, so
    /// that keys wrapped by them still unwrap until re-wrapped).
    async fn rotate(&self) -> Result<String, CryptoError>;
    /// The key of the audit chain and its checkpoints.
    async fn audit_key(&self) -> Result<AuditKey, CryptoError>;
}

/// The HMAC-SHA-256 key of the audit chain and checkpoints.
#[derive(Clone)]
pub struct AuditKey(Arc<[u8; 32]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    pub fn new(key: [u8; 32]) -> AuditKey {
        AuditKey(Arc::new(key))
    }

    /// The all-zero key of a store opened without a key provider (tests and
    /// tools): a chain under it is as forgeable as an unkeyed hash.
    pub fn unkeyed() -> AuditKey {
        AuditKey::new([0; 32])
    }

    /// HMAC-SHA-256 over `parts`, each length-prefixed (no two different
    /// lists of parts encode alike).
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes any key length");
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two strings (MACs in hex).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Associated data naming a row: the table and its key columns.
pub fn row_ad(table: &str, keys: &[&[u8]]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64);
    for p in std::iter::once(table.as_bytes()).chain(keys.iter().copied()) {
        ad.extend_from_slice(&(p.len() as u32).to_be_bytes());
        ad.extend_from_slice(p);
    }
    ad
}

/// Whether `bytes` is a sealed value (else legacy plaintext).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER + 16 && bytes[0] == MAGIC && bytes[1] == VERSION
}

/// Whether a TEXT column's value is sealed.
pub fn is_sealed_text(text: &str) -> bool {
    text.starts_with(TEXT_PREFIX)
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed under a data key this node has not loaded yet.
    #[error("sealed under data key {0} not loaded")]
    UnknownKey(uuid::Uuid),
    #[error("a sealed value does not open (altered, or moved to another row)")]
    Failed,
}

/// The data keys a store seals and opens with.
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    current: RwLock<(uuid::Uuid, Arc<Aes256Gcm>)>,
    known: RwLock<HashMap<uuid::Uuid, Arc<Aes256Gcm>>>,
    audit: AuditKey,
}

/// A fresh data key: its id and its bytes.
pub fn fresh_data_key() -> (uuid::Uuid, Vec<u8>) {
    (
        uuid::Uuid::new_v4(),
        Aes256Gcm::generate_key(&mut OsRng).to_vec(),
    )
}

/// The associated data a data key is wrapped with.
pub fn dek_ad(id: uuid::Uuid) -> Vec<u8> {
    row_ad("data_keys", &[id.as_bytes()])
}

fn cipher(key: &[u8]) -> Option<Arc<Aes256Gcm>> {
    Aes256Gcm::new_from_slice(key).ok().map(Arc::new)
}

impl Keyring {
    /// A keyring sealing under data key `id` (`key`: its unwrapped bytes).
    pub fn new(
        provider: Arc<dyn KeyProvider>,
        audit: AuditKey,
        id: uuid::Uuid,
        key: &[u8],
    ) -> Result<Keyring, CryptoError> {
        let c = cipher(key).ok_or(CryptoError::Unwrap)?;
        Ok(Keyring {
            provider,
            current: RwLock::new((id, Arc::clone(&c))),
            known: RwLock::new(HashMap::from([(id, c)])),
            audit,
        })
    }

    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    pub fn audit_key(&self) -> &AuditKey {
        &self.audit
    }

    /// The data key new values are sealed under.
    pub fn current_id(&self) -> uuid::Uuid {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Makes a data key known (`current`: new values are sealed under it).
    pub fn install(&self, id: uuid::Uuid, key: &[u8], current: bool) -> Result<(), CryptoError> {
        let c = cipher(key).ok_or(CryptoError::Unwrap)?;
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&c));
        if current {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = (id, c);
        }
        Ok(())
    }

    /// Seals `plain` for the row `ad` names.
    pub fn seal(&self, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        let (id, c) = {
            let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
            (cur.0, Arc::clone(&cur.1))
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = c
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: ad,
                },
            )
            .expect("AES-GCM seals any message shorter than 64 GiB");
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.extend_from_slice(&[MAGIC, VERSION]);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value: sealed ones are checked and decrypted, legacy
    /// plaintext is returned as it is.
    pub fn open(&self, ad: &[u8], stored: &[u8]) -> Result<Vec<u8>, OpenError> {
        if !is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        let id = uuid::Uuid::from_slice(&stored[2..18]).map_err(|_| OpenError::Failed)?;
        let c = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or(OpenError::UnknownKey(id))?;
        let nonce = Nonce::from_slice(&stored[18..HEADER]);
        c.decrypt(
            nonce,
            Payload {
                msg: &stored[HEADER..],
                aad: ad,
            },
        )
        .map_err(|_| OpenError::Failed)
    }

    /// [`Self::seal`] for a TEXT column.
    pub fn seal_text(&self, ad: &[u8], plain: &str) -> String {
        let sealed = self.seal(ad, plain.as_bytes());
        let mut s = String::with_capacity(TEXT_PREFIX.len() + sealed.len() * 4 / 3 + 4);
        s.push_str(TEXT_PREFIX);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode_string(&sealed, &mut s);
        s
    }

    /// [`Self::open`] for a TEXT column.
    pub fn open_text(&self, ad: &[u8], stored: &str) -> Result<String, OpenError> {
        let Some(b64) = stored.strip_prefix(TEXT_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let sealed = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| OpenError::Failed)?;
        if !is_sealed(&sealed) {
            return Err(OpenError::Failed);
        }
        let plain = self.open(ad, &sealed)?;
        String::from_utf8(plain).map_err(|_| OpenError::Failed)
    }

    /// The id of the data key a sealed TEXT or BLOB value names.
    pub fn key_of(stored: &[u8]) -> Option<uuid::Uuid> {
        if let Some(b64) = std::str::from_utf8(stored)
            .ok()
            .and_then(|s| s.strip_prefix(TEXT_PREFIX))
        {
            let sealed = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .ok()?;
            return Self::key_of(&sealed);
        }
        is_sealed(stored)
            .then(|| uuid::Uuid::from_slice(&stored[2..18]).ok())
            .flatten()
    }
}

/// AES-256-GCM under `kek`: `nonce | ciphertext+tag` (what a file provider
/// stores; a KMS does this on its side).
pub(crate) fn wrap_with(kek: &[u8], dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let c = cipher(kek).ok_or(CryptoError::Unwrap)?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = c
        .encrypt(&nonce, Payload { msg: dek, aad })
        .map_err(|_| CryptoError::Unwrap)?;
    Ok([nonce.as_slice(), &sealed].concat())
}

pub(crate) fn unwrap_with(kek: &[u8], wrapped: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let c = cipher(kek).ok_or(CryptoError::Unwrap)?;
    if wrapped.len() < 12 + 16 {
        return Err(CryptoError::Unwrap);
    }
    c.decrypt(
        Nonce::from_slice(&wrapped[..12]),
        Payload {
            msg: &wrapped[12..],
            aad,
        },
    )
    .map_err(|_| CryptoError::Unwrap)
}

/// 32 random bytes (a new key).
pub fn random_key() -> [u8; 32] {
    Aes256Gcm::generate_key(&mut OsRng).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        let dir = tempfile::tempdir().unwrap();
        let provider = FileKeyProvider::open_or_create(&dir.path().join("k"), true)
            .unwrap()
            .0;
        let (id, key) = fresh_data_key();
        Keyring::new(Arc::new(provider), AuditKey::unkeyed(), id, &key).unwrap()
    }

    #[test]
    fn sealed_values_open_only_in_their_row() {
        let k = ring();
        let ad = row_ad("chat_messages", &[b"c-1", &1u64.to_be_bytes()]);
        let sealed = k.seal(&ad, b"{\"text\":\"chest pain\"}");
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(5).any(|w| w == b"chest"));
        assert_eq!(k.open(&ad, &sealed).unwrap(), b"{\"text\":\"chest pain\"}");
        let other = row_ad("chat_messages", &[b"c-1", &2u64.to_be_bytes()]);
        assert_eq!(k.open(&other, &sealed), Err(OpenError::Failed));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(&ad, &flipped), Err(OpenError::Failed));
        // Legacy plaintext passes through.
        assert_eq!(k.open(&ad, b"{}").unwrap(), b"{}");
        let text = k.seal_text(&ad, "dizzy");
        assert!(is_sealed_text(&text) && !text.contains("dizzy"));
        assert_eq!(k.open_text(&ad, &text).unwrap(), "dizzy");
        assert_eq!(k.open_text(&ad, "plain").unwrap(), "plain");
        assert_eq!(Keyring::key_of(text.as_bytes()), Some(k.current_id()));
        // Under another data key: unknown until installed.
        let (id, key) = fresh_data_key();
        let other_ring =
            Keyring::new(Arc::clone(k.provider()), AuditKey::unkeyed(), id, &key).unwrap();
        let theirs = other_ring.seal(&ad, b"x");
        assert_eq!(k.open(&ad, &theirs), Err(OpenError::UnknownKey(id)));
        k.install(id, &key, false).unwrap();
        assert_eq!(k.open(&ad, &theirs).unwrap(), b"x");
    }

    #[test]
    fn the_audit_mac_depends_on_the_key_and_every_part() {
        let a = AuditKey::new([7; 32]);
        let base = a.mac(&[b"ab", b"c"]);
        assert_ne!(base, a.mac(&[b"a", b"bc"]));
        assert_ne!(base, AuditKey::unkeyed().mac(&[b"ab", b"c"]));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("ab", "abc"));
    }
}
