//! The real `cardio` binary: start, probes, `cardio tree`, drain on signals.

use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cardio");

/// A `cardio serve` process that is killed if the test ends early.
struct Served {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(envs: &[(&str, &str)]) -> Served {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env(
            "CARDIO_DATABASE_URL",
            format!("sqlite://{}/cardio.db", data.path().display()),
        )
        .env("CARDIO_HTTP_ADDR", "127.0.0.1:0")
        .env("CARDIO_LOG_FORMAT", "json")
        .env("CARDIO_SHUTDOWN_GRACE", "10s")
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (tx, lines) = mpsc::channel();
    let (child, addr) = crate::spawn::serve(cmd, Duration::from_secs(30), move |line| {
        let _ = tx.send(line.to_owned());
    });
    // Everything up to `listening` is already here: JSON, line by line.
    let early: Vec<String> = lines.try_iter().collect();
    for line in &early {
        serde_json::from_str::<serde_json::Value>(line).expect("JSON log lines");
    }
    Served {
        child,
        addr,
        lines,
        _data: data,
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn wait_exit(served: &mut Served, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            return status.code().expect("exited, not killed by a signal");
        }
        assert!(Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rest_of_log(served: &Served) -> Vec<String> {
    served.lines.try_iter().collect()
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
    let mut node = serve(&[("CARDIO_NODE_ID", "node-a")]);
    let base = format!("http://{}", node.addr);

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

    signal(&node.child, "-TERM");
    assert_eq!(wait_exit(&mut node, Duration::from_secs(20)), 0);
    let log = rest_of_log(&node).join("\n");
    assert!(log.contains("\"draining\""), "{log}");
    assert!(log.contains("\"drained\""), "{log}");
}

#[actix_rt::test]
async fn sigint_drains_too() {
    let mut node = serve(&[]);
    let (status, _) = get(&format!("http://{}/healthz", node.addr)).await;
    assert_eq!(status, 200);
    signal(&node.child, "-INT");
    assert_eq!(wait_exit(&mut node, Duration::from_secs(20)), 0);
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
    let db = crate::store::TestDb::postgres_empty().await;
    let mut node = serve(&[("CARDIO_DATABASE_URL", db.url())]);
    let (status, ready) = get(&format!("http://{}/readyz", node.addr)).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["database"], true);
    signal(&node.child, "-TERM");
    assert_eq!(wait_exit(&mut node, Duration::from_secs(20)), 0);
    let migrated = db.store.last_seq("any/actor").await;
    assert!(
        migrated.is_ok(),
        "the node created the journal: {migrated:?}"
    );
    db.done().await;
}
