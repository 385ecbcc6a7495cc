//! Prometheus metrics: the one place their names, labels and help live.
//!
//! The code records through the [`metrics`] facade (a no-op until a recorder
//! is installed); [`install`] puts `metrics-exporter-prometheus`'s recorder in
//! place and `GET /metrics` renders it. Names follow Prometheus conventions:
//! `cardio_` prefix, base units (seconds), `_total` for counters. Every series
//! carries a `node` label. Labels are bounded vocabularies (kinds, reasons as
//! classes, operation names from the schema), never ids or payloads: metrics
//! hold no PHI.
//!
//! Gauges that describe the node's state (live actors, mailbox depth, shard
//! ownership, pool usage, readiness) are read at scrape time by [`refresh`]
//! rather than maintained on every change.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of latency histograms, in seconds: 0.5 ms to 10 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the journal's append sizes, in bytes: 64 B to 1 MiB.
const BYTES: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
];

pub mod recent;

use recent::{nanos, TALLY};
use std::sync::atomic::Ordering::Relaxed;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for this process, labelling every series
/// with `node`. The first call wins (several nodes in one process, as in
/// tests, share it and the first one's label); later calls return the same
/// handle. `None` if another recorder was installed by someone else.
pub fn install(node: &str) -> Option<&'static PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Some(handle);
    }
    let builder = PrometheusBuilder::new()
        .add_global_label("node", node)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES));
    let recorder = match builder {
        Ok(builder) => builder.build_recorder(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not built");
            return None;
        }
    };
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Lost a race with another install, or a foreign recorder.
        return HANDLE.get();
    }
    let _ = HANDLE.set(handle);
    describe();
    HANDLE.get()
}

/// The installed recorder's handle, if any.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get()
}

/// Drains histogram samples now and then even when nobody scrapes, so memory
/// stays bounded. Runs until the process ends.
pub fn spawn_upkeep() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    let Some(handle) = handle() else { return };
    STARTED.call_once(|| {
        let handle = handle.clone();
        let _ = std::thread::Builder::new()
            .name("cardio-metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            });
    });
}

/// What a scrape reads off the node's live state.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Live actors and queued messages, by kind.
    pub actors: Vec<(&'static str, u64, u64)>,
    pub shards_owned: u64,
    pub handovers_pending: u64,
    pub cluster_nodes: u64,
    pub pool_in_use: u64,
    pub pool_idle: u64,
    pub pool_max: u64,
    pub ready: bool,
}

/// Sets the state gauges from `s`. Kinds absent from `s` that had actors
/// before are set to zero rather than left at their last value.
pub fn refresh(s: &Snapshot) {
    static KINDS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut known = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    for kind in known.iter() {
        if !s.actors.iter().any(|(k, _, _)| k == kind) {
            gauge!("cardio_actors_live", "kind" => *kind).set(0.0);
            gauge!("cardio_mailbox_depth", "kind" => *kind).set(0.0);
        }
    }
    for (kind, live, depth) in &s.actors {
        gauge!("cardio_actors_live", "kind" => *kind).set(*live as f64);
        gauge!("cardio_mailbox_depth", "kind" => *kind).set(*depth as f64);
        if !known.contains(kind) {
            known.push(kind);
        }
    }
    gauge!("cardio_shards_owned").set(s.shards_owned as f64);
    gauge!("cardio_shard_handovers_pending").set(s.handovers_pending as f64);
    gauge!("cardio_cluster_nodes").set(s.cluster_nodes as f64);
    gauge!("cardio_db_pool_connections", "state" => "in_use").set(s.pool_in_use as f64);
    gauge!("cardio_db_pool_connections", "state" => "idle").set(s.pool_idle as f64);
    gauge!("cardio_db_pool_max_connections").set(s.pool_max as f64);
    gauge!("cardio_node_ready").set(if s.ready { 1.0 } else { 0.0 });
}

