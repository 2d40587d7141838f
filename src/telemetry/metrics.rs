//! The metric families: names, HELP texts, label names and buckets, registered once by
//! [`Metrics::new`]. What each event does to them is in the module root, `telemetry/mod.rs`.

use std::{marker::PhantomData, sync::Arc};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

use super::labels::{JobPridResult, JobRunStatus, LabelSet, MessageOutcome, PridResult, RetryKind};
use crate::message::{ErrorCode, ReplyKind};

/// Buckets of `processing_duration_seconds`, up to the broker's 30 min `consumer_timeout`, the
/// longest a delivery can be held (through an outage, retries, publish timeouts). The default
/// buckets stop at 10 s: the "slower than 10 s" alert could never fire and quantiles went flat
/// during outages.
const PROCESSING_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0,
];

const BATCH_SIZE_BUCKETS: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];

/// The worker's metrics, cheap to clone (one shared set of families).
#[derive(Clone)]
pub(crate) struct Metrics(pub(super) Arc<Families>);

pub(super) struct Families {
    registry: Registry,
    /// Process metrics keep their conventional un-prefixed names (`process_*`), so they get a
    /// registry of their own.
    process: Registry,
    pub(super) requests: RequestFamilies,
    pub(super) broker: BrokerFamilies,
    pub(super) database: DatabaseFamilies,
    pub(super) consumed_job: ConsumedJobFamilies,
    pub(super) http: HttpFamilies,
}

/// Deliveries of requests and what became of them.
pub(super) struct RequestFamilies {
    pub(super) messages: CounterBy<MessageOutcome>,
    pub(super) error_replies: CounterBy<ErrorCode>,
    pub(super) prids: CounterBy<PridResult>,
    pub(super) replies: CounterBy<ReplyKind>,
    pub(super) retries: CounterBy<RetryKind>,
    pub(super) processing_seconds: Histogram,
    pub(super) batch_size: Histogram,
    pub(super) in_flight: IntGauge,
    pub(super) replayed: IntCounter,
    pub(super) audit_write_failures: IntCounter,
    pub(super) database_refusals: IntCounter,
}

pub(super) struct BrokerFamilies {
    pub(super) connected: IntGauge,
    pub(super) reconnects: IntCounter,
    pub(super) failovers: IntCounter,
    pub(super) node: IntGaugeVec,
}

pub(super) struct DatabaseFamilies {
    pub(super) up: IntGauge,
    pub(super) pool_connections: IntGaugeVec,
    pub(super) pool_waiters: IntGauge,
}

pub(super) struct ConsumedJobFamilies {
    pub(super) runs: CounterBy<JobRunStatus>,
    pub(super) prids: CounterBy<JobPridResult>,
    pub(super) last_success: IntGauge,
    pub(super) next_run: IntGauge,
}

/// The HTTP ingress's requests: `route` is a route template (never a transaction ID),
/// `status` the HTTP status answered.
pub(super) struct HttpFamilies {
    pub(super) requests: IntCounterVec,
    pub(super) duration: HistogramVec,
}

/// A counter with one label whose values are the label set `L`: only values of `L` can be
/// counted, and each one's series exists from registration on.
pub(super) struct CounterBy<L> {
    vec: IntCounterVec,
    set: PhantomData<L>,
}

impl<L: LabelSet> CounterBy<L> {
    pub(super) fn inc(&self, value: L) {
        self.inc_by(value, 1);
    }

    pub(super) fn inc_by(&self, value: L, count: u64) {
        self.vec.with_label_values(&[value.as_str()]).inc_by(count);
    }
}

/// Registers families built from constant options, so a failure is a bug, not a condition.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn add<C: Collector + Clone + 'static>(&self, collector: prometheus::Result<C>) -> C {
        let collector = collector.expect("static metric options are valid");
        self.0
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        collector
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn gauge_vec(&self, name: &str, help: &str, label: &str) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), &[label]))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }

    fn counter_by<L: LabelSet>(&self, name: &str, help: &str, label: &str) -> CounterBy<L> {
        let vec = self.add(IntCounterVec::new(Opts::new(name, help), &[label]));
        // Every series of the set exists from the start at 0, so rate() and increase() see the
        // first event instead of a series appearing from nowhere.
        for value in L::ALL {
            vec.with_label_values(&[value.as_str()]).inc_by(0);
        }
        CounterBy {
            vec,
            set: PhantomData,
        }
    }
}

