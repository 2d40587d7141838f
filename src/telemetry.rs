//! Logs and metrics. Each telemetry event is one method here that both logs and counts, so the
//! two never disagree. Metric names are `prereg_sync_<name>_<unit>`, counters end `_total`, and
//! labels take a handful of fixed values: never a transaction ID, a PRID or error text.

use std::{sync::Arc, time::Duration};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{
    config::{LogFormat, LogSettings},
    message::ErrorCode,
};

/// Crates that log statement parameters or frame contents (PRIDs, bodies) below INFO. Their
/// verbose levels are never enabled, whatever `RUST_LOG` says: the logging rule is not traded
/// for debuggability.
const PAYLOAD_LOGGING_CRATES: [&str; 4] = ["tokio_postgres", "postgres_", "lapin", "amq_protocol"];

fn may_carry_payload(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() > tracing::Level::INFO
        && PAYLOAD_LOGGING_CRATES
            .iter()
            .any(|prefix| metadata.target().starts_with(prefix))
}

/// Installs the global tracing subscriber: human-readable or JSON lines on stderr, level from
/// `RUST_LOG` when set, else `log.level`.
pub fn init_logging(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let guard = tracing_subscriber::filter::filter_fn(|metadata| !may_carry_payload(metadata));
    let registry = tracing_subscriber::registry().with(filter).with(guard);
    let result = match settings.format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry
                .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
                .try_init()
        }
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second initialisation (tests building several apps) keeps the first subscriber.
    let _ = result;
}

/// How a delivery ended, the `outcome` label of `prereg_sync_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    Stored,
    Duplicate,
    Rejected,
    Retried,
    DeadLettered,
}

impl MessageOutcome {
    fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Stored => "stored",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::Rejected => "rejected",
            MessageOutcome::Retried => "retried",
            MessageOutcome::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    process: Registry,
    messages: IntCounterVec,
    error_replies: IntCounterVec,
    prids: IntCounterVec,
    replies: IntCounterVec,
    processing_seconds: Histogram,
    batch_size: Histogram,
    in_flight: IntGauge,
    reconnects: IntCounter,
    failovers: IntCounter,
    broker_node: IntGaugeVec,
    retries: IntCounterVec,
    replayed: IntCounter,
    broker_connected: IntGauge,
    database_up: IntGauge,
    pool_connections: IntGaugeVec,
    pool_waiters: IntGauge,
    audit_write_failures: IntCounter,
    job_runs: IntCounterVec,
    job_rows: IntCounterVec,
    job_last_success: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Buckets of `processing_duration_seconds`, up to the broker's 30 min `consumer_timeout`, the
/// longest a delivery can be held (through an outage, retries, publish timeouts). The default
/// buckets stop at 10 s: the "slower than 10 s" alert could never fire and quantiles went flat
/// during outages.
const PROCESSING_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0,
];

