//! Encryption of PHI at rest and the keyed audit trail (issue 13): after a
//! consult with marker strings in its reason, chat and notes, the markers are
//! in no byte of the SQLite files nor in any column of any PostgreSQL table,
//! and still come back through the API; rows written in the clear by the
//! code before are sealed at start; keys rotate without losing a value; and
//! `cardio audit verify` (the real binary) reports every way of tampering
//! with the audit log.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cardio::crypto::{AuditKey, CheckpointSink, FileKeyProvider, FileSink, KeyProvider};
use cardio::domain::alarm::{AlarmKind, Priority};
use cardio::domain::consult::{ChatLine, Party};
use cardio::domain::vitals::{Aggregate, Series, Span};
use cardio::principal::Role;
use cardio::store::audit::{chain_hash, AuditEntry};
use cardio::store::AlertRecord;
use cardio::store::Store;
use serde_json::json;

use crate::api::{ok, people, token, SECRET};
use crate::store::TestDb;
use crate::support::node::TestNode;
use crate::support::poll::poll_until_blocking;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");
const REASON: &str = "REASONMARK-7f3a";
const CHAT: &str = "CHATMARK-91c2";
const NOTES: &str = "NOTESMARK-55d0";
const GLASS: &str = "GLASSMARK-3e8b";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The markers found in `bytes` (as text, or hex as PostgreSQL prints bytea).
fn markers_in(bytes: &[u8]) -> Vec<&'static str> {
    [REASON, CHAT, NOTES, GLASS]
        .into_iter()
        .filter(|m| {
            let (m, h) = (m.as_bytes(), hex(m));
            bytes.windows(m.len()).any(|w| w == m)
                || bytes.windows(h.len()).any(|w| w == h.as_bytes())
        })
        .collect()
}

/// Markers in any of the SQLite files (main, -wal, -shm) of `db`.
fn markers_in_files(db: &Path) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(bytes) = std::fs::read(&path) {
            for m in markers_in(&bytes) {
                found.push((path.display().to_string(), m));
            }
        }
    }
    found
}

/// A break-glass grant with a marker in its reason, and a consult with the
/// markers in its reason, a chat line and its notes, through the node's
/// API; the consult's id. The API gives the chat line back.
async fn scenario(addr: &str) -> String {
    people(addr, &["p-1"], &["dr-1", "dr-2"], &[("p-1", "dr-1")]).await;
    // A clinician off the care team opens the records in an emergency: the
    // reason it gives may hold PHI too.
    let outsider = token(Role::Clinician, "dr-2");
    ok(
        addr,
        &outsider,
        "mutation($r: String!) { breakGlass(patientId: \"p-1\", reason: $r) { expiresAt } }",
        json!({"r": format!("unconscious in ER {GLASS}")}),
    )
    .await;
    let (patient, clinician) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    let id = ok(
        addr,
        &patient,
        "mutation($r: String!) { requestConsult(patientId: \"p-1\", reason: $r, requestId: \"r1\") }",
        json!({"r": format!("chest pain {REASON}")}),
    )
    .await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    ok(addr, &patient, join, json!({"c": id})).await;
    ok(addr, &clinician, join, json!({"c": id})).await;
    let send = "mutation($c: ID!, $k: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: $t) }";
    ok(
        addr,
        &patient,
        send,
        json!({"c": id, "k": "m1", "t": format!("it hurts {CHAT}")}),
    )
    .await;
    ok(
        addr,
        &clinician,
        "mutation($c: ID!, $n: String!) { endConsult(id: $c, notes: $n) }",
        json!({"c": id, "n": format!("follow up {NOTES}")}),
    )
    .await;
    let read = ok(
        addr,
        &clinician,
        "query($c: ID!) { consult(id: $c) { status messages { nodes { text } } } }",
        json!({"c": id}),
    )
    .await;
    assert_eq!(read["consult"]["status"], "ENDED");
    assert_eq!(
        read["consult"]["messages"]["nodes"][0]["text"],
        format!("it hurts {CHAT}")
    );
    id
}

/// The consult's journal, opened with the key file: every marker is there.
async fn markers_readable(store: &Store, consult: &str) {
    let mut all = Vec::new();
    for e in store
        .events(&format!("consult/{consult}"), 0)
        .await
        .unwrap()
    {
        all.extend_from_slice(&e.payload);
    }
    assert!(
        !all.is_empty(),
        "the consult's journal is under consult/{consult}"
    );
    assert_eq!(markers_in(&all), vec![REASON, CHAT, NOTES]);
}

