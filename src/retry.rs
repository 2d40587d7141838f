//! Retry policy: how a failure is classified and what each class costs the message.
//!
//! - *Permanent* (invalid data, a statement the database can never accept): no retry, the
//!   request is dead-lettered with its error reply.
//! - *Transient* (deadlock, serialization failure, statement timeout, a failed reply publish):
//!   a few immediate attempts in process with exponential back-off and jitter, then the
//!   delayed-retry queues on the broker (so no consumer slot is held for minutes), then the
//!   dead-letter queue with `PRG_DATA_SYNC_012`.
//! - *Infrastructure down* (database unreachable, pool exhausted, broker connection lost): not
//!   the message's fault. The delivery is held unacked, no new ones are taken, and processing
//!   resumes when the dependency is back; the retry budget is not charged.
//! - *Refused* (SQLSTATE 42501, insufficient privilege): either the worker's role lost a grant
//!   (an outage: held, as above) or a row-level security policy refused this request's rows
//!   (permanent for this request: dead-lettered, counted and alerted on, never retried). The
//!   worker asks the database which (`health::can_write`: its grants) before deciding.

use std::time::Duration;

use backon::ExponentialBuilder;

use crate::config::RetrySettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Permanent,
    Transient,
    InfrastructureDown,
    Refused,
}

impl FailureClass {
    /// Whether the failure may come from one request's own data, so that a batch failing with
    /// it is redone one request at a time to find which.
    pub(crate) fn may_be_the_datas(self) -> bool {
        matches!(self, FailureClass::Permanent | FailureClass::Refused)
    }
}

/// The configured retry budget.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    immediate_attempts: u32,
    immediate_min_delay: Duration,
    immediate_max_delay: Duration,
    delays: Vec<Duration>,
    outage_max_delay: Duration,
}

impl RetryPolicy {
    pub(crate) fn new(settings: &RetrySettings) -> RetryPolicy {
        RetryPolicy {
            immediate_attempts: settings.immediate_attempts.max(1),
            immediate_min_delay: settings.immediate_min_delay,
            immediate_max_delay: settings.immediate_max_delay,
            delays: settings.delays.clone(),
            outage_max_delay: settings.outage_max_delay,
        }
    }

    /// Back-off while a dependency, not the message, is failing (a copy the broker does not
    /// confirm): no limit on the attempts, capped at `retry.outage_max_delay`.
    pub(crate) fn holding(&self) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        ExponentialBuilder::default()
            .with_min_delay(self.immediate_min_delay)
            .with_max_delay(self.outage_max_delay)
            .without_max_times()
            .with_jitter()
            .build()
    }

    /// Back-off for the in-process attempts: `immediate_attempts` tries in all.
    pub(crate) fn immediate(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.immediate_min_delay)
            .with_max_delay(self.immediate_max_delay)
            .with_max_times(self.immediate_attempts as usize - 1)
            .with_jitter()
    }

    /// The delayed-retry tier for a message that has been through `retry_count` tiers already;
    /// `None` once the budget is spent.
    pub(crate) fn delay_for(&self, retry_count: u32) -> Option<Duration> {
        self.delays.get(retry_count as usize).copied()
    }

    pub(crate) fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

/// `<prefix>.<delay>` with the delay in humantime (`10s`, `1m`, `5m`), so the queue list in the
/// management UI reads as the retry schedule.
pub(crate) fn retry_queue_name(prefix: &str, delay: Duration) -> String {
    let delay = humantime::format_duration(delay)
        .to_string()
        .replace(' ', "");
    format!("{prefix}.{delay}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&RetrySettings {
            immediate_attempts: 3,
            immediate_min_delay: Duration::from_millis(10),
            immediate_max_delay: Duration::from_millis(100),
            delays: vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(300),
            ],
            outage_max_delay: Duration::from_secs(10),
        })
    }

    #[test]
    fn delayed_tiers_then_budget_spent() {
        let p = policy();
        assert_eq!(p.delay_for(0), Some(Duration::from_secs(10)));
        assert_eq!(p.delay_for(2), Some(Duration::from_secs(300)));
        assert_eq!(p.delay_for(3), None);
    }

    #[test]
    fn immediate_attempts_count_the_first_try() {
        use backon::BackoffBuilder;
        assert_eq!(policy().immediate().build().count(), 2);
    }

    #[test]
    fn retry_queue_names_read_as_the_schedule() {
        assert_eq!(
            retry_queue_name("p.retry", Duration::from_secs(10)),
            "p.retry.10s"
        );
        assert_eq!(
            retry_queue_name("p.retry", Duration::from_secs(60)),
            "p.retry.1m"
        );
        assert_eq!(
            retry_queue_name("p.retry", Duration::from_millis(1500)),
            "p.retry.1s500ms"
        );
    }
}
