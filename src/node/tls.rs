//! The node's transport security: its HTTPS certificate (reloaded on
//! SIGHUP), the client configuration for calls to its peers, the bus's TLS
//! files, and a warning for a database whose server is not verified.

use std::sync::Arc;

use anyhow::Context as _;

use crate::bus;
use crate::config::Config;

/// The HTTPS certificate, when one is configured (checked by the
/// configuration already; read again here).
pub(super) fn server_cert(config: &Config) -> anyhow::Result<Option<Arc<crate::tls::ServerCert>>> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(
            crate::tls::ServerCert::load(cert, key).context("cannot load tls_cert_file")?,
        )),
        _ => Ok(None),
    }
}

/// Re-reads the HTTPS certificate and key on SIGHUP (a renewed
/// certificate, mounted from a Secret); a pair that does not load is logged
/// and the one in use stays.
pub(super) fn reload_on_sighup(cert: Arc<crate::tls::ServerCert>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("no SIGHUP handler: the TLS certificate is not reloaded");
            return;
        };
        actix_rt::spawn(async move {
            while hup.recv().await.is_some() {
                match cert.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "TLS certificate not reloaded; the old one stays")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = cert;
}

/// The client configuration for calls to other nodes, when this node serves
/// HTTPS (then its peers do too: one cluster, one configuration).
pub(super) fn peer_tls(config: &Config) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    if config.tls_cert_file.is_none() {
        return Ok(None);
    }
    let tls = crate::tls::client_config(config.tls_peer_ca_file.as_deref(), None)
        .context("cannot load tls_peer_ca_file")?;
    Ok(Some(Arc::new(tls)))
}

/// The CA and client certificate of an `amqps://` bus.
pub(super) fn bus_tls(config: &Config) -> anyhow::Result<bus::BusTls> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
    };
    let ca_pem = match &config.bus_ca_file {
        Some(p) => Some(
            String::from_utf8(read(p, "bus_ca_file")?).context("bus_ca_file is not PEM text")?,
        ),
        None => None,
    };
    let identity = match (&config.bus_client_cert_file, &config.bus_client_key_file) {
        (Some(c), Some(k)) => Some((
            read(c, "bus_client_cert_file")?,
            read(k, "bus_client_key_file")?,
        )),
        _ => None,
    };
    Ok(bus::BusTls { ca_pem, identity })
}

/// PostgreSQL without `sslmode=verify-full`: the server is not verified
/// (or, with `prefer`/`allow`/`disable`, the password may cross in clear).
pub(super) fn warn_unverified_database(config: &Config) {
    if !matches!(config.database_url.scheme(), "postgres" | "postgresql") {
        return;
    }
    if let Ok(tls) = crate::tls::check_postgres_url(config.database_url.expose()) {
        if !tls.verified() {
            let sslmode = tls.mode.unwrap_or_else(|| "prefer".into());
            tracing::warn!(
                %sslmode,
                "PostgreSQL's certificate is not verified: use sslmode=verify-full with sslrootcert"
            );
        }
    }
}
