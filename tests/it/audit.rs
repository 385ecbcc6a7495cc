//! The PHI audit trail (hash chain, tamper detection) and authentication
//! tokens, through the library and the real `cardio` binary.

use std::process::Command;

use cardio::auth::{AuthError, Authenticator};
use cardio::principal::{Principal, Role};
use cardio::store::audit::{AuditEntry, BrokenLink};
use cardio::store::Store;

use crate::store::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");
const SECRET: &str = "test-only-secret-of-at-least-32-bytes!";

fn entry(i: u64, patient: &str, outcome: &str) -> AuditEntry {
    AuditEntry {
        at_ms: 1_000 + i,
        subject: format!("dr-{i}"),
        role: "clinician".into(),
        action: "read".into(),
        patient_id: Some(patient.into()),
        fields: "vitals,alerts".into(),
        outcome: outcome.into(),
    }
}

async fn the_chain_holds_and_any_tampering_is_found_at_its_entry(store: &Store) {
    assert_eq!(store.verify_audit().await.unwrap(), Ok(0));
    for i in 1..=4 {
        let outcome = if i == 3 { "denied" } else { "allowed" };
        let patient = if i % 2 == 0 { "p-2" } else { "p-1" };
        assert_eq!(store.audit(&entry(i, patient, outcome)).await.unwrap(), i);
    }
    assert_eq!(store.verify_audit().await.unwrap(), Ok(4));
    let of_p1 = store.audit_log(Some("p-1"), 0, 10).await.unwrap();
    assert_eq!(of_p1.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(of_p1[1].entry.outcome, "denied");
    let page = store.audit_log(None, 1, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);

    // Rewriting what an entry says breaks the chain at that entry.
    store
        .execute_admin("UPDATE audit_log SET outcome = 'allowed' WHERE seq = 3")
        .await
        .unwrap();
    let broken = store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    store
        .execute_admin("UPDATE audit_log SET outcome = 'denied' WHERE seq = 3")
        .await
        .unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(4));
    // So does removing one, or the last one.
    store
        .execute_admin("DELETE FROM audit_log WHERE seq = 4")
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit().await.unwrap().unwrap_err().seq,
        4,
        "a cut-off end is found too"
    );
    store
        .execute_admin("DELETE FROM audit_log WHERE seq = 2")
        .await
        .unwrap();
    let BrokenLink { seq, reason } = store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(seq, 3, "{reason}");
}
on_both!(
    audit_chain,
    the_chain_holds_and_any_tampering_is_found_at_its_entry
);

/// Appends from many tasks at once are group-committed: each caller gets
/// the sequence its own entry landed at, and the chain has no fork or gap.
async fn concurrent_appends_chain_without_forks_or_gaps(store: &Store) {
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..10 {
                let e = entry(t * 100 + i, "p-1", "allowed");
                got.push((store.audit(&e).await.unwrap(), e.at_ms));
            }
            got
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.extend(t.await.unwrap());
    }
    assert_eq!(store.verify_audit().await.unwrap(), Ok(80));
    got.sort();
    let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
    let log = store.audit_log(None, 0, 100).await.unwrap();
    for (seq, at_ms) in got {
        assert_eq!(log[seq as usize - 1].entry.at_ms, at_ms, "entry {seq}");
    }
}
on_both!(
    audit_concurrency,
    concurrent_appends_chain_without_forks_or_gaps
);

fn cardio(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    // In a folder of its own: on the embedded defaults `cardio token` reads
    // `data/cardio.db.token-key` from there (issue 14), and the repository's
    // `data/` may hold one from a local `cardio serve`.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear().current_dir(dir.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn cardio_token_mints_what_the_node_accepts() {
    let out = cardio(
        &[
            "token",
            "--role",
            "clinician",
            "--sub",
            "dr-9",
            "--ttl",
            "15m",
        ],
        &[("CARDIO_JWT_SECRET", SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let auth = Authenticator::hs256(SECRET.as_bytes());
    assert_eq!(
        auth.verify(&token).unwrap(),
        Principal {
            subject: "dr-9".into(),
            role: Role::Clinician
        }
    );
    // Another key: refused.
    let other = Authenticator::hs256(b"a different secret, also 32 bytes long");
    assert_eq!(other.verify(&token), Err(AuthError::BadSignature));

    // RS256 with key files: minted with the private key, checked with the public one.
    let dir = env!("CARGO_MANIFEST_DIR");
    let (public, private) = (
        format!("{dir}/tests/fixtures/test-only-rs256.pub"),
        format!("{dir}/tests/fixtures/test-only-rs256.key"),
    );
    let out = cardio(
        &["token", "--role", "patient", "--sub", "p-1"],
        &[
            ("CARDIO_JWT_PUBLIC_KEY", &public),
            ("CARDIO_JWT_PRIVATE_KEY", &private),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let rs = Authenticator::rs256(&std::fs::read(&public).unwrap(), None).unwrap();
    assert_eq!(rs.verify(&token).unwrap().role, Role::Patient);
    assert_eq!(
        Authenticator::hs256(SECRET.as_bytes()).verify(&token),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn cardio_token_refuses_what_it_cannot_do_with_a_clear_message() {
    /// Arguments, environment, what the message must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &["token", "--role", "patient", "--sub", "p-1"],
            &[],
            "no key",
        ),
        (
            &["token", "--role", "root", "--sub", "p-1"],
            &[("CARDIO_JWT_SECRET", SECRET)],
            "expected patient, clinician, ops or admin",
        ),
        (
            &["token", "--role", "ops", "--sub", "o-1", "--ttl", "soon"],
            &[("CARDIO_JWT_SECRET", SECRET)],
            "--ttl",
        ),
        (
            &["token", "--role", "ops", "--sub", "o-1"],
            &[("CARDIO_JWT_SECRET", "short")],
            "CARDIO_JWT_SECRET",
        ),
    ];
    for (args, envs, why) in cases {
        let out = cardio(args, envs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(!err.contains("short\""), "the secret is echoed: {err}");
    }
}

#[actix_rt::test]
async fn cardio_audit_verify_reports_the_first_broken_entry() {
    let db = TestDb::sqlite().await;
    // The chain is keyed: the store and the command read one key file.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cardio.key");
    let (provider, _) = cardio::crypto::FileKeyProvider::open_or_create(&key_file, true).unwrap();
    let store = db
        .store
        .with_keys(std::sync::Arc::new(provider), "test")
        .await
        .unwrap();
    for i in 1..=3 {
        store.audit(&entry(i, "p-1", "allowed")).await.unwrap();
    }
    let env = [
        ("CARDIO_DATABASE_URL", db.url()),
        ("CARDIO_KEY_FILE", key_file.to_str().unwrap()),
    ];
    let out = cardio(&["audit", "verify"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 entries"));
    db.store
        .execute_admin("UPDATE audit_log SET subject = 'dr-evil' WHERE seq = 2")
        .await
        .unwrap();
    let out = cardio(&["audit", "verify"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broken at entry 2"), "{err}");
    db.done().await;
}
