//! Runtime benchmarks, each beside a baseline measured in the same run:
//!
//! (a) request–reply through a supervised, registry-addressed actor vs. a raw
//!     actix `Addr::send` (criterion; target ratio ≤ 1.25);
//! (b) spawning 100,000 dynamic supervised children (first message answered)
//!     vs. 100,000 raw actix actors (target: under 1 s);
//! (c) resident memory per idle supervised child, from RSS after spawning
//!     100,000, vs. raw actix actors (target ≤ 2 KiB).
//!
//! (b) and (c) run in child processes of this binary, one per variant, so that
//! one variant's freed memory cannot flatter the other's RSS.
//!
//! Run: `cargo bench --bench runtime`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use cardio::actors::{Actor as CardioActor, Ctx, Handler as CardioHandler};
use cardio::registry::{Kind, KindSpec, Registry};
use cardio::supervisors::{ArbiterPool, SupervisorRef, SupervisorSpec, Tree};
use criterion::Criterion;
use futures_util::future::join_all;

const CHILDREN: usize = 100_000;
const ARBITERS: usize = 2;

#[derive(Message)]
#[rtype(result = "u64")]
struct Ping;

/// The supervised actor.
struct Echo {
    n: u64,
}

impl CardioActor for Echo {
    const KIND: &'static str = "echo";
}

impl CardioHandler<Ping> for Echo {
    async fn handle(&mut self, _: Ping, _: &mut Ctx<Self>) -> u64 {
        self.n += 1;
        self.n
    }
}

/// The same actor on raw actix.
struct RawEcho {
    n: u64,
}

impl Actor for RawEcho {
    type Context = Context<Self>;
}

impl Handler<Ping> for RawEcho {
    type Result = u64;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> u64 {
        self.n += 1;
        self.n
    }
}

struct Setup {
    _arbiters: Vec<Arbiter>,
    handles: Vec<ArbiterHandle>,
    kind: Kind<Echo>,
    tree: Tree,
}

async fn setup() -> Setup {
    let arbiters: Vec<Arbiter> = (0..ARBITERS).map(|_| Arbiter::new()).collect();
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
    let (kind, tree) = echo_kind(ArbiterPool::new(handles.clone())).await;
    Setup {
        _arbiters: arbiters,
        handles,
        kind,
        tree,
    }
}