/// Help texts, and zero-valued counters for series that should exist from
/// the start (so `rate()` and `increase()` see their first increment).
fn describe() {
    use Unit::{Count, Seconds};
    for (name, help) in [
        ("cardio_actor_activations_total", "Actors activated (started on demand), by kind."),
        ("cardio_actor_passivations_total", "Actors passivated after idling or on request, by kind."),
        ("cardio_supervisor_restarts_total", "Children restarted by their supervisor, by child kind and reason class."),
        ("cardio_supervisor_escalations_total", "Supervisors that exceeded their restart intensity and failed to their parent, by supervisor and reason class."),
        ("cardio_bus_publishes_total", "Messages put on the bus, by backend and class (actor, event, reply)."),
        ("cardio_bus_deliveries_total", "Deliveries settled, by backend and outcome (ack, retry, dead_letter, released: handed back unsettled)."),
        ("cardio_bus_redeliveries_total", "Deliveries of messages delivered before."),
        ("cardio_bus_dead_letters_total", "Messages set aside on the dead-letter queue, by backend and reason class."),
        ("cardio_shard_failovers_total", "Shards this node took over from another owner."),
        ("cardio_deliveries_overran_total", "Deliveries given up by their actor's lane after their deadline and a settle grace (a wait nobody foresaw; each is also logged)."),
        ("cardio_graphql_requests_total", "GraphQL operations, by root field and outcome (ok or the error code)."),
        ("cardio_alerts_raised_total", "Clinical alerts raised, by rule and priority."),
        ("cardio_samples_accepted_total", "Device samples accepted."),
        ("cardio_samples_rejected_total", "Device samples rejected, by reason."),
        ("cardio_pushes_coalesced_total", "Device pushes sent to their stream together with others of the same device that queued meanwhile (one journal entry a batch)."),
        ("cardio_limited_total", "Requests and connections a limit refused or ended, by limit (issue 13)."),
    ] {
        describe_counter!(name, Count, help);
    }
    for (name, help) in [
        (
            "cardio_actors_live",
            "Live (activated, not passivated) actors, by kind.",
        ),
        (
            "cardio_mailbox_depth",
            "Messages queued for actors and not yet taken, by kind.",
        ),
        ("cardio_shards_owned", "Shards this node owns."),
        (
            "cardio_shard_handovers_pending",
            "Shards this node owns that rank another live node first: hand-overs still to come.",
        ),
        (
            "cardio_cluster_nodes",
            "Cluster members with a valid lease, as this node sees them.",
        ),
        (
            "cardio_db_pool_connections",
            "Database pool connections, by state (idle, in_use).",
        ),
        (
            "cardio_db_pool_max_connections",
            "Database pool size limit.",
        ),
        (
            "cardio_graphql_subscriptions",
            "Open GraphQL subscriptions, by field.",
        ),
        (
            "cardio_node_ready",
            "1 when the node takes work (readiness), else 0.",
        ),
    ] {
        describe_gauge!(name, help);
    }
    for (name, unit, help) in [
        ("cardio_bus_confirm_seconds", Seconds, "Time for the bus to hold a sent message (publisher confirm on RabbitMQ)."),
        ("cardio_bus_delivery_lag_seconds", Seconds, "Time from a message's sending to its delivery to a consumer."),
        ("cardio_journal_write_seconds", Seconds, "Journal append latency."),
        ("cardio_journal_append_bytes", Unit::Bytes, "Size of each journal append (one event: a consult or session change, or a device's batch of samples)."),
        ("cardio_graphql_request_duration_seconds", Seconds, "GraphQL operation latency, by root field."),
        ("cardio_alert_latency_seconds", Seconds, "Time from the sample that raised an alert being accepted to the alert reaching a subscriber."),
    ] {
        describe_histogram!(name, unit, help);
    }
    counter!("cardio_shard_failovers_total").absolute(0);
    counter!("cardio_deliveries_overran_total").absolute(0);
    counter!("cardio_samples_accepted_total").absolute(0);
}

/// What [`restarted`] reads of a restarted child (the supervision tree's
/// node implements it; metrics sit below the runtime and do not import it).
pub trait RestartedChild {
    /// The child's kind (`consult`, `device`, `supervisor`, …).
    fn kind_name(&self) -> &'static str;
    /// Its last failure, if it failed.
    fn last_failure(&self) -> Option<String>;
}

impl<T: RestartedChild + ?Sized> RestartedChild for std::sync::Arc<T> {
    fn kind_name(&self) -> &'static str {
        (**self).kind_name()
    }
    fn last_failure(&self) -> Option<String> {
        (**self).last_failure()
    }
}

