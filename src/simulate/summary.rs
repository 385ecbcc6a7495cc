//! What a simulation's clients saw ([`Stats`], gathered as it runs) and
//! its summary ([`Summary`]): printable, and as JSON.

use std::collections::BTreeMap;

use super::Settings;

/// What happened, as the clients saw it.
#[derive(Debug, Default)]
pub struct Stats {
    pub pushes: u64,
    pub push_us: Vec<u32>,
    /// The pushes after each device's first (which also starts the
    /// device's actor, and on a cluster may be its shard's first message).
    pub push_warm_us: Vec<u32>,
    /// Each device's first push.
    pub push_first_us: Vec<u32>,
    pub accepted: u64,
    pub rejected: u64,
    pub injected_invalid: u64,
    pub alerts: u64,
    pub alert_us: Vec<u32>,
    pub consults_opened: u64,
    pub consults_ended: u64,
    pub messages: u64,
    pub message_us: Vec<u32>,
    /// By operation and code.
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    pub(super) fn error(&mut self, op: &str, code: &str) {
        *self.errors.entry(format!("{op}: {code}")).or_default() += 1;
    }

    /// A push answered in `us`, its device's first or not.
    pub(super) fn push_took(&mut self, us: u32, first: bool) {
        self.push_us.push(us);
        if first {
            self.push_first_us.push(us);
        } else {
            self.push_warm_us.push(us);
        }
    }
}

/// The `q` quantile (0–1) of `us`, in milliseconds.
pub(super) fn quantile_ms(us: &mut [u32], q: f64) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    us.sort_unstable();
    let i = ((us.len() - 1) as f64 * q).round() as usize;
    f64::from(us[i]) / 1000.0
}

/// The summary of a run: printable and as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub seconds: f64,
    pub seed: u64,
    pub devices: usize,
    pub target_samples_per_second: f64,
    pub pushes: u64,
    pub pushes_per_second: f64,
    pub push_p50_ms: f64,
    pub push_p99_ms: f64,
    /// p99 of the pushes after each device's first.
    pub push_warm_p99_ms: f64,
    /// Each device's first push (its actor's start, a fleet starting at
    /// once): p50 and p99.
    pub push_first_p50_ms: f64,
    pub push_first_p99_ms: f64,
    pub samples_accepted: u64,
    pub samples_per_second: f64,
    pub samples_rejected: u64,
    pub invalid_sent: u64,
    pub alerts: u64,
    pub alert_p50_ms: f64,
    pub alert_p99_ms: f64,
    pub consults_opened: u64,
    pub consults_ended: u64,
    pub messages: u64,
    pub message_p50_ms: f64,
    pub message_p99_ms: f64,
    pub errors: BTreeMap<String, u64>,
}

impl Summary {
    pub(super) fn of(s: &Settings, stats: &mut Stats, seconds: f64) -> Summary {
        Summary {
            nodes: s.urls.len(),
            seconds,
            seed: s.seed,
            devices: s.devices,
            target_samples_per_second: (s.devices as u64 * u64::from(s.rate)) as f64,
            pushes: stats.pushes,
            pushes_per_second: stats.pushes as f64 / seconds,
            push_p50_ms: quantile_ms(&mut stats.push_us, 0.5),
            push_p99_ms: quantile_ms(&mut stats.push_us, 0.99),
            push_warm_p99_ms: quantile_ms(&mut stats.push_warm_us, 0.99),
            push_first_p50_ms: quantile_ms(&mut stats.push_first_us, 0.5),
            push_first_p99_ms: quantile_ms(&mut stats.push_first_us, 0.99),
            samples_accepted: stats.accepted,
            samples_per_second: stats.accepted as f64 / seconds,
            samples_rejected: stats.rejected,
            invalid_sent: stats.injected_invalid,
            alerts: stats.alerts,
            alert_p50_ms: quantile_ms(&mut stats.alert_us, 0.5),
            alert_p99_ms: quantile_ms(&mut stats.alert_us, 0.99),
            consults_opened: stats.consults_opened,
            consults_ended: stats.consults_ended,
            messages: stats.messages,
            message_p50_ms: quantile_ms(&mut stats.message_us, 0.5),
            message_p99_ms: quantile_ms(&mut stats.message_us, 0.99),
            errors: stats.errors.clone(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errors: u64 = self.errors.values().sum();
        writeln!(
            f,
            "cardio simulate: {:.1} s against {} node(s), seed {}",
            self.seconds, self.nodes, self.seed
        )?;
        writeln!(
            f,
            "  devices   {} (target {:.0} samples/s)",
            self.devices, self.target_samples_per_second
        )?;
        writeln!(
            f,
            "  pushes    {} ok ({:.0}/s); latency p50 {:.1} ms, p99 {:.1} ms \
             (p99 {:.1} ms without each device's first push; the first pushes \
             p50 {:.1} ms, p99 {:.1} ms)",
            self.pushes,
            self.pushes_per_second,
            self.push_p50_ms,
            self.push_p99_ms,
            self.push_warm_p99_ms,
            self.push_first_p50_ms,
            self.push_first_p99_ms
        )?;
        writeln!(
            f,
            "  samples   {} accepted ({:.0}/s), {} rejected ({} sent invalid on purpose)",
            self.samples_accepted,
            self.samples_per_second,
            self.samples_rejected,
            self.invalid_sent
        )?;
        writeln!(
            f,
            "  alerts    {} delivered; latency p50 {:.1} ms, p99 {:.1} ms",
            self.alerts, self.alert_p50_ms, self.alert_p99_ms
        )?;
        writeln!(
            f,
            "  consults  {} opened, {} ended, {} messages; latency p50 {:.1} ms, p99 {:.1} ms",
            self.consults_opened,
            self.consults_ended,
            self.messages,
            self.message_p50_ms,
            self.message_p99_ms
        )?;
        write!(f, "  errors    {errors}")?;
        for (what, n) in &self.errors {
            write!(f, "\n            {what}: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_read_sorted_latencies() {
        let mut v: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        assert_eq!(quantile_ms(&mut v, 0.5), 51.0);
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut [], 0.99), 0.0);
    }
}
