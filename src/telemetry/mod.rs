//! Logs and metrics. Every event the worker counts is one method of `Metrics`, here, taking the
//! enums the code already has (an outcome, an [`ErrorCode`], a `ReplyKind`), never a label
//! string; when the event is also logged, that method writes the line too, with the target
//! [`EVENTS`], so the line and the count never disagree and a filter on the target keeps
//! working wherever the code moves. Log lines that count nothing (start-up, shutdown, decisions
//! along a delivery's way) are written where they happen.
//!
//! Metric names are `prereg_sync_<name>_<unit>`, counters end `_total`, and labels take their
//! values from the fixed sets of `labels`: never a transaction ID, a PRID or error text. The
//! families themselves are registered in `metrics.rs`; the log subscriber is `logging.rs`.

use std::{fmt, time::Duration};

use prometheus::IntGauge;

use self::labels::{JobPridResult, JobRunStatus, LabelSet, PoolState, PridResult, RetryKind};
use crate::{
    message::{ErrorCode, ReplyKind, TransactionId},
    storage::audit::AuditEvent,
};

pub(crate) mod labels;
mod logging;
mod metrics;

pub(crate) use labels::MessageOutcome;
pub use logging::init_logging;
pub(crate) use metrics::Metrics;

/// The log target of every counted event (`RUST_LOG=prereg_sync::events=warn` keeps just them
/// at WARN and above, whatever module counts them).
pub const EVENTS: &str = "prereg_sync::events";

impl Metrics {
    /// The ingress's routes and the statuses it answers, created at 0 when it starts.
    pub(crate) fn http_routes(&self, routes: &[&str], statuses: &[u16]) {
        let http = &self.0.http;
        for route in routes {
            http.duration.with_label_values(&[*route]);
            for status in statuses {
                http.requests
                    .with_label_values(&[*route, &status.to_string()])
                    .inc_by(0);
            }
        }
    }

