//! The key file: KEKs and the audit key in a JSON file outside the database,
//! created 0600 (its folder 0700) on first start of an embedded node.
//!
//! ```json
//! {"version":1,"current":"kek-…","keks":{"kek-…":"<base64>"},"audit":"<base64>"}
//! ```
//! Every node of a cluster must read the same file (a Kubernetes Secret
//! mounted read-only, for instance). `cardio keys rotate` adds a KEK and makes
//! it current, rewriting the file atomically (a temporary file, then rename);
//! a node that meets a KEK id it does not know reads the file again.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;

use super::{random_key, unwrap_with, wrap_with, AuditKey, CryptoError, KeyProvider};

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Contents {
    version: u32,
    current: String,
    keks: BTreeMap<String, String>,
    audit: String,
}

/// KEKs and the audit key from a file.
pub struct FileKeyProvider {
    path: PathBuf,
    contents: RwLock<Contents>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn new_kek_id() -> String {
    format!("kek-{}-{:04x}", crate::clock::unix_ms(), fastrand::u16(..))
}

fn key32(text: &str) -> Option<[u8; 32]> {
    b64().decode(text).ok()?.try_into().ok()
}

/// Creates the secret file `path` holding `bytes`: 0600, in a folder
/// created 0700 if missing. `Ok(false)`: another process created it first
/// (the file is left as theirs). The error is a reason without the bytes.
pub fn create_secret_file(path: &Path, bytes: &[u8]) -> Result<bool, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create its folder: {e}"))?;
        }
    }
    // Written aside, then linked into place: a process starting at the same
    // time reads either no file or the whole of one.
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot create: {e}"));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("cannot create: {e}")),
    }
}

impl FileKeyProvider {
    /// Reads the key file at `path`; if there is none and `create`, creates
    /// one (0600, in a folder created 0700). The flag: whether it was created.
    pub fn open_or_create(
        path: &Path,
        create: bool,
    ) -> Result<(FileKeyProvider, bool), CryptoError> {
        let failed = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() && create {
            let kek = new_kek_id();
            let contents = Contents {
                version: 1,
                current: kek.clone(),
                keks: BTreeMap::from([(kek, b64().encode(random_key()))]),
                audit: b64().encode(random_key()),
            };
            let text = serde_json::to_vec_pretty(&contents).expect("JSON of strings");
            // Another process created it first: read theirs below.
            if create_secret_file(path, &text).map_err(failed)? {
                return Ok((
                    FileKeyProvider {
                        path: path.to_owned(),
                        contents: RwLock::new(contents),
                    },
                    true,
                ));
            }
        }
        let contents = Self::read(path)?;
        Ok((
            FileKeyProvider {
                path: path.to_owned(),
                contents: RwLock::new(contents),
            },
            false,
        ))
    }

    fn read(path: &Path) -> Result<Contents, CryptoError> {
        let failed = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| failed(format!("cannot read: {e}")))?;
        // Never echo the file: it is key material.
        let c: Contents = serde_json::from_slice(&text).map_err(|_| {
            failed("not a cardio key file (JSON with version, current, keks, audit)".into())
        })?;
        if c.version != 1 {
            return Err(failed(format!("version {} is not 1", c.version)));
        }
        if !c.keks.contains_key(&c.current) {
            return Err(failed("its current KEK is not among its keys".into()));
        }
        if c.keks.values().any(|k| key32(k).is_none()) || key32(&c.audit).is_none() {
            return Err(failed("every key must be 32 bytes in base64".into()));
        }
        Ok(c)
    }

    /// Where the keys are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether group or others may read the file (they should not).
    pub fn too_open(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }

    fn kek(&self, id: &str) -> Result<[u8; 32], CryptoError> {
        let known = |c: &Contents| c.keks.get(id).and_then(|k| key32(k));
        if let Some(k) = known(&self.contents.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(k);
        }
        // Rotated by another process since this one read the file.
        let fresh = Self::read(&self.path)?;
        let k = known(&fresh).ok_or_else(|| CryptoError::UnknownKek(id.to_owned()))?;
        *self.contents.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(k)
    }
}

#[async_trait::async_trait]
impl KeyProvider for FileKeyProvider {
    async fn current_kek(&self) -> Result<String, CryptoError> {
        Ok(self
            .contents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .clone())
    }

    async fn kek_ids(&self) -> Result<Vec<String>, CryptoError> {
        Ok(self
            .contents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keks
            .keys()
            .cloned()
            .collect())
    }

    async fn wrap(&self, kek: &str, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        wrap_with(&self.kek(kek)?, dek, aad)
    }

    async fn unwrap(&self, kek: &str, wrapped: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        unwrap_with(&self.kek(kek)?, wrapped, aad)
    }

    async fn rotate(&self) -> Result<String, CryptoError> {
        let failed = |reason: String| CryptoError::KeyFile {
            path: self.path.display().to_string(),
            reason,
        };
        let mut c = Self::read(&self.path)?;
        let id = new_kek_id();
        c.keks.insert(id.clone(), b64().encode(random_key()));
        c.current = id.clone();
        let text = serde_json::to_vec_pretty(&c).expect("JSON of strings");
        let tmp = self.path.with_extension("rotating");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| failed(format!("cannot write {}: {e}", tmp.display())))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| failed(format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| failed(format!("cannot replace: {e}")))?;
        *self.contents.write().unwrap_or_else(|e| e.into_inner()) = c;
        Ok(id)
    }

    async fn audit_key(&self) -> Result<AuditKey, CryptoError> {
        let c = self.contents.read().unwrap_or_else(|e| e.into_inner());
        key32(&c.audit)
            .map(AuditKey::new)
            .ok_or_else(|| CryptoError::KeyFile {
                path: self.path.display().to_string(),
                reason: "bad audit key".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn created_0600_and_rotation_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cardio.key");
        let (p, created) = FileKeyProvider::open_or_create(&path, true).unwrap();
        assert!(created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let old = p.current_kek().await.unwrap();
        let wrapped = p.wrap(&old, &[9; 32], b"ad").await.unwrap();
        // Another process (a second provider on the same file) rotates.
        let (other, created) = FileKeyProvider::open_or_create(&path, true).unwrap();
        assert!(!created);
        let new = other.rotate().await.unwrap();
        assert_ne!(new, old);
        assert_eq!(mode(&path), 0o600);
        let rewrapped = other.wrap(&new, &[9; 32], b"ad").await.unwrap();
        // The first learns the new KEK from the file when it meets it.
        assert_eq!(
            p.unwrap(&new, &rewrapped, b"ad").await.unwrap(),
            vec![9; 32]
        );
        assert_eq!(p.unwrap(&old, &wrapped, b"ad").await.unwrap(), vec![9; 32]);
        assert!(p.unwrap(&old, &wrapped, b"other").await.is_err());
        assert!(matches!(
            p.unwrap("kek-none", &wrapped, b"ad").await,
            Err(CryptoError::UnknownKek(_))
        ));
        assert_eq!(
            p.audit_key().await.unwrap().mac(&[b"x"]),
            other.audit_key().await.unwrap().mac(&[b"x"])
        );
    }
}