async fn keyed(url: &str, key_file: &Path) -> Store {
    let (provider, _) = FileKeyProvider::open_or_create(key_file, false).unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(provider);
    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    store.with_keys(provider, "test").await.unwrap()
}

fn stop(node: &TestNode) {
    // One request answered first: the node is past start-up and handles
    // SIGTERM (it is logged 'listening' just before its handler is set).
    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(&node.addr).unwrap();
    http.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    node.signal("-TERM");
    let status = poll_until_blocking(
        "the node to exit",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || node.exited(),
    );
    assert_eq!(status.code(), Some(0), "{status:?}: {}", node.log());
}

#[actix_rt::test]
async fn phi_is_in_no_byte_of_the_sqlite_files_and_the_api_still_returns_it() {
    // The embedded default: no key file set, none there yet.
    let spec = TestNode::serve();
    let node = {
        let data = tempfile::tempdir().unwrap();
        let db = data.path().join("data/cardio.db");
        let node = spec
            .env_remove("CARDIO_KEY_FILE")
            .env("CARDIO_DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("CARDIO_JWT_SECRET", SECRET)
            .start();
        (node, data, db)
    };
    let (node, _data, db) = node;
    let key_file = PathBuf::from(format!("{}.key", db.display()));
    let id = scenario(&node.addr).await;

    // Created on first start, 0600 in a 0700 folder, said once, no key in the log.
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", db.display()));
        if f.exists() {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    let log = node.log();
    assert_eq!(
        log.matches("created the key file for encryption at rest")
            .count(),
        1,
        "{log}"
    );
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    for (_, k) in keys["keks"].as_object().unwrap() {
        assert!(!log.contains(k.as_str().unwrap()), "a KEK is in the log");
    }
    assert!(!log.contains(keys["audit"].as_str().unwrap()));
    for m in [REASON, CHAT, NOTES, GLASS] {
        assert!(!log.contains(m), "{m} is in the log");
    }

    // While it runs (the WAL holds the recent pages) and after it stopped.
    assert_eq!(markers_in_files(&db), vec![]);
    stop(&node);
    assert_eq!(markers_in_files(&db), vec![]);
    let checkpoints = PathBuf::from(format!("{}.checkpoints", db.display()));
    assert!(
        !FileSink::read(&checkpoints).unwrap().is_empty(),
        "a checkpoint at shutdown"
    );
    assert_eq!(mode(&checkpoints), 0o600);

    let url = format!("sqlite://{}", db.display());
    let store = keyed(&url, &key_file).await;
    markers_readable(&store, &id).await;
    // Without the key file, nothing opens.
    let bare = Store::connect(&url).await.unwrap();
    assert!(bare.events(&format!("consult/{id}"), 0).await.is_err());
    bare.close().await;
    store.close().await;

    // The audit trail of the scenario verifies, with its checkpoints.
    let out = cardio(
        &["audit", "verify"],
        &[
            ("CARDIO_DATABASE_URL", url.as_str()),
            ("CARDIO_KEY_FILE", key_file.to_str().unwrap()),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("checkpoints agree"), "{said}");
}

#[actix_rt::test]
async fn phi_is_in_no_column_of_any_postgresql_table_and_the_api_still_returns_it() {
    needs!(Postgres);
    let db = TestDb::postgres_empty().await;
    let node = TestNode::serve()
        .env("CARDIO_DATABASE_URL", db.url())
        .env("CARDIO_JWT_SECRET", SECRET)
        .start();
    let id = scenario(&node.addr).await;
    stop(&node);
    // pg_dump of the whole database.
    let dump = Command::new("pg_dump")
        .args(["--data-only", "--dbname", db.url()])
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(!dump.stdout.is_empty());
    assert_eq!(markers_in(&dump.stdout), Vec::<&str>::new());
    let store = keyed(db.url(), &crate::support::node::shared_key_file()).await;
    markers_readable(&store, &id).await;
    store.close().await;
    db.done().await;
}

fn cardio(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[actix_rt::test]
async fn rows_written_in_the_clear_before_are_sealed_at_start_and_still_read() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("cardio.db");
    let url = format!("sqlite://{}", db.display());
    // As the code before encryption at rest wrote them.
    let old = Store::connect(&url).await.unwrap();
    old.migrate().await.unwrap();
    let event = json!({"event": "requested", "patient": "p-1", "reason": REASON, "at_ms": 1});
    old.append("consult/c-old", 0, "m1", 0, event.to_string().as_bytes())
        .await
        .unwrap();
    let line = ChatLine {
        seq: 1,
        author: Party::Patient("p-1".into()),
        client_message_id: "m1".into(),
        text: CHAT.into(),
        at_ms: 1,
    };
    old.project_chat("c-old", &line).await.unwrap();
    old.save_snapshot("consult/c-old", 1, NOTES.as_bytes())
        .await
        .unwrap();
    let aggregate = Aggregate {
        series: Series::HeartRate,
        span: Span::Minute,
        start_ms: 60_000,
        min: 61.5,
        max: 142.25,
        sum: 5000.0,
        count: 50,
        covered_ms: None,
    };
    old.save_aggregates("d-1", std::slice::from_ref(&aggregate))
        .await
        .unwrap();
    let alert = AlertRecord {
        id: "d-1:extreme_tachycardia:1".into(),
        device_id: "d-1".into(),
        kind: AlarmKind::ExtremeTachycardia,
        source: None,
        priority: Priority::High,
        since_ms: 1,
        raised_ms: 2,
        resolved_ms: None,
        reading: Some(181.5),
        threshold: Some(180.0),
        announced: true,
        resolve_reason: None,
        reannounced_ms: None,
        escalated_ms: None,
    };
    old.raise_alert(&alert).await.unwrap();
    old.close().await;
    // The pool's last connection folds the WAL into the file as it closes,
    // on its own thread: under load that can end after `close` returned.
    crate::support::poll::poll_until(
        "the old rows are plaintext in the files",
        Duration::from_secs(10),
        Duration::from_millis(20),
        async || markers_in_files(&db).len() == 3,
    )
    .await;

    let node = TestNode::serve()
        .env_remove("CARDIO_KEY_FILE")
        .env("CARDIO_DATABASE_URL", &url)
        .start();
    let log = node.log();
    assert!(log.contains("sealed values written in the clear"), "{log}");
    stop(&node);
    assert_eq!(markers_in_files(&db), vec![]);

    let store = keyed(&url, Path::new(&format!("{}.key", db.display()))).await;
    let events = store.events("consult/c-old", 0).await.unwrap();
    assert_eq!(events[0].payload, event.to_string().as_bytes());
    assert_eq!(store.chat_lines("c-old", 0).await.unwrap(), vec![line]);
    assert_eq!(
        store
            .snapshot("consult/c-old")
            .await
            .unwrap()
            .unwrap()
            .payload,
        NOTES.as_bytes()
    );
    assert_eq!(
        store
            .aggregates("d-1", Series::HeartRate, Span::Minute, 0, u64::MAX)
            .await
            .unwrap(),
        vec![aggregate]
    );
    assert_eq!(store.alerts("d-1").await.unwrap(), vec![alert]);
    // Sealing again finds nothing left to seal.
    assert_eq!(store.seal_existing().await.unwrap(), 0);
    store.close().await;
    // Without the keys, neither the values nor the vitals read.
    let bare = Store::connect(&url).await.unwrap();
    assert!(bare.chat_lines("c-old", 0).await.is_err());
    assert!(bare
        .aggregates("d-1", Series::HeartRate, Span::Minute, 0, u64::MAX)
        .await
        .is_err());
    assert!(bare.alerts("d-1").await.is_err());
    bare.close().await;
}

#[actix_rt::test]
async fn keys_rotate_while_stores_keep_reading_old_and_new_values() {
    let data = tempfile::tempdir().unwrap();
    let (db, key_file) = (
        data.path().join("cardio.db"),
        data.path().join("cardio.key"),
    );
    let url = format!("sqlite://{}", db.display());
    FileKeyProvider::open_or_create(&key_file, true).unwrap();
    let line = |seq: u64, text: &str| ChatLine {
        seq,
        author: Party::Clinician("dr-1".into()),
        client_message_id: format!("m{seq}"),
        text: text.into(),
        at_ms: seq,
    };
    // A node running from before the rotation to after it.
    let running = keyed(&url, &key_file).await;
    running
        .project_chat("c-1", &line(1, "before"))
        .await
        .unwrap();
    let before: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();

    let env = [
        ("CARDIO_DATABASE_URL", url.as_str()),
        ("CARDIO_KEY_FILE", key_file.to_str().unwrap()),
        ("USER", "ops-7"),
    ];
    let out = cardio(&["keys", "rotate"], &env);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("data keys re-wrapped"), "{said}");
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    assert_ne!(after["current"], before["current"]);
    assert_eq!(mode(&key_file), 0o600);

    // A node started after it seals under the new KEK; both read both.
    let started = keyed(&url, &key_file).await;
    started
        .project_chat("c-1", &line(2, "after"))
        .await
        .unwrap();
    let both = vec![line(1, "before"), line(2, "after")];
    assert_eq!(running.chat_lines("c-1", 0).await.unwrap(), both);
    assert_eq!(started.chat_lines("c-1", 0).await.unwrap(), both);
    // The rotation is in the audit trail, which still verifies.
    let log = started.audit_log(None, 0, 100).await.unwrap();
    let rotation = log
        .iter()
        .find(|r| r.entry.action == "key_rotation")
        .expect("a key_rotation entry");
    assert_eq!(rotation.entry.subject, "cli:ops-7");
    assert!(rotation
        .entry
        .fields
        .contains(after["current"].as_str().unwrap()));
    assert_eq!(started.verify_audit().await.unwrap(), Ok(1));
    running.close().await;
    started.close().await;
}

/// A keyed database with five audit entries and a checkpoint of them; the
/// key file and the checkpoint file.
struct Audited {
    db: TestDb,
    store: Store,
    _dir: tempfile::TempDir,
    key_file: PathBuf,
    checkpoints: PathBuf,
}

async fn audited(postgres: bool) -> Audited {
    let db = if postgres {
        TestDb::postgres().await
    } else {
        TestDb::sqlite().await
    };
    let dir = tempfile::tempdir().unwrap();
    let (key_file, checkpoints) = (
        dir.path().join("k.key"),
        dir.path().join("audit.checkpoints"),
    );
    let (provider, _) = FileKeyProvider::open_or_create(&key_file, true).unwrap();
    let store = db
        .store
        .with_keys(Arc::new(provider), "test")
        .await
        .unwrap();
    for i in 1..=5 {
        store.audit(&entry(i)).await.unwrap();
    }
    // What a node does every audit_checkpoint_every and at shutdown.
    let c = store.audit_checkpoint("n-1").await.unwrap();
    assert_eq!(c.seq, 5);
    FileSink::new(&checkpoints).append(&c).unwrap();
    Audited {
        db,
        store,
        _dir: dir,
        key_file,
        checkpoints,
    }
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        at_ms: 1_000 + i,
        subject: format!("dr-{i}"),
        role: "clinician".into(),
        action: "read".into(),
        patient_id: Some("p-1".into()),
        fields: "vitals".into(),
        outcome: "allowed".into(),
    }
}

impl Audited {
    /// `cardio audit verify`: its exit code and what it said.
    fn verify(&self) -> (Option<i32>, String) {
        let out = cardio(
            &["audit", "verify"],
            &[
                ("CARDIO_DATABASE_URL", self.db.url()),
                ("CARDIO_KEY_FILE", self.key_file.to_str().unwrap()),
                (
                    "CARDIO_AUDIT_CHECKPOINT_FILE",
                    self.checkpoints.to_str().unwrap(),
                ),
            ],
        );
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    }

    async fn sql(&self, statements: &[String]) {
        for s in statements {
            self.store.execute_admin(s).await.unwrap();
        }
    }

    async fn done(self) {
        self.store.close().await;
        self.db.done().await;
    }
}

/// Every link re-hashed by someone without the audit key (who knows the
/// algorithm: HMAC under a key of their choosing).
fn recomputed(records: &[cardio::store::audit::AuditRecord]) -> Vec<String> {
    let forger = AuditKey::new([0x42; 32]);
    let mut prev = cardio::store::audit::GENESIS.to_owned();
    let mut out = Vec::new();
    for r in records {
        let hash = chain_hash(&forger, &prev, r.seq, &r.entry);
        out.push(format!(
            "UPDATE audit_log SET prev_hash = '{prev}', hash = '{hash}' WHERE seq = {}",
            r.seq
        ));
        prev = hash;
    }
    out.push(format!(
        "UPDATE audit_head SET seq = {}, hash = '{prev}' WHERE id = 1",
        records.len()
    ));
    out
}

async fn every_tampering_is_reported_by_cardio_audit_verify(postgres: bool) {
    // Untouched: intact, and the checkpoint agrees.
    let a = audited(postgres).await;
    let (code, said) = a.verify();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("5 entries, 1 checkpoints agree"), "{said}");
    a.done().await;

    // 1. An entry edited and the whole chain recomputed (without the key).
    let a = audited(postgres).await;
    a.sql(&["UPDATE audit_log SET subject = 'dr-evil' WHERE seq = 2".into()])
        .await;
    let records = a.store.audit_log(None, 0, 100).await.unwrap();
    a.sql(&recomputed(&records)).await;
    let (code, said) = a.verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("broken at entry 1"), "{said}");
    assert!(said.contains("do not match its hash"), "{said}");
    a.done().await;

    // 2. The tail deleted and the head moved back.
    let a = audited(postgres).await;
    a.sql(&[
        "DELETE FROM audit_log WHERE seq > 3".into(),
        "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3) WHERE id = 1".into(),
    ])
    .await;
    let (code, said) = a.verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ends at entry 3"), "{said}");
    assert!(said.contains("saw 5 entries"), "{said}");
    a.done().await;

    // 3. An entry deleted and the later ones renumbered (and relinked).
    let a = audited(postgres).await;
    a.sql(&[
        "DELETE FROM audit_log WHERE seq = 3".into(),
        "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3".into(),
        "UPDATE audit_log SET prev_hash = (SELECT hash FROM audit_log WHERE seq = 2) WHERE seq = 3"
            .into(),
        "UPDATE audit_head SET seq = 4 WHERE id = 1".into(),
    ])
    .await;
    let (code, said) = a.verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("broken at entry 3"), "{said}");
    a.done().await;

    // 4. A forged entry appended (and the head moved to it).
    let a = audited(postgres).await;
    let last = a.store.audit_log(None, 4, 1).await.unwrap().remove(0);
    let forged = entry(6);
    let hash = chain_hash(&AuditKey::unkeyed(), &last.hash, 6, &forged);
    a.sql(&[
        format!(
            "INSERT INTO audit_log (seq, at_ms, subject, role, action, patient_id, fields, outcome, prev_hash, hash) \
             VALUES (6, 1006, 'dr-6', 'clinician', 'read', 'p-1', 'vitals', 'allowed', '{}', '{hash}')",
            last.hash
        ),
        format!("UPDATE audit_head SET seq = 6, hash = '{hash}' WHERE id = 1"),
    ])
    .await;
    let (code, said) = a.verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("broken at entry 6"), "{said}");
    a.done().await;

    // 5. Every row wiped and the head reset.
    let a = audited(postgres).await;
    a.sql(&[
        "DELETE FROM audit_log".into(),
        format!(
            "UPDATE audit_head SET seq = 0, hash = '{}' WHERE id = 1",
            cardio::store::audit::GENESIS
        ),
    ])
    .await;
    let (code, said) = a.verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("wiped"), "{said}");
    a.done().await;

    // 6. A forged checkpoint (to hide a truncation) is itself reported.
    let a = audited(postgres).await;
    a.sql(&[
        "DELETE FROM audit_log WHERE seq > 3".into(),
        "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3) WHERE id = 1".into(),
    ])
    .await;
    std::fs::write(&a.checkpoints, "").unwrap();
    let head = a.store.audit_head().await.unwrap();
    let fake = cardio::crypto::Checkpoint::sign(&AuditKey::unkeyed(), head.0, &head.1, "n-1");
    FileSink::new(&a.checkpoints).append(&fake).unwrap();
    let (code, said) = a.verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("not signed with the audit key"), "{said}");
    a.done().await;
}

