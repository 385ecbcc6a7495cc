//! The machine's RabbitMQ, for tests: a virtual host of its own per test (so
//! tests run in parallel without seeing each other's queues), removed after.
//!
//! Tests that use the broker hold [`shared`]; the one that restarts the broker
//! holds [`exclusive`], so it runs alone.

use std::process::Command;
use std::sync::LazyLock;

use cardio::bus::{amqp::AmqpBus, BusOptions};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

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

/// A virtual host deleted (with its queues) when dropped.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn new() -> Vhost {
        let name = format!("cardio-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost { name }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    pub async fn bus(&self, options: BusOptions) -> AmqpBus {
        AmqpBus::connect(&self.url(), options)
            .await
            .expect("RabbitMQ at 127.0.0.1:5672")
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
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
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::Acquire) {
                    continue; // dropped: refused
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                    {
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
        format!("amqp://guest:guest@127.0.0.1:{}/{}", self.port, vhost.name)
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
