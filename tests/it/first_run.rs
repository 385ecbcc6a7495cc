//! The first run on the embedded defaults (issue 14): with no token key
//! configured, `cardio serve` creates a key file of its own, prints a
//! sign-in link for a local admin on stdout (never in its log), and `cardio
//! token` mints with the same key; a configured key, or PostgreSQL, turns
//! all of this off.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::post_raw;
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");
const ME: &str = "{ me { subject role } }";

/// A node on the SQLite file in `dir`, with no token key configured.
fn serve_in(dir: &Path) -> TestNode {
    TestNode::serve()
        .env(
            "CARDIO_DATABASE_URL",
            format!("sqlite://{}/cardio.db", dir.display()),
        )
        .lifetime(Duration::from_secs(120))
        .start()
}

/// The URL of the sign-in link the node printed (a JSON line of its own on
/// stdout, since the node logs JSON), once it is there.
async fn sign_in_url(node: &TestNode) -> String {
    poll_until(
        "the sign-in link on stdout",
        Duration::from_secs(10),
        Duration::from_millis(20),
        async || {
            node.stdout_lines().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                v["sign_in"]["url"].as_str().map(str::to_owned)
            })
        },
    )
    .await
}

fn token_of(url: &str) -> String {
    url.split_once("/#token=")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_else(|| panic!("a link with #token=: {url}"))
}

async fn me(addr: &str, token: &str) -> Value {
    let body = json!({ "query": ME }).to_string();
    let (status, v) = post_raw(addr, Some(token), &body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Log lines (not the sign-in line) on stdout and stderr.
fn log_lines(node: &TestNode) -> Vec<String> {
    node.log()
        .lines()
        .filter(|l| !l.contains("\"sign_in\""))
        .map(str::to_owned)
        .collect()
}

fn cardio_token(db_dir: &Path, role: &str, sub: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["token", "--role", role, "--sub", sub])
        .env_clear()
        .env(
            "CARDIO_DATABASE_URL",
            format!("sqlite://{}/cardio.db", db_dir.display()),
        )
        .output()
        .unwrap()
}

#[actix_rt::test]
async fn a_first_run_makes_its_own_key_and_prints_a_link_that_signs_in_the_local_admin() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    // `cardio token` before the first start: no key yet, and it says how.
    let early = cardio_token(&db, "ops", "o-1");
    assert_eq!(early.status.code(), Some(2));
    let said = String::from_utf8_lossy(&early.stderr);
    assert!(
        said.contains("no key") && said.contains("token-key"),
        "{said}"
    );
    assert!(!db.join("cardio.db.token-key").exists());

    let node = serve_in(&db);
    let key_file = db.join("cardio.db.token-key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&db), 0o700);
    let key = std::fs::read_to_string(&key_file).unwrap();

    let url = sign_in_url(&node).await;
    assert!(
        url.starts_with(&format!("http://{}/#token=", node.addr)),
        "{url}"
    );
    let admin = token_of(&url);
    let v = me(&node.addr, &admin).await;
    assert_eq!(
        v["data"]["me"],
        json!({"subject": "local-admin", "role": "ADMIN"}),
        "{v}"
    );

    // `cardio token` from the same place mints with the same key.
    let out = cardio_token(&db, "ops", "o-1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ops = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let v = me(&node.addr, &ops).await;
    assert_eq!(
        v["data"]["me"],
        json!({"subject": "o-1", "role": "OPS"}),
        "{v}"
    );

    // Said once in the log, and neither the key nor a token is in it.
    let log = log_lines(&node);
    let created: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("created a token key"))
        .collect();
    assert_eq!(created.len(), 1, "{log:#?}");
    for l in &log {
        assert!(
            !l.contains(&admin) && !l.contains(&ops),
            "a token in the log: {l}"
        );
        assert!(!l.contains(key.trim()), "the key in the log: {l}");
        assert!(!l.contains("#token="), "a link in the log: {l}");
    }
    let links = node
        .stdout_lines()
        .iter()
        .filter(|l| l.contains("\"sign_in\""))
        .count();
    assert_eq!(links, 1, "one link per start");
    drop(node);

    // A second start reuses the key: the old tokens still work.
    let node = serve_in(&db);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    let second = token_of(&sign_in_url(&node).await);
    assert_ne!(second, admin);
    for t in [&admin, &ops, &second] {
        let v = me(&node.addr, t).await;
        assert!(v.get("errors").is_none(), "{v}");
    }
    assert!(!node.log().contains("created a token key"));
}

/// With a key configured, or on PostgreSQL: no key file, no link, and
/// behaviour as before.
async fn no_first_run_key(node: &TestNode, db_dir: Option<&Path>) {
    // The node is up and its start is over: it would have printed by now.
    let (_, v) = post_raw(&node.addr, None, &json!({"query": ME}).to_string()).await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{v}"
    );
    assert!(!node.log().contains("#token="), "{}", node.log());
    assert!(!node.log().contains("sign_in"));
    assert!(!node.log().contains("created a token key"));
    if let Some(dir) = db_dir {
        assert!(!dir.join("cardio.db.token-key").exists());
    }
}

#[actix_rt::test]
async fn a_configured_secret_turns_the_first_run_key_and_link_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::serve()
        .env(
            "CARDIO_DATABASE_URL",
            format!("sqlite://{}/cardio.db", dir.path().display()),
        )
        .env("CARDIO_JWT_SECRET", crate::api::SECRET)
        .lifetime(Duration::from_secs(120))
        .start();
    no_first_run_key(&node, Some(dir.path())).await;
    let v = me(
        &node.addr,
        &crate::api::token(cardio::principal::Role::Ops, "o-1"),
    )
    .await;
    assert_eq!(v["data"]["me"]["role"], "OPS", "{v}");
}

#[actix_rt::test]
async fn a_node_on_postgresql_makes_no_key_and_refuses_requests_without_one() {
    needs!(Postgres);
    let db = crate::store::TestDb::postgres_empty().await;
    let node = TestNode::serve()
        .env("CARDIO_DATABASE_URL", db.url())
        .lifetime(Duration::from_secs(120))
        .start();
    no_first_run_key(&node, Some(node.data_dir())).await;
    let token = crate::api::token(cardio::principal::Role::Ops, "o-1");
    let body = json!({ "query": ME }).to_string();
    let (status, v) = post_raw(&node.addr, Some(&token), &body).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{v}"
    );
    let said = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(said.contains("no key to verify"), "{v}");
    assert!(node.log().contains("refuses every request"));
    drop(node);
    db.done().await;
}
