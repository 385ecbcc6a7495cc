//! The node's own token key on the embedded defaults (issue 14, "a first
//! run that works"): 32 random bytes in base64 in a file of their own,
//! `<database file>.token-key` (0600, its folder 0700), created on the first
//! `cardio serve` when no token key is configured, and read by `cardio
//! token`. The key signs HS256 tokens; it never appears in a log or error.

use std::path::Path;

use base64::Engine as _;

use super::keyfile::create_secret_file;
use super::{random_key, CryptoError};

/// The token key at `path`; if there is none and `create`, a new one is
/// made there. The flag: whether it was created now.
pub fn open_or_create(path: &Path, create: bool) -> Result<(Vec<u8>, bool), CryptoError> {
    let failed = |reason: String| CryptoError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    if !path.exists() && create {
        let text = base64::engine::general_purpose::STANDARD.encode(random_key());
        if create_secret_file(path, text.as_bytes()).map_err(failed)? {
            return Ok((text.into_bytes(), true));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read: {e}")))?;
    // The base64 text itself is the HS256 secret: what was written is what
    // signs, whichever process wrote it. Never echoed: it is key material.
    let text = text.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| failed("not a token key (base64 of at least 32 bytes)".into()))?;
    if decoded.len() < 32 {
        return Err(failed(
            "not a token key (base64 of at least 32 bytes)".into(),
        ));
    }
    Ok((text.as_bytes().to_vec(), false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_0600_in_a_0700_folder_then_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/cardio.db.token-key");
        assert!(open_or_create(&path, false).is_err());
        let (key, created) = open_or_create(&path, true).unwrap();
        assert!(created);
        assert!(key.len() >= 43, "32 bytes in base64");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let (again, created) = open_or_create(&path, true).unwrap();
        assert!(!created);
        assert_eq!(again, key);
        std::fs::write(&path, "short").unwrap();
        let err = open_or_create(&path, false).unwrap_err().to_string();
        assert!(
            err.contains("not a token key") && !err.contains("short"),
            "{err}"
        );
    }
}