impl RequestFamilies {
    fn register(r: &Registrar) -> RequestFamilies {
        RequestFamilies {
            messages: r.counter_by(
                "messages_total",
                "Request deliveries by terminal outcome",
                "outcome",
            ),
            error_replies: r.counter_by(
                "error_replies_total",
                "Error replies by error code",
                "error_code",
            ),
            prids: r.counter_by(
                "prids_total",
                "PRIDs of processed requests by result",
                "result",
            ),
            replies: r.counter_by(
                "replies_published_total",
                "Replies published, by kind",
                "kind",
            ),
            retries: r.counter_by(
                "retries_total",
                "Retries of transient failures, by kind",
                "kind",
            ),
            processing_seconds: r.histogram(
                "processing_duration_seconds",
                "Time from taking a delivery to acking it",
                &PROCESSING_BUCKETS,
            ),
            batch_size: r.histogram("batch_size_prids", "PRIDs per request", &BATCH_SIZE_BUCKETS),
            in_flight: r.gauge("in_flight_messages", "Deliveries being processed"),
            replayed: r.counter(
                "replayed_messages_received_total",
                "Requests received back from a DLQ replay",
            ),
            audit_write_failures: r.counter(
                "audit_write_failures_total",
                "Audit rows of an already decided outcome that could not be written",
            ),
            database_refusals: r.counter(
                "database_refusals_total",
                "Requests whose rows the database refused with its grants intact (SQLSTATE 42501: row-level security), dead-lettered",
            ),
        }
    }
}

impl BrokerFamilies {
    fn register(r: &Registrar) -> BrokerFamilies {
        BrokerFamilies {
            connected: r.gauge("broker_connected", "1 while consuming from the broker"),
            reconnects: r.counter("broker_reconnects_total", "Broker reconnections"),
            failovers: r.counter(
                "broker_failovers_total",
                "Moves to the next node of amqp.url after losing one (or failing to reach it)",
            ),
            node: r.gauge_vec(
                "broker_node",
                "1 for the node of amqp.url being consumed from, by its position (from 1, as in the logs)",
                "index",
            ),
        }
    }
}

impl DatabaseFamilies {
    fn register(r: &Registrar) -> DatabaseFamilies {
        DatabaseFamilies {
            up: r.gauge("database_up", "1 while the last database check succeeded"),
            pool_connections: r.gauge_vec(
                "db_pool_connections",
                "Pool connections by state",
                "state",
            ),
            pool_waiters: r.gauge("db_pool_waiters", "Tasks waiting for a pooled connection"),
        }
    }
}

impl ConsumedJobFamilies {
    fn register(r: &Registrar) -> ConsumedJobFamilies {
        ConsumedJobFamilies {
            runs: r.counter_by(
                "consumed_job_runs_total",
                "Consumed-status job runs by status",
                "status",
            ),
            prids: r.counter_by(
                "consumed_job_rows_total",
                "PRIDs handled by the consumed-status job, by result",
                "result",
            ),
            last_success: r.gauge(
                "consumed_job_last_success_timestamp_seconds",
                "Unix time of the last consumed-status run that ended SUCCESS or NOTHING_TO_DO",
            ),
            next_run: r.gauge(
                "consumed_job_next_run_timestamp_seconds",
                "Unix time of this worker's next scheduled consumed-status run; 0 when it has none \
                 (consumed_job.enabled = false)",
            ),
        }
    }
}

impl HttpFamilies {
    fn register(r: &Registrar) -> HttpFamilies {
        HttpFamilies {
            requests: r.add(IntCounterVec::new(
                Opts::new(
                    "http_requests_total",
                    "Ingress HTTP requests by route template and status",
                ),
                &["route", "status"],
            )),
            duration: r.add(HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Ingress HTTP request time by route template, until the answer's headers",
                )
                .buckets(PROCESSING_BUCKETS.to_vec()),
                &["route"],
            )),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let registry = Registry::new_custom(Some("prereg_sync".into()), None)
            .expect("static registry options are valid");
        let r = Registrar(&registry);
        r.add(IntGauge::with_opts(
            Opts::new("build_info", "Build information")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        ))
        .set(1);
        let process = Registry::new();
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        Metrics(Arc::new(Families {
            requests: RequestFamilies::register(&r),
            broker: BrokerFamilies::register(&r),
            database: DatabaseFamilies::register(&r),
            consumed_job: ConsumedJobFamilies::register(&r),
            http: HttpFamilies::register(&r),
            registry,
            process,
        }))
    }

    /// Every family in the Prometheus text format, for `/metrics`.
    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        let mut families = self.0.registry.gather();
        families.extend(self.0.process.gather());
        #[allow(
            clippy::let_underscore_must_use,
            reason = "writing to a Vec cannot fail; an invalid family, a bug, ends the text early"
        )]
        let _ = TextEncoder::new().encode(&families, &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
