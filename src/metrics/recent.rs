//! The node's own recent series, for the console's charts (`metrics` in the
//! API): not a Prometheus server, a sampler thread that every
//! [`EVERY`] reads a few tallies kept beside the Prometheus instruments and
//! keeps the last [`KEPT`] of each series in a ring.
//!
//! Counters become rates (per second over the interval), latencies the
//! mean over the interval (no point when nothing happened), state gauges
//! (live actors, queued messages) are read from the node at the sample.
//! Like the Prometheus recorder, the tallies are the process's: one node
//! per process (several nodes in one test process share them).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the sampler reads.
pub const EVERY: Duration = Duration::from_secs(5);
/// How far back the series go.
pub const KEPT: Duration = Duration::from_secs(15 * 60);
const POINTS: usize = (KEPT.as_secs() / EVERY.as_secs()) as usize;

/// Counts kept beside the Prometheus instruments (by `crate::metrics`).
#[derive(Default)]
pub(crate) struct Tally {
    pub graphql_requests: AtomicU64,
    pub graphql_errors: AtomicU64,
    pub samples_stored: AtomicU64,
    pub alerts_raised: AtomicU64,
    pub actor_restarts: AtomicU64,
    pub dead_letters: AtomicU64,
    pub journal_appends: AtomicU64,
    pub journal_nanos: AtomicU64,
    pub bus_publishes: AtomicU64,
    pub bus_publish_nanos: AtomicU64,
    pub subscriptions: AtomicI64,
}

pub(crate) static TALLY: Tally = Tally {
    graphql_requests: AtomicU64::new(0),
    graphql_errors: AtomicU64::new(0),
    samples_stored: AtomicU64::new(0),
    alerts_raised: AtomicU64::new(0),
    actor_restarts: AtomicU64::new(0),
    dead_letters: AtomicU64::new(0),
    journal_appends: AtomicU64::new(0),
    journal_nanos: AtomicU64::new(0),
    bus_publishes: AtomicU64::new(0),
    bus_publish_nanos: AtomicU64::new(0),
    subscriptions: AtomicI64::new(0),
};

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the node says about itself at a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub actors_live: u64,
    pub mailbox_depth: u64,
}

/// One value at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at_ms: u64,
    pub value: f64,
}

/// One series: its name, unit and points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: &'static str,
    pub unit: &'static str,
    pub points: Vec<Point>,
}

/// The series' names and units, in the order they are shown.
pub const SERIES: &[(&str, &str)] = &[
    ("graphql_requests", "1/s"),
    ("graphql_errors", "1/s"),
    ("samples_stored", "1/s"),
    ("alerts_raised", "1/s"),
    ("actor_restarts", "1/s"),
    ("dead_letters", "1/s"),
    ("actors_live", "actors"),
    ("mailbox_depth", "messages"),
    ("subscriptions", "subscriptions"),
    ("journal_append_latency", "ms"),
    ("bus_publish_latency", "ms"),
];

/// The rings of every series.
pub struct Recent {
    rings: Mutex<Vec<VecDeque<Point>>>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            rings: Mutex::new(vec![VecDeque::with_capacity(POINTS); SERIES.len()]),
        }
    }
}

/// Counter values at one sample.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    counters: [u64; 6],
    journal: (u64, u64),
    bus: (u64, u64),
}

fn read() -> Reading {
    let t = &TALLY;
    Reading {
        counters: [
            t.graphql_requests.load(Relaxed),
            t.graphql_errors.load(Relaxed),
            t.samples_stored.load(Relaxed),
            t.alerts_raised.load(Relaxed),
            t.actor_restarts.load(Relaxed),
            t.dead_letters.load(Relaxed),
        ],
        journal: (
            t.journal_appends.load(Relaxed),
            t.journal_nanos.load(Relaxed),
        ),
        bus: (
            t.bus_publishes.load(Relaxed),
            t.bus_publish_nanos.load(Relaxed),
        ),
    }
}

/// Mean milliseconds over an interval of `(count, nanos)` totals.
fn mean_ms(before: (u64, u64), now: (u64, u64)) -> Option<f64> {
    let n = now.0.saturating_sub(before.0);
    (n > 0).then(|| now.1.saturating_sub(before.1) as f64 / n as f64 / 1e6)
}

