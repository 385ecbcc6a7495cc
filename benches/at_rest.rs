//! The cost of encryption at rest and of the keyed audit trail (issue 13),
//! each beside the unencrypted baseline measured in the same run, on SQLite
//! and PostgreSQL:
//!
//! - the sample path: samples/s through the DeviceStream actor (journal
//!   append of a sealed batch of 1,000, snapshot, aggregates and rules);
//! - the chat path: chat messages/s through the consult actor (sealed journal
//!   entry and sealed chat projection, reply);
//! - the audit path: audit entries/s appended (HMAC-SHA-256 under the audit
//!   key vs. under the all-zero key of an unkeyed store: the same work, so
//!   that row shows the trail's own cost does not change) and the per-entry
//!   cost of `chain_hash`;
//! - the bare cost of sealing and opening one batch and one chat line.
//!
//! After a warm-up, baseline and sealed runs alternate (five pairs, which
//! goes first alternating too) on fresh databases, and the best of each is kept, so drift of the busy
//! machine hits both alike. Needs PostgreSQL at 127.0.0.1:5432 (user postgres,
//! trust), as the tests do; `CARDIO_BENCH_ONLY=sqlite` skips it.
//! Run: `cargo bench --bench at_rest`.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use cardio::actors::device::sample::Sample;
use cardio::crypto::{AuditKey, FileKeyProvider, KeyProvider};
use cardio::store::audit::{chain_hash, AuditEntry, GENESIS};
use common::{backends, chat_rate, now_ms, push_rate, samples, Db};

/// Plain and sealed runs of each path, alternating; the best of each kept.
const ROUNDS: usize = 5;

/// A fresh migrated database; `sealed`: with a key file (and so sealing PHI
/// and keying the audit chain), as a node has.
async fn fresh(backend: &str, sealed: bool) -> Db {
    let mut db = Db::fresh(backend).await;
    if sealed {
        let provider = FileKeyProvider::open_or_create(&db.dir.path().join("bench.key"), true)
            .unwrap()
            .0;
        let provider: Arc<dyn KeyProvider> = Arc::new(provider);
        db.store = db.store.with_keys(provider, "bench").await.unwrap();
    }
    db
}

/// Samples/s through the DeviceStream actor, 4 devices in parallel.
async fn sample_path(backend: &str, sealed: bool) -> f64 {
    const BATCHES: usize = 40;
    const BATCH: usize = 1000;
    let db = fresh(backend, sealed).await;
    let t0 = now_ms() - (BATCHES * BATCH) as u64 * 10 - 10_000;
    let batches: Vec<Vec<Sample>> = samples(BATCHES * BATCH, t0)
        .chunks(BATCH)
        .map(|b| b.to_vec())
        .collect();
    let rate = push_rate(&db.store, 4, &batches).await;
    db.drop().await;
    rate
}

/// Chat messages/s through the consult actor, 8 consults in parallel.
async fn chat_path(backend: &str, sealed: bool) -> f64 {
    let db = fresh(backend, sealed).await;
    let rate = chat_rate(
        &db.store,
        8,
        150,
        "palpitations since Tuesday",
        "the chest pain comes back when I climb stairs",
    )
    .await;
    db.drop().await;
    rate
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        at_ms: 1_000 + i,
        subject: format!("dr-{}", i % 10),
        role: "clinician".into(),
        action: "read".into(),
        patient_id: Some(format!("p-{}", i % 100)),
        fields: "vitals,alerts".into(),
        outcome: "allowed".into(),
    }
}

/// Audit entries/s, 8 writers in parallel (group commit).
async fn audit_path(backend: &str, keyed: bool) -> f64 {
    const WRITERS: u64 = 8;
    const EACH: u64 = 250;
    let db = fresh(backend, keyed).await;
    let t = Instant::now();
    let writers = (0..WRITERS).map(|w| {
        let store = db.store.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                store.audit(&entry(w * EACH + i)).await.unwrap();
            }
        })
    });
    futures_util::future::join_all(writers).await;
    let rate = (WRITERS * EACH) as f64 / t.elapsed().as_secs_f64();
    assert_eq!(db.store.verify_audit().await.unwrap(), Ok(WRITERS * EACH));
    db.drop().await;
    rate
}

/// Microseconds per operation of `f`, over `n` runs.
fn micros(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let sys = actix_rt::System::new();
    println!(
        "{:<58} {:>12} {:>12} {:>7}",
        "path (per second; best of 5 alternating runs)", "plain", "sealed", "ratio"
    );
    for backend in backends() {
        let mut best = [[0f64; 2]; 3];
        // A warm-up of each path (caches, the database's first pages), not kept.
        sys.block_on(sample_path(backend, false));
        sys.block_on(chat_path(backend, false));
        sys.block_on(audit_path(backend, false));
        for round in 0..ROUNDS {
            // Which goes first alternates too (the second of a pair tends
            // to find warmer caches).
            let order = if round % 2 == 0 {
                [(false, 0), (true, 1)]
            } else {
                [(true, 1), (false, 0)]
            };
            for (sealed, col) in order {
                best[0][col] = best[0][col].max(sys.block_on(sample_path(backend, sealed)));
                best[1][col] = best[1][col].max(sys.block_on(chat_path(backend, sealed)));
                best[2][col] = best[2][col].max(sys.block_on(audit_path(backend, sealed)));
            }
        }
        for (what, [plain, sealed]) in [
            "samples/s, DeviceStream actor",
            "chat messages/s, consult actor",
            "audit entries/s (zero key vs audit key)",
        ]
        .iter()
        .zip(best)
        {
            println!(
                "{:<58} {plain:>12.0} {sealed:>12.0} {:>7.3}",
                format!("{what} ({backend})"),
                sealed / plain
            );
        }
    }
    // The bare cryptography, without a database.
    let dir = tempfile::tempdir().unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(
        FileKeyProvider::open_or_create(&dir.path().join("k"), true)
            .unwrap()
            .0,
    );
    let (id, key) = cardio::crypto::fresh_data_key();
    let ring = cardio::crypto::Keyring::new(provider, AuditKey::unkeyed(), id, &key).unwrap();
    let batch = serde_json::to_vec(&samples(1000, now_ms())).unwrap();
    let ad = cardio::crypto::row_ad("journal", &[b"device/d-1", &7u64.to_be_bytes()]);
    let sealed = ring.seal(&ad, &batch);
    let line = "the chest pain comes back when I climb stairs";
    let audit = AuditKey::new([9; 32]);
    let e = entry(1);
    println!();
    println!(
        "seal / open a batch of 1,000 samples ({} bytes of JSON): {:.1} / {:.1} µs",
        batch.len(),
        micros(2000, || {
            std::hint::black_box(ring.seal(&ad, &batch));
        }),
        micros(2000, || {
            std::hint::black_box(ring.open(&ad, &sealed).unwrap());
        })
    );
    println!(
        "seal a chat line as text: {:.2} µs; chain_hash of an audit entry: {:.2} µs",
        micros(100_000, || {
            std::hint::black_box(ring.seal_text(&ad, line));
        }),
        micros(100_000, || {
            std::hint::black_box(chain_hash(&audit, GENESIS, 1, &e));
        })
    );
}