    /// One ingress request answered. `route` is its route template (or `unmatched`).
    pub(crate) fn http_request(&self, route: &str, status: u16, elapsed: Duration) {
        let http = &self.0.http;
        http.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        http.duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// A delivery reached its terminal outcome (`error_code`: the failure it was retried or
    /// dead-lettered for).
    pub(crate) fn message_finished(
        &self,
        outcome: MessageOutcome,
        transaction_id: &TransactionId,
        error_code: Option<ErrorCode>,
        elapsed: Duration,
    ) {
        let requests = &self.0.requests;
        requests.messages.inc(outcome);
        if let (MessageOutcome::Rejected | MessageOutcome::DeadLettered, Some(code)) =
            (outcome, error_code)
            && code != ErrorCode::ReplyUndelivered
        {
            requests.error_replies.inc(code);
        }
        requests.processing_seconds.observe(elapsed.as_secs_f64());
        match outcome {
            MessageOutcome::Stored | MessageOutcome::Duplicate => tracing::info!(
                target: EVENTS,
                %transaction_id,
                outcome = outcome.as_str(),
                "request processed"
            ),
            _ => tracing::warn!(
                target: EVENTS,
                %transaction_id,
                outcome = outcome.as_str(),
                error_code = error_code.map_or("", ErrorCode::code),
                "request not stored"
            ),
        }
    }

    /// PRID counts of one stored request.
    pub(crate) fn prids_stored(
        &self,
        new: u64,
        already_present: u64,
        malformed: usize,
        unknown: usize,
    ) {
        let requests = &self.0.requests;
        for (result, count) in [
            (PridResult::Stored, new),
            (PridResult::AlreadyPresent, already_present),
            (PridResult::RejectedFormat, malformed as u64),
            (PridResult::RejectedUnknown, unknown as u64),
        ] {
            requests.prids.inc_by(result, count);
        }
        requests.batch_size.observe((new + already_present) as f64);
    }

    /// A transient failure is retried in process after `delay`.
    pub(crate) fn retrying_immediately(&self, error: &dyn fmt::Display, delay: Duration) {
        self.0.requests.retries.inc(RetryKind::Immediate);
        tracing::debug!(target: EVENTS, error = %error, retry_in = ?delay, "transient failure; retrying");
    }

    /// A request went to a delayed-retry queue.
    pub(crate) fn retry_scheduled(&self, transaction_id: &TransactionId, queue: &str) {
        self.0.requests.retries.inc(RetryKind::Delayed);
        tracing::info!(
            target: EVENTS,
            %transaction_id,
            queue,
            "transient failure persists; delayed retry scheduled"
        );
    }

    /// A reply was published.
    pub(crate) fn reply_published(&self, kind: ReplyKind) {
        self.0.requests.replies.inc(kind);
    }

    /// Counts one delivery in `prereg_sync_in_flight_messages` until the guard is dropped,
    /// also when its task is aborted (shutdown past the grace period, a lost session).
    pub(crate) fn in_flight(&self) -> InFlight {
        let gauge = &self.0.requests.in_flight;
        gauge.inc();
        InFlight(gauge.clone())
    }

    /// The audit row of an outcome already decided (and answered) could not be written.
    pub(crate) fn audit_write_failed(&self, event: AuditEvent, error: &dyn fmt::Display) {
        self.0.requests.audit_write_failures.inc();
        let event = event.as_str();
        tracing::error!(target: EVENTS, event, error = %error, "audit row not written; the outcome stands");
    }

    /// The database refused a request's rows (SQLSTATE 42501 with the worker's grants intact:
    /// a row-level security policy); the request is dead-lettered, not retried.
    pub(crate) fn database_refused(
        &self,
        transaction_id: &TransactionId,
        error: &dyn fmt::Display,
    ) {
        self.0.requests.database_refusals.inc();
        tracing::error!(
            target: EVENTS,
            %transaction_id,
            error = %error,
            "the database refused this request's rows (a row-level security policy?): dead-lettered; check the policies on prereg's tables for the worker's role"
        );
    }

    /// A request came back from a DLQ replay (it carries `x-replay-count`).
    pub(crate) fn replayed_received(&self, transaction_id: &TransactionId, replays: i64) {
        self.0.requests.replayed.inc();
        tracing::info!(target: EVENTS, %transaction_id, replays, "replayed request received");
    }

    pub(crate) fn broker_connected(&self, connected: bool) {
        self.0.broker.connected.set(i64::from(connected));
    }

    pub(crate) fn broker_reconnecting(&self, error: &dyn fmt::Display, delay: Duration) {
        self.0.broker.reconnects.inc();
        tracing::warn!(target: EVENTS, error = %error, retry_in = ?delay, "broker connection lost; reconnecting");
    }

    /// The worker moves on to the next node of `amqp.url`.
    pub(crate) fn broker_failover(&self) {
        self.0.broker.failovers.inc();
    }

    /// Which of the `count` configured nodes is being consumed from (`None`: none). The label
    /// is the node's index, so the series are bounded by the length of `amqp.url`.
    /// `in_use` is 0-based; the label counts from 1, as the logs (`node=2`) and errors
    /// (`node 2 of 3`) do.
    pub(crate) fn broker_node(&self, in_use: Option<usize>, count: usize) {
        for index in 0..count {
            self.0
                .broker
                .node
                .with_label_values(&[&(index + 1).to_string()])
                .set(i64::from(in_use == Some(index)));
        }
    }

    pub(crate) fn database_up(&self, up: bool) {
        self.0.database.up.set(i64::from(up));
    }

    pub(crate) fn pool_status(&self, status: deadpool_postgres::Status) {
        let database = &self.0.database;
        let busy = status.size.saturating_sub(status.available);
        for (state, connections) in [
            (PoolState::Idle, status.available),
            (PoolState::Busy, busy),
            (PoolState::Max, status.max_size),
        ] {
            database
                .pool_connections
                .with_label_values(&[state.as_str()])
                .set(connections as i64);
        }
        database.pool_waiters.set(status.waiting as i64);
    }

    /// The consumed-status job's scheduler waits for `next` (`None`: it has stopped).
    pub(crate) fn consumed_job_scheduled(&self, next: Option<chrono::DateTime<chrono::Utc>>) {
        let next = next.map_or(0, |next| next.timestamp());
        self.0.consumed_job.next_run.set(next);
    }

    /// A consumed-status job run ended with `status`: `prids` counts its PRIDs by result, and
    /// `report` (the run's summary, never a PRID) is logged.
    pub(crate) fn consumed_job_finished(
        &self,
        status: JobRunStatus,
        prids: &[(JobPridResult, u64)],
        report: &dyn fmt::Display,
    ) {
        let job = &self.0.consumed_job;
        job.runs.inc(status);
        for &(result, count) in prids {
            job.prids.inc_by(result, count);
        }
        if matches!(status, JobRunStatus::Success | JobRunStatus::NothingToDo) {
            job.last_success.set(chrono::Utc::now().timestamp());
        }
        match status {
            JobRunStatus::Failed | JobRunStatus::Partial => {
                tracing::warn!(target: EVENTS, %report, "consumed-status job run ended")
            }
            _ => tracing::info!(target: EVENTS, %report, "consumed-status job run ended"),
        }
    }
}

/// See [`Metrics::in_flight`].
pub(crate) struct InFlight(IntGauge);

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
        let transaction_id = TransactionId::parse("tx-1").unwrap();
        metrics.message_finished(
            MessageOutcome::Stored,
            &transaction_id,
            None,
            Duration::from_millis(3),
        );
        metrics.reply_published(ReplyKind::Ack);
        let text = metrics.render();
        assert!(
            text.contains("prereg_sync_retries_total{kind=\"immediate\"} 1"),
            "{text}"
        );
        assert!(text.contains("prereg_sync_messages_total{outcome=\"stored\"} 1"));
        assert!(!text.contains("tx-1"), "no transaction ID in any label");
    }
}
