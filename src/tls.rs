//! TLS on every hop, with one stack: rustls and its *ring* provider (no
//! aws-lc-rs, no OpenSSL; `deny.toml` bans the others). This module turns PEM
//! files into rustls configurations: the HTTPS server's (reloaded on SIGHUP),
//! the client's for calls to other nodes and to an https OTLP collector, and
//! checks of the files the bus (amqps) and the database (sslrootcert, …) will
//! read, so that a setting asking for TLS that cannot be honoured is refused
//! at start rather than downgraded.
//!
//! Errors name the file and what is wrong with it, never its contents.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

/// The one crypto provider: ring. (rustls marks ring's provider deprecated
/// for lacking post-quantum key exchange, which only aws-lc-rs has; one stack
/// on ring is this project's choice, see CRATE-NOTES.)
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide provider (for libraries that use rustls's
/// default builder); a second call changes nothing.
#[allow(deprecated)]
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        reason: e.kind().to_string(),
    })
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("not PEM certificates ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

/// The trust anchors of a PEM CA bundle: every certificate must parse as one.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate ({e})"),
        })?;
    }
    Ok(roots)
}

/// `ca`'s anchors, or the public (webpki) roots when there is no CA file.
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    match ca {
        Some(path) => load_roots(path),
        None => Ok(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        )),
    }
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let ck =
        CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| TlsError::Invalid {
            path: key.to_owned(),
            reason: format!("does not fit the certificate in {} ({e})", cert.display()),
        })?;
    Ok(ck)
}

/// The server's certificate, swapped in place by [`ServerCert::reload`].
#[derive(Debug)]
pub struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerCert>, TlsError> {
        let ck = certified_key(cert, key)?;
        Ok(Arc::new(ServerCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(ck)),
        }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
        Ok(())
    }

    /// The HTTPS server's configuration: TLS 1.2 and 1.3, no client
    /// certificates, this certificate (as it is at each handshake).
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        Ok(config)
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// A client configuration that verifies servers against `ca` (or the public
/// roots), presenting `identity` (certificate file, key file) if given.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    match identity {
        Some((cert, key)) => {
            certified_key(cert, key)?;
            builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| TlsError::Invalid {
                    path: key.to_owned(),
                    reason: e.to_string(),
                })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A pair of optional settings that go together (a certificate and its
/// key): both or neither.
pub fn pair<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
    names: (&str, &str),
) -> Result<Option<(&'a Path, &'a Path)>, String> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!("{} is set but {} is not", names.0, names.1)),
        (None, Some(_)) => Err(format!("{} is set but {} is not", names.1, names.0)),
    }
}

/// The TLS parameters of a PostgreSQL URL (libpq's names, as sqlx reads
/// them), checked: an unknown `sslmode`, `verify-ca`/`verify-full` without
/// an `sslrootcert` that loads, a root or client certificate with
/// `sslmode=disable`, or files that do not load are refused.
pub fn check_postgres_url(url: &str) -> Result<PgTls, String> {
    // Only the query: the rest (which may not even parse) is sqlx's to read.
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let mut tls = PgTls::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "sslmode" | "ssl-mode" => tls.mode = Some(v.into_owned()),
            "sslrootcert" | "ssl-root-cert" => tls.root = Some(PathBuf::from(v.as_ref())),
            "sslcert" | "ssl-cert" => tls.cert = Some(PathBuf::from(v.as_ref())),
            "sslkey" | "ssl-key" => tls.key = Some(PathBuf::from(v.as_ref())),
            _ => {}
        }
    }
    let mode = tls.mode.as_deref().unwrap_or("prefer");
    if !matches!(
        mode,
        "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
    ) {
        return Err(format!(
            "sslmode={mode} is not disable, allow, prefer, require, verify-ca or verify-full"
        ));
    }
    let disabled = mode == "disable";
    if disabled && (tls.root.is_some() || tls.cert.is_some()) {
        return Err(
            "sslmode=disable with sslrootcert or sslcert: TLS was asked for and would not be used"
                .into(),
        );
    }
    if mode.starts_with("verify-") && tls.root.is_none() {
        return Err(format!(
            "sslmode={mode} needs sslrootcert=<CA file> (the CA that signed the server's certificate)"
        ));
    }
    if let Some(root) = &tls.root {
        load_roots(root).map_err(|e| format!("sslrootcert: {e}"))?;
    }
    if let Some((c, k)) = pair(
        tls.cert.as_deref(),
        tls.key.as_deref(),
        ("sslcert", "sslkey"),
    )? {
        certified_key(c, k).map_err(|e| format!("sslcert/sslkey: {e}"))?;
    }
    Ok(tls)
}

/// The TLS parameters of a PostgreSQL URL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// `None`: sqlx's default, `prefer`.
    pub mode: Option<String>,
    pub root: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl PgTls {
    /// Whether the server's certificate and name are verified.
    pub fn verified(&self) -> bool {
        self.mode.as_deref() == Some("verify-full")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn missing_and_empty_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        assert!(matches!(load_certs(&missing), Err(TlsError::Read { .. })));
        let empty = write(dir.path(), "empty.pem", "");
        assert_eq!(
            load_certs(&empty),
            Err(TlsError::NoCertificate {
                path: empty.clone()
            })
        );
        assert_eq!(load_key(&empty), Err(TlsError::NoKey { path: empty }));
    }

    #[test]
    fn postgres_url_tls_parameters_are_checked() {
        let ok = check_postgres_url("postgres://u@h/db?sslmode=require").unwrap();
        assert!(!ok.verified());
        let e = check_postgres_url("postgres://u@h/db?sslmode=verify-full").unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = check_postgres_url(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = check_postgres_url("postgres://u@h/db?sslmode=sometimes").unwrap_err();
        assert!(e.contains("sometimes"), "{e}");
        let e = check_postgres_url("postgres://u@h/db?sslmode=disable&sslrootcert=/x").unwrap_err();
        assert!(e.contains("disable"), "{e}");
        let e = check_postgres_url("postgres://u@h/db?sslcert=/x").unwrap_err();
        assert!(e.contains("sslkey"), "{e}");
        assert_eq!(check_postgres_url("postgres://u@h/db").unwrap().mode, None);
    }

    #[test]
    fn pairs_are_both_or_neither() {
        let (a, b) = (Path::new("a"), Path::new("b"));
        assert!(pair(Some(a), None, ("x", "y")).is_err());
        assert!(pair(None, Some(b), ("x", "y")).is_err());
        assert_eq!(pair(None, None, ("x", "y")), Ok(None));
        assert_eq!(pair(Some(a), Some(b), ("x", "y")), Ok(Some((a, b))));
    }
}
