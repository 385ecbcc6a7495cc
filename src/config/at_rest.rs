//! Where the key file and the audit checkpoints are when not set (issue 13).

use std::path::PathBuf;

use super::Config;

impl Config {
    /// The SQLite database file of `database_url`, if it names one.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = self.database_url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
    }

    /// The key file: the setting, or `<database file>.key` on SQLite.
    pub fn key_file(&self) -> Option<PathBuf> {
        self.key_file.clone().or_else(|| {
            self.sqlite_file()
                .map(|f| PathBuf::from(format!("{}.key", f.display())))
        })
    }

    /// Whether a missing key file may be created (the embedded default: a
    /// node alone with its SQLite file; a shared database needs a shared key).
    pub fn may_create_key_file(&self) -> bool {
        self.sqlite_file().is_some()
    }

    /// The audit checkpoint file: the setting, or `<database file>.checkpoints`
    /// on SQLite.
    pub fn audit_checkpoint_file(&self) -> Option<PathBuf> {
        self.audit_checkpoint_file.clone().or_else(|| {
            self.sqlite_file()
                .map(|f| PathBuf::from(format!("{}.checkpoints", f.display())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::SecretUrl;

    #[test]
    fn defaults_sit_beside_the_sqlite_file_and_postgres_has_none() {
        let mut c = Config::default();
        assert_eq!(c.key_file(), Some(PathBuf::from("data/cardio.db.key")));
        assert_eq!(
            c.audit_checkpoint_file(),
            Some(PathBuf::from("data/cardio.db.checkpoints"))
        );
        assert!(c.validate().is_ok());
        c.database_url = SecretUrl::new("sqlite:///tmp/x/c.db?mode=rwc");
        assert_eq!(c.key_file(), Some(PathBuf::from("/tmp/x/c.db.key")));
        c.database_url = SecretUrl::new("postgres://u:p@h/db");
        assert_eq!(c.key_file(), None);
        assert_eq!(c.audit_checkpoint_file(), None);
        assert!(!c.may_create_key_file());
        c.key_file = Some("/keys/cardio.key".into());
        assert_eq!(c.key_file(), Some(PathBuf::from("/keys/cardio.key")));
        assert!(c.validate().is_ok());
        c.audit_checkpoint_every = std::time::Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().setting, "audit_checkpoint_every");
    }
}
