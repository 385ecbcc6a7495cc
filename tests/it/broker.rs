//! The machine's RabbitMQ, for tests (tiers `rabbitmq` and `cluster`;
//! `CARDIO_TEST_AMQP_URL`): one virtual host per test run, and in it a
//! namespace per test (the bus URL's `namespace` parameter prefixes every
//! exchange and queue the bus declares), so that tests run in parallel
//! without seeing each other's queues, and a cluster's nodes consume only
//! their own test's shard queues.
//!
//! `scripts/test` makes the run's vhost with one `rabbitmqctl` call (each
//! call starts an Erlang VM) and deletes it at the end; a test process run
//! another way makes one of its own on first use. A test's queues and
//! exchanges are deleted over AMQP when it ends, so the run's vhost does not
//! pile up quorum queues (which hold file handles) while the run goes on.
//!
//! Tests that use the broker hold [`shared`]; the one that restarts the broker
//! holds [`exclusive`], so it runs alone.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use cardio::bus::{amqp::AmqpBus, BusOptions};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::support::services::{self, Tier};

static BROKER: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

pub async fn shared() -> RwLockReadGuard<'static, ()> {
    BROKER.read().await
}

pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    BROKER.write().await
}

pub fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (is RabbitMQ installed? .ci/run installs it)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker stopped (`rabbitmqctl stop_app`) until this is dropped.
pub struct StoppedBroker;

impl StoppedBroker {
    pub fn stop() -> StoppedBroker {
        rabbitmqctl(&["stop_app"]);
        StoppedBroker
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

/// A virtual host of this test's own, deleted (with its queues) when
/// dropped.
/// A test's own corner of RabbitMQ: the run's virtual host (one per test
/// run), under a namespace of its own (`?namespace=` in the bus URL), so its
/// exchanges and queues are its alone. Dropping it deletes them.
pub struct Vhost {
    pub name: String,
    pub namespace: String,
}

/// The run's virtual host: the one `scripts/test` made
/// (`CARDIO_TEST_AMQP_VHOST`), or one this test process makes on first use
/// (`cardio-test-<pid>-run`; `scripts/test` deletes it once the process is
/// gone).
fn run_vhost() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| match std::env::var("CARDIO_TEST_AMQP_VHOST") {
        Ok(name) if !name.is_empty() => name,
        _ => {
            let name = format!("cardio-test-{}-run", std::process::id());
            make_vhost(&name);
            name
        }
    })
}

/// Most shard queues a test's cluster declares (the cleanup deletes up to it).
const MAX_SHARDS: u16 = 256;

impl Vhost {
    pub fn new() -> Vhost {
        services::assert_enabled(&[Tier::Rabbitmq, Tier::Cluster], "RabbitMQ");
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Vhost {
            name: run_vhost().to_owned(),
            namespace: format!("t{}", &uuid[..16]),
        }
    }

    pub fn url(&self) -> String {
        let url = services::with_path(&services::amqp_url(), &self.name);
        let join = if url.contains('?') { '&' } else { '?' };
        format!("{url}{join}namespace={}", self.namespace)
    }

    pub async fn bus(&self, options: BusOptions) -> AmqpBus {
        AmqpBus::connect(&self.url(), options)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "RabbitMQ at {} (CARDIO_TEST_AMQP_URL), vhost {}: {e}",
                    services::host_port(&services::amqp_url()),
                    self.name
                )
            })
    }
}

impl Drop for Vhost {
    /// Deletes the namespace's queues and exchanges (RabbitMQ deletes what
    /// is not there without complaint), on a thread of its own: the test's
    /// runtime may be gone or busy.
    fn drop(&mut self) {
        let (url, ns) = (self.url(), self.namespace.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
                let connect =
                    lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
                let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(10), connect).await
                else {
                    return; // the broker is away: scripts/test deletes the run's vhost
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                let queues = (0..MAX_SHARDS)
                    .map(|n| format!("{ns}.shard.{n}"))
                    .chain([format!("{ns}.dead-letters")]);
                let deletes = queues.map(|q| {
                    let ch = ch.clone();
                    async move {
                        let _ = ch
                            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                });
                futures_util::future::join_all(deletes).await;
                for x in ["shards", "events", "dlx"] {
                    let name = format!("{ns}.{x}");
                    let _ = ch
                        .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = conn.close(0, "test done".into()).await;
            });
        });
        let _ = cleanup.join();
    }
}

fn make_vhost(name: &str) {
    let url = services::amqp_url();
    let user = services::user(&url).unwrap_or("guest");
    let definitions = serde_json::json!({
        "vhosts": [{"name": name}],
        "permissions": [{"user": user, "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}],
    });
    // The definitions on stdin: rabbitmqctl reads files as its own user.
    let mut child = Command::new("rabbitmqctl")
        .args(["-q", "import_definitions"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rabbitmqctl runs (is RabbitMQ installed? scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(definitions.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl import_definitions (vhost {name}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP proxy to the broker that a test can cut (every connection through
/// it is closed, new ones are refused) and restore: a node behind it is cut
/// off from the broker while the rest of the cluster is not.
pub struct Proxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Its own runtime: tests block their thread while nodes start.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (o, l) = (Arc::clone(&open), Arc::clone(&live));
        let broker = services::host_port(&services::amqp_url());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::Acquire) {
                    continue; // dropped: refused
                }
                let broker = broker.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(&broker).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream).await;
                    }
                });
                l.lock().unwrap().push(task);
            }
        });
        Proxy {
            port,
            open,
            live,
            runtime: Some(runtime),
        }
    }

    /// The broker URL through this proxy, for `vhost`.
    pub fn url(&self, vhost: &Vhost) -> String {
        let url = services::amqp_url();
        let user = services::user_info(&url).map_or(String::new(), |u| format!("{u}@"));
        format!(
            "amqp://{user}127.0.0.1:{}/{}?namespace={}",
            self.port, vhost.name, vhost.namespace
        )
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Release);
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
