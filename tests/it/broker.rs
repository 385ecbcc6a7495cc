//! The machine's RabbitMQ, for tests (tiers `rabbitmq` and `cluster`;
//! `CARDIO_TEST_AMQP_URL`): a virtual host of its own per test, so that
//! tests run in parallel without seeing each other's queues.
//!
//! A vhost per test, because every broker test relies on an empty one: the
//! bus declares fixed names (`cardio.shards`, `cardio.shard.<n>` with
//! per-test delivery limits and lengths, `cardio.dead-letters`), which no
//! setting prefixes, and a cluster's nodes consume every shard queue of
//! their vhost. What costs is `rabbitmqctl` (each call starts an Erlang VM):
//! a test makes its vhost with one call (vhost and permissions in one
//! definitions import) and deletes it with another when done. Not a pool
//! made up front: vhosts kept for the whole run exhaust the broker's file
//! handles (each has message stores; the cluster tests' have 33 quorum
//! queues) and slow its recovery after the broker-restart test.
//!
//! Tests that use the broker hold [`shared`]; the one that restarts the broker
//! holds [`exclusive`], so it runs alone.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

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
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn new() -> Vhost {
        services::assert_enabled(&[Tier::Rabbitmq, Tier::Cluster], "RabbitMQ");
        // Named after this process: scripts/test deletes those whose process
        // is gone (a run that was killed).
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("cardio-test-{}-{}", std::process::id(), &uuid[..12]);
        make_vhost(&name);
        Vhost { name }
    }

    pub fn url(&self) -> String {
        services::with_path(&services::amqp_url(), &self.name)
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
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// Makes `name`, open to the broker user of `CARDIO_TEST_AMQP_URL`, with one
/// `rabbitmqctl` call (a definitions import: vhost and permissions at once).
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
        format!("amqp://{user}127.0.0.1:{}/{}", self.port, vhost.name)
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
