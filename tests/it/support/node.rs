//! A real `cardio serve` process for a test (and, by `#[path]`, for the
//! benches): [`TestNode::serve`] gives a [`NodeSpec`] on the embedded
//! defaults, `start` waits for the node's `listening` line and hands back its
//! address and everything it logs.
//!
//! No node outlives its test: dropping the [`TestNode`] kills it, a node
//! that never gets to `listening` is killed before the panic, and a
//! watchdog kills any node still running after its lifetime (10 minutes
//! unless the spec says otherwise), so a test that hangs does not keep its
//! nodes for good.
//!
//! This file uses std, serde_json and tempfile only: the benches include it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");

/// The key file every test node reads (`cardio keys init` once per run).
pub fn shared_key_file() -> std::path::PathBuf {
    static ONCE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cardio-test-shared.key");
        let out = Command::new(BIN)
            .args(["keys", "init"])
            .env_clear()
            .env("CARDIO_KEY_FILE", &path)
            .output()
            .expect("cardio keys init runs");
        assert!(
            out.status.success(),
            "cardio keys init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
    .clone()
}

/// How to start a node: the command line and environment, and how long to
/// wait for it.
pub struct NodeSpec {
    cmd: Command,
    /// Set in the logs echoed with `CARDIO_TEST_LOGS` (a node id, say), so
    /// that the lines of several nodes can be told apart.
    name: String,
    ready_within: Duration,
    lifetime: Duration,
    /// The default SQLite database lives here; removed after the process.
    data: tempfile::TempDir,
}

impl NodeSpec {
    /// Sets one variable of the node's environment (over the defaults).
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> NodeSpec {
        self.cmd.env(key, value);
        self
    }

    /// Takes a variable out of the node's environment (one of the defaults).
    #[allow(dead_code)] // not every user
    pub fn env_remove(mut self, key: &str) -> NodeSpec {
        self.cmd.env_remove(key);
        self
    }

    /// Sets variables of the node's environment (over the defaults).
    pub fn envs<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> NodeSpec {
        self.cmd.envs(vars);
        self
    }

    pub fn name(mut self, name: &str) -> NodeSpec {
        self.name = name.to_owned();
        self
    }

    /// How long `start` waits for `listening` (30 s unless set).
    pub fn ready_within(mut self, limit: Duration) -> NodeSpec {
        self.ready_within = limit;
        self
    }

    /// After this the watchdog kills the node (10 minutes unless set).
    #[allow(dead_code)] // the benches' nodes live longer
    pub fn lifetime(mut self, limit: Duration) -> NodeSpec {
        self.lifetime = limit;
        self
    }

    /// Starts the node and waits until it listens. Every line it writes
    /// (its JSON log on stdout, and stderr) is kept in [`TestNode::log`];
    /// stderr is also echoed to the test's own (shown when the test fails),
    /// stdout too when `CARDIO_TEST_LOGS` is set.
    pub fn start(mut self) -> TestNode {
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cardio starts");
        let log: Arc<Mutex<Vec<Line>>> = Arc::default();
        let echo = std::env::var_os("CARDIO_TEST_LOGS").is_some();
        let (listening, heard) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        keep_lines(
            stdout,
            Stream::Stdout,
            &log,
            &self.name,
            echo,
            Some(listening),
        );
        keep_lines(stderr, Stream::Stderr, &log, &self.name, true, None);
        let child = Arc::new(Mutex::new(child));
        let Ok(line) = heard.recv_timeout(self.ready_within) else {
            let mut child = child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cardio did not log 'listening' within {:?}; its log:\n{}",
                self.ready_within,
                text(&log.lock().unwrap())
            );
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        let addr = v["addr"]
            .as_str()
            .expect("the listening address")
            .to_owned();
        let pid = child.lock().unwrap().id();
        TestNode {
            _watchdog: watchdog(&child, self.lifetime, &self.name),
            child,
            pid,
            addr,
            log,
            data: self.data,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stream {
    Stdout,
    Stderr,
}

struct Line {
    stream: Stream,
    text: String,
}

fn text(lines: &[Line]) -> String {
    let all: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    all.join("\n")
}

/// Reads `from` line by line on a thread of its own into `log`; the first
/// `listening` line also goes to `listening`.
fn keep_lines(
    from: impl Read + Send + 'static,
    stream: Stream,
    log: &Arc<Mutex<Vec<Line>>>,
    name: &str,
    echo: bool,
    mut listening: Option<mpsc::Sender<String>>,
) {
    let (log, name) = (Arc::clone(log), name.to_owned());
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                if let Some(tx) = listening.take() {
                    let _ = tx.send(line.clone());
                }
            }
            if echo {
                eprintln!("[{name}] {line}");
            }
            log.lock().unwrap().push(Line { stream, text: line });
        }
    });
}