/// A child was restarted (after its own crash, its last failure, or with
/// crashed siblings).
pub fn restarted(node: &impl RestartedChild) {
    TALLY.actor_restarts.fetch_add(1, Relaxed);
    let reason = node.last_failure().unwrap_or_default();
    counter!(
        "cardio_supervisor_restarts_total",
        "kind" => node.kind_name(),
        "reason" => reason_class(&reason)
    )
    .increment(1);
}

/// The supervisor `name` escalated for `reason`.
pub fn escalated(name: &str, reason: &str) {
    counter!(
        "cardio_supervisor_escalations_total",
        "kind" => name.to_owned(),
        "reason" => reason_class(reason)
    )
    .increment(1);
}

/// A bounded class of a crash reason (reasons themselves are free text).
pub fn reason_class(reason: &str) -> &'static str {
    let r = reason.trim_start_matches("crashed: ");
    if r.contains("restart intensity") || r.starts_with("gave up") {
        "intensity"
    } else if r.contains("fenced") || r.contains("moved to another node") {
        "fenced"
    } else if r.starts_with("panicked") {
        "panic"
    } else if r.starts_with("killed") {
        "killed"
    } else if r.contains("unexpectedly") {
        "exited"
    } else {
        "other"
    }
}

/// Zero-valued series of a newly registered actor kind.
pub fn announce_kind(kind: &'static str) {
    counter!("cardio_actor_activations_total", "kind" => kind).absolute(0);
    counter!("cardio_actor_passivations_total", "kind" => kind).absolute(0);
    counter!("cardio_supervisor_restarts_total", "kind" => kind, "reason" => "panic").absolute(0);
    gauge!("cardio_actors_live", "kind" => kind).set(0.0);
    gauge!("cardio_mailbox_depth", "kind" => kind).set(0.0);
}

/// Zero-valued series of a supervisor that started.
pub fn announce_supervisor(name: &str) {
    counter!(
        "cardio_supervisor_escalations_total",
        "kind" => name.to_owned(),
        "reason" => "intensity"
    )
    .absolute(0);
}

/// A request or connection a limit refused or ended (`ws_init_timeout`,
/// `ws_message_too_large`, `ws_per_ip`, `http_per_ip`, `body_timeout`, …).
pub fn limited(limit: &'static str) {
    counter!("cardio_limited_total", "limit" => limit).increment(1);
}

pub fn activated(kind: &'static str) {
    counter!("cardio_actor_activations_total", "kind" => kind).increment(1);
}

pub fn passivated(kind: &'static str) {
    counter!("cardio_actor_passivations_total", "kind" => kind).increment(1);
}

pub fn failover() {
    counter!("cardio_shard_failovers_total").increment(1);
}

pub fn delivery_overran() {
    counter!("cardio_deliveries_overran_total").increment(1);
}

/// One group-commit round of the store's writer: how many writes it
/// committed together and how long its transaction took.
pub fn write_round(writes: usize, took: Duration) {
    histogram!("cardio_store_round_writes").record(writes as f64);
    histogram!("cardio_store_round_seconds").record(took.as_secs_f64());
}

pub fn journal_write(bytes: usize, took: Duration) {
    TALLY.journal_appends.fetch_add(1, Relaxed);
    TALLY.journal_nanos.fetch_add(nanos(took), Relaxed);
    histogram!("cardio_journal_write_seconds").record(took.as_secs_f64());
    histogram!("cardio_journal_append_bytes").record(bytes as f64);
}

pub fn graphql_request(operation: &str, outcome: &str, took: Duration) {
    TALLY.graphql_requests.fetch_add(1, Relaxed);
    if outcome != "ok" {
        TALLY.graphql_errors.fetch_add(1, Relaxed);
    }
    counter!(
        "cardio_graphql_requests_total",
        "operation" => operation.to_owned(),
        "outcome" => outcome.to_owned()
    )
    .increment(1);
    histogram!("cardio_graphql_request_duration_seconds", "operation" => operation.to_owned())
        .record(took.as_secs_f64());
}

