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
