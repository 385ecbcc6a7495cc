//! The node's keys and data at rest: its own token key on the embedded
//! defaults, the key provider, encryption at rest (sealing what was written
//! in the clear before, keying an older audit chain) and the signed audit
//! checkpoints written outside the database.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::store::Store;

/// On the embedded defaults with no token key configured, opens (on the
/// first start, creates) the node's own token key file, so that the API
/// works from the first run; `true` when that key is in use. Said once in
/// the log when created, never with the key.
pub(super) fn local_token_key(config: &Config) -> anyhow::Result<bool> {
    let Some(path) = config.local_token_key_file() else {
        return Ok(false);
    };
    let (_, created) = crate::crypto::token_key::open_or_create(&path, true)
        .context("cannot set up the node's own token key")?;
    if created {
        tracing::info!(
            path = %path.display(),
            "created a token key for this node (no token key is configured): `cardio token` and the sign-in link use it; set CARDIO_JWT_SECRET or an identity provider to use yours"
        );
    }
    Ok(true)
}

/// The key provider of `config` (the key file). `create`: a missing file
/// may be created (the embedded default); the flag returned: it was.
pub fn key_provider(
    config: &Config,
    create: bool,
) -> anyhow::Result<(Arc<dyn crate::crypto::KeyProvider>, bool)> {
    let path = config
        .key_file()
        .context("no key_file (CARDIO_KEY_FILE) is set: it is required unless the database is an SQLite file, and every node must read the same one")?;
    let (provider, created) = crate::crypto::FileKeyProvider::open_or_create(&path, create)?;
    if provider.too_open() {
        tracing::warn!(path = %path.display(), "the key file can be read by group or others: chmod 600 it");
    }
    Ok((Arc::new(provider), created))
}

/// Encryption at rest for this node: opens (on first start of an embedded
/// node, creates) the key file, seals under a fresh data key, and seals the
/// rows written in the clear before (legacy data).
pub(super) async fn at_rest(config: &Config, store: &Store) -> anyhow::Result<Store> {
    let (provider, created) = key_provider(config, config.may_create_key_file())?;
    if created {
        tracing::info!(
            path = %config.key_file().unwrap_or_default().display(),
            "created the key file for encryption at rest: back it up apart from the database (without it the PHI in the database cannot be read)"
        );
    }
    let store = store
        .with_keys(provider, &config.node_id)
        .await
        .context("cannot set up encryption at rest")?;
    let sealed = store
        .seal_existing()
        .await
        .context("cannot seal the rows written before encryption at rest")?;
    if sealed > 0 {
        tracing::info!(
            values = sealed,
            "sealed values written in the clear before encryption at rest"
        );
    }
    // An audit chain of an earlier version (unkeyed): checked, then keyed.
    let checkpoints_exist = config
        .audit_checkpoint_file()
        .is_some_and(|p| crate::crypto::FileSink::read(&p).is_ok_and(|c| !c.is_empty()));
    match store.key_audit_chain(checkpoints_exist).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            entries = n,
            "audit chain of an earlier version re-hashed with the audit key"
        ),
        // Left as it is: `cardio audit verify` reports it; the node serves.
        Err(e) => tracing::error!(error = %e, "audit chain not keyed"),
    }
    Ok(store)
}

/// Writes a signed checkpoint of the audit chain every `every` (when it moved).
pub(super) async fn write_checkpoints(
    store: Store,
    sink: Arc<crate::crypto::FileSink>,
    every: Duration,
    node: String,
) {
    let mut tick = tokio::time::interval(every);
    let mut last = 0;
    loop {
        tick.tick().await;
        checkpoint_once(&store, Arc::clone(&sink), &node, &mut last).await;
    }
}

/// One checkpoint, if the chain moved past `last` (which it updates).
pub(super) async fn checkpoint_once(
    store: &Store,
    sink: Arc<crate::crypto::FileSink>,
    node: &str,
    last: &mut u64,
) {
    use crate::crypto::CheckpointSink as _;
    let c = match store.audit_checkpoint(node).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the audit head for a checkpoint");
            return;
        }
    };
    if c.seq == 0 || c.seq <= *last {
        return;
    }
    let seq = c.seq;
    let written = tokio::task::spawn_blocking(move || sink.append(&c)).await;
    match written {
        Ok(Ok(())) => *last = seq,
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write an audit checkpoint"),
        Err(e) => tracing::error!(error = %e, "the audit checkpoint writer failed"),
    }
}