/// One more (`+1`) or one fewer (`-1`) open subscription to `field`.
pub fn subscriptions(field: &'static str, delta: f64) {
    TALLY.subscriptions.fetch_add(delta as i64, Relaxed);
    gauge!("cardio_graphql_subscriptions", "field" => field).increment(delta);
}

pub fn alert_raised(rule: &str, priority: &str) {
    TALLY.alerts_raised.fetch_add(1, Relaxed);
    counter!(
        "cardio_alerts_raised_total",
        "rule" => rule.to_owned(),
        "priority" => priority.to_owned()
    )
    .increment(1);
}

pub fn alert_delivered(latency: Duration) {
    histogram!("cardio_alert_latency_seconds").record(latency.as_secs_f64());
}

pub fn samples(accepted: usize, rejected: &[&'static str]) {
    if accepted > 0 {
        TALLY.samples_stored.fetch_add(accepted as u64, Relaxed);
        counter!("cardio_samples_accepted_total").increment(accepted as u64);
    }
    for reason in rejected {
        counter!("cardio_samples_rejected_total", "reason" => *reason).increment(1);
    }
}

/// `pushes` of one device went to its stream as one batch.
pub fn pushes_coalesced(pushes: usize) {
    counter!("cardio_pushes_coalesced_total").increment(pushes as u64);
}

/// Bus instruments, labelled by backend (`memory`, `amqp`).
pub mod bus {
    use super::*;

    pub fn published(backend: &'static str, class: &'static str, took: Duration) {
        TALLY.bus_publishes.fetch_add(1, Relaxed);
        TALLY.bus_publish_nanos.fetch_add(nanos(took), Relaxed);
        counter!("cardio_bus_publishes_total", "backend" => backend, "class" => class).increment(1);
        histogram!("cardio_bus_confirm_seconds", "backend" => backend).record(took.as_secs_f64());
    }

    pub fn delivered(backend: &'static str, redelivered: bool, lag: Option<Duration>) {
        if redelivered {
            counter!("cardio_bus_redeliveries_total", "backend" => backend).increment(1);
        }
        if let Some(lag) = lag {
            histogram!("cardio_bus_delivery_lag_seconds", "backend" => backend)
                .record(lag.as_secs_f64());
        }
    }

    pub fn settled(backend: &'static str, outcome: &'static str) {
        counter!("cardio_bus_deliveries_total", "backend" => backend, "outcome" => outcome)
            .increment(1);
    }

    pub fn dead_lettered(backend: &'static str, reason: &'static str) {
        TALLY.dead_letters.fetch_add(1, Relaxed);
        counter!("cardio_bus_dead_letters_total", "backend" => backend, "reason" => reason)
            .increment(1);
    }

    /// An ask that took the local path (`crate::bus::client::LocalPath`):
    /// `answered` there, or `handed_to_bus` after its local try failed.
    pub fn asked_locally(outcome: &'static str) {
        counter!("cardio_local_asks_total", "outcome" => outcome).increment(1);
    }

    /// Zero-valued series for `backend`, so dashboards and rules see them.
    pub fn announce(backend: &'static str) {
        counter!("cardio_bus_redeliveries_total", "backend" => backend).absolute(0);
        for reason in ["delivery_limit", "rejected"] {
            counter!("cardio_bus_dead_letters_total", "backend" => backend, "reason" => reason)
                .absolute(0);
        }
        for outcome in ["answered", "handed_to_bus"] {
            counter!("cardio_local_asks_total", "outcome" => outcome).absolute(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_reasons_fall_in_few_classes() {
        assert_eq!(reason_class("panicked: index out of bounds"), "panic");
        assert_eq!(reason_class("crashed: panicked: boom"), "panic");
        assert_eq!(reason_class("killed while starting"), "killed");
        assert_eq!(reason_class("actor stopped unexpectedly"), "exited");
        assert_eq!(
            reason_class("restart intensity exceeded: more than 3 restarts within 5s"),
            "intensity"
        );
        assert_eq!(
            reason_class("panicked: journal write fenced: shard 3"),
            "fenced"
        );
        assert_eq!(reason_class("patient p-1 said something"), "other");
        assert_eq!(
            reason_class("restart intensity exceeded (last: panicked: fenced off)"),
            "intensity"
        );
    }
}
