//! The first run on the embedded defaults (issue 14): where the node's own
//! token key lives when no key is configured.

use std::path::PathBuf;

use super::Config;

impl Config {
    /// Whether the node runs on the embedded defaults: an SQLite file and
    /// the in-process bus (one node alone, nothing shared).
    pub fn embedded(&self) -> bool {
        self.sqlite_file().is_some() && self.bus_url.scheme() == "memory"
    }

    /// Whether a token key is configured (a secret, RS256 key files, a JWKS
    /// file or an identity provider).
    pub fn token_key_configured(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_public_key.is_some()
            || self.jwt_jwks.is_some()
            || self.oidc_jwks_url.is_some()
    }

    /// The node's own HS256 key file, `<database file>.token-key` beside the
    /// SQLite file: used (by `serve`, created on its first start, and by
    /// `cardio token`) only on the embedded defaults with no key configured.
    /// `None` otherwise: a configured key, PostgreSQL or a broker turn it off.
    pub fn local_token_key_file(&self) -> Option<PathBuf> {
        if !self.embedded() || self.token_key_configured() {
            return None;
        }
        self.sqlite_file()
            .map(|f| PathBuf::from(format!("{}.token-key", f.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{Secret, SecretUrl};

    #[test]
    fn only_the_embedded_defaults_without_a_key_have_a_local_token_key() {
        let with = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.local_token_key_file()
        };
        assert_eq!(
            with(|_| {}),
            Some(PathBuf::from("data/cardio.db.token-key"))
        );
        assert_eq!(
            with(|c| c.jwt_secret = Some(Secret::new("a-secret-of-at-least-32-bytes-long!!"))),
            None
        );
        assert_eq!(with(|c| c.jwt_jwks = Some("jwks.json".into())), None);
        assert_eq!(with(|c| c.jwt_public_key = Some("rsa.pem".into())), None);
        assert_eq!(
            with(|c| c.oidc_jwks_url = Some("https://idp.example/jwks".into())),
            None
        );
        assert_eq!(
            with(|c| c.database_url = SecretUrl::new("postgres://u:p@h/db")),
            None
        );
        assert_eq!(
            with(|c| c.bus_url = SecretUrl::new("amqp://u:p@h:5672/%2f")),
            None
        );
        assert_eq!(
            with(|c| c.database_url = SecretUrl::new("sqlite:///tmp/x/c.db?mode=rwc")),
            Some(PathBuf::from("/tmp/x/c.db.token-key"))
        );
    }
}