/// Registers a collector built from constant options (which cannot fail) and returns it.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    let collector = collector.expect("static metric options are valid");
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("prereg_sync".into()), None)
            .expect("static registry options are valid");
        let r = &registry;
        let counter_vec = |name: &str, help: &str, label: &str| {
            register(r, IntCounterVec::new(Opts::new(name, help), &[label]))
        };
        let build_info = register(
            r,
            IntGauge::with_opts(
                Opts::new("build_info", "Build information")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            ),
        );
        build_info.set(1);
        // Process metrics keep their conventional un-prefixed names (process_*), so they get a
        // registry of their own.
        let process = Registry::new();
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        let inner = Inner {
            process,
            job_runs: counter_vec(
                "consumed_job_runs_total",
                "Consumed-status job runs by status",
                "status",
            ),
            job_rows: counter_vec(
                "consumed_job_rows_total",
                "PRIDs handled by the consumed-status job, by result",
                "result",
            ),
            job_last_success: register(
                r,
                IntGauge::new(
                    "consumed_job_last_success_timestamp_seconds",
                    "Unix time of the last consumed-status run that ended SUCCESS or NOTHING_TO_DO",
                ),
            ),
            messages: counter_vec(
                "messages_total",
                "Request deliveries by terminal outcome",
                "outcome",
            ),
            error_replies: counter_vec(
                "error_replies_total",
                "Error replies by error code",
                "error_code",
            ),
            prids: counter_vec(
                "prids_total",
                "PRIDs of processed requests by result",
                "result",
            ),
            replies: counter_vec(
                "replies_published_total",
                "Replies published, by kind",
                "kind",
            ),
            retries: counter_vec(
                "retries_total",
                "Retries of transient failures, by kind",
                "kind",
            ),
            processing_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "processing_duration_seconds",
                        "Time from taking a delivery to acking it",
                    )
                    .buckets(PROCESSING_BUCKETS.to_vec()),
                ),
            ),
            batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("batch_size_prids", "PRIDs per request")
                        .buckets(vec![1.0, 10.0, 100.0, 1000.0, 10000.0]),
                ),
            ),
            in_flight: register(
                r,
                IntGauge::new("in_flight_messages", "Deliveries being processed"),
            ),
            reconnects: register(
                r,
                IntCounter::new("broker_reconnects_total", "Broker reconnections"),
            ),
            failovers: register(
                r,
                IntCounter::new(
                    "broker_failovers_total",
                    "Moves to the next node of amqp.url after losing one (or failing to reach it)",
                ),
            ),
            broker_node: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "broker_node",
                        "1 for the node of amqp.url being consumed from, by its index (0-based)",
                    ),
                    &["index"],
                ),
            ),
            replayed: register(
                r,
                IntCounter::new(
                    "replayed_messages_received_total",
                    "Requests received back from a DLQ replay",
                ),
            ),
            broker_connected: register(
                r,
                IntGauge::new("broker_connected", "1 while consuming from the broker"),
            ),
            database_up: register(
                r,
                IntGauge::new("database_up", "1 while the last database check succeeded"),
            ),
            pool_connections: register(
                r,
                IntGaugeVec::new(
                    Opts::new("db_pool_connections", "Pool connections by state"),
                    &["state"],
                ),
            ),
            pool_waiters: register(
                r,
                IntGauge::new("db_pool_waiters", "Tasks waiting for a pooled connection"),
            ),
            audit_write_failures: register(
                r,
                IntCounter::new(
                    "audit_write_failures_total",
                    "Audit rows of an already decided outcome that could not be written",
                ),
            ),
            registry,
        };
        // Every series of a bounded label set exists from the start at 0, so rate() and
        // increase() see the first event instead of a series appearing from nowhere.
        let touch = |vec: &IntCounterVec, values: &[&str]| {
            for value in values {
                vec.with_label_values(&[value]).inc_by(0);
            }
        };
        let outcomes = [
            MessageOutcome::Stored,
            MessageOutcome::Duplicate,
            MessageOutcome::Rejected,
            MessageOutcome::Retried,
            MessageOutcome::DeadLettered,
        ];
        touch(&inner.messages, &outcomes.map(MessageOutcome::as_str));
        touch(&inner.error_replies, &ErrorCode::ALL.map(ErrorCode::code));
        touch(
            &inner.prids,
            &[
                "stored",
                "already_present",
                "rejected_format",
                "rejected_unknown",
            ],
        );
        touch(&inner.replies, &["ack", "error"]);
        touch(&inner.retries, &["immediate", "delayed"]);
        touch(
            &inner.job_runs,
            &["SUCCESS", "PARTIAL", "FAILED", "NOTHING_TO_DO"],
        );
        touch(&inner.job_rows, &["moved", "not_found", "failed"]);
        Metrics(Arc::new(inner))
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let mut families = self.0.registry.gather();
        families.extend(self.0.process.gather());
        let _ = TextEncoder::new().encode(&families, &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// A delivery reached its terminal outcome.
    pub fn message_finished(
        &self,
        outcome: MessageOutcome,
        transaction_id: &str,
        error_code: Option<&str>,
        elapsed: Duration,
    ) {
        self.0.messages.with_label_values(&[outcome.as_str()]).inc();
        if let (MessageOutcome::Rejected | MessageOutcome::DeadLettered, Some(code)) =
            (outcome, error_code)
            && code != ErrorCode::ReplyUndelivered.code()
        {
            self.0.error_replies.with_label_values(&[code]).inc();
        }
        self.0.processing_seconds.observe(elapsed.as_secs_f64());
        match outcome {
            MessageOutcome::Stored | MessageOutcome::Duplicate => {
                tracing::info!(
                    transaction_id,
                    outcome = outcome.as_str(),
                    "request processed"
                )
            }
            _ => tracing::warn!(
                transaction_id,
                outcome = outcome.as_str(),
                error_code = error_code.unwrap_or(""),
                "request not stored"
            ),
        }
    }

    /// PRID counts of one stored request.
    pub fn prids_stored(&self, new: u64, already_present: u64, malformed: usize, unknown: usize) {
        let prids = &self.0.prids;
        prids.with_label_values(&["stored"]).inc_by(new);
        prids
            .with_label_values(&["already_present"])
            .inc_by(already_present);
        prids
            .with_label_values(&["rejected_format"])
            .inc_by(malformed as u64);
        prids
            .with_label_values(&["rejected_unknown"])
            .inc_by(unknown as u64);
        self.0.batch_size.observe((new + already_present) as f64);
    }

    /// A transient failure is retried in process after `delay`.
    pub fn retrying_immediately(&self, error: &dyn std::fmt::Display, delay: Duration) {
        self.0.retries.with_label_values(&["immediate"]).inc();
        tracing::debug!(error = %error, retry_in = ?delay, "transient failure; retrying");
    }

    /// A request went to a delayed-retry queue.
    pub fn retry_scheduled(&self, transaction_id: &str, queue: &str) {
        self.0.retries.with_label_values(&["delayed"]).inc();
        tracing::info!(
            transaction_id,
            queue,
            "transient failure persists; delayed retry scheduled"
        );
    }

    pub fn reply_published(&self, kind: &'static str) {
        self.0.replies.with_label_values(&[kind]).inc();
    }

    /// Counts one delivery in `prereg_sync_in_flight_messages` until the guard is dropped,
    /// also when its task is aborted (shutdown past the grace period, a lost session).
    pub fn in_flight(&self) -> InFlight {
        self.0.in_flight.inc();
        InFlight(self.0.in_flight.clone())
    }

    /// The audit row of an outcome already decided (and answered) could not be written.
    pub fn audit_write_failed(&self, event: &'static str, error: &dyn std::fmt::Display) {
        self.0.audit_write_failures.inc();
        tracing::error!(event, error = %error, "audit row not written; the outcome stands");
    }

    /// A request came back from a DLQ replay (it carries `x-replay-count`).
    pub fn replayed_received(&self, transaction_id: &str, replays: i64) {
        self.0.replayed.inc();
        tracing::info!(transaction_id, replays, "replayed request received");
    }

    pub fn broker_connected(&self, connected: bool) {
        self.0.broker_connected.set(i64::from(connected));
    }

    pub fn database_up(&self, up: bool) {
        self.0.database_up.set(i64::from(up));
    }

    pub fn pool_status(&self, status: deadpool_postgres::Status) {
        let busy = status.size.saturating_sub(status.available);
        self.0
            .pool_connections
            .with_label_values(&["idle"])
            .set(status.available as i64);
        self.0
            .pool_connections
            .with_label_values(&["busy"])
            .set(busy as i64);
        self.0
            .pool_connections
            .with_label_values(&["max"])
            .set(status.max_size as i64);
        self.0.pool_waiters.set(status.waiting as i64);
    }

    /// A consumed-status job run ended.
    pub fn consumed_job_finished(
        &self,
        report: &crate::jobs::consumed::RunReport,
        status: crate::jobs::consumed::RunStatus,
    ) {
        use crate::jobs::consumed::RunStatus;
        self.0.job_runs.with_label_values(&[status.as_str()]).inc();
        let rows = &self.0.job_rows;
        rows.with_label_values(&["moved"]).inc_by(report.moved);
        rows.with_label_values(&["not_found"])
            .inc_by(report.not_found);
        rows.with_label_values(&["failed"]).inc_by(report.failed);
        if matches!(status, RunStatus::Success | RunStatus::NothingToDo) {
            self.0.job_last_success.set(chrono::Utc::now().timestamp());
        }
        match status {
            RunStatus::Failed | RunStatus::Partial => {
                tracing::warn!(%report, "consumed-status job run ended")
            }
            _ => tracing::info!(%report, "consumed-status job run ended"),
        }
    }

    /// The worker moves on to the next node of `amqp.url`.
    pub fn broker_failover(&self) {
        self.0.failovers.inc();
    }

    /// Which of the `count` configured nodes is being consumed from (`None`: none). The label
    /// is the node's index, so the series are bounded by the length of `amqp.url`.
    pub fn broker_node(&self, in_use: Option<usize>, count: usize) {
        for index in 0..count {
            self.0
                .broker_node
                .with_label_values(&[&index.to_string()])
                .set(i64::from(in_use == Some(index)));
        }
    }

    pub fn broker_reconnecting(&self, error: &dyn std::fmt::Display, delay: Duration) {
        self.0.reconnects.inc();
        tracing::warn!(error = %error, retry_in = ?delay, "broker connection lost; reconnecting");
    }
}

/// See [`Metrics::in_flight`].
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace_and_labels_are_bounded() {
        let metrics = Metrics::new();
        metrics.retrying_immediately(&"e", Duration::from_millis(1));
        metrics.message_finished(MessageOutcome::Stored, "tx", None, Duration::from_millis(3));
        let text = metrics.render();
        assert!(
            text.contains("prereg_sync_retries_total{kind=\"immediate\"} 1"),
            "{text}"
        );
        assert!(text.contains("prereg_sync_messages_total{outcome=\"stored\"} 1"));
        assert!(!text.contains("tx"), "no transaction ID in any label");
    }
}