/// Kills the node once `lifetime` has passed, unless the sender it waits
/// on is dropped first (the node was dropped).
fn watchdog(child: &Arc<Mutex<Child>>, lifetime: Duration, name: &str) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let (child, name) = (Arc::clone(child), name.to_owned());
    std::thread::spawn(move || {
        if rx.recv_timeout(lifetime) == Err(mpsc::RecvTimeoutError::Timeout) {
            let mut child = child.lock().unwrap();
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("[{name}] cardio outlived its lifetime of {lifetime:?}: killed");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    });
    tx
}

/// A running `cardio serve`, killed when dropped.
pub struct TestNode {
    child: Arc<Mutex<Child>>,
    pid: u32,
    /// host:port it listens at.
    pub addr: String,
    log: Arc<Mutex<Vec<Line>>>,
    data: tempfile::TempDir,
    /// Dropped with the node: the watchdog stands down.
    _watchdog: mpsc::Sender<()>,
}

impl TestNode {
    /// `cardio serve` of this build with none of the test's environment:
    /// listening on a free port of 127.0.0.1, logging JSON, on a fresh
    /// SQLite file and the in-process bus (the embedded defaults).
    pub fn serve() -> NodeSpec {
        Self::run("serve")
    }

    /// [`Self::serve`], with demo data (`cardio demo`).
    #[allow(dead_code)] // not the benches'
    pub fn demo() -> NodeSpec {
        Self::run("demo")
    }

    fn run(command: &str) -> NodeSpec {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .env_clear()
            .env(
                "CARDIO_DATABASE_URL",
                format!("sqlite://{}/cardio.db", data.path().display()),
            )
            .env("CARDIO_HTTP_ADDR", "127.0.0.1:0")
            .env("CARDIO_LOG_FORMAT", "json")
            // One key file for every node of the test run, as the nodes of a
            // cluster share one (a node on PostgreSQL needs it).
            .env("CARDIO_KEY_FILE", shared_key_file());
        NodeSpec {
            cmd,
            name: "cardio".to_owned(),
            ready_within: Duration::from_secs(30),
            lifetime: Duration::from_secs(600),
            data,
        }
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    #[allow(dead_code)] // the benches signal by pid
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The folder of the default SQLite database.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Every line the node wrote so far, stdout and stderr, in order.
    pub fn log(&self) -> String {
        text(&self.log.lock().unwrap())
    }

    /// The lines of stdout so far (its JSON log).
    pub fn stdout_lines(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|l| l.stream == Stream::Stdout)
            .map(|l| l.text.clone())
            .collect()
    }

    /// Sends `sig` (`-TERM`, `-KILL`, `-STOP`…) with `kill`.
    pub fn signal(&self, sig: &str) {
        let sent = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(sent, "kill {sig} {}", self.pid);
    }

    /// How the process ended, if it has.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    /// Waits for the process to end (after a `-KILL`, say).
    pub fn wait(&self) -> ExitStatus {
        self.child.lock().unwrap().wait().unwrap()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        drop(child);
        // A failing test shows what its nodes warned about (the log is
        // otherwise only read by the test itself).
        if std::thread::panicking() {
            let log = self.log();
            let loud: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
                .collect();
            let from = loud.len().saturating_sub(100);
            eprintln!(
                "--- node at {} (pid {}): its last {} warnings and errors",
                self.addr,
                self.pid,
                loud.len() - from
            );
            for l in &loud[from..] {
                eprintln!("{l}");
            }
        }
    }
}

/// A store on `url` that opens what test nodes sealed (with their shared
/// key file): for tests that read a cluster's journal themselves.
pub async fn keyed_store(url: &str) -> cardio::store::Store {
    let (provider, _) =
        cardio::crypto::FileKeyProvider::open_or_create(&shared_key_file(), false).unwrap();
    let provider: Arc<dyn cardio::crypto::KeyProvider> = Arc::new(provider);
    let store = cardio::store::Store::connect(url).await.unwrap();
    store.with_keys(provider, "test-reader").await.unwrap()
}