#[actix_rt::test]
async fn every_tampering_is_reported_by_cardio_audit_verify_on_sqlite() {
    every_tampering_is_reported_by_cardio_audit_verify(false).await;
}

#[actix_rt::test]
async fn every_tampering_is_reported_by_cardio_audit_verify_on_postgres() {
    needs!(Postgres);
    every_tampering_is_reported_by_cardio_audit_verify(true).await;
}

#[actix_rt::test]
async fn a_node_on_postgresql_without_a_key_file_does_not_start() {
    needs!(Postgres);
    let db = TestDb::postgres_empty().await;
    let out = cardio(
        &["serve"],
        &[
            ("CARDIO_DATABASE_URL", db.url()),
            ("CARDIO_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CARDIO_KEY_FILE"), "{err}");
    db.done().await;
}

/// The unkeyed hash of the versions before the keyed chain.
fn legacy_hash(prev: &str, seq: u64, e: &AuditEntry) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev.as_bytes());
    field(&seq.to_be_bytes());
    field(&e.at_ms.to_be_bytes());
    field(e.subject.as_bytes());
    field(e.role.as_bytes());
    field(e.action.as_bytes());
    match &e.patient_id {
        Some(p) => {
            field(b"1");
            field(p.as_bytes());
        }
        None => field(b"0"),
    }
    field(e.fields.as_bytes());
    field(e.outcome.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A database whose audit log an earlier version wrote (unkeyed), three
/// entries; `break_at`: that entry's outcome altered afterwards.
async fn legacy_chain(postgres: bool, break_at: Option<u64>) -> (TestDb, Store) {
    let db = if postgres {
        TestDb::postgres().await
    } else {
        TestDb::sqlite().await
    };
    let mut prev = cardio::store::audit::GENESIS.to_owned();
    let mut sql = Vec::new();
    for i in 1..=3 {
        let e = entry(i);
        let hash = legacy_hash(&prev, i, &e);
        let outcome = if break_at == Some(i) {
            "denied"
        } else {
            "allowed"
        };
        sql.push(format!(
            "INSERT INTO audit_log (seq, at_ms, subject, role, action, patient_id, fields, outcome, prev_hash, hash) \
             VALUES ({i}, {}, '{}', 'clinician', 'read', 'p-1', 'vitals', '{outcome}', '{prev}', '{hash}')",
            e.at_ms, e.subject
        ));
        prev = hash;
    }
    sql.push(format!(
        "UPDATE audit_head SET seq = 3, hash = '{prev}', keyed = 0 WHERE id = 1"
    ));
    for s in &sql {
        db.store.execute_admin(s).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (provider, _) = FileKeyProvider::open_or_create(&dir.path().join("k"), true).unwrap();
    let store = db
        .store
        .with_keys(Arc::new(provider), "test")
        .await
        .unwrap();
    (db, store)
}

async fn an_unkeyed_chain_of_an_earlier_version_is_checked_then_keyed_once(postgres: bool) {
    let (db, store) = legacy_chain(postgres, None).await;
    assert!(
        store.verify_audit().await.unwrap().is_err(),
        "not keyed yet"
    );
    // Not while checkpoints say a keyed chain existed.
    assert!(store.key_audit_chain(true).await.is_err());
    assert_eq!(store.key_audit_chain(false).await.unwrap(), 3);
    assert_eq!(store.verify_audit().await.unwrap(), Ok(3));
    assert_eq!(store.key_audit_chain(false).await.unwrap(), 0, "once");
    store.audit(&entry(4)).await.unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(4));
    store.close().await;
    db.done().await;

    // A broken old chain is not re-hashed (that would launder it).
    let (db, store) = legacy_chain(postgres, Some(2)).await;
    let err = store.key_audit_chain(false).await.unwrap_err().to_string();
    assert!(err.contains("broken at entry 2"), "{err}");
    assert!(store.verify_audit().await.unwrap().is_err());
    store.close().await;
    db.done().await;
}

#[actix_rt::test]
async fn an_unkeyed_chain_of_an_earlier_version_is_checked_then_keyed_once_on_sqlite() {
    an_unkeyed_chain_of_an_earlier_version_is_checked_then_keyed_once(false).await;
}

#[actix_rt::test]
async fn an_unkeyed_chain_of_an_earlier_version_is_checked_then_keyed_once_on_postgres() {
    needs!(Postgres);
    an_unkeyed_chain_of_an_earlier_version_is_checked_then_keyed_once(true).await;
}
