//! What a load generator run reports: throughput and reply latency, as a text line or JSON.

use std::{
    collections::HashMap,
    fmt,
    time::{Duration, Instant},
};

use super::LoadgenOptions;

#[derive(Debug)]
pub(crate) struct LoadgenReport {
    pub(crate) requests: usize,
    pub(crate) prids: usize,
    pub(crate) acks: usize,
    pub(crate) errors: usize,
    /// From the first publish to the last reply.
    pub(crate) elapsed: Duration,
    pub(crate) latency_p50: Duration,
    pub(crate) latency_p99: Duration,
}

impl LoadgenReport {
    fn elapsed_secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The figures of the text line, for `--json`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let secs = self.elapsed_secs();
        serde_json::json!({
            "requests": self.requests,
            "prids": self.prids,
            "acks": self.acks,
            "errors": self.errors,
            "elapsed_seconds": secs,
            "messages_per_second": self.requests as f64 / secs,
            "prids_per_second": self.prids as f64 / secs,
            "latency_p50_ms": self.latency_p50.as_secs_f64() * 1e3,
            "latency_p99_ms": self.latency_p99.as_secs_f64() * 1e3,
        })
    }
}

impl fmt::Display for LoadgenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed_secs();
        write!(
            f,
            "requests={} prids={} acks={} errors={} elapsed={:.2}s messages/s={:.0} prids/s={:.0} latency_p50={:.1}ms latency_p99={:.1}ms",
            self.requests,
            self.prids,
            self.acks,
            self.errors,
            secs,
            self.requests as f64 / secs,
            self.prids as f64 / secs,
            self.latency_p50.as_secs_f64() * 1e3,
            self.latency_p99.as_secs_f64() * 1e3,
        )
    }
}

/// The report of a run once the replies are in: fails when some did not arrive in time.
pub(super) fn summarize(
    options: &LoadgenOptions,
    prids: usize,
    started: Instant,
    sent_at: &[Instant],
    received: &HashMap<usize, (Instant, bool)>,
) -> anyhow::Result<LoadgenReport> {
    let elapsed = received
        .values()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or(started)
        - started;
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter_map(|(index, (at, _))| {
            sent_at
                .get(*index)
                .map(|sent| at.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort_unstable();
    let errors = received.values().filter(|(_, ok)| !ok).count();
    anyhow::ensure!(
        received.len() == options.requests,
        "only {} of {} replies arrived within {:?}",
        received.len(),
        options.requests,
        options.timeout
    );
    Ok(LoadgenReport {
        requests: options.requests,
        prids,
        acks: received.len() - errors,
        errors,
        elapsed,
        latency_p50: percentile(&latencies, 0.50),
        latency_p99: percentile(&latencies, 0.99),
    })
}

/// The nearest-rank percentile `q` of `sorted` (ascending); zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
