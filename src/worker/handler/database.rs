//! Database work under the retry policy: immediate retries of transient failures, and holding
//! (never charging the message) while the database is down.

use backon::Retryable;
use tokio_util::sync::CancellationToken;

use super::Handler;
use crate::{health, retry::FailureClass, storage::StorageError};

/// How a database operation run by [`Handler::with_database`] ended.
pub(in crate::worker) enum Attempt<T> {
    /// It ran to an answer, after the immediate retries of transient failures.
    Done(Result<T, StorageError>),
    /// The session ended (shutdown or loss) while the database was down: the delivery is left
    /// unacked, and the broker redelivers it.
    Cancelled,
}

impl Handler {
    /// Runs a database operation with the immediate retries for transient failures, holding
    /// while the database is down, until `cancel` fires.
    pub(in crate::worker) async fn with_database<T, F, Fut>(
        &self,
        mut operation: F,
        cancel: &CancellationToken,
    ) -> Attempt<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        loop {
            let result = (&mut operation)
                .retry(self.policy.immediate())
                .when(|err: &StorageError| err.class() == FailureClass::Transient)
                .notify(|err, delay| self.metrics.retrying_immediately(err, delay))
                .await;
            let err = match result {
                Err(err) if self.is_outage(&err).await => err,
                other => return Attempt::Done(other),
            };
            tracing::debug!(error = %err, "database unavailable; holding delivery");
            self.health.report_database_down();
            tokio::select! {
                _ = cancel.cancelled() => return Attempt::Cancelled,
                _ = self.health.wait_for_database() => {}
            }
        }
    }

    /// Whether `err` means the database is unavailable to the worker as a whole, rather than
    /// refusing this one operation.
    async fn is_outage(&self, err: &StorageError) -> bool {
        match err.class() {
            FailureClass::InfrastructureDown => true,
            // A lost grant is an outage; a row-level security policy refusing this request's
            // rows is the request's own (see `retry`).
            FailureClass::Refused => !health::can_write(&self.pool).await,
            _ => false,
        }
    }
}