async fn echo_kind(pool: ArbiterPool) -> (Kind<Echo>, Tree) {
    let tree = Tree::new();
    let root = SupervisorRef::start_root(SupervisorSpec::new("bench"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree.clone(), pool, Duration::from_secs(60));
    let kind = registry
        // Default spec: passivation timers on, as a node runs them.
        .register(&root, KindSpec::new(|_: &str| Echo { n: 0 }))
        .await
        .unwrap();
    (kind, tree)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Child-process mode: spawn CHILDREN of one variant, print "secs rss_per_child".
fn footprint(variant: &str) {
    let sys = System::new();
    sys.block_on(async {
        let s = setup().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        let started = Instant::now();
        let mut raw_addrs = Vec::new();
        for chunk in (0..CHILDREN).collect::<Vec<_>>().chunks(10_000) {
            match variant {
                "cardio" => {
                    let ids: Vec<String> = chunk.iter().map(|i| format!("e-{i}")).collect();
                    let replies = join_all(ids.iter().map(|id| s.kind.send(id, Ping))).await;
                    assert!(replies.iter().all(|r| matches!(r, Ok(1))));
                }
                _ => {
                    let addrs: Vec<Addr<RawEcho>> = chunk
                        .iter()
                        .map(|i| {
                            RawEcho::start_in_arbiter(&s.handles[i % ARBITERS], |_| RawEcho {
                                n: 0,
                            })
                        })
                        .collect();
                    let replies = join_all(addrs.iter().map(|a| a.send(Ping))).await;
                    assert!(replies.iter().all(|r| matches!(r, Ok(1))));
                    raw_addrs.extend(addrs);
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if variant == "cardio" {
            assert_eq!(s.kind.live(), CHILDREN);
            assert_eq!(s.tree.len(), CHILDREN + 2);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let per_child = (rss_bytes().saturating_sub(before)) as f64 / CHILDREN as f64;
        println!("{secs} {per_child}");
        drop(raw_addrs);
        System::current().stop();
    });
}

fn run_child(variant: &str) -> (f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("CARDIO_BENCH_CHILD", variant)
        .output()
        .expect("bench child runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Times `n` sequential request-replies.
async fn raw_block(addr: &Addr<RawEcho>, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        addr.send(Ping).await.unwrap();
    }
    t.elapsed().as_secs_f64()
}

async fn cardio_block(kind: &Kind<Echo>, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        kind.send("e-1", Ping).await.unwrap();
    }
    t.elapsed().as_secs_f64()
}

/// Median over `rounds` of (cardio time / raw time), the two measured back to
/// back in alternating order, so that the machine's drifts hit both alike.
fn interleaved_ratio(
    sys: &SystemRunner,
    raw: &Addr<RawEcho>,
    kind: &Kind<Echo>,
    rounds: usize,
    n: u32,
) -> f64 {
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|round| {
            sys.block_on(async {
                if round % 2 == 0 {
                    let r = raw_block(raw, n).await;
                    cardio_block(kind, n).await / r
                } else {
                    let c = cardio_block(kind, n).await;
                    c / raw_block(raw, n).await
                }
            })
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[rounds / 2]
}

/// Criterion medians (ns) and interleaved ratios, cross-thread then same arbiter.
fn request_reply(c: &mut Criterion) -> [(f64, f64, f64); 2] {
    let sys = System::new();
    let s = sys.block_on(setup());
    // The caller runs on the System arbiter, the actor on a worker arbiter: the
    // path an API request takes to an actor.
    let raw = sys.block_on(async {
        let addr = RawEcho::start_in_arbiter(&s.handles[0], |_| RawEcho { n: 0 });
        addr.send(Ping).await.unwrap();
        addr
    });
    sys.block_on(async { s.kind.send("e-1", Ping).await.unwrap() });
    // Same arbiter for caller and actor: no thread hop, so the runtime's own
    // overhead is all that differs.
    let (local_raw, local_kind) = sys.block_on(async {
        let (kind, _tree) = echo_kind(ArbiterPool::current()).await;
        kind.send("e-1", Ping).await.unwrap();
        (RawEcho { n: 0 }.start(), kind)
    });
    let mut group = c.benchmark_group("request_reply");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40);
    group.bench_function("raw_actix_addr_send", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    raw.send(Ping).await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    group.bench_function("cardio_registry_send", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    s.kind.send("e-1", Ping).await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    group.bench_function("raw_actix_addr_send_same_arbiter", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    local_raw.send(Ping).await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    group.bench_function("cardio_registry_send_same_arbiter", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    local_kind.send("e-1", Ping).await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    group.finish();
    // Across threads the time is the VM's thread wake-ups, which swing by
    // several times from one block to the next: the criterion medians' ratio
    // is the steadier figure there.
    let across = estimate("cardio_registry_send") / estimate("raw_actix_addr_send");
    let local = interleaved_ratio(&sys, &local_raw, &local_kind, 41, 5000);
    [
        (
            estimate("raw_actix_addr_send"),
            estimate("cardio_registry_send"),
            across,
        ),
        (
            estimate("raw_actix_addr_send_same_arbiter"),
            estimate("cardio_registry_send_same_arbiter"),
            local,
        ),
    ]
}

/// Criterion's median estimate (ns) for `request_reply/<id>` from this run.
fn estimate(id: &str) -> f64 {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{dir}/criterion/request_reply/{id}/new/estimates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["median"]["point_estimate"].as_f64().unwrap()
}

fn main() {
    if let Ok(variant) = std::env::var("CARDIO_BENCH_CHILD") {
        footprint(&variant);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let [(raw_ns, ours_ns, across), (local_raw_ns, local_ours_ns, local)] = request_reply(&mut c);
    c.final_summary();
    let (raw_secs, raw_rss) = run_child("raw");
    let (our_secs, our_rss) = run_child("cardio");
    println!();
    println!(
        "cardio runtime benchmarks ({ARBITERS} arbiters, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("times: criterion medians; (a') ratio: median of 41 interleaved rounds");
    println!(
        "{:<58} {:>14} {:>14} {:>8}  target",
        "measure", "baseline", "cardio", "ratio"
    );
    println!(
        "{:<58} {:>11.2} µs {:>11.2} µs {:>8.2}  ≤ 1.25×",
        "(a) request-reply (raw actix Addr::send vs registry send)",
        raw_ns / 1000.0,
        ours_ns / 1000.0,
        across
    );
    println!(
        "{:<58} {:>11.2} µs {:>11.2} µs {:>8.2}  ≤ 1.25×",
        "(a') request-reply, caller and actor on one arbiter",
        local_raw_ns / 1000.0,
        local_ours_ns / 1000.0,
        local
    );
    println!(
        "{:<58} {:>12.3} s {:>12.3} s {:>8.2}  < 1 s",
        format!("(b) spawn {CHILDREN} children + first reply (raw actix vs supervised)"),
        raw_secs,
        our_secs,
        our_secs / raw_secs
    );
    println!(
        "{:<58} {:>12.0} B {:>12.0} B {:>8.2}  ≤ 2048 B",
        "(c) RSS per idle child (raw actix vs supervised)",
        raw_rss,
        our_rss,
        our_rss / raw_rss
    );
}
