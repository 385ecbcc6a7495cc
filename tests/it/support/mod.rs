//! Test actors and helpers shared by the integration tests: a real node
//! ([`node`]), waiting for something asynchronous ([`poll`]), and which
//! services a run may use ([`services`]).

pub mod node;
pub mod poll;
pub mod services;

pub use poll::poll_until;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardio::actors::{Actor, Ctx, Handler};
use cardio::registry::{Kind, KindSpec, Registry};
use cardio::supervisors::{ArbiterPool, SupervisionEvent, SupervisorRef, SupervisorSpec, Tree};
use tokio::sync::broadcast;

/// A shared, ordered record of lifecycle hooks ("start:a", "stop:b").
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    pub fn contains(&self, line: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l == line)
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A worker that counts pings, records its lifecycle, and panics on demand.
pub struct Probe {
    pub name: String,
    pub journal: Journal,
    pub pings: u32,
}

impl Probe {
    pub fn factory(name: &str, journal: &Journal) -> impl Fn() -> Probe + Send + Sync + 'static {
        let (name, journal) = (name.to_owned(), journal.clone());
        move || Probe {
            name: name.clone(),
            journal: journal.clone(),
            pings: 0,
        }
    }
}

impl Actor for Probe {
    const KIND: &'static str = "probe";

    async fn started(&mut self, _: &mut Ctx<Self>) {
        self.journal.push(format!("start:{}", self.name));
    }

    async fn stopping(&mut self, _: &mut Ctx<Self>) {
        self.journal.push(format!("stop:{}", self.name));
    }
}

/// Counts and returns the pings this incarnation has seen.
#[derive(actix::Message, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[rtype(result = "u32")]
pub struct Ping;

impl Handler<Ping> for Probe {
    async fn handle(&mut self, _: Ping, _: &mut Ctx<Self>) -> u32 {
        self.pings += 1;
        self.pings
    }
}

/// Panics in the handler.
#[derive(actix::Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
pub struct Boom;

/// Adds `n` to the ping count and returns it.
#[derive(actix::Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "u32")]
pub struct Add {
    pub n: u32,
}

impl Handler<Add> for Probe {
    async fn handle(&mut self, add: Add, _: &mut Ctx<Self>) -> u32 {
        self.pings += add.n;
        self.pings
    }
}

impl Handler<Boom> for Probe {
    async fn handle(&mut self, _: Boom, _: &mut Ctx<Self>) {
        panic!("boom in {}", self.name);
    }
}

/// Stops the actor normally.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Quit;

impl Handler<Quit> for Probe {
    async fn handle(&mut self, _: Quit, ctx: &mut Ctx<Self>) {
        ctx.stop();
    }
}

/// Schedules `Add { n }` to itself after `after`.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Later {
    pub after: Duration,
    pub n: u32,
}

impl Handler<Later> for Probe {
    async fn handle(&mut self, later: Later, ctx: &mut Ctx<Self>) {
        ctx.notify_later(later.after, Add { n: later.n });
    }
}

/// Answers with the name of the thread the handler runs on.
#[derive(actix::Message)]
#[rtype(result = "String")]
pub struct WhichThread;

impl Handler<WhichThread> for Probe {
    async fn handle(&mut self, _: WhichThread, _: &mut Ctx<Self>) -> String {
        format!("{:?}", std::thread::current().id())
    }
}

/// Sleeps inside the handler (paused time makes this instant).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Nap(pub Duration);

impl Handler<Nap> for Probe {
    async fn handle(&mut self, nap: Nap, _: &mut Ctx<Self>) {
        tokio::time::sleep(nap.0).await;
    }
}

/// Collects events until `pred` holds for the list, or panics after `limit`.
pub async fn events_until(
    rx: &mut broadcast::Receiver<SupervisionEvent>,
    limit: Duration,
    pred: impl Fn(&[SupervisionEvent]) -> bool,
) -> Vec<SupervisionEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !pred(&seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => seen.push(ev),
            Ok(Err(e)) => panic!("event stream failed: {e}; seen {seen:#?}"),
            Err(_) => panic!("condition not met within {limit:?}; seen {seen:#?}"),
        }
    }
    seen
}

pub fn status_of(tree: &Tree, path: &str) -> Option<String> {
    tree.snapshot()
        .into_iter()
        .find(|n| n.path == path)
        .map(|n| n.status.as_str().to_owned())
}

/// One kind of actor served on the test's own arbiter, under a root `/root`
/// of its own (a node's worth of runtime for that kind).
pub async fn serve_kind<A: Actor>(
    spec: KindSpec<A>,
    request_timeout: Duration,
) -> (Tree, SupervisorRef, Kind<A>) {
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree.clone(), pool, request_timeout);
    let kind = registry.register(&root, spec).await.unwrap();
    assert!(registry.kind::<A>().is_some());
    (tree, root, kind)
}

/// Unix milliseconds as the API's `DateTime` (RFC 3339, UTC, milliseconds).
pub fn iso(ms: f64) -> String {
    cardio::api::graphql::scalars::DateTime::from_ms(ms.round() as i64).to_rfc3339()
}

/// A `DateTime` the API answered, as Unix milliseconds.
pub fn ms_of(v: &serde_json::Value) -> f64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a DateTime: {v}"));
    cardio::api::graphql::scalars::DateTime::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .ms() as f64
}
