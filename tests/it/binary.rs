//! The real `cardio` binary: start, probes, `cardio tree`, drain on signals.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::node::TestNode;
use crate::support::poll::poll_until_blocking;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");

/// A `cardio serve` on the embedded defaults that drains within 10 s.
fn serve(envs: &[(&str, &str)]) -> TestNode {
    let node = TestNode::serve()
        .env("CARDIO_SHUTDOWN_GRACE", "10s")
        .envs(envs.iter().copied())
        .start();
    // Everything up to `listening` is already here: JSON, line by line.
    for line in node.stdout_lines() {
        serde_json::from_str::<serde_json::Value>(&line).expect("JSON log lines");
    }
    node
}

/// The exit code of `node`, which must exit within `limit`.
fn wait_exit(node: &TestNode, limit: Duration) -> i32 {
    let status = poll_until_blocking("the node to exit", limit, Duration::from_millis(20), || {
        node.exited()
    });
    status.code().expect("exited, not killed by a signal")
}

async fn get(url: &str) -> (u16, serde_json::Value) {
    let mut res = awc::Client::new().get(url).send().await.expect("request");
    let status = res.status().as_u16();
    let body = res.json::<serde_json::Value>().await.expect("JSON body");
    (status, body)
}

fn cardio(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_clear().output().unwrap()
}

#[actix_rt::test]
async fn serve_answers_probes_and_shows_its_tree_then_drains_on_sigterm() {
    let node = serve(&[("CARDIO_NODE_ID", "node-a")]);
    let base = node.url();

    let (status, health) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, health["node"].as_str()), (200, Some("node-a")));
    let (status, ready) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["database"], true);

    let (status, tree) = get(&format!("{base}/debug/tree")).await;
    assert_eq!(status, 200);
    assert_eq!(tree["path"], "/cardio");
    assert_eq!(tree["kind"], "supervisor");
    assert_eq!(tree["status"], "running");
    assert_eq!(tree["restarts"], 0);
    assert_eq!(tree["children"][0]["path"], "/cardio/entities");
    let kinds: Vec<&str> = tree["children"][0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["session", "consult", "device"]);

    let out = cardio(&["tree", "--url", &base]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("/cardio  [supervisor one_for_one]  running  restarts=0"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("└── entities  [supervisor one_for_one]  running"),
        "{text}"
    );

    node.signal("-TERM");
    assert_eq!(wait_exit(&node, Duration::from_secs(20)), 0);
    let log = node.stdout_lines().join("\n");
    assert!(log.contains("\"draining\""), "{log}");
    assert!(log.contains("\"drained\""), "{log}");
}

#[actix_rt::test]
async fn sigint_drains_too() {
    let node = serve(&[]);
    let (status, _) = get(&format!("{}/healthz", node.url())).await;
    assert_eq!(status, 200);
    node.signal("-INT");
    assert_eq!(wait_exit(&node, Duration::from_secs(20)), 0);
}

#[test]
fn an_invalid_configuration_is_refused_with_a_message_naming_the_setting() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("CARDIO_HTTP_ADDR", "everywhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CARDIO_HTTP_ADDR"), "{err}");
    assert!(err.contains("not a socket address"), "{err}");
}

#[test]
fn a_busy_port_is_reported_not_ignored() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("CARDIO_HTTP_ADDR", &addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[test]
fn tree_against_no_node_fails_clearly() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let out = cardio(&["tree", "--url", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn migrate_creates_and_migrates_the_sqlite_file() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("fresh/cardio.db");
    let out = Command::new(BIN)
        .arg("migrate")
        .env_clear()
        .env(
            "CARDIO_DATABASE_URL",
            format!("sqlite://{}", file.display()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated the sqlite database"));
    assert!(file.exists());
}

#[test]
fn a_node_without_its_database_refuses_to_start_and_hides_the_password() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("CARDIO_HTTP_ADDR", "127.0.0.1:0")
        .env(
            "CARDIO_DATABASE_URL",
            "postgres://cardio:s3cret@127.0.0.1:1/cardio",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(
        !err.contains("s3cret") && !log.contains("s3cret"),
        "{err}\n{log}"
    );
}

#[actix_rt::test]
async fn a_node_runs_on_postgresql() {
    needs!(Postgres);
    let db = crate::store::TestDb::postgres_empty().await;
    let node = serve(&[("CARDIO_DATABASE_URL", db.url())]);
    let (status, ready) = get(&format!("{}/readyz", node.url())).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["database"], true);
    node.signal("-TERM");
    assert_eq!(wait_exit(&node, Duration::from_secs(20)), 0);
    let migrated = db.store.last_seq("any/actor").await;
    assert!(
        migrated.is_ok(),
        "the node created the journal: {migrated:?}"
    );
    db.done().await;
}