impl Recent {
    /// Adds the values of one sample taken at `at_ms`, `seconds` after the
    /// last one (`None`: a series had nothing to say).
    fn push(&self, at_ms: u64, values: &[Option<f64>]) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        for (ring, value) in rings.iter_mut().zip(values) {
            if let Some(value) = value {
                if ring.len() == POINTS {
                    ring.pop_front();
                }
                ring.push_back(Point {
                    at_ms,
                    value: *value,
                });
            }
        }
    }

    fn sample(&self, at_ms: u64, seconds: f64, before: &Reading, now: &Reading, g: Gauges) {
        let mut values: Vec<Option<f64>> = before
            .counters
            .iter()
            .zip(now.counters)
            .map(|(b, n)| Some(n.saturating_sub(*b) as f64 / seconds.max(0.001)))
            .collect();
        values.push(Some(g.actors_live as f64));
        values.push(Some(g.mailbox_depth as f64));
        values.push(Some(TALLY.subscriptions.load(Relaxed).max(0) as f64));
        values.push(mean_ms(before.journal, now.journal));
        values.push(mean_ms(before.bus, now.bus));
        self.push(at_ms, &values);
    }

    /// Every series with its points of the last `window`.
    pub fn series(&self, window: Duration, now_ms: u64) -> Vec<Series> {
        let since = now_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        SERIES
            .iter()
            .zip(rings.iter())
            .map(|((name, unit), ring)| Series {
                name,
                unit,
                points: ring.iter().filter(|p| p.at_ms >= since).copied().collect(),
            })
            .collect()
    }
}

/// The process's series.
pub fn recent() -> &'static Recent {
    static RECENT: OnceLock<Recent> = OnceLock::new();
    RECENT.get_or_init(Recent::default)
}

/// Starts the sampler (once per process; the first node's `gauges` are read).
pub fn spawn_sampler(gauges: impl Fn() -> Gauges + Send + 'static) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("cardio-metrics-sampler".into())
            .spawn(move || {
                let mut before = read();
                let mut last = Instant::now();
                loop {
                    std::thread::sleep(EVERY);
                    let now = read();
                    let seconds = last.elapsed().as_secs_f64();
                    last = Instant::now();
                    recent().sample(crate::clock::unix_ms(), seconds, &before, &now, gauges());
                    before = now;
                }
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_rates_latencies_means_and_the_ring_keeps_fifteen_minutes() {
        let r = Recent::default();
        let before = Reading::default();
        let now = Reading {
            counters: [50, 5, 1000, 1, 0, 2],
            journal: (4, 8_000_000),
            bus: (0, 0),
        };
        r.sample(
            10_000,
            5.0,
            &before,
            &now,
            Gauges {
                actors_live: 7,
                mailbox_depth: 3,
            },
        );
        let s = r.series(Duration::from_secs(900), 10_000);
        let value = |name: &str| {
            let one = s.iter().find(|x| x.name == name).unwrap();
            one.points.first().map(|p| p.value)
        };
        assert_eq!(value("graphql_requests"), Some(10.0));
        assert_eq!(value("graphql_errors"), Some(1.0));
        assert_eq!(value("samples_stored"), Some(200.0));
        assert_eq!(value("dead_letters"), Some(0.4));
        assert_eq!(value("actors_live"), Some(7.0));
        assert_eq!(value("mailbox_depth"), Some(3.0));
        assert_eq!(value("journal_append_latency"), Some(2.0));
        // Nothing published: no point rather than a mean of zero.
        assert_eq!(value("bus_publish_latency"), None);
        for i in 1..=POINTS as u64 + 10 {
            r.sample(10_000 + i * 5000, 5.0, &now, &now, Gauges::default());
        }
        let all = r.series(Duration::from_secs(3600), u64::MAX / 2);
        assert!(all.iter().all(|x| x.points.len() <= POINTS));
        let last_ms = 10_000 + (POINTS as u64 + 10) * 5000;
        let recent = r.series(Duration::from_secs(60), last_ms);
        assert_eq!(
            recent[0].points.len(),
            13,
            "a minute of 5 s samples, both ends"
        );
    }
}
