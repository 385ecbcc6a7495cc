//! `cardio keys` (the keys of encryption at rest) and `cardio audit
//! verify` (the keyed audit trail and its checkpoints), which both open the
//! database with the configured keys.

use std::path::PathBuf;
use std::process::ExitCode;

use super::fail;
use crate::config::{Config, ProcessEnv};

/// The database with the configured keys (the key file must exist).
async fn keyed_store(config: &Config, who: &str) -> anyhow::Result<crate::store::Store> {
    let (provider, _) = crate::node::key_provider(config, false)?;
    let store = crate::store::Store::connect(config.database_url.expose()).await?;
    store.migrate().await?;
    Ok(store.with_keys(provider, who).await?)
}

pub(super) fn audit_verify(file: Option<PathBuf>, checkpoints: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let path = checkpoints.or_else(|| config.audit_checkpoint_file());
    let read = match &path {
        Some(p) => match crate::crypto::FileSink::read(p) {
            Ok(read) => read,
            Err(e) => {
                return fail(&format!(
                    "cannot read the checkpoints at {}: {e}",
                    p.display()
                ))
            }
        },
        None => Vec::new(),
    };
    let mut marks = Vec::with_capacity(read.len());
    for c in read {
        match c {
            Ok(c) => marks.push(c),
            Err(line) => {
                eprintln!("cardio: audit checkpoints broken: line {line} is not a checkpoint");
                return ExitCode::from(1);
            }
        }
    }
    let checked = actix_rt::System::new().block_on(async {
        let store = keyed_store(&config, "audit-verify").await?;
        let checked = store.verify_audit_with(&marks).await;
        store.close().await;
        Ok::<_, anyhow::Error>(checked?)
    });
    match checked {
        Ok(Ok(n)) => {
            println!(
                "audit chain intact: {n} entries, {} checkpoints agree",
                marks.len()
            );
            if path.is_none() {
                println!("no checkpoint file: deletions at the end cannot be detected");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            eprintln!("cardio: {broken}");
            ExitCode::from(1)
        }
        Err(e) => fail(&format!("cannot read the audit log: {e:#}")),
    }
}

pub(super) fn init(file: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let Some(path) = config.key_file() else {
        return fail("no key_file (CARDIO_KEY_FILE) is set");
    };
    match crate::crypto::FileKeyProvider::open_or_create(&path, true) {
        Ok((_, true)) => {
            println!("created the key file {}", path.display());
            ExitCode::SUCCESS
        }
        Ok((_, false)) => {
            println!("a key file is already at {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// `cardio keys rotate` (`rotate`) or `cardio keys encrypt-existing`.
pub(super) fn rotate_or_seal(file: Option<PathBuf>, rotate: bool) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let done = actix_rt::System::new().block_on(async {
        let store = keyed_store(&config, "cli").await?;
        let said = if rotate {
            let (kek, n) = store.rotate_keys().await?;
            let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            store
                .audit(&crate::store::audit::AuditEntry {
                    at_ms: crate::clock::unix_ms(),
                    subject: format!("cli:{operator}"),
                    role: "admin".into(),
                    action: "key_rotation".into(),
                    patient_id: None,
                    fields: format!("kek={kek},data_keys={n}"),
                    outcome: "allowed".into(),
                })
                .await?;
            format!("key-encryption key {kek} is current; {n} data keys re-wrapped")
        } else {
            let n = store.seal_existing().await?;
            format!("{n} values sealed")
        };
        store.close().await;
        Ok::<_, anyhow::Error>(said)
    });
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("{e:#}")),
    }
}
