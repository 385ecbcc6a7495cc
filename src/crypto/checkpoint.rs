//! Signed checkpoints of the audit chain, `(seq, head)`, kept outside the
//! database in an append-only sink: the chain's MAC proves no entry was
//! rewritten without the key; checkpoints prove none was cut off the end
//! (truncation, a wipe) even by someone who also moved the head back.
//!
//! Signed with HMAC-SHA-256 under the audit key (a key derived for this use
//! by a fixed label): whoever verifies the chain holds that key anyway, and
//! a public-key signature would add a second key to manage without letting
//! anyone verify more (the chain itself needs the secret key).

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{hex, same, AuditKey};

/// One checkpoint: the chain had `seq` entries and head hash `head`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub head: String,
    pub at_ms: u64,
    /// The node that wrote it.
    pub node: String,
    /// HMAC-SHA-256 of the fields above, hex.
    pub mac: String,
}

fn mac(key: &AuditKey, seq: u64, head: &str, at_ms: u64, node: &str) -> String {
    hex(&key.mac(&[
        b"cardio audit checkpoint v1",
        &seq.to_be_bytes(),
        head.as_bytes(),
        &at_ms.to_be_bytes(),
        node.as_bytes(),
    ]))
}

impl Checkpoint {
    pub fn sign(key: &AuditKey, seq: u64, head: &str, node: &str) -> Checkpoint {
        let at_ms = crate::clock::unix_ms();
        Checkpoint {
            seq,
            head: head.to_owned(),
            at_ms,
            node: node.to_owned(),
            mac: mac(key, seq, head, at_ms, node),
        }
    }

    /// Whether it was signed with `key` and not altered since.
    pub fn genuine(&self, key: &AuditKey) -> bool {
        same(
            &self.mac,
            &mac(key, self.seq, &self.head, self.at_ms, &self.node),
        )
    }
}

/// Where checkpoints go: append-only, outside the database.
pub trait CheckpointSink: Send + Sync {
    fn append(&self, c: &Checkpoint) -> std::io::Result<()>;
}

/// A file opened with `O_APPEND` (created 0600): one JSON line a checkpoint,
/// synced before `append` returns. Make it append-only for the node's user
/// too where the file system allows (`chattr +a`), or ship it off the host.
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: &Path) -> FileSink {
        FileSink {
            path: path.to_owned(),
        }
    }

    /// Every checkpoint in the file at `path`, in order (none if there is no
    /// file); a line that is not a checkpoint is an `Err` with its number.
    pub fn read(path: &Path) -> std::io::Result<Vec<Result<Checkpoint, usize>>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(serde_json::from_str(&line).map_err(|_| i + 1));
        }
        Ok(out)
    }
}

impl CheckpointSink for FileSink {
    fn append(&self, c: &Checkpoint) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(c).expect("JSON of plain fields");
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_forgeries_show() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.checkpoints");
        let key = AuditKey::new([3; 32]);
        let sink = FileSink::new(&path);
        let c = Checkpoint::sign(&key, 7, "ab", "n-1");
        sink.append(&c).unwrap();
        sink.append(&Checkpoint::sign(&key, 9, "cd", "n-1"))
            .unwrap();
        let read = FileSink::read(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].as_ref().unwrap(), &c);
        assert!(c.genuine(&key));
        assert!(!c.genuine(&AuditKey::unkeyed()));
        let mut moved = c.clone();
        moved.seq = 3;
        assert!(!moved.genuine(&key));
        assert!(FileSink::read(&dir.path().join("none")).unwrap().is_empty());
    }
}
